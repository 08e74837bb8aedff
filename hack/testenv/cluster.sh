#!/usr/bin/env bash
# The local control plane: etcd, kube-apiserver (RBAC on), controller-manager,
# scheduler and kwok, run by kwokctl's binary runtime on loopback, with three
# fake nodes on which Deployments get Running, Ready pods, and one real node
# (containerd and a kubelet, hack/testenv/node.sh) for what pods really do.
#
#   cluster.sh up   [NAME] [--images]   start (or restart) it; prints the kubeconfig path
#   cluster.sh down [NAME]              remove it
#
# --images (what `make cluster-up` passes) also builds the project's images
# (hack/images.sh, layer-cached) and loads them onto the real node, where pods
# find them under their local names (localhost/taskfleet/worker:0.1.0, ...);
# `make example-up` then runs the video-site example there.
#
# KUBECONFIG selects the kubeconfig that gets the context kwok-NAME (default
# ~/.kube/config); KWOK_WORKDIR where kwokctl keeps the cluster (default ~/.kwok).
# TASKFLEET_REAL_NODE=0 leaves the real node out (it needs root).
# TASKFLEET_SERVICE_CIDR gives a new cluster's Services that range instead of the
# API server's default (the real node blackholes it, see node.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
usage="usage: cluster.sh up [NAME] [--images] | down [NAME]"
action=${1:?$usage}; shift
name=taskfleet
images=false
for arg in "$@"; do
  case $arg in
    --images) images=true ;;
    -*) echo "cluster: unknown option '$arg'; $usage" >&2; exit 2 ;;
    *) name=$arg ;;
  esac
done
bin=$("$here/build.sh")
export PATH="$bin:$PATH"
kubeconfig=${KUBECONFIG:-$HOME/.kube/config}
pki="${KWOK_WORKDIR:-$HOME/.kwok}/clusters/$name/pki"
real_node=${TASKFLEET_REAL_NODE:-1}
service_range=()
[ -z "${TASKFLEET_SERVICE_CIDR:-}" ] \
  || service_range=(--extra-args "kube-apiserver=service-cluster-ip-range=$TASKFLEET_SERVICE_CIDR")

case "$action" in
  up)
    # One control plane starts at a time on this machine: kwokctl picks its
    # components' ports by looking for free ones, and two clusters created at
    # once picked the same ports and never came up. Held until it serves.
    exec 9>"${TMPDIR:-/tmp}/taskfleet-testenv-kwokctl.lock"
    flock 9
    if kwokctl get clusters 2>/dev/null | grep -qx "$name"; then
      kwokctl start cluster --name "$name" >&2 9>&-
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
        "${service_range[@]}" \
        --wait 120s >&2 9>&-  # its components must not hold the lock
    fi
    # ...and until each component listens: the next cluster's kwokctl counts a port
    # as free until it is bound, and a loaded machine binds some after the API is up.
    ports=$(sed -n 's/^ *\(etcdPeerPort\|etcdPort\|kubeApiserverPort\|kubeControllerManagerPort\|kubeSchedulerPort\|kwokControllerPort\): *\([0-9][0-9]*\)$/\2/p' \
      "${KWOK_WORKDIR:-$HOME/.kwok}/clusters/$name/kwok.yaml" 2>/dev/null || true)
    deadline=$((SECONDS + 60))
    for port in $ports; do
      until ! command -v ss >/dev/null || ss -Hltn "sport = :$port" | grep -q . \
          || ((SECONDS >= deadline)); do
        sleep 0.2
      done
    done
    exec 9>&-
    kubectl --kubeconfig "$kubeconfig" --context "kwok-$name" apply -f "$here/nodes.yaml" >&2
    [ "$real_node" = 0 ] || "$here/node.sh" up "$name" >&2
    if $images && [ "$real_node" != 0 ]; then
      # Built (or found in the layer cache), saved as OCI archives, imported into the
      # node's containerd: no registry is involved.
      archives=$("$root/hack/images.sh" --save)
      loaded=()
      for archive in $archives; do
        imported=$("$here/node.sh" load-image "$archive" "$name")
        loaded+=($(sed -n 's/^unpacking \([^ ]*\) .*/\1/p' <<<"$imported"))
      done
      echo "cluster: on real-node-0 (imagePullPolicy: Never): ${loaded[*]}" >&2
    fi
    echo "$kubeconfig"
    ;;
  down)
    # The node first: its kubelet needs the API server to stop its pods.
    "$here/node.sh" down "$name" >&2 || true
    # And what `make example-up` started beside the cluster, its redis-server.
    pidfile="${KWOK_WORKDIR:-$HOME/.kwok}/clusters/$name/video-site/redis.pid"
    [ ! -f "$pidfile" ] || kill "$(cat "$pidfile")" 2>/dev/null || true
    kwokctl delete cluster --name "$name" --kubeconfig "$kubeconfig" >&2 || true
    ;;
  *)
    echo "$usage" >&2; exit 2 ;;
esac
