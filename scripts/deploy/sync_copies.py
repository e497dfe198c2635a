#!/usr/bin/env python3
"""Keep the chart's and kustomize's copies of the dashboard and alert rules
equal to observability/, which is where they are edited.

    sync_copies.py           fail when a copy differs
    sync_copies.py --write   refresh the copies (and the kustomize PrometheusRule)

Helm and kustomize can only read files inside their own roots, hence copies.
"""
import filecmp
import os
import shutil
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOURCES = {
    "observability/prometheus/alerts.yml": [
        "helm/triggers-api/files/alerts.yml",
        "k8s/components/monitoring/files/alerts.yml",
    ],
    "observability/grafana/triggers-api.json": [
        "helm/triggers-api/files/triggers-api.json",
        "k8s/components/monitoring/files/triggers-api.json",
    ],
}
RULE = "k8s/components/monitoring/prometheusrule.yaml"
RULE_HEADER = """# The rules of files/alerts.yml (a copy of observability/prometheus/alerts.yml)
# as a PrometheusRule. scripts/check-deploy.sh fails when spec.groups differs
# from that file; `python3 scripts/deploy/sync_copies.py --write` regenerates it.
"""


class Dumper(yaml.SafeDumper):
    pass


Dumper.add_representer(str, lambda d, v: d.represent_scalar(
    "tag:yaml.org,2002:str", v, style="|" if "\n" in v else None))


def rule_document(groups):
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
           "metadata": {"name": "triggers-api"}, "spec": {"groups": groups}}
    return RULE_HEADER + yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=100, indent=2)


def main(write):
    ok = True
    for source, copies in SOURCES.items():
        for copy in copies:
            src, dst = os.path.join(ROOT, source), os.path.join(ROOT, copy)
            if write:
                shutil.copyfile(src, dst)
            elif not os.path.exists(dst) or not filecmp.cmp(src, dst, shallow=False):
                print(f"FAIL {copy} differs from {source}: run scripts/deploy/sync_copies.py --write")
                ok = False
    with open(os.path.join(ROOT, "observability/prometheus/alerts.yml"), encoding="utf-8") as f:
        groups = yaml.safe_load(f)["groups"]
    rule_path = os.path.join(ROOT, RULE)
    if write:
        with open(rule_path, "w", encoding="utf-8") as f:
            f.write(rule_document(groups))
    else:
        with open(rule_path, encoding="utf-8") as f:
            if yaml.safe_load(f)["spec"]["groups"] != groups:
                print(f"FAIL {RULE}: spec.groups differs from observability/prometheus/alerts.yml")
                ok = False
    if ok:
        print("ok   dashboard and alert-rule copies match observability/" + (" (rewritten)" if write else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main("--write" in sys.argv[1:]))
