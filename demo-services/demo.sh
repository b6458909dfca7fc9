#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# demo.sh BUILD_DIR: the one-command faultline demo. Starts faultline, the five demo services
# and steady checkout traffic, prints what to try, and stops everything on Ctrl-C / SIGTERM.
set -u

usage() {
    cat <<EOF
usage: demo.sh BUILD_DIR

Starts, in the foreground:
  faultline          OTLP gRPC 127.0.0.1:4317, OTLP/HTTP 127.0.0.1:4318, API 127.0.0.1:8080
                     (database in a temporary directory unless FAULTLINE_DB is set)
  demo services      checkout :5000, payment :5001, inventory :5002, fraud :5003, stock :5004
  faultline-load     steady POST /checkout traffic
Ctrl-C (or SIGTERM to the process group) stops every process it started.

environment:
  FAULTLINE_DB        database path (kept afterwards); default: a temporary directory
  DEMO_HOST           address everything listens on (default 127.0.0.1)
  DEMO_OTLP_GRPC_PORT DEMO_OTLP_HTTP_PORT DEMO_API_PORT   (4317 4318 8080)
  DEMO_PORT_BASE      checkout port; the others follow it (default 5000)
  DEMO_RATE           checkouts per second (default 5)
  DEMO_CONCURRENCY    concurrent checkouts (default 4)
EOF
}

if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    usage
    [ $# -eq 1 ] && exit 0
    exit 2
fi
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "demo.sh: no such build directory: $1" >&2; exit 2; }
for bin in faultline faultline-load faultline-demo-checkout faultline-demo-payment \
    faultline-demo-inventory faultline-demo-fraud faultline-demo-stock; do
    if [ ! -x "$BUILD/$bin" ]; then
        echo "demo.sh: $BUILD/$bin is missing: build first (cmake --build $BUILD)" >&2
        exit 2
    fi
done
command -v curl >/dev/null 2>&1 || { echo "demo.sh: curl is needed" >&2; exit 2; }

HOST=${DEMO_HOST:-127.0.0.1}
GRPC_PORT=${DEMO_OTLP_GRPC_PORT:-4317}
HTTP_PORT=${DEMO_OTLP_HTTP_PORT:-4318}
API_PORT=${DEMO_API_PORT:-8080}
BASE=${DEMO_PORT_BASE:-5000}
CHECKOUT_PORT=$BASE
PAYMENT_PORT=$((BASE + 1))
INVENTORY_PORT=$((BASE + 2))
FRAUD_PORT=$((BASE + 3))
STOCK_PORT=$((BASE + 4))
RATE=${DEMO_RATE:-5}
CONCURRENCY=${DEMO_CONCURRENCY:-4}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/faultline-demo.XXXXXX") || exit 1
DB=${FAULTLINE_DB:-$WORK/faultline.db}
API="http://$HOST:$API_PORT"
CHECKOUT="http://$HOST:$CHECKOUT_PORT"

# Every process we start, in start order: "pid name".
PIDS=()
NAMES=()
STOPPING=0

stop_one() { # pid name
    local pid=$1 name=$2 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return; }
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 200); do # 20 s, then SIGKILL
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "  $name did not stop in 20 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
}

cleanup() {
    [ "$STOPPING" = 1 ] && return
    STOPPING=1
    trap '' INT TERM
    echo
    echo "stopping the demo..."
    # Traffic first, then the services from the front (their last spans still reach faultline),
    # faultline last.
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_one "${PIDS[$i]}" "${NAMES[$i]}"
    done
    if [ -s "$WORK/load.log" ]; then
        echo "traffic summary:"
        grep -v '^\[' "$WORK/load.log" | sed 's/^/  /'
    fi
    if [ -n "${FAULTLINE_DB:-}" ]; then
        echo "database kept at $DB; logs in $WORK"
    else
        rm -rf "$WORK"
    fi
    echo "stopped."
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() { # name log cmd...
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
}

wait_health() { # name url pid log
    local name=$1 url=$2 pid=$3 log=$4 i
    for i in $(seq 1 100); do # 10 s
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "demo.sh: $name exited during start-up; its log ($log):" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        if curl -fs -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.1
    done
    echo "demo.sh: $name did not become healthy at $url; its log ($log):" >&2
    tail -n 20 "$log" >&2
    exit 1
}

echo "starting faultline (database: $DB)..."
start faultline "$WORK/faultline.log" "$BUILD/faultline" serve \
    --otlp-grpc "$HOST:$GRPC_PORT" --otlp-http "$HOST:$HTTP_PORT" --api "$HOST:$API_PORT" \
    --db "$DB"
wait_health faultline "$API/health" "${PIDS[-1]}" "$WORK/faultline.log"

export OTEL_EXPORTER_OTLP_ENDPOINT="http://$HOST:$HTTP_PORT"
export OTEL_BSP_SCHEDULE_DELAY=${OTEL_BSP_SCHEDULE_DELAY:-1000}
unset OTEL_SERVICE_NAME OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

echo "starting the demo services..."
start stock "$WORK/stock.log" "$BUILD/faultline-demo-stock" --listen "$HOST:$STOCK_PORT" \
    --db "$WORK/stock.db"
wait_health stock "http://$HOST:$STOCK_PORT/health" "${PIDS[-1]}" "$WORK/stock.log"
start fraud "$WORK/fraud.log" "$BUILD/faultline-demo-fraud" --listen "$HOST:$FRAUD_PORT"
wait_health fraud "http://$HOST:$FRAUD_PORT/health" "${PIDS[-1]}" "$WORK/fraud.log"
start inventory "$WORK/inventory.log" "$BUILD/faultline-demo-inventory" \
    --listen "$HOST:$INVENTORY_PORT" --stock-url "http://$HOST:$STOCK_PORT"
wait_health inventory "http://$HOST:$INVENTORY_PORT/health" "${PIDS[-1]}" "$WORK/inventory.log"
start payment "$WORK/payment.log" "$BUILD/faultline-demo-payment" \
    --listen "$HOST:$PAYMENT_PORT" --fraud-url "http://$HOST:$FRAUD_PORT"
wait_health payment "http://$HOST:$PAYMENT_PORT/health" "${PIDS[-1]}" "$WORK/payment.log"
start checkout "$WORK/checkout.log" "$BUILD/faultline-demo-checkout" \
    --listen "$HOST:$CHECKOUT_PORT" --payment-url "http://$HOST:$PAYMENT_PORT" \
    --inventory-url "http://$HOST:$INVENTORY_PORT"
wait_health checkout "$CHECKOUT/health" "${PIDS[-1]}" "$WORK/checkout.log"

start traffic "$WORK/load.log" "$BUILD/faultline-load" live --url "$CHECKOUT" \
    --rate "$RATE" --concurrency "$CONCURRENCY" --duration 0

cat <<EOF

faultline demo is running
  faultline API   $API        (OTLP: gRPC $HOST:$GRPC_PORT, HTTP $HOST:$HTTP_PORT)
  checkout        $CHECKOUT   (payment :$PAYMENT_PORT -> fraud :$FRAUD_PORT, inventory :$INVENTORY_PORT -> stock :$STOCK_PORT)
  traffic         $RATE checkouts/s, concurrency $CONCURRENCY
  logs            $WORK

Try the three scenarios (checkout forwards /simulate to any service by name):

 1. Payment latency
      curl -X POST '$CHECKOUT/simulate/delay?endpoint=payment&duration=1500'
      (or the preset: curl -X POST $CHECKOUT/simulate/preset/latency_spike)
    slow payment traces:
      curl '$API/api/traces?service=payment&min_duration_ms=500'

 2. Inventory errors
      curl -X POST '$CHECKOUT/simulate/error?endpoint=inventory&rate=0.8'
      (or the preset: curl -X POST $CHECKOUT/simulate/preset/error_storm)
    failing traces:
      curl '$API/api/traces?service=inventory&error=true'

 3. Cascading payment failure
      curl -X POST $CHECKOUT/simulate/preset/cascading_failure
      (payment fails every request; checkout fails with it)
      curl '$API/api/traces?service=checkout&error=true'

 Also: /simulate/timeout?endpoint=fraud&duration=3000, /simulate/intermittent?endpoint=stock&probability=0.3

 Where to look:
      curl $API/api/services                  services and their operations
      curl '$API/api/traces?service=checkout'  recent checkouts
      curl $API/api/traces/TRACE_ID            one checkout across all five services
      curl $CHECKOUT/simulate/status           faults in effect
 Back to normal:
      curl -X POST $CHECKOUT/simulate/clear

Ctrl-C stops everything.
EOF

# Stay in the foreground until interrupted, or until a process dies on its own.
while :; do
    wait -n 2>/dev/null
    [ "$STOPPING" = 1 ] && break
    for i in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            echo "demo.sh: ${NAMES[$i]} exited unexpectedly; last lines of its log:" >&2
            tail -n 10 "$WORK/${NAMES[$i]/traffic/load}.log" >&2
            exit 1
        fi
    done
done
