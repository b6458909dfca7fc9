#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run.sh BUILD_DIR [--quick]: one faultline benchmark run (ingest, reads, disk) plus the two
# ceilings, printed as one table. Builds nothing: `make bench` builds Release first.
# FAULTLINE=/path/to/faultline overrides the server binary (default BUILD_DIR/faultline).
set -euo pipefail

BUILD=${1:?usage: run.sh BUILD_DIR [--quick]}
QUICK=0
[[ ${2:-} == --quick ]] && QUICK=1
FL=${FAULTLINE:-$BUILD/faultline}
BENCH=$BUILD/faultline-bench
for b in "$FL" "$BENCH"; do
    [[ -x $b ]] || { echo "run.sh: $b not found (build it first)" >&2; exit 1; }
done

if ((QUICK)); then
    D=5; W=1; DS=3; DS2=2; RD=6; SQ=8; DEC=4; R10=1000000; R50=3000000         # ~1.5 minutes
else
    D=45; W=3; DS=30; DS2=15; RD=30; SQ=90; DEC=20; R10=10000000; R50=50000000 # ~10 minutes
fi
# Live spans sent to a prefilled server before its reads, so that the analysis has series
# for /aiops/metrics; the prefill stops this much short of R10 / R50.
WARM=20000

TMP=$(mktemp -d /tmp/faultline-bench.XXXXXX)
SPID=
cleanup() {
    if [[ -n $SPID ]] && kill -0 "$SPID" 2>/dev/null; then
        kill -TERM "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    fi
    [[ -n ${BENCH_KEEP:-} ]] && cp "$TMP"/*.out "$BENCH_KEEP"/ 2>/dev/null; rm -rf "$TMP"
}
trap cleanup EXIT

say() { echo "[bench] $*" >&2; }
get() { sed -n "s/^$2=//p" "$TMP/$1.out" | head -1; }
num() { [[ -n ${1:-} && $1 != nan && $1 != -nan ]] && echo "$1" || echo 0; }
mega() { awk -v v="$(num "$1")" 'BEGIN {printf "%.2fM", v / 1e6}'; }

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
echo "machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $mem RAM, $(uname -sr)"
echo "command: tools/bench/run.sh $BUILD$( ((QUICK)) && echo ' --quick'); load generator on the same machine"

# ---------------------------------------------------------------- server
HWM=0
port() { sed -n "s/.*\"$1\":[[:space:]]*\([0-9]*\).*/\1/p" "$TMP/ports.json"; }
start_server() { # DB_DIR: faultline on ephemeral ports; sets SPID HTTP GRPC API
    mkdir -p "$1"
    rm -f "$TMP/ports.json"
    "$FL" serve --otlp-http 127.0.0.1:0 --otlp-grpc 127.0.0.1:0 --api 127.0.0.1:0 \
        --db "$1/faultline.db" --port-file "$TMP/ports.json" >>"$TMP/server.log" 2>&1 &
    SPID=$!
    # Opening a big store loads its filters and rebuilds the dedup window: allow a minute.
    for _ in $(seq 600); do
        [[ -s $TMP/ports.json ]] && break
        kill -0 "$SPID" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
        sleep 0.1
    done
    HTTP=$(port otlp-http); GRPC=$(port otlp-grpc); API=$(port api)
    [[ -n $HTTP && -n $GRPC && -n $API ]] || { echo "run.sh: bad port file" >&2; exit 1; }
    say "faultline pid $SPID: otlp-http $HTTP, otlp-grpc $GRPC, api $API"
}

# Wait until the writer has committed everything queued; spans stored into STORED.
drain() {
    STORED=0
    for _ in $(seq 100); do
        local st q
        st=$(curl -s "http://127.0.0.1:$API/aiops/status" || true)
        q=$(sed -n 's/.*"queue_spans":[[:space:]]*\([0-9]*\).*/\1/p' <<<"$st")
        STORED=$(sed -n 's/.*"spans_stored":[[:space:]]*\([0-9]*\).*/\1/p' <<<"$st")
        [[ ${q:-1} == 0 ]] && break
        sleep 0.2
    done
}

stop_server() { # SIGTERM; HWM keeps the largest VmHWM of every server run
    local h
    h=$(awk '/VmHWM/ {print $2}' "/proc/$SPID/status")
    HWM=$((${h:-0} > HWM ? ${h:-0} : HWM))
    kill -TERM "$SPID"
    wait "$SPID" || true
    SPID=
}

ingest() { # name port args...
    local name=$1 p=$2
    shift 2
    say "$name"
    "$BENCH" ingest --port "$p" --pid "$SPID" --warmup "$W" "$@" >"$TMP/$name.out"
}

reads() { # name ids-file
    say "$1"
    "$BENCH" reads --port "$API" --ids "$2" --duration "$RD" >"$TMP/$1.out"
}

prefill() { # name target-spans: the server is stopped; fills $TMP/db2 through the store API
    say "$1: prefill to $(mega "$2") spans stored (store API)"
    mkdir -p "$TMP/db2"
    "$BENCH" prefill --db "$TMP/db2/faultline.db" --stored "$2" --ids-out "$TMP/$1.ids" \
        >"$TMP/$1.out"
}

warm() { # a little live traffic, then let it commit: STORED is the count the reads see
    "$BENCH" ingest --port "$HTTP" --transport http --conns 4 --warmup 0.5 --duration 1.5 \
        --rate 10000 >"$TMP/warm.out"
    drain
}

# ---- 1. an empty store: every ingest phase, then disk per span.
start_server "$TMP/db"
ingest http "$HTTP" --transport http --conns 8 --duration "$D"
MAX=$(num "$(get http spans_per_s)")
ingest grpc "$GRPC" --transport grpc --conns 8 --duration "$D"
ingest json "$HTTP" --transport json --conns 8 --duration "$D"
ingest small "$HTTP" --transport http --spans 100 --conns 32 --duration "$D" --pool 256
RATE80=$(awk -v m="$MAX" 'BEGIN {printf "%.0f", m * 0.8}')
ingest fixed "$HTTP" --transport http --conns 24 --duration "$D" --rate "$((RATE80 > 1000 ? RATE80 : 1000))"
RATE3=$(awk -v m="$MAX" 'BEGIN {printf "%.0f", m * 3}')
ingest overload "$HTTP" --transport http --conns 48 --duration "$DS" --rate "$((RATE3 > 3000 ? RATE3 : 3000))" --backoff 0
# The same overload over gRPC and OTLP/JSON, each at 3x its own max rate (shorter runs).
for t in grpc json; do
    r=$(awk -v m="$(num "$(get $t spans_per_s)")" 'BEGIN {printf "%.0f", m * 3}')
    ingest "overload_$t" "$([[ $t == grpc ]] && echo "$GRPC" || echo "$HTTP")" --transport "$t" \
        --conns 48 --duration "$DS2" --rate "$((r > 3000 ? r : 3000))" --backoff 0
done
drain
stored=$STORED
stop_server
DISK=$(du -sb "$TMP/db" | cut -f1)
rm -rf "$TMP/db"

# ---- 2. reads at R10 spans stored, in a second database filled through the store API.
prefill pre10 $((R10 - WARM))
start_server "$TMP/db2"
warm
N10=$STORED
reads reads10 "$TMP/pre10.ids"
stop_server

# ---- 3. the same database filled up to R50: reads, then the empty store's HTTP phase again.
prefill pre50 $((R50 - WARM))
start_server "$TMP/db2"
warm
N50=$STORED
cat "$TMP/pre10.ids" "$TMP/pre50.ids" >"$TMP/all.ids"
reads reads50 "$TMP/all.ids"
ingest http50 "$HTTP" --transport http --conns 8 --duration "$D"
drain
stop_server
rm -rf "$TMP/db2"

# ---------------------------------------------------------------- ceilings (server stopped)
say "ceiling: row-per-span SQLite"
"$BENCH" sqlite --dir "$TMP" --duration "$SQ" >"$TMP/sqlite.out"
say "ceiling: protobuf-c decode"
"$BENCH" decode --duration "$DEC" >"$TMP/decode.out"

# ---------------------------------------------------------------- table
row() { printf '| %-46s | %17s | %12s |\n' "$1" "$2" "$3"; }
k() { awk -v v="$(num "$1")" -v d="${2:-1}" 'BEGIN {printf "%.0fk", v / 1000 / d}'; }
ms() { printf '%s / %s' "$(get "$1" "${2:+$2_}p50_ms")" "$(get "$1" "${2:+$2_}p99_ms")"; }
mib() { awk -v v="$(num "$1")" 'BEGIN {printf "%.0f MiB", v / 1024}'; }

echo
row "metric" "faultline" "target"
row "----------------------------------------------" "-----------------" "------------"
row "OTLP/HTTP protobuf, 1000-span req: spans/s" "$(k "$MAX")" ">= 300k"
row "  spans per CPU-second (faultline process)" "$(k "$(get http spans_per_cpu_s)")" ">= 250k"
row "  request latency p50 / p99 ms (max rate)" "$(ms http)" ""
row "OTLP/gRPC, 1000-span: spans/s" "$(k "$(get grpc spans_per_s)")" "within 10 %"
row "  latency p50 / p99 ms" "$(ms grpc)" ""
row "OTLP/JSON, 1000-span: spans/s" "$(k "$(get json spans_per_s)")" ">= 100k"
row "OTLP/HTTP protobuf, 100-span req: spans/s" "$(k "$(get small spans_per_s)")" ">= 200k"
row "fixed rate at 80 % of max: achieved spans/s" "$(k "$(get fixed spans_per_s)")" "$(k "$RATE80")"
row "  latency p50 / p99 ms (from schedule)" "$(ms fixed)" "p99 <= 50"
row "3x overload: offered / acknowledged spans/s" \
    "$(k "$(get overload offered_spans_per_s)") / $(k "$(get overload spans_per_s)")" ""
row "  503 answers / transport errors" \
    "$(get overload refused_503) / $(get overload errors)" "503s > 0"
row "  peak RSS during overload (VmRSS max)" "$(mib "$(get overload rss_max_kb)")" "<= 256 MiB"
row "3x overload, gRPC / JSON: acknowledged spans/s" \
    "$(k "$(get overload_grpc spans_per_s)") / $(k "$(get overload_json spans_per_s)")" ""
row "  refusals (UNAVAILABLE / 503), gRPC / JSON" \
    "$(get overload_grpc refused_503) / $(get overload_json refused_503)" "> 0"
row "  peak RSS (VmRSS max), gRPC / JSON" \
    "$(mib "$(get overload_grpc rss_max_kb)") / $(mib "$(get overload_json rss_max_kb)")" \
    "<= 256 MiB"
row "peak RSS, every server run (VmHWM)" "$(mib "$HWM")" "<= 256 MiB"
row "disk bytes per span ($stored stored)" \
    "$(awk -v d="$DISK" -v s="$(num "$stored")" 'BEGIN {printf (s ? "%.0f" : "n/a"), d / (s ? s : 1)}')" \
    "<= 60"
read_rows() { # name stored-count target-or-empty
    row "reads at $(mega "$2") stored:" "" ""
    row "  trace by id p50 / p99 ms" "$(ms "$1" trace)" "${3:+p99 <= 5}"
    row "  search service+time+min_duration p50/p99 ms" "$(ms "$1" search)" "${3:+<= 100}"
    if [[ -n $(get "$1" metrics_note) ]]; then
        row "  /aiops/metrics p50 / p99 ms" "absent (404)" "${3:+<= 50}"
    else
        row "  /aiops/metrics p50 / p99 ms" "$(ms "$1" metrics)" "${3:+<= 50}"
    fi
}
read_rows reads10 "$N10" target
read_rows reads50 "$N50" ""
ratio() { awk -v a="$(num "$1")" -v b="$(num "$2")" 'BEGIN {printf (b ? "%.2fx" : "n/a"), a / (b ? b : 1)}'; }
row "ingest at $(mega "$N50") stored: spans/s (vs empty)" \
    "$(k "$(get http50 spans_per_s)") ($(ratio "$(get http50 spans_per_s)" "$MAX"))" ">= 0.80x"
row "  spans per CPU-second (vs empty)" \
    "$(k "$(get http50 spans_per_cpu_s)") ($(ratio "$(get http50 spans_per_cpu_s)" "$(get http spans_per_cpu_s)"))" ""
row "ceiling: SQLite row-per-span rows/s" \
    "$(k "$(get sqlite rowstore_rows_per_s)") (end $(k "$(get sqlite rowstore_rows_per_s_last20pct)"))" "~100k"
row "  SQLite bytes per span" "$(get sqlite rowstore_bytes_per_span)" "~350"
row "ceiling: protobuf-c decode spans/CPU-s" \
    "$(k "$(get decode decode_malloc_spans_per_cpu_s)") (arena $(k "$(get decode decode_arena_spans_per_cpu_s)"))" \
    "350-420k"
row "faultline / row-store ceiling (spans/s)" "$(ratio "$MAX" "$(get sqlite rowstore_rows_per_s)")" ">= 3x"
row "faultline / decode ceiling (per CPU-s)" \
    "$(ratio "$(get http spans_per_cpu_s)" "$(get decode decode_malloc_spans_per_cpu_s)")" ""
echo
echo "CPU at max rate (HTTP protobuf): faultline $(get http server_cpu_util) cores," \
    "load generator $(get http client_cpu_util) cores"
echo "request wire size:" \
    "$(get http bytes_per_span_wire) B/span (protobuf), $(get json bytes_per_span_wire) B/span (JSON)"
for p in pre10 pre50; do
    echo "prefill to $(mega "$(get $p prefill_spans_stored)"): $(get $p prefill_spans_added) spans" \
        "in $(get $p prefill_s) s ($(k "$(get $p prefill_spans_per_s)") spans/s)"
done
echo "wall time: $SECONDS s"
