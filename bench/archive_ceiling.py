#!/usr/bin/env python3
"""How fast one Postgres takes archived events, by statement and by index.

Started by bench/archive_ceiling.sh. A database of its own, migrated by the
service; ROWS events (UUIDv7 ids of this month, the payload of
bench/events.lua) staged in an unlogged table; then each way of writing them
into the archive, from an emptied table:

  insert          INSERT ... SELECT in statements of BATCH rows (the archiver's)
  insert+check    the same with ON CONFLICT (id) DO NOTHING (its fallback)
  copy            COPY ... FROM STDIN (CSV)
  insert x2       the archiver's insert from two sessions at once
  insert, -inbox  the archiver's insert without the inbox, organization and
                  leasable indexes
  insert, pkey    the archiver's insert with the primary key as the only index

For each, the best of ROUNDS (3) runs: rows/s (wall clock) and Postgres CPU
per row (the postmaster and all its processes, from /proc: backends, WAL
writer, checkpointer, autovacuum). The last line, BENCH_ARCHIVE {...}, holds every figure.
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

ROWS = int(os.environ.get("ROWS", "100000"))
BATCH = int(os.environ.get("BATCH", "500"))
# Checkpoints (every max_wal_size of WAL) land in one run or another and
# cost it their full-page writes: each way is measured ROUNDS times, taking
# turns, and its best round kept.
ROUNDS = int(os.environ.get("ROUNDS", "3"))
ORGS = 20
COLUMNS = "id, organization_id, type, dedup_id, payload, created_at"


def uuid7(ms):
    rand = random.getrandbits(74)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62)
                     | (rand & ((1 << 62) - 1)))


def write_csv(path, orgs):
    now = int(time.time() * 1000)
    with open(path, "w") as f:
        for n in range(ROWS):
            payload = json.dumps({"n": n, "thread": 1, "pad": "x" * 200}).replace('"', '""')
            f.write(f'{n},{uuid7(now + n // 100)},{orgs[n % ORGS]},bench.event,,"{payload}",'
                    f'{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000))}\n')


def psql_script(script):
    url = os.environ["DATABASE_URL"]
    out = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                         input=script, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"bench: psql failed: {out.stderr.strip()}")


def batches(on_conflict="", first=0, last=None):
    last = ROWS if last is None else last
    return "".join(
        f"INSERT INTO events ({COLUMNS}) SELECT {COLUMNS.replace('payload', 'payload::jsonb')} "
        f"FROM stage WHERE n >= {lo} AND n < {min(lo + BATCH, last)} {on_conflict};\n"
        for lo in range(first, last, BATCH))


def measure(name, scripts, postmaster):
    psql_script("TRUNCATE events CASCADE;")
    cpu0, t0 = B.tree_cpu(postmaster), time.time()
    procs = [subprocess.Popen(["psql", os.environ["DATABASE_URL"], "-XAtq", "-v", "ON_ERROR_STOP=1",
                               "-f", "-"], stdin=subprocess.PIPE, text=True) for _ in scripts]
    for proc, script in zip(procs, scripts):
        proc.stdin.write(script)
        proc.stdin.close()
    for proc in procs:
        if proc.wait(timeout=1800) != 0:
            raise SystemExit(f"bench: {name} failed")
    wall = time.time() - t0
    # A session's backend has exited, but its CPU reaches the postmaster's
    # children total only once the postmaster has reaped it.
    time.sleep(1)
    cpu = B.tree_cpu(postmaster) - cpu0
    count = int(B.psql("SELECT count(*) FROM events"))
    if count != ROWS:
        raise SystemExit(f"bench: {name} stored {count} of {ROWS} rows")
    B.log(f"{name}: {ROWS / wall:,.0f} rows/s, {1e6 * cpu / ROWS:.1f} us of Postgres CPU a row")
    return {"rows_per_s": ROWS / wall, "pg_cpu_us_per_row": 1e6 * cpu / ROWS}


def best(results, name, run):
    """Keeps the best rows/s and the least CPU a row seen for `name`."""
    kept = results.setdefault(name, dict(run))
    kept["rows_per_s"] = max(kept["rows_per_s"], run["rows_per_s"])
    kept["pg_cpu_us_per_row"] = min(kept["pg_cpu_us_per_row"], run["pg_cpu_us_per_row"])


def in_turns(results, ways, postmaster):
    """Measures each of `ways` (name: psql scripts run side by side) ROUNDS
    times, taking turns, and keeps the best of each."""
    for _ in range(ROUNDS):
        for name, scripts in ways.items():
            best(results, name, measure(name, scripts, postmaster))


def drop_indexes(condition):
    """Drops the indexes of the events table that match `condition`."""
    names = B.psql("SELECT string_agg(indexname, ',') FROM pg_indexes"
                   f" WHERE tablename = 'events' AND ({condition})").split(",")
    psql_script("".join(f"DROP INDEX {name};\n" for name in names if name))


def main():
    db = B.FreshDatabase("ceiling")
    results = {}
    try:
        subprocess.run([os.environ["BIN"], "migrate"], check=True, capture_output=True,
                       env={**os.environ, "TRIGGERS_ENV": "development"})
        postmaster = B.postmaster_pid(B.pg_port())
        orgs = [str(uuid.uuid4()) for _ in range(ORGS)]
        B.psql("INSERT INTO organizations (id, name, tier, rate_limit_per_minute) VALUES "
               + ", ".join(f"('{o}', 'ceiling-{i}', 'enterprise', 100000)"
                           for i, o in enumerate(orgs)))
        csv = os.path.join(tempfile.mkdtemp(), "events.csv")
        write_csv(csv, orgs)
        psql_script("CREATE UNLOGGED TABLE stage (n int PRIMARY KEY, id uuid, organization_id uuid,"
                    " type text, dedup_id text, payload text, created_at timestamptz);\n"
                    f"\\copy stage FROM '{csv}' CSV\nANALYZE stage;")
        copy = f"\\copy events ({COLUMNS}) FROM PROGRAM 'cut -d, -f2- {csv}' CSV\n"
        half = (ROWS // 2) // BATCH * BATCH
        ways = {
            "insert": [batches()],
            "insert_check": [batches("ON CONFLICT (id) DO NOTHING")],
            "copy": [copy],
            "insert_x2": [batches(last=half), batches(first=half)],
        }
        in_turns(results, ways, postmaster)
        drop_indexes("indexdef LIKE '%(organization_id, status, id DESC)%'"
                     " OR indexdef LIKE '%(organization_id, id DESC)%'"
                     " OR indexdef LIKE '%(organization_id, id) WHERE%'")
        in_turns(results, {"insert_without_inbox_indexes": [batches()]}, postmaster)
        drop_indexes("indexname NOT IN (SELECT conname FROM pg_constraint WHERE contype = 'p')")
        in_turns(results, {"insert_primary_key_only": [batches()]}, postmaster)
    finally:
        db.stop()
    width = max(len(k) for k in results)
    print(f"\n{'archive write (' + str(ROWS) + ' rows)':<{width + 2}}  {'rows/s':>9}  PG CPU a row")
    for name, r in results.items():
        print(f"{name:<{width + 2}}  {r['rows_per_s']:>9,.0f}  {r['pg_cpu_us_per_row']:>6.1f} us")
    print("BENCH_ARCHIVE " + json.dumps(results))


if __name__ == "__main__":
    main()
