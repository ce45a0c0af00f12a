#!/usr/bin/env bash
# Proves a running local cluster (cluster-up.sh) does what the tests need, in a throwaway namespace:
#   a Deployment of 3 replicas becomes Ready; a StatefulSet's PVC binds to a pre-made PV; a Job completes
#   (kwok); a Job pod labelled synapse-workers.test/executor=real is left Running by kwok, and completes
#   only when its phase is set through the pods/status subresource (as the test harness does).
# Exits non-zero on the first failure. Prints the control plane's memory at the end.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export KUBECONFIG="$REPO_ROOT/.tools/kubeconfig"
K="$REPO_ROOT/.tools/bin/kubectl"
NS=smoke-$$
T0=$(date +%s.%N)
log() { awk -v a="$T0" -v b="$(date +%s.%N)" -v m="$*" 'BEGIN { printf "cluster-smoke [%.1fs]: %s\n", b - a, m }'; }
[ -f "$KUBECONFIG" ] || { echo "cluster-smoke: no $KUBECONFIG; run scripts/cluster/cluster-up.sh" >&2; exit 1; }
trap '"$K" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT

"$K" create namespace "$NS" >/dev/null
# The ServiceAccount admission plugin rejects pods until the namespace's default ServiceAccount exists.
until "$K" -n "$NS" get serviceaccount default >/dev/null 2>&1; do sleep 0.1; done
"$K" -n "$NS" apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: web}}}
      containers: [{name: web, image: nginx, resources: {requests: {cpu: "2", memory: 4Gi}}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres, volumeMounts: [{name: data, mountPath: /data}]}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: fake}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: ["true"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: real}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {synapse-workers.test/executor: real}}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: ["true"]}]
EOF
log "applied Deployment web (3), StatefulSet db (PVC template), Job fake, Job real in namespace $NS"

"$K" -n "$NS" rollout status deployment/web --timeout=60s >/dev/null
log "Deployment web: $("$K" -n "$NS" get deployment web -o jsonpath='{.status.readyReplicas}') of 3 replicas Ready"
"$K" -n "$NS" rollout status statefulset/db --timeout=60s >/dev/null
"$K" -n "$NS" wait --for=jsonpath='{.status.phase}'=Bound pvc/data-db-0 --timeout=60s >/dev/null
log "StatefulSet db Ready; PVC data-db-0 Bound to $("$K" -n "$NS" get pvc data-db-0 -o jsonpath='{.spec.volumeName}')"
"$K" -n "$NS" wait --for=condition=Complete job/fake --timeout=60s >/dev/null
log "Job fake Complete (kwok completed its pod)"

"$K" -n "$NS" wait --for=jsonpath='{.status.phase}'=Running pod -l job-name=real --timeout=60s >/dev/null
sleep 5
pod=$("$K" -n "$NS" get pod -l job-name=real -o name)
phase=$("$K" -n "$NS" get "$pod" -o jsonpath='{.status.phase}')
[ "$phase" = Running ] || { echo "cluster-smoke: $pod is $phase, expected kwok to leave it Running" >&2; exit 1; }
[ "$("$K" -n "$NS" get job real -o jsonpath='{.status.active}')" = 1 ] || { echo "cluster-smoke: Job real not active" >&2; exit 1; }
log "Job real: $pod still Running 5s later (kwok does not complete executor=real pods)"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$K" -n "$NS" patch "$pod" --subresource=status --type=strategic -p "{\"status\": {\"phase\": \"Succeeded\",
  \"conditions\": [{\"type\": \"Ready\", \"status\": \"False\", \"reason\": \"PodCompleted\"},
                   {\"type\": \"ContainersReady\", \"status\": \"False\", \"reason\": \"PodCompleted\"}],
  \"containerStatuses\": [{\"name\": \"main\", \"image\": \"busybox\", \"ready\": false, \"restartCount\": 0,
    \"started\": false, \"state\": {\"terminated\": {\"exitCode\": 0, \"reason\": \"Completed\",
    \"startedAt\": \"$now\", \"finishedAt\": \"$now\"}}}]}}" >/dev/null
"$K" -n "$NS" wait --for=condition=Complete job/real --timeout=60s >/dev/null
log "Job real Complete after patching $pod status.phase=Succeeded via the status subresource"

total=0
while read -r name pid _; do
  kb=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
  total=$((total + kb))
  printf '  %-24s %5d MiB\n' "$name" $((kb / 1024))
done <"$REPO_ROOT/.tools/cluster/pids"
printf '  %-24s %5d MiB (PSS)\n' total $((total / 1024))
log "all checks passed"
