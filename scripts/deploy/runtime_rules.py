"""Rules every deployment of the binary keeps, whatever writes it (Helm,
kustomize, compose): shared by check_manifests.py and check_compose.py.

* Traces go over OTLP/HTTP: the exporter is built with the HTTP/protobuf
  protocol only (src/telemetry/export.rs), so an endpoint on the OTLP/gRPC
  port 4317 exports nothing (`hyper Parse(Version)` in the logs).
* A worker's TRIGGERS_SHUTDOWN_TIMEOUT exceeds its TRIGGERS_WEBHOOK_TIMEOUT,
  or a stop abandons a delivery in flight and it is sent twice; and the
  platform's grace period exceeds the shutdown timeout (plus any preStop
  pause), or the process is killed before it has drained.
"""
import glob
import os
import re
from urllib.parse import urlsplit

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OTLP_HTTP_PORT = 4318
OTLP_GRPC_PORT = 4317
# The exporter appends /v1/traces to the base endpoint, and uses the
# traces endpoint as it is.
OTLP_BASE = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTLP_TRACES = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
OTLP_VARIABLES = (OTLP_BASE, OTLP_TRACES)

_DURATION_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def duration_seconds(text):
    """Seconds in a duration as humantime or Go write it ("40s", "1m30s",
    "1m 30s", "500ms"); a bare number is seconds (Kubernetes' fields). None
    when it is not one."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    text = str(text).strip()
    if re.fullmatch(r"[0-9]+", text):
        return float(text)
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        position = match.end()
    return total if position and position == len(text) else None


def binary_default(variable):
    """The default the binary gives `variable` (its clap `default_value`),
    read from the sources so the checks follow src/ when it changes."""
    pattern = re.compile(r'env\s*=\s*"' + re.escape(variable) + r'"[^\]]*?default_value\s*=\s*"([^"]+)"', re.S)
    for path in sorted(glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            match = pattern.search(f.read())
        if match:
            return match.group(1)
    raise SystemExit(f"FAIL no default for {variable} found in src/: the deployment checks cannot tell its value")


def otlp_problem(variable, value):
    """Why `value` of an OTLP endpoint variable exports nothing, or None."""
    url = urlsplit(str(value))
    if url.scheme not in ("http", "https") or not url.hostname:
        return f"{variable}={value!r} is not an http(s) URL"
    try:
        port = url.port
    except ValueError:
        return f"{variable}={value!r} has no valid port"
    if port == OTLP_GRPC_PORT:
        return (f"{variable}={value!r} is the OTLP/gRPC port {OTLP_GRPC_PORT}; the binary exports "
                f"OTLP over HTTP: use port {OTLP_HTTP_PORT}")
    if port != OTLP_HTTP_PORT:
        return f"{variable}={value!r} does not name the OTLP/HTTP port {OTLP_HTTP_PORT}"
    path = url.path.rstrip("/")
    if variable == OTLP_TRACES and path != "/v1/traces":
        return f"{variable}={value!r} must be the full URL, ending in /v1/traces"
    if variable == OTLP_BASE and path.endswith("/v1/traces"):
        return f"{variable}={value!r} ends in /v1/traces, which the exporter appends again"
    return None


def shutdown_problems(name, role, env, grace_seconds, pause_seconds=0):
    """What is wrong with the stop of one process: `env` is its environment
    (unset variables take the binary's defaults), `grace_seconds` how long
    the platform waits before SIGKILL, `pause_seconds` any preStop pause
    spent inside that time."""
    problems = []

    def setting(variable):
        value = env.get(variable)
        return duration_seconds(value if value not in (None, "") else binary_default(variable))

    shutdown = setting("TRIGGERS_SHUTDOWN_TIMEOUT")
    webhook = setting("TRIGGERS_WEBHOOK_TIMEOUT")
    if shutdown is None:
        return [f"{name}: TRIGGERS_SHUTDOWN_TIMEOUT {env.get('TRIGGERS_SHUTDOWN_TIMEOUT')!r} is not a duration"]
    if role in ("worker", "all"):
        if webhook is None or shutdown <= webhook:
            problems.append(f"{name}: TRIGGERS_SHUTDOWN_TIMEOUT ({shutdown:g}s) must exceed "
                            f"TRIGGERS_WEBHOOK_TIMEOUT ({webhook if webhook is None else format(webhook, 'g')}s), or a stop cuts deliveries in flight")
    if grace_seconds is None or grace_seconds <= pause_seconds + shutdown:
        grace = grace_seconds if grace_seconds is None else format(grace_seconds, "g")
        problems.append(f"{name}: the grace period before SIGKILL ({grace}s) must exceed "
                        f"the preStop pause ({pause_seconds:g}s) plus TRIGGERS_SHUTDOWN_TIMEOUT ({shutdown:g}s)")
    return problems
