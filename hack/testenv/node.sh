#!/usr/bin/env bash
# One real node beside kwok's fake ones: Debian's containerd and a kubelet
# built with the control plane, joined to the local cluster NAME as
# real-node-0 (label and taint taskfleet.dev/real-node=true). Pods go there
# with the toleration, a nodeSelector and hostNetwork: true.
#
#   node.sh up   [NAME]               start it and wait until Ready (harmless when up)
#   node.sh down [NAME]               stop it; nothing stays running, mounted or routed
#   node.sh load-image ARCHIVE [NAME] import an OCI or docker archive into its containerd
#   node.sh status [NAME]             key=value lines: node, ports, pids, directories
#
# Needs root (mounts, cgroups, routes). Missing Debian packages are installed.
# KWOK_WORKDIR is kwokctl's work directory (default ~/.kwok); the node keeps
# its configuration, logs and containerd's images and state in the cluster's
# directory there, under node/. Its unix sockets and the kubelet's root dir go
# to a short /run/taskfleet-testenv/nodes/ID instead: a socket's path has at
# most 107 bytes, and a test's temporary KWOK_WORKDIR can be deeper than that.
#
# Isolation, and why:
# - containerd, its shims and the kubelet share a private mount namespace:
#   their mounts (overlay rootfs, the kubelet's bind mount of its root dir,
#   volumes) never appear on the host and vanish with the last process.
# - In that namespace the kubelet sees its expected kernel tunables as files
#   bound over /proc/sys/..., so it does not rewrite the host's kernel.panic,
#   vm.overcommit_memory... (it would otherwise, for good), and /var/log is a
#   directory of the node's own (the kubelet's fixed /var/log/containers).
# - Pod cgroups live under a cgroup root of the node's own, so two clusters'
#   nodes do not share /kubepods.
# - The Service CIDR is blackholed: there is no kube-proxy, and the Service
#   range leads off this machine. Pods use the host network and reach the API
#   server at 127.0.0.1 (KUBERNETES_SERVICE_HOST/PORT, see testenv/node.py).
#   Nodes of several clusters share a route (the same range) through a registry
#   under a host-wide lock, and every 'up' puts a missing route back.
# - No registry: containerd resolves every registry to a closed port on loopback
#   (certs.d/_default), so a missing image fails at once and no pull leaves here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
self="$here/node.sh"

NODE=real-node-0
LABEL=taskfleet.dev/real-node
PAUSE_IMAGE=localhost/taskfleet-testenv/pause:1
# Where containerd is told every registry is: loopback, a port nothing serves.
NO_REGISTRY=http://127.0.0.1:1

fail() { echo "node: $*" >&2; exit 1; }
log() { echo "node: $*" >&2; }

# Internal entry points, run inside the node's mount namespace.
case "${1:-}" in
  _containerd)  # DIR: set up the namespace, then become containerd
    dir=$2
    # The namespace starts as a copy of the host's mounts. Drop the copies of
    # other engines' container mounts (podman's overlays...) so this namespace
    # does not keep them alive after their owner unmounts them. By place, not
    # by type: / itself may be an overlay.
    awk '$2 ~ "^/(var/lib|run)/(containers|docker|containerd|kubelet)(/|$)" || $2 ~ "^/run/netns(/|$)" {print $2}' \
      /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    for f in "$dir"/sysctl/*; do
      [ -e "$f" ] || continue
      mount --bind "$f" "/proc/sys/$(basename "$f" | tr . /)"
    done
    mount --bind "$dir/var-log" /var/log
    echo $$ >"$dir/containerd.pid"
    exec containerd --config "$dir/containerd.toml"
    ;;
  _exec)  # PIDFILE CMD...: record the pid, then become CMD
    echo $$ >"$2"; shift 2; exec "$@"
    ;;
esac

action=${1:?usage: node.sh up|down|status [NAME] | load-image ARCHIVE [NAME]}
bin=$("$here/build.sh")
export PATH="$bin:$PATH:/usr/sbin:/sbin"  # runc and ip live there
archive=""
if [ "$action" = load-image ]; then
  archive=${2:?usage: node.sh load-image ARCHIVE [NAME]}; shift
fi
name=${2:-taskfleet}
cdir="${KWOK_WORKDIR:-$HOME/.kwok}/clusters/$name"
dir="$cdir/node"
# A short id of this node for host-wide names (cgroup root, bridge, route
# registry, runtime directory).
id=$(printf '%s' "$dir" | sha256sum | cut -c1-8)
run="/run/taskfleet-testenv/nodes/$id"
sock="$run/containerd.sock"
cgroup_name="taskfleet-node-$id"
registry=/run/taskfleet-testenv/blackholes

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
kctl() { kubectl --kubeconfig "$cdir/kubeconfig.yaml" --request-timeout=10s "$@"; }

# The cgroup hierarchies of this host (v1 controllers and named ones, or the v2 mount).
cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts; }

ensure_prerequisites() {
  [ "$(id -u)" -eq 0 ] || fail "the real node needs root (containerd and the kubelet mount, make cgroups and routes); run as root or set TASKFLEET_REAL_NODE=0"
  local missing=() pkg
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v openssl >/dev/null || missing+=(openssl)
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null || fail "missing ${missing[*]} and there is no apt-get; install them by other means (or set TASKFLEET_REAL_NODE=0)"
    "$here/../debian.sh" "${missing[@]}" || fail "could not install ${missing[*]}; run 'apt-get install ${missing[*]}' by hand"
  fi
  for pkg in containerd containerd-shim-runc-v2 ctr runc ip unshare nsenter openssl kubectl kubelet; do
    command -v "$pkg" >/dev/null || fail "'$pkg' is not on PATH"
  done
  cgroup_mounts | grep -q . || fail "no cgroup hierarchy is mounted under /sys/fs/cgroup; the kubelet needs one"
}

# The pause image as an OCI archive, built once per version of pause.go: a
# static Go binary in a one-layer FROM-scratch image, written by hand (no
# image builder needed).
pause_archive() {
  local cache src_sum out tmp layer layer_size cfg cfg_size man man_size
  cache=${TASKFLEET_TESTENV_CACHE:-$HOME/.cache/taskfleet/testenv}
  # Keyed by the program and by this function (the image's layout).
  src_sum=$({ cat "$here/node/pause.go"; declare -f pause_archive; } | sha256sum | cut -c1-12)
  out="$cache/pause-$src_sum/pause.oci.tar"
  if [ -f "$out" ]; then echo "$out"; return; fi
  mkdir -p "$cache"
  exec 8>"$cache/.pause.lock"  # one builder at a time (concurrent test sessions)
  flock 8
  if [ -f "$out" ]; then echo "$out"; return; fi
  tmp=$(mktemp -d)
  mkdir -p "$tmp/rootfs" "$tmp/oci/blobs/sha256"
  if [ -n "${TASKFLEET_TESTENV_BIN:-}" ] && [ -x "$TASKFLEET_TESTENV_BIN/pause" ]; then
    cp "$TASKFLEET_TESTENV_BIN/pause" "$tmp/rootfs/pause"
  else
    command -v go >/dev/null || fail "no 'go' on PATH to build the pause image; install Go or put a static 'pause' binary in TASKFLEET_TESTENV_BIN"
    (cd "$tmp" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" \
       -o "$tmp/rootfs/pause" "$here/node/pause.go") || fail "could not build hack/testenv/node/pause.go"
  fi
  blob() {  # FILE -> prints "sha256:<hex> <size>" and stores the blob
    local d; d=$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$tmp/oci/blobs/sha256/$d"
    echo "sha256:$d $(stat -c %s "$1")"
  }
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 --mode=0755 -cf "$tmp/layer.tar" -C "$tmp/rootfs" pause
  read -r layer layer_size < <(blob "$tmp/layer.tar")
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$layer" >"$tmp/config.json"
  read -r cfg cfg_size < <(blob "$tmp/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "$cfg" "$cfg_size" "$layer" "$layer_size" >"$tmp/manifest.json"
  read -r man man_size < <(blob "$tmp/manifest.json")
  # A full name in ref.name: ctr import and podman load both keep it as is.
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$man" "$man_size" "$PAUSE_IMAGE" >"$tmp/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci/oci-layout"
  rm -rf "$cache"/pause-*/  # the images of older versions of pause.go
  mkdir -p "$(dirname "$out")"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 -cf "$out.tmp" -C "$tmp/oci" oci-layout index.json blobs
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
  echo "$out"
}

apiserver_port() {
  sed -n 's#^ *server: *https://127\.0\.0\.1:\([0-9]*\).*#\1#p' "$cdir/kubeconfig.yaml" | head -1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The Service range(s) of the API server: the default ServiceCIDR object, or
# the API server's flag, or its built-in default.
service_cidrs() {
  local cidrs
  cidrs=$(kctl get servicecidrs kubernetes -o jsonpath='{.spec.cidrs[*]}' 2>/dev/null || true)
  if [ -z "$cidrs" ]; then
    cidrs=$(grep -o 'service-cluster-ip-range=[^" ]*' "$cdir/kwok.yaml" 2>/dev/null | head -1 | cut -d= -f2 | tr , ' ' || true)
  fi
  echo "${cidrs:-10.0.0.0/24}"
}

# The registry of blackhole routes: one file per running node listing the ranges
# it relies on. A route goes when the last node that lists it stops. Every read
# and change of the registry and the routes happens under one host-wide lock,
# so a node starting while another stops can never be left without its route.
registry_locked() {  # CMD...: run CMD holding the registry's lock
  mkdir -p "$registry"
  exec 7>"$registry.lock"
  flock 7
  "$@"  # a failure exits the script, which releases the lock
  exec 7>&-
}

# The ranges are read before taking the lock: the API server may be slow to answer.
add_blackholes() { registry_locked add_blackholes_locked $(service_cidrs); }
remove_blackholes() { registry_locked remove_blackholes_locked; }

# Also what an already running node does on every 'up': a route that went
# missing (deleted by hand, or by an older node.sh without the lock) comes back.
add_blackholes_locked() {  # CIDR...
  local cidr family
  : >"$registry/$id.new"
  for cidr in "$@"; do
    family=-4; [[ $cidr == *:* ]] && family=-6
    echo "$cidr" >>"$registry/$id.new"
    if ip "$family" route show exact "$cidr" type blackhole | grep -q .; then continue; fi
    # 'add', not 'replace': never overwrite a real route of the host's own.
    ip "$family" route add blackhole "$cidr" || {
      rm -f "$registry/$id.new"
      fail "could not add a blackhole route for the Service range $cidr (is there a route for it already? 'ip route show $cidr')"
    }
    log "blackhole route for the Service range $cidr added"
  done
  mv "$registry/$id.new" "$registry/$id"
  cp "$registry/$id" "$dir/blackholes"
}

remove_blackholes_locked() {
  [ -f "$registry/$id" ] || return 0
  local cidr family other f
  while read -r cidr; do
    other=""
    for f in "$registry"/*; do
      [ -e "$f" ] && [ "$f" != "$registry/$id" ] && [[ $f != *.new ]] && grep -qxF "$cidr" "$f" && other=1
    done
    [ -n "$other" ] && continue  # another node still relies on it
    family=-4; [[ $cidr == *:* ]] && family=-6
    ip "$family" route del blackhole "$cidr" 2>/dev/null || true
  done <"$registry/$id"
  rm -f "$registry/$id"
}

write_configs() {
  local kport=$1 api=$2 f want have runc_bin
  mkdir -p "$dir"/{containerd/root,containerd/state,pod-logs,manifests,var-log,cni/net.d,cni/ipam,sysctl,pki,volume-plugins} \
    "$run/kubelet"
  runc_bin=$(command -v runc)

  # The kubelet rewrites these host-wide unless they already have its values.
  rm -f "$dir"/sysctl/*
  for want in vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1 \
              kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000; do
    f=${want%%=*}
    have=$(cat "/proc/sys/$(tr . / <<<"$f")" 2>/dev/null || echo "${want#*=}")
    [ "$have" = "${want#*=}" ] || echo "${want#*=}" >"$dir/sysctl/$f"
  done

  sed -e "s#@DIR@#$dir#g" -e "s#@SOCK@#$sock#g" -e "s#@PAUSE@#$PAUSE_IMAGE#g" -e "s#@RUNC@#$runc_bin#g" \
    "$here/node/containerd.toml.in" >"$dir/containerd.toml"
  # The catch-all registry host: _default applies to every registry without a
  # directory of its own (there is none), and 'server' is set too, else
  # containerd would fall back to the registry named in the image reference.
  rm -rf "$dir/certs.d"; mkdir -p "$dir/certs.d/_default"
  cat >"$dir/certs.d/_default/hosts.toml" <<EOF
# Written by hack/testenv/node.sh: no registry is reachable from the test node.
server = "$NO_REGISTRY"

[host."$NO_REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
  sed -e "s#@DIR@#$dir#g" -e "s#@BRIDGE@#tfn$id#g" \
    "$here/node/cni.conflist.in" >"$dir/cni/net.d/10-taskfleet.conflist"
  sed -e "s#@DIR@#$dir#g" -e "s#@SOCK@#$sock#g" -e "s#@PORT@#$kport#g" -e "s#@CA@#$cdir/pki/ca.crt#g" \
    -e "s#@CGROUP@#/$cgroup_name#g" -e "s#@LABEL@#$LABEL#g" \
    "$here/node/kubelet.yaml.in" >"$dir/kubelet.yaml"

  # The kubelet's identity: a client certificate from the cluster's CA, which
  # the Node authorizer accepts (group system:nodes, user system:node:NAME).
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/pki/kubelet.key" -subj "/O=system:nodes/CN=system:node:$NODE" 2>/dev/null \
  | openssl x509 -req -CA "$cdir/pki/ca.crt" -CAkey "$cdir/pki/ca.key" -days 30 \
      -set_serial "0x$(openssl rand -hex 16)" \
      -extfile <(printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n') \
      -out "$dir/pki/kubelet.crt" 2>/dev/null \
    || fail "could not sign the kubelet's certificate with $cdir/pki/ca.key"
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:$api", certificate-authority: "$cdir/pki/ca.crt"}}]
users: [{name: $NODE, user: {client-certificate: "$dir/pki/kubelet.crt", client-key: "$dir/pki/kubelet.key"}}]
contexts: [{name: $NODE, context: {cluster: local, user: $NODE}}]
current-context: $NODE
EOF
}

make_cgroups() {
  local m
  for m in $(cgroup_mounts); do
    mkdir -p "$m/$cgroup_name"
  done
}

# Every process of the node: in its cgroups (containers) or its mount namespace.
node_pids() {
  local m
  for m in $(cgroup_mounts); do
    [ ! -d "$m/$cgroup_name" ] || find "$m/$cgroup_name" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  done
  if [ -n "$pinned" ] && [ -f "$dir/mntns" ]; then  # "mnt:[INODE]", as a find pattern
    find /proc/[0-9]*/ns/mnt -maxdepth 0 -lname "$(sed 's/[][*?\\]/\\&/g' "$dir/mntns")" 2>/dev/null | cut -d/ -f3
  fi
  true
}

# The number of a mount namespace is reused as soon as the namespace is gone: a
# node starting while this one stops may get it. So down() finds processes by it
# only while it holds the namespace open (fd 6), pinned through containerd or the
# kubelet while they still run in it; else by the node's cgroups alone.
pinned=""
pin_namespace() {
  local p want
  want=$(cat "$dir/mntns" 2>/dev/null) || return 0
  for p in $(cat "$dir/containerd.pid" "$dir/kubelet.pid" 2>/dev/null); do
    [ "$(readlink "/proc/$p/ns/mnt" 2>/dev/null)" = "$want" ] || continue
    exec 6<"/proc/$p/ns/mnt" 2>/dev/null || continue
    if [ "$(readlink /dev/fd/6)" = "$want" ]; then pinned=1; return 0; fi
    exec 6<&-
  done
}
unpin_namespace() { [ -z "$pinned" ] || exec 6<&-; pinned=""; }

wait_gone() {  # SECONDS PID...: true once none of the pids lives
  local deadline=$((SECONDS + $1)) p; shift
  while ((SECONDS < deadline)); do
    for p in "$@"; do kill -0 "$p" 2>/dev/null && { sleep 0.1; continue 2; }; done
    return 0
  done
  return 1
}

stop_pidfile() {  # PIDFILE SECONDS: SIGTERM, then SIGKILL after SECONDS
  [ -f "$1" ] || return 0
  local pid; pid=$(cat "$1")
  if kill -TERM "$pid" 2>/dev/null && ! wait_gone "$2" "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone 5 "$pid" || true
  fi
  rm -f "$1"
}

down() {
  pin_namespace
  if alive "$dir/kubelet.pid" && [ -f "$cdir/kubeconfig.yaml" ]; then
    # Pods first, while the kubelet can still stop their containers.
    kctl delete pods --all-namespaces --field-selector "spec.nodeName=$NODE" \
      --wait=true --timeout=20s >/dev/null 2>&1 || true
  fi
  stop_pidfile "$dir/kubelet.pid" 10
  local deleting=()
  if [ -f "$cdir/kubeconfig.yaml" ]; then
    # Node and Lease together, once the kubelet cannot register it again: a
    # Node without a live Lease holder is fair game for kwok (were it to manage
    # all nodes), and a Lease alone is litter. Raw paths skip API discovery.
    kctl delete --raw "/api/v1/nodes/$NODE" >/dev/null 2>&1 6<&- & deleting+=($!)
    kctl delete --raw "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/$NODE" >/dev/null 2>&1 6<&- & deleting+=($!)
  fi
  # What the kubelet left running (containers, sandboxes), then containerd and its shims.
  local pids _
  for _ in 1 2 3 4 5; do
    pids=$(node_pids | grep -vx "$(cat "$dir/containerd.pid" 2>/dev/null || echo none)" || true)
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
  stop_pidfile "$dir/containerd.pid" 10
  # Again until none is left: on a loaded machine a shim may still be starting a
  # process into the namespace while the first ones die.
  local deadline=$((SECONDS + 15))
  while pids=$(node_pids) && [ -n "$pids" ] && ((SECONDS < deadline)); do
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_gone 2 $pids || true
  done
  [ -z "$pids" ] || log "processes still running after SIGKILL: $pids"
  unpin_namespace
  rm -f "$dir/mntns"
  ((${#deleting[@]} == 0)) || wait "${deleting[@]}" || true
  local m
  for m in $(cgroup_mounts); do
    [ ! -d "$m/$cgroup_name" ] || find "$m/$cgroup_name" -depth -type d -exec rmdir {} + 2>/dev/null \
      || log "could not remove the cgroup $m/$cgroup_name (still in use?)"
  done
  remove_blackholes
  ! ip link show "tfn$id" >/dev/null 2>&1 || ip link del "tfn$id" || true
  # The mounts lived in the node's own namespace, gone with its last process;
  # this only catches leftovers on the host (say, from a hand-run kubelet).
  awk -v d="$dir/" -v r="$run/" 'index($2, d) == 1 || index($2, r) == 1 {print $2}' /proc/mounts \
    | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$run"
}

# Poll CMD until it succeeds; on timeout, or when PID dies, show LOG's end,
# take the node down again and fail with WHAT.
await() {  # DEADLINE PID LOG WHAT CMD...
  local deadline=$1 pid=$2 logf=$3 what=$4; shift 4
  until "$@"; do
    if ((SECONDS >= deadline)) || ! kill -0 "$pid" 2>/dev/null; then
      tail -5 "$logf" >&2; down; fail "$what (log: $logf)"
    fi
    sleep 0.1
  done
}

containerd_serves() { ctr --address "$sock" version >/dev/null 2>&1; }
registered() { kctl get node "$NODE" >/dev/null 2>&1; }

# Ready, and schedulable: the node controller has lifted its not-ready taint.
ready() {
  [ "$(kctl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}' 2>/dev/null)" = "True $LABEL" ]
}

up() {
  [ -f "$cdir/kubeconfig.yaml" ] || fail "no cluster '$name' in ${KWOK_WORKDIR:-$HOME/.kwok}; start it with cluster.sh up $name"
  grep -q 'manage-nodes-with-annotation-selector' "$cdir/kwok.yaml" \
    || fail "cluster '$name' was made before kwok was limited to its fake nodes and would take over the real node; recreate it: cluster.sh down $name && cluster.sh up $name"
  if alive "$dir/containerd.pid" && alive "$dir/kubelet.pid" && ready; then
    add_blackholes  # the route may have gone while it ran: check it, restore it
    log "$NODE is up already"; return 0
  fi
  ensure_prerequisites
  down  # whatever half of a node a crash left behind
  local t0=$EPOCHREALTIME api kport pause cpid kpid deadline
  api=$(apiserver_port); [ -n "$api" ] || fail "cannot read the API server's port from $cdir/kubeconfig.yaml"
  kport=$(free_port)
  pause=$(pause_archive)
  write_configs "$kport" "$api"
  make_cgroups
  add_blackholes
  rm -f "$dir/containerd.pid" "$dir/kubelet.pid"

  setsid unshare --mount --propagation private -- "$self" _containerd "$dir" \
    </dev/null >>"$dir/containerd.log" 2>&1 &
  cpid=$!  # setsid, unshare and the script exec into containerd: the same pid
  await $((SECONDS + 30)) "$cpid" "$dir/containerd.log" "containerd did not start" \
    containerd_serves
  readlink "/proc/$cpid/ns/mnt" >"$dir/mntns"
  ctr --address "$sock" -n k8s.io images import "$pause" >/dev/null \
    || { down; fail "could not import the pause image into containerd"; }

  setsid nsenter --mount="/proc/$cpid/ns/mnt" -- "$self" _exec "$dir/kubelet.pid" \
    kubelet --config="$dir/kubelet.yaml" --kubeconfig="$dir/kubeconfig" --root-dir="$run/kubelet" \
      --hostname-override="$NODE" --node-labels="$LABEL=true" --cloud-provider=external \
    </dev/null >>"$dir/kubelet.log" 2>&1 &
  kpid=$!
  # With --cloud-provider=external the kubelet leaves the node's addresses to
  # someone else: us. It refuses a loopback --node-ip, yet the API server
  # reaches it (logs, exec) at the node's InternalIP, which must be 127.0.0.1.
  deadline=$((SECONDS + 60))
  await "$deadline" "$kpid" "$dir/kubelet.log" "the kubelet did not register $NODE" registered
  kctl patch node "$NODE" --subresource=status --type=merge \
    -p '{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}' >/dev/null \
    || { down; fail "could not set the InternalIP of $NODE to 127.0.0.1"; }
  kctl taint node "$NODE" node.cloudprovider.kubernetes.io/uninitialized- >/dev/null 2>&1 || true
  await "$deadline" "$kpid" "$dir/kubelet.log" "$NODE did not become Ready" ready
  log "$NODE Ready in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}') s (kubelet on 127.0.0.1:$kport, containerd $sock)"
}

status() {
  echo "node=$NODE"
  echo "label=$LABEL=true"
  echo "dir=$dir"
  echo "run_dir=$run"
  echo "containerd_socket=$sock"
  echo "pause_image=$PAUSE_IMAGE"
  echo "registry=$NO_REGISTRY"
  echo "pause_archive=$(pause_archive)"
  [ -f "$cdir/kubeconfig.yaml" ] && echo "apiserver_port=$(apiserver_port)"
  [ -f "$dir/kubelet.yaml" ] && echo "kubelet_port=$(sed -n 's/^port: *//p' "$dir/kubelet.yaml")"
  alive "$dir/containerd.pid" && echo "containerd_pid=$(cat "$dir/containerd.pid")"
  alive "$dir/kubelet.pid" && echo "kubelet_pid=$(cat "$dir/kubelet.pid")"
  [ -f "$dir/mntns" ] && echo "mount_namespace=$(cat "$dir/mntns")"
  [ -f "$dir/blackholes" ] && echo "blackholes=$(paste -sd, "$dir/blackholes")"
  echo "cgroup_root=/$cgroup_name"
}

load_image() {
  [ -f "$archive" ] || fail "no image archive at $archive"
  alive "$dir/containerd.pid" || fail "the real node of cluster '$name' is not running; start it with node.sh up $name"
  ctr --address "$sock" -n k8s.io images import "$archive"
}

case "$action" in
  up) up ;;
  down) down ;;
  status) status ;;
  load-image) load_image ;;
  *) echo "usage: node.sh up|down|status [NAME] | load-image ARCHIVE [NAME]" >&2; exit 2 ;;
esac
