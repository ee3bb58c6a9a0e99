# shellcheck shell=bash disable=SC2034 # sets variables for the sourcing script
# bench_lib.sh -- what the bench scripts share (sourced, not run): a temp
# directory, child processes tracked by pid and stopped on exit, a free port,
# a throwaway redis-server and an embedded mock cluster.
#
# bench_init NAME makes TMP (/tmp/NAME.XXXXXX), empties PIDS and installs the
# traps: on exit every pid in PIDS gets SIGTERM, then SIGKILL after 10 s, and
# TMP is removed (KEEP=1 keeps it and prints its path). Scripts append the
# pid of every process they start to PIDS.
# bench_start_redis sets RPORT and RCLI (a redis-cli command array).
# bench_start_broker SP PARTS sets BPID and BOOT (bootstrap servers); the
# broker runs in the current directory (schemas/ relative to it).
# bench_write_config FILE GROUP NAMESPACE PARTS writes the part of a
# pipeline config every bench shares (broker, group, Redis, schemas under
# REPO); the script appends its own options (cat >>FILE).

bench_init() { # name
    TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}

bench_free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 30000))
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
    done
    echo "no free port" >&2; exit 1
}

bench_start_redis() {
    RPORT=$(bench_free_port)
    mkdir -p "$TMP/redis"
    redis-server --bind 127.0.0.1 --port "$RPORT" --save '' --appendonly no --dir "$TMP/redis" \
        --logfile "$TMP/redis/redis.log" &
    PIDS+=("$!")
    RCLI=(redis-cli -h 127.0.0.1 -p "$RPORT")
    for _ in $(seq 100); do "${RCLI[@]}" PING >/dev/null 2>&1 && break; sleep 0.05; done
}

bench_start_broker() { # storepulse-binary partitions
    "$1" broker --partitions "$2" --bootstrap-file "$TMP/bootstrap" >"$TMP/broker.out" 2>"$TMP/broker.err" &
    BPID=$!
    PIDS+=("$BPID")
    for _ in $(seq 100); do [ -s "$TMP/bootstrap" ] && break; sleep 0.1; done
    [ -s "$TMP/bootstrap" ] || { echo "broker did not start" >&2; cat "$TMP/broker.err" >&2; exit 1; }
    BOOT=$(cat "$TMP/bootstrap")
}

bench_write_config() { # file group namespace partitions
    cat >"$1" <<EOF
namespace: $3
kafka:
  bootstrap.servers: $BOOT
  group.id: $2
  session.timeout.ms: 6000
  heartbeat.interval.ms: 500
redis:
  host: 127.0.0.1
  port: $RPORT
schemas:
  dir: $REPO/schemas
embedded:
  partitions: $4
EOF
}
