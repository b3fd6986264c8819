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
helm_version="$(pin helm helm.sh/helm/v3)"
key="k8s-${k8s_version}_etcd-${etcd_version}_kwok-${kwok_version}_helm-${helm_version}"
bin="$cache/bin/$key"
mkdir -p "$bin"

log() { echo "[build] $*" >&2; }

# One build at a time per cache (parallel test sessions would race on the same outputs).
exec 9>"$bin/.build.lock"
if ! flock -n 9; then log "waiting for another build.sh to finish"; flock 9; fi

build() { # build <gomod dir> <output name> <package> [ldflags] [overlay id]
  local dir="$1" out="$2" pkg="$3" ldflags="${4:-}" overlay="${5:-}"
  local stamp="$bin/$out.overlay" want="${overlay:-none}"
  if [[ -x "$bin/$out" && "$(cat "$stamp" 2>/dev/null || echo none)" == "$want" ]]; then return 0; fi
  log "building $out from $pkg${overlay:+ with overlay $overlay} (first time only; cached in $bin)"
  local start=$SECONDS extra=()
  if [[ -n "$overlay" ]]; then
    local flags; flags="$("overlay_${overlay//-/_}" "$dir")" || exit 1
    mapfile -t extra <<<"$flags"
  fi
  (cd "$here/gomod/$dir" && go build "${extra[@]}" -ldflags "-s -w $ldflags" -o "$bin/$out.tmp" "$pkg")
  mv "$bin/$out.tmp" "$bin/$out"
  if [[ -n "$overlay" ]]; then echo "$overlay" >"$stamp"; else rm -f "$stamp"; fi
  log "built $out in $((SECONDS - start))s"
}

# Overlay "loopback-endpoints-1": every pod IP of the local cluster is loopback (127.0.0.0/8) by
# design, and stock validation rejects loopback addresses in Endpoints/EndpointSlices (so the
# endpoint(slice) controllers could never publish pods). The overlay lifts exactly that one check
# in ValidateEndpointIP. `go build -overlay` refuses files under GOMODCACHE, so the module is
# hard-linked (no copy of data) next to the cache, the one file is replaced by a patched copy,
# and the build uses a -modfile with `replace k8s.io/kubernetes => <that tree>`.
# Prints the extra go build flags, one per line.
overlay_loopback_endpoints_1() {
  local moddir file src patched modfile n
  moddir="$(cd "$here/gomod/$1" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
  src="$cache/src/$key/kubernetes+loopback-endpoints-1"
  if [[ ! -f "$src/.complete" ]]; then
    rm -rf "$src" && mkdir -p "$(dirname "$src")"
    cp -al "$moddir" "$src"
    chmod -R u+w "$src"
    file="$src/pkg/apis/core/validation/validation.go"
    n="$(grep -c '^	if ip.IsLoopback() {$' "$file")"
    if [[ "$n" != 1 ]]; then
      log "overlay loopback-endpoints-1: expected 1 loopback check in $file, found $n; update the overlay"
      exit 1
    fi
    patched="$file.patched"
    sed 's/^	if ip.IsLoopback() {$/	if false \&\& ip.IsLoopback() { \/\/ modeldeploy overlay: loopback endpoints allowed/' \
      "$file" >"$patched"
    grep -q 'modeldeploy overlay: loopback endpoints allowed' "$patched"
    rm "$file" && mv "$patched" "$file"   # unlink first: never write through the hard link
    touch "$src/.complete"
  fi
  modfile="$cache/src/$key/kubernetes+loopback-endpoints-1.mod"
  { cat "$here/gomod/$1/go.mod"; echo; echo "replace k8s.io/kubernetes => $src"; } >"$modfile"
  cp "$here/gomod/$1/go.sum" "${modfile%.mod}.sum"
  printf '%s\n' "-modfile=$modfile"
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
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags" loopback-endpoints-1
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build helm helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$(pin helm helm.sh/helm/v3) -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

echo "$bin"
