#!/usr/bin/env bash
# Key-guessing flood against a running service, with an honest client
# alongside: what the guesses are answered, how the honest client fares,
# and the service's memory before, during and after.
#
#   PID=<service pid> KEY=<a real API key> bench/flood.sh
#
# Knobs: BASE_URL (http://127.0.0.1:8080), DURATION (8s), CONNECTIONS (64).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export BENCH_DIR
BASE_URL="${BASE_URL:-http://127.0.0.1:8080}"
DURATION="${DURATION:-8s}"
CONNECTIONS="${CONNECTIONS:-64}"
: "${PID:?set PID to the service process id}"
: "${KEY:?set KEY to a valid API key}"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$PID/status"; }

post() {
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST "$BASE_URL/api/events" \
        -H "X-API-Key: $1" -H 'Content-Type: application/json' -d '{"type":"honest","payload":{}}'
}

post "$KEY" >/dev/null # the owner's key is in use, hence cached
echo "before: RSS $(rss) KiB, $(threads) threads"
FLOOD_PREFIX="${KEY:0:20}" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s \
    -s "$BENCH_DIR/flood.lua" "$BASE_URL" >"${TMPDIR:-/tmp}/flood-wrk.txt" &
WRK=$!
honest="${TMPDIR:-/tmp}/flood-honest.txt"
peak=0
: >"$honest"
while kill -0 "$WRK" 2>/dev/null; do
    post "$KEY" >>"$honest"
    now="$(rss)"
    ((now > peak)) && peak=$now
    sleep 0.05
done
wait "$WRK" || true
grep -E '^\[flood\]' "${TMPDIR:-/tmp}/flood-wrk.txt"
echo "peak: RSS $peak KiB; after: RSS $(rss) KiB, $(threads) threads"
sleep 5
echo "5 s later: RSS $(rss) KiB"
python3 - "$honest" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
codes = {}
for code, _ in rows:
    codes[code] = codes.get(code, 0) + 1
times = sorted(float(t) * 1000 for _, t in rows)
pct = lambda p: times[min(len(times) - 1, int(p / 100 * len(times)))]
print(f"honest: {len(rows)} requests, statuses {codes}, p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, max {times[-1]:.1f} ms")
PY
curl -s "$BASE_URL/metrics" |
    grep -E '^triggers_auth_(key_hashes|refused)_total|^triggers_http_requests_total\{method="POST",route="/api/events"' || true
