#!/usr/bin/env bash
# Ingestion benchmark: POST /api/events under wrk, followed by GET /health
# with the same settings as the framework ceiling. See bench/README.md.
#
# Targets a service that is already running (e.g. scripts/run.sh):
#   bench/ingest.sh
#   DURATION=30s CONNECTIONS=128 bench/ingest.sh
#
# Environment:
#   BASE_URL              service to benchmark      (default http://127.0.0.1:8080)
#   ORGS                  organizations to create   (default 50)
#   DURATION              wrk duration per run      (default 15s)
#   THREADS               wrk threads               (default 2)
#   CONNECTIONS           wrk connections           (default 64)
#   TRIGGERS_ADMIN_TOKEN  sent as "Authorization: Bearer ..." when creating
#                         organizations, if the service requires it
#   BENCH_STATUS_BREAKDOWN=1  also print a count per HTTP status for ingest
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

BASE_URL="${BASE_URL:-http://127.0.0.1:8080}"
BASE_URL="${BASE_URL%/}"
ORGS="${ORGS:-50}"
DURATION="${DURATION:-15s}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
# Bounds every single request, so a stalled server cannot hang a run.
WRK_TIMEOUT="5s"

die() { printf 'ingest.sh: error: %s\n' "$*" >&2; exit 1; }

for tool in wrk python3; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is required (Debian/Ubuntu: apt-get install -y $tool)"
done
[[ "$ORGS" =~ ^[1-9][0-9]*$ ]] || die "ORGS must be a positive integer (got '$ORGS')"
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer (got '$THREADS')"
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer (got '$CONNECTIONS')"
((CONNECTIONS >= THREADS)) || die "CONNECTIONS ($CONNECTIONS) must be >= THREADS ($THREADS)"
[[ "$DURATION" =~ ^[1-9][0-9]*[smh]?$ ]] || die "DURATION must look like 15s, 2m, ... (got '$DURATION')"
[[ "$BASE_URL" =~ ^https?:// ]] || die "BASE_URL must start with http:// or https:// (got '$BASE_URL')"

WORK_DIR="$(mktemp -d)"
trap 'rm -rf "$WORK_DIR"' EXIT
KEYS_FILE="$WORK_DIR/keys.lua"

# Create the organizations and write their API keys as a Lua list for
# events.lua. Python's standard library does the HTTP and the JSON parsing,
# so nothing beyond python3 is needed. It also fails fast with a clear
# message when the service is not up.
echo "==> creating $ORGS organizations on $BASE_URL" >&2
BASE_URL="$BASE_URL" ORGS="$ORGS" KEYS_FILE="$KEYS_FILE" python3 - <<'PY'
import json, os, re, secrets, sys, urllib.error, urllib.request

base = os.environ["BASE_URL"]
orgs = int(os.environ["ORGS"])
token = os.environ.get("TRIGGERS_ADMIN_TOKEN", "")
run_id = secrets.token_hex(4)  # keeps org names unique across runs

def fail(msg):
    sys.exit(f"ingest.sh: error: {msg}")

try:
    with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
        r.read()
except urllib.error.HTTPError as e:
    fail(f"GET {base}/health answered {e.code}; is the service healthy?")
except OSError as e:
    fail(f"cannot reach {base}/health ({e}); start the service first, e.g. scripts/run.sh")

def lua_string(s):
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in s):
        fail(f"unexpected characters in API key {s!r}")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

keys = []
for n in range(1, orgs + 1):
    body = json.dumps({"organization_name": f"bench-{n}-{run_id}", "tier": "enterprise"}).encode()
    req = urllib.request.Request(f"{base}/api/keys/generate", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, text = r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode("utf-8", "replace")
    except OSError as e:
        fail(f"POST /api/keys/generate failed: {e}")
    if status not in (200, 201):
        hint = " (set TRIGGERS_ADMIN_TOKEN?)" if status in (401, 403) else ""
        fail(f"POST /api/keys/generate answered {status}{hint}: {text[:300]}")
    try:
        key = json.loads(text)["api_key"]
    except (ValueError, KeyError, TypeError):
        fail(f"no api_key in response: {text[:300]}")
    # Verify each key once, one at a time, before timing: argon2 is not what
    # is measured, and a burst of first uses from one address would count
    # against the per-address limit on unverified keys (429).
    try:
        check = urllib.request.Request(f"{base}/api/keys", headers={"X-API-Key": key})
        with urllib.request.urlopen(check, timeout=10) as r:
            r.read()
    except (urllib.error.HTTPError, OSError) as e:
        fail(f"GET /api/keys with a new key failed: {e}")
    keys.append(key)

with open(os.environ["KEYS_FILE"], "w") as f:
    f.write("return {\n" + "".join(f"  {lua_string(k)},\n" for k in keys) + "}\n")
print(f"==> {len(keys)} API keys ready", file=sys.stderr)
PY

WRK_ARGS=(-t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --timeout "$WRK_TIMEOUT")

echo "==> ingest: POST $BASE_URL/api/events (${WRK_ARGS[*]})" >&2
wrk "${WRK_ARGS[@]}" -s "$BENCH_DIR/events.lua" "$BASE_URL/api/events" -- "$KEYS_FILE" |
    tee "$WORK_DIR/ingest.out"

echo "==> ceiling: GET $BASE_URL/health (${WRK_ARGS[*]})" >&2
wrk "${WRK_ARGS[@]}" -s "$BENCH_DIR/health.lua" "$BASE_URL/health" |
    tee "$WORK_DIR/health.out"

# Summarise both runs as a row for the results table in bench/README.md.
result_field() { # FILE FIELD
    sed -n 's/^BENCH_RESULT .*[[:space:]]'"$2"'=\([^[:space:]]*\).*$/\1/p' "$1" | tail -n 1
}
ingest_errors=0
for field in connect read write timeout non2xx; do
    ingest_errors=$((ingest_errors + $(result_field "$WORK_DIR/ingest.out" "$field")))
done
machine="$(nproc) CPU $(uname -m)"
if [[ -r /proc/cpuinfo ]]; then
    model="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)"
    [[ -n "$model" ]] && machine="$machine, $model"
fi
echo
echo "Results row for bench/README.md:"
# shellcheck disable=SC2016 # the backticks are Markdown code quotes
printf '| %s | %s | `ORGS=%s THREADS=%s CONNECTIONS=%s DURATION=%s bench/ingest.sh` | %s | %s ms | %s ms | %s | %s |\n' \
    "$(date -u +%Y-%m-%d)" "$machine" "$ORGS" "$THREADS" "$CONNECTIONS" "$DURATION" \
    "$(result_field "$WORK_DIR/ingest.out" rps)" \
    "$(result_field "$WORK_DIR/ingest.out" p50_ms)" \
    "$(result_field "$WORK_DIR/ingest.out" p99_ms)" \
    "$ingest_errors" \
    "$(result_field "$WORK_DIR/health.out" rps)"
