#!/usr/bin/env bash
# Builds the worker, operator and video-site images from their unchanged
# Dockerfiles without a Docker engine (buildah, podman's storage), on a base
# made here (hack/base-image.sh), since no registry is reachable. Layers are
# cached: a run with nothing changed takes seconds. Installs Debian's buildah,
# podman, runc and debootstrap when they are missing.
#   hack/images.sh [--save]
#   --save   also write each image as an OCI archive under the cache, for
#            `ctr -n k8s.io images import`; only when its image ID changed
#   TASKFLEET_TESTENV_CACHE    cache root (default ~/.cache/taskfleet/testenv)
# podman needs the same settings to run the images here:
#   CONTAINERS_CONF=hack/containers.conf podman run --rm video-site:1.0 --help
set -euo pipefail
#
# Images live in podman's default storage, not in the cache: buildah and podman
# share it with no flags, so `podman images` and `podman run` just work; the
# cache holds only what is cheap to redo (the base's rootfs, OCI archives).
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TASKFLEET_TESTENV_CACHE:-$HOME/.cache/taskfleet/testenv}/images
export CONTAINERS_CONF="$root/hack/containers.conf"
# The Dockerfiles' short FROM names resolve to local storage, never to a registry.
export CONTAINERS_REGISTRIES_CONF="$root/hack/registries.conf"
export PATH="$PATH:/usr/sbin:/sbin"  # runc and debootstrap live there

fail() { echo "images: $*" >&2; exit 1; }

save=false
for arg in "$@"; do
  case $arg in
    --save) save=true ;;
    *) fail "unknown argument '$arg'; usage: hack/images.sh [--save]" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap and podman's system storage); run 'sudo make images'"

missing=()
for tool in buildah podman runc conmon debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || fail "missing ${missing[*]} and there is no apt-get; install buildah, podman, runc and debootstrap by other means"
  "$root/hack/debian.sh" images || fail "could not install buildah, podman, runc and debootstrap (see above)"
  for tool in "${missing[@]}"; do
    command -v "$tool" >/dev/null || fail "'$tool' is still not on PATH after apt-get install; check PATH or install it by hand"
  done
fi

mkdir -p "$cache"
# One run at a time: concurrent test sessions share podman's storage and the cache.
exec 9>"$cache/.lock"
flock 9

start=$SECONDS
"$root/hack/base-image.sh"

build_args=(--isolation chroot --layers --pull=never --force-rm)
# Where TLS leaves through an inspecting proxy, RUN steps (pip) need the host's
# CA bundle. Bound for the build only: the images keep Debian's own bundle.
host_ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$host_ca" ] && build_args+=(-v "$host_ca:$host_ca:ro")

# name | Dockerfile | context. Stored as localhost/NAME: pods on the real node name
# them so (a fully qualified name, found in its containerd as imported).
images=(
  "taskfleet/worker:0.1.0|worker_image/Dockerfile|."
  "taskfleet/operator:0.1.0|operator/Dockerfile|."
  "video-site:1.0|examples/video-site/Dockerfile|examples/video-site"
)

build() {
  (cd "$root" && buildah bud "${build_args[@]}" -f "$dockerfile" -t "$qualified" \
     "$context") >"$log" 2>&1
}

for entry in "${images[@]}"; do
  IFS='|' read -r name dockerfile context <<<"$entry"
  qualified="localhost/$name"
  log="$cache/build-${name//[\/:]/-}.log"
  t0=$SECONDS
  built=true
  build || built=false
  # A RUN step SIGKILLed from outside (seen once on a busy shared machine) is
  # no fault of the build: one more try, said out loud.
  if ! $built && grep -q 'signal: killed' "$log"; then
    echo "images: a RUN step of $name was killed from outside; building it again" >&2
    build && built=true
  fi
  if ! $built; then
    tail -n 25 "$log" >&2
    fail "building $name from $dockerfile failed; full log: $log"
  fi
  id=$(podman image inspect --format '{{.Id}}' "$qualified")
  echo "images: $name ${id:0:12} ($((SECONDS - t0)) s)" >&2
done

# Each edit of the sources leaves the previous build's stages behind, hundreds
# of MB a time. Untagged images that this run's builds did not use go; the
# layer cache of the current sources stays. Parents freed by a removal become
# untagged leaves in turn, hence the passes.
used=$(grep -hoE -- '^--> (Using cache )?[0-9a-f]{11}' "$cache"/build-*.log | grep -oE '[0-9a-f]{11}$' | sort -u)
for _ in 1 2 3 4 5 6 7 8; do
  removed=false
  for id in $(podman images --filter dangling=true --format '{{.ID}}'); do
    grep -qx "${id:0:11}" <<<"$used" && continue
    podman rmi "$id" >/dev/null 2>&1 && removed=true
  done
  $removed || break
done

if $save; then
  for entry in "${images[@]}"; do
    IFS='|' read -r name _ _ <<<"$entry"
    qualified="localhost/$name"
    archive="$cache/${name//[\/:]/-}.oci.tar"
    id=$(podman image inspect --format '{{.Id}}' "$qualified")
    if [ ! -f "$archive" ] || [ "$(cat "$archive.id" 2>/dev/null)" != "$id" ]; then
      rm -f "$archive.id" "$archive.tmp"
      podman save -q --format oci-archive -o "$archive.tmp" "$qualified" \
        || fail "podman save of $qualified to $archive failed"
      mv "$archive.tmp" "$archive"
      echo "$id" >"$archive.id"
    fi
    echo "$archive"
  done
fi
echo "images: ready in $((SECONDS - start)) s (CONTAINERS_CONF=$CONTAINERS_CONF podman images)" >&2
