#!/usr/bin/env python3
"""Every performance figure in one run, as ratios where a ratio is fairer.

Started by bench/all.sh (which builds the release binaries and starts Redis
and Postgres). Everything listens on 127.0.0.1; every load is bounded in time.

  1. single ingest: wrk POST /api/events vs GET /health on the same process
     (all roles running), and how long after the load every 202 is archived;
  2. batch ingest: wrk POST /api/events/batch (events/s) vs redis-benchmark
     running the single-event intake script at pipeline 16 on the same Redis;
  3. archive rate: a backlog ingested with no worker, then drained by one;
  4. delivery: examples/delivery_bench (deliveries/s, end-to-end latency);
  5. peak RSS of each service process, and idle CPU over IDLE_SECONDS.
"""

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from benchlib import ROOT, http, log, wait_until  # noqa: E402

DELIVERY_BENCH = os.path.join(ROOT, "target/release/examples/delivery_bench")
PORT = int(os.environ.get("BENCH_PORT", "18090"))
DURATION = os.environ.get("DURATION", "15s")
CONNECTIONS = os.environ.get("CONNECTIONS", "50")
THREADS = os.environ.get("THREADS", "1")
ORGS = int(os.environ.get("ORGS", "60"))
BATCH = int(os.environ.get("BATCH", "100"))
BACKLOG = int(os.environ.get("BACKLOG", "200000"))
IDLE_SECONDS = int(os.environ.get("IDLE_SECONDS", "60"))
DELIVERY_EVENTS = os.environ.get("DELIVERY_EVENTS", "20000")

results = {}


class Service(B.Service):
    """A service process (bench/benchlib.py) whose RSS is sampled every 200 ms."""

    def __init__(self, role, port, prefix, extra_env=None):
        super().__init__(role, port, prefix, extra_env, wait=False)
        self.peak_rss_kb = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()
        self.wait_healthy(30)

    def rss_kb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _sample(self):
        while not self._stop.is_set():
            self.peak_rss_kb = max(self.peak_rss_kb, self.rss_kb())
            time.sleep(0.2)

    def stop(self):
        self._stop.set()
        super().stop()


def create_keys(base, n):
    token = os.environ.get("TRIGGERS_ADMIN_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    run = secrets.token_hex(4)
    keys = []
    for i in range(n):
        status, text = http("POST", base + "/api/keys/generate",
                            {"organization_name": f"bench-{i}-{run}", "tier": "enterprise"}, headers)
        if status != 201:
            raise SystemExit(f"bench: creating an organization answered {status}: {text[:200]}")
        key = json.loads(text)["api_key"]
        # Verify each key once before timing: argon2 is not what is measured.
        http("GET", base + "/api/keys", headers={"X-API-Key": key})
        keys.append(key)
    path = os.path.join(tempfile.mkdtemp(), "keys.lua")
    with open(path, "w") as f:
        f.write("return {\n" + "".join(f'  "{k}",\n' for k in keys) + "}\n")
    return path


def wrk(script, url, keys_file=None, extra=(), connections=CONNECTIONS):
    cmd = ["wrk", "-t", THREADS, "-c", connections, "-d", DURATION, "--timeout", "5s",
           "-s", os.path.join(ROOT, "bench", script), url]
    if keys_file:
        cmd += ["--", keys_file, *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    line = next((l for l in out.splitlines() if l.startswith("BENCH_RESULT")), "")
    fields = dict(kv.split("=", 1) for kv in line.split()[1:])
    if not fields:
        raise SystemExit(f"bench: wrk printed no result:\n{out}")
    return {k: float(v) if re.fullmatch(r"[0-9.]+", v) else v for k, v in fields.items()}


def single_and_batch(prefix):
    svc = Service("all", PORT, prefix)
    try:
        keys = create_keys(svc.base, ORGS)
        log(f"single ingest: wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}")
        ingest = wrk("events.lua", svc.base + "/api/events", keys)
        accepted = svc.metric("triggers_events_accepted_total")
        caught_up = wait_until(
            lambda: svc.metric("triggers_events_archived_total") >= accepted, 60)
        health = wrk("health.lua", svc.base + "/health")
        results["ingest_rps"] = ingest["ok_rps"]
        results["ingest_p50_ms"] = ingest["p50_ms"]
        results["ingest_p99_ms"] = ingest["p99_ms"]
        results["ingest_errors"] = ingest["non2xx"] + ingest["timeout"]
        results["health_rps"] = health["ok_rps"]
        results["archived_after_load_s"] = caught_up
        log(f"batch ingest: {BATCH} events a request")
        batch = wrk("batch.lua", svc.base + "/api/events/batch", keys, [str(BATCH)],
                    connections=os.environ.get("BATCH_CONNECTIONS", "16"))
        results["batch_events_per_s"] = batch["ok_rps"] * BATCH
        results["batch_p99_ms"] = batch["p99_ms"]
        results["peak_rss_all_mib"] = svc.peak_rss_kb / 1024
        log(f"idle CPU over {IDLE_SECONDS}s")
        wait_until(lambda: svc.metric("triggers_events_archived_total")
                   >= svc.metric("triggers_events_accepted_total"), 120)
        time.sleep(2)
        before = svc.cpu()
        time.sleep(IDLE_SECONDS)
        results["idle_cpu_pct"] = 100 * (svc.cpu() - before) / IDLE_SECONDS
        results["idle_rss_all_mib"] = svc.rss_kb() / 1024
    finally:
        svc.stop()


def redis_ceiling():
    """The single-event intake script through redis-benchmark at pipeline 16."""
    url = os.environ["REDIS_URL"]
    m = re.match(r"redis://(?:[^@]*@)?([^:/]+):(\d+)", url)
    if not m:
        return
    host, port = m.groups()
    src = os.path.join(ROOT, "src")
    script = open(os.path.join(src, "ratelimit/gcra.lua")).read() + "\n" + \
        open(os.path.join(src, "streams/intake.lua")).read()
    cli = ["redis-cli", "-h", host, "-p", port]
    sha = subprocess.run(cli + ["SCRIPT", "LOAD", script], capture_output=True,
                         text=True, check=True).stdout.strip()
    tag = "bench-" + secrets.token_hex(3)
    cmd = ["redis-benchmark", "-h", host, "-p", port, "-n", "300000", "-c", "50", "-P", "16",
           "-r", "1000000000", "-q",
           "EVALSHA", sha, "4", f"{tag}:{{0}}:rl", f"{tag}:{{0}}:rl", f"{tag}:{{0}}:events",
           f"{tag}:{{0}}:unarchived", "100000000", "60000", "86400", "0", "id-__rand_int__",
           "id", "id-__rand_int__", "org", "o", "type", "bench", "ts", "1", "payload",
           '{"pad":"' + "x" * 200 + '"}']
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    m = re.search(r"([0-9.]+) requests per second", out)
    results["redis_script_p16_per_s"] = float(m.group(1)) if m else None
    for key in ("rl", "events", "unarchived"):
        subprocess.run(cli + ["DEL", f"{tag}:{{0}}:{key}"], capture_output=True)


def archive_rate(prefix):
    """A backlog accepted by an API-only process, then drained by a worker."""
    api = Service("api", PORT + 1, prefix)
    worker = None
    try:
        keys_file = create_keys(api.base, 10)
        keys = re.findall(r'"([^"]+)"', open(keys_file).read())
        log(f"archive: a backlog of {BACKLOG} events")
        body_events = [{"type": "backlog", "payload": {"pad": "x" * 200, "n": i}}
                       for i in range(1000)]
        sent = 0
        while sent < BACKLOG:
            status, text = http("POST", api.base + "/api/events/batch",
                                {"events": body_events},
                                {"X-API-Key": keys[(sent // 1000) % len(keys)]})
            if status != 200:
                raise SystemExit(f"bench: backlog batch answered {status}: {text[:200]}")
            sent += json.loads(text)["accepted"]
        worker = Service("worker", PORT + 2, prefix)
        done = wait_until(lambda: worker.metric("triggers_events_archived_total") >= sent, 600)
        results["archive_rows_per_s"] = sent / done if done else None
        results["peak_rss_worker_mib"] = worker.peak_rss_kb / 1024
        results["peak_rss_api_mib"] = api.peak_rss_kb / 1024
    finally:
        api.stop()
        if worker:
            worker.stop()


def delivery():
    log(f"delivery: {DELIVERY_EVENTS} events to a local receiver")
    env = dict(os.environ, RUST_LOG="warn")
    out = subprocess.run([DELIVERY_BENCH, DELIVERY_EVENTS, "10", "32"], capture_output=True,
                         text=True, env=env, timeout=600).stdout
    m = re.search(r"deliveries/s ([0-9.]+)\s+end-to-end ms: p50 ([0-9.]+)\s+p90 ([0-9.]+)\s+p99 ([0-9.]+)", out)
    if m:
        results["deliveries_per_s"] = float(m.group(1))
        results["delivery_e2e_p50_ms"] = float(m.group(2))
        results["delivery_e2e_p99_ms"] = float(m.group(4))


def main():
    prefix = "bench-" + secrets.token_hex(4)
    single_and_batch(prefix)
    redis_ceiling()
    archive_rate(prefix + "-archive")
    delivery()
    r = results

    def fmt(v, spec="{:,.0f}"):
        return "n/a" if v is None else spec.format(v)

    ratio = r["ingest_rps"] / r["health_rps"] if r.get("health_rps") else None
    batch_ratio = (r["batch_events_per_s"] / r["redis_script_p16_per_s"]
                   if r.get("redis_script_p16_per_s") else None)
    rows = [
        ("single ingest (events/s)", fmt(r["ingest_rps"]), f"{fmt(ratio, '{:.2f}')} × /health ({fmt(r['health_rps'])}/s)"),
        ("single ingest p50 / p99", f"{r['ingest_p50_ms']:.2f} / {r['ingest_p99_ms']:.2f} ms", f"errors {fmt(r['ingest_errors'])}"),
        ("every 202 archived after the load", fmt(r["archived_after_load_s"], "{:.2f} s"), ""),
        (f"batch ingest ({BATCH} a request, events/s)", fmt(r["batch_events_per_s"]), f"{fmt(batch_ratio, '{:.2f}')} × intake script at pipeline 16 ({fmt(r.get('redis_script_p16_per_s'))}/s)"),
        ("archive (rows/s, backlog drained)", fmt(r.get("archive_rows_per_s")), f"backlog {BACKLOG}"),
        ("delivery (webhooks/s)", fmt(r.get("deliveries_per_s")), f"e2e p50 {fmt(r.get('delivery_e2e_p50_ms'), '{:.1f}')} ms, p99 {fmt(r.get('delivery_e2e_p99_ms'), '{:.1f}')} ms"),
        ("peak RSS: all roles / api / worker", f"{fmt(r['peak_rss_all_mib'], '{:.0f}')} / {fmt(r.get('peak_rss_api_mib'), '{:.0f}')} / {fmt(r.get('peak_rss_worker_mib'), '{:.0f}')} MiB", f"idle after load {fmt(r['idle_rss_all_mib'], '{:.0f}')} MiB"),
        (f"idle CPU over {IDLE_SECONDS}s", fmt(r["idle_cpu_pct"], "{:.2f} %"), "of one core"),
    ]
    width = max(len(a) for a, _, _ in rows)
    print()
    for a, b, c in rows:
        print(f"{a:<{width}}  {b:>22}  {c}")
    print("BENCH_ALL " + json.dumps(r))


if __name__ == "__main__":
    main()
