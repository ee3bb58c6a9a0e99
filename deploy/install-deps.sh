#!/bin/sh
# The one list of Debian packages StorePulse needs to build, test and run.
# Used by the README, .ci/run, deploy/Dockerfile and users. Needs root.
set -eu
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake pkg-config \
  librdkafka-dev libavro-dev libhiredis-dev libyaml-dev libjansson-dev libcmocka-dev \
  redis-server redis-tools kcat \
  python3 python3-avro python3-confluent-kafka python3-redis \
  tzdata valgrind \
  prometheus-alertmanager \
  clang libclang-rt-14-dev >/dev/null # clang + libFuzzer runtime (only recommended by clang)
echo "install-deps: done"
