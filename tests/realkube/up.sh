#!/usr/bin/env bash
# Starts a real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (RBAC, TokenRequest) and
# kube-controller-manager (garbage collector, namespace, service-account and token controllers).
#
#   tests/realkube/up.sh DIR [--watch-pid PID] [--remove-dir]
#
# DIR receives the certificates, etcd's data, the components' logs and `admin.kubeconfig`; the file
# `DIR/ready` appears once /readyz answers. It runs until SIGINT/SIGTERM, until a component exits, or
# (with --watch-pid) until process PID is gone — then it stops everything it started, and with
# --remove-dir deletes DIR. There is no
# kubelet or scheduler: `cdkube node --kubeconfig DIR/admin.kubeconfig` plays both.
set -euo pipefail

usage="usage: up.sh DIR [--watch-pid PID] [--remove-dir]"
dir=${1:?$usage}
shift
watch_pid=
remove_dir=
while [ $# -gt 0 ]; do
    case $1 in
    --watch-pid) watch_pid=${2:?--watch-pid needs a pid}; shift 2 ;;
    --remove-dir) remove_dir=1; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
done
here=$(cd "$(dirname "$0")" && pwd)
bin=$("$here/build.sh")
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -f "$dir/ready"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- certificates: one CA; the API server's serving cert; client certs for the admin (system:masters)
# and for the API server's calls to kubelets; an RSA key pair for service-account tokens.
certs() {
    local pki=$dir/pki
    mkdir -p "$pki" && cd "$pki"
    [ -f ca.crt ] && return 0
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=realkube-ca \
        -keyout ca.key -out ca.crt 2>/dev/null
    issue apiserver /CN=kube-apiserver \
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    issue admin "/O=system:masters/CN=realkube-admin" "extendedKeyUsage=clientAuth"
    issue kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    cd - >/dev/null
}

# issue NAME SUBJECT EXTENSION: a key and a CA-signed certificate.
issue() {
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
        -extfile <(echo "$3") -out "$1.crt" 2>/dev/null
    rm "$1.csr"
}

kubeconfig() {
    local pki=$dir/pki
    cat >"$dir/admin.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: realkube
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$pki/admin.crt")
    client-key-data: $(base64 -w0 "$pki/admin.key")
contexts:
- name: realkube
  context: {cluster: realkube, user: admin, namespace: default}
current-context: realkube
KUBECONFIG
}

pids=()
stop() {
    trap - EXIT INT TERM
    # Reverse order: controllers, then the API server, then etcd.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    rm -f "$dir/ready"
    if [ -n "$remove_dir" ]; then rm -rf "$dir"; fi
}
trap stop EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

certs
pki=$dir/pki
etcd_port=$(free_port)
peer_port=$(free_port)
apiserver_port=$(free_port)

"$bin" etcd --name=realkube --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="realkube=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync --log-level=warn >"$dir/etcd.log" 2>&1 &
pids+=($!)

"$bin" kube-apiserver --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$apiserver_port" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" --client-ca-file="$pki/ca.crt" \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --kubelet-client-certificate="$pki/kubelet-client.crt" --kubelet-client-key="$pki/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --endpoint-reconciler-type=none \
    --profiling=false >"$dir/kube-apiserver.log" 2>&1 &
pids+=($!)
kubeconfig

"$bin" kube-controller-manager --kubeconfig="$dir/admin.kubeconfig" --secure-port=0 --leader-elect=false \
    --controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --profiling=false >"$dir/kube-controller-manager.log" 2>&1 &
pids+=($!)

alive() {
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "realkube: a component exited; the logs are in $dir" >&2
            tail -n 20 "$dir"/*.log >&2
            return 1
        fi
    done
}

for i in $(seq 600); do
    alive || exit 1
    if kubectl --kubeconfig="$dir/admin.kubeconfig" get --raw /readyz >/dev/null 2>&1; then break; fi
    [ "$i" = 600 ] && { echo "realkube: /readyz did not answer ok within 60s" >&2; exit 1; }
    sleep 0.1
done
touch "$dir/ready"
echo "realkube: ready at https://127.0.0.1:$apiserver_port; KUBECONFIG=$dir/admin.kubeconfig" >&2

while alive; do
    if [ -n "$watch_pid" ] && ! kill -0 "$watch_pid" 2>/dev/null; then exit 0; fi
    sleep 1
done
exit 1
