#!/usr/bin/env python3
"""Check that the dashboard and the alert rules use only metrics the service
exports, and that the dashboard is well formed.

    check_metrics.py [--known FILE] [--pending FILE] [--scraped FILE]

Known names: the constants of src/metrics/mod.rs (a histogram X stands for
X_bucket, X_sum and X_count), plus --known files (one name a line, e.g. the
names of a live scrape) and --pending (names the service will export soon).
With --scraped (names seen in a live scrape of every process), every name
used must be in that scrape unless it is listed in --pending.
"""
import argparse
import json
import os
import re
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(ROOT, "observability/grafana/triggers-api.json")
ALERTS = os.path.join(ROOT, "observability/prometheus/alerts.yml")
# Series Prometheus makes itself for every target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "inf", "nan"}
SUFFIXES = ("_bucket", "_sum", "_count")

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def metric_names(expr):
    """Metric names of a PromQL expression (a small tokenizer, not a parser)."""
    expr = re.sub(r'"(\\.|[^"\\])*"', '""', expr)            # strings, e.g. label values
    expr = re.sub(r"\{[^}]*\}", "", expr)                      # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                     # ranges, $__rate_interval
    # Label lists of aggregations and vector matching.
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        token, rest = match.group(0), expr[match.end():].lstrip()
        if rest.startswith("(") or token.lower() in KEYWORDS:
            continue                                            # a function or an operator
        if re.match(r"[0-9.]", expr[match.start() - 1:match.start()] or " "):
            continue                                            # exponent of a number, 1e3
        names.add(token)
    return names


def read_names(path):
    with open(path, encoding="utf-8") as f:
        return {line.split("#")[0].strip() for line in f} - {""}


def source_names():
    with open(os.path.join(ROOT, "src/metrics/mod.rs"), encoding="utf-8") as f:
        return set(re.findall(r'pub const [A-Z_]+: &str = "([a-z_:][a-z0-9_:]*)";', f.read()))


def is_known(name, known):
    if name in known:
        return True
    return any(name.endswith(s) and name[: -len(s)] in known for s in SUFFIXES)


def dashboard_exprs():
    with open(DASHBOARD, encoding="utf-8") as f:
        dash = json.load(f)
    for key in ("uid", "title", "schemaVersion", "panels"):
        if key not in dash:
            fail(f"dashboard: no {key}")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource" \
            or variables["datasource"].get("query") != "prometheus":
        fail("dashboard: no Prometheus datasource variable named datasource")
    exprs, ids = [], set()
    for panel in dash.get("panels", []):
        if panel.get("id") in ids:
            fail(f"dashboard: duplicate panel id {panel.get('id')}")
        ids.add(panel.get("id"))
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"dashboard panel {panel.get('title')!r}: datasource is not ${{datasource}}")
        if not panel.get("targets"):
            fail(f"dashboard panel {panel.get('title')!r}: no query")
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if re.search(r"\b(rate|increase|irate)\([^)]*\[(?!\$__rate_interval\])", expr):
                fail(f"dashboard panel {panel.get('title')!r}: range not $__rate_interval in {expr}")
            exprs.append((f"dashboard panel {panel.get('title')!r}", expr))
    return exprs


def alert_exprs():
    with open(ALERTS, encoding="utf-8") as f:
        groups = yaml.safe_load(f)["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    out = [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for g in groups for r in g["rules"]]
    return out, recorded


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--known", action="append", default=[])
    parser.add_argument("--pending", default=os.path.join(ROOT, "observability/metrics-pending.txt"))
    parser.add_argument("--scraped")
    args = parser.parse_args()
    pending = read_names(args.pending)
    known = source_names() | pending | SYNTHETIC
    for path in args.known:
        known |= read_names(path)
    rules, recorded = alert_exprs()
    used = {}
    for where, expr in dashboard_exprs() + rules:
        for name in metric_names(expr) - recorded:
            used.setdefault(name, where)
    for name, where in sorted(used.items()):
        if not is_known(name, known):
            fail(f"{where}: {name} is not a metric the service exports")
    if args.scraped:
        scraped = read_names(args.scraped) | SYNTHETIC
        for name, where in sorted(used.items()):
            if name not in scraped and not is_known(name, pending):
                fail(f"{where}: {name} is absent from the live scrape and not listed as pending")
        stale = {n for n in pending if n in scraped or any(n + s in scraped for s in SUFFIXES)}
        for name in sorted(stale):
            print(f"WARN {name} is exported now: remove it from {os.path.relpath(args.pending, ROOT)}")
    if not failures:
        mode = "a live scrape" if args.scraped else "src/metrics/mod.rs"
        print(f"ok   dashboard and alert rules use {len(used)} metric names, all known to {mode}"
              f" ({len(pending)} pending)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
