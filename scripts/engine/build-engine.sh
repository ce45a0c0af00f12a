#!/usr/bin/env bash
# Builds the Pulumi engine this project runs, from Go modules served by the Go module proxy, into
# .tools/bin/ (git-ignored):
#
#   pulumi                       the CLI, github.com/pulumi/pulumi/pkg/v3/cmd/pulumi at PULUMI_VERSION
#   pulumi-resource-kubernetes   the Kubernetes resource provider plugin,
#                                github.com/pulumi/pulumi-kubernetes/provider/v4 at K8S_PROVIDER_MODULE_VERSION
#
# Nothing is downloaded except Go modules through GOPROXY (each checked against go.sum / GOSUMDB).
# Built binaries are cached per version in "${XDG_CACHE_HOME:-$HOME/.cache}/synapse-workers-tools/<name>-<version>/"
# and hard-linked (or copied) into .tools/bin, so a second run, or a run from a fresh clone on the same
# machine, takes seconds. Scratch wrapper modules live in a temporary directory under that cache, never in
# the repository.
#
# Usage: scripts/engine/build-engine.sh [--rebuild]
#   --rebuild   ignore the cached binaries and build both again (the Go build cache still helps)
#
# How the engine finds the plugin: with .tools/bin on PATH (and PULUMI_IGNORE_AMBIENT_PLUGINS unset), the
# engine takes `pulumi-resource-kubernetes` from PATH whatever version the Python SDK asks for (4.34.2), warning
# "resource plugin kubernetes is expected to have version >=4.34.2, but has <K8S_PROVIDER_PLUGIN_VERSION>".
# Set PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true so that a plugin not found is an error, not a download.
#
# The Python language host (pulumi-language-python) is NOT built: its Go module is not served by the proxy
# here. Automation API inline programs do not need it (the Python process serves the language runtime and
# the CLI is started with --client); `pulumi up`/`preview` on a Pulumi.yaml project does.
set -euo pipefail

# ---- pinned versions ---------------------------------------------------------------------------------
# The CLI: pkg/v3 and sdk/v3 at one version.
PULUMI_VERSION=v3.274.1
# The Kubernetes provider: the proxy serves no tagged version of the provider/v4 module, only this
# pseudo-version (commit f47bc2d6f199, 2026-01-15, one day before pulumi-kubernetes v4.25.0 was released;
# its schema has exactly the resource types of the 4.25.0 SDK).
K8S_PROVIDER_MODULE_VERSION=v4.0.0-20260115033456-f47bc2d6f199
# The version the plugin reports (ldflags) and writes into its embedded schema. Semver, no leading "v".
K8S_PROVIDER_PLUGIN_VERSION=4.25.0-dev.20260115033456+f47bc2d6f199
# The provider builds with the dependency versions its own go.mod pins (pulumi pkg/sdk v3.215.0: it does not
# compile against pkg/v3 v3.274.1), except that the go.mod replaces its Go SDK with ../sdk, which is not in the
# module zip: that replace is dropped, so the released SDK version the go.mod requires (v4.24.0) is used.
K8S_PROVIDER_SDK_MODULE=github.com/pulumi/pulumi-kubernetes/sdk/v4

# Bump when the way the binaries are built changes (flags, patches): cached builds of another recipe are redone.
RECIPE=1

PULUMI_PKG_MODULE=github.com/pulumi/pulumi/pkg/v3
PULUMI_SDK_MODULE=github.com/pulumi/pulumi/sdk/v3
K8S_PROVIDER_MODULE=github.com/pulumi/pulumi-kubernetes/provider/v4

# ---- setup -------------------------------------------------------------------------------------------
REBUILD=0
for arg in "$@"; do
  case "$arg" in
    --rebuild) REBUILD=1 ;;
    -h | --help) awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "build-engine: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

die() { echo "build-engine: ERROR: $*" >&2; exit 1; }
log() { echo "build-engine: $*"; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN_DIR="$REPO_ROOT/.tools/bin"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/synapse-workers-tools"

command -v go >/dev/null || die "go is not on PATH; install Go >= 1.26.6 (the pulumi $PULUMI_VERSION module needs it)"

# Use the installed toolchain; never fetch another one. Build static binaries without version-control stamps.
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"
GOPROXY_NOW="$(go env GOPROXY)"
[[ "$GOPROXY_NOW" != "off" ]] || die "GOPROXY=off: the Go modules can't be fetched (and nothing is cached for them)"

mkdir -p "$BIN_DIR" "$CACHE_ROOT"
# One run at a time per cache (a second run waits, then finds the binaries cached).
if command -v flock >/dev/null; then
  exec 9>"$CACHE_ROOT/.lock"
  flock -n 9 || { log "waiting for another build-engine.sh run to finish ..."; flock 9; }
fi
SCRATCH="$(mktemp -d "$CACHE_ROOT/.scratch.XXXXXX")"
cleanup() { chmod -R u+w "$SCRATCH" 2>/dev/null || true; rm -rf "$SCRATCH"; }
trap cleanup EXIT

# require_go VERSION WHAT: fails if the local Go toolchain is older than VERSION.
require_go() {
  local need="$1" have
  have="$(go env GOVERSION)"; have="${have#go}"
  if [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]]; then
    die "Go $have is too old: $2 needs Go >= $need (GOTOOLCHAIN=local: no toolchain is downloaded)"
  fi
}

# retry WHAT CMD...: runs CMD up to 3 times. The module proxy here has answered "403 This module version is not
# available" for a version that it served a few minutes later, so a refusal is tried again before giving up.
retry() {
  local what="$1" attempt
  shift
  for attempt in 1 2 3; do
    if "$@"; then return 0; fi
    [[ $attempt == 3 ]] || { log "  $what failed (attempt $attempt of 3); trying again in 30s"; sleep 30; }
  done
  die "$what failed 3 times (GOPROXY=$GOPROXY_NOW); see the go errors above"
}

# module_dir MODULE VERSION: downloads MODULE@VERSION through GOPROXY into the module cache; prints its Dir.
module_dir() {
  local json dir attempt
  for attempt in 1 2 3; do
    json="$(go mod download -json "$1@$2" 2>&1)" && break
    [[ $attempt == 3 ]] && die "could not download $1@$2 through GOPROXY=$GOPROXY_NOW:"$'\n'"$json"
    log "  downloading $1@$2 failed (attempt $attempt of 3); trying again in 30s" >&2
    sleep 30
  done
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
  [[ -n "$dir" && -f "$dir/go.mod" ]] || die "go mod download gave no module directory for $1@$2:"$'\n'"$json"
  printf '%s\n' "$dir"
}

# gomod_json GO_MOD PYTHON: runs PYTHON with `m` bound to the go.mod parsed by `go mod edit -json`.
gomod_json() {
  go mod edit -json "$1" | python3 -c 'import json, sys; m = json.load(sys.stdin)'$'\n'"$2" \
    || die "could not read $1"
}

# install_from_cache NAME CACHE_DIR: puts CACHE_DIR/NAME into .tools/bin (hard link, else copy).
install_from_cache() {
  local src="$2/$1" dst="$BIN_DIR/$1"
  rm -f "$dst.tmp"
  [[ "$dst" -ef "$src" ]] && return 0 # already this very file
  ln "$src" "$dst.tmp" 2>/dev/null || cp "$src" "$dst.tmp"
  chmod 0755 "$dst.tmp"
  mv -f "$dst.tmp" "$dst"
}

# cache_dir NAME VERSION: where that build is cached; is_cached NAME VERSION: true if it holds a finished build.
cache_dir() { printf '%s/%s-%s\n' "$CACHE_ROOT" "$1" "$2"; }
is_cached() {
  local dir
  dir="$(cache_dir "$1" "$2")"
  [[ "$REBUILD" == 0 && -x "$dir/$1" ]] && grep -qx "recipe=$RECIPE" "$dir/.complete" 2>/dev/null
}

# commit_to_cache NAME VERSION BUILT_BINARY: moves the binary into its cache directory atomically.
commit_to_cache() {
  local name="$1" version="$2" built="$3" dir staging
  dir="$(cache_dir "$name" "$version")"
  staging="$(mktemp -d "$CACHE_ROOT/.staging.XXXXXX")"
  mv "$built" "$staging/$name"
  {
    echo "name=$name"
    echo "recipe=$RECIPE"
    echo "version=$version"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "go=$(go env GOVERSION)"
  } >"$staging/.complete"
  rm -rf "$dir"
  mv "$staging" "$dir"
}

# ---- the CLI -----------------------------------------------------------------------------------------
build_pulumi() {
  local work="$SCRATCH/pulumi" pkg_dir go_directive replaces t0
  t0=$SECONDS
  log "building pulumi $PULUMI_VERSION (cold Go caches: ~5 min on 2 cores) ..."
  pkg_dir="$(module_dir "$PULUMI_PKG_MODULE" "$PULUMI_VERSION")"
  module_dir "$PULUMI_SDK_MODULE" "$PULUMI_VERSION" >/dev/null

  go_directive="$(gomod_json "$pkg_dir/go.mod" 'print(m["Go"])')"
  [[ -n "$go_directive" ]] || die "no go directive in $pkg_dir/go.mod"
  require_go "$go_directive" "$PULUMI_PKG_MODULE@$PULUMI_VERSION"

  # pkg/v3's go.mod replaces sdk/v3 with ../sdk (a path inside pulumi's own repository: dropped, the wrapper
  # requires sdk/v3 at the same version instead) and carries versioned replaces (module => module version)
  # that only take effect in the main module: copy those into the wrapper.
  replaces="$(gomod_json "$pkg_dir/go.mod" '
for r in m.get("Replace") or []:
    if r["New"].get("Version"):
        old = r["Old"]["Path"] + ("@" + r["Old"]["Version"] if r["Old"].get("Version") else "")
        print("-replace=%s=%s@%s" % (old, r["New"]["Path"], r["New"]["Version"]))')"
  local n_replaces
  n_replaces="$(grep -c . <<<"$replaces" || true)"
  [[ "$n_replaces" -ge 1 ]] || die "expected a versioned replace directive in $pkg_dir/go.mod; found none (did pulumi change its go.mod?)"

  mkdir -p "$work"
  cat >"$work/go.mod" <<EOF
module synapse-workers.local/engine/pulumi

go $go_directive

require (
	$PULUMI_PKG_MODULE $PULUMI_VERSION
	$PULUMI_SDK_MODULE $PULUMI_VERSION
)
EOF
  # A tools-style file so `go mod tidy` keeps the CLI's whole import graph.
  cat >"$work/tools.go" <<EOF
//go:build tools

package tools

import _ "$PULUMI_PKG_MODULE/cmd/pulumi"
EOF
  # shellcheck disable=SC2086 # one -replace=... flag per line
  (cd "$work" && go mod edit $replaces) || die "could not add the replace directives to the wrapper go.mod"
  log "  wrapper replaces: $(tr '\n' ' ' <<<"$replaces")"

  retry "go mod tidy in the pulumi wrapper module ($work)" bash -c "cd '$work' && go mod tidy"
  local got
  got="$(cd "$work" && go list -m -f '{{.Version}}' "$PULUMI_PKG_MODULE" "$PULUMI_SDK_MODULE" | sort -u)"
  [[ "$got" == "$PULUMI_VERSION" ]] || die "MVS moved pulumi pkg/sdk off $PULUMI_VERSION: $got"

  (cd "$work" && go build -trimpath \
    -ldflags "-s -w -X $PULUMI_SDK_MODULE/go/common/version.Version=$PULUMI_VERSION" \
    -o "$work/out/pulumi" "$PULUMI_PKG_MODULE/cmd/pulumi") || die "go build of the pulumi CLI failed"

  local reported
  reported="$(PULUMI_HOME="$SCRATCH/pulumi-home" PULUMI_SKIP_UPDATE_CHECK=true "$work/out/pulumi" version)" || die "the built pulumi does not run"
  [[ "$reported" == "$PULUMI_VERSION" ]] || die "built pulumi reports version '$reported', expected $PULUMI_VERSION"

  commit_to_cache pulumi "$PULUMI_VERSION" "$work/out/pulumi"
  log "built pulumi $PULUMI_VERSION in $((SECONDS - t0))s"
}

# ---- the Kubernetes provider -------------------------------------------------------------------------
build_k8s_provider() {
  local src="$SCRATCH/pulumi-resource-kubernetes" mod_dir sdk_version t0
  t0=$SECONDS
  log "building pulumi-resource-kubernetes $K8S_PROVIDER_PLUGIN_VERSION ($K8S_PROVIDER_MODULE@$K8S_PROVIDER_MODULE_VERSION; cold Go caches: ~9 min on 2 cores) ..."
  mod_dir="$(module_dir "$K8S_PROVIDER_MODULE" "$K8S_PROVIDER_MODULE_VERSION")"
  [[ -f "$mod_dir/cmd/pulumi-resource-kubernetes/schema.json" ]] \
    || die "$K8S_PROVIDER_MODULE@$K8S_PROVIDER_MODULE_VERSION has no cmd/pulumi-resource-kubernetes/schema.json"

  # The module cache is read-only: work on a writable copy.
  mkdir -p "$src"
  cp -R "$mod_dir/." "$src/"
  chmod -R u+w "$src"

  require_go "$(gomod_json "$src/go.mod" 'print(m["Go"])')" "$K8S_PROVIDER_MODULE@$K8S_PROVIDER_MODULE_VERSION"

  # Drop the replace of its Go SDK by ../sdk (not in the module zip) and use the released version the go.mod
  # requires. go.sum then lacks that SDK's hashes: -mod=mod lets go add them (checked against GOSUMDB).
  sdk_version="$(gomod_json "$src/go.mod" "print(*[r['Version'] for r in m['Require'] if r['Path'] == '$K8S_PROVIDER_SDK_MODULE'])")"
  [[ -n "$sdk_version" ]] || die "$K8S_PROVIDER_MODULE's go.mod does not require $K8S_PROVIDER_SDK_MODULE"
  (cd "$src" && go mod edit -dropreplace="$K8S_PROVIDER_SDK_MODULE") || die "could not edit the provider's go.mod"
  local local_replaces
  local_replaces="$(gomod_json "$src/go.mod" 'print(*[r["Old"]["Path"] + " => " + r["New"]["Path"] for r in m.get("Replace") or [] if not r["New"].get("Version")])')"
  [[ -z "$local_replaces" ]] || die "the provider's go.mod still has a local-path replace: $local_replaces"
  log "  provider builds against $K8S_PROVIDER_SDK_MODULE@$sdk_version and pulumi $(gomod_json "$src/go.mod" \
    "print(*[r['Version'] for r in m['Require'] if r['Path'] == '$PULUMI_PKG_MODULE'])")"
  retry "downloading the provider's dependencies" bash -c "cd '$src' && go mod download"

  # cmd/pulumi-resource-kubernetes/main.go carries `//go:generate go run ./generate.go`, which writes the
  # schema-embed.json and terraform-mapping-embed.json that main.go embeds (the schema stamped with VERSION).
  (cd "$src/cmd/pulumi-resource-kubernetes" && VERSION="$K8S_PROVIDER_PLUGIN_VERSION" go generate .) \
    || die "go generate (schema-embed.json) failed for the provider"
  [[ -s "$src/cmd/pulumi-resource-kubernetes/schema-embed.json" ]] || die "go generate wrote no schema-embed.json"

  (cd "$src" && go build -trimpath \
    -ldflags "-s -w -X $K8S_PROVIDER_MODULE/pkg/version.Version=$K8S_PROVIDER_PLUGIN_VERSION" \
    -o "$src/out/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes) \
    || die "go build of pulumi-resource-kubernetes failed"

  commit_to_cache pulumi-resource-kubernetes "$K8S_PROVIDER_PLUGIN_VERSION" "$src/out/pulumi-resource-kubernetes"
  log "built pulumi-resource-kubernetes $K8S_PROVIDER_PLUGIN_VERSION in $((SECONDS - t0))s"
}

# ---- main --------------------------------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is needed to read go.mod files"
T_START=$SECONDS

if is_cached pulumi "$PULUMI_VERSION"; then
  log "cached pulumi $PULUMI_VERSION ($(cache_dir pulumi "$PULUMI_VERSION"))"
else
  build_pulumi
fi
install_from_cache pulumi "$(cache_dir pulumi "$PULUMI_VERSION")"

if is_cached pulumi-resource-kubernetes "$K8S_PROVIDER_PLUGIN_VERSION"; then
  log "cached pulumi-resource-kubernetes $K8S_PROVIDER_PLUGIN_VERSION ($(cache_dir pulumi-resource-kubernetes "$K8S_PROVIDER_PLUGIN_VERSION"))"
else
  build_k8s_provider
fi
install_from_cache pulumi-resource-kubernetes "$(cache_dir pulumi-resource-kubernetes "$K8S_PROVIDER_PLUGIN_VERSION")"

# A last check of what is in .tools/bin: the CLI runs and reports its version; the CLI can start the plugin
# and get its schema, stamped with the plugin's version (offline, in a throwaway PULUMI_HOME).
reported="$(PULUMI_HOME="$SCRATCH/pulumi-home" PULUMI_SKIP_UPDATE_CHECK=true "$BIN_DIR/pulumi" version)" || die "$BIN_DIR/pulumi does not run"
[[ "$reported" == "$PULUMI_VERSION" ]] || die "$BIN_DIR/pulumi reports '$reported', expected $PULUMI_VERSION"
schema_version="$(PULUMI_HOME="$SCRATCH/pulumi-home" PULUMI_SKIP_UPDATE_CHECK=true \
  "$BIN_DIR/pulumi" package get-schema "$BIN_DIR/pulumi-resource-kubernetes" | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')" \
  || die "$BIN_DIR/pulumi could not get the schema of $BIN_DIR/pulumi-resource-kubernetes"
[[ "$schema_version" == "$K8S_PROVIDER_PLUGIN_VERSION" ]] \
  || die "$BIN_DIR/pulumi-resource-kubernetes serves a schema of version '$schema_version', expected $K8S_PROVIDER_PLUGIN_VERSION"

log "ready in $((SECONDS - T_START))s: $BIN_DIR/pulumi ($PULUMI_VERSION), $BIN_DIR/pulumi-resource-kubernetes ($K8S_PROVIDER_PLUGIN_VERSION)"
