#!/usr/bin/env bash
# Starts a real single-node Kubernetes cluster on this machine, beside (not instead of) the kwok cluster:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd + runc, a bridge CNI network,
# kubelet, kube-proxy (nftables mode), CoreDNS and metrics-server as pods, plus PostgreSQL 15 and Redis where
# the pods can reach them. Images come from build-images.sh (no registry: the kubelet never pulls).
# Why: the kwok cluster only pretends to run pods; this one runs the stack's real containers and probes.
#
# Every address is on a bridge this run creates or in pod network namespaces (ranges in node-lib.sh);
# pods may not reach anything else (an nftables table drops it) and DNS answers only cluster names.
# The machine's state before the run is recorded in .tools/node/orig-state, and scripts/node/node-down.sh
# puts it back (kernel settings, links, nftables tables, mounts, cgroups, runtime paths). A failed or
# interrupted start runs node-down.sh itself (trap); a start after a killed run cleans up first.
#
# Writes: .tools/node/kubeconfig   admin kubeconfig (https://198.18.0.1:16443)
#         .tools/node/env          NODE_PG_HOST/PORT/SUPERUSER/PASSWORD, NODE_REDIS_HOST/PORT, NODE_EXEC
#         .tools/node/             state, pki/, logs/, pids
# Knobs: NODE_TIMEOUT=120 (seconds per readiness wait), NODE_PG_MAX_CONNECTIONS=50,
#        NODE_METRICS_SERVER=0 (no metrics-server: about 40 MB less, no `kubectl top`)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/node-lib.sh"

TIMEOUT=${NODE_TIMEOUT:-120}
PG_MAX_CONNECTIONS=${NODE_PG_MAX_CONNECTIONS:-50}
METRICS_SERVER=${NODE_METRICS_SERVER:-1}
T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "node-up [$(elapsed)s]: $*"; }
die() { echo "node-up: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (a kubelet, a bridge and nftables need it)"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy containerd \
  containerd-shim-runc-v2 ctr; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run make node-tools"
done
for c in runc nft iptables openssl curl ip /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback \
  /usr/lib/postgresql/15/bin/initdb redis-server; do
  command -v "$c" >/dev/null || [ -x "$c" ] || die "$c is missing: run scripts/node/node-deps.sh"
done
[ -f "$TOOLS/node-images/list" ] || die "no images: run scripts/node/build-images.sh (make node-tools)"

# --- a previous run: refuse when it is up or still starting, clean up after it when it was killed ----------
# A finished start writes .tools/node/env last; .tools/node/starter names the start script that is (or was)
# at work. Processes without an env file and without a live starter are the remains of a killed start.
if [ -f "$PIDS" ]; then
  if [ -f "$STATE/starter" ] && read -r spid sstart <"$STATE/starter" && running "$spid" "$sstart"; then
    die "a node is being started (node-up.sh is pid $spid); wait for it, or stop it with make node-down"
  fi
  if [ -f "$ENV_OUT" ]; then
    while read -r name pid start; do
      running "$pid" "$start" && die "a node is already running ($name is pid $pid); stop it with make node-down"
    done <"$PIDS"
  fi
fi
if [ -e "$ORIG" ] || [ -d "$STATE" ]; then
  log "a previous run left state behind (killed or failed); cleaning up first"
  bash "$SCRIPT_DIR/node-down.sh"
fi
[ ! -e "/sys/class/net/$BRIDGE" ] || die "link $BRIDGE exists but no run recorded it; remove it by hand"
for p in $ETCD_PORT $ETCD_PEER_PORT $KCM_PORT $SCHED_PORT $KUBELET_HEALTHZ_PORT $PROXY_METRICS_PORT $PROXY_HEALTHZ_PORT; do
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && die "port 127.0.0.1:$p is in use"
done

# --- record the machine's state before changing anything ---------------------------------------------------
mkdir -p "$STATE"
{
  echo "# recorded by node-up.sh at $(date -u +%FT%TZ)"
  sysctl -a 2>/dev/null | grep -E "$SYSCTL_PREFIXES" | sed 's/^/sysctl /'
  nft list tables 2>/dev/null | sed 's/^/nft /'
  ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print "link " $2 }'
  for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && echo "path $p"; done
  for h in /sys/fs/cgroup/*/; do
    for c in kubepods k8s.io kubepods.slice; do [ -d "$h$c" ] && echo "cgroup $h$c"; done
  done
  echo "complete"
} >"$ORIG.tmp"
mv "$ORIG.tmp" "$ORIG"
echo "$$ $(awk '{print $22}' /proc/$$/stat)" >"$STATE/starter"
mkdir -p "$PKI" "$LOGS" "$STATE/etcd" "$STATE/containerd" "$STATE/cni/net.d" "$STATE/cni/ipam" \
  "$STATE/kubelet" "$STATE/pod-logs" "$STATE/volume-plugins" "$STATE/pv" "$STATE/manifests"
chmod 700 "$STATE/etcd" "$PKI"

started=0
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ]; then
    echo "node-up: failed or interrupted (exit $rc); last log lines:" >&2
    for f in "$LOGS"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 12 "$f" >&2; }; done
    bash "$SCRIPT_DIR/node-down.sh" >&2 || echo "node-up: node-down.sh failed too; run it again" >&2
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- network: the bridge (created here so the apiserver can bind its address before any pod exists) ------
ip link add "$BRIDGE" type bridge
ip addr add "$HOST_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
ip route add "$SERVICE_CIDR" dev "$BRIDGE" # ClusterIPs from the host: routed here, kube-proxy DNATs them
# Pods reach pods, Services and the host's 198.18.0.1; anything else they send is dropped, so nothing a pod
# does can address a machine outside this one (there is no masquerading either).
nft -f - <<EOF
table ip $NFT_TABLE {
  chain forward {
    type filter hook forward priority -10; policy accept;
    ip saddr $ALL_RANGES ip daddr != $ALL_RANGES drop
    iifname "$BRIDGE" oifname != "$BRIDGE" drop
  }
}
EOF
log "bridge $BRIDGE $HOST_IP/24, Service route $SERVICE_CIDR, nftables table $NFT_TABLE"

# --- certificates ------------------------------------------------------------------------------------------
gen_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
sign() { # NAME SUBJECT EXTENSIONS [CA]
  local ca=${4:-ca}
  gen_key "$PKI/$1.key"
  openssl req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile <(printf '%s\n' "$3") -out "$PKI/$1.crt" 2>/dev/null
  rm -f "$PKI/$1.csr"
}
make_ca() { # NAME CN
  gen_key "$PKI/$1.key"
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/$1.crt" 2>/dev/null
}
CLIENT="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
make_ca ca synapse-workers-node-ca
make_ca front-proxy-ca synapse-workers-node-front-proxy-ca
sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$HOST_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign kubelet-serving "/CN=$NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$HOST_IP,DNS:$NODE_NAME"
sign admin "/O=system:masters/CN=kubernetes-admin" "$CLIENT"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$CLIENT"
sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$CLIENT"
sign kube-proxy "/CN=system:kube-proxy" "$CLIENT"
sign front-proxy-client "/CN=front-proxy-client" "$CLIENT" front-proxy-ca
gen_key "$PKI/sa.key"
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
chmod 600 "$PKI"/*.key

b64() { base64 -w0 <"$1"; }
kubeconfig() { # FILE CERTNAME
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: synapse-workers-node
  cluster:
    server: https://$HOST_IP:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$PKI/$2.crt")
    client-key-data: $(b64 "$PKI/$2.key")
contexts:
- name: synapse-workers-node
  context:
    cluster: synapse-workers-node
    user: $2
current-context: synapse-workers-node
EOF
  chmod 600 "$1"
}
kubeconfig "$KUBECONFIG_OUT" admin
kubeconfig "$STATE/kubelet.kubeconfig" kubelet
kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy
log "certificates and kubeconfigs written"

# --- processes (as cluster-up.sh: own session, log file, "NAME PID STARTTIME" in pids) ---------------------
start() {
  local name=$1; shift
  setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
  local pid=$! st=""
  for _ in $(seq 20); do
    st=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null) && [ -n "$st" ] && break
    sleep 0.01
  done
  [ -n "$st" ] || die "$name exited at once; see $LOGS/$name.log"
  echo "$name $pid $st" >>"$PIDS"
  started=1
}
alive() {
  local pid start
  read -r pid start < <(awk -v n="$1" '$1 == n { print $2, $3 }' "$PIDS")
  [ -n "$pid" ] && running "$pid" "$start"
}
wait_for() { # WHAT PROCESS CMD...
  local what=$1 proc=$2; shift 2
  local deadline=$(($(date +%s) + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    [ "$proc" = - ] || alive "$proc" || die "$proc died while waiting for $what; see $LOGS/$proc.log"
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}
api_get() {
  [ "$(curl -sS --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://$HOST_IP:$API_PORT$1")" = ok ]
}
healthz() { [ "$(curl -sk --max-time 2 "$1")" = ok ]; }

# --- PostgreSQL 15 and Redis on the bridge address ---------------------------------------------------------
PG_PASSWORD=$(openssl rand -hex 16)
PG_DIR="$STATE/postgres"
mkdir -p "$PG_DIR/run"
chown -R postgres:postgres "$PG_DIR"
printf '%s\n' "$PG_PASSWORD" >"$PG_DIR/pwfile"
chown postgres "$PG_DIR/pwfile"
chmod 600 "$PG_DIR/pwfile"
runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$PG_DIR/data" -E UTF8 --locale=C \
  --auth-local=trust --auth-host=scram-sha-256 -U postgres --pwfile="$PG_DIR/pwfile" >"$LOGS/initdb.log" 2>&1 ||
  die "initdb failed; see $LOGS/initdb.log"
rm -f "$PG_DIR/pwfile"
touch "$LOGS/postgres.log"
chown postgres "$LOGS/postgres.log"
echo "host all all $ALL_RANGES scram-sha-256" >>"$PG_DIR/data/pg_hba.conf"
# setsid: the server is not in the caller's session, so a Ctrl-C in that terminal does not reach it.
setsid -w runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$PG_DIR/data" -l "$LOGS/postgres.log" -w \
  -o "-c listen_addresses=$HOST_IP -p $PG_PORT -c unix_socket_directories=$PG_DIR/run -c max_connections=$PG_MAX_CONNECTIONS -c fsync=off -c shared_buffers=64MB" \
  start >/dev/null || die "PostgreSQL did not start; see $LOGS/postgres.log"
echo "postgres $(head -1 "$PG_DIR/data/postmaster.pid") $(awk '{print $22}' "/proc/$(head -1 "$PG_DIR/data/postmaster.pid")/stat")" >>"$PIDS"
mkdir -p "$STATE/redis"
start redis redis-server --bind "$HOST_IP" --port "$REDIS_PORT" --save "" --appendonly no --dir "$STATE/redis" \
  --protected-mode no --daemonize no
wait_for "redis" redis bash -c "exec 3<>/dev/tcp/$HOST_IP/$REDIS_PORT"
log "PostgreSQL on $HOST_IP:$PG_PORT (max_connections $PG_MAX_CONNECTIONS), Redis on $HOST_IP:$REDIS_PORT"

# --- control plane -----------------------------------------------------------------------------------------
start etcd "$BIN/etcd" --name=node --data-dir="$STATE/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="node=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state=new \
  --listen-metrics-urls="" --unsafe-no-fsync --log-level=warn
wait_for "etcd" etcd sh -c "curl -sf --max-time 2 http://127.0.0.1:$ETCD_PORT/health | grep -q '\"health\":\"true\"'"

# Bound and advertised on the bridge address: the endpoint reconciler publishes it as kubernetes.default,
# which in-cluster clients (CoreDNS, metrics-server) use. The aggregation flags serve metrics.k8s.io.
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address="$HOST_IP" --advertise-address="$HOST_IP" --secure-port="$API_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
  --enable-aggregator-routing=true \
  --allow-privileged=true --profiling=false --v=1
wait_for "kube-apiserver /readyz" kube-apiserver api_get /readyz
log "kube-apiserver ready on https://$HOST_IP:$API_PORT"

# --controllers='*': 1.37 rejects the cloud controllers by name. No node IPAM: the bridge's host-local
# range is the node's pod range. The HPA controller looks every 5 s instead of 15 (a test node: the HPA
# tier waits on it, and the stack's own stabilization windows still decide when it acts).
start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_OUT" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$PKI/kcm" --controllers='*' \
  --horizontal-pod-autoscaler-sync-period=5s \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-cidr="$CLUSTER_CIDR" --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false \
  --use-service-account-credentials=false --leader-elect=false --profiling=false --v=1
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$KUBECONFIG_OUT" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$PKI/scheduler" \
  --leader-elect=false --profiling=false --v=1

# --- containerd ----------------------------------------------------------------------------------------------
SANDBOX_IMAGE=$(awk '$1 ~ /\/pause:/ { print $1 }' "$TOOLS/node-images/list")
[ -n "$SANDBOX_IMAGE" ] || die "no pause image in $TOOLS/node-images/list"
cat >"$STATE/containerd/config.toml" <<EOF
version = 3
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[debug]
  level = "warn"
[metrics]
  address = ""
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "$STATE/containerd/opt"
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$SANDBOX_IMAGE"
  [plugins.'io.containerd.cri.v1.runtime']
    # root here lacks CAP_SYS_RESOURCE: runc cannot give the sandbox a negative OOM score.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "$(command -v runc)"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["/usr/lib/cni"]
      conf_dir = "$STATE/cni/net.d"
      max_conf_num = 1
EOF
cat >"$STATE/cni/net.d/10-synapse-workers-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "synapse-workers-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$HOST_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
start containerd env PATH="$BIN:$PATH" "$BIN/containerd" --config "$STATE/containerd/config.toml"
CTR=("$BIN/ctr" --address "$CTR_SOCK" -n k8s.io)
wait_for "containerd" containerd "${CTR[@]}" version
log "containerd up; importing images"
while read -r tag tarball; do
  [ -f "$tarball" ] || die "image tarball $tarball is missing: run scripts/node/build-images.sh"
  "${CTR[@]}" images import --snapshotter overlayfs "$tarball" >>"$LOGS/images.log" 2>&1 ||
    die "importing $tarball failed; see $LOGS/images.log"
  # Listed into a variable first: `ctr ... | grep -q` under pipefail fails at random when grep exits early.
  listed=$("${CTR[@]}" images ls -q 2>/dev/null)
  grep -qxF "$tag" <<<"$listed" || die "image $tag missing after import"
done <"$TOOLS/node-images/list"
log "imported $(wc -l <"$TOOLS/node-images/list") images"

# --- kubelet -------------------------------------------------------------------------------------------------
# cgroup v1 (the VM owns the memory controller on a v1 hierarchy): failCgroupV1 false, cgroupfs driver.
# Image GC is off: images cannot be pulled back. Kernel defaults are not protected: the kubelet changes
# vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, and node-down restores them.
cat >"$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $HOST_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CTR_SOCK
clusterDomain: cluster.local
clusterDNS: [$DNS_SVC_IP]
resolvConf: ""
podLogsDir: $STATE/pod-logs
volumePluginDir: $STATE/volume-plugins
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
serializeImagePulls: false
maxPods: 110
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
EOF
start kubelet "$BIN/kubelet" --config="$STATE/kubelet-config.yaml" --kubeconfig="$STATE/kubelet.kubeconfig" \
  --root-dir="$STATE/kubelet" --cert-dir="$PKI/kubelet" --hostname-override="$NODE_NAME" --node-ip="$HOST_IP" --v=1

# --- kube-proxy (nftables) -----------------------------------------------------------------------------------
# conntrack settings 0: leave the kernel's conntrack limits and timeouts as they are.
cat >"$STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $HOST_IP
clusterCIDR: $CLUSTER_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: ["$HOST_IP/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
EOF
start kube-proxy "$BIN/kube-proxy" --config="$STATE/kube-proxy-config.yaml" --v=1

wait_for "kube-controller-manager /healthz" kube-controller-manager healthz "https://127.0.0.1:$KCM_PORT/healthz"
wait_for "kube-scheduler /healthz" kube-scheduler healthz "https://127.0.0.1:$SCHED_PORT/healthz"
wait_for "kubelet /healthz" kubelet healthz "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
wait_for "kube-proxy /healthz" kube-proxy curl -sf --max-time 2 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
node_ready() {
  [ "$("${KUBECTL[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for "node $NODE_NAME Ready" kubelet node_ready
log "node $NODE_NAME Ready"

# --- cluster add-ons: CoreDNS, metrics-server, a default StorageClass ------------------------------------------
image_of() { awk -v n="$1" '$1 ~ n { print $1 }' "$TOOLS/node-images/list"; }
addon() { # FILE : fill in the placeholders and apply
  sed -e "s|@DNS_SVC_IP@|$DNS_SVC_IP|g" -e "s|@COREDNS_IMAGE@|$(image_of /coredns:)|g" \
    -e "s|@METRICS_SERVER_IMAGE@|$(image_of /metrics-server:)|g" "$SCRIPT_DIR/$1" >"$STATE/manifests/$1"
  "${KUBECTL[@]}" apply -f "$STATE/manifests/$1" >>"$LOGS/addons.log" 2>&1 || die "applying $1 failed; see $LOGS/addons.log"
}
addon addons.yaml
if [ "$METRICS_SERVER" = 1 ]; then
  [ -n "$(image_of /metrics-server:)" ] || die "no metrics-server image: run make node-tools (or NODE_METRICS_SERVER=0)"
  addon addons-metrics.yaml
fi
# hostPath volumes for claims (the stack's media claim): world-writable folders, since hostPath volumes do
# not honour fsGroup.
for i in 0 1 2 3 4 5 6 7; do
  mkdir -p "$STATE/pv/pv-$i"
  chmod 0777 "$STATE/pv/pv-$i"
  cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: node-pv-$i}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce, ReadOnlyMany, ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-storage
  hostPath: {path: "$STATE/pv/pv-$i", type: Directory}
EOF
done >"$STATE/manifests/pvs.yaml"
"${KUBECTL[@]}" apply -f "$STATE/manifests/pvs.yaml" >>"$LOGS/addons.log" 2>&1 || die "creating PersistentVolumes failed"
deployment_ready() {
  [ "$("${KUBECTL[@]}" -n kube-system get deployment "$1" -o jsonpath='{.status.readyReplicas}')" = 1 ]
}
wait_for "CoreDNS ready" kubelet deployment_ready coredns
[ "$METRICS_SERVER" = 0 ] || wait_for "metrics-server ready" kubelet deployment_ready metrics-server
wait_for "ServiceAccount default/default" kube-controller-manager "${KUBECTL[@]}" get serviceaccount default -n default
log "CoreDNS$([ "$METRICS_SERVER" = 0 ] || echo " and metrics-server") ready"

# --- what clients need ---------------------------------------------------------------------------------------
cat >"$ENV_OUT" <<EOF
# Written by scripts/node/node-up.sh: where the node's pods reach its PostgreSQL and Redis.
export KUBECONFIG=$KUBECONFIG_OUT
export NODE_PG_HOST=$HOST_IP
export NODE_PG_PORT=$PG_PORT
export NODE_PG_SUPERUSER=postgres
export NODE_PG_PASSWORD=$PG_PASSWORD
export NODE_REDIS_HOST=$HOST_IP
export NODE_REDIS_PORT=$REDIS_PORT
# Service ClusterIPs are routed to the bridge and DNATed by kube-proxy on this host: no prefix needed.
export NODE_EXEC=
EOF
chmod 600 "$ENV_OUT"
for p in $(awk '{print $1}' "$PIDS"); do alive "$p" || die "$p is not running; see $LOGS/$p.log"; done
trap - EXIT INT TERM
log "node ready in $(elapsed)s"
cat <<EOF
  source $ENV_OUT     # KUBECONFIG and NODE_* variables
  $BIN/kubectl get pods -A
  apiserver https://$HOST_IP:$API_PORT, PostgreSQL $HOST_IP:$PG_PORT, Redis $HOST_IP:$REDIS_PORT, logs in $LOGS
  stop with make node-down
EOF
