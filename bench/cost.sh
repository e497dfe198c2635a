#!/usr/bin/env bash
# What one event costs each component (API, worker, Redis, Postgres) at a
# steady load well below saturation, Redis memory per queued event and per
# pending retry, Postgres bytes and WAL per archived event. Builds the
# release binary (unless BIN is given), starts (or reuses) the dev Redis and
# Postgres, and runs its own processes on 127.0.0.1. See bench/cost.py.
#
#   bench/cost.sh
#   RATES=500,1000,2000 DURATION=20s BATCH=100 BATCH_DURATION=20s QUEUED=20000 RETRIES=10000 bench/cost.sh
#   BIN=/path/to/triggers-api bench/cost.sh      # measure another build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in wrk redis-cli psql python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "cost.sh: $tool is required (Debian: apt-get install -y wrk redis-tools postgresql-client python3)" >&2
        exit 1
    }
done
# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet --bin triggers-api
    export BIN="$PWD/target/release/triggers-api"
fi
exec python3 bench/cost.py
