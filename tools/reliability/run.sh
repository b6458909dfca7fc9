#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The reliability report (`make reliability`): runs the full-length reliability checks and
# prints one table: fuzz executions and crashes per target, bad inputs and how each was
# answered, kills survived and acknowledged spans lost, overload held, sanitizer findings.
#
# usage: tools/reliability/run.sh BUILD_DIR
#   BUILD_DIR     a built (Release or RelWithDebInfo) tree: the e2e tests run from it
# environment:
#   FUZZ_BUILD    libFuzzer build (default build-fuzz; -DFL_FUZZ=ON); skipped when absent
#   FUZZ_SECONDS  per fuzz target (default 60)
#   FL_CRASH_KILLS     SIGKILLs in the crash test (default 50)
#   FL_OVERLOAD_SECONDS  overload phase (default 60)
#   ASAN_BUILD    sanitizer build whose last ctest log is searched (default build-asan)
# Exits non-zero when any check failed. Logs go to BUILD_DIR/reliability/.
set -u

BUILD=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
FUZZ_BUILD=${FUZZ_BUILD:-$SRC/build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
ASAN_BUILD=${ASAN_BUILD:-$SRC/build-asan}
export FL_CRASH_KILLS=${FL_CRASH_KILLS:-50}
export FL_OVERLOAD_SECONDS=${FL_OVERLOAD_SECONDS:-60}
LOG="$BUILD/reliability"
mkdir -p "$LOG"
ROWS="$LOG/rows.txt"
: > "$ROWS"
bad=0
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$ROWS"; }

# ---------------------------------------------------------------- fuzzing
if [ -x "$FUZZ_BUILD/fuzz_otlp_traces" ]; then
    echo "fuzzing every target for ${FUZZ_SECONDS}s ..." >&2
    "$SRC/tests/fuzz/run.sh" "$FUZZ_BUILD" "$FUZZ_SECONDS" > "$LOG/fuzz.txt" 2> "$LOG/fuzz.err" || bad=1
    # run.sh prints: target executions crashes replay
    awk 'NR > 1 && NF >= 4 { printf "fuzz\t%s\t%s execs, %s crashes, regressions %s\n", $1, $2, $3, $4 }' \
        "$LOG/fuzz.txt" >> "$ROWS"
else
    row fuzz "(all targets)" "not run: no fuzz build at $FUZZ_BUILD (cmake -DFL_FUZZ=ON, CC=clang)"
fi

# ---------------------------------------------------------------- bad inputs
answer() {
    case $1 in
    test_e2e_errors_unknown_path) echo "404 + message" ;;
    test_e2e_errors_wrong_method) echo "405 naming POST" ;;
    test_e2e_errors_wrong_content_type) echo "415 + message" ;;
    test_e2e_errors_malformed_protobuf) echo "400 naming the decode error" ;;
    test_e2e_errors_malformed_json) echo "400 naming the JSON error" ;;
    test_e2e_errors_bad_encoding) echo "400 (bad gzip, unknown br)" ;;
    test_e2e_errors_too_large) echo "413, gzip bomb not inflated past the limit" ;;
    test_e2e_errors_partial_success) echo "200 + partialSuccess, rejected spans counted" ;;
    test_e2e_errors_logs_and_metrics) echo "accepted/answered per OTLP, traces untouched" ;;
    test_e2e_errors_overload) echo "503 + Retry-After before the body is read" ;;
    test_e2e_errors_api_parameters) echo "400 naming the parameter" ;;
    test_e2e_grpc_garbage_frame) echo "connection error, nothing stored" ;;
    test_e2e_grpc_bad_framing) echo "INTERNAL / INVALID_ARGUMENT, nothing stored" ;;
    test_e2e_grpc_too_large) echo "RESOURCE_EXHAUSTED" ;;
    test_e2e_grpc_unknown_method) echo "UNIMPLEMENTED naming the method" ;;
    test_e2e_grpc_wrong_content_type) echo "refused, nothing stored" ;;
    test_e2e_grpc_thousand_streams) echo "streams capped, all answered" ;;
    test_e2e_grpc_disconnect_mid_stream) echo "stream dropped, nothing stored" ;;
    test_e2e_grpc_silent_clients) echo "idle clients closed, others served" ;;
    *) echo "as asserted by the test" ;;
    esac
}
for t in test_e2e_errors test_e2e_grpc; do
    echo "running $t ..." >&2
    "$BUILD/$t" > "$LOG/$t.txt" 2>&1 || bad=1
    sed -n 's/^\[ *\(OK\|FAILED\) *\] \(test_e2e_[a-z0-9_]*\).*/\1 \2/p' "$LOG/$t.txt" | sort -u -k2,2 |
        while read -r res name; do
            case $name in *_ok | *_export_ok | *_h2c_curl) continue ;; esac
            if [ "$res" = OK ]; then r=$(answer "$name"); else r="FAILED (see $LOG/$t.txt)"; fi
            row "bad input" "${name#test_e2e_}" "$r"
        done
done

# ---------------------------------------------------------------- crash consistency
echo "running test_e2e_crash with $FL_CRASH_KILLS kills ..." >&2
if "$BUILD/test_e2e_crash" > "$LOG/crash.txt" 2>&1; then lost=0; else lost="FAILED"; bad=1; fi
kills=$(sed -n 's/.*\b\([0-9][0-9]*\) kills in \([0-9]*\) ms.*/\1 kills in \2 ms/p' "$LOG/crash.txt" | head -1)
acked=$(sed -n 's/.*spans: \([0-9]*\) acknowledged.*/\1/p' "$LOG/crash.txt" | head -1)
term=$(sed -n 's/.*SIGTERM under load: \(exit [0-9]* after [0-9]* ms\).*/\1/p' "$LOG/crash.txt" | head -1)
row "kill -9" "${kills:-no run}" "acknowledged spans ${acked:-?}, lost $lost, integrity ok: $([ "$lost" = 0 ] && echo yes || echo no)"
row "SIGTERM under load" "${term:-no run}" "lost $lost"

# ---------------------------------------------------------------- overload
echo "running test_e2e_overload for ${FL_OVERLOAD_SECONDS}s ..." >&2
if "$BUILD/test_e2e_overload" > "$LOG/overload.txt" 2>&1; then held=held; else held=FAILED; bad=1; fi
o=$(sed -n 's/^overload: //p' "$LOG/overload.txt" | head -1)
row overload "${FL_OVERLOAD_SECONDS}s, 64 conns at 3x measured capacity" "$held: ${o:-no summary}"

# ---------------------------------------------------------------- sanitizers and valgrind
ALOG="$ASAN_BUILD/Testing/Temporary/LastTest.log"
if [ -f "$ALOG" ]; then
    n=$(grep -cE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer' "$ALOG")
    tests=$(grep -c '^[0-9]*/[0-9]* Testing:' "$ALOG")
    row sanitizers "ASan+UBSan, $tests tests ($(date -r "$ALOG" +%F))" "$n findings"
    [ "$n" = 0 ] || bad=1
else
    row sanitizers "ASan+UBSan" "no ctest log at $ALOG (run make test-asan first)"
fi
echo "running test_e2e_valgrind ..." >&2
if "$BUILD/test_e2e_valgrind" > "$LOG/valgrind.txt" 2>&1; then
    v=$(grep -q 'valgrind: skipped' "$LOG/valgrind.txt" && sed -n 's/^valgrind: //p' "$LOG/valgrind.txt" | head -1 || echo "0 errors, 0 definite leaks")
else
    v="FAILED (see $LOG/valgrind.txt)"
    bad=1
fi
row valgrind "server: fixtures replay + API + SIGTERM" "$v"

# ---------------------------------------------------------------- the table
awk -F'\t' '
{ a[NR] = $1; b[NR] = $2; c[NR] = $3; if (length($1) > w1) w1 = length($1); if (length($2) > w2) w2 = length($2) }
END {
    printf "| %-*s | %-*s | %s |\n", w1, "check", w2, "what", "result"
    printf "|%s|%s|---|\n", sprintf("%*s", w1 + 2, "") , sprintf("%*s", w2 + 2, "")
    for (i = 1; i <= NR; i++) printf "| %-*s | %-*s | %s |\n", w1, a[i], w2, b[i], c[i]
}' "$ROWS" | sed '2s/ /-/g'
exit $bad
