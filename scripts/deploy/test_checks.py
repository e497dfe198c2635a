#!/usr/bin/env python3
"""The deployment checks refuse the mistakes they exist for: each case is a
small input with one such mistake (most of them once shipped), and the
check must name it. A check that passes everything would otherwise go
unnoticed, since the repository's own files pass.

    test_checks.py
"""
import os
import sys
import tempfile

import yaml

import check_compose
import check_dockerfile
from runtime_rules import duration_seconds, otlp_problem, shutdown_problems

failures = 0


def expect(name, problems, wanted):
    """`wanted` is a fragment one of `problems` must contain, or None for none."""
    global failures
    text = "\n".join(problems)
    ok = (not problems) if wanted is None else (wanted in text)
    if not ok:
        failures += 1
        print(f"FAIL {name}: want {'no problem' if wanted is None else repr(wanted)}, got {problems or 'none'}")


def otlp(variable, value):
    problem = otlp_problem(variable, value)
    return [problem] if problem else []


def compose_problems(services):
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"services": services}, f)
    try:
        return check_compose.check(f.name)[0]
    finally:
        os.unlink(f.name)


def main():
    for text, seconds in [("40s", 40), ("1m30s", 90), ("1m 30s", 90), ("500ms", 0.5), (50, 50), ("x", None)]:
        if duration_seconds(text) != seconds:
            expect(f"duration {text!r}", [f"read as {duration_seconds(text)}"], None)

    base, traces = "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    expect("OTLP on 4318", otlp(base, "http://jaeger:4318"), None)
    expect("OTLP on the gRPC port", otlp(base, "http://jaeger:4317"), "OTLP/gRPC port 4317")
    expect("OTLP without a port", otlp(base, "http://collector"), "OTLP/HTTP port 4318")
    expect("traces URL without its path", otlp(traces, "http://c:4318"), "/v1/traces")
    expect("traces URL", otlp(traces, "http://c:4318/v1/traces"), None)
    expect("base URL with the traces path", otlp(base, "http://c:4318/v1/traces"), "appends again")

    worker = {"TRIGGERS_WEBHOOK_TIMEOUT": "30s", "TRIGGERS_SHUTDOWN_TIMEOUT": "40s"}
    expect("worker 40s/30s, grace 50", shutdown_problems("w", "worker", worker, 50, 5), None)
    expect("worker on the default 25s shutdown", shutdown_problems("w", "worker", {}, 60), "must exceed TRIGGERS_WEBHOOK")
    expect("grace eaten by the preStop pause", shutdown_problems("w", "worker", worker, 44, 5), "grace period")
    expect("api on compose's default grace", shutdown_problems("a", "api", {}, 10), "grace period")

    served = {"image": "triggers-api:local", "environment": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}}
    good = {"api": {**served, "command": ["serve", "--role", "api"], "stop_grace_period": "30s"},
            "worker": {**served, "command": ["serve", "--role", "worker"], "stop_grace_period": "50s",
                       "environment": {**served["environment"], **worker}}}
    expect("compose as shipped", compose_problems(good), None)
    expect("compose worker on the default shutdown timeout",
           compose_problems({**good, "worker": {**good["worker"], "environment": served["environment"]}}),
           "worker: TRIGGERS_SHUTDOWN_TIMEOUT (25s) must exceed")
    expect("compose worker without a stop_grace_period",
           compose_problems({**good, "worker": {k: v for k, v in good["worker"].items() if k != "stop_grace_period"}}),
           "worker: the grace period before SIGKILL (10s)")
    expect("compose sending traces to 4317",
           compose_problems({**good, "api": {**good["api"], "environment": {base: "http://jaeger:4317"}}}),
           "api: OTEL_EXPORTER_OTLP_ENDPOINT='http://jaeger:4317'")

    dockerfile = """# Needs BuildKit.
#   docker run -e TRIGGERS_SECRET_KEYS=k img serve
ARG BASE=bookworm
FROM rust:1-${BASE} AS builder
ARG REVISION=unknown
ARG GIT_COMMIT=${REVISION}
RUN --mount=type=cache,target=/c GIT_COMMIT="${GIT_COMMIT}" cargo build
FROM debian:${BASE}-slim
ARG BASE
RUN apt-get update && apt-get install -y ca-certificates
ARG REVISION=unknown
LABEL base="debian:${BASE}-slim" revision="${REVISION}"
"""
    expect("Dockerfile as it should be", check_dockerfile.check(dockerfile), None)
    expect("global ARG not declared again",
           check_dockerfile.check(dockerfile.replace("ARG BASE\n", "")), "a global ARG it does not declare again")
    expect("a syntax line that fetches a frontend",
           check_dockerfile.check("# syntax=docker/dockerfile:1\n" + dockerfile), "fetch its frontend")
    expect("labels before apt-get", check_dockerfile.check(dockerfile.replace(
        "RUN apt-get update && apt-get install -y ca-certificates\nARG REVISION=unknown\n",
        "ARG REVISION=unknown\nRUN apt-get update && apt-get install -y ca-certificates\n")),
        "installs packages after ARG REVISION")
    expect("no GIT_COMMIT argument", check_dockerfile.check(dockerfile.replace("ARG GIT_COMMIT=${REVISION}\n", "")),
           "without ARG GIT_COMMIT")
    expect("BuildKit unsaid", check_dockerfile.check(dockerfile.replace("# Needs BuildKit.\n", "")),
           "no comment says so")
    expect("example without a key", check_dockerfile.check(dockerfile.replace("-e TRIGGERS_SECRET_KEYS=k ", "")),
           "exits 1 in production mode")

    if failures:
        print(f"FAIL {failures} deployment-check cases")
        return 1
    print("ok   the deployment checks refuse each mistake they exist for")
    return 0


if __name__ == "__main__":
    sys.exit(main())
