"""Helpers shared by bench/cost.py and bench/scale.py (stdlib only).

Service processes, a small Redis (RESP) client, CPU counters from /proc and
Redis INFO, Postgres through psql, wrk runs and the local webhook receiver.
Everything listens on 127.0.0.1.
"""

import json
import os
import re
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BIN") or os.path.join(ROOT, "target/release/triggers-api")
TICK = os.sysconf("SC_CLK_TCK")
LOG_DIR = tempfile.mkdtemp(prefix="triggers-bench-")


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def http(method, url, body=None, headers=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_until(check, limit, step=0.1):
    """Seconds until check() held, or None after `limit` seconds."""
    started = time.time()
    while time.time() - started < limit:
        if check():
            return time.time() - started
        time.sleep(step)
    return None


# ------------------------------------------------------------------ /proc ---

def proc_cpu(pid, children=False):
    """CPU seconds (user + system) of a process; with children=True, plus
    those of its children that have exited and been waited for."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def child_pids(parent):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            out.append(int(entry))
    return out


def tree_cpu(root):
    """CPU seconds of a process, its live children and its waited-for dead
    ones: the whole of a postmaster or an nginx master with its workers."""
    return proc_cpu(root, children=True) + sum(proc_cpu(p) for p in child_pids(root))


def postmaster_pid(port):
    """The postmaster serving 127.0.0.1:<port> (read from its postmaster.pid)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"postgres") or b"-D" not in argv:
            continue
        datadir = argv[argv.index(b"-D") + 1].decode()
        try:
            with open(os.path.join(datadir, "postmaster.pid")) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        if len(lines) > 3 and lines[0].strip() == entry and lines[3].strip() == str(port):
            return int(entry)
    return None


def machine_busy():
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / TICK, total / TICK


def children_cpu():
    """CPU seconds of this process's waited-for children (e.g. a wrk run)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------ Redis ---

class RedisError(Exception):
    pass


class Redis:
    """A blocking RESP2 connection: enough for INFO, SCAN and housekeeping."""

    def __init__(self, host, port, timeout=30):
        self.addr = (host, int(port))
        self.sock = socket.create_connection(self.addr, timeout=timeout)
        self.f = self.sock.makefile("rb")

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read(self):
        line = self.f.readline()
        if not line:
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RedisError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.sock.sendall(self.encode(args))
        reply = self.read()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self.read() for _ in commands]

    def info(self, section):
        out = {}
        for line in self.call("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def cpu(self):
        i = self.info("cpu")
        return float(i["used_cpu_sys"]) + float(i["used_cpu_user"])

    def used_memory(self):
        return int(self.info("memory")["used_memory"])

    def commandstats(self):
        """{command: (calls, usec)}"""
        out = {}
        for k, v in self.info("commandstats").items():
            fields = dict(kv.split("=", 1) for kv in v.split(","))
            out[k.removeprefix("cmdstat_")] = (int(fields["calls"]), int(fields["usec"]))
        return out

    def scan(self, pattern):
        cursor = "0"
        while True:
            cursor, keys = self.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            yield from keys
            if cursor == "0":
                return

    def delete_matching(self, pattern):
        """UNLINKs every key of this node matching pattern; returns how many."""
        n = 0
        batch = []
        for key in self.scan(pattern):
            batch.append(("UNLINK", key))
            if len(batch) >= 500:
                self.pipeline(batch)
                n += len(batch)
                batch = []
        if batch:
            self.pipeline(batch)
            n += len(batch)
        return n

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def redis_addr(url):
    m = re.match(r"redis(?:-cluster)?s?://(?:[^@]*@)?([^:/]+):(\d+)", url)
    if not m:
        raise SystemExit(f"bench: cannot parse the Redis URL {url}")
    return m.group(1), int(m.group(2))


def cluster_masters(seed_host, seed_port):
    """[(host, port)] of the masters of the cluster the seed belongs to."""
    r = Redis(seed_host, seed_port)
    try:
        nodes = r.call("CLUSTER", "NODES")
    finally:
        r.close()
    out = []
    for line in nodes.splitlines():
        parts = line.split()
        if "master" in parts[2] and "fail" not in parts[2]:
            host, port = parts[1].split("@")[0].rsplit(":", 1)
            out.append((host, int(port)))
    return sorted(out, key=lambda a: a[1])


# --------------------------------------------------------------- Postgres ---

def psql(sql):
    url = os.environ["DATABASE_URL"]
    out = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"bench: psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


class FreshDatabase:
    """A database of its own on the DATABASE_URL server, so table sizes start
    from nothing and runs leave nothing behind; DATABASE_URL points at it
    until stop() drops it."""

    def __init__(self, tag):
        self.admin_url = os.environ["DATABASE_URL"]
        self.name = f"triggers_{tag}_{secrets.token_hex(3)}"
        psql(f"CREATE DATABASE {self.name}")
        parts = urllib.parse.urlparse(self.admin_url)
        os.environ["DATABASE_URL"] = urllib.parse.urlunparse(parts._replace(path="/" + self.name))

    def stop(self):
        os.environ["DATABASE_URL"] = self.admin_url
        # Not WITH (FORCE): that needs the right to end every backend, the
        # autovacuum worker's included; a plain DROP ends autovacuum itself.
        for _ in range(10):
            try:
                psql(f"DROP DATABASE IF EXISTS {self.name}")
                return
            except SystemExit as err:
                last = err
                time.sleep(1)
        log(f"could not drop the database {self.name}: {last}")


def pg_port():
    return urllib.parse.urlparse(os.environ["DATABASE_URL"]).port or 5432


# --------------------------------------------------------------- services ---

class Service:
    """One triggers-api process on 127.0.0.1:<port>."""

    def __init__(self, role, port, prefix, extra_env=None, wait=True):
        env = dict(os.environ)
        env.update({
            "TRIGGERS_LISTEN": f"127.0.0.1:{port}",
            "TRIGGERS_ROLE": role,
            "TRIGGERS_REDIS_PREFIX": prefix,
            "TRIGGERS_ALLOW_PRIVATE_WEBHOOKS": "true",
            # A machine of our own: no secret key needed, organizations
            # created through the API like any client.
            "TRIGGERS_ENV": "development",
            "TRIGGERS_ALLOW_OPEN_SIGNUP": "true",
            # Every key is verified once from 127.0.0.1 before timing.
            "TRIGGERS_AUTH_FAILURES_PER_ADDRESS": "100000",
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
        })
        env.update(extra_env or {})
        self.role = role
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(LOG_DIR, f"{role}-{port}.log"), "w")
        self.proc = subprocess.Popen([BIN, "serve"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if wait:
            self.wait_healthy()

    def wait_healthy(self, limit=60):
        def up():
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: the {self.role} process exited; see {self.log.name}")
            try:
                return http("GET", self.base + "/health", timeout=1)[0] == 200
            except OSError:
                return False
        if wait_until(up, limit, 0.2) is None:
            raise SystemExit(f"bench: the {self.role} process did not start; see {self.log.name}")

    @property
    def pid(self):
        return self.proc.pid

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def metric(self, name, labels=""):
        """Sum of every series of a metric (those whose labels contain `labels`)."""
        _, text = http("GET", self.base + "/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or (line.startswith(name + "{") and labels in line):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Receiver:
    """bench/receiver.py: 204 for /ok..., 500 for /fail..."""

    def __init__(self, port):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench/receiver.py"),
                                      "127.0.0.1", str(port)])
        def up():
            try:
                return http("GET", self.base + "/stats", timeout=1)[0] == 200
            except OSError:
                return False
        if wait_until(up, 10) is None:
            raise SystemExit("bench: the webhook receiver did not start")

    def stats(self):
        return json.loads(http("GET", self.base + "/stats")[1])

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Stack:
    """Everything started, stopped in reverse order on exit (and on SIGTERM)."""

    def __init__(self):
        self.items = []
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def add(self, item):
        self.items.append(item)
        return item

    def remove(self, item):
        item.stop()
        self.items.remove(item)

    def stop_all(self):
        while self.items:
            item = self.items.pop()
            try:
                item.stop()
            except (Exception, SystemExit) as err:  # keep stopping the rest
                log(f"stopping {item}: {err}")


# ------------------------------------------------------------ organizations -

def create_orgs(base, n, name, webhook_url=None):
    """n enterprise organizations, each key verified once (sequentially: the
    per-address limit counts first-time verifications); returns their keys."""
    token = os.environ.get("TRIGGERS_ADMIN_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    run = secrets.token_hex(4)
    keys = []
    for i in range(n):
        status, text = http("POST", base + "/api/keys/generate",
                            {"organization_name": f"{name}-{i}-{run}", "tier": "enterprise"},
                            headers)
        if status != 201:
            raise SystemExit(f"bench: creating an organization answered {status}: {text[:200]}")
        key = json.loads(text)["api_key"]
        if webhook_url:
            status, text = http("POST", base + "/api/webhook/config",
                                {"webhook_url": webhook_url}, {"X-API-Key": key})
            if status != 200:
                raise SystemExit(f"bench: configuring a webhook answered {status}: {text[:200]}")
        keys.append(key)
    return keys


def warm_keys(base, keys):
    """Verifies each key once (argon2 is not what is measured)."""
    for key in keys:
        status, text = http("GET", base + "/api/keys", headers={"X-API-Key": key})
        if status != 200:
            raise SystemExit(f"bench: verifying a key answered {status}: {text[:200]}")


def keys_file(keys):
    path = os.path.join(LOG_DIR, f"keys-{secrets.token_hex(3)}.lua")
    with open(path, "w") as f:
        f.write("return {\n" + "".join(f'  "{k}",\n' for k in keys) + "}\n")
    return path


PAD = "0123456789abcdefghij" * 10


def send_batches(base, keys, total, pad=PAD, per_request=500):
    """`total` events through POST /api/events/batch, keys in turn; returns
    how many were accepted."""
    sent = 0
    i = 0
    while sent < total:
        n = min(per_request, total - sent)
        events = [{"type": "bench.event", "payload": {"n": sent + j, "thread": 0, "pad": pad}}
                  for j in range(n)]
        status, text = http("POST", base + "/api/events/batch", {"events": events},
                            {"X-API-Key": keys[i % len(keys)]})
        if status != 200:
            raise SystemExit(f"bench: a batch answered {status}: {text[:200]}")
        sent += json.loads(text)["accepted"]
        i += 1
    return sent


# -------------------------------------------------------------------- wrk ---

def wrk(script, url, args=(), connections=16, threads=1, duration="10s", env=None):
    """One wrk run; returns its BENCH_RESULT fields and the CPU wrk used."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", duration,
           "--timeout", "5s", "-s", os.path.join(ROOT, "bench", script), url]
    if args:
        cmd += ["--", *args]
    before = children_cpu()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, **(env or {}))).stdout
    line = next((l for l in out.splitlines() if l.startswith("BENCH_RESULT")), "")
    fields = dict(kv.split("=", 1) for kv in line.split()[1:])
    if not fields:
        raise SystemExit(f"bench: wrk printed no result:\n{out}")
    result = {k: float(v) if re.fullmatch(r"[0-9.]+", v) else v for k, v in fields.items()}
    result["cpu_s"] = children_cpu() - before
    return result
