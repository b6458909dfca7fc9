#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# live.sh BUILD_DIR: the MVP's three scenarios against the live demo services (real wall-clock
# traffic from faultline-load live), each on a fresh faultline + five services on free ports,
# plus a healthy control. Prints a table and AC@1, AC@3, median time to detect. Exit status is
# non-zero only when something could not be started or queried, never for a wrong answer.
#
# environment:
#   LIVE_RATE      checkouts per second per stack (default 20)
#   LIVE_WARMUP    seconds of healthy traffic before the fault (default 70; baselines need ~50)
#   LIVE_CONTROL   seconds of counted healthy traffic in the control run (default 120)
#   LIVE_PARALLEL  1 (default): the four runs at once on separate stacks (~4 min in all);
#                  0: one after another (~10 min)
#   LIVE_KEEP      1: keep the work directory (logs, databases, incident JSON) and print it
#   LIVE_ONLY      space-separated scenario names to run (default: all four)
#   LIVE_HOLD      seconds the fault stays on after the first incident appears (default 3)
set -u
BUILD=${1:?usage: live.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd) || exit 2
RATE=${LIVE_RATE:-20}
WARMUP=${LIVE_WARMUP:-70}
CONTROL=${LIVE_CONTROL:-120}
PARALLEL=${LIVE_PARALLEL:-1}
HOLD=${LIVE_HOLD:-3}
DETECT_TIMEOUT=90
RESOLVE_TIMEOUT=60
for bin in faultline faultline-load faultline-demo-checkout faultline-demo-payment \
    faultline-demo-inventory faultline-demo-fraud faultline-demo-stock; do
    [ -x "$BUILD/$bin" ] || { echo "live.sh: $BUILD/$bin is missing" >&2; exit 2; }
done
for t in curl python3; do
    command -v "$t" >/dev/null 2>&1 || { echo "live.sh: $t is needed" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/faultline-live.XXXXXX") || exit 2
PIDFILE=$WORK/pids # every process started, one "pid" a line (appended by the run subshells)
: >"$PIDFILE"
RUNS=()

cleanup() {
    trap '' INT TERM
    local p
    for p in "${RUNS[@]}"; do kill "$p" 2>/dev/null; done
    # newest first: load, then the services front to back, faultline last
    while read -r p; do kill "$p" 2>/dev/null; done < <(tac "$PIDFILE")
    sleep 0.5
    while read -r p; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done <"$PIDFILE"
    wait 2>/dev/null
    if [ "${LIVE_KEEP:-0}" = 1 ]; then echo "live.sh: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

json() { # FILE KEY: a top-level value of a small JSON file
    python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2" 2>/dev/null
}

# spawn DIR NAME CMD...: start in the background with a port file; sets PORT, or returns 1
spawn() {
    local dir=$1 name=$2 pid
    shift 2
    "$@" --port-file "$dir/$name.port" >"$dir/$name.log" 2>&1 &
    pid=$!
    echo "$pid" >>"$PIDFILE"
    for _ in $(seq 100); do
        [ -s "$dir/$name.port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ ! -s "$dir/$name.port" ]; then
        echo "$name did not start: $(tail -n 3 "$dir/$name.log" | tr '\n' ' ')"
        return 1
    fi
    sleep 0.1 # the port file may be mid-write
    return 0
}

# stack DIR: faultline + the five services + steady load; sets API, CHECKOUT
stack() {
    local dir=$1 http p
    mkdir -p "$dir"
    spawn "$dir" faultline "$BUILD/faultline" serve --otlp-grpc off --otlp-http 127.0.0.1:0 \
        --api 127.0.0.1:0 --db "$dir/f.db" --log-level warn || return 1
    http=$(json "$dir/faultline.port" otlp-http) || { echo "bad faultline port file"; return 1; }
    API=http://127.0.0.1:$(json "$dir/faultline.port" api)
    for _ in $(seq 100); do curl -fs -o /dev/null --max-time 1 "$API/health" && break; sleep 0.1; done
    curl -fs -o /dev/null --max-time 2 "$API/health" || { echo "faultline not healthy"; return 1; }
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$http OTEL_BSP_SCHEDULE_DELAY=1000
    unset OTEL_SERVICE_NAME OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    local -A url
    spawn "$dir" stock "$BUILD/faultline-demo-stock" --listen 127.0.0.1:0 --db "$dir/stock.db" \
        --log-level warn || return 1
    url[stock]=http://127.0.0.1:$(json "$dir/stock.port" port)
    spawn "$dir" fraud "$BUILD/faultline-demo-fraud" --listen 127.0.0.1:0 --log-level warn || return 1
    url[fraud]=http://127.0.0.1:$(json "$dir/fraud.port" port)
    spawn "$dir" inventory "$BUILD/faultline-demo-inventory" --listen 127.0.0.1:0 \
        --stock-url "${url[stock]}" --log-level warn || return 1
    url[inventory]=http://127.0.0.1:$(json "$dir/inventory.port" port)
    spawn "$dir" payment "$BUILD/faultline-demo-payment" --listen 127.0.0.1:0 \
        --fraud-url "${url[fraud]}" --log-level warn || return 1
    url[payment]=http://127.0.0.1:$(json "$dir/payment.port" port)
    spawn "$dir" checkout "$BUILD/faultline-demo-checkout" --listen 127.0.0.1:0 \
        --payment-url "${url[payment]}" --inventory-url "${url[inventory]}" --log-level warn || return 1
    CHECKOUT=http://127.0.0.1:$(json "$dir/checkout.port" port)
    for p in stock fraud inventory payment checkout; do
        [ "$p" = checkout ] && u=$CHECKOUT || u=${url[$p]}
        curl -fs -o /dev/null --max-time 2 "$u/health" || { echo "$p not healthy at $u"; return 1; }
    done
    "$BUILD/faultline-load" live --url "$CHECKOUT" --rate "$RATE" --concurrency 8 --duration 0 \
        --quiet >"$dir/load.log" 2>&1 &
    echo $! >>"$PIDFILE"
}

incidents() { # FILE: GET /aiops/incidents?status=all into FILE
    curl -fs --max-time 5 "$API/aiops/incidents?status=all" -o "$1"
}

# one run, in its own subshell so the runs can go side by side
run_scenario() {
    local name=$1 preset=$2 expect=$3 dir=$WORK/$1 out=$WORK/$1.json start i cleared=0
    mkdir -p "$dir"
    if ! stack "$dir" >"$dir/stack.err" 2>&1; then
        python3 -c 'import json,sys;print(json.dumps({"name":sys.argv[1],"infra":sys.argv[2]}))' \
            "$name" "$(tr '\n' ' ' <"$dir/stack.err")" >"$out"
        return
    fi
    sleep "$WARMUP"
    incidents "$dir/before.json" || { echo "{\"name\":\"$name\",\"infra\":\"API unreachable\"}" >"$out"; return; }
    start=$(date +%s%N)
    if [ "$preset" = - ]; then
        sleep "$CONTROL"
        incidents "$dir/after.json" || { echo "{\"name\":\"$name\",\"infra\":\"API unreachable\"}" >"$out"; return; }
    else
        curl -fs --max-time 5 -X POST "$CHECKOUT/simulate/preset/$preset" -o /dev/null ||
            { echo "{\"name\":\"$name\",\"infra\":\"preset $preset failed\"}" >"$out"; return; }
        for ((i = 0; i < DETECT_TIMEOUT; i++)); do
            sleep 1
            incidents "$dir/after.json" || continue
            python3 - "$dir/before.json" "$dir/after.json" <<'PY' && break
import json, sys
old = {x["id"] for x in json.load(open(sys.argv[1]))["incidents"]}
sys.exit(0 if [x for x in json.load(open(sys.argv[2]))["incidents"] if x["id"] not in old] else 1)
PY
        done
        # let the root cause settle for a few seconds (it is re-ranked on each analysis run)
        sleep "$HOLD"
        incidents "$dir/after.json" || { echo "{\"name\":\"$name\",\"infra\":\"API unreachable\"}" >"$out"; return; }
        curl -fs --max-time 5 -X POST "$CHECKOUT/simulate/clear" -o /dev/null ||
            { echo "{\"name\":\"$name\",\"infra\":\"clear failed\"}" >"$out"; return; }
        cleared=$(date +%s%N)
        for ((i = 0; i < RESOLVE_TIMEOUT; i += 2)); do
            incidents "$dir/end.json" &&
                python3 -c 'import json,sys;sys.exit(0 if all(x["status"]!="open" for x in json.load(open(sys.argv[1]))["incidents"]) else 1)' \
                    "$dir/end.json" && break
            sleep 2
        done
        incidents "$dir/end.json" || cp "$dir/after.json" "$dir/end.json"
    fi
    python3 - "$name" "$expect" "$start" "$cleared" "$dir/before.json" "$dir/after.json" \
        "${dir}/end.json" >"$out" <<'PY'
import json, os, sys
name, expect, start, cleared, before_p, after_p, end_p = sys.argv[1:]
start, cleared = int(start), int(cleared)
before = json.load(open(before_p))["incidents"]
after = json.load(open(after_p))["incidents"]
old = {x["id"] for x in before}
new = sorted((x for x in after if x["id"] not in old), key=lambda x: int(x["first_detected_unix_nano"]))
r = {"name": name, "expected": expect, "warmup_incidents": len(before), "new_incidents": len(new),
     "titles": [x.get("title", "?") for x in before + new]}
def ranking(inc):
    ranked = []
    for c in ([inc["root_cause"]] if inc.get("root_cause") else []) + inc.get("candidates", []):
        if c and c.get("service") and c["service"] not in ranked:
            ranked.append(c["service"])
    return ranked
if expect != "-" and new:
    # as scenarios.sh: the incident ranking the true service best (earliest on a tie); the
    # others whose root cause is another service are counted as extra incidents
    inc = min(new, key=lambda x: (ranking(x).index(expect) if expect in ranking(x) else 99,
                                  int(x["first_detected_unix_nano"])))
    ranked = ranking(inc)
    r["extra"] = sum(1 for x in new if x is not inc and ranking(x)[:1] != [expect])
    r["got"] = ranked[0] if ranked else "-"
    r["ranked"] = ranked[:5]
    r["rank"] = ranked.index(expect) + 1 if expect in ranked else None
    r["ttd_s"] = (int(inc["first_detected_unix_nano"]) - start) / 1e9
    end = {x["id"]: x for x in json.load(open(end_p))["incidents"]} if os.path.exists(end_p) else {}
    e = end.get(inc["id"], inc)
    r["status_end"] = e.get("status")
    if e.get("resolved_unix_nano") and cleared:
        r["resolved_after_clear_s"] = (int(e["resolved_unix_nano"]) - cleared) / 1e9
print(json.dumps(r))
PY
}

echo "faultline live scenarios (demo services + faultline-load live at $RATE req/s, warm-up ${WARMUP}s)"
START_ALL=$(date +%s)
SPECS=("latency_spike latency_spike payment" "error_storm error_storm inventory"
    "cascading_failure cascading_failure payment" "healthy_control - -")
NAMES=()
for spec in "${SPECS[@]}"; do
    read -r n p e <<<"$spec"
    [ -n "${LIVE_ONLY:-}" ] && [[ " $LIVE_ONLY " != *" $n "* ]] && continue
    NAMES+=("$n")
    if [ "$PARALLEL" = 1 ]; then
        run_scenario "$n" "$p" "$e" &
        RUNS+=($!)
    else
        run_scenario "$n" "$p" "$e"
    fi
done
for p in "${RUNS[@]}"; do wait "$p"; done
RUNS=()

python3 - "$WORK" "$CONTROL" "$(($(date +%s) - START_ALL))" "${NAMES[@]}" <<'PY'
import json, os, sys
work, control, took = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = sys.argv[4:]
rs = []
infra = False
for n in names:
    try:
        rs.append(json.load(open(os.path.join(work, n + ".json"))))
    except Exception as ex:
        rs.append({"name": n, "infra": "no result (%s)" % ex})
print("  %-18s %-10s %-10s %-5s %-7s %s" % ("scenario", "expected", "got", "rank", "ttd", "notes"))
faults = []
for r in rs:
    if "infra" in r:
        infra = True
        print("  %-18s INFRASTRUCTURE FAILURE: %s" % (r["name"], r["infra"]))
        continue
    if r["expected"] == "-":
        print("  %-18s %-10s %-10s %-5s %-7s %d incidents in %d s (+%d during warm-up)%s" % (
            r["name"], "(none)", "-", "-", "-", r["new_incidents"], control, r["warmup_incidents"],
            "".join("; " + t for t in r.get("titles", []))))
        continue
    faults.append(r)
    notes = "ranked %s" % ",".join(r.get("ranked", [])) if r.get("ranked") else "no incident in 90 s"
    if r.get("warmup_incidents"):
        notes += "; %d false during warm-up" % r["warmup_incidents"]
    if r.get("new_incidents", 0) > 1:
        notes += "; %d incidents (%d with another root cause)" % (r["new_incidents"], r.get("extra", 0))
    if "status_end" in r:
        notes += "; %s" % r["status_end"]
        if "resolved_after_clear_s" in r:
            notes += " %.0f s after clear" % r["resolved_after_clear_s"]
        else:
            notes += " %d s after clear" % 60
    print("  %-18s %-10s %-10s %-5s %-7s %s" % (r["name"], r["expected"], r.get("got", "-"),
          r.get("rank") or "-", "%.0fs" % r["ttd_s"] if "ttd_s" in r else "-", notes))
n = max(1, len(faults))
ac1 = sum(1 for r in faults if r.get("rank") == 1) / n
ac3 = sum(1 for r in faults if r.get("rank") and r["rank"] <= 3) / n
ttd = sorted(r["ttd_s"] for r in faults if "ttd_s" in r)
med = (ttd[len(ttd) // 2] if len(ttd) % 2 else (ttd[len(ttd) // 2 - 1] + ttd[len(ttd) // 2]) / 2) if ttd else float("nan")
if faults:
    print("live: AC@1 = %.2f   AC@3 = %.2f   median time to detect %.0f s (wall clock = event time)   [%s s]"
          % (ac1, ac3, med, took))
else:
    print("live: no fault scenario run   [%s s]" % took)
sys.exit(1 if infra else 0)
PY
