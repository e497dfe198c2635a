#!/usr/bin/env bash
# The compose stack without Docker: the compose file's own nginx.conf and
# prometheus.yml (deploy/compose/), run by locally installed nginx and
# Prometheus, in front of two api processes and one worker on 127.0.0.1,
# against the dev Redis and PostgreSQL of scripts/dev-deps.sh.
#
#   scripts/stack-test.sh                 # TRIGGERS_BIN defaults to target/debug/triggers-api
#   TRIGGERS_BIN=/path/to/triggers-api scripts/stack-test.sh
#
# The two configuration files are copied to .data/stack/ with only host
# names, ports and file paths rewritten (sed below); everything else about
# them is what docker-compose runs. The run uses its own Redis key prefix
# and its own database, removed at the end with every process it started.
#
# The processes get the compose file's OTEL_* settings, the endpoint as
# written but for the host and port of the jaeger service, mapped like the
# others: jaeger:4318 (OTLP/HTTP) to an OTLP/HTTP receiver (oteltap),
# jaeger:4317 (OTLP/gRPC) to a port where nothing speaks OTLP/HTTP. So an
# endpoint on the wrong port or path exports nothing, and the test fails.
#
# Asserts: requests through nginx reach both api replicas; an event sent
# through nginx is archived (GET /api/events/{id}) and delivered to a local
# webhook receiver; its request's span and its delivery's span reach the
# OTLP endpoint in one trace; a webhook answering 410 dead-letters its event;
# Prometheus has every target up with its role label and returns data for
# the dashboard's queries; every metric the dashboard and the alert rules
# use is in the live scrape, except those listed in
# observability/metrics-pending.txt; `promtool check metrics` finds nothing
# to complain about in any process's scrape.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
TRIGGERS_BIN="${TRIGGERS_BIN:-target/debug/triggers-api}"
PYTHON="${PYTHON:-$ROOT/.data/deploy-venv/bin/python}"
STACK="$ROOT/.data/stack"
BASE_PORT="${STACK_BASE_PORT:-18400}"
LB_PORT=$BASE_PORT
API1_PORT=$((BASE_PORT + 1))
API2_PORT=$((BASE_PORT + 2))
WORKER_PORT=$((BASE_PORT + 3))
HOOK_PORT=$((BASE_PORT + 4))
PROM_PORT=$((BASE_PORT + 5))
OTLP_HTTP_PORT=$((BASE_PORT + 6))
OTLP_GRPC_PORT=$((BASE_PORT + 7))
RUN_ID="stack$$$(date +%s)"
ADMIN_TOKEN="stack-admin-$RUN_ID"
EVENTS=20
STARTED=$SECONDS

FAILED=0
pass() { printf 'PASS %s\n' "$*"; }
fail() {
    printf 'FAIL %s\n' "$*"
    FAILED=1
}
die() {
    fail "$*"
    exit 1
}

[[ -x "$TRIGGERS_BIN" ]] || die "no binary at $TRIGGERS_BIN (cargo build --bin triggers-api, or set TRIGGERS_BIN)"
TRIGGERS_BIN="$(cd "$(dirname "$TRIGGERS_BIN")" && pwd)/$(basename "$TRIGGERS_BIN")"
[[ -x "$PYTHON" ]] || die "no Python with PyYAML at $PYTHON (scripts/check-deploy.sh creates it, or set PYTHON)"
for tool in nginx prometheus curl psql redis-cli; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/check-deploy.sh installs nginx and prometheus)"
done
for port in $LB_PORT $API1_PORT $API2_PORT $WORKER_PORT $HOOK_PORT $PROM_PORT $OTLP_HTTP_PORT $OTLP_GRPC_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is taken; set STACK_BASE_PORT to a free range"
    fi
done

# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh >/dev/null

rm -rf "$STACK"
mkdir -p "$STACK/tmp" "$STACK/prometheus"
# nginx's workers run as nobody when started by root.
chmod 0777 "$STACK/tmp"

PIDS=()
DB_NAME="triggers_$RUN_ID"
ADMIN_DB_URL="$DATABASE_URL"
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    redis-cli -u "$REDIS_URL" --scan --pattern "$RUN_ID*" 2>/dev/null |
        xargs -r -n 500 redis-cli -u "$REDIS_URL" unlink >/dev/null 2>&1 || true
    psql -q "$ADMIN_DB_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# A database of its own: the dev database may hold a schema from another
# checkout, and the run must leave nothing behind.
psql -q "$ADMIN_DB_URL" -c "CREATE DATABASE $DB_NAME" >/dev/null
export DATABASE_URL="${ADMIN_DB_URL%/*}/$DB_NAME"

# ------------------------------------------------ configuration, rewritten ---
sed -e "s|server api-1:8080|server 127.0.0.1:$API1_PORT|" \
    -e "s|server api-2:8080|server 127.0.0.1:$API2_PORT|" \
    -e "s|listen 8080;|listen 127.0.0.1:$LB_PORT;|" \
    -e "s|/tmp/|$STACK/tmp/|g" \
    deploy/compose/nginx.conf >"$STACK/nginx.conf"
sed -e "s|\"api-1:8080\"|\"127.0.0.1:$API1_PORT\"|" \
    -e "s|\"api-2:8080\"|\"127.0.0.1:$API2_PORT\"|" \
    -e "s|\"worker:8080\"|\"127.0.0.1:$WORKER_PORT\"|" \
    -e "s|/etc/prometheus/rules/alerts.yml|$ROOT/observability/prometheus/alerts.yml|" \
    deploy/compose/prometheus.yml >"$STACK/prometheus.yml"
# A rewrite that matched nothing would leave compose host names behind.
if grep -Eq 'api-[12]:8080|worker:8080|/etc/prometheus' "$STACK/nginx.conf" "$STACK/prometheus.yml"; then
    die "deploy/compose/ changed shape: the host-name rewrite missed something"
fi
# The worker's OTEL_* settings, as NAME=VALUE lines, the jaeger service's
# ports mapped to local ones.
"$PYTHON" - "$OTLP_HTTP_PORT" "$OTLP_GRPC_PORT" >"$STACK/otel.env" <<'PYEOF'
import sys, yaml
http_port, grpc_port = sys.argv[1:]
env = yaml.safe_load(open("docker-compose.yml"))["services"]["worker"]["environment"]
for name, value in sorted(env.items()):
    if name.startswith("OTEL_"):
        value = str(value).replace("//jaeger:4318", f"//127.0.0.1:{http_port}")
        print(f"{name}={value.replace('//jaeger:4317', f'//127.0.0.1:{grpc_port}')}")
PYEOF
grep -q '^OTEL_EXPORTER_OTLP_ENDPOINT=' "$STACK/otel.env" || die "docker-compose.yml sets no OTEL_EXPORTER_OTLP_ENDPOINT"
if grep -q jaeger "$STACK/otel.env"; then
    die "docker-compose.yml's OTLP endpoint changed shape: $(grep jaeger "$STACK/otel.env")"
fi
mapfile -t OTEL_ENV <"$STACK/otel.env"
nginx -t -q -c "$STACK/nginx.conf" -p "$STACK" || die "nginx rejects the compose nginx.conf"
promtool check config "$STACK/prometheus.yml" >/dev/null || die "promtool rejects the compose prometheus.yml"
pass "compose nginx.conf and prometheus.yml accepted (host names rewritten into $STACK)"

# --------------------------------------------------------------- start ---
cat >"$STACK/receiver.py" <<'PYEOF'
# Webhook receiver: /ok answers 204 and records the event id, /gone answers 410.
import http.server, json, sys
log = open(sys.argv[2], "a", buffering=1)
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/ok":
            log.write(json.loads(body)["id"] + "\n")
            self.send_response(204)
        else:
            self.send_response(410)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
PYEOF
python3 "$STACK/receiver.py" "$HOOK_PORT" "$STACK/received.txt" 2>"$STACK/receiver.log" &
PIDS+=($!)
# Stands in for jaeger's OTLP/HTTP receiver; prints each span as a JSON line.
PYTHONUNBUFFERED=1 "$PYTHON" -m oteltap --port "$OTLP_HTTP_PORT" >"$STACK/spans.ndjson" 2>"$STACK/oteltap.log" &
PIDS+=($!)

# Production mode, as deployed: one encryption key shared by every process.
SECRET_KEYS="$("$TRIGGERS_BIN" new-secret-key --id stack)"
start_service() { # name role port
    env "${OTEL_ENV[@]}" \
        TRIGGERS_LISTEN="127.0.0.1:$3" \
        TRIGGERS_SECRET_KEYS="$SECRET_KEYS" \
        TRIGGERS_CLIENT_IP_HEADER=x-forwarded-for \
        TRIGGERS_CONSUMER_NAME="$1-$RUN_ID" \
        TRIGGERS_REDIS_PREFIX="$RUN_ID" \
        TRIGGERS_ADMIN_TOKEN="$ADMIN_TOKEN" \
        TRIGGERS_ALLOW_PRIVATE_WEBHOOKS=true \
        TRIGGERS_SHUTDOWN_TIMEOUT=5s \
        "$TRIGGERS_BIN" serve --role "$2" >"$STACK/$1.log" 2>&1 &
    PIDS+=($!)
}
start_service api-1 api "$API1_PORT"
start_service api-2 api "$API2_PORT"
start_service worker worker "$WORKER_PORT"
nginx -c "$STACK/nginx.conf" -p "$STACK" -g 'daemon off;' 2>"$STACK/nginx.log" &
PIDS+=($!)
prometheus --config.file="$STACK/prometheus.yml" --storage.tsdb.path="$STACK/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$STACK/prometheus.log" 2>&1 &
PIDS+=($!)

# wait_for SECONDS DESCRIPTION COMMAND...: poll every half second; the
# description only documents the call site.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.5
    done
}
for port in $API1_PORT $API2_PORT $WORKER_PORT; do
    wait_for 90 "process on $port" curl -fsS "http://127.0.0.1:$port/ready" ||
        die "the process on port $port is not ready after 90 s (logs in $STACK)"
done
wait_for 20 nginx curl -fsS "http://127.0.0.1:$LB_PORT/ready" || die "nginx does not answer on $LB_PORT"
pass "api-1, api-2 and worker ready; nginx balancing on 127.0.0.1:$LB_PORT"

# --------------------------------------------------------------- traffic ---
LB="http://127.0.0.1:$LB_PORT"
json() { "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
new_org() { # name webhook-path -> api key
    local key
    key="$(curl -fsS -X POST "$LB/api/keys/generate" -H "authorization: Bearer $ADMIN_TOKEN" \
        -H 'content-type: application/json' -d "{\"organization_name\": \"$1-$RUN_ID\", \"tier\": \"business\"}" | json '["api_key"]')"
    curl -fsS -X POST "$LB/api/webhook/config" -H "x-api-key: $key" -H 'content-type: application/json' \
        -d "{\"webhook_url\": \"http://127.0.0.1:$HOOK_PORT/$2\"}" >/dev/null
    printf '%s' "$key"
}
KEY="$(new_org ok ok)" || die "cannot create an organization through nginx"
GONE_KEY="$(new_org gone gone)" || die "cannot create a second organization through nginx"

IDS=()
for ((i = 0; i < EVENTS; i++)); do
    id="$(curl -fsS -X POST "$LB/api/events" -H "x-api-key: $KEY" -H 'content-type: application/json' \
        -d "{\"type\": \"stack.test\", \"dedup_id\": \"e-$i\", \"payload\": {\"n\": $i}}" | json '["id"]')" ||
        die "event $i was not accepted through nginx"
    IDS+=("$id")
done
pass "$EVENTS events accepted through nginx (202)"
# A duplicate and an invalid event, so the refusal counters exist.
status="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$LB/api/events" -H "x-api-key: $KEY" \
    -H 'content-type: application/json' -d '{"type": "stack.test", "dedup_id": "e-0", "payload": {}}')"
expect() { # what got want
    if [[ "$2" == "$3" ]]; then pass "$1: $2"; else fail "$1: got '$2', want '$3'"; fi
}
expect "repeated dedup_id" "$status" 409
status="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$LB/api/events" -H "x-api-key: $KEY" \
    -H 'content-type: application/json' -d '{"type": ""}')"
expect "invalid event" "$status" 422
GONE_ID="$(curl -fsS -X POST "$LB/api/events" -H "x-api-key: $GONE_KEY" -H 'content-type: application/json' \
    -d '{"type": "stack.test", "payload": {}}' | json '["id"]')" || die "event for the 410 webhook not accepted"

# Every api replica served some of it: round robin, not one sticky backend.
requests_on() {
    curl -fsS "http://127.0.0.1:$1/metrics" |
        awk '/^triggers_http_requests_total\{/ && /route="\/api\/events"/ { n += $NF } END { print n + 0 }'
}
r1="$(requests_on "$API1_PORT")"
r2="$(requests_on "$API2_PORT")"
if ((r1 > 0 && r2 > 0 && r1 + r2 >= EVENTS)); then
    pass "requests reached both replicas through nginx (POST /api/events: api-1 $r1, api-2 $r2)"
else
    fail "requests did not reach both replicas (POST /api/events: api-1 $r1, api-2 $r2)"
fi

# ------------------------------------------------- archive and delivery ---
status_of() { curl -fsS "$LB/api/events/$1" -H "x-api-key: $2" | json '["status"]'; }
last="${IDS[-1]}"
if wait_for 60 "delivery" grep -qx "$last" "$STACK/received.txt"; then
    pass "event $last delivered to the webhook receiver"
else
    fail "event $last did not reach the webhook receiver within 60 s"
fi
delivered_all() { (($(sort -u "$STACK/received.txt" | wc -l) >= EVENTS)); }
if wait_for 30 "all deliveries" delivered_all; then
    pass "all $EVENTS events delivered ($(wc -l <"$STACK/received.txt") requests received)"
else
    fail "only $(sort -u "$STACK/received.txt" | wc -l) of $EVENTS events delivered"
fi
is_delivered() { [[ "$(status_of "$last" "$KEY")" == delivered ]]; }
if wait_for 30 "archive" is_delivered; then
    archived="$(psql -tAq "$DATABASE_URL" -c "SELECT count(*) FROM events WHERE id = '$last'")"
    if [[ "$archived" == 1 ]]; then
        pass "event $last archived in Postgres, GET /api/events/{id} shows it delivered"
    else
        fail "GET /api/events/$last says delivered but Postgres has $archived rows for it"
    fi
else
    fail "GET /api/events/$last: status $(status_of "$last" "$KEY" || true), want delivered"
fi
# Its trace: the api's server span and the worker's delivery span, sent to
# the compose file's endpoint.
traced() {
    "$PYTHON" - "$STACK/spans.ndjson" "$1" <<'PYEOF'
import json, sys
path, event = sys.argv[1:]
spans = [json.loads(line) for line in open(path) if line.startswith("{")]
def attr(span, key):
    return next((a["value"].get("stringValue") for a in span.get("attributes", []) if a["key"] == key), None)
mine = [s for s in spans if attr(s, "event_id") == event]
server = {s["traceId"] for s in mine if s["name"] == "POST /api/events"}
webhook = {s["traceId"] for s in mine if s["name"] == "POST webhook"}
sys.exit(0 if server & webhook else 1)
PYEOF
}
if wait_for 30 "spans" traced "$last"; then
    pass "event $last: request and delivery spans reached $(grep '^OTEL_EXPORTER_OTLP_ENDPOINT=' "$STACK/otel.env") in one trace"
else
    fail "no trace of event $last at the OTLP/HTTP receiver ($(wc -l <"$STACK/spans.ndjson") lines received; endpoint $(grep '^OTEL_EXPORTER_OTLP_ENDPOINT=' "$STACK/otel.env"))"
fi
is_dead() { [[ "$(status_of "$GONE_ID" "$GONE_KEY")" == dead_letter ]]; }
if wait_for 30 "dead letter" is_dead; then
    pass "the event sent to a 410 webhook is dead-lettered"
else
    fail "event $GONE_ID: status $(status_of "$GONE_ID" "$GONE_KEY" || true), want dead_letter"
fi

# ------------------------------------------------------------ Prometheus ---
PROM="http://127.0.0.1:$PROM_PORT"
targets_up() {
    curl -fsS "$PROM/api/v1/targets?state=active" | "$PYTHON" -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
roles = sorted(t["labels"].get("role", "?") for t in targets if t["health"] == "up")
sys.exit(0 if roles == ["api", "api", "worker"] and len(targets) == 3 else 1)'
}
if wait_for 30 "targets" targets_up; then
    pass "Prometheus: 3 targets up, labelled role=api, api, worker"
else
    fail "Prometheus targets: $(curl -fsS "$PROM/api/v1/targets?state=active" | head -c 600)"
fi
# Two scrapes after the traffic, so rate() has something to work on.
sleep 11

for port in $API1_PORT $API2_PORT $WORKER_PORT; do
    curl -fsS "http://127.0.0.1:$port/metrics"
done | grep -Eo '^[a-zA-Z_:][a-zA-Z0-9_:]*' | sort -u >"$STACK/scraped-metrics.txt"
# Every metric with HELP, TYPE and the naming rules, on every role's scrape.
for port in $API1_PORT $API2_PORT $WORKER_PORT; do
    if lint="$(curl -fsS "http://127.0.0.1:$port/metrics" | promtool check metrics 2>&1)"; then
        pass "promtool check metrics: the scrape of 127.0.0.1:$port is clean"
    else
        fail "promtool check metrics on 127.0.0.1:$port: $lint"
    fi
done
if "$PYTHON" scripts/deploy/check_metrics.py --scraped "$STACK/scraped-metrics.txt"; then
    pass "every metric of the dashboard and alerts is in the live scrape or observability/metrics-pending.txt"
else
    fail "the dashboard or the alert rules use metrics the live scrape lacks"
fi

# The dashboard's queries, as Grafana would send them, must return data;
# those on pending metrics are skipped (and listed).
"$PYTHON" - "$PROM" "$ROOT" <<'PYEOF' || FAILED=1
import json, sys, urllib.parse, urllib.request
sys.path.insert(0, sys.argv[2] + "/scripts/deploy")
from check_metrics import metric_names, read_names
prom, root = sys.argv[1], sys.argv[2]
pending = read_names(root + "/observability/metrics-pending.txt")
dash = json.load(open(root + "/observability/grafana/triggers-api.json"))
bad = checked = 0
for panel in dash["panels"]:
    for target in panel.get("targets", []):
        expr = target["expr"].replace("$__rate_interval", "1m")
        if any(n in pending or n.rsplit("_", 1)[0] in pending for n in metric_names(expr)):
            print(f"SKIP {panel['title']!r}: uses a pending metric")
            continue
        url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        result = json.load(urllib.request.urlopen(url, timeout=10))["data"]["result"]
        checked += 1
        if not result:
            bad += 1
            print(f"FAIL dashboard {panel['title']!r}: no data for {expr}")
print(("PASS" if not bad else "FAIL") + f" Prometheus returns data for {checked - bad} of {checked} dashboard queries")
sys.exit(1 if bad else 0)
PYEOF
up_by_role="$(curl -fsS --get "$PROM/api/v1/query" --data-urlencode 'query=sum by (role) (up{role=~"api|worker"})' |
    "$PYTHON" -c '
import json, sys
result = json.load(sys.stdin)["data"]["result"]
print(" ".join(sorted(r["metric"]["role"] + "=" + r["value"][1] for r in result)))')"
expect "Prometheus up by role" "$up_by_role" "api=2 worker=1"
rules_loaded="$(curl -fsS "$PROM/api/v1/rules" | json '["data"]["groups"].__len__()')"
want_groups="$("$PYTHON" -c 'import yaml; print(len(yaml.safe_load(open("observability/prometheus/alerts.yml"))["groups"]))')"
expect "alert rule groups loaded by Prometheus" "$rules_loaded" "$want_groups"

elapsed=$((SECONDS - STARTED))
if ((FAILED)); then
    echo "FAIL stack test (${elapsed}s; logs in $STACK)"
    exit 1
fi
echo "PASS stack test (${elapsed}s)"
