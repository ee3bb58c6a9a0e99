#!/bin/sh
# Run one libFuzzer target over its seed corpus for a bounded time.
#   run.sh BINARY NAME SECONDS [WORKDIR] [extra libFuzzer flags...]
# New interesting inputs go to WORKDIR/NAME (default build-fuzz/work), never
# into tests/fuzz/corpus/NAME; crash/leak reproducers go to WORKDIR/NAME-artifacts.
# Exit status: libFuzzer's (0: nothing found).
set -eu
bin=$1 name=$2 secs=$3
work=${4:-build-fuzz/work}
[ $# -ge 4 ] && shift 4 || shift 3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work/$name" "$work/$name-artifacts"
dict=""
[ -f "$here/$name.dict" ] && dict="-dict=$here/$name.dict"
# shellcheck disable=SC2086
exec "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$work/$name-artifacts/" $dict "$@" \
  "$work/$name" "$here/corpus/$name"
