#!/usr/bin/env bash
# The demo: install, build, then start a local store beside StorePulse and
# leave it running to explore.
#
#   bash scripts/demo.sh               start (stops a demo already running first)
#   bash scripts/demo.sh --foreground  the same, then wait; Ctrl-C stops it all
#   bash scripts/demo.sh stop          stop every process of the demo, delete its files
#   bash scripts/demo.sh status        what is running
#
# What runs, all on 127.0.0.1: an embedded Kafka (`storepulse broker`, the
# librdkafka mock cluster in its own process, so the pipeline can be stopped
# and started again against it), a redis-server, the pipeline
# (`storepulse run`, namespace `store`), and live synthetic traffic at 100
# events/s. Before the live traffic, 30 minutes of store history ending now
# are produced, with a checkout outage on mobile from 25 to 15 minutes ago;
# the alert rule payment_failure_spike fires on it and resolves after it.
#
# Everything lives in $SP_DEMO_DIR (default /tmp/storepulse-demo): the
# config (demo.yaml), the logs, the process ids, and `env`, which a shell
# sources to get `storepulse` on its PATH and the demo's addresses
# ($SP_REDIS_PORT, $SP_BOOTSTRAP, $SP_CONFIG) -- the README's examples use
# them as written.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
DEMO=$(realpath -m "${SP_DEMO_DIR:-/tmp/storepulse-demo}")

# the demo's processes still running: a pid of the file whose command line
# names the demo's directory, or that works in it (a pid reused by another
# process is left alone)
demo_pids() {
  local p
  for p in $(tac "$DEMO/pids"); do # newest first: traffic, pipeline, broker, redis
    # redis-server rewrites its command line, but works in the directory
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$DEMO" ||
      [ "$(readlink "/proc/$p/cwd" 2>/dev/null)" = "$DEMO" ]; then
      echo "$p"
    fi
  done
  return 0
}

demo_stop() {
  [ -f "$DEMO/pids" ] || return 0
  local pids
  pids=$(demo_pids)
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local alive=0
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in $(demo_pids); do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$DEMO"
}

case "${1:-}" in
stop)
  if [ -f "$DEMO/pids" ]; then demo_stop; echo "demo stopped"; else echo "no demo running ($DEMO)"; fi
  exit 0
  ;;
status)
  if [ ! -f "$DEMO/pids" ]; then echo "no demo running ($DEMO)"; exit 1; fi
  while read -r p name; do
    if kill -0 "$p" 2>/dev/null; then s=running; else s=gone; fi
    printf '  %-10s pid %-7s %s\n' "$name" "$p" "$s"
  done <"$DEMO/names"
  exit 0
  ;;
--foreground | "") ;;
*)
  echo "usage: bash scripts/demo.sh [--foreground|stop|status]" >&2
  exit 2
  ;;
esac
FOREGROUND=0
[ "${1:-}" = --foreground ] && FOREGROUND=1

if [ -f "$DEMO/pids" ]; then
  echo "== a demo is already running in $DEMO: stopping it first"
  demo_stop
fi

if [ -n "${SP_BIN:-}" ]; then # a binary built already (the tests)
  SP=$(readlink -f "$SP_BIN")
else
  [ "${SKIP_INSTALL:-0}" = 1 ] || deploy/install-deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc)" --target storepulse
  SP=$SRC/build/storepulse
fi

mkdir -p "$DEMO"
: >"$DEMO/pids"
: >"$DEMO/names"
# start NAME LOG CMD...: a process of its own session, so that it outlives
# this script (and a Ctrl-C in this terminal does not reach it)
start() {
  local name=$1 log=$2
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  echo $! >>"$DEMO/pids"
  echo "$! $name" >>"$DEMO/names"
}
failed() {
  echo "demo: $*; the logs are in $DEMO" >&2
  exit 1
}

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
start redis "$DEMO/redis.out" redis-server --bind 127.0.0.1 --port "$PORT" --save '' \
  --appendonly no --dir "$DEMO" --logfile "$DEMO/redis.log"
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$PORT" ping >/dev/null 2>&1 || failed "redis-server did not start"

start broker "$DEMO/broker.log" "$SP" broker --bootstrap-file "$DEMO/bootstrap"
for _ in $(seq 100); do [ -s "$DEMO/bootstrap" ] && break; sleep 0.1; done
[ -s "$DEMO/bootstrap" ] || failed "the broker did not start"
BS=$(cat "$DEMO/bootstrap")

cat >"$DEMO/demo.yaml" <<YAML
# The demo's configuration (scripts/demo.sh); every option: deploy/storepulse.yaml
kafka:
  bootstrap.servers: $BS
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
cat >"$DEMO/env" <<ENV
# source this file: storepulse on the PATH and the demo's addresses
export PATH="$(dirname "$SP"):\$PATH"
export SP_REDIS_PORT=$PORT
export SP_BOOTSTRAP=$BS
export SP_CONFIG=$DEMO/demo.yaml
ENV

start pipeline "$DEMO/pipeline.log" "$SP" run -c "$DEMO/demo.yaml"
echo "== embedded Kafka at $BS, Redis at 127.0.0.1:$PORT, namespace 'store'"

NOW=$(($(date +%s) * 1000))
echo "== producing 30 minutes of store history (seeded), ending now, with a checkout"
echo "   outage on mobile from 25 to 15 minutes ago ..."
"$SP" gen -c "$DEMO/demo.yaml" --seed 42 --rate 25 --duration 30m \
  --start-time $((NOW - 1800 * 1000)) --speedup 0 --quiet \
  --scenario checkout-outage --incident-start +5m --incident-duration 10m
echo "== live traffic: 100 events/s, in real time, until the demo is stopped"
start traffic "$DEMO/traffic.log" "$SP" gen -c "$DEMO/demo.yaml" --seed 43 --rate 100 --warm-start --quiet

R() { redis-cli -p "$PORT" "$@"; }
# the history is consumed when the newest final 5m window is the one that
# ended at least 5 minutes ago
for _ in $(seq 600); do
  fin=$(R GET 'sp:{store}:final:funnel:5m')
  [ -n "$fin" ] && [ "$fin" -ge $((NOW - 600 * 1000)) ] && break
  sleep 0.1
done
[ -n "$(R GET 'sp:{store}:final:funnel:5m')" ] || failed "the pipeline committed no window"

show() {
  local size=$1 which=$2 start
  start=$(R GET "sp:{store}:$which:funnel:$size")
  [ -n "$start" ] || { echo "  (no $which $size window yet)"; return; }
  echo "  $which $size window $(date -u -d @$((start / 1000)) +%H:%M) UTC"
  R HMGET "sp:{store}:funnel:$size:$start" sessions cart_sessions order_sessions \
    orders revenue_cents aov_cents conversion_rate checkout_to_order_rate payment_failure_rate closed |
    paste -sd' ' | awk '{printf "    sessions=%s carts=%s order_sessions=%s orders=%s revenue_cents=%s aov_cents=%s conversion=%s checkout_to_order=%s payment_failure=%s closed=%s\n",$1,$2,$3,$4,$5,$6,$7,$8,$9,$10}'
}
for i in 1 2 3; do
  echo "== $(date -u +%H:%M:%S) live counters"
  show 1m latest
  show 5m final
  echo "    mobile conversion (final 5m): $(R HGET "sp:{store}:funnel:5m:$(R GET 'sp:{store}:final:funnel:5m')" 'conversion_rate|device=mobile')"
  [ $i = 3 ] || sleep 10
done

echo "== a bad message sent by hand with kcat goes to the dead-letter topic"
echo 'not avro at all' | kcat -b "$BS" -P -t store.checkout
sleep 3
kcat -b "$BS" -C -t storepulse.deadletter -o beginning -e -q \
  -f 'dead letter: %s\n  headers: %h\n' 2>/dev/null | grep -B1 'reason=undecodable' | head -2
echo "== pipeline health"
R HGETALL 'sp:{store}:health' | paste - - | sed 's/^/    /'
echo "== the alerts of the outage: storepulse alerts -c \$SP_CONFIG --from-beginning"
"$SP" alerts -c "$DEMO/demo.yaml" --from-beginning --timeout 3s | sed 's/^/    /'

cat <<TXT

== the demo is running (bash scripts/demo.sh status). To explore it, in any shell:

  source $DEMO/env
  redis-cli -p \$SP_REDIS_PORT HGETALL "sp:{store}:funnel:5m:\$(redis-cli -p \$SP_REDIS_PORT GET 'sp:{store}:final:funnel:5m')"
  redis-cli -p \$SP_REDIS_PORT HGETALL 'sp:{store}:gauges'
  storepulse alerts -c \$SP_CONFIG --from-beginning --timeout 3s
  kcat -b \$SP_BOOTSTRAP -L

  The README's "Reading the counters" examples work as written after the source line.
  Logs: $DEMO/pipeline.log (pipeline), broker.log, traffic.log, redis.log
  Stop it: bash scripts/demo.sh stop
TXT

if [ $FOREGROUND = 1 ]; then
  trap 'echo; demo_stop; echo "demo stopped"; exit 0' INT TERM
  echo "  (in the foreground: Ctrl-C stops it)"
  while :; do sleep 1; done
fi
