#!/usr/bin/env bash
# Every performance figure in one run: single and batch ingest against their
# ceilings, archive and delivery rates, peak RSS per process, idle CPU.
# Builds the release binaries, starts (or reuses) the dev Redis and Postgres,
# and runs its own service processes on 127.0.0.1. See bench/all.py.
#
#   bench/all.sh
#   DURATION=30s CONNECTIONS=50 ORGS=60 BATCH=100 BACKLOG=200000 IDLE_SECONDS=60 bench/all.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in wrk redis-benchmark redis-cli python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "all.sh: $tool is required (Debian: apt-get install -y wrk redis-tools python3)" >&2
        exit 1
    }
done
# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh
cargo build --release --quiet --bin triggers-api --example delivery_bench
exec python3 bench/all.py
