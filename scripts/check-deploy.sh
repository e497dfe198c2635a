#!/usr/bin/env bash
# Checks of everything that deploys the service: Helm chart, kustomize
# overlays, compose configuration, dashboard and alert rules; then the local
# stack test (scripts/stack-test.sh) unless told not to.
#
#   scripts/check-deploy.sh            # everything
#   scripts/check-deploy.sh --static   # no stack test (no Redis, Postgres or binary needed)
#
# Installs what it needs on first use and reuses it afterwards: yamllint,
# ShellCheck, promtool (prometheus) and nginx from Debian's packages, and a
# virtualenv under .data/deploy-venv with Helm's library (helm-python-sdk),
# kubernetes-validate and oteltap. kubectl (for `kubectl kustomize`) must be on PATH.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
VENV="$ROOT/.data/deploy-venv"
OUT="$ROOT/.data/deploy-check"
# Pinned so that a check passes or fails for the same reasons on every machine.
# oteltap is the OTLP/HTTP receiver the stack test sends traces to.
PY_PACKAGES=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 oteltap==1.0.0)
OLDEST_K8S=1.29.0

STACK=1
for arg in "$@"; do
    case "$arg" in
        --static) STACK=0 ;;
        *) echo "usage: $0 [--static]" >&2; exit 2 ;;
    esac
done

step() { printf '==> %s\n' "$*" >&2; }

ensure_apt() {
    local missing=() pair
    # command:package
    for pair in yamllint:yamllint shellcheck:shellcheck promtool:prometheus nginx:nginx; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    ((${#missing[@]} == 0)) && return 0
    step "installing ${missing[*]}"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    # The prometheus package would start a system-wide server; only promtool
    # and the binary are wanted, and no service manager runs here anyway.
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
    local stamp="$VENV/.installed" want="${PY_PACKAGES[*]}"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    step "creating $VENV with ${PY_PACKAGES[*]}"
    local python
    python="$(command -v python3.11 || command -v python3)"
    "$python" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
    printf '%s' "$want" >"$stamp"
}

ensure_apt
ensure_venv
command -v kubectl >/dev/null 2>&1 || { echo "FAIL kubectl not found (needed for kubectl kustomize)" >&2; exit 1; }
PY="$VENV/bin/python"
# The newest Kubernetes version kubernetes-validate has schemas for.
NEWEST_K8S="$("$PY" -c 'from kubernetes_validate.utils import latest_version; print(latest_version())')"
rm -rf "$OUT"
mkdir -p "$OUT"

step "yamllint"
yamllint --strict -c .yamllint.yml observability helm k8s deploy docker-compose.yml
echo "ok   yamllint"

step "shellcheck"
shellcheck -x scripts/check-deploy.sh scripts/stack-test.sh scripts/image-test.sh
echo "ok   shellcheck"

step "Dockerfile and compose file"
"$PY" scripts/deploy/check_dockerfile.py
"$PY" scripts/deploy/check_compose.py
"$PY" scripts/deploy/test_checks.py

step "dashboard and alert-rule copies"
"$PY" scripts/deploy/sync_copies.py

step "Helm chart: lint on $OLDEST_K8S and $NEWEST_K8S, render each ci/ values file twice"
"$PY" scripts/deploy/render_chart.py helm/triggers-api "$OUT/chart" "$OLDEST_K8S" "$NEWEST_K8S" -- helm/triggers-api/ci/*.yaml

step "kustomize overlays"
for overlay in dev production; do
    kubectl kustomize "k8s/overlays/$overlay" >"$OUT/kustomize-$overlay.yaml"
    echo "ok   kustomize $overlay: $(grep -c '^kind:' "$OUT/kustomize-$overlay.yaml") objects"
done

step "validate every object (kubernetes-validate --strict, $OLDEST_K8S and $NEWEST_K8S; CRDs by structure)"
for file in "$OUT"/chart/*.yaml "$OUT"/kustomize-*.yaml; do
    "$PY" scripts/deploy/check_manifests.py validate --k8s "$OLDEST_K8S" --k8s "$NEWEST_K8S" "$file"
done

step "assertions on the rendered objects"
check() { "$PY" scripts/deploy/check_manifests.py assert "$@"; }
check "$OUT/chart/default.yaml" --expect Secret --expect PodDisruptionBudget \
    --absent HorizontalPodAutoscaler --absent Ingress --absent HTTPRoute --absent NetworkPolicy \
    --absent ServiceMonitor --absent PrometheusRule
check "$OUT/chart/ha.yaml" --expect HorizontalPodAutoscaler --expect PodDisruptionBudget \
    --expect Ingress --expect HTTPRoute --expect ServiceMonitor --expect PrometheusRule
check "$OUT/chart/existing-secret.yaml" --expect NetworkPolicy --absent Secret --absent PodDisruptionBudget
check "$OUT/kustomize-dev.yaml" --expect StatefulSet --absent PodDisruptionBudget --absent HorizontalPodAutoscaler
check "$OUT/kustomize-production.yaml" --expect HorizontalPodAutoscaler --expect PodDisruptionBudget \
    --expect ServiceMonitor --expect PrometheusRule --absent Secret
# The dashboard ConfigMaps must carry the observability/ file, not a stale one.
"$PY" - "$OUT/chart/ha.yaml" "$OUT/kustomize-production.yaml" <<'PYEOF'
import json, sys, yaml
want = json.load(open("observability/grafana/triggers-api.json"))
for path in sys.argv[1:]:
    boards = [json.loads(v) for d in yaml.safe_load_all(open(path)) if d and d["kind"] == "ConfigMap"
              and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1" for v in d["data"].values()]
    if boards != [want]:
        sys.exit(f"FAIL {path}: the dashboard ConfigMap does not hold observability/grafana/triggers-api.json")
    print(f"ok   {path}: dashboard ConfigMap labelled grafana_dashboard=1 holds the dashboard")
PYEOF

step "alert rules"
promtool check rules observability/prometheus/alerts.yml
promtool test rules observability/prometheus/alerts.test.yml

step "runbook links"
# Every alert's runbook_url must land on a README heading "#### Runbook: <Alert>".
unlinked=0
while read -r anchor; do
    if ! grep -qix "#### Runbook: ${anchor#runbook-}" README.md; then
        echo "FAIL alerts.yml links README.md#$anchor, which has no heading"
        unlinked=1
    fi
done < <(grep -o 'README.md#runbook-[a-z0-9-]*' observability/prometheus/alerts.yml | sed 's/^README.md#//' | sort -u)
((unlinked == 0)) || exit 1
echo "ok   every runbook_url has its README section"

step "relative links and anchors of every Markdown file"
"$PY" scripts/check-links.py

step "dashboard and metric names"
"$PY" scripts/deploy/check_metrics.py

if ((STACK)); then
    step "stack test"
    PYTHON="$PY" scripts/stack-test.sh
fi
echo "PASS check-deploy"
