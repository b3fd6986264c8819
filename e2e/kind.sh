#!/usr/bin/env bash
# The same demo as `make up`, on kind, for machines with a Docker engine.
# (It cannot run where there is no Docker engine; `make up` uses the local control plane there.)
#
#   e2e/kind.sh up     create the cluster, build and load both images, install, apply the sample
#   e2e/kind.sh down   delete the cluster
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${KIND_CLUSTER:-modeldeploy}"
TAG="${TAG:-dev}"
NS="${NAMESPACE:-default}"
PY="${PYTHON:-.venv/bin/python}"

need() { command -v "$1" >/dev/null || { echo "kind.sh needs '$1' on PATH" >&2; exit 1; }; }

up() {
  need docker; need kind; need kubectl
  kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
  docker build -f Dockerfile.server -t "modeldeploy/server:$TAG" .
  docker build -f Dockerfile.operator -t "modeldeploy/operator:$TAG" .
  kind load docker-image --name "$CLUSTER" "modeldeploy/server:$TAG" "modeldeploy/operator:$TAG"

  kubectl apply --server-side -f crds/
  kubectl wait --for=condition=Established crd/modeldeployments.modeldeploy.dev --timeout=60s
  if [[ -d charts/modeldeploy ]] && command -v helm >/dev/null; then
    helm upgrade --install modeldeploy charts/modeldeploy --namespace modeldeploy-system --create-namespace \
      --set image.repository=modeldeploy/operator --set image.tag="$TAG" --set image.pullPolicy=Never --wait
  else
    kubectl create namespace modeldeploy-system --dry-run=client -o yaml | kubectl apply -f -
    kubectl -n modeldeploy-system create deployment modeldeploy-operator \
      --image="modeldeploy/operator:$TAG" --dry-run=client -o yaml | kubectl apply -f -
    kubectl create clusterrolebinding modeldeploy-operator-dev --clusterrole=cluster-admin \
      --serviceaccount=modeldeploy-system:default --dry-run=client -o yaml | kubectl apply -f -
    echo "note: no Helm chart/helm found: the operator runs with a development-only cluster-admin binding" >&2
  fi

  # The example model is served from inside the cluster by a small file server pod.
  models="$(mktemp -d)"
  read -r path digest < <("$PY" examples/train_iris.py --version 1.0.0 --out "$models")
  kubectl -n "$NS" create configmap iris-model --from-file="$(basename "$path")=$path" \
    --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: model-files, labels: {app: model-files}}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 10001, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: http
    image: modeldeploy/server:$TAG
    imagePullPolicy: Never
    command: [python, -m, http.server, "8000", --directory, /models]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
    volumeMounts: [{name: models, mountPath: /models}]
  volumes: [{name: models, configMap: {name: iris-model}}]
---
apiVersion: v1
kind: Service
metadata: {name: model-files}
spec: {selector: {app: model-files}, ports: [{port: 80, targetPort: 8000}]}
YAML
  MODEL_URI="http://model-files.$NS.svc.cluster.local/$(basename "$path")" MODEL_SHA256="$digest" \
    envsubst < examples/iris.yaml \
    | kubectl -n "$NS" apply -f -
  kubectl -n "$NS" patch md iris --type=merge \
    -p "{\"spec\":{\"server\":{\"image\":\"modeldeploy/server:$TAG\",\"imagePullPolicy\":\"Never\"}}}"
  kubectl -n "$NS" wait --for=condition=Ready md/iris --timeout=300s
  kubectl -n "$NS" get modeldeployments
}

down() {
  need kind
  kind delete cluster --name "$CLUSTER"
}

"${1:-up}"
