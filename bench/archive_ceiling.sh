#!/usr/bin/env bash
# The archive's ceiling on one Postgres: rows/s and Postgres CPU per row for
# the archiver's insert, its conflict-checking fallback, COPY, two sessions,
# and the insert without the inbox indexes. See bench/archive_ceiling.py.
#
#   bench/archive_ceiling.sh
#   ROWS=200000 BATCH=500 BIN=/path/to/triggers-api bench/archive_ceiling.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in psql python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "archive_ceiling.sh: $tool is required (Debian: apt-get install -y postgresql-client python3)" >&2
        exit 1
    }
done
# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet --bin triggers-api
    export BIN="$PWD/target/release/triggers-api"
fi
exec python3 bench/archive_ceiling.py
