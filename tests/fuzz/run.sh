#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Run every libFuzzer target under ASan/UBSan: first replay the committed regression inputs
# (tests/fuzz/regressions/<target>/*), then fuzz each target for SECONDS starting from seed
# corpora generated here from tests/data/fixtures (nothing big is committed). Prints one
# table (target, executions, crashes) and exits non-zero on any crash or failed replay.
#
# usage: tests/fuzz/run.sh BUILD_DIR [SECONDS]
#   BUILD_DIR  configured with CC=clang -DFL_FUZZ=ON -DFL_SANITIZE=address,undefined and
#              built (cmake --build BUILD_DIR --target fuzz-targets)
#   SECONDS    per target, default 60
# environment: FUZZ_TARGETS (space-separated subset), FUZZ_JOBS (targets run at once,
#              default 1), FUZZ_MERGE=1 (minimise each work corpus with -merge=1 afterwards)
# Output under BUILD_DIR/fuzz/: seeds/<t> (regenerated each run), corpus/<t> (kept between
# runs: what the fuzzer found), artifacts/<t> (crash-*, leak-*, timeout-*, oom-*), <t>.log.
set -u

BUILD=${1:?usage: run.sh BUILD_DIR [SECONDS]}
SECS=${2:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
FIX="$SRC/tests/data/fixtures"
OUT="$BUILD/fuzz"
JOBS=${FUZZ_JOBS:-1}
ALL="fuzz_otlp_traces fuzz_otlp_json fuzz_decompress fuzz_http1_req fuzz_h2_server
fuzz_grpc_frame fuzz_api_query fuzz_traceparent"
TARGETS=${FUZZ_TARGETS:-$ALL}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

for t in $TARGETS; do
    if [ ! -x "$BUILD/$t" ]; then
        echo "run.sh: $BUILD/$t missing: build with -DFL_FUZZ=ON --target fuzz-targets" >&2
        exit 2
    fi
done

# ---------------------------------------------------------------- seed corpora
rm -rf "$OUT/seeds"
mkdir -p "$OUT/seeds" "$OUT/corpus" "$OUT/artifacts"
seed() { mkdir -p "$OUT/seeds/$1"; cat > "$OUT/seeds/$1/$2"; }
for t in $TARGETS; do mkdir -p "$OUT/seeds/$t"; done

# bodies, without the ~2 MB big_batch (it slows every mutation down)
for f in "$FIX"/http-protobuf/*.body; do
    case $f in *big_batch*) continue ;; esac
    b=$(basename "$f" .body)
    case $b in *.gz) ;; *) seed fuzz_otlp_traces "$b.pb" < "$f" ;; esac
done
for f in "$FIX"/http-json/*.body; do
    case $f in *big_batch*) continue ;; esac
    b=$(basename "$f" .body)
    case $b in *.gz) ;; *) seed fuzz_otlp_json "$b.json" < "$f" ;; esac
done
# gRPC messages with their prefix (the gzip ones have flag 1); the 80 KB plain ones do not
# fit the target's 60000-byte cap, so only the small plain one
for f in "$FIX"/grpc/*.gz.body "$FIX"/grpc/edge_numbers.body; do
    case $f in *big_batch*) continue ;; esac
    seed fuzz_grpc_frame "$(basename "$f")" < "$f"
done
# transcripts
for f in "$FIX"/wire/http-json/*.c2s.bin "$FIX"/wire/http-protobuf/*.c2s.bin; do
    seed fuzz_http1_req "$(basename "$(dirname "$f")")-$(basename "$f")" < "$f"
done
for f in "$FIX"/wire/grpc/*.c2s.bin; do seed fuzz_h2_server "$(basename "$f")" < "$f"; done
printf 'GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /a?b=c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' |
    seed fuzz_http1_req pipelined
printf 'POST /v1/traces HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n' |
    seed fuzz_http1_req chunked_trailer
printf 'POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello' |
    seed fuzz_http1_req early_answer
printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n' |
    seed fuzz_http1_req upgrade_h2c
# decompress: first byte = encoding index | bound index << 3 (see fuzz_decompress.c);
# bound index 7 = 4 MiB
for f in "$FIX"/http-json/edge_numbers.gz.body "$FIX"/http-protobuf/healthy.gz.body; do
    { printf '\071'; cat "$f"; } | seed fuzz_decompress "gzip-$(basename "$f")"
    { printf '\021'; cat "$f"; } | seed fuzz_decompress "gzip-bound17-$(basename "$f")"
done
{ printf '\070'; cat "$FIX/http-json/edge_numbers.body"; } | seed fuzz_decompress identity
if command -v zstd > /dev/null; then
    { printf '\073'; zstd -q -c < "$FIX/http-json/edge_numbers.body"; } | seed fuzz_decompress zstd
fi
if command -v python3 > /dev/null; then
    python3 - "$OUT/seeds/fuzz_decompress" "$FIX/http-json/edge_numbers.body" <<'PY'
import sys, zlib, struct
out, body = sys.argv[1], open(sys.argv[2], "rb").read()[:600]
def w(name, sel, data): open(f"{out}/{name}", "wb").write(bytes([sel]) + data)
w("deflate-zlib", 2 | 7 << 3, zlib.compress(body))
co = zlib.compressobj(wbits=-15); w("deflate-raw", 2 | 7 << 3, co.compress(body) + co.flush())
def varint(n):
    o = bytearray()
    while True:
        b = n & 0x7F; n >>= 7
        if n: o.append(b | 0x80)
        else: o.append(b); return bytes(o)
def lit(d):  # one literal element
    n = len(d) - 1
    if n < 60: return bytes([n << 2]) + d
    if n < 256: return bytes([60 << 2, n]) + d
    return bytes([61 << 2]) + struct.pack("<H", n) + d
# block: 64 literal bytes, then a 2-byte-offset copy of 64 bytes from 64 back
blk = varint(len(body[:64]) * 2) + lit(body[:64]) + bytes([(64 - 1) << 2 | 2]) + struct.pack("<H", 64)
w("snappy-block", 4 | 7 << 3, blk)
def crc32c(d):
    c = 0xFFFFFFFF
    for b in d:
        c ^= b
        for _ in range(8): c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    c ^= 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
def chunk(t, d): return bytes([t]) + struct.pack("<I", len(d))[:3] + d
framed = chunk(0xFF, b"sNaPpY") + chunk(0x01, struct.pack("<I", crc32c(body)) + body)
framed += chunk(0x00, struct.pack("<I", crc32c(body[:64] * 2)) + blk)
w("snappy-framed", 5 | 7 << 3, framed)
w("snappy-framed-as-snappy", 4 | 7 << 3, framed)
PY
fi
for q in '/api/traces?service=checkout&operation=GET%20%2Fcart&start=2026-11-30T00:00:00Z&end=1764460800000000000&min_duration_ms=1.5&errors=true&limit=20' \
    '/api/traces/0af7651916cd43dd8448eb211c80319c' '/api/traces?trace_id=0AF7651916CD43DD8448EB211C80319C&limit=0' \
    '/health' '/aiops/status?x' '/api/services' 'POST /api/traces' \
    '/fuzz/svc%20a/ops/op+b?x=1&y=%41&z=a+b#frag' '/fuzz/%zz?a=1&a=2' '/api/traces?service=%00'; do
    printf '%s' "$q" | seed fuzz_api_query "q$(printf '%s' "$q" | cksum | cut -d' ' -f1)"
done
printf '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' | seed fuzz_traceparent valid
printf '  01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-extra\t' | seed fuzz_traceparent v01
printf '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01|congo=t61rcWkgMzE, rojo=00f067aa0ba902b7,t@s=x' |
    seed fuzz_traceparent with_state
printf 'service.name=check%%20out,deployment.environment=dev, k = v ' | seed fuzz_traceparent resource_attrs

# ---------------------------------------------------------------- replay, then fuzz
# Longer seeds are truncated to this: 64 KiB keeps most of a fixture body (its first spans
# decode) while each execution stays cheap.
max_len() {
    case $1 in
    fuzz_otlp_traces | fuzz_otlp_json) echo 65536 ;;
    fuzz_http1_req | fuzz_h2_server | fuzz_decompress) echo 131072 ;;
    fuzz_grpc_frame) echo 60000 ;;
    *) echo 4096 ;;
    esac
}

run_one() {
    t=$1
    log="$OUT/$t.log"
    : > "$log"
    mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t"
    rm -f "$OUT/artifacts/$t"/*
    replay=ok
    reg="$HERE/regressions/$t"
    if [ -d "$reg" ] && [ -n "$(ls -A "$reg" 2> /dev/null)" ]; then
        if ! "$BUILD/$t" -runs=1 -rss_limit_mb=4096 "$reg"/* >> "$log" 2>&1; then
            replay=FAILED
        fi
    fi
    "$BUILD/$t" -max_total_time="$SECS" -max_len="$(max_len "$t")" -timeout=30 \
        -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t/" \
        "$OUT/corpus/$t" "$OUT/seeds/$t" >> "$log" 2>&1
    rc=$?
    if [ "${FUZZ_MERGE:-0}" = 1 ] && [ $rc -eq 0 ]; then
        mkdir -p "$OUT/corpus/$t.min"
        "$BUILD/$t" -merge=1 -max_len="$(max_len "$t")" "$OUT/corpus/$t.min" "$OUT/corpus/$t" \
            "$OUT/seeds/$t" >> "$log" 2>&1 &&
            rm -rf "$OUT/corpus/$t" && mv "$OUT/corpus/$t.min" "$OUT/corpus/$t"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=$(ls "$OUT/artifacts/$t" 2> /dev/null | wc -l)
    if [ $rc -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi # died without an artifact
    echo "$t ${execs:-0} $crashes $replay" > "$OUT/$t.result"
}

i=0
for t in $TARGETS; do
    echo "fuzzing $t for ${SECS}s ..." >&2
    run_one "$t" &
    i=$((i + 1))
    if [ $((i % JOBS)) -eq 0 ]; then wait; fi
done
wait

status=0
printf '%-18s %12s %8s %8s\n' target executions crashes replay
for t in $TARGETS; do
    set -- $(cat "$OUT/$t.result" 2> /dev/null || echo "$t 0 1 missing")
    printf '%-18s %12s %8s %8s\n' "$1" "$2" "$3" "$4"
    if [ "$3" != 0 ] || [ "$4" != ok ]; then
        status=1
        echo "  $t: see $OUT/$t.log and $OUT/artifacts/$t/" >&2
    fi
done
exit $status
