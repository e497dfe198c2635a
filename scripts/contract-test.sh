#!/usr/bin/env bash
# Contract test: schemathesis against a live instance, every operation of
# /openapi.json, with a valid key. Fails on a server error, a response that
# violates the schema, an undocumented status code or header, or valid input
# refused (and invalid input accepted).
#
#   scripts/contract-test.sh [path to the triggers-api binary]
#
# Needs REDIS_URL and DATABASE_URL (scripts/dev-deps.sh). schemathesis is
# installed into .data/venv from PyPI on first use. The run is bounded:
# a few examples per operation (CONTRACT_MAX_EXAMPLES).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BINARY="${1:-target/debug/triggers-api}"
SCHEMATHESIS_VERSION="4.32.5"
VENV=".data/venv"
MAX_EXAMPLES="${CONTRACT_MAX_EXAMPLES:-20}"
# Each run stops after its examples; the timeout only guards against a hang.
RUN_TIMEOUT="${CONTRACT_RUN_TIMEOUT:-300}"

log() { printf 'contract-test: %s\n' "$*" >&2; }

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        # Debian splits venv support out of python3.
        log "installing python3-venv"
        apt-get install -y -qq python3-venv >/dev/null || sudo apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
PREFIX="contract-$$-$RANDOM"
LOG="$(mktemp -t triggers-contract.XXXXXX.log)"
# A database of its own: the dev database holds rows other tests sealed with
# keys this run does not have, and the service rightly logs those as errors.
ADMIN_DB_URL="$DATABASE_URL"
DB_NAME="contract_${$}_$RANDOM"
psql -q "$ADMIN_DB_URL" -c "CREATE DATABASE $DB_NAME" >/dev/null
export DATABASE_URL="${ADMIN_DB_URL%/*}/$DB_NAME"
# Development mode and open sign-up: schemathesis creates organizations
# through POST /api/keys/generate like any client, and no secret key is needed.
TRIGGERS_LISTEN="127.0.0.1:$PORT" TRIGGERS_REDIS_PREFIX="$PREFIX" \
    TRIGGERS_CONSUMER_NAME="$PREFIX" TRIGGERS_STREAM_SHARDS=2 RUST_LOG=warn \
    TRIGGERS_ENV=development TRIGGERS_ALLOW_OPEN_SIGNUP=true \
    "$BINARY" serve >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    psql -q "$ADMIN_DB_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

for _ in $(seq 1 150); do
    curl -fsS "$BASE/ready" >/dev/null 2>&1 && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$LOG" >&2; log "the service did not start"; exit 1; }
    sleep 0.2
done
curl -fsS "$BASE/ready" >/dev/null || { cat "$LOG" >&2; log "the service is not ready"; exit 1; }

new_key() {
    curl -fsS -X POST "$BASE/api/keys/generate" -H 'content-type: application/json' \
        -d '{"organization_name": "contract-test", "tier": "enterprise"}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])'
}

run() {
    timeout "$RUN_TIMEOUT" "$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml \
        run "$BASE/openapi.json" --max-examples "$MAX_EXAMPLES" \
        --request-timeout 15 --seed 1 --no-color "$@"
}

# Key rotation revokes the key it is called with: it runs last, on its own
# key, so it does not turn every other operation's requests into 401s.
log "every operation but key rotation"
run -H "X-API-Key: $(new_key)" --exclude-path /api/keys/rotate
log "key rotation"
run -H "X-API-Key: $(new_key)" --include-path /api/keys/rotate --phases coverage,fuzzing

if grep -q '"level":"ERROR"' "$LOG"; then
    grep '"level":"ERROR"' "$LOG" | head -20 >&2
    log "the service logged errors during the run"
    exit 1
fi
log "passed"
