#!/usr/bin/env bash
# Starts a local Kubernetes control plane on 127.0.0.1 from the binaries build-cluster.sh put in .tools/bin:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes that "run" pods).
# No kubelet, no container runtime, no network but loopback: pods are scheduled onto kwok-managed
# fake nodes and kwok moves them through their phases (see kwok-stages.yaml beside this script).
#
# Writes:  .tools/kubeconfig           admin kubeconfig (client cert in group system:masters)
#          .tools/cluster/             state: pki/, etcd/, logs/, pids, kwok/
# Stop with scripts/cluster/cluster-down.sh (stops exactly the processes listed in .tools/cluster/pids).
#
# Knobs (environment):
#   CLUSTER_NODES=3            fake nodes kwok-node-0..N-1 (256 CPU, 1Ti memory, 1000 pods each)
#   CLUSTER_PVS=64             pre-made PersistentVolumes of the default StorageClass local-storage
#   CLUSTER_PV_SIZE=1Ti        capacity of each of them
#   CLUSTER_PORT_BASE=20000    ports: etcd +2379/+2380, apiserver +6443, kcm +10257, scheduler +10259
#                              (default 22379/22380, 26443, 30257, 30259: below the ephemeral range)
#   CLUSTER_KCM_CONTROLLERS    override kube-controller-manager --controllers (default: list below)
#   CLUSTER_TIMEOUT=90         seconds to wait for each readiness check
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRIPT_DIR="$REPO_ROOT/scripts/cluster"
TOOLS="$REPO_ROOT/.tools"
BIN="$TOOLS/bin"
STATE="$TOOLS/cluster"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
KUBECONFIG_OUT="$TOOLS/kubeconfig"

NODES=${CLUSTER_NODES:-3}
PVS=${CLUSTER_PVS:-64}
PV_SIZE=${CLUSTER_PV_SIZE:-1Ti}
PORT_BASE=${CLUSTER_PORT_BASE:-20000}
TIMEOUT=${CLUSTER_TIMEOUT:-90}
ETCD_PORT=$((PORT_BASE + 2379))
ETCD_PEER_PORT=$((PORT_BASE + 2380))
API_PORT=$((PORT_BASE + 6443))
KCM_PORT=$((PORT_BASE + 10257))
SCHED_PORT=$((PORT_BASE + 10259))
SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/16 # kwok writes fake pod IPs from here into pod status; nothing routes to them

# The labels kwok acts on (also documented in kwok-stages.yaml).
NODE_SELECTOR_KEY=synapse-workers.test/node
NODE_SELECTOR_VALUE=kwok

# serviceaccount-controller: the default ServiceAccount of each namespace; serviceaccount-token-controller:
# legacy token Secrets; persistentvolume-binder-controller: binds PVCs to the pre-made PVs;
# clusterrole-aggregation-controller: fills the admin/edit/view ClusterRoles. Off: node-lifecycle (no
# kubelets; nodes are never tainted NotReady), horizontal-pod-autoscaler (no metrics API), node-ipam,
# CSR signing/approving, attach-detach, cloud-provider controllers.
DEFAULT_CONTROLLERS=serviceaccount-controller,serviceaccount-token-controller,namespace-controller
DEFAULT_CONTROLLERS+=,garbage-collector-controller,deployment-controller,replicaset-controller
DEFAULT_CONTROLLERS+=,statefulset-controller,job-controller,cronjob-controller,daemonset-controller
DEFAULT_CONTROLLERS+=,replicationcontroller-controller,disruption-controller,ttl-after-finished-controller
DEFAULT_CONTROLLERS+=,pod-garbage-collector-controller,resourcequota-controller
DEFAULT_CONTROLLERS+=,persistentvolume-binder-controller,persistentvolume-protection-controller
DEFAULT_CONTROLLERS+=,persistentvolumeclaim-protection-controller,ephemeral-volume-controller
DEFAULT_CONTROLLERS+=,endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller
DEFAULT_CONTROLLERS+=,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller
DEFAULT_CONTROLLERS+=,service-cidr-controller
KCM_CONTROLLERS=${CLUSTER_KCM_CONTROLLERS:-$DEFAULT_CONTROLLERS}

T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "cluster-up [$(elapsed)s]: $*"; }
die() { echo "cluster-up: $*" >&2; exit 1; }

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run scripts/cluster/build-cluster.sh first"
done
command -v openssl >/dev/null || die "openssl is needed to make the cluster's certificates"
command -v curl >/dev/null || die "curl is needed for the readiness checks"

# A cluster that is still up (any recorded process alive) is left alone; a dead one is cleaned first.
running() { # PID STARTTIME : that process is alive (not a zombie) and is the one recorded
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -r -a f <<<"${stat##*) }" # fields after "pid (comm) ": state is the 1st, starttime the 20th
  [ "${f[0]}" != Z ] && [ "${f[19]}" = "$2" ]
}
if [ -f "$PIDS" ]; then
  while read -r name pid start; do
    if running "$pid" "$start"; then
      die "a cluster is already running ($name is pid $pid); stop it with scripts/cluster/cluster-down.sh"
    fi
  done <"$PIDS"
fi
rm -rf "$STATE"
mkdir -p "$PKI" "$LOGS" "$STATE/etcd" "$STATE/kwok" "$STATE/pv"
chmod 700 "$STATE/etcd" "$PKI"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $ETCD_PORT $ETCD_PEER_PORT $API_PORT $KCM_PORT $SCHED_PORT; do
  port_busy "$p" && die "port 127.0.0.1:$p is in use (set CLUSTER_PORT_BASE to move all ports)"
done

# Anything that fails from here on stops what was started.
started=0
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$started" -eq 1 ]; then
    echo "cluster-up: failed (exit $rc); last log lines:" >&2
    for f in "$LOGS"/*.log; do echo "== $f" >&2; tail -n 15 "$f" >&2; done
    "$SCRIPT_DIR/cluster-down.sh" >&2 || true
  fi
}
trap on_exit EXIT

# --- certificates (ECDSA P-256: generated in milliseconds) -----------------------------------------------
gen_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
sign() { # NAME SUBJECT EXTENSIONS : key + cert signed by the cluster CA
  gen_key "$PKI/$1.key"
  openssl req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile <(printf '%s\n' "$3") -out "$PKI/$1.crt" 2>/dev/null
  rm -f "$PKI/$1.csr"
}
gen_key "$PKI/ca.key"
openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=synapse-workers-local-ca" -days 3650 -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$PKI/ca.crt" 2>/dev/null
sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=kubernetes-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
gen_key "$PKI/sa.key" # service-account token signing key (ES256)
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
chmod 600 "$PKI"/*.key

b64() { base64 -w0 <"$1"; }
cat >"$KUBECONFIG_OUT" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: synapse-workers-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: kubernetes-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: synapse-workers-local
  context:
    cluster: synapse-workers-local
    user: kubernetes-admin
current-context: synapse-workers-local
EOF
chmod 600 "$KUBECONFIG_OUT"
log "certificates and $KUBECONFIG_OUT written"

# --- processes ---------------------------------------------------------------------------------------------
# start NAME CMD... : runs CMD in its own session (so a terminal's Ctrl-C or the caller's exit does not reach
# it), output to logs/NAME.log, and records "NAME PID STARTTIME" so cluster-down.sh can tell it from a
# process that later reuses the PID.
start() {
  local name=$1; shift
  setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
  local pid=$!
  local st=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    st=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null) && [ -n "$st" ] && break
    sleep 0.01
  done
  [ -n "$st" ] || die "$name exited at once; see $LOGS/$name.log"
  echo "$name $pid $st" >>"$PIDS"
  started=1
}
alive() { # NAME : the recorded process is still running
  local pid start
  read -r pid start < <(awk -v n="$1" '$1 == n { print $2, $3 }' "$PIDS")
  [ -n "$pid" ] && running "$pid" "$start"
}
wait_for() { # WHAT PROCESS CMD... : polls CMD until it succeeds, fails fast when PROCESS has died
  local what=$1 proc=$2; shift 2
  local deadline=$(($(date +%s) + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    alive "$proc" || die "$proc died while waiting for $what; see $LOGS/$proc.log"
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for $what; see $LOGS/$proc.log"
    sleep 0.1
  done
}
api_get() { # PATH : GET on the apiserver as admin, succeeds on 200 "ok"
  [ "$(curl -sS --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT$1")" = ok ]
}
healthz() { # PORT : a component's own /healthz (served on loopback, anonymous access allowed)
  [ "$(curl -sk --max-time 2 "https://127.0.0.1:$1/healthz")" = ok ]
}
KUBECTL=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT")

start etcd "$BIN/etcd" \
  --name=local --data-dir="$STATE/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="local=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state=new \
  --unsafe-no-fsync --log-level=warn
wait_for "etcd /health" etcd sh -c "curl -sf --max-time 2 http://127.0.0.1:$ETCD_PORT/health | grep -q '\"health\":\"true\"'"
log "etcd up on 127.0.0.1:$ETCD_PORT"

# TaintNodesByCondition is off: it taints new Nodes not-ready, and only nodelifecycle (off) would lift it.
# The endpoint reconciler is off: it would publish the advertise address, and loopback is not allowed there.
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --authorization-mode=RBAC \
  --disable-admission-plugins=TaintNodesByCondition \
  --endpoint-reconciler-type=none \
  --allow-privileged=true --profiling=false \
  --v=1
wait_for "kube-apiserver /readyz" kube-apiserver api_get /readyz
log "kube-apiserver ready on https://127.0.0.1:$API_PORT"

start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$KUBECONFIG_OUT" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$PKI/kcm" \
  --controllers="$KCM_CONTROLLERS" \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --use-service-account-credentials=false \
  --leader-elect=false --profiling=false \
  --v=1
start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig="$KUBECONFIG_OUT" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$PKI/scheduler" \
  --leader-elect=false --profiling=false \
  --v=1
# KWOK_WORKDIR keeps kwok away from ~/.kwok (it would load ~/.kwok/kwok.yaml first if it existed).
# No --server-address / --node-port: kwok's kubelet-like server (logs, exec) stays off.
start kwok env KWOK_WORKDIR="$STATE/kwok" "$BIN/kwok" \
  --kubeconfig="$KUBECONFIG_OUT" \
  --config="$SCRIPT_DIR/kwok-stages.yaml" \
  --manage-all-nodes=false \
  --manage-nodes-with-label-selector="$NODE_SELECTOR_KEY=$NODE_SELECTOR_VALUE" \
  --cidr="$POD_CIDR" \
  --node-lease-duration-seconds=40

# --- cluster objects: fake nodes, default StorageClass, pre-made PVs ---------------------------------------
{
  zones=(a b c)
  for ((i = 0; i < NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: zone-${zones[$((i % 3))]}
    type: kwok
    $NODE_SELECTOR_KEY: $NODE_SELECTOR_VALUE
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
spec: {}
status:
  capacity: {cpu: "256", memory: 1Ti, pods: "1000", ephemeral-storage: 10Ti}
  allocatable: {cpu: "256", memory: 1Ti, pods: "1000", ephemeral-storage: 10Ti}
EOF
  done
  cat <<EOF
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-storage
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
EOF
  for ((i = 0; i < PVS; i++)); do
    n=$(printf 'local-pv-%03d' "$i")
    cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $n
  labels:
    synapse-workers.test/pv-pool: local
spec:
  capacity: {storage: $PV_SIZE}
  accessModes: [ReadWriteOnce, ReadOnlyMany, ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-storage
  volumeMode: Filesystem
  hostPath: {path: "$STATE/pv/$n", type: DirectoryOrCreate}
EOF
  done
} >"$STATE/objects.yaml"
"${KUBECTL[@]}" create -f "$STATE/objects.yaml" >/dev/null
"${KUBECTL[@]}" create -f "$SCRIPT_DIR/monitoring-crds.yaml" >/dev/null
log "created $NODES fake node(s), StorageClass local-storage (default), $PVS PersistentVolumes of $PV_SIZE, monitoring CRDs"

# --- readiness ---------------------------------------------------------------------------------------------
wait_for "kube-controller-manager /healthz" kube-controller-manager healthz "$KCM_PORT"
wait_for "kube-scheduler /healthz" kube-scheduler healthz "$SCHED_PORT"
nodes_ready() {
  [ "$("${KUBECTL[@]}" get nodes -l "$NODE_SELECTOR_KEY=$NODE_SELECTOR_VALUE" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')" -eq "$NODES" ]
}
wait_for "$NODES node(s) Ready" kwok nodes_ready
wait_for "ServiceAccount default/default" kube-controller-manager "${KUBECTL[@]}" get serviceaccount default -n default
for p in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
  alive "$p" || die "$p is not running; see $LOGS/$p.log"
done

log "cluster ready in $(elapsed)s"
cat <<EOF
  export KUBECONFIG=$KUBECONFIG_OUT
  $BIN/kubectl get nodes
  apiserver https://127.0.0.1:$API_PORT, etcd http://127.0.0.1:$ETCD_PORT, logs in $LOGS
  stop with scripts/cluster/cluster-down.sh
EOF
