#!/usr/bin/env bash
# The local control plane: etcd, kube-apiserver (RBAC on), controller-manager,
# scheduler and kwok, run by kwokctl's binary runtime on loopback, with three
# fake nodes on which Deployments get Running, Ready pods, and one real node
# (containerd and a kubelet, hack/testenv/node.sh) for what pods really do.
#
#   cluster.sh up   [NAME]   start (or restart) it; prints the kubeconfig path
#   cluster.sh down [NAME]   remove it
#
# KUBECONFIG selects the kubeconfig that gets the context kwok-NAME (default
# ~/.kube/config); KWOK_WORKDIR where kwokctl keeps the cluster (default ~/.kwok).
# TASKFLEET_REAL_NODE=0 leaves the real node out (it needs root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
action=${1:?usage: cluster.sh up|down [NAME]}
name=${2:-taskfleet}
bin=$("$here/build.sh")
export PATH="$bin:$PATH"
kubeconfig=${KUBECONFIG:-$HOME/.kube/config}
pki="${KWOK_WORKDIR:-$HOME/.kwok}/clusters/$name/pki"
real_node=${TASKFLEET_REAL_NODE:-1}

case "$action" in
  up)
    if kwokctl get clusters 2>/dev/null | grep -qx "$name"; then
      kwokctl start cluster --name "$name" >&2
    else
      kwokctl create cluster --name "$name" --config "$here/kwokctl.yaml" \
        --kubeconfig "$kubeconfig" \
        --etcd-binary "$bin/etcd" \
        --kube-apiserver-binary "$bin/kube-apiserver" \
        --kube-controller-manager-binary "$bin/kube-controller-manager" \
        --kube-scheduler-binary "$bin/kube-scheduler" \
        --kwok-controller-binary "$bin/kwok" \
        --extra-args "kube-apiserver=kubelet-client-certificate=$pki/admin.crt" \
        --extra-args "kube-apiserver=kubelet-client-key=$pki/admin.key" \
        --wait 120s >&2
    fi
    kubectl --kubeconfig "$kubeconfig" --context "kwok-$name" apply -f "$here/nodes.yaml" >&2
    [ "$real_node" = 0 ] || "$here/node.sh" up "$name" >&2
    echo "$kubeconfig"
    ;;
  down)
    # The node first: its kubelet needs the API server to stop its pods.
    "$here/node.sh" down "$name" >&2 || true
    kwokctl delete cluster --name "$name" --kubeconfig "$kubeconfig" >&2 || true
    ;;
  *)
    echo "usage: cluster.sh up|down [NAME]" >&2; exit 2 ;;
esac
