#!/usr/bin/env bash
# A scaling curve on a local 3-master Redis Cluster: API replicas behind
# nginx, stream shards and workers step by step (STEPS=api:shards:workers,...),
# events/s and p99 through nginx, and each component's CPU in each step.
# Builds the release binary (unless BIN is given), starts (or reuses) the
# dev Postgres and Redis Cluster, and runs its own processes on 127.0.0.1.
# See bench/scale.py.
#
#   bench/scale.sh
#   STEPS=1:3:1,2:3:1,3:3:1,3:12:1,3:48:1,3:48:3 DURATION=10s CONNECTIONS=32 bench/scale.sh
#   BIN=/path/to/triggers-api bench/scale.sh      # measure another build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in wrk nginx redis-cli psql python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "scale.sh: $tool is required (Debian: apt-get install -y wrk nginx redis-tools postgresql-client python3)" >&2
        exit 1
    }
done
export TRIGGERS_DEV_REDIS_CLUSTER=1
# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet --bin triggers-api
    export BIN="$PWD/target/release/triggers-api"
fi
exec python3 bench/scale.py
