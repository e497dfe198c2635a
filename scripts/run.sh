#!/usr/bin/env bash
# Run the Triggers API locally against the dev Redis/PostgreSQL instances.
#
#   scripts/run.sh [extra args for `triggers-api serve`]
#
# dev-deps.sh starts (or reuses) Redis and PostgreSQL and exports REDIS_URL
# and DATABASE_URL unless they are already set. The service listens on
# TRIGGERS_LISTEN (default 0.0.0.0:8080). Release mode, because this script is
# also what the benchmark in bench/ is run against.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh

# A developer's machine: the public development key seals webhook secrets
# and anyone may create an organization. Production needs neither setting
# (and refuses to start without TRIGGERS_SECRET_KEYS).
export TRIGGERS_ENV="${TRIGGERS_ENV:-development}"
export TRIGGERS_ALLOW_OPEN_SIGNUP="${TRIGGERS_ALLOW_OPEN_SIGNUP:-true}"

exec cargo run --release --bin triggers-api -- serve "$@"
