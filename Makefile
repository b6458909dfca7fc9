# SPDX-License-Identifier: Apache-2.0
# The front door: make run | test | demo | bench | clean. CMake does the real build.
BUILD      ?= build
space      := $(subst ,, )
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
ARGS       ?=
CTEST_ARGS ?=

# Debian 12 packages the build, the tests and the interop tests need.
DEB_PKGS = build-essential cmake pkg-config libuv1-dev libnghttp2-dev libssl-dev \
           libsqlite3-dev sqlite3 libprotobuf-c-dev protobuf-c-compiler libcmocka-dev \
           libhttp-parser-dev zlib1g-dev libzstd-dev libsnappy-dev libjansson-dev \
           curl openssl ca-certificates clang libclang-rt-14-dev zstd python3 valgrind

.PHONY: all deps deps-apt deps-npm build build-asan run test test-unit test-asan test-tsan demo bench fuzz fuzz-build reliability eval clean help

all: build

help:
	@echo "make run    build and run faultline with default settings (ARGS=... adds flags)"
	@echo "make test   build, run every test, then again under ASan+UBSan, threaded ones under TSan"
	@echo "make demo   run faultline, the demo services and steady traffic (Ctrl-C stops all)"
	@echo "make bench  ingest and read benchmark against the SQLite and decode ceilings (BENCH_ARGS=--quick)"
	@echo "make fuzz   run every libFuzzer target FUZZ_SECONDS (default 60) under ASan+UBSan"
	@echo "make reliability  fuzz, bad-input, kill -9, overload, sanitizer and valgrind report"
	@echo "make eval   root-cause accuracy (AC@1, AC@3), time to detect, false incidents; Nezha data"
	@echo "make deps   install missing Debian packages and the npm packages of the interop tests"
	@echo "make clean  remove build directories"

deps: deps-apt deps-npm

deps-apt:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "missing packages:$$missing"; \
	    echo "run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

deps-npm:
	@if [ -f tests/interop/package-lock.json ] && [ ! -d tests/interop/node_modules ]; then \
	  echo "installing the OpenTelemetry JS SDK for the interop tests (npm ci)"; \
	  cd tests/interop && npm ci --no-audit --no-fund --loglevel=error; \
	fi

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps-apt $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD_ASAN)/CMakeCache.txt:
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DFL_SANITIZE=address,undefined

build-asan: deps-apt $(BUILD_ASAN)/CMakeCache.txt
	cmake --build $(BUILD_ASAN) -j $(JOBS)

run: build
	./$(BUILD)/faultline serve $(ARGS)

test-unit: deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

test-asan: deps build-asan
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -LE interop $(CTEST_ARGS)

# ThreadSanitizer on the tests that exercise threads (pool, net loop + responders, store
# writer + readers, receiver + sink, the spans-per-trace table, analysis observe vs. queries).
BUILD_TSAN ?= build-tsan
TSAN_TESTS  = test_common test_net test_net_h2 test_store test_store_concurrency \
              test_receiver_http test_receiver_security test_analysis_detect
$(BUILD_TSAN)/CMakeCache.txt:
	cmake -S . -B $(BUILD_TSAN) -DCMAKE_BUILD_TYPE=Debug -DFL_SANITIZE=thread

test-tsan: deps-apt $(BUILD_TSAN)/CMakeCache.txt
	cmake --build $(BUILD_TSAN) -j $(JOBS) --target $(TSAN_TESTS)
	cd $(BUILD_TSAN) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j $(JOBS) -R '^($(subst $(space),|,$(strip $(TSAN_TESTS))))$$'

test: test-unit test-asan test-tsan

demo: build
	./demo-services/demo.sh $(BUILD)

# Benchmarks run on a Release build of their own; BENCH_ARGS=--quick for a one-minute run.
BUILD_RELEASE ?= build-release
BENCH_ARGS    ?=
$(BUILD_RELEASE)/CMakeCache.txt:
	cmake -S . -B $(BUILD_RELEASE) -DCMAKE_BUILD_TYPE=Release -DFL_BUILD_TESTS=OFF

bench: deps-apt $(BUILD_RELEASE)/CMakeCache.txt
	cmake --build $(BUILD_RELEASE) -j $(JOBS)
	./tools/bench/run.sh $(BUILD_RELEASE) $(BENCH_ARGS)

# libFuzzer targets (clang, ASan + UBSan); FUZZ_SECONDS per target.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 2
$(FUZZ_BUILD)/CMakeCache.txt:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFL_FUZZ=ON \
	  -DFL_BUILD_TESTS=OFF -DFL_SANITIZE=address,undefined

fuzz-build: deps-apt $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) --target fuzz-targets -j $(JOBS)

fuzz: fuzz-build
	FUZZ_JOBS=$(FUZZ_JOBS) tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Root-cause accuracy and time to detect on the scenario suite, then on the Nezha data.
eval: build
	./tools/eval/scenarios.sh $(BUILD)

# One table: fuzzing, bad inputs, kill -9 survival, overload, sanitizers, valgrind.
# Run `make test` first (for the ASan log); the fuzz targets are built here.
reliability: build build-asan fuzz-build
	FUZZ_BUILD=$(FUZZ_BUILD) ASAN_BUILD=$(BUILD_ASAN) ./tools/reliability/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) $(BUILD_RELEASE) $(FUZZ_BUILD)
