# Shared by node-up.sh and node-down.sh (sourced, not run): the node's names, ranges, ports and paths, and
# the helpers both need. One place, so the script that undoes a change always knows what was changed.
#
# Addresses (none is used by any real network; all live on a bridge this run creates, or inside pod
# network namespaces): 198.18.0.0/15 is reserved for benchmarking (RFC 2544).
#   198.18.0.0/24   pod addresses on the bridge swnode0 (host-local IPAM); the host side is 198.18.0.1
#   198.19.0.0/16   Service ClusterIPs (kubernetes 198.19.0.1, cluster DNS 198.19.0.10), routed to the bridge
# On 198.18.0.1 (the bridge, so pods reach it): apiserver 16443, kubelet 16250, PostgreSQL 15432,
# Redis 16379. On 127.0.0.1: etcd 12379/12380, controller-manager 11257, scheduler 11259, kubelet
# healthz 16248, kube-proxy metrics/healthz 16249/16256. The kwok cluster (cluster-up.sh) uses 2xxxx.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRIPT_DIR="$REPO_ROOT/scripts/node"
TOOLS="$REPO_ROOT/.tools"
BIN="$TOOLS/bin"
STATE="$TOOLS/node"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
ORIG="$STATE/orig-state"          # what the machine looked like before the run; node-down restores it
KUBECONFIG_OUT="$STATE/kubeconfig"
ENV_OUT="$STATE/env"
CTR_SOCK="$STATE/containerd/containerd.sock"

NODE_NAME=synapse-node
BRIDGE=swnode0
HOST_IP=198.18.0.1
POD_SUBNET=198.18.0.0/24
CLUSTER_CIDR=198.18.0.0/16
SERVICE_CIDR=198.19.0.0/16
KUBERNETES_SVC_IP=198.19.0.1
DNS_SVC_IP=198.19.0.10
ALL_RANGES=198.18.0.0/15
NFT_TABLE=synapse_workers_node   # our own table: pods may reach only the ranges above

ETCD_PORT=12379
ETCD_PEER_PORT=12380
API_PORT=16443
KCM_PORT=11257
SCHED_PORT=11259
KUBELET_PORT=16250
KUBELET_HEALTHZ_PORT=16248
PROXY_METRICS_PORT=16249
PROXY_HEALTHZ_PORT=16256
PG_PORT=15432
REDIS_PORT=16379

# Paths the runtime or the CNI plugins hard-code outside the tools folder: removed after a run when they did
# not exist before it.
HOST_PATHS=(/run/containerd /var/lib/cni /var/log/containers /var/log/pods /run/netns /var/run/netns
  /var/lib/kubelet /var/lib/containerd /etc/cni /opt/cni /opt/containerd /run/runc /etc/containerd)
# Kernel settings the kubelet, kube-proxy or the bridge may change; restored from the record after a run.
SYSCTL_PREFIXES='^(vm\.|kernel\.panic|kernel\.keys\.|net\.ipv4\.ip_forward|net\.ipv4\.conf\.(all|default|eth0|lo)\.|net\.bridge\.|net\.netfilter\.nf_conntrack_(max|tcp|udp|buckets)|net\.core\.somaxconn|fs\.inotify\.|fs\.file-max)'
# nftables tables the run may create (kube-proxy's, the kubelet's iptables-nft canaries, ours): deleted after
# a run when they did not exist before it. Anything else is never touched.
NFT_CANDIDATES='^table (ip|ip6|inet) (kube-proxy|mangle|nat|filter|synapse_workers_node)$'

KUBECTL=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT")
export KUBECACHEDIR="$STATE/kubectl-cache"

running() { # PID STARTTIME : that process is alive (not a zombie) and is the one recorded
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  local -a f
  read -r -a f <<<"${stat##*) }"
  [ "${f[0]}" != Z ] && [ "${f[19]}" = "$2" ]
}
