#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make eval: fault scenarios with known ground truth (faultline-load synthetic, fast-forwarded)
# against a real faultline each; prints AC@1, AC@3, time to detect and false incidents per
# hour of healthy traffic, then runs faultline-eval-nezha. Usage: scenarios.sh BUILD_DIR
# EVAL_ONLY="name ..." runs only those scenarios (and skips Nezha and the live runs);
# EVAL_KEEP=1 keeps the work directory (server logs, incident JSON) and prints it.
set -u
BUILD=${1:?usage: scenarios.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
TOPO=$SRC/tools/load/topologies/shop.json
WORK=$(mktemp -d /tmp/faultline-eval.XXXXXX)
RESULTS=$WORK/results.jsonl
SERVER_PID=
SEED=0
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    if [ "${EVAL_KEEP:-0}" = 1 ]; then echo "scenarios.sh: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

start_server() { # $1 = dir
    mkdir -p "$1"
    "$BUILD/faultline" serve --otlp-grpc off --otlp-http 127.0.0.1:0 --api 127.0.0.1:0 \
        --db "$1/f.db" --port-file "$1/ports.json" --log-level warn 2>"$1/server.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do [ -s "$1/ports.json" ] && break; sleep 0.1; done
    HTTP_PORT=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["otlp-http"])' "$1/ports.json")
    API_PORT=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["api"])' "$1/ports.json")
}

stop_server() {
    kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}

# run NAME DURATION_MIN EXPECTED ("svc[+svc]" or "-" for healthy) FAULT...
run() {
    local name=$1 dur=$2 expect=$3
    shift 3
    local dir=$WORK/$name now start args=()
    SEED=$((SEED + 101)) # per scenario, the same whichever scenarios run
    [ -n "${EVAL_ONLY:-}" ] && [[ " $EVAL_ONLY " != *" $name "* ]] && return
    now=$(date +%s)
    start=$(((now - dur * 60 - 600) / 60 * 60))
    for f in "$@"; do args+=(--fault "$f"); done
    start_server "$dir"
    if ! "$BUILD/faultline-load" synthetic --topology "$TOPO" --endpoint "http://127.0.0.1:$HTTP_PORT" \
        --start "${start}000000000" --duration "${dur}m" --seed "$SEED" --quiet \
        --truth "$dir/truth.json" "${args[@]}" >"$dir/load.log" 2>&1; then
        echo "  $name: faultline-load failed: $(tail -1 "$dir/load.log")" >&2
    fi
    curl -sf -X POST "http://127.0.0.1:$API_PORT/aiops/analyze?until=$(((start + dur * 60) * 1000000000))" >/dev/null
    curl -sf "http://127.0.0.1:$API_PORT/aiops/incidents?status=all" >"$dir/incidents.json"
    curl -sf "http://127.0.0.1:$API_PORT/aiops/status" >"$dir/status.json"
    stop_server
    python3 - "$name" "$expect" "$dur" "$dir/truth.json" "$dir/incidents.json" >>"$RESULTS" <<'PY'
import json, sys
name, expect, dur, truth_p, inc_p = sys.argv[1:]
incs = json.load(open(inc_p))["incidents"]
try:
    faults = json.load(open(truth_p)).get("faults", [])
except Exception:
    faults = []
out = {"name": name, "minutes": int(dur), "incidents": len(incs), "faults": []}
if expect == "-":
    out["healthy"] = True
else:
    want = expect.split("+")
    for i, svc in enumerate(want):
        fs = faults[i]["start_unix_nano"] if i < len(faults) else faults[0]["start_unix_nano"]
        fs = int(fs)
        best = None  # the incident naming svc first, else the first holding it in its top 3
        for inc in sorted(incs, key=lambda x: int(x["first_detected_unix_nano"])):
            c = [x["service"] for x in inc["candidates"]]
            if c[:1] == [svc]:
                best = (inc, 1); break
            if svc in c[:3] and best is None:
                best = (inc, 3)
        r = {"service": svc, "ac1": 0, "ac3": 0, "ttd_s": None,
             "got": [x["root_cause"]["service"] for x in incs if x.get("root_cause")]}
        if best:
            inc, rank = best
            r["ac1"] = int(rank == 1)
            r["ac3"] = 1
            r["ttd_s"] = (int(inc["first_detected_unix_nano"]) - fs) / 1e9
        out["faults"].append(r)
    # incidents whose root cause is no expected service are false alarms of a fault run
    out["extra"] = sum(1 for x in incs if not x.get("root_cause") or x["root_cause"]["service"] not in want)
print(json.dumps(out))
PY
    tail -1 "$RESULTS" | python3 -c '
import json,sys; r=json.load(sys.stdin)
if r.get("healthy"): print("  %-28s healthy %3d min: %d incidents" % (r["name"], r["minutes"], r["incidents"]))
for f in r["faults"]:
    print("  %-28s %-10s AC@1=%d AC@3=%d ttd=%s got=%s extra=%d" % (r["name"], f["service"], f["ac1"], f["ac3"],
          "%.0fs" % f["ttd_s"] if f["ttd_s"] is not None else "-", ",".join(f["got"]) or "-", r["extra"]))'
}

echo "faultline scenario suite (faultline-load synthetic, topology shop.json, default settings)"
F="start=30m,duration=5m"
run payment-latency 36 payment "kind=latency,target=payment.POST /charge,factor=5,$F"
run inventory-errors-80 36 inventory "kind=error,target=inventory.GET /stock,rate=0.8,$F"
run payment-errors-cascade 36 payment "kind=error,target=payment.POST /charge,rate=1,$F"
run payment-timeout 36 payment "kind=timeout,target=payment.POST /charge,$F"
run inventory-intermittent-30 36 inventory "kind=error,target=inventory.GET /stock,rate=0.3,$F"
run fraud-deep-cascade 36 fraud "kind=error,target=fraud.POST /score,rate=1,$F"
run stock-db-latency 36 stock-db "kind=latency,target=stock-db,factor=20,$F"
run frontend-traffic-drop 36 frontend "kind=drop,target=frontend.POST /checkout,$F"
run two-independent 36 "fraud+inventory" "kind=latency,target=fraud.POST /score,factor=10,$F" \
    "kind=error,target=inventory.GET /stock,rate=0.8,$F"
run healthy-1 60 - 
run healthy-2 60 -

python3 - "$RESULTS" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
fs = [f for r in rs for f in r["faults"]]
ttd = sorted(f["ttd_s"] for f in fs if f["ttd_s"] is not None)
def pct(p):
    if not ttd: return float("nan")
    k = min(len(ttd) - 1, max(0, int(round(p * (len(ttd) - 1)))))
    return ttd[k]
healthy = [r for r in rs if r.get("healthy")]
hours = sum(r["minutes"] for r in healthy) / 60.0
false = sum(r["incidents"] for r in healthy)
extra = sum(r.get("extra", 0) for r in rs if not r.get("healthy"))
print()
print("faults: %d   AC@1 = %.2f   AC@3 = %.2f" % (len(fs), sum(f["ac1"] for f in fs) / max(1, len(fs)),
      sum(f["ac3"] for f in fs) / max(1, len(fs))))
print("time to detect (event time, fault start -> first_detected): median %.0f s, p95 %.0f s" % (pct(0.5), pct(0.95)))
print("false incidents per hour of healthy traffic: %.2f (%d in %.1f h)" % (false / hours if hours else 0, false, hours))
print("extra incidents in fault runs (root cause not a faulted service): %d" % extra)
PY

[ -n "${EVAL_ONLY:-}" ] && exit 0
echo
echo "Nezha Online Boutique (faultline-eval-nezha):"
"$BUILD/faultline-eval-nezha"

# The same MVP scenarios against the live demo services (~4 min); EVAL_LIVE=0 skips them.
if [ "${EVAL_LIVE:-1}" != 0 ]; then
    echo
    "$SRC/tools/eval/live.sh" "$BUILD" || echo "live scenarios: infrastructure failure (see above)" >&2
fi
