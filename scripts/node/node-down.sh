#!/usr/bin/env bash
# Stops the node that node-up.sh started and puts the machine back as .tools/node/orig-state recorded it:
#   1. pods deleted through the API while the kubelet still runs (it tears down their sandboxes: veths, IPs)
#   2. the recorded processes stopped, newest first (each checked by PID and start time; SIGTERM, then
#      SIGKILL after NODE_STOP_GRACE seconds), PostgreSQL with pg_ctl; leftover containers killed with ctr
#   3. kube-proxy --cleanup; mounts under .tools/node unmounted; the bridge and any veth on it deleted;
#      nftables tables created since the start deleted; kubepods / k8s.io cgroups removed; runtime paths that
#      did not exist before removed; kernel settings restored
# Safe to run when nothing runs, and again after a failure. Logs of the last run stay in .tools/node-last-logs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/node-lib.sh"

GRACE=${NODE_STOP_GRACE:-10}
log() { echo "node-down: $*"; }
warn() { echo "node-down: warning: $*" >&2; }

stop_one() { # NAME PID STARTTIME
  local name=$1 pid=$2 start=$3
  running "$pid" "$start" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  local t0=$SECONDS
  while running "$pid" "$start" && [ $((SECONDS - t0)) -lt "$GRACE" ]; do sleep 0.05; done
  if running "$pid" "$start"; then
    log "$name (pid $pid) still running after ${GRACE}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 100); do running "$pid" "$start" || break; sleep 0.05; done
  fi
  running "$pid" "$start" && warn "$name (pid $pid) did not exit" || log "stopped $name (pid $pid)"
}
pid_of() { awk -v n="$1" '$1 == n { print $2, $3 }' "$PIDS" 2>/dev/null; }
is_alive() { local p s; read -r p s < <(pid_of "$1") || return 1; [ -n "${p:-}" ] && running "$p" "$s"; }
stop_named() { local p s; read -r p s < <(pid_of "$1") || return 0; [ -n "${p:-}" ] && stop_one "$1" "$p" "$s"; return 0; }

# 1. Pods first, while the apiserver and kubelet run: stop the controllers so nothing is recreated.
if [ -f "$PIDS" ] && is_alive kube-apiserver && is_alive kubelet; then
  stop_named kube-controller-manager
  stop_named kube-scheduler
  "${KUBECTL[@]}" delete pods --all --all-namespaces --grace-period=2 --wait=true --timeout=60s \
    >/dev/null 2>&1 || warn "not every pod was deleted through the API; removing the rest by hand"
fi

# 2. Processes, newest first (kube-proxy, kubelet, containerd, scheduler, controller-manager, apiserver, etcd, redis).
if [ -f "$PIDS" ]; then
  while read -r name pid start; do
    [ "$name" = postgres ] && continue
    if [ "$name" = containerd ] && running "$pid" "$start" && [ -S "$CTR_SOCK" ]; then
      # Containers the kubelet left (a killed run): kill their tasks so the shims exit with them.
      ctr=("$BIN/ctr" --address "$CTR_SOCK" -n k8s.io)
      for c in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
        "${ctr[@]}" tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
      done
      sleep 1
      for c in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks delete -f "$c" >/dev/null 2>&1 || true; done
    fi
    [ -n "${start:-}" ] && stop_one "$name" "$pid" "$start"
  done < <(tac "$PIDS")
fi
if [ -f "$STATE/postgres/data/postmaster.pid" ]; then
  runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$STATE/postgres/data" -m fast -w stop >/dev/null 2>&1 &&
    log "stopped PostgreSQL" || warn "pg_ctl stop failed"
fi
# Shims outlive containerd by design; those of this run's containerd are children of init named
# containerd-shim-runc-v2 with our socket in their command line.
for pid in $(pgrep -f "^$BIN/containerd-shim-runc-v2 .*-address $CTR_SOCK" || true); do
  kill -KILL "$pid" 2>/dev/null && log "killed leftover shim (pid $pid)" || true
done

# 3a. kube-proxy's own rules (its nftables tables, any conntrack entries).
if [ -x "$BIN/kube-proxy" ] && [ -f "$ORIG" ]; then
  "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi

# 3b. Mounts under the node's state (kubelet volumes, overlay root filesystems, network namespaces), deepest
# first; a busy one is detached lazily.
for _ in 1 2 3; do
  mapfile -t mounts < <(awk -v s="$STATE/" 'index($2, s) == 1 { print $2 }' /proc/self/mounts | sort -r | uniq)
  [ "${#mounts[@]}" -eq 0 ] && break
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done
left=$(awk -v s="$STATE/" 'index($2, s) == 1' /proc/self/mounts | wc -l)
[ "$left" -eq 0 ] || warn "$left mount(s) under $STATE remain"

if [ -f "$ORIG" ]; then
  grep -q '^complete$' "$ORIG" || warn "$ORIG is incomplete (the start was killed while recording it)"
  # 3c. Links: the bridge and whatever veths are still attached to it (their netns are gone or going).
  if [ -e "/sys/class/net/$BRIDGE" ]; then
    for port in /sys/class/net/"$BRIDGE"/brif/*; do
      [ -e "$port" ] && ip link delete "$(basename "$port")" 2>/dev/null || true
    done
    ip link delete "$BRIDGE" && log "deleted link $BRIDGE"
  fi
  while read -r name; do
    grep -qxF "link $name" "$ORIG" || { ip link delete "$name" 2>/dev/null && log "deleted link $name"; } || true
  done < <(ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep -E '^(veth|swnode)' || true)

  # 3d. nftables tables created since the start (only names this run may create).
  if command -v nft >/dev/null; then
    while read -r line; do
      grep -qxF "nft $line" "$ORIG" && continue
      nft delete "$line" 2>/dev/null && log "deleted nftables $line" || warn "could not delete nftables $line"
    done < <(nft list tables 2>/dev/null | grep -E "$NFT_CANDIDATES" | sed 's/^table //' | sed 's/^/table /')
  fi

  # 3e. cgroups: kubepods and k8s.io trees in every hierarchy, leaves first (empty once the processes are gone).
  for h in /sys/fs/cgroup/*/; do
    for c in kubepods k8s.io kubepods.slice; do
      [ -d "$h$c" ] || continue
      grep -qxF "cgroup $h$c" "$ORIG" && continue
      find "$h$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      [ -d "$h$c" ] && warn "cgroup $h$c could not be removed" || true
    done
  done

  # 3f. Paths the runtime hard-codes, removed when the run created them.
  for p in "${HOST_PATHS[@]}"; do
    [ -e "$p" ] || continue
    grep -qxF "path $p" "$ORIG" && continue
    if awk -v s="$p/" 'index($2, s) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
      awk -v s="$p/" 'index($2, s) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    fi
    rm -rf "$p" && log "removed $p"
  done

  # 3g. Kernel settings, as recorded (those that no longer exist, e.g. of a deleted link, are skipped).
  while read -r _ key _ value; do
    current=$(sysctl -n "$key" 2>/dev/null) || continue
    [ "$(echo "$current" | tr -s '\t ' ' ')" = "$(echo "$value" | tr -s '\t ' ' ')" ] && continue
    sysctl -q -w "$key=$value" >/dev/null 2>&1 && log "restored $key = $value (was $current)" ||
      warn "could not restore $key to $value"
  done < <(grep '^sysctl ' "$ORIG" | sed 's/^sysctl \([^ ]*\) = \(.*\)$/sysctl \1 = \2/')
fi

if [ -d "$LOGS" ]; then
  rm -rf "$TOOLS/node-last-logs"
  cp -r "$LOGS" "$TOOLS/node-last-logs"
fi
if [ "$(awk -v s="$STATE/" 'index($2, s) == 1' /proc/self/mounts | wc -l)" -eq 0 ]; then
  rm -rf "$STATE"
else
  warn "mounts remain under $STATE: left it in place; run node-down.sh again"
  exit 1
fi
log "stopped and cleaned up (last logs in $TOOLS/node-last-logs)"
