#!/usr/bin/env bash
# Debian packages a real node (make node) needs beside the Go-built parts: runc, the CNI plugins (bridge,
# host-local, loopback), nft (kube-proxy's nftables mode), iptables (the kubelet's canary chains), conntrack,
# debootstrap (image root filesystems), PostgreSQL 15 and Redis (the stack's external services).
# Installs what is missing as root with apt-get; elsewhere says what is missing and fails.
set -euo pipefail
need=()
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v nft >/dev/null || need+=(nftables)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v redis-server >/dev/null || need+=(redis-server)
[ "${#need[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "== apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "node-deps: missing Debian packages ${need[*]} (as root: apt-get install ${need[*]})" >&2
  exit 1
fi
