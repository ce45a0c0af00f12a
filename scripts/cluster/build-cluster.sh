#!/usr/bin/env bash
# Builds a local Kubernetes control plane from Go modules (served by the Go module proxy) into .tools/bin:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl   (k8s.io/kubernetes)
#   etcd                                                               (go.etcd.io/etcd/server/v3 etcdmain)
#   kwok                                                               (sigs.k8s.io/kwok cmd/kwok)
# Each component is built once per version into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/synapse-workers-tools/<name>-<version>/bin
# from a scratch wrapper module generated there (nothing is written into the repo except .tools/bin),
# then copied into .tools/bin. A warm run (also from a fresh clone on the same machine) takes seconds.
# A cold run (empty Go module and build caches) on 2 cores took 11.5 minutes, with another build running
# alongside: etcd 1.3, kwok 3, kubernetes 7.3 (its 4 binaries share one `go build`); needs several GiB of Go caches.
#
# Usage: scripts/cluster/build-cluster.sh            build what is missing, copy into .tools/bin
#        FORCE_REBUILD=1 scripts/cluster/build-cluster.sh   ignore the per-version cache
set -euo pipefail

K8S_VERSION=v1.37.2   # k8s.io/kubernetes; its staging modules (k8s.io/api, ...) are pinned to v0.<minor>.<patch>
ETCD_VERSION=v3.7.0   # go.etcd.io/etcd/server/v3, the version k8s.io/kubernetes v1.37.2 requires
KWOK_VERSION=v0.8.0   # sigs.k8s.io/kwok
RECIPE=1              # bump when this script's build recipe changes, to invalidate the cache

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS_BIN="$REPO_ROOT/.tools/bin"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/synapse-workers-tools"

# Static binaries, no toolchain download, no go.work from a parent directory, no VCS stamping.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false

command -v go >/dev/null || { echo "build-cluster: go is not installed" >&2; exit 1; }
mkdir -p "$CACHE_ROOT" "$TOOLS_BIN"

# One build at a time per cache (two concurrent runs would only duplicate a 10-minute build).
if command -v flock >/dev/null; then
  exec 9>"$CACHE_ROOT/.lock"
  flock 9
fi

STAGING_VERSION="v0.${K8S_VERSION#v1.}"
GO_VERSION=$(go env GOVERSION)
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "build-cluster: $*"; }

# A cache entry <name>-<version>/ is complete when its .complete stamp names this recipe and Go version.
stamp_for() { echo "recipe=$RECIPE go=$GO_VERSION"; }
cached() { # DIR BIN... : true when DIR holds a finished build of this recipe with every BIN
  local dir=$1; shift
  [ -z "${FORCE_REBUILD:-}" ] || return 1
  [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$(stamp_for)" ] || return 1
  local b
  for b in "$@"; do [ -x "$dir/bin/$b" ] || return 1; done
}

# new_workdir NAME VERSION -> a fresh scratch directory next to the cache entry; moved into place on success
new_workdir() {
  local tmp="$CACHE_ROOT/.build-$1-$2"
  rm -rf "$tmp"
  mkdir -p "$tmp/src" "$tmp/bin"
  echo "$tmp"
}
finish() { # TMP FINAL
  echo "$(stamp_for)" >"$1/.complete"
  rm -rf "$2"
  mv "$1" "$2"
}

build_kubernetes() {
  local final="$CACHE_ROOT/kubernetes-$K8S_VERSION"
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  if cached "$final" "${bins[@]}"; then log "kubernetes $K8S_VERSION: cached"; return; fi
  local t0 tmp gomod
  t0=$(now)
  tmp=$(new_workdir kubernetes "$K8S_VERSION")
  log "kubernetes $K8S_VERSION: generating wrapper module in $tmp/src"
  # k8s.io/kubernetes's go.mod requires its staging modules at v0.0.0 and replaces them with ./staging/...;
  # those replaces do not apply to a dependency, so the wrapper replaces each with its published release.
  gomod=$(cd "$tmp/src" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$gomod" ] || { echo "build-cluster: could not download k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
  local staging
  staging=$(awk '
    /^require[[:space:]]*\(/ { inreq = 1; next }
    inreq && /^\)/ { inreq = 0 }
    inreq && $2 == "v0.0.0" { req[$1] = 1 }
    $2 == "=>" && $3 ~ /^\.\/staging\// { rep[$1] = 1 }
    /^replace[[:space:]]*\(/ { inrep = 1; next }
    inrep && /^\)/ { inrep = 0 }
    inrep && $2 == "=>" && $3 ~ /^\.\/staging\// { rep[$1] = 1 }
    END { for (m in rep) if (m in req) print m }' "$gomod" | sort)
  [ -n "$staging" ] || { echo "build-cluster: found no staging modules in $gomod" >&2; exit 1; }
  {
    echo "module synapse-workers.local/k8s-tools"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    local m
    for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
    echo ")"
    echo
    echo "tool ("
    echo "	k8s.io/kubernetes/cmd/kube-apiserver"
    echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
    echo "	k8s.io/kubernetes/cmd/kube-scheduler"
    echo "	k8s.io/kubernetes/cmd/kubectl"
    echo ")"
  } >"$tmp/src/go.mod"
  (cd "$tmp/src" && go mod tidy)
  log "kubernetes $K8S_VERSION: modules ready after $(elapsed "$t0")s; compiling (the long part)"
  # What hack/lib/version.sh stamps, so that /version and `kubectl version` report $K8S_VERSION.
  local minor build_date ldflags="-s -w" pkg
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  build_date=$(cd "$tmp/src" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Time": "\(.*\)",*$/\1/p')
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=${build_date:-1970-01-01T00:00:00Z}"
  done
  (cd "$tmp/src" && go build -trimpath -ldflags "$ldflags" -o "$tmp/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  finish "$tmp" "$final"
  log "kubernetes $K8S_VERSION: built in $(elapsed "$t0")s"
}

build_etcd() {
  local final="$CACHE_ROOT/etcd-$ETCD_VERSION"
  if cached "$final" etcd; then log "etcd $ETCD_VERSION: cached"; return; fi
  local t0 tmp
  t0=$(now)
  tmp=$(new_workdir etcd "$ETCD_VERSION")
  log "etcd $ETCD_VERSION: generating wrapper module in $tmp/src"
  cat >"$tmp/src/go.mod" <<EOF
module synapse-workers.local/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
  cat >"$tmp/src/main.go" <<'EOF'
// etcd, as etcd's own main package runs it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "$tmp/src" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$tmp/bin/etcd" .)
  finish "$tmp" "$final"
  log "etcd $ETCD_VERSION: built in $(elapsed "$t0")s"
}

build_kwok() {
  local final="$CACHE_ROOT/kwok-$KWOK_VERSION"
  if cached "$final" kwok; then log "kwok $KWOK_VERSION: cached"; return; fi
  local t0 tmp
  t0=$(now)
  tmp=$(new_workdir kwok "$KWOK_VERSION")
  log "kwok $KWOK_VERSION: generating wrapper module in $tmp/src"
  cat >"$tmp/src/go.mod" <<EOF
module synapse-workers.local/kwok

go 1.26.0

require sigs.k8s.io/kwok $KWOK_VERSION

tool sigs.k8s.io/kwok/cmd/kwok
EOF
  (cd "$tmp/src" && go mod tidy &&
    go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
      -o "$tmp/bin/kwok" sigs.k8s.io/kwok/cmd/kwok)
  finish "$tmp" "$final"
  log "kwok $KWOK_VERSION: built in $(elapsed "$t0")s"
}

install_bins() { # DIR : copy DIR/bin/* into .tools/bin when they differ
  local f name
  for f in "$1"/bin/*; do
    name=$(basename "$f")
    if ! cmp -s "$f" "$TOOLS_BIN/$name"; then
      cp -f "$f" "$TOOLS_BIN/.$name.tmp"
      chmod 0755 "$TOOLS_BIN/.$name.tmp"
      mv -f "$TOOLS_BIN/.$name.tmp" "$TOOLS_BIN/$name"
    fi
  done
}

T0=$(now)
build_etcd
build_kwok
build_kubernetes
install_bins "$CACHE_ROOT/etcd-$ETCD_VERSION"
install_bins "$CACHE_ROOT/kwok-$KWOK_VERSION"
install_bins "$CACHE_ROOT/kubernetes-$K8S_VERSION"
cat >"$TOOLS_BIN/VERSIONS" <<EOF
kubernetes $K8S_VERSION (staging modules $STAGING_VERSION)
etcd $ETCD_VERSION
kwok $KWOK_VERSION
go $GO_VERSION
EOF
log "done in $(elapsed "$T0")s: $(ls "$TOOLS_BIN" | grep -v VERSIONS | tr '\n' ' ')in $TOOLS_BIN"
