#!/usr/bin/env bash
# `make node-tools`: the Debian packages, the Go-built parts and the images a real node needs. Root only:
# debootstrap and chroot build the images, apt-get installs the packages. Not root, outside CI, it says so
# and builds nothing (the node tier then skips, saying why); in CI (CI=true) that is a failure.
# The Debian-based images (Synapse, HAProxy, PgBouncer: mostly downloads and disk) build while the Go
# builds take the cores; the images of Go binaries (pause, CoreDNS, metrics-server) follow them.
set -euo pipefail
DIR=$(dirname "${BASH_SOURCE[0]}")
if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = true ]; then
    echo "node-tools: must run as root (apt-get, debootstrap, chroot); CI needs the node tier" >&2
    exit 1
  fi
  echo "node-tools: not root: skipping the node's tools (the node tier will skip)"
  exit 0
fi
bash "$DIR/node-deps.sh"
LOG=$(mktemp)
NODE_IMAGES_ONLY="haproxy pgbouncer synapse" bash "$DIR/build-images.sh" >"$LOG" 2>&1 &
images=$!
trap 'kill "$images" 2>/dev/null || true; rm -f "$LOG"' EXIT
built=0
bash "$DIR/build-node.sh" || built=$?
wait "$images" || { cat "$LOG" >&2; echo "node-tools: the Debian-based images failed (log above)" >&2; exit 1; }
cat "$LOG"
[ "$built" -eq 0 ] || { echo "node-tools: build-node.sh failed" >&2; exit "$built"; }
bash "$DIR/build-images.sh"
