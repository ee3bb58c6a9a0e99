#!/usr/bin/env bash
# Install, build and run the demo: an embedded Kafka (librdkafka mock
# cluster), a local redis-server, the pipeline, synthetic store traffic
# (half an hour of history, then live), live funnel counters read with
# redis-cli, and a bad message sent by hand landing in the dead-letter topic.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
[ "${SKIP_INSTALL:-0}" = 1 ] || deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target storepulse
SP=$SRC/build/storepulse

WORK=$(mktemp -d /tmp/storepulse-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no --dir "$WORK" \
  --logfile "$WORK/redis.log" & PIDS+=($!)
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.1; done

cat > "$WORK/demo.yaml" <<YAML
namespace: demo
kafka:
  group.id: storepulse-demo
  session.timeout.ms: 6000
  heartbeat.interval.ms: 500
redis: {host: 127.0.0.1, port: $PORT}
schemas: {dir: $SRC/schemas}
windows:
  idle_timeout: 5s
alerting: {format: json}
alerts:
  - name: payment_failure_spike
    metric: funnel.payment_failure_rate
    window: 5m
    above: 0.3
    resolve_below: 0.15
    min_samples: 20
    severity: critical
    labels: {team: payments}
YAML

"$SP" run -c "$WORK/demo.yaml" --embedded-kafka --bootstrap-file "$WORK/bootstrap" \
  >"$WORK/pipeline.log" 2>&1 & PIDS+=($!)
until [ -s "$WORK/bootstrap" ]; do sleep 0.1; done
BS=$(cat "$WORK/bootstrap")
echo "== embedded Kafka at $BS, Redis at 127.0.0.1:$PORT (namespace 'demo')"

NOW=$(( $(date +%s) * 1000 ))
echo "== producing 30 minutes of store history (seeded), ending 10 minutes ago, with a"
echo "   checkout outage on mobile from minute 10 to minute 20 ..."
"$SP" gen -c "$WORK/demo.yaml" --brokers "$BS" --seed 42 --rate 25 --count 45000 \
  --start-time $(( NOW - 2400 * 1000 )) --speedup 0 --quiet \
  --scenario checkout-outage --incident-start +10m --incident-duration 10m
echo "== live traffic: 100 events/s, in real time"
"$SP" gen -c "$WORK/demo.yaml" --brokers "$BS" --seed 43 --rate 100 --count 6000 --warm-start \
  --quiet >/dev/null 2>&1 & PIDS+=($!)

show() {
  local size=$1 which=$2 start
  start=$(redis-cli -p "$PORT" GET "sp:{demo}:$which:funnel:$size")
  [ -n "$start" ] || { echo "  (no $which $size window yet)"; return; }
  echo "  $which $size window $(date -u -d @$((start/1000)) +%H:%M) UTC  -> redis-cli HGETALL 'sp:{demo}:funnel:$size:$start'"
  redis-cli -p "$PORT" HMGET "sp:{demo}:funnel:$size:$start" sessions cart_sessions order_sessions \
    orders revenue_cents aov_cents conversion_rate checkout_to_order_rate payment_failure_rate closed |
    paste -sd' ' | awk '{printf "    sessions=%s carts=%s order_sessions=%s orders=%s revenue_cents=%s aov_cents=%s conversion=%s checkout_to_order=%s payment_failure=%s closed=%s\n",$1,$2,$3,$4,$5,$6,$7,$8,$9,$10}'
}
sleep 3
for i in 1 2 3 4; do
  echo "== $(date -u +%H:%M:%S) live counters"
  show 1m latest
  show 5m final
  echo "    mobile conversion (final 5m): $(redis-cli -p "$PORT" HGET "sp:{demo}:funnel:5m:$(redis-cli -p "$PORT" GET 'sp:{demo}:final:funnel:5m')" 'conversion_rate|device=mobile')"
  sleep 10
done

echo "== a bad message sent by hand with kcat goes to the dead-letter topic"
echo 'not avro at all' | kcat -b "$BS" -P -t store.checkout
sleep 3
kcat -b "$BS" -C -t storepulse.deadletter -o beginning -e -q \
  -f 'dead letter: %s\n  headers: %h\n' 2>/dev/null | grep -B1 'reason=undecodable' | head -2
echo "== pipeline health: redis-cli HGETALL 'sp:{demo}:health'"
redis-cli -p "$PORT" HGETALL "sp:{demo}:health" | paste - - | sed 's/^/    /'
echo "== alerts of the outage, read with kcat (topic storepulse.alerts, JSON, keyed by fingerprint)"
kcat -b "$BS" -C -t storepulse.alerts -o beginning -e -q -f '%s\n' 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    a = json.loads(l)
    print("   ", a["state"], a["rule"], "window", a["window_size"], a["window_start"], "-", a["summary"])'
echo "== the same with: storepulse alerts --from-beginning"
"$SP" alerts -c "$WORK/demo.yaml" --brokers "$BS" --from-beginning --timeout 3s | sed 's/^/    /'
echo "== done"
