#!/usr/bin/env bash
# Retention at scale: millions of archived events, then one sweep of the
# retention worker while a writer keeps inserting, measuring how long the
# sweep takes, the longest any delete statement held its row locks, the
# writer's latency without and during the sweep, and the table's size.
#
#   bench/retention.sh [events, default 3000000]
#
# Uses its own database (triggers_retention_bench) on the dev Postgres
# (scripts/dev-deps.sh); builds and runs target/debug/triggers-api (or $TRIGGERS_BIN).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
EVENTS="${1:-3000000}"
# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh
BENCH_URL="${DATABASE_URL%/*}/triggers_retention_bench"
# The sweep is SQL-bound: the debug binary measures the same.
BIN="${TRIGGERS_BIN:-target/debug/triggers-api}"
cargo build --bin triggers-api >&2

psql -q "$DATABASE_URL" -c 'DROP DATABASE IF EXISTS triggers_retention_bench' \
    -c 'CREATE DATABASE triggers_retention_bench'
DATABASE_URL="$BENCH_URL" "$BIN" migrate
q() { psql -X -q -At "$BENCH_URL" "$@"; }

echo "generating $EVENTS events over 400 days for 40 organizations (10 per tier)" >&2
started=$(date +%s)
q <<SQL
CREATE FUNCTION pg_temp.v7(ts timestamptz) RETURNS uuid LANGUAGE sql VOLATILE AS \$\$
  SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7'
          || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid
\$\$;
INSERT INTO organizations (id, name, tier, rate_limit_per_minute)
SELECT gen_random_uuid(), 'bench-' || g, (ARRAY['free', 'pro', 'business', 'enterprise'])[1 + g % 4], 100
FROM generate_series(0, 39) g;
CREATE TEMP TABLE orgs AS SELECT row_number() OVER (ORDER BY name) - 1 AS n, id FROM organizations;
INSERT INTO events (id, organization_id, type, payload, status, attempts, created_at, archived_at)
SELECT pg_temp.v7(at), o.id, 'bench.event', '{"order": 1, "total": 42.5}',
       (ARRAY['delivered', 'delivered', 'acknowledged', 'acknowledged', 'delivered', 'acknowledged',
              'delivered', 'queued', 'dead_letter', 'acknowledged'])[1 + (g / 40) % 10], 1, at, at
FROM generate_series(1, $EVENTS) g
JOIN orgs o ON o.n = g % 40
-- Mentioning g makes the subquery correlated: a new time for every row.
CROSS JOIN LATERAL (SELECT now() - (random() * interval '400 days') - g * interval '0' AS at) t;
INSERT INTO delivery_attempts (event_id, attempt, organization_id, attempted_at, duration_ms, response_status)
SELECT id, 1, organization_id, created_at, 20, 200 FROM events WHERE status = 'delivered';
VACUUM ANALYZE events;
VACUUM ANALYZE delivery_attempts;
SQL
echo "generated in $(( $(date +%s) - started )) s" >&2

size() { q -c "SELECT pg_size_pretty(pg_total_relation_size('events')) || ' events, '
               || pg_size_pretty(pg_total_relation_size('delivery_attempts')) || ' attempts; '
               || (SELECT count(*) FROM events) || ' event rows'"; }
echo "before: $(size)"

# A UUIDv7 of the current time, as the service mints them: the archive is
# partitioned by id, and a random (v4) id belongs to no month.
V7="(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || '7'
      || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid"
# The writer: what ingestion's archiver does, one row per transaction.
cat > /tmp/retention-writer.sql <<SQL
INSERT INTO events (id, organization_id, type, payload, created_at)
SELECT $V7, (SELECT id FROM organizations WHERE name = 'bench-1'), 'live', '{}', now();
SQL
writer() { # $1: seconds, $2: log prefix
    (cd /tmp && pgbench -n -c 2 -j 2 -T "$1" -f /tmp/retention-writer.sql -l --log-prefix="$2" "$BENCH_URL" \
        | grep -E 'latency average|tps' >&2)
    cat /tmp/"$2".* | awk '{ print $3 / 1000 }' | sort -n | awk '
        { v[NR] = $1 } END { printf "writer: %d inserts, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
          NR, v[int(NR * 0.5)], v[int(NR * 0.99)], v[NR] }'
    rm -f /tmp/"$2".*
}
echo "writer alone (15 s):"
writer 15 retention-alone

echo "sweep, with the writer running:"
writer 60 retention-during &
WRITER=$!
sleep 2
DATABASE_URL="$BENCH_URL" "$BIN" admin retention sweep
wait "$WRITER"
echo "after the sweep: $(size)"
q -c "VACUUM events" -c "VACUUM delivery_attempts"
echo "after VACUUM (space kept for reuse, not returned): $(size)"
q -c "INSERT INTO events (id, organization_id, type, payload, created_at)
      SELECT $V7, (SELECT id FROM organizations WHERE name = 'bench-2'), 'refill', '{}', now()
      FROM generate_series(1, 500000)"
echo "after 500,000 new events into the freed space: $(size)"
