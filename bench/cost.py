#!/usr/bin/env python3
"""What one event costs each component, measured at a steady load.

Started by bench/cost.sh (which builds the release binary and starts Redis
and Postgres). Runs its own processes on 127.0.0.1: one API-role process,
one worker-role process and bench/receiver.py as the webhook endpoint.
Every load is bounded in time or count.

  1. steady single ingest: wrk paced at each of RATES events/s of
     POST /api/events for DURATION, organizations with a webhook answering
     204 (costs per event fall as the rate grows: more work shares each
     wakeup, each Redis read and each Postgres batch); CPU seconds of
     the API process, the worker, Redis (INFO cpu) and every Postgres
     process of the cluster, from just before the load until every event is
     archived and delivered; Redis INFO commandstats over the same window;
     Postgres table and WAL growth;
  2. steady batch ingest: the same at the highest of RATES through
     POST /api/events/batch, BATCH events a request;
  3. queued events: the worker stopped, QUEUED events accepted, Redis
     used_memory before and after (for two payload sizes); then a worker
     drains them (cost per event of draining a backlog, Postgres growth);
     the large payload is random hex, which Postgres cannot compress;
  4. pending retries: RETRIES events to organizations whose webhook answers
     500, so each waits in the retry schedule (1 h): used_memory growth.

Postgres figures come from a database created for the run (and dropped
after it), so every table starts empty. Redis keys carry a prefix of the
run's own, removed at the end.

Prints a table and a last line `BENCH_COST {...}` with every figure.
"""

import json
import os
import re
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

RATES = [int(r) for r in os.environ.get("RATES", "500,1000,2000").split(",") if r.strip()]
DURATION = os.environ.get("DURATION", "20s")
CONNECTIONS = int(os.environ.get("CONNECTIONS", "16"))
BATCH = int(os.environ.get("BATCH", "100"))
BATCH_DURATION = os.environ.get("BATCH_DURATION", "20s")
ORGS = int(os.environ.get("ORGS", "20"))
QUEUED = int(os.environ.get("QUEUED", "20000"))
LARGE_PAD = int(os.environ.get("LARGE_PAD", "2000"))
RETRIES = int(os.environ.get("RETRIES", "10000"))
SHARDS = os.environ.get("TRIGGERS_STREAM_SHARDS", "4")
PORT = int(os.environ.get("BENCH_PORT", "18190"))

results = {"config": {"rates": RATES, "duration": DURATION, "connections": CONNECTIONS,
                      "batch": BATCH, "batch_duration": BATCH_DURATION, "orgs": ORGS,
                      "queued": QUEUED, "large_pad": LARGE_PAD, "retries": RETRIES,
                      "shards": int(SHARDS), "bin": B.BIN}}


def payload_bytes(pad):
    return len(json.dumps({"n": 12345, "thread": 0, "pad": pad}, separators=(",", ":")))


class Meter:
    """Counters of every component, read together."""

    def __init__(self, redis, postmaster, receiver):
        self.redis = redis
        self.postmaster = postmaster
        self.receiver = receiver
        self.api = None
        self.worker = None

    def pg_sizes(self):
        row = B.psql(
            # The tables are partitioned: their bytes are their partitions'.
            "SELECT (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
            " WHERE inhparent = 'events'::regclass),"
            " (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
            " WHERE inhparent = 'delivery_attempts'::regclass),"
            " (SELECT count(*) FROM events), (SELECT count(*) FROM delivery_attempts),"
            " pg_current_wal_lsn() - '0/0'::pg_lsn")
        ev, att, nev, natt, wal = row.split("|")
        return {"events_bytes": int(ev), "attempts_bytes": int(att), "events_rows": int(nev),
                "attempts_rows": int(natt), "wal": int(float(wal))}

    def read(self):
        s = {
            "t": time.time(),
            "api_cpu": self.api.cpu() if self.api else 0.0,
            "worker_cpu": self.worker.cpu() if self.worker else 0.0,
            "redis_cpu": self.redis.cpu(),
            "cmds": self.redis.commandstats(),
            "pg_cpu": B.tree_cpu(self.postmaster),
            "receiver_cpu": self.receiver.cpu(),
            "machine": B.machine_busy()[0],
            "accepted": self.api.metric("triggers_events_accepted_total") if self.api else 0.0,
            "archived": (self.worker.metric("triggers_events_archived_total")
                         if self.worker else 0.0),
            "received": sum(self.receiver.stats().values()),
        }
        s.update(self.pg_sizes())
        return s


def costs(before, after, events):
    """Per 1,000 events: CPU seconds of each component; Redis commands."""
    per_k = 1000.0 / events
    out = {"events": events, "seconds": after["t"] - before["t"]}
    for part in ("api", "worker", "redis", "pg", "receiver"):
        out[f"{part}_cpu_s_per_1k"] = (after[f"{part}_cpu"] - before[f"{part}_cpu"]) * per_k
    cmds = {}
    for name, (calls, usec) in after["cmds"].items():
        c0, u0 = before["cmds"].get(name, (0, 0))
        if calls - c0 > 0:
            cmds[name] = {"calls_per_event": (calls - c0) / events,
                          "usec_per_call": (usec - u0) / (calls - c0),
                          "usec_per_event": (usec - u0) / events}
    out["redis_commands"] = dict(sorted(cmds.items(), key=lambda kv: -kv[1]["usec_per_event"]))
    rows = after["events_rows"] - before["events_rows"]
    if rows > 0:
        out["pg_events_rows"] = rows
        out["pg_attempts_per_event"] = (after["attempts_rows"] - before["attempts_rows"]) / rows
        out["pg_table_bytes_per_event"] = (
            after["events_bytes"] + after["attempts_bytes"]
            - before["events_bytes"] - before["attempts_bytes"]) / rows
        out["pg_wal_bytes_per_event"] = (after["wal"] - before["wal"]) / rows
    return out


def drained(meter, base, accepted):
    """Waits until `accepted` more events than in `base` are archived and
    have reached the receiver; returns the seconds waited (None: timed out)."""
    def done():
        s_arch = meter.worker.metric("triggers_events_archived_total")
        s_recv = sum(meter.receiver.stats().values())
        return (s_arch - base["archived"] >= accepted
                and s_recv - base["received"] >= accepted)
    return B.wait_until(done, 120, 0.2)


def steady(meter, name, script, url, args, connections, rate, duration, events_per_request):
    B.log(f"{name}: wrk -t1 -c{connections} -d{duration} paced at {rate:g} requests/s "
          f"({events_per_request} event(s) a request)")
    time.sleep(1)
    before = meter.read()
    run = B.wrk("paced.lua", url, args, connections=connections, duration=duration,
                env={"PACED_SCRIPT": script, "PACED_RATE": str(rate)})
    load_end = time.time()
    accepted = meter.api.metric("triggers_events_accepted_total") - before["accepted"]
    waited = drained(meter, before, accepted)
    after = meter.read()
    out = costs(before, after, accepted)
    out["rate"] = accepted / (load_end - before["t"])
    out["p50_ms"] = run["p50_ms"]
    out["p99_ms"] = run["p99_ms"]
    out["errors"] = run["non2xx"] + run["timeout"]
    out["wrk_cpu_s_per_1k"] = run["cpu_s"] * 1000.0 / accepted
    out["drained_after_load_s"] = None if waited is None else after["t"] - load_end
    out["machine_busy_cores"] = (after["machine"] - before["machine"]) / out["seconds"]
    results[name] = out


def key_memory(redis, prefix):
    """Bytes (MEMORY USAGE, exact) of this run's keys, by kind of key."""
    keys = list(redis.scan(prefix + ":*"))
    sizes = redis.pipeline([("MEMORY", "USAGE", k, "SAMPLES", "0") for k in keys])
    out = {}
    for key, size in zip(keys, sizes):
        kind = re.sub(r"^[^:]*:(\{\d+\}:)?", "", key).split(":")[0]
        out[kind] = out.get(kind, 0) + (size or 0)
    return out


def diff(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in sorted(set(a) | set(b))}


def main():
    prefix = "cost-" + secrets.token_hex(4)
    redis = B.Redis(*B.redis_addr(os.environ["REDIS_URL"]))
    postmaster = B.postmaster_pid(B.pg_port())
    if not postmaster:
        raise SystemExit("bench: no local postmaster found for DATABASE_URL (CPU cannot be read)")
    results["config"]["prefix"] = prefix
    stack = B.Stack()
    stack.add(B.FreshDatabase("cost"))
    worker_env = {"TRIGGERS_RETRY_SCHEDULE": "1h", "TRIGGERS_STREAM_SHARDS": SHARDS}
    api_env = {"TRIGGERS_STREAM_SHARDS": SHARDS}
    try:
        receiver = stack.add(B.Receiver(PORT + 2))
        meter = Meter(redis, postmaster, receiver)
        meter.api = stack.add(B.Service("api", PORT, prefix, api_env))
        meter.worker = stack.add(B.Service("worker", PORT + 1, prefix, worker_env))
        B.log(f"{ORGS} organizations with a webhook answering 204, 4 answering 500")
        ok_keys = B.create_orgs(meter.api.base, ORGS, "cost", f"{receiver.base}/ok")
        fail_keys = B.create_orgs(meter.api.base, 4, "cost-fail", f"{receiver.base}/fail")
        B.warm_keys(meter.api.base, ok_keys + fail_keys)
        keys = B.keys_file(ok_keys)
        results["config"]["payload_bytes"] = payload_bytes(B.PAD)

        # 1. and 2. steady loads.
        for rate in RATES:
            steady(meter, f"single_{rate}", "events.lua", meter.api.base + "/api/events", [keys],
                   CONNECTIONS, rate, DURATION, 1)
        if BATCH_DURATION not in ("", "0", "0s"):
            rate = max(RATES)
            steady(meter, "batch", "batch.lua", meter.api.base + "/api/events/batch",
                   [keys, str(BATCH)], 4, rate / BATCH, BATCH_DURATION, BATCH)

        # 3. queued events, no worker; then drained by a new one.
        stack.remove(meter.worker)
        meter.worker = None
        time.sleep(1)
        large = secrets.token_hex(LARGE_PAD // 2)  # incompressible, unlike a repeated pad
        for label, pad in (("small", B.PAD), ("large", large)):
            B.log(f"queued ({label} payload): {QUEUED} events, no worker")
            mem0 = redis.used_memory()
            kinds0 = key_memory(redis, prefix)
            sent = B.send_batches(meter.api.base, ok_keys, QUEUED, pad)
            mem1 = redis.used_memory()
            kinds = diff(kinds0, key_memory(redis, prefix))
            before = meter.read()
            meter.worker = stack.add(B.Service("worker", PORT + 1, prefix, worker_env))
            started = time.time()
            before["worker_cpu"], before["archived"] = 0.0, 0.0
            B.log(f"draining {sent} queued events with a new worker")
            waited = drained(meter, before, sent)
            after = meter.read()
            out = costs(before, after, sent)
            out.update({
                "payload_bytes": payload_bytes(pad),
                "redis_bytes_per_queued_event": (mem1 - mem0) / sent,
                "redis_key_bytes_per_queued_event": {k: v / sent for k, v in kinds.items()
                                                     if abs(v) >= sent},
                "drain_s": None if waited is None else after["t"] - started,
            })
            out["drain_events_per_s"] = sent / out["drain_s"] if out["drain_s"] else None
            results[f"queued_{label}"] = out
            if label == "small":
                stack.remove(meter.worker)
                meter.worker = None

        # 4. pending retries (the worker runs with a 1 h retry schedule).
        B.log(f"retries: {RETRIES} events whose webhook answers 500")
        time.sleep(4.5)  # two housekeeping rounds: streams trimmed
        mem0 = redis.used_memory()
        kinds0 = key_memory(redis, prefix)
        base = meter.read()
        sent = B.send_batches(meter.api.base, fail_keys, RETRIES)
        waited = drained(meter, base, sent)
        time.sleep(4.5)
        mem1 = redis.used_memory()
        kinds = diff(kinds0, key_memory(redis, prefix))
        results["retries"] = {
            "events": sent,
            "payload_bytes": payload_bytes(B.PAD),
            "scheduled": meter.worker.metric("triggers_retries_scheduled"),
            "redis_bytes_per_pending_retry": (mem1 - mem0) / sent,
            "redis_key_bytes_per_pending_retry": {k: v / sent for k, v in kinds.items()
                                                  if abs(v) >= sent},
            "attempted_after_s": waited,
        }
    finally:
        stack.stop_all()
        try:
            removed = redis.delete_matching(prefix + ":*")
            B.log(f"removed {removed} Redis keys of {prefix}")
        except Exception as err:
            B.log(f"could not remove the Redis keys of {prefix}: {err}")
    report()


def fmt(v, spec="{:,.3f}"):
    return "n/a" if v is None else spec.format(v)


def report():
    r = results
    singles = [(f"single_{rate}", f"{rate}/s") for rate in RATES if f"single_{rate}" in r]
    runs = singles + [(k, t) for k, t in (("batch", f"batch {BATCH}"),
                                         ("queued_small", "backlog")) if k in r]
    print()
    print(f"CPU seconds per 1,000 accepted events (payload {r['config']['payload_bytes']} bytes);"
          f" columns: single POST /api/events at each rate, batches of {BATCH} at the highest,"
          f" a drained backlog")
    print(f"{'component':<26}" + "".join(f"{t:>11}" for _, t in runs))
    rows = [("API process", "api"), ("worker process", "worker"), ("Redis", "redis"),
            ("Postgres (all processes)", "pg"), ("webhook receiver (bench)", "receiver")]
    for label, part in rows:
        print(f"{label:<26}" + "".join(f"{fmt(r[k][f'{part}_cpu_s_per_1k']):>11}" for k, _ in runs))
    print(f"{'  service total':<26}" + "".join(
        f"{fmt(sum(r[k][f'{p}_cpu_s_per_1k'] for p in ('api', 'worker', 'redis', 'pg'))):>11}"
        for k, _ in runs))
    for k, t in runs:
        x = r[k]
        if "rate" in x:
            print(f"  {t}: {x['events']:,.0f} events at {x['rate']:,.0f}/s, p50 {x['p50_ms']:.2f} ms,"
                  f" p99 {x['p99_ms']:.2f} ms, errors {x['errors']:.0f}, all archived and delivered"
                  f" {fmt(x['drained_after_load_s'], '{:.1f}')} s after; machine busy"
                  f" {x['machine_busy_cores']:.2f} cores (other load on the host included)")
        else:
            print(f"  {t}: {x['events']:,.0f} queued events archived and delivered in"
                  f" {fmt(x['drain_s'], '{:.1f}')} s ({fmt(x['drain_events_per_s'], '{:,.0f}')}/s)"
                  f" by a worker started for it")
    top = singles[-1][0]
    print()
    print(f"Redis commands per event ({top.replace('_', ' at ')}/s; EVALSHA's time includes the commands it runs)")
    print(f"{'command':<16}{'calls/event':>14}{'usec/call':>12}{'usec/event':>12}")
    for name, c in list(r[top]["redis_commands"].items())[:12]:
        print(f"{name:<16}{c['calls_per_event']:>14.3f}{c['usec_per_call']:>12.2f}{c['usec_per_event']:>12.2f}")
    print()
    print("Memory and disk per event (used_memory growth / events; in brackets MEMORY USAGE of the keys by kind)")
    for key in ("queued_small", "queued_large"):
        if key in r:
            x = r[key]
            parts = ", ".join(f"{k} {v:,.0f}" for k, v in x["redis_key_bytes_per_queued_event"].items())
            print(f"  Redis, queued event ({x['payload_bytes']} B payload): "
                  f"{x['redis_bytes_per_queued_event']:,.0f} B ({parts})")
    if "retries" in r:
        x = r["retries"]
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in x["redis_key_bytes_per_pending_retry"].items())
        print(f"  Redis, pending retry ({x['payload_bytes']} B payload): "
              f"{x['redis_bytes_per_pending_retry']:,.0f} B ({parts})")
    for key, label in [(k, f"single {t}") for k, t in singles] + [
            ("batch", f"batch {BATCH}"), ("queued_small", "backlog, small payload"),
            ("queued_large", "backlog, large payload")]:
        x = r.get(key, {})
        if "pg_table_bytes_per_event" in x:
            print(f"  Postgres, archived event ({label}): {x['pg_table_bytes_per_event']:,.0f} B tables+indexes,"
                  f" {x['pg_wal_bytes_per_event']:,.0f} B WAL, {x['pg_attempts_per_event']:.2f} attempt rows")
    print("BENCH_COST " + json.dumps(r))


if __name__ == "__main__":
    main()
