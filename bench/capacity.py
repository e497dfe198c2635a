#!/usr/bin/env python3
"""Deployment sizes for given event rates, from the figures of bench/cost.sh.

  bench/cost.sh | tee cost.out
  python3 bench/capacity.py cost.out
  RATES=5000,50000 PAYLOAD=1500 RETENTION_DAYS=30 python3 bench/capacity.py cost.out

Reads the `BENCH_COST {...}` line and applies the formulas of
docs/capacity.md. Knobs (environment):

  RATES            events/s to size for                     10000,100000,1000000
  INGEST           single or batch: which steady run's CPU    single
  MEASURED_RATE    which steady single-ingest run to use      the highest measured
  PAYLOAD          payload bytes of your events               the measured payload
  UTILISATION      target CPU utilisation of pods and nodes   0.7
  API_POD_CORES    cores of an api pod                        2
  WORKER_POD_CORES cores of a worker pod                      2
  REDIS_CORE       usable share of a master's one core        0.7
  BACKLOG_MINUTES  minutes of events Redis must hold when     15
                   archive or delivery stop
  FAILING_SHARE    share of events waiting in the retry set   0.01
  RETRY_WAIT_S     mean time such an event waits there        3600
  REDIS_HEADROOM   used_memory / maxmemory to plan for        0.6
  PG_NODE_CORES    cores of a Postgres node                   16
  RETENTION_DAYS   days of events kept in Postgres            30
"""

import json
import math
import os
import sys


def env(name, default):
    return type(default)(os.environ.get(name, default))


def linear(small, large, key):
    """(fixed, per payload byte) of a figure measured at two payload sizes."""
    slope = (large[key] - small[key]) / (large["payload_bytes"] - small["payload_bytes"])
    return small[key] - slope * small["payload_bytes"], slope


def pods(cores, per_pod):
    """Pods for `cores`, at least two so one can be lost or rolled."""
    return max(2, math.ceil(cores / per_pod))


def human(n, unit="B"):
    for suffix in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000:
            return f"{n:,.1f} {suffix}{unit}"
        n /= 1000
    return f"{n:,.1f} E{unit}"


def main():
    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
    line = next((l for l in text.splitlines() if l.startswith("BENCH_COST ")), None)
    if not line:
        raise SystemExit("capacity.py: no BENCH_COST line in the input")
    cost = json.loads(line[len("BENCH_COST "):])
    rates = [float(r) for r in os.environ.get("RATES", "10000,100000,1000000").split(",")]
    singles = sorted(int(k.split("_")[1]) for k in cost if k.startswith("single_"))
    measured = env("MEASURED_RATE", singles[-1])
    steady = cost[f"single_{measured}"]
    ingest = cost["batch"] if env("INGEST", "single") == "batch" else steady
    small, large = cost["queued_small"], cost["queued_large"]
    payload = env("PAYLOAD", float(small["payload_bytes"]))
    u = env("UTILISATION", 0.7)

    # CPU seconds per event.
    api = ingest["api_cpu_s_per_1k"] / 1000
    worker = ingest["worker_cpu_s_per_1k"] / 1000
    redis = ingest["redis_cpu_s_per_1k"] / 1000
    pg = ingest["pg_cpu_s_per_1k"] / 1000
    # Bytes per event, as fixed + per payload byte.
    q_fixed, q_slope = linear(small, large, "redis_bytes_per_queued_event")
    # Table bytes grow less where inserts reuse space autovacuum freed, which
    # varies from phase to phase: size by the largest small-payload figure.
    grown = dict(small, pg_table_bytes_per_event=max(
        phase["pg_table_bytes_per_event"] for phase in cost.values()
        if isinstance(phase, dict) and "pg_table_bytes_per_event" in phase
        and phase.get("payload_bytes", small["payload_bytes"]) == small["payload_bytes"]))
    d_fixed, d_slope = linear(grown, large, "pg_table_bytes_per_event")
    w_fixed, w_slope = linear(small, large, "pg_wal_bytes_per_event")
    queued = q_fixed + q_slope * payload
    retry = cost["retries"]["redis_bytes_per_pending_retry"] + \
        q_slope * (payload - cost["retries"]["payload_bytes"])
    disk = d_fixed + d_slope * payload
    wal = w_fixed + w_slope * payload

    run = f"batch {cost['config']['batch']}" if ingest is not steady else f"single {measured}/s"
    print(f"per event (CPU from the steady {run} run; payload {payload:,.0f} B):")
    print(f"  api {api * 1e6:,.0f} us, worker {worker * 1e6:,.0f} us, redis {redis * 1e6:,.0f} us,"
          f" postgres {pg * 1e6:,.0f} us of CPU")
    print(f"  redis {queued:,.0f} B a queued event ({q_fixed:,.0f} + {q_slope:.2f} x payload),"
          f" {retry:,.0f} B a pending retry")
    print(f"  postgres {disk:,.0f} B tables+indexes ({d_fixed:,.0f} + {d_slope:.2f} x payload),"
          f" {wal:,.0f} B WAL ({w_fixed:,.0f} + {w_slope:.2f} x payload)")
    print()
    api_pod, worker_pod = env("API_POD_CORES", 2.0), env("WORKER_POD_CORES", 2.0)
    redis_core, headroom = env("REDIS_CORE", 0.7), env("REDIS_HEADROOM", 0.6)
    backlog_s = env("BACKLOG_MINUTES", 15.0) * 60
    failing, wait = env("FAILING_SHARE", 0.01), env("RETRY_WAIT_S", 3600.0)
    pg_node, days = env("PG_NODE_CORES", 16.0), env("RETENTION_DAYS", 30.0)
    rows = []
    for rate in rates:
        api_cores = rate * api / u
        worker_cores = rate * worker / u
        masters = max(1, math.ceil(rate * redis / redis_core))
        memory = rate * backlog_s * queued + rate * failing * wait * retry
        pg_cores = rate * pg / u
        per_day = rate * 86400 * disk
        rows.append([
            f"{rate:,.0f}/s",
            f"{api_cores:,.1f} cores = {pods(api_cores, api_pod)} x {api_pod:g}",
            f"{worker_cores:,.1f} cores = {pods(worker_cores, worker_pod)} x {worker_pod:g}",
            f"{masters}",
            f"{human(memory)} ({human(memory / masters / headroom)} RAM/master)",
            f"{pg_cores:,.1f} cores = {math.ceil(pg_cores / pg_node)} x {pg_node:g}",
            f"{human(per_day)}/day, {human(per_day * days)} for {days:g} d",
            f"{human(rate * wal)}/s",
        ])
    head = ["rate", "api", "workers", "redis masters", "redis memory", "postgres CPU",
            "postgres disk", "WAL"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
