#!/usr/bin/env python3
"""A scaling curve on Redis Cluster: API replicas behind nginx, stream
shards and workers, step by step, with each component's CPU in each step.

Started by bench/scale.sh (which builds the release binary and starts the
dev Postgres and the 3-master dev Redis Cluster). Each step starts its own
processes on 127.0.0.1 with a fresh Redis key prefix (a new shard count
moves organizations to other shards):

  api replicas (role api) ─ nginx (least_conn, keep-alive) ─ wrk
  workers (role worker) ─ bench/receiver.py (webhook answering 204)

and measures, for the time wrk runs (DURATION):
  events/s accepted (2xx), p50 / p99 as wrk sees them through nginx,
  CPU of the API replicas, workers, each Redis master, Postgres (every
  process of the cluster), nginx, wrk and the receiver, as cores in use,
  and the whole machine's busy time (the rest is other load on the host);
then how long the workers took to archive and deliver the last event, and
before the load, an idle window (IDLE seconds) showing what the workers'
polling costs Redis at that shard count.

STEPS is a list of api:shards:workers, e.g. "1:3:1,2:3:1,3:3:1".
Prints a table and a last line `BENCH_SCALE {...}`.
"""

import json
import os
import secrets
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

STEPS = os.environ.get("STEPS", "1:3:1,2:3:1,3:3:1,3:12:1,3:48:1,3:48:3")
DURATION = os.environ.get("DURATION", "10s")
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
THREADS = int(os.environ.get("THREADS", "1"))
ORGS = int(os.environ.get("ORGS", "30"))
IDLE = float(os.environ.get("IDLE", "3"))
DRAIN_MAX = float(os.environ.get("DRAIN_MAX", "30"))
DELIVERY = os.environ.get("DELIVERY", "1") == "1"
NGINX_WORKERS = os.environ.get("NGINX_WORKERS", "1")
PORT = int(os.environ.get("BENCH_PORT", "18290"))
# api replicas: PORT+1.., workers: PORT+11.., receiver: PORT+30, nginx: PORT
# What a deployment runs (the load generator and the receiver are not part of it).
SERVICE = ("api", "workers", "redis", "postgres", "nginx")
RECEIVER_PORT = PORT + 30


class Nginx:
    """nginx in the foreground, as our child, with a config of its own."""

    def __init__(self, port, upstreams):
        self.dir = os.path.join(B.LOG_DIR, f"nginx-{port}-{secrets.token_hex(3)}")
        os.makedirs(self.dir)
        servers = "".join(f"        server 127.0.0.1:{p};\n" for p in upstreams)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""daemon off;
worker_processes {NGINX_WORKERS};
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    upstream api {{
        least_conn;
{servers}        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
""")
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(self.dir, "stderr.log"), "w")
        self.proc = subprocess.Popen(["nginx", "-e", os.path.join(self.dir, "error.log"),
                                      "-p", self.dir, "-c", conf],
                                     stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: nginx exited; see {self.dir}")
            try:
                return B.http("GET", self.base + "/health", timeout=1)[0] == 200
            except OSError:
                return False
        if B.wait_until(up, 15) is None:
            raise SystemExit(f"bench: nginx did not answer; see {self.dir}")

    def cpu(self):
        return B.tree_cpu(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # fast shutdown, workers included
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def shard_spread(masters, shards, prefix):
    """How many stream shards each master holds (by the shard's hash tag)."""
    r = B.Redis(*masters[0])
    try:
        slots = r.call("CLUSTER", "SLOTS")
        tagged = r.pipeline([("CLUSTER", "KEYSLOT", f"{prefix}:{{{s}}}:events")
                             for s in range(shards)])
    finally:
        r.close()
    count = {m: 0 for m in masters}
    for slot in tagged:
        for start, end, master, *_ in slots:
            if start <= slot <= end:
                key = (master[0], int(master[1]))
                count[key] = count.get(key, 0) + 1
    return [count[m] for m in masters]


class Components:
    def __init__(self, apis, workers, redis, postmaster, nginx, receiver):
        self.apis, self.workers, self.redis = apis, workers, redis
        self.postmaster, self.nginx, self.receiver = postmaster, nginx, receiver

    def read(self):
        out = {
            "t": time.time(),
            "api": sum(a.cpu() for a in self.apis),
            "workers": sum(w.cpu() for w in self.workers),
            "postgres": B.tree_cpu(self.postmaster),
            "nginx": self.nginx.cpu(),
            "receiver": self.receiver.cpu() if self.receiver else 0.0,
            "machine": B.machine_busy()[0],
        }
        for i, r in enumerate(self.redis):
            out[f"redis{i + 1}"] = r.cpu()
            out[f"redis{i + 1}_calls"] = sum(c for c, _ in r.commandstats().values())
        return out


def cores(before, after, extra=None):
    wall = after["t"] - before["t"]
    out = {k: (after[k] - before[k]) / wall for k in after if k != "t" and not k.endswith("_calls")}
    out["redis"] = sum(v for k, v in out.items() if k.startswith("redis"))
    out["redis_commands_per_s"] = sum(after[k] - before[k] for k in after if k.endswith("_calls")) / wall
    out.update(extra or {})
    return out, wall


def run_step(i, step, run, masters, postmaster, receiver, org_keys):
    api_n, shards, workers_n = step
    prefix = f"scale-{run}-{i}"
    env = {"REDIS_URL": os.environ["REDIS_CLUSTER_URL"], "TRIGGERS_STREAM_SHARDS": str(shards)}
    stack = B.Stack()
    redis = [B.Redis(*m) for m in masters]
    try:
        apis = [stack.add(B.Service("api", PORT + 1 + k, prefix, env, wait=False))
                for k in range(api_n)]
        workers = [stack.add(B.Service("worker", PORT + 11 + k, prefix, env, wait=False))
                   for k in range(workers_n)]
        for s in apis + workers:
            s.wait_healthy()
        nginx = stack.add(Nginx(PORT, [a.port for a in apis]))
        if not org_keys:
            B.log(f"{ORGS} organizations" + (" with a webhook answering 204" if DELIVERY else ""))
            org_keys.extend(B.create_orgs(nginx.base, ORGS, "scale",
                                          f"{receiver.base}/ok" if receiver else None))
        B.warm_keys(nginx.base, org_keys)
        keys = B.keys_file(org_keys)
        parts = Components(apis, workers, redis, postmaster, nginx, receiver)

        time.sleep(1)
        before = parts.read()
        time.sleep(IDLE)
        idle, _ = cores(before, parts.read())

        B.log(f"step {i + 1}: {api_n} api, {shards} shards, {workers_n} worker(s): "
              f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION} through nginx")
        received0 = sum(receiver.stats().values()) if receiver else 0
        before = parts.read()
        result = B.wrk("events.lua", nginx.base + "/api/events", [keys],
                       connections=CONNECTIONS, threads=THREADS, duration=DURATION)
        after = parts.read()
        load, wall = cores(before, after, {"wrk": result["cpu_s"] / (after["t"] - before["t"])})
        load["other"] = load["machine"] - sum(
            load[k] for k in ("api", "workers", "redis", "postgres", "nginx", "receiver", "wrk"))

        accepted = sum(a.metric("triggers_events_accepted_total") for a in apis)

        def caught_up():
            archived = sum(w.metric("triggers_events_archived_total") for w in workers)
            delivered = (sum(receiver.stats().values()) - received0) if receiver else accepted
            return archived >= accepted and delivered >= accepted
        drain = B.wait_until(caught_up, DRAIN_MAX, 0.2)
        return {
            "api": api_n, "shards": shards, "workers": workers_n,
            "shards_per_master": shard_spread(masters, shards, prefix),
            "events_per_s": result["ok_rps"], "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"], "errors": result["non2xx"] + result["timeout"],
            "accepted": accepted, "seconds": wall,
            "caught_up_after_s": drain,
            "load_cores": load, "idle_cores": idle,
            "cpu_ms_per_event": {k: 1000 * load[k] / result["ok_rps"]
                                 for k in ("api", "workers", "redis", "postgres", "nginx")}
            if result["ok_rps"] else {},
            # Throughput per core the service itself used: what the step
            # would do per core if other load on the host did not compete.
            "events_per_service_core": result["ok_rps"] / service
            if (service := sum(load[k] for k in SERVICE)) else None,
        }
    finally:
        stack.stop_all()
        for r in redis:
            try:
                r.delete_matching(prefix + ":*")
            except Exception as err:
                B.log(f"could not remove the keys of {prefix}: {err}")
            r.close()


def main():
    steps = [tuple(int(x) for x in s.split(":")) for s in STEPS.split(",") if s.strip()]
    masters = B.cluster_masters(*B.redis_addr(os.environ["REDIS_CLUSTER_URL"]))
    postmaster = B.postmaster_pid(B.pg_port())
    if not postmaster:
        raise SystemExit("bench: no local postmaster found for DATABASE_URL")
    run = secrets.token_hex(3)
    outer = B.Stack()
    outer.add(B.FreshDatabase("scale"))
    receiver = outer.add(B.Receiver(RECEIVER_PORT)) if DELIVERY else None
    org_keys = []
    out = []
    try:
        for i, step in enumerate(steps):
            out.append(run_step(i, step, run, masters, postmaster, receiver, org_keys))
    finally:
        outer.stop_all()
    report(out, masters)


def report(steps, masters):
    print()
    print(f"Redis Cluster: {len(masters)} masters; wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION} "
          f"through nginx (worker_processes {NGINX_WORKERS}); "
          f"{'webhook delivery on' if DELIVERY else 'pull consumers (archive only)'}; "
          f"{os.cpu_count()} CPUs")
    head = (f"{'api':>3} {'shards':>6} {'wkr':>4} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'err':>4}"
            f" | cores: {'api':>5} {'work':>5} {'redis':>5} {'pg':>5} {'nginx':>5} {'wrk':>5}"
            f" {'recv':>5} {'other':>5} {'busy':>5} | {'redis/node':>16} {'shards/node':>11}"
            f" {'caught up':>9} | idle redis")
    print("(api: replicas, wkr: worker processes; cores in use while wrk ran; other: the machine's"
          " busy time minus everything listed, i.e. load on the host that is not this benchmark;"
          " caught up: seconds after the load until every event was archived and delivered;"
          " idle redis: what the workers' polling costs Redis with no traffic)")
    print(head)
    for s in steps:
        c = s["load_cores"]
        nodes = "/".join(f"{c[f'redis{i + 1}']:.2f}" for i in range(len(masters)))
        spread = "/".join(str(n) for n in s["shards_per_master"])
        caught = "n/a" if s["caught_up_after_s"] is None else f"{s['caught_up_after_s']:.1f} s"
        idle = s["idle_cores"]
        print(f"{s['api']:>3} {s['shards']:>6} {s['workers']:>4} {s['events_per_s']:>9,.0f}"
              f" {s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f} {s['errors']:>4.0f}"
              f" |        {c['api']:>5.2f} {c['workers']:>5.2f} {c['redis']:>5.2f} {c['postgres']:>5.2f}"
              f" {c['nginx']:>5.2f} {c['wrk']:>5.2f} {c['receiver']:>5.2f} {c['other']:>5.2f}"
              f" {c['machine']:>5.2f} | {nodes:>16} {spread:>11} {caught:>9} |"
              f" {idle['redis']:.2f} cores, {idle['redis_commands_per_s']:,.0f} cmd/s")
    print()
    print("CPU ms per accepted event during the load, and events/s per core the service used"
          " (api, workers, redis, postgres, nginx)")
    print(f"{'api':>3} {'shards':>6} {'wkr':>4} {'api':>7} {'workers':>8} {'redis':>7} {'pg':>7}"
          f" {'nginx':>7} {'total':>7} {'events/s/core':>14}")
    for s in steps:
        m = s["cpu_ms_per_event"]
        if m:
            print(f"{s['api']:>3} {s['shards']:>6} {s['workers']:>4} {m['api']:>7.3f} {m['workers']:>8.3f}"
                  f" {m['redis']:>7.3f} {m['postgres']:>7.3f} {m['nginx']:>7.3f} {sum(m.values()):>7.3f}"
                  f" {s['events_per_service_core']:>14,.0f}")
    best = max(steps, key=lambda s: s["events_per_s"])
    c = best["load_cores"]
    shares = sorted(((k, c[k]) for k in ("api", "workers", "redis", "postgres", "nginx", "wrk",
                                         "receiver", "other")), key=lambda kv: -kv[1])
    print()
    print(f"peak: {best['events_per_s']:,.0f} events/s at {best['api']} api / {best['shards']} shards"
          f" / {best['workers']} worker(s); machine busy {c['machine']:.2f} of {os.cpu_count()} cores: "
          + ", ".join(f"{k} {v:.2f}" for k, v in shares))
    print("BENCH_SCALE " + json.dumps({"steps": steps, "masters": len(masters),
                                       "duration": DURATION, "connections": CONNECTIONS,
                                       "delivery": DELIVERY, "cpus": os.cpu_count(),
                                       "bin": B.BIN}))


if __name__ == "__main__":
    main()
