#!/usr/bin/env bash
# bench_e2e.sh -- end-to-end throughput (SPEC §8): embedded broker -> Redis.
#
# What: one embedded mock cluster (`storepulse broker`, 16 partitions per
# topic so each keeps well under the ~5 MiB the mock cluster retains), one
# redis-server on a free port, N messages produced once with
# `storepulse gen --speedup 0 --rate 50` (event time starting in the past, so
# it is a replay and windows close as the watermark moves). Then RUNS times:
#   (a) baseline: bench_bare_consumer (librdkafka consume_batch_queue +
#       avro-c decode of every message, nothing else) with a fresh group,
#       until it consumed N;
#   (b) pipeline: FLUSHALL + CONFIG RESETSTAT, then `storepulse run -c cfg`
#       with a fresh group, timed by bench_redis_wait until the sum of
#       sp:{NS}:offsets reaches N; then INFO commandstats (all cmdstat_*
#       calls, commands run inside the Lua script included) minus the
#       poller's own commands gives Redis commands per event, and
#       (evalsha + mget calls) / health 'commits' gives round trips per
#       batch.
# Both figures are given two ways: total (process start -> N, includes the
# ~3 s consumer-group join of the mock cluster) and steady (first data ->
# N). Medians over the runs; the ratio pipeline/baseline is of the steady
# medians (the join is the same for both and would hide the pipeline's cost
# in small runs).
#
# Why this shape: the data is produced once (producing dominates the set-up),
# every run uses a fresh group and a flushed Redis, so runs are independent.
# Every process started here is tracked by pid and stopped on exit (trap),
# and the temp directory is removed (bench_lib.sh).
#
# Usage: bench/bench_e2e.sh [BUILD_DIR] (default /tmp/build-bench)
# Env: N (400000), RUNS (3), PARTS (16), RATE (50).
set -euo pipefail

BUILD=${1:-/tmp/build-bench}
REPO=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-400000}
RUNS=${RUNS:-3}
BATCH=${BATCH:-10000} # pipeline.batch_max
PARTS=${PARTS:-16}
RATE=${RATE:-50}
SP=$BUILD/storepulse
BARE=$BUILD/bench/bench_bare_consumer
WAIT=$BUILD/bench/bench_redis_wait
for b in "$SP" "$BARE" "$WAIT"; do
    [ -x "$b" ] || { echo "missing $b: build with cmake --build $BUILD" >&2; exit 2; }
done

. "$REPO/bench/bench_lib.sh" # bench_init, bench_start_redis, bench_start_broker
bench_init sp-bench-e2e

stop_pid() { # pid: SIGTERM, wait up to 15 s, then SIGKILL
    local p=$1
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p"; } # field NAME < "RESULT a=1 b=2"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "N=$N RUNS=$RUNS PARTS=$PARTS RATE=$RATE build=$BUILD"

# ---- Redis ----
bench_start_redis

# ---- broker ----
cd "$REPO" # schemas/ relative to the repository
bench_start_broker "$SP" "$PARTS"

# ---- produce once ----
NOW_MS=$(($(date +%s) * 1000))
START_MS=$((NOW_MS - (N / RATE) * 1000 - 600000))
T0=$(date +%s.%N)
"$SP" gen --bootstrap-file "$TMP/bootstrap" --speedup 0 --rate "$RATE" --count "$N" \
    --start-time "$START_MS" --quiet 2>"$TMP/gen.err"
T1=$(date +%s.%N)
echo "produced $N messages in $(echo "$T1 - $T0" | bc) s: $(tail -1 "$TMP/gen.err")"

write_cfg() { # file group
    bench_write_config "$1" "$2" store "$PARTS"
    cat >>"$1" <<EOF
pipeline:
  batch_max: ${BATCH:-10000}
log:
  level: warn
EOF
}

: >"$TMP/bare.txt"
: >"$TMP/pipe.txt"
for i in $(seq "$RUNS"); do
    # (a) baseline
    "$BARE" --bootstrap-file "$TMP/bootstrap" --count "$N" --group "bench-bare-$i-$$" \
        --schemas "$REPO/schemas" >"$TMP/bare.$i" 2>"$TMP/bare.$i.err" || {
        echo "bare consumer failed:" >&2; cat "$TMP/bare.$i.err" >&2; exit 1; }
    grep RESULT "$TMP/bare.$i" >>"$TMP/bare.txt"
    echo "run $i baseline: $(grep RESULT "$TMP/bare.$i")"

    # (b) pipeline
    "${RCLI[@]}" FLUSHALL >/dev/null
    "${RCLI[@]}" CONFIG RESETSTAT >/dev/null
    write_cfg "$TMP/cfg.$i.yaml" "bench-sp-$i-$$"
    "$WAIT" --port "$RPORT" --count "$N" --partitions "$PARTS" --timeout 300 >"$TMP/wait.$i" &
    WPID=$!
    PIDS+=("$WPID")
    "$SP" run -c "$TMP/cfg.$i.yaml" >"$TMP/run.$i.out" 2>"$TMP/run.$i.err" &
    RPID=$!
    PIDS+=("$RPID")
    wait "$WPID" || { echo "pipeline did not reach $N:" >&2; tail -20 "$TMP/run.$i.err" >&2; exit 1; }
    STATS=$("${RCLI[@]}" INFO commandstats | tr -d '\r')
    COMMITS=$("${RCLI[@]}" HGET 'sp:{store}:health' commits | tr -d '\r')
    stop_pid "$RPID"
    R=$(grep RESULT "$TMP/wait.$i")
    OWN=$(echo "$R" | field own_commands)
    TOTAL_CMDS=$(echo "$STATS" | awk -F'[:=,]' '/^cmdstat_/ && $1 !~ /^cmdstat_(info|config)/ {s += $3} END {print s}')
    EVALSHA=$(echo "$STATS" | awk -F'[:=,]' '$1 == "cmdstat_evalsha" {print $3}')
    MGET=$(echo "$STATS" | awk -F'[:=,]' '$1 == "cmdstat_mget" {print $3}')
    CPE=$(echo "scale=4; ($TOTAL_CMDS - $OWN) / $N" | bc)
    RTB=$(echo "scale=3; (${EVALSHA:-0} + ${MGET:-0}) / ${COMMITS:-1}" | bc)
    echo "$R cmds=$((TOTAL_CMDS - OWN)) cmds_per_event=$CPE evalsha=${EVALSHA:-0} mget=${MGET:-0} commits=${COMMITS:-0} rt_per_batch=$RTB" >>"$TMP/pipe.txt"
    echo "run $i pipeline: $(tail -1 "$TMP/pipe.txt")"
    echo "$STATS" | grep '^cmdstat_' | sed 's/^/    /' >"$TMP/stats.$i"
    if grep -qi 'error\|fenced' "$TMP/run.$i.err"; then
        echo "  (pipeline stderr:)"; grep -i 'error\|fenced' "$TMP/run.$i.err" | head -5 | sed 's/^/    /'
    fi
done

echo "commandstats of the last pipeline run (poller's HMGETs and SCRIPT LOAD included here):"
cat "$TMP/stats.$RUNS"

BT=$(field total_s <"$TMP/bare.txt" | median)
BS=$(field steady_evps <"$TMP/bare.txt" | median)
PT=$(field total_s <"$TMP/pipe.txt" | median)
PS=$(field steady_evps <"$TMP/pipe.txt" | median)
CPE=$(field cmds_per_event <"$TMP/pipe.txt" | median)
RTB=$(field rt_per_batch <"$TMP/pipe.txt" | median)
echo "MEDIAN baseline (bare consumer + avro decode): total ${BT} s = $(echo "$N / $BT" | bc) ev/s incl. group join; steady $BS ev/s"
echo "MEDIAN pipeline (storepulse run -> Redis):     total ${PT} s = $(echo "$N / $PT" | bc) ev/s incl. group join; steady $PS ev/s"
echo "RATIO  pipeline/baseline: steady $(echo "scale=3; $PS / $BS" | bc), total $(echo "scale=3; $BT / $PT" | bc) (target >= 0.70)"
echo "MEDIAN Redis commands per event: $CPE (target <= 1); round trips per batch: $RTB (target <= 2)"
