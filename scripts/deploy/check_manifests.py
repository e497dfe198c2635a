#!/usr/bin/env python3
"""Validate and assert on rendered Kubernetes manifests (Helm or kustomize).

    check_manifests.py validate --k8s VERSION [--k8s VERSION...] FILE...
    check_manifests.py assert FILE [--expect KIND]... [--absent KIND]...

validate: built-in kinds go through `kubernetes-validate --strict` for each
Kubernetes version; the CRD kinds the deployment uses (ServiceMonitor,
PrometheusRule, HTTPRoute) get the structural checks below (their schemas
are not in kubernetes-validate), and PrometheusRule groups go through
`promtool check rules`. Any other kind fails: nothing ships unchecked.

assert: the properties an operator relies on, on any rendering of the
deployment: role split, probes, restricted security context, secrets by
reference only, PDB only where more than one replica, no replicas where an
HPA owns the Deployment, only /api exposed, the worker's egress wall,
and runtime_rules.py: OTLP endpoints on the OTLP/HTTP port, a worker's
shutdown timeout above its webhook timeout and a grace period above both.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import yaml

from runtime_rules import OTLP_VARIABLES, otlp_problem, shutdown_problems

CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "HTTPRoute"}
SECRET_ENV = {"DATABASE_URL", "REDIS_URL", "TRIGGERS_ADMIN_TOKEN", "TRIGGERS_SECRET_KEYS"}
URL_WITH_SCHEME = re.compile(r"\b(postgres(ql)?|rediss?(-cluster)?)://", re.I)
RFC1918 = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def load(paths):
    objects = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    objects.append(doc)
    return objects


def name_of(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# ------------------------------------------------------------- validate ---

def check_servicemonitor(obj):
    n = name_of(obj)
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        fail(f"{n}: apiVersion must be monitoring.coreos.com/v1")
    spec = obj.get("spec", {})
    allowed = {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels",
               "sampleLimit", "attachMetadata"}
    for key in set(spec) - allowed:
        fail(f"{n}: unknown spec field {key}")
    if not spec.get("selector", {}).get("matchLabels"):
        fail(f"{n}: spec.selector.matchLabels is empty (it would select every Service)")
    endpoints = spec.get("endpoints") or []
    if not endpoints:
        fail(f"{n}: no endpoints")
    for ep in endpoints:
        if not ep.get("port") or ep.get("path") != "/metrics":
            fail(f"{n}: endpoint needs a named port and path /metrics: {ep}")
        for key in ("interval", "scrapeTimeout"):
            if key in ep and not DURATION.match(str(ep[key])):
                fail(f"{n}: {key} {ep[key]!r} is not a duration")
        roles = [r for r in ep.get("relabelings", []) if r.get("targetLabel") == "role"]
        if not any(r.get("sourceLabels") == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"] for r in roles):
            fail(f"{n}: no relabeling sets role from the pod label app.kubernetes.io/component")


def check_prometheusrule(obj, promtool):
    n = name_of(obj)
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        fail(f"{n}: apiVersion must be monitoring.coreos.com/v1")
    groups = obj.get("spec", {}).get("groups") or []
    if not groups:
        fail(f"{n}: no rule groups")
    for group in groups:
        for rule in group.get("rules", []):
            if "alert" in rule:
                labels, notes = rule.get("labels", {}), rule.get("annotations", {})
                if "severity" not in labels:
                    fail(f"{n}: alert {rule['alert']} has no severity")
                for key in ("summary", "description", "runbook_url"):
                    if not notes.get(key):
                        fail(f"{n}: alert {rule['alert']} has no {key}")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": groups}, f)
    result = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    if result.returncode != 0:
        fail(f"{n}: promtool check rules: {result.stdout.strip()} {result.stderr.strip()}")


def check_httproute(obj):
    n = name_of(obj)
    if obj.get("apiVersion") != "gateway.networking.k8s.io/v1":
        fail(f"{n}: apiVersion must be gateway.networking.k8s.io/v1")
    spec = obj.get("spec", {})
    for key in set(spec) - {"parentRefs", "hostnames", "rules"}:
        fail(f"{n}: unknown spec field {key}")
    if not spec.get("parentRefs") or not all(p.get("name") for p in spec["parentRefs"]):
        fail(f"{n}: parentRefs must name at least one Gateway")
    for rule in spec.get("rules", []):
        for match in rule.get("matches", []):
            path = match.get("path", {})
            if path.get("type") not in ("PathPrefix", "Exact") or not str(path.get("value", "")).startswith("/"):
                fail(f"{n}: bad path match {path}")
        for ref in rule.get("backendRefs", []):
            if not ref.get("name") or not isinstance(ref.get("port"), int):
                fail(f"{n}: backendRef needs a name and a numeric port: {ref}")


def validate(args):
    objects = load(args.files)
    core = [o for o in objects if o.get("kind") not in CRD_KINDS]
    for obj in objects:
        kind = obj.get("kind")
        if kind == "ServiceMonitor":
            check_servicemonitor(obj)
        elif kind == "PrometheusRule":
            check_prometheusrule(obj, args.promtool)
        elif kind == "HTTPRoute":
            check_httproute(obj)
    validator = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(core, f)
    for version in args.k8s:
        result = subprocess.run([validator, "--strict", "--quiet", "-k", version, f.name],
                                capture_output=True, text=True)
        output = (result.stdout + result.stderr).strip()
        # A kind without a schema is only a warning for the tool; here it fails.
        if result.returncode != 0 or "WARN" in output or "ERROR" in output:
            fail(f"kubernetes-validate --strict -k {version}: {output}")
        else:
            print(f"ok   {len(core)} objects valid on Kubernetes {version} (strict); "
                  f"{len(objects) - len(core)} custom resources checked")
    os.unlink(f.name)


# --------------------------------------------------------------- assert ---

def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def prestop_pause(container):
    """Seconds a `sleep N` preStop hook keeps the container before SIGTERM."""
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] == "sleep" and str(command[1]).isdigit():
        return int(command[1])
    return 0


def check_otlp(objects):
    """Every OTLP endpoint a ConfigMap or a container sets."""
    for obj in objects:
        values = []
        if obj.get("kind") == "ConfigMap":
            values = [(k, v) for k, v in (obj.get("data") or {}).items() if k in OTLP_VARIABLES]
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            values += [(e["name"], e["value"]) for e in c.get("env", [])
                       if e["name"] in OTLP_VARIABLES and "value" in e]
        for variable, value in values:
            problem = otlp_problem(variable, value)
            if problem:
                fail(f"{name_of(obj)}: {problem}")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def assert_all(args):
    objects = load([args.file])
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    for kind in args.expect:
        if kind not in by_kind:
            fail(f"expected a {kind}, none rendered")
    for kind in args.absent:
        if kind in by_kind:
            fail(f"expected no {kind}, got {[name_of(o) for o in by_kind[kind]]}")
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in by_kind.get("ConfigMap", [])}
    deployments = by_kind.get("Deployment", [])
    triggers = [d for d in deployments
                if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") == "triggers-api"]
    roles = {}
    for d in triggers:
        role = d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        roles[role] = d
    if sorted(roles) != ["api", "worker"] or len(triggers) != 2:
        fail(f"want exactly two Deployments, api and worker; got {[name_of(d) for d in triggers]}")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", [])}
    pdbs = by_kind.get("PodDisruptionBudget", [])
    for role, d in roles.items():
        n = name_of(d)
        pod = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        containers = pod["containers"]
        c = containers[0]
        argv = c.get("command", []) + c.get("args", [])
        if argv[-3:] != ["serve", "--role", role]:
            fail(f"{n}: runs {argv}, want serve --role {role}")
        probes = {p: (c.get(p) or {}).get("httpGet", {}).get("path") for p in
                  ("startupProbe", "livenessProbe", "readinessProbe")}
        if probes != {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}:
            fail(f"{n}: probes {probes}")
        psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
        if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
            fail(f"{n}: runAsNonRoot is not set")
        if (csc.get("runAsUser") or psc.get("runAsUser")) != 10001:
            fail(f"{n}: does not run as uid 10001 (the image's user)")
        if (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            fail(f"{n}: seccompProfile is not RuntimeDefault")
        if csc.get("allowPrivilegeEscalation") is not False or csc.get("readOnlyRootFilesystem") is not True:
            fail(f"{n}: allowPrivilegeEscalation must be false and readOnlyRootFilesystem true")
        if "ALL" not in csc.get("capabilities", {}).get("drop", []):
            fail(f"{n}: capabilities do not drop ALL")
        if pod.get("automountServiceAccountToken") is not False:
            fail(f"{n}: the service account token is mounted")
        if not any(t.get("whenUnsatisfiable") == "ScheduleAnyway" and t.get("topologyKey") == key
                   for key in ("topology.kubernetes.io/zone",) for t in pod.get("topologySpreadConstraints", [])):
            fail(f"{n}: no soft zone spread")
        env = env_of(c)
        if env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name" \
                or env.get("TRIGGERS_CONSUMER_NAME", {}).get("value") != "$(POD_NAME)":
            fail(f"{n}: TRIGGERS_CONSUMER_NAME is not the pod name from the downward API")
        wanted = {"DATABASE_URL", "REDIS_URL", "TRIGGERS_SECRET_KEYS"} | ({"TRIGGERS_ADMIN_TOKEN"} if role == "api" else set())
        for key in wanted:
            if "secretKeyRef" not in env.get(key, {}).get("valueFrom", {}):
                fail(f"{n}: {key} is not taken from a Secret by reference")
        for key in SECRET_ENV & set(env):
            if "value" in env[key]:
                fail(f"{n}: {key} has a literal value")
        if URL_WITH_SCHEME.search(yaml.safe_dump(d)):
            fail(f"{n}: a Redis/Postgres URL appears literally in the Deployment")
        merged = {}
        for src in c.get("envFrom", []):
            merged.update(configmaps.get(src.get("configMapRef", {}).get("name"), {}))
        for key in SECRET_ENV & set(merged):
            fail(f"{n}: {key} comes from a ConfigMap")
        merged.update({k: v.get("value") for k, v in env.items()})
        if not c.get("lifecycle", {}).get("preStop"):
            fail(f"{n}: no preStop hook")
        # Kubernetes' default grace period is 30 s.
        grace = pod.get("terminationGracePeriodSeconds", 30)
        for problem in shutdown_problems(n, role, merged, grace, prestop_pause(c)):
            fail(problem)
        hpa = hpas.get(d["metadata"]["name"])
        if hpa:
            if "replicas" in d["spec"]:
                fail(f"{n}: has replicas although an HPA owns it")
            if hpa["apiVersion"] != "autoscaling/v2" or not hpa["spec"].get("behavior"):
                fail(f"{n}: its HPA must be autoscaling/v2 with a behavior")
            least = hpa["spec"].get("minReplicas", 1)
        else:
            if "replicas" not in d["spec"]:
                fail(f"{n}: neither replicas nor an HPA")
            least = d["spec"].get("replicas", 1)
        covering = [p for p in pdbs if selects(p["spec"]["selector"].get("matchLabels"), labels)]
        if least > 1 and not covering:
            fail(f"{n}: {least} replicas and no PodDisruptionBudget")
        if least <= 1 and covering:
            fail(f"{n}: a PodDisruptionBudget over a single replica")
    check_otlp(objects)
    for ingress in by_kind.get("Ingress", []):
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                if path.get("path") != "/api" or path.get("pathType") != "Prefix":
                    fail(f"{name_of(ingress)}: exposes {path.get('path')} ({path.get('pathType')}), only /api allowed")
    for route in by_kind.get("HTTPRoute", []):
        for rule in route["spec"].get("rules", []):
            matches = rule.get("matches") or [{}]
            for match in matches:
                if match.get("path", {}).get("value") != "/api":
                    fail(f"{name_of(route)}: matches {match}, only /api allowed")
    for sa in by_kind.get("ServiceAccount", []):
        if sa.get("automountServiceAccountToken") is not False:
            fail(f"{name_of(sa)}: automountServiceAccountToken is not false")
    for policy in by_kind.get("NetworkPolicy", []):
        labels = policy["spec"]["podSelector"].get("matchLabels", {})
        wide = [peer["ipBlock"] for rule in policy["spec"].get("egress", []) for peer in rule.get("to", [])
                if "ipBlock" in peer and peer["ipBlock"].get("cidr") == "0.0.0.0/0"]
        if labels.get("app.kubernetes.io/component") == "worker":
            if not wide or not all(RFC1918 <= set(b.get("except", [])) for b in wide):
                fail(f"{name_of(policy)}: worker egress to the internet must except {sorted(RFC1918)}")
        elif wide:
            fail(f"{name_of(policy)}: the api has no business reaching the internet")
        if "Egress" not in policy["spec"].get("policyTypes", []):
            fail(f"{name_of(policy)}: no Egress policy type")
    for cm in by_kind.get("ConfigMap", []):
        if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            import json
            for key, text in cm.get("data", {}).items():
                try:
                    json.loads(text)
                except ValueError as e:
                    fail(f"{name_of(cm)}: {key} is not JSON: {e}")
    if not failures:
        print(f"ok   {args.file}: {len(objects)} objects pass the deployment assertions")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--k8s", action="append", required=True)
    v.add_argument("--promtool", default="promtool")
    v.add_argument("files", nargs="+")
    a = sub.add_parser("assert")
    a.add_argument("file")
    a.add_argument("--expect", action="append", default=[])
    a.add_argument("--absent", action="append", default=[])
    args = parser.parse_args()
    validate(args) if args.command == "validate" else assert_all(args)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
