#!/usr/bin/env python3
"""Lint the Helm chart strictly and render it once per values file, twice.

    render_chart.py CHART OUT_DIR KUBE_VERSION... -- VALUES_FILE...

Writes OUT_DIR/<values name>.yaml (every rendered object, NOTES.txt left
out) and OUT_DIR/<values name>.kinds (one kind per line). Fails on any lint
warning or error, on a render error, and when two renders of the same
values differ: renders must be reproducible, or GitOps tools see a change on
every sync.
"""
import os
import sys

import helm_python as helm
import yaml


def render(chart, values):
    manifests = chart.render(values, name="triggers", namespace="triggers", is_install=True)
    docs = []
    for template in sorted(manifests):
        if template.endswith("NOTES.txt"):
            continue
        docs.append(f"# Source: {template}\n{manifests[template].strip()}\n")
    return "---\n".join(docs)


def main(argv):
    split = argv.index("--")
    chart_dir, out_dir, kube_versions = argv[0], argv[1], argv[2:split]
    values_files = argv[split + 1:]
    os.makedirs(out_dir, exist_ok=True)
    chart = helm.Chart.load(chart_dir)
    failed = False
    for path in values_files:
        name = os.path.basename(path).removesuffix(".yaml").removesuffix("-values")
        with open(path, encoding="utf-8") as f:
            values = helm.values_from_yaml(f.read())
        for version in kube_versions:
            report = helm.lint(chart_dir, values, strict=True, kube_version=f"v{version}")
            # Severity 1 is informational (e.g. "icon is recommended").
            problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
            for p in problems:
                print(f"FAIL lint {name} (k8s {version}): {p}")
            failed |= bool(problems)
        first, second = render(chart, values), render(chart, values)
        if first != second:
            print(f"FAIL render {name}: two renders of the same values differ")
            failed = True
        with open(os.path.join(out_dir, f"{name}.yaml"), "w", encoding="utf-8") as f:
            f.write(first)
        kinds = sorted(d["kind"] for d in yaml.safe_load_all(first) if d)
        with open(os.path.join(out_dir, f"{name}.kinds"), "w", encoding="utf-8") as f:
            f.write("\n".join(kinds) + "\n")
        print(f"ok   chart {name}: linted, rendered twice identically: {', '.join(kinds)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
