#!/usr/bin/env bash
# Offline checks of what deploy/ ships: Kubernetes schemas, the restricted Pod Security
# Standard, the Prometheus Operator resources, the Compose file, Prometheus's config
# and rules. Tools come pinned from PyPI, npm and Debian (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
tools="${BERQENAS_CI_TOOLS:-${TMPDIR:-/tmp}/berqenas-ci-tools}"
k8s=deploy/kubernetes

apt_install() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
command -v promtool >/dev/null || { echo "installing promtool (Debian's prometheus)"; apt_install prometheus; }
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
command -v npm >/dev/null || apt_install nodejs npm

if [ ! -x "$tools/venv/bin/checkov" ]; then
  echo "installing kubernetes-validate, check-jsonschema and checkov"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check \
    kubernetes-validate==1.37.0 check-jsonschema==0.39.0 checkov==3.3.30
fi
bin="$tools/venv/bin"
(cd .ci/validate && npm ci --no-audit --no-fund --silent)

manifests=$(ls "$k8s"/*.yaml | grep -v kustomization.yaml)

echo "== Kubernetes schemas (kubernetes-validate, strict, Kubernetes 1.37 and 1.30)"
# (The Prometheus Operator's kinds are not in Kubernetes's schemas: checked below.)
for v in 1.37.0 1.30.0; do
  # shellcheck disable=SC2086
  "$bin/kubernetes-validate" --strict --quiet --no-warn -k "$v" $manifests
  echo "Kubernetes $v: ok"
done

echo "== Prometheus Operator resources (@kubernetes-models/prometheus-operator)"
node .ci/validate/check-crds.mjs "$k8s"

echo "== restricted Pod Security Standard (check-jsonschema, .ci/validate/pss-restricted.schema.json)"
"$bin/check-jsonschema" --schemafile .ci/validate/pss-restricted.schema.json "$k8s/deployment.yaml"

echo "== checkov (Kubernetes checks; image digest and pull policy are the operator's choice per release)"
"$bin/checkov" -d "$k8s" --framework kubernetes --compact --quiet --skip-download \
  --skip-check CKV_K8S_43,CKV_K8S_15

echo "== Compose file (check-jsonschema, the compose-spec schema)"
"$bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml

echo "== Prometheus config and alert rules (promtool)"
promtool check config --syntax-only deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
"$bin/python" - <<'PY'
import yaml
a = yaml.safe_load(open("deploy/prometheus/alerts.yml"))["groups"]
b = yaml.safe_load(open("deploy/kubernetes/prometheusrule.yaml"))["spec"]["groups"]
assert a == b, "deploy/kubernetes/prometheusrule.yaml and deploy/prometheus/alerts.yml differ"
print("PrometheusRule groups = deploy/prometheus/alerts.yml")
PY

echo "== container entrypoint (sh -n)"
sh -n deploy/docker/entrypoint.sh
echo "deploy checks passed"
