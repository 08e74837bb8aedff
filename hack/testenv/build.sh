#!/usr/bin/env bash
# Builds the test environment's binaries from their Go modules into a cache
# outside the repository, once per machine. Prints the bin directory.
#   TASKFLEET_TESTENV_BIN=/dir  use prebuilt binaries there instead (like envtest's
#                               KUBEBUILDER_ASSETS); nothing is built.
#   TASKFLEET_TESTENV_CACHE     cache root (default ~/.cache/taskfleet/testenv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
need=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kwok kwokctl helm)

fail() { echo "testenv: $*" >&2; exit 1; }

if [ -n "${TASKFLEET_TESTENV_BIN:-}" ]; then
  for b in "${need[@]}"; do
    [ -x "$TASKFLEET_TESTENV_BIN/$b" ] || fail "TASKFLEET_TESTENV_BIN=$TASKFLEET_TESTENV_BIN has no executable '$b'; put it there or unset the variable to build it"
  done
  echo "$TASKFLEET_TESTENV_BIN"; exit 0
fi

command -v go >/dev/null || fail "no 'go' on PATH; install Go >= 1.24 (or set TASKFLEET_TESTENV_BIN to prebuilt binaries)"
cache=${TASKFLEET_TESTENV_CACHE:-$HOME/.cache/taskfleet/testenv}
bin="$cache/kube-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}/bin"
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly"

have() { for b in "$@"; do [ -x "$bin/$b" ] || return 1; done; }

probe_proxy() {
  # shellcheck source=goproxy.sh
  . "$here/goproxy.sh"
  # One clear line instead of a page of go errors when the module proxy is out of reach.
  (cd "$here/$1" && go mod download >/dev/null 2>&1) || fail "cannot download Go modules for hack/testenv/$1 (is the Go module proxy reachable? check GOPROXY and the network)"
}

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
kube_ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ld="$kube_ld -X $pkg.gitVersion=${KUBE_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor} -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
if ! have kube-apiserver kube-controller-manager kube-scheduler kubectl; then
  probe_proxy kube
  echo "testenv: building kubernetes ${KUBE_VERSION} control plane (first time only: about 8 minutes on 2 cores)" >&2
  (cd "$here/kube" && go build -trimpath -ldflags "$kube_ld" -o "$bin/" \
     k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
     k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
fi
if ! have kubelet; then
  # The kubelet of the real test node (hack/testenv/node.sh), from the same
  # module set. Built on its own so caches made before it only add it.
  probe_proxy kube
  echo "testenv: building kubelet ${KUBE_VERSION} (first time only: under a minute more)" >&2
  (cd "$here/kube" && go build -trimpath -ldflags "$kube_ld" -o "$bin/" k8s.io/kubernetes/cmd/kubelet)
fi
if ! have etcd; then
  # Debian's etcd 3.4 lacks the watch-progress support the API server's
  # streaming lists need, so etcd is built at the release Kubernetes tests with.
  probe_proxy etcd
  echo "testenv: building etcd ${ETCD_VERSION}" >&2
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
fi
if ! have kwok kwokctl; then
  probe_proxy kwok
  echo "testenv: building kwok ${KWOK_VERSION}" >&2
  (cd "$here/kwok" && go build -trimpath -ldflags "-s -w" -o "$bin/" \
     sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl)
fi
if ! have helm; then
  probe_proxy helm
  echo "testenv: building helm ${HELM_VERSION}" >&2
  (cd "$here/helm" && go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" -o "$bin/" helm.sh/helm/v3/cmd/helm)
fi
echo "$bin"
