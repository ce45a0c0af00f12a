#!/usr/bin/env bash
# Stops the local cluster that cluster-up.sh started: exactly the processes recorded in .tools/cluster/pids
# (each checked by PID *and* start time, so a reused PID is never signalled), newest first, SIGTERM then
# SIGKILL after a grace period. Then removes the cluster's state (.tools/cluster, .tools/kubeconfig);
# the last run's logs are kept in .tools/cluster-last-logs/. Safe to run when nothing is running.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS="$REPO_ROOT/.tools"
STATE="$TOOLS/cluster"
PIDS="$STATE/pids"
GRACE=${CLUSTER_STOP_GRACE:-10}

same_process() { # PID STARTTIME
  [ -r "/proc/$1/stat" ] && [ "$(awk '{print $22}' "/proc/$1/stat" 2>/dev/null)" = "$2" ]
}

if [ -f "$PIDS" ]; then
  mapfile -t entries < <(tac "$PIDS") # reverse start order: kwok, scheduler, kcm, apiserver, etcd
  for e in "${entries[@]}"; do
    read -r name pid start <<<"$e"
    if same_process "$pid" "$start"; then
      kill -TERM "$pid" 2>/dev/null || true
      echo "cluster-down: stopping $name (pid $pid)"
    fi
  done
  deadline=$(($(date +%s) + GRACE))
  for e in "${entries[@]}"; do
    read -r name pid start <<<"$e"
    while same_process "$pid" "$start" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
    if same_process "$pid" "$start"; then
      echo "cluster-down: $name (pid $pid) still running after ${GRACE}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for e in "${entries[@]}"; do # a SIGKILLed process may take a moment to go
    read -r name pid start <<<"$e"
    for _ in $(seq 50); do same_process "$pid" "$start" || break; sleep 0.1; done
    same_process "$pid" "$start" && echo "cluster-down: warning: $name (pid $pid) did not exit" >&2
  done
fi

if [ -d "$STATE/logs" ]; then
  rm -rf "$TOOLS/cluster-last-logs"
  cp -r "$STATE/logs" "$TOOLS/cluster-last-logs"
fi
rm -rf "$STATE" "$TOOLS/kubeconfig"
echo "cluster-down: stopped and cleaned up (last logs in $TOOLS/cluster-last-logs)"
