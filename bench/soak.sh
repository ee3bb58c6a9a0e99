#!/usr/bin/env bash
# soak.sh -- memory over a long run at constant load (SPEC §8: "memory flat
# over a 10-minute soak at constant load", "RSS < 50 MB at idle").
#
# A benchmark, not a CI test. Bash, like bench_e2e.sh: it needs only
# redis-cli, kcat and awk (deploy/install-deps.sh), no client library.
#
# What: one embedded mock cluster (`storepulse broker`), one redis-server on a
# free port, one `storepulse run`, all in a temp directory; one CSV row of the
# idle pipeline; then `storepulse gen --warm-start` of all four streams, paced
# at RATE events/s of event time x SPEEDUP (default 6 x 600 = 3,600 events/s
# of wall time, plus ~1 % duplicates) for DURATION seconds of wall time
# (default 600: 100 hours of event time). Every INTERVAL seconds one CSV row:
# the pipeline's RSS (/proc/PID/status VmRSS), Redis used_memory and dbsize,
# the pipeline's gauges in sp:{NS}:gauges (open_windows, in_flight_entities
# and per kind, watermark_ms), events committed (sum of sp:{NS}:offsets),
# messages produced (sum of the topics' end offsets, kcat -Q), lag =
# produced - committed, the number of timers (ZCARD sp:{NS}:state:timers),
# the load average, the broker's RSS; with SCAN_EVERY=N every N-th row also
# the Redis keys per class (one SCAN of the keyspace; off by default because
# SCAN reclaims expired keys and so changes what is measured). After the
# load: one such census, SIGTERM (exit status), health, and a summary:
# warm-up (WARMUP s) excluded, per series first/last/min/max/mean and the
# slope of a least-squares line in % of the mean per minute with its
# standard error, verdict FLAT when |slope| < FLAT_PCT (default 1 %/min),
# "FLAT (noise)" when larger but within two standard errors of 0, else NOT
# FLAT; the throughput committed per interval against the one requested;
# idle RSS and RSS per cached entity.
#
# Why these settings (docs/RELIABILITY.md, "Soak", has the reasoning and the
# figures):
#  - Event time runs SPEEDUP times faster than wall time so windows open and
#    close continuously (ten 1-minute windows per second of wall time) and
#    entities go through their life cycle within the run. 600, not 30-60:
#    a shipment lives until its promise (2-5 days after the order) plus
#    shipment_ttl, and a day of event time is 2.4 minutes of wall time at
#    600 (24 at 60, where shipments could only grow for the whole run).
#  - Redis TTLs (PEXPIRE) are wall clock, so with the defaults (days) no key
#    would ever expire in 10 minutes and Redis could only grow. The config
#    shortens every TTL that can be shortened to <= 2 minutes of wall time:
#    windows.ttl, state.ttl (which must exceed abandon_after +
#    allowed_lateness, so both are shortened), state.ticket_ttl,
#    state.customer_ttl (must be >= metrics.retention.horizon, so the
#    horizon too). These change what the counters mean (carts abandoned after
#    1 minute, customers "returning" within 2 minutes, open tickets given up
#    after 2 minutes of event time without news); the soak measures memory,
#    not the metrics. Shipments are deleted, not expired: their state lives
#    until max(promised, last event) + state.shipment_ttl of event time
#    (Redis TTL at least a day), so shipment_ttl is 1h (SHIPMENT_TTL). The
#    shipment count (and the timers) still rises for ~60 h of event time
#    (6 minutes at 600x): a shipment in flight at the warm start is seen
#    only at its next event, which can be 2.5 days away (late dispatch).
#  - The in-process bounds are sized to fill within the warm-up:
#    state.cache_max (CACHE_MAX entities) and dedup.max_ids (DEDUP_MAX ids),
#    so "flat after warm-up" tests that nothing grows beyond them. With the
#    defaults (1,000,000 each) the process keeps growing until they fill; the
#    summary prints bytes of RSS per cached entity to size that.
#  - Event time starts DURATION x SPEEDUP in the past, so it ends near now
#    (the decoder rejects events more than a day in the future).
#
# Every process started here is tracked by pid and stopped on exit (trap), and
# the temp directory is removed (KEEP=1 keeps it and prints its path; see
# bench_lib.sh). The CSV
# is written to OUT (default ./soak-<UTC time>.csv).
#
# Usage: bench/soak.sh [BUILD_DIR] (default: build/ of this repository)
#        bench/soak.sh --summary CSV (the summary of an earlier run again;
#        give it that run's RATE, SPEEDUP and DEDUP_MAX)
# Env: DURATION (600) INTERVAL (10) WARMUP (180) RATE (6) SPEEDUP (600)
#      PARTS (16) CACHE_MAX (100000) DEDUP_MAX (300000) SHIPMENT_TTL (1h)
#      SEED (1) SCAN_EVERY (0) FLAT_PCT (1.0) OUT KEEP (0)
# The first CSV row (t_s = 0) is the idle pipeline, before any traffic.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$REPO/build}
DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-10}
WARMUP=${WARMUP:-180}
RATE=${RATE:-6}
SPEEDUP=${SPEEDUP:-600}
PARTS=${PARTS:-16}
CACHE_MAX=${CACHE_MAX:-100000}
SHIPMENT_TTL=${SHIPMENT_TTL:-1h}
DEDUP_MAX=${DEDUP_MAX:-300000}
SEED=${SEED:-1}
SCAN_EVERY=${SCAN_EVERY:-0}
FLAT_PCT=${FLAT_PCT:-1.0}
OUT=${OUT:-$PWD/soak-$(date -u +%Y%m%dT%H%M%SZ).csv}
KEEP=${KEEP:-0}
NS=store

# ---- summary ----
# Dedup set: a ring of max_ids hashes + a table of 2^k >= 2 max_ids slots,
# 8 bytes each (consumers/dedup.c), all resident once it has filled.
DEDUP_BYTES=$(awk -v n="$DEDUP_MAX" 'BEGIN {c = 2; while (c < 2 * n) c *= 2; print 8 * (n + c)}')
summary() { # CSV
    echo "SUMMARY after warm-up (t >= ${WARMUP}s); slope = least-squares line, % of the mean per minute (+- standard error); flat = |slope| < ${FLAT_PCT} %/min"
    awk -F, -v warm="$WARMUP" -v flat="$FLAT_PCT" -v rate=$((RATE * SPEEDUP)) -v dedup="$DEDUP_BYTES" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        { t[NR] = $1; for (i = 1; i <= NF; i++) v[NR, i] = $i; last = NR }
        # Least-squares line y = a + b x (x in minutes) over the samples after the
        # warm-up; slope in % of the mean per minute, with its standard error.
        # FLAT: |slope| < flat; "FLAT (noise)": larger but within 2 standard
        # errors of 0 (a small, noisy series such as open windows); else NOT FLAT.
        function fit(name, label, scale,    i, c, n, sx, sy, sxx, sxy, x, y, mn, mx, f, l, m, b, a, pct, se, r, rss, xs, ys, verdict) {
            c = col[name]; n = 0
            for (i = 2; i <= last; i++) {
                if (t[i] < warm || v[i, c] == "") continue
                x = t[i] / 60; y = v[i, c] / scale
                if (n == 0) { f = y; mn = y; mx = y }
                if (y < mn) mn = y; if (y > mx) mx = y
                xs[n] = x; ys[n] = y
                l = y; n++; sx += x; sy += y; sxx += x * x; sxy += x * y
            }
            if (n == 0) return # e.g. key classes without SCAN_EVERY
            if (n < 3) { printf "%-28s (too few samples)\n", label; return }
            m = sy / n; b = (n * sxy - sx * sy) / (n * sxx - sx * sx); a = (sy - b * sx) / n
            for (i = 0; i < n; i++) { r = ys[i] - a - b * xs[i]; rss += r * r }
            se = sqrt(rss / (n - 2) / (sxx - sx * sx / n))
            pct = m != 0 ? 100 * b / m : 0; se = m != 0 ? 100 * se / (m < 0 ? -m : m) : 0
            verdict = (pct < flat && pct > -flat) ? "FLAT" : (pct < 2 * se && pct > -2 * se) ? "FLAT (noise)" : "NOT FLAT"
            printf "%-28s n=%3d first=%10.1f last=%10.1f min=%10.1f max=%10.1f mean=%10.1f slope=%+7.2f +-%5.2f %%/min  %s\n",
                label, n, f, l, mn, mx, m, pct, se, verdict
        }
        END {
            fit("rss_kb", "pipeline RSS (MiB)", 1024)
            fit("redis_used_memory", "Redis used_memory (MiB)", 1048576)
            fit("redis_keys", "Redis keys", 1)
            fit("open_windows", "open windows", 1)
            fit("in_flight_entities", "in-flight entities", 1)
            fit("ife_session", "  sessions in memory", 1)
            fit("ife_shipment", "  shipments in memory", 1)
            fit("ife_customer", "  customers in memory", 1)
            fit("ife_ticket", "  tickets in memory", 1)
            fit("k_window", "  Redis window hashes", 1)
            fit("k_session", "  Redis session state", 1)
            fit("k_shipment", "  Redis shipment state", 1)
            fit("k_customer", "  Redis customer state", 1)
            fit("k_order", "  Redis order state", 1)
            fit("k_cart", "  Redis cart state", 1)
            fit("k_ticket", "  Redis ticket state", 1)
            fit("k_other", "  Redis other keys", 1)
            fit("timers", "timers (ZCARD)", 1)
            fit("lag", "lag (messages)", 1)
            fit("broker_rss_kb", "broker RSS (MiB, not ours)", 1024)
            # throughput per interval
            cc = col["committed"]; cp = col["produced"]; n = 0
            for (i = 3; i <= last; i++) {
                if (t[i] < warm) continue
                dt = t[i] - t[i - 1]; r = (v[i, cc] - v[i - 1, cc]) / dt; p = (v[i, cp] - v[i - 1, cp]) / dt
                if (n == 0) { mn = r; mx = r }
                if (r < mn) mn = r; if (r > mx) mx = r
                s += r; ss += r * r; sp += p; n++
            }
            if (n > 0) {
                m = s / n; sd = sqrt(ss / n - m * m > 0 ? ss / n - m * m : 0)
                printf "throughput after warm-up: committed %.0f msg/s per interval (min %.0f, max %.0f, sd %.0f = %.1f %%), produced %.0f msg/s; requested %d events/s + duplicates\n",
                    m, mn, mx, sd, 100 * sd / m, sp / n, rate
            }
            cl = col["lag"]; ml = 0
            for (i = 2; i <= last; i++) if (t[i] >= warm && v[i, cl] > ml) ml = v[i, cl]
            printf "max lag after warm-up: %d messages = %.2f s of the requested load\n", ml, ml / rate
            ce = col["in_flight_entities"]; cr = col["rss_kb"]
            if (t[2] == 0) printf "pipeline RSS idle (t = 0, before traffic): %.1f MiB (target < 50 MB)\n", v[2, cr] / 1024
            if (t[2] == 0 && v[last, ce] > 0)
                printf "RSS per in-memory entity at the end: (RSS %d kB - idle %d kB - dedup set %d kB) / %d entities = %.0f bytes (target <= 400; an upper bound: windows and Kafka buffers count too)\n",
                    v[last, cr], v[2, cr], dedup / 1024, v[last, ce], ((v[last, cr] - v[2, cr]) * 1024 - dedup) / v[last, ce]
            printf "load average (1 min) during the run: min %s max %s\n", lmin(), lmax()
        }
        function lmin(   i, c, m) { c = col["load1"]; m = 1e9; for (i = 2; i <= last; i++) if (v[i, c] + 0 < m) m = v[i, c] + 0; return m }
        function lmax(   i, c, m) { c = col["load1"]; m = 0; for (i = 2; i <= last; i++) if (v[i, c] + 0 > m) m = v[i, c] + 0; return m }
    ' "$1"
}
if [ "${1:-}" = --summary ]; then
    [ -f "${2:-}" ] || { echo "usage: $0 --summary CSV" >&2; exit 2; }
    summary "$2"
    exit 0
fi

BUILD=$(cd "$BUILD" && pwd)
SP=$BUILD/storepulse
[ -x "$SP" ] || { echo "missing $SP: build with cmake --build $BUILD" >&2; exit 2; }
for t in redis-server redis-cli kcat; do
    command -v "$t" >/dev/null || { echo "missing $t (deploy/install-deps.sh)" >&2; exit 2; }
done

. "$REPO/bench/bench_lib.sh" # bench_init, bench_start_redis, bench_start_broker
bench_init sp-soak
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "DURATION=${DURATION}s INTERVAL=${INTERVAL}s WARMUP=${WARMUP}s RATE=$RATE SPEEDUP=$SPEEDUP ($((RATE * SPEEDUP)) events/s wall requested) PARTS=$PARTS CACHE_MAX=$CACHE_MAX DEDUP_MAX=$DEDUP_MAX SEED=$SEED build=$BUILD"

# ---- Redis ----
bench_start_redis

# ---- broker ----
cd "$REPO" # schemas/ relative to the repository
bench_start_broker "$SP" "$PARTS"

# ---- config ----
bench_write_config "$TMP/soak.yaml" sp-soak "$NS" "$PARTS"
cat >>"$TMP/soak.yaml" <<EOF
windows:
  sizes: [1m, 2m]
  ttl: {1m: 2m, 2m: 2m}
  allowed_lateness: 30s
metrics:
  abandonment:
    abandon_after: 1m
  retention:
    horizon: 2m
state:
  ttl: 2m
  ticket_ttl: 2m
  shipment_ttl: $SHIPMENT_TTL
  customer_ttl: 2m
  cache_max: $CACHE_MAX
dedup:
  max_ids: $DEDUP_MAX
log:
  level: warn
EOF
"$SP" check-config -c "$TMP/soak.yaml" >/dev/null

# ---- pipeline, idle ----
"$SP" run -c "$TMP/soak.yaml" >"$TMP/run.out" 2>"$TMP/run.err" &
PPID_SP=$!
PIDS+=("$PPID_SP")
sleep 8 # group join on the mock cluster (~3 s), then idle
kill -0 "$PPID_SP" 2>/dev/null || { echo "pipeline exited:" >&2; cat "$TMP/run.err" >&2; exit 1; }

# kcat -Q arguments: every partition of every input topic at offset -1 (end)
QARGS=()
for t in store.clickstream store.checkout store.shipments store.support; do
    for p in $(seq 0 $((PARTS - 1))); do QARGS+=(-t "$t:$p:-1"); done
done
produced() { { kcat -b "$BOOT" -Q "${QARGS[@]}" 2>/dev/null || true; } | awk '/ offset / {s += $NF} END {print s + 0}'; }
hsum() { "${RCLI[@]}" HVALS "$1" | awk '{s += $1} END {print s + 0}'; }
info_field() { "${RCLI[@]}" INFO "$1" | tr -d '\r' | sed -n "s/^$2:\([^,]*\).*/\1/p"; }
GAUGES=(open_windows in_flight_entities 'in_flight_entities|kind=session'
    'in_flight_entities|kind=order' 'in_flight_entities|kind=cart'
    'in_flight_entities|kind=shipment' 'in_flight_entities|kind=ticket'
    'in_flight_entities|kind=customer' watermark_ms)
# key classes, from one SCAN: window hashes, entity state per kind, timers, the rest
key_classes() {
    "${RCLI[@]}" --scan | awk -F: '
        $3 ~ /^(funnel|abandonment|delivery|retention|support)$/ && NF >= 5 {w++; next}
        $3 == "state" {s[$4]++; next}
        {o++}
        END {printf "%d,%d,%d,%d,%d,%d,%d,%d", w, s["session"], s["order"], s["cart"],
             s["shipment"], s["ticket"], s["customer"], o}'
}

sample() { # t: one CSV row
    local rss mem keys g committed prod timers load1 brss kc=",,,,,,,"
    rss=$(rss_kb "$PPID_SP")
    mem=$(info_field memory used_memory)
    keys=$("${RCLI[@]}" DBSIZE)
    g=$("${RCLI[@]}" HMGET "sp:{$NS}:gauges" "${GAUGES[@]}" | tr '\n' ',' | sed 's/,$//')
    committed=$(hsum "sp:{$NS}:offsets")
    prod=$(produced)
    timers=$("${RCLI[@]}" ZCARD "sp:{$NS}:state:timers")
    load1=$(cut -d' ' -f1 /proc/loadavg)
    brss=$(rss_kb "$BPID")
    if [ "$1" != 0 ] && [ "$SCAN_EVERY" -gt 0 ] && [ $((n % SCAN_EVERY)) = 0 ]; then kc=$(key_classes); fi
    echo "$1,$rss,$mem,$keys,$g,$committed,$prod,$((prod - committed)),$timers,$load1,$brss,$kc" >>"$OUT"
    printf 't=%6.1fs rss=%6d kB redis=%6.1f MiB keys=%7d open_windows=%s entities=%s committed=%d lag=%d load=%s\n' \
        "$1" "$rss" "$(echo "$mem / 1048576" | bc -l)" "$keys" "$(echo "$g" | cut -d, -f1)" \
        "$(echo "$g" | cut -d, -f2)" "$committed" "$((prod - committed))" "$load1"
}

echo "t_s,rss_kb,redis_used_memory,redis_keys,open_windows,in_flight_entities,ife_session,ife_order,ife_cart,ife_shipment,ife_ticket,ife_customer,watermark_ms,committed,produced,lag,timers,load1,broker_rss_kb,k_window,k_session,k_order,k_cart,k_shipment,k_ticket,k_customer,k_other" >"$OUT"
n=0
sample 0 # idle
# ---- load ----
START_MS=$(( ($(date +%s) - DURATION * SPEEDUP) * 1000 ))
"$SP" gen --bootstrap-file "$TMP/bootstrap" --warm-start --rate "$RATE" --speedup "$SPEEDUP" \
    --seed "$SEED" --start-time "$START_MS" --duration "$((DURATION * SPEEDUP + 60 * SPEEDUP))s" \
    >"$TMP/gen.out" 2>"$TMP/gen.err" &
GPID=$!
PIDS+=("$GPID")
T0=$(date +%s.%N)
while :; do
    n=$((n + 1))
    due=$(echo "$T0 + $n * $INTERVAL" | bc)
    now=$(date +%s.%N)
    d=$(echo "$due - $now" | bc)
    [ "$(echo "$d > 0" | bc)" = 1 ] && sleep "$d"
    t=$(echo "$(date +%s.%N) - $T0" | bc | xargs printf '%.1f')
    kill -0 "$PPID_SP" 2>/dev/null || { echo "pipeline exited at t=$t:" >&2; tail -20 "$TMP/run.err" >&2; exit 1; }
    kill -0 "$GPID" 2>/dev/null || { echo "gen exited at t=$t:" >&2; tail -5 "$TMP/gen.err" >&2; exit 1; }
    sample "$t"
    [ "$(echo "$t >= $DURATION - $INTERVAL / 2" | bc)" = 1 ] && break
done

# ---- stop ----
kill -TERM "$GPID" 2>/dev/null || true
wait "$GPID" 2>/dev/null || true
tail -1 "$TMP/gen.err" | sed 's/^/gen final: /'
TOTAL=$(produced)
for _ in $(seq 300); do [ "$(hsum "sp:{$NS}:offsets")" -ge "$TOTAL" ] && break; sleep 0.1; done
echo "after the load: produced $TOTAL, committed $(hsum "sp:{$NS}:offsets"), pipeline RSS $(rss_kb "$PPID_SP") kB"
# Key census: SCAN returns only live keys and deletes the expired ones it
# meets, so DBSIZE before it minus the keys it returns = keys whose TTL had
# passed but that Redis's active expiry had not reclaimed yet.
K0=$("${RCLI[@]}" DBSIZE)
M0=$(info_field memory used_memory)
KC=$(key_classes)
echo "key census after the load: DBSIZE $K0 (used_memory $((M0 / 1048576)) MiB) before a SCAN, $(echo "$KC" | tr ',' '\n' | awk '{s += $1} END {print s}') live: $KC (window,session,order,cart,shipment,ticket,customer,other); after it DBSIZE $("${RCLI[@]}" DBSIZE), used_memory $(($(info_field memory used_memory) / 1048576)) MiB"
kill -TERM "$PPID_SP"
rc=0
wait "$PPID_SP" || rc=$?
echo "pipeline exit status on SIGTERM: $rc"
echo "health: $("${RCLI[@]}" HGETALL "sp:{$NS}:health" | paste -sd' ' | cut -c1-600)"
if grep -qi 'error\|fenced' "$TMP/run.err"; then
    echo "pipeline stderr (errors):"; grep -i 'error\|fenced' "$TMP/run.err" | head -5 | sed 's/^/    /'
fi

echo "CSV: $OUT"
summary "$OUT"
