#!/usr/bin/env bash
# Stops the local cluster that cluster-up.sh started: exactly the processes recorded in .tools/cluster/pids
# (each checked by PID *and* start time, so a reused PID is never signalled), newest first, SIGTERM then
# SIGKILL after CLUSTER_STOP_GRACE seconds (default 10). Then removes the cluster state (.tools/cluster,
# .tools/kubeconfig); the last run's logs are kept in .tools/cluster-last-logs/. Safe when nothing runs.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS="$REPO_ROOT/.tools"
STATE="$TOOLS/cluster"
PIDS="$STATE/pids"
GRACE=${CLUSTER_STOP_GRACE:-10}

same_process() { # PID STARTTIME : that process is still running (a zombie waiting to be reaped is not)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # fields after "pid (comm) ": state is the 1st, starttime the 20th
  read -r -a f <<<"$stat"
  [ "${f[0]}" != Z ] && [ "${f[19]}" = "$2" ]
}

stop_one() { # NAME PID STARTTIME : SIGTERM, wait up to GRACE seconds, then SIGKILL
  local name=$1 pid=$2 start=$3
  same_process "$pid" "$start" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  local t0=$SECONDS
  while same_process "$pid" "$start" && [ $((SECONDS - t0)) -lt "$GRACE" ]; do sleep 0.05; done
  if same_process "$pid" "$start"; then
    echo "cluster-down: $name (pid $pid) still running after ${GRACE}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 100); do same_process "$pid" "$start" || break; sleep 0.05; done
  fi
  if same_process "$pid" "$start"; then
    echo "cluster-down: warning: $name (pid $pid) did not exit" >&2
  else
    echo "cluster-down: stopped $name (pid $pid)"
  fi
}

# One at a time, newest first (kwok, scheduler, controller-manager, then apiserver, then etcd), so each
# server still has its backend while it shuts down gracefully.
if [ -f "$PIDS" ]; then
  while read -r name pid start; do
    [ -n "${start:-}" ] && stop_one "$name" "$pid" "$start"
  done < <(tac "$PIDS")
fi

if [ -d "$STATE/logs" ]; then
  rm -rf "$TOOLS/cluster-last-logs"
  cp -r "$STATE/logs" "$TOOLS/cluster-last-logs"
fi
rm -rf "$STATE" "$TOOLS/kubeconfig"
echo "cluster-down: stopped and cleaned up (last logs in $TOOLS/cluster-last-logs)"
