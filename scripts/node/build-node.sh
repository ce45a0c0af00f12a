#!/usr/bin/env bash
# Builds the parts of a real single-node cluster (`make node`) from Go modules into .tools/bin, beside the
# control plane that scripts/cluster/build-cluster.sh builds:
#   kubelet, kube-proxy                         k8s.io/kubernetes (the control plane's version and replaces)
#   containerd, containerd-shim-runc-v2, ctr    github.com/containerd/containerd/v2
#   coredns                                     github.com/coredns/coredns with the plugin list below
#   metrics-server                              sigs.k8s.io/metrics-server
#   pause                                       a sandbox process written here (scripts/node/pause/main.go)
# runc and the CNI plugins come from Debian (scripts/node/node-deps.sh). Why from source: the project
# builds every Kubernetes part itself at pinned versions, so a node matches the control plane exactly.
# Each part is built once per version into ${XDG_CACHE_HOME:-$HOME/.cache}/synapse-workers-tools/<name>-<version>
# (same cache and stamp rules as build-cluster.sh), then copied into .tools/bin. Warm: seconds.
# Cold on 2 cores: containerd ~2 min, CoreDNS ~5 min, metrics-server ~3 min, kubelet + kube-proxy ~2 min on
# top of the control plane's Go build cache (~10 min without it).
#
# Usage: scripts/node/build-node.sh             build what is missing, copy into .tools/bin
#        FORCE_REBUILD=1 scripts/node/build-node.sh
set -euo pipefail

K8S_VERSION=v1.37.2            # must match scripts/cluster/build-cluster.sh
CONTAINERD_VERSION=v2.4.2      # github.com/containerd/containerd/v2
COREDNS_VERSION=v1.15.0        # github.com/coredns/coredns
METRICS_SERVER_VERSION=v0.8.0  # sigs.k8s.io/metrics-server
RECIPE=1                       # bump when a recipe below changes, to invalidate the cache

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRIPT_DIR="$REPO_ROOT/scripts/node"
TOOLS_BIN="$REPO_ROOT/.tools/bin"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/synapse-workers-tools"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false

die() { echo "build-node: $*" >&2; exit 1; }
command -v go >/dev/null || die "go is not installed"
mkdir -p "$CACHE_ROOT" "$TOOLS_BIN"
# One build at a time per cache, shared with build-cluster.sh (two Go builds on 2 cores only slow both).
if command -v flock >/dev/null; then
  exec 9>"$CACHE_ROOT/.lock"
  flock 9
fi

STAGING_VERSION="v0.${K8S_VERSION#v1.}"
GO_VERSION=$(go env GOVERSION)
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "build-node: $*"; }
stamp_for() { echo "recipe=$RECIPE go=$GO_VERSION"; }
cached() { # DIR BIN...
  local dir=$1; shift
  [ -z "${FORCE_REBUILD:-}" ] || return 1
  [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$(stamp_for)" ] || return 1
  local b
  for b in "$@"; do [ -x "$dir/bin/$b" ] || return 1; done
}
new_workdir() { local tmp="$CACHE_ROOT/.build-$1-$2"; rm -rf "$tmp"; mkdir -p "$tmp/src" "$tmp/bin"; echo "$tmp"; }
finish() { echo "$(stamp_for)" >"$1/.complete"; rm -rf "$2"; mv "$1" "$2"; }

build_containerd() {
  local final="$CACHE_ROOT/containerd-$CONTAINERD_VERSION" bins=(containerd containerd-shim-runc-v2 ctr)
  if cached "$final" "${bins[@]}"; then log "containerd $CONTAINERD_VERSION: cached"; return; fi
  local t0 tmp pkg=github.com/containerd/containerd/v2
  t0=$(now); tmp=$(new_workdir containerd "$CONTAINERD_VERSION")
  cat >"$tmp/src/go.mod" <<EOF
module synapse-workers.local/containerd

go 1.26.0

require $pkg $CONTAINERD_VERSION

tool (
	$pkg/cmd/containerd
	$pkg/cmd/containerd-shim-runc-v2
	$pkg/cmd/ctr
)
EOF
  # Without cgo: no btrfs/devmapper/zfs snapshotters (overlayfs is what the node uses); seccomp profiles
  # are generated in Go and applied by Debian's runc.
  local ldflags="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Revision=module"
  (cd "$tmp/src" && go mod tidy &&
    go build -trimpath -tags "no_btrfs no_devmapper no_zfs no_aufs" -ldflags "$ldflags" -o "$tmp/bin/" \
      $pkg/cmd/containerd $pkg/cmd/containerd-shim-runc-v2 $pkg/cmd/ctr)
  finish "$tmp" "$final"
  log "containerd $CONTAINERD_VERSION: built in $(elapsed "$t0")s"
}

build_coredns() {
  local final="$CACHE_ROOT/coredns-$COREDNS_VERSION"
  if cached "$final" coredns; then log "coredns $COREDNS_VERSION: cached"; return; fi
  local t0 tmp
  t0=$(now); tmp=$(new_workdir coredns "$COREDNS_VERSION")
  # client-go and friends pinned to the cluster's version (they share the Go build cache with it).
  cat >"$tmp/src/go.mod" <<EOF
module synapse-workers.local/coredns

go 1.26.0

require (
	github.com/coredns/coredns $COREDNS_VERSION
	k8s.io/api $STAGING_VERSION
	k8s.io/apimachinery $STAGING_VERSION
	k8s.io/client-go $STAGING_VERSION
)
EOF
  cp "$SCRIPT_DIR/coredns/main.go" "$tmp/src/main.go"
  (cd "$tmp/src" && go mod tidy &&
    go build -trimpath -ldflags "-s -w" -o "$tmp/bin/coredns" .)
  finish "$tmp" "$final"
  log "coredns $COREDNS_VERSION: built in $(elapsed "$t0")s"
}

build_metrics_server() {
  local final="$CACHE_ROOT/metrics-server-$METRICS_SERVER_VERSION"
  if cached "$final" metrics-server; then log "metrics-server $METRICS_SERVER_VERSION: cached"; return; fi
  local t0 tmp
  t0=$(now); tmp=$(new_workdir metrics-server "$METRICS_SERVER_VERSION")
  cat >"$tmp/src/go.mod" <<EOF
module synapse-workers.local/metrics-server

go 1.26.0

require sigs.k8s.io/metrics-server $METRICS_SERVER_VERSION

tool sigs.k8s.io/metrics-server/cmd/metrics-server
EOF
  (cd "$tmp/src" && go mod tidy &&
    go build -trimpath -ldflags "-s -w" -o "$tmp/bin/metrics-server" sigs.k8s.io/metrics-server/cmd/metrics-server)
  finish "$tmp" "$final"
  log "metrics-server $METRICS_SERVER_VERSION: built in $(elapsed "$t0")s"
}

build_pause() {
  local final="$CACHE_ROOT/pause-$RECIPE" sum
  sum=$(sha256sum "$SCRIPT_DIR/pause/main.go" | cut -c1-12)
  final+="-$sum"
  if cached "$final" pause; then log "pause: cached"; return; fi
  local tmp; tmp=$(new_workdir pause "$sum")
  printf 'module synapse-workers.local/pause\n\ngo 1.26.0\n' >"$tmp/src/go.mod"
  cp "$SCRIPT_DIR/pause/main.go" "$tmp/src/main.go"
  (cd "$tmp/src" && go build -trimpath -ldflags "-s -w" -o "$tmp/bin/pause" .)
  finish "$tmp" "$final"
  ln -sfn "$(basename "$final")" "$CACHE_ROOT/pause-current"
  log "pause: built"
}

# kubelet and kube-proxy from the same wrapper as the control plane (its replace block, its version stamps).
build_kube_node() {
  local final="$CACHE_ROOT/kubernetes-node-$K8S_VERSION" bins=(kubelet kube-proxy)
  if cached "$final" "${bins[@]}"; then log "kubelet/kube-proxy $K8S_VERSION: cached"; return; fi
  local t0 tmp gomod staging m
  t0=$(now); tmp=$(new_workdir kubernetes-node "$K8S_VERSION")
  gomod=$(cd "$tmp/src" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
  staging=$(awk '
    /^require[[:space:]]*\(/ { inreq = 1; next }
    inreq && /^\)/ { inreq = 0 }
    inreq && $2 == "v0.0.0" { req[$1] = 1 }
    $2 == "=>" && $3 ~ /^\.\/staging\// { rep[$1] = 1 }
    /^replace[[:space:]]*\(/ { inrep = 1; next }
    inrep && /^\)/ { inrep = 0 }
    inrep && $2 == "=>" && $3 ~ /^\.\/staging\// { rep[$1] = 1 }
    END { for (m in rep) if (m in req) print m }' "$gomod" | sort)
  [ -n "$staging" ] || die "found no staging modules in $gomod"
  {
    printf 'module synapse-workers.local/k8s-node\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
    printf ')\n\ntool (\n\tk8s.io/kubernetes/cmd/kubelet\n\tk8s.io/kubernetes/cmd/kube-proxy\n)\n'
  } >"$tmp/src/go.mod"
  (cd "$tmp/src" && go mod tidy)
  local minor build_date ldflags="-s -w" pkg
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  build_date=$(cd "$tmp/src" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Time": "\(.*\)",*$/\1/p')
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=${build_date:-1970-01-01T00:00:00Z}"
  done
  (cd "$tmp/src" && go build -trimpath -ldflags "$ldflags" -o "$tmp/bin/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  finish "$tmp" "$final"
  log "kubelet/kube-proxy $K8S_VERSION: built in $(elapsed "$t0")s"
}

install_bins() { # DIR
  local f name
  for f in "$1"/bin/*; do
    name=$(basename "$f")
    if ! cmp -s "$f" "$TOOLS_BIN/$name"; then
      cp -f "$f" "$TOOLS_BIN/.$name.tmp"; chmod 0755 "$TOOLS_BIN/.$name.tmp"; mv -f "$TOOLS_BIN/.$name.tmp" "$TOOLS_BIN/$name"
    fi
  done
}

# NODE_BUILD_ONLY="containerd coredns" builds a subset (to order builds around another Go build).
ONLY=${NODE_BUILD_ONLY:-pause containerd coredns metrics-server kube-node}
T0=$(now)
for part in $ONLY; do
  case $part in
    pause) build_pause; install_bins "$CACHE_ROOT/pause-current" ;;
    containerd) build_containerd; install_bins "$CACHE_ROOT/containerd-$CONTAINERD_VERSION" ;;
    coredns) build_coredns; install_bins "$CACHE_ROOT/coredns-$COREDNS_VERSION" ;;
    metrics-server) build_metrics_server; install_bins "$CACHE_ROOT/metrics-server-$METRICS_SERVER_VERSION" ;;
    kube-node) build_kube_node; install_bins "$CACHE_ROOT/kubernetes-node-$K8S_VERSION" ;;
    *) die "unknown part $part" ;;
  esac
done
cat >"$TOOLS_BIN/VERSIONS.node" <<EOF
kubelet, kube-proxy $K8S_VERSION
containerd $CONTAINERD_VERSION
coredns $COREDNS_VERSION
metrics-server $METRICS_SERVER_VERSION
go $GO_VERSION
EOF
log "done in $(elapsed "$T0")s"
