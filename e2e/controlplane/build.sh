#!/usr/bin/env bash
# Builds the pinned control-plane binaries from Go modules (no prebuilt downloads)
# and caches them by version under ${MODELDEPLOY_CACHE:-~/.cache/modeldeploy}/bin.
# Prints the bin directory on stdout; rebuilds only what is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
export CGO_ENABLED=0

# version of a required module, read from the wrapper go.mod (the single source of the pin)
pin() { awk -v m="$2" '$1=="require" && $2==m {print $3} $1==m && NF==2 {print $2}' "$here/gomod/$1/go.mod" | head -n1; }

k8s_version="$(pin kubernetes k8s.io/kubernetes)"
etcd_version="$(pin etcd go.etcd.io/etcd/server/v3)"
kwok_version="$(pin kwok sigs.k8s.io/kwok)"
key="k8s-${k8s_version}_etcd-${etcd_version}_kwok-${kwok_version}"
bin="$cache/bin/$key"
mkdir -p "$bin"

log() { echo "[build] $*" >&2; }

build() { # build <gomod dir> <output name> <package> [ldflags]
  local dir="$1" out="$2" pkg="$3" ldflags="${4:-}"
  if [[ -x "$bin/$out" ]]; then return 0; fi
  log "building $out from $pkg (first time only; cached in $bin)"
  local start=$SECONDS
  (cd "$here/gomod/$dir" && go build -ldflags "-s -w $ldflags" -o "$bin/$out.tmp" "$pkg")
  mv "$bin/$out.tmp" "$bin/$out"
  log "built $out in $((SECONDS - start))s"
}

minor="${k8s_version#v1.}"; minor="${minor%%.*}"
k8s_ldflags="-X k8s.io/component-base/version.gitVersion=${k8s_version}
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}
 -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z
 -X k8s.io/client-go/pkg/version.gitVersion=${k8s_version}
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${minor}"
k8s_ldflags="$(echo $k8s_ldflags)"

build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version}"
build kubernetes kubectl k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"

echo "$bin"
