#!/usr/bin/env bash
# The local platform: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) on 127.0.0.1 with free ports, generated certificates and RBAC, plus kwok playing
# the nodes and pods.
#
#   scripts/platform.sh up     [--state DIR] [--nodes N]   start (or reuse) it; prints the kubeconfig path
#                                                         (N fake nodes of 110 pods, default 3)
#   scripts/platform.sh down   [--state DIR]               stop it and delete its state
#   scripts/platform.sh status [--state DIR]               exit 0 when its API server answers
#   scripts/platform.sh env    [--state DIR]               print `export KUBECONFIG=...`
#
# The state directory (default: .local/platform in the checkout) holds certificates, the kubeconfigs
# (`kubeconfig` for people, `operator.kubeconfig` for the operator), etcd's data, pid files, each
# component's log (`DIR/logs/*.log`) and an audit log of the operator's writes (`DIR/logs/audit.log`).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/versions.env"
CACHE="${AUTHENTIFY_CACHE:-$HOME/.cache/authentify}"
BIN="$CACHE/bin"
export PATH="$CACHE/path:$PATH"
STATE="${AUTHENTIFY_PLATFORM_STATE:-$ROOT/.local/platform}"
NODES="${AUTHENTIFY_PLATFORM_NODES:-3}"
CMD="${1:-}"
shift || true
while [[ $# -gt 0 ]]; do
  case "$1" in
    --state) STATE="$2"; shift 2 ;;
    --nodes) NODES="$2"; shift 2 ;;
    *) echo "platform.sh: unknown option $1" >&2; exit 3 ;;
  esac
done
KUBECONFIG_PATH="$STATE/kubeconfig"
LOGS="$STATE/logs"

log() { printf '[platform] %s\n' "$*" >&2; }
die() { printf '[platform] error: %s\n' "$*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds or the deadline passes.
wait_for() {
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${secs}s waiting for $what; last lines of the logs:"
      tail -n 20 "$LOGS"/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

api_healthy() {
  [[ -f "$KUBECONFIG_PATH" ]] && kubectl --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz >/dev/null 2>&1
}

start_bg() { # start_bg NAME COMMAND...: runs COMMAND detached, logs to LOGS/NAME.log, pid in STATE/NAME.pid
  local name="$1"; shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pid"
}

gen_certs() {
  local d="$STATE/pki"
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=authentify-local-ca" 2>/dev/null
    sign() { # sign NAME SUBJECT [SAN]
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      local ext="$1.ext"
      printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
      [[ -n "${3:-}" ]] && printf 'subjectAltName=%s\n' "$3" >>"$ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 \
        -extfile "$ext" 2>/dev/null
      rm -f "$1.csr" "$ext"
    }
    sign apiserver "/CN=kube-apiserver" \
      "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign admin "/O=system:masters/CN=authentify-admin"
    sign controller-manager "/CN=system:kube-controller-manager"
    sign scheduler "/CN=system:kube-scheduler"
    sign kwok "/O=system:masters/CN=kwok"
    # The operator's own identity (admin rights until the chart's RBAC is used), so that the audit
    # log can tell its writes apart.
    sign operator "/O=system:masters/CN=authentify-operator"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

write_kubeconfig() { # write_kubeconfig FILE USER
  local file="$1" user="$2" pki="$STATE/pki"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: authentify-local
  cluster:
    server: https://127.0.0.1:$(cat "$STATE/apiserver.port")
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $pki/$user.crt
    client-key: $pki/$user.key
contexts:
- name: authentify-local
  context: {cluster: authentify-local, user: $user}
current-context: authentify-local
EOF
}

create_nodes() {
  local kc="$KUBECONFIG_PATH"
  for i in $(seq 0 $((NODES - 1))); do
    kubectl --kubeconfig "$kc" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: zone-$((i % 3))
spec: {}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 100Gi}
  capacity: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 100Gi}
  nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: fake, kubeProxyVersion: fake}
EOF
  done
}

up() {
  if api_healthy; then
    log "already running ($KUBECONFIG_PATH)"
    echo "$KUBECONFIG_PATH"
    return 0
  fi
  [[ -d "$STATE" ]] && down_quiet
  for b in etcd-$ETCD_VERSION kube-apiserver-$KUBERNETES_VERSION kube-controller-manager-$KUBERNETES_VERSION \
    kube-scheduler-$KUBERNETES_VERSION kwok-$KWOK_VERSION; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing: run scripts/build-platform.sh (or scripts/setup.sh) first"
  done
  [[ -d "$CACHE/gateway-api-$GATEWAY_API_VERSION" ]] ||
    die "the Gateway API CRDs are missing: run scripts/build-platform.sh (or scripts/setup.sh) first"
  mkdir -p "$STATE" "$LOGS"
  gen_certs
  local etcd_port etcd_peer api_port cm_port sched_port kwok_port
  etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port)
  cm_port=$(free_port); sched_port=$(free_port); kwok_port=$(free_port)
  echo "$api_port" >"$STATE/apiserver.port"

  log "starting etcd on 127.0.0.1:$etcd_port"
  start_bg etcd "$BIN/etcd-$ETCD_VERSION" --name local --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "local=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --quota-backend-bytes 4294967296 \
    --log-level warn
  wait_for "etcd" 60 curl -fsS "http://127.0.0.1:$etcd_port/health"

  log "starting kube-apiserver on 127.0.0.1:$api_port"
  local pki="$STATE/pki"
  start_bg kube-apiserver "$BIN/kube-apiserver-$KUBERNETES_VERSION" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --requestheader-client-ca-file "$pki/ca.crt" \
    --requestheader-allowed-names front-proxy-client --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group --requestheader-extra-headers-prefix X-Remote-Extra- \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount,LimitRanger,DefaultStorageClass,ResourceQuota \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/16 --allow-privileged=true \
    --audit-policy-file "$ROOT/scripts/audit-policy.yaml" --audit-log-path "$LOGS/audit.log" \
    --audit-log-maxsize 100 --audit-log-maxbackup 1 \
    --endpoint-reconciler-type none --profiling=false --v 1
  write_kubeconfig "$KUBECONFIG_PATH" admin
  write_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
  write_kubeconfig "$STATE/scheduler.kubeconfig" scheduler
  write_kubeconfig "$STATE/kwok.kubeconfig" kwok
  write_kubeconfig "$STATE/operator.kubeconfig" operator
  wait_for "kube-apiserver /readyz" 120 api_healthy

  log "starting kube-controller-manager and kube-scheduler"
  start_bg kube-controller-manager "$BIN/kube-controller-manager-$KUBERNETES_VERSION" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$cm_port" --leader-elect=false \
    --use-service-account-credentials=true --service-account-private-key-file "$pki/sa.key" \
    --root-ca-file "$pki/ca.crt" --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --controllers '*,-node-ipam-controller,-persistentvolume-attach-detach-controller' \
    --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 --v 1
  start_bg kube-scheduler "$BIN/kube-scheduler-$KUBERNETES_VERSION" \
    --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --v 1

  log "starting kwok"
  start_bg kwok "$BIN/kwok-$KWOK_VERSION" --kubeconfig "$STATE/kwok.kubeconfig" \
    --config "$ROOT/scripts/kwok/stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --server-address "127.0.0.1:$kwok_port" --node-lease-duration-seconds 40 \
    --cidr 10.244.0.0/16 --node-ip 10.99.0.1
  create_nodes
  log "installing the Gateway API $GATEWAY_API_VERSION CRDs (standard channel)"
  kubectl --kubeconfig "$KUBECONFIG_PATH" apply --server-side -f "$CACHE/gateway-api-$GATEWAY_API_VERSION/" >/dev/null
  wait_for "$NODES Ready nodes" 120 all_nodes_ready
  wait_for "the default ServiceAccount" 120 kubectl --kubeconfig "$KUBECONFIG_PATH" -n default get serviceaccount default
  log "up: export KUBECONFIG=$KUBECONFIG_PATH"
  echo "$KUBECONFIG_PATH"
}

all_nodes_ready() {
  local ready
  ready=$(kubectl --kubeconfig "$KUBECONFIG_PATH" get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)
  [[ "$ready" -ge "$NODES" ]]
}

down_quiet() {
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    local pidfile="$STATE/$name.pid"
    [[ -f "$pidfile" ]] || continue
    local pid; pid=$(cat "$pidfile")
    kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$STATE"
}

case "$CMD" in
  up) up ;;
  down) down_quiet; log "stopped and cleaned $STATE" ;;
  status) api_healthy ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_PATH" ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 3 ;;
esac
