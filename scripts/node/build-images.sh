#!/usr/bin/env bash
# Builds the container images the node runs, without a registry, tagged exactly as the stacks name them so
# the rendered manifests deploy unchanged (a non-:latest tag is IfNotPresent: the kubelet never pulls):
#   ghcr.io/element-hq/synapse:v1.163.2       Debian trixie minbase (python3.13, as the official image) +
#                                             a venv at /usr/local with matrix-synapse[redis] and psycopg2
#   docker.io/library/haproxy:3.2             Debian trixie's haproxy (3.0), upstream paths and user 99
#   ghcr.io/cloudnative-pg/pgbouncer:1.24.1   Debian trixie's pgbouncer (1.24.1), upstream paths and user
#   synapse-workers.local/pause:1             the sandbox image: scripts/node/pause (built by build-node.sh)
# Root filesystems come from debootstrap (the Debian mirror apt uses) and are packed by pack-image.py into
# one-layer `docker save` tarballs. Each tarball is cached in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/synapse-workers-tools/images/<name>-<version>-<recipe hash>.tar
# (the hash covers the image's recipe below and pack-image.py, so a changed recipe rebuilds that image), and listed for node-up.sh
# in .tools/node-images/list. The README ("A real node") says where these differ from the upstream images.
#
# Usage: scripts/node/build-images.sh        (root: debootstrap and chroot need it)
#        FORCE_REBUILD=1 scripts/node/build-images.sh
set -euo pipefail

SYNAPSE_VERSION=1.163.2
SUITE=trixie
MIRROR=http://deb.debian.org/debian   # the mirror apt already uses on this machine (see /etc/apt/sources.list.d)

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRIPT_DIR="$REPO_ROOT/scripts/node"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/synapse-workers-tools"
IMAGES="$CACHE_ROOT/images"
LIST_DIR="$REPO_ROOT/.tools/node-images"

die() { echo "build-images: $*" >&2; exit 1; }
log() { echo "build-images: $*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap is missing: run scripts/node/node-deps.sh"
mkdir -p "$IMAGES" "$LIST_DIR"
exec 8>"$IMAGES/.lock"
flock 8

# Scratch root filesystems live under the cache, never under /tmp's tmpfs, and are removed on any exit.
WORK=$(mktemp -d "$IMAGES/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# rootfs DIR PACKAGES... : debootstrap minbase, then the packages through the chroot's own apt with service
# starts forbidden (policy-rc.d exits 101, so no maintainer script starts a daemon on this host), then the
# package lists, caches, docs and the policy file removed again.
rootfs() {
  local dir=$1; shift
  debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >"$dir.debootstrap.log" 2>&1 ||
    { tail -n 20 "$dir.debootstrap.log" >&2; die "debootstrap $SUITE failed (log above)"; }
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 0755 "$dir/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  if [ "$#" -gt 0 ]; then
    chroot "$dir" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "$@" >"$dir.apt.log" 2>&1 ||
      { tail -n 20 "$dir.apt.log" >&2; die "apt-get install $* in the $SUITE chroot failed"; }
  fi
}
slim() { # DIR
  local dir=$1
  chroot "$dir" apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/usr/share/doc/* "$dir"/usr/share/man/* \
    "$dir"/usr/share/info/* "$dir"/usr/share/locale/* "$dir"/var/log/* "$dir"/tmp/* "$dir"/root/.cache \
    "$dir/usr/sbin/policy-rc.d"
  : >"$dir/etc/resolv.conf"   # the runtime mounts the pod's own
}
add_user() { # DIR NAME UID GID HOME
  grep -q "^$2:" "$1/etc/group" || echo "$2:x:$4:" >>"$1/etc/group"
  grep -q "^$2:" "$1/etc/passwd" || echo "$2:x:$3:$4::$5:/usr/sbin/nologin" >>"$1/etc/passwd"
}

build() { # NAME VERSION TAG : build_NAME DIR fills the root filesystem, pack_args_NAME prints pack options
  local name=$1 version=$2 tag=$3 out t0 recipe
  # The recipe hash covers this image's own functions, the helpers they use, the suite and the packer, so
  # changing one image's recipe rebuilds only that image.
  recipe=$({ declare -f "build_$name" "pack_args_$name" rootfs slim add_user static_rootfs
    echo "$SUITE $MIRROR"; cat "$SCRIPT_DIR/pack-image.py"
    if declare -F "inputs_$name" >/dev/null; then "inputs_$name"; fi; } | sha256sum | cut -c1-12)
  out="$IMAGES/$name-$version-$recipe.tar"
  if [ -z "${FORCE_REBUILD:-}" ] && [ -f "$out" ]; then
    log "$tag: cached ($(du -m "$out" | cut -f1) MiB)"
  else
    t0=$(now)
    local dir="$WORK/$name"
    mkdir -p "$dir"
    "build_$name" "$dir"
    local -a args
    mapfile -t args < <("pack_args_$name")
    python3 "$SCRIPT_DIR/pack-image.py" "$dir" "$out" --tag "$tag" "${args[@]}"
    rm -rf "$dir"
    # Tarballs of this image from older recipes are never used again.
    find "$IMAGES" -maxdepth 1 -name "$name-$version-*.tar" ! -path "$out" -delete
    log "$tag: built in $(elapsed "$t0")s, $(du -m "$out" | cut -f1) MiB"
  fi
  { grep -v "^$tag " "$LIST_DIR/list.new" || true; echo "$tag $out"; } >"$LIST_DIR/list.tmp"
  mv "$LIST_DIR/list.tmp" "$LIST_DIR/list.new"
}

# --- sandbox (pause) ---------------------------------------------------------------------------------------
build_pause() {
  [ -x "$REPO_ROOT/.tools/bin/pause" ] || die ".tools/bin/pause is missing: run scripts/node/build-node.sh"
  install -m 0755 "$REPO_ROOT/.tools/bin/pause" "$1/pause"
}
inputs_pause() { sha256sum "$REPO_ROOT/.tools/bin/pause"; }
pack_args_pause() { printf '%s\n' --entrypoint '["/pause"]' --user 65535:65535; }

# --- CoreDNS and metrics-server: the static binaries from build-node.sh and a passwd file, nothing else -----
static_rootfs() { # DIR BINARY
  [ -x "$REPO_ROOT/.tools/bin/$2" ] || die ".tools/bin/$2 is missing: run scripts/node/build-node.sh"
  mkdir -p "$1/etc" "$1/tmp"
  chmod 1777 "$1/tmp"
  install -m 0755 "$REPO_ROOT/.tools/bin/$2" "$1/$2"
  printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
}
build_coredns() { static_rootfs "$1" coredns; }
inputs_coredns() { sha256sum "$REPO_ROOT/.tools/bin/coredns"; }   # a rebuilt binary is a new image
pack_args_coredns() { printf '%s\n' --entrypoint '["/coredns"]' --user 65534:65534; }
build_metrics_server() { static_rootfs "$1" metrics-server; }
inputs_metrics_server() { sha256sum "$REPO_ROOT/.tools/bin/metrics-server"; }
pack_args_metrics_server() { printf '%s\n' --entrypoint '["/metrics-server"]' --user 65534:65534; }

# --- Synapse -----------------------------------------------------------------------------------------------
# Upstream: python:3.13-slim-trixie, Synapse and its deps installed into /usr/local, runtime libraries
# libpq5 libjpeg62-turbo libwebp7 xmlsec1 libjemalloc2 curl gosu, /start.py as entrypoint, run as root
# and dropping to UID 991 in start.py. Here: Debian's python3 (3.13) with a venv at /usr/local, so
# `python` and Synapse's site-packages sit on the same paths; no start.py (the stack sets the command and
# runs as 991), no gosu, no jemalloc/xmlsec; a synapse user 991 exists for tools that look names up.
build_synapse() {
  local dir=$1
  rootfs "$dir" python3 python3-venv ca-certificates libpq5 libjpeg62-turbo libwebp7 curl
  cp /etc/ssl/certs/ca-certificates.crt "$dir/tmp/host-ca.crt"
  chroot "$dir" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin python3 -m venv /usr/local
  # env -i: the host's REQUESTS_CA_BUNDLE and friends would override pip's certificate setting.
  chroot "$dir" env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PIP_CERT=/tmp/host-ca.crt \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    /usr/local/bin/pip install -q "matrix-synapse[redis]==$SYNAPSE_VERSION" psycopg2-binary \
    >"$dir.pip.log" 2>&1 || { tail -n 20 "$dir.pip.log" >&2; die "pip install in the Synapse chroot failed"; }
  chroot "$dir" /usr/local/bin/python -c "import synapse, psycopg2, txredisapi; print(synapse.__version__)" |
    grep -qx "$SYNAPSE_VERSION" || die "the Synapse chroot does not import synapse $SYNAPSE_VERSION"
  add_user "$dir" synapse 991 991 /data
  mkdir -p "$dir/data"
  chown 991:991 "$dir/data"
  slim "$dir"
}
pack_args_synapse() {
  printf '%s\n' --cmd '["python", "-m", "synapse.app.homeserver"]' --workdir / \
    --env LANG=C.UTF-8 --env PYTHONDONTWRITEBYTECODE=1 --port 8008/tcp --port 8009/tcp --port 8448/tcp
}

# --- HAProxy -----------------------------------------------------------------------------------------------
# Upstream: haproxy built from source into /usr/local/sbin, config /usr/local/etc/haproxy/haproxy.cfg,
# user haproxy 99:99 with home /var/lib/haproxy (the workdir), STOPSIGNAL SIGUSR1, and an entrypoint that
# adds `-W -db` (master-worker, foreground). Here: Debian's package, linked into /usr/local/sbin, the same
# paths, user and stop signal, and `-W -db` written into the command.
build_haproxy() {
  local dir=$1
  rootfs "$dir" haproxy ca-certificates
  sed -i '/^haproxy:/d' "$dir/etc/passwd" "$dir/etc/group" "$dir/etc/shadow" "$dir/etc/gshadow" 2>/dev/null || true
  add_user "$dir" haproxy 99 99 /var/lib/haproxy
  mkdir -p "$dir/var/lib/haproxy" "$dir/usr/local/etc/haproxy" "$dir/usr/local/sbin"
  chown 99:99 "$dir/var/lib/haproxy"
  ln -sf /usr/sbin/haproxy "$dir/usr/local/sbin/haproxy"
  [ -d "$dir/usr/share/haproxy/errorfiles" ] || true
  rm -rf "$dir/etc/haproxy"
  slim "$dir"
}
pack_args_haproxy() {
  printf '%s\n' --cmd '["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]' \
    --user haproxy --workdir /var/lib/haproxy --stop-signal SIGUSR1
}

# --- PgBouncer ---------------------------------------------------------------------------------------------
# Upstream: Debian bookworm-slim with pgbouncer built from source into /usr/bin, /etc/pgbouncer with an
# example config, /var/run/pgbouncer and /var/log/pgbouncer, user pgbouncer 998:996, EXPOSE 6432, an
# entrypoint script. Here: Debian trixie's pgbouncer 1.24.1 (/usr/sbin, linked into /usr/bin), the same
# user, folders and port; no entrypoint (the stack runs its own shell command as uid 70).
build_pgbouncer() {
  local dir=$1
  rootfs "$dir" pgbouncer
  add_user "$dir" pgbouncer 998 996 /var/run/pgbouncer
  mkdir -p "$dir/var/run/pgbouncer" "$dir/var/log/pgbouncer" "$dir/etc/pgbouncer"
  chown 998:996 "$dir/var/run/pgbouncer" "$dir/var/log/pgbouncer"
  [ -e "$dir/usr/bin/pgbouncer" ] || ln -s /usr/sbin/pgbouncer "$dir/usr/bin/pgbouncer"
  rm -f "$dir"/etc/pgbouncer/*
  slim "$dir"
}
pack_args_pgbouncer() { printf '%s\n' --cmd '["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]' --user pgbouncer --port 6432/tcp; }

T0=$(now)
# A subset run (NODE_IMAGES_ONLY) keeps the other images already listed.
rm -f "$LIST_DIR/list.new"
if [ -n "${NODE_IMAGES_ONLY:-}" ] && [ -f "$LIST_DIR/list" ]; then cp "$LIST_DIR/list" "$LIST_DIR/list.new"; else : >"$LIST_DIR/list.new"; fi
ONLY=${NODE_IMAGES_ONLY:-pause coredns metrics-server haproxy pgbouncer synapse}
for image in $ONLY; do
  case $image in
    pause) build pause 1 synapse-workers.local/pause:1 ;;
    coredns) build coredns 1.15.0 synapse-workers.local/coredns:1.15.0 ;;
    metrics-server) build metrics_server 0.8.0 synapse-workers.local/metrics-server:0.8.0 ;;
    synapse) build synapse "$SYNAPSE_VERSION" "ghcr.io/element-hq/synapse:v$SYNAPSE_VERSION" ;;
    haproxy) build haproxy 3.2 docker.io/library/haproxy:3.2 ;;
    pgbouncer) build pgbouncer 1.24.1 ghcr.io/cloudnative-pg/pgbouncer:1.24.1 ;;
    *) die "unknown image $image" ;;
  esac
done
mv "$LIST_DIR/list.new" "$LIST_DIR/list"
log "done in $(elapsed "$T0")s; images listed in $LIST_DIR/list"
