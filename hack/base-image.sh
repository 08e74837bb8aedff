#!/usr/bin/env bash
# Makes the Dockerfiles' base, python:3.11.10-slim-bookworm, in podman's storage
# as localhost/python:3.11.10-slim-bookworm (hack/registries.conf points the short
# name there) when it is not there already. No registry is reachable
# here, so it is Debian bookworm (debootstrap, from the mirror apt already
# uses) with Debian's Python 3.11 laid out where the official image has it:
# python, python3, pip and pip3 in /usr/local/bin, CMD python3, LANG=C.UTF-8.
# The root filesystem is cached as a tarball, so a re-import skips debootstrap.
#   TASKFLEET_TESTENV_CACHE    cache root (default ~/.cache/taskfleet/testenv)
#   TASKFLEET_DEBIAN_MIRROR    mirror URI for debootstrap (default: from apt's sources)
# Expects CONTAINERS_CONF to be set by the caller (hack/images.sh does).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base=localhost/python:3.11.10-slim-bookworm
cache=${TASKFLEET_TESTENV_CACHE:-$HOME/.cache/taskfleet/testenv}/images

fail() { echo "base-image: $*" >&2; exit 1; }

if podman image exists "$base"; then
  exit 0
fi

# The recipe's own hash names the tarball: editing this file rebuilds the base.
recipe=$(sha256sum "$here/base-image.sh" | cut -c1-12)
rootfs_tar="$cache/python-3.11.10-slim-bookworm.$recipe.rootfs.tar"

# The first enabled Debian archive entry (not -security/-updates) in apt's own
# sources, in either the one-line or the deb822 format.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {
           i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
           if ($(i + 1) ~ /^(bookworm|trixie|forky|sid|stable|testing|unstable)$/) { print $i; exit }
         }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'function flush() {
           if (types ~ /(^| )deb( |$)/ && enabled != "no" &&
               suites ~ /(^| )(bookworm|trixie|forky|sid|stable|testing|unstable)( |$)/) {
             split(uris, u, " "); print u[1]; found = 1
           }
           types = uris = suites = enabled = ""
         }
         /^[ \t]*$/ { flush(); if (found) exit; next }
         /^Types:/   { sub(/^Types:[ \t]*/, "");   types = $0 }
         /^URIs:/    { sub(/^URIs:[ \t]*/, "");    uris = $0 }
         /^Suites:/  { sub(/^Suites:[ \t]*/, "");  suites = $0 }
         /^Enabled:/ { sub(/^Enabled:[ \t]*/, ""); enabled = tolower($0) }
         END { if (!found) flush() }' "$f"
  done
}

if [ ! -f "$rootfs_tar" ]; then
  command -v debootstrap >/dev/null || fail "debootstrap is missing; run 'apt-get install debootstrap' (hack/images.sh installs it)"
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || fail "Debian's archive keyring is missing; run 'apt-get install debian-archive-keyring'"
  mirror=${TASKFLEET_DEBIAN_MIRROR:-$(apt_mirror | head -n1)}
  [ -n "$mirror" ] || fail "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/; set TASKFLEET_DEBIAN_MIRROR to one"
  mkdir -p "$cache"
  dir=$(mktemp -d "$cache/rootfs.XXXXXX")
  # debootstrap mounts /proc and /sys inside the target; a failed run can leave them.
  cleanup() {
    grep -o " $dir/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$dir"
  }
  trap cleanup EXIT
  echo "base-image: debootstrap bookworm with Debian's python3 (first time only: about a minute)" >&2
  # ca-certificates, netbase and tzdata are in the official slim image too; the
  # operator's schedules need tzdata's zone files.
  debootstrap --variant=minbase --components=main \
      --include=python3,python3-venv,python3-pip,ca-certificates,netbase,tzdata \
      bookworm "$dir" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || fail "debootstrap failed (is the Debian mirror reachable?); see $cache/debootstrap.log"
  for name in python python3; do ln -sf /usr/bin/python3 "$dir/usr/local/bin/$name"; done
  for name in pip pip3; do ln -sf /usr/bin/pip3 "$dir/usr/local/bin/$name"; done
  # The official image lets pip install into the system Python; Debian marks it
  # externally managed (PEP 668), which would refuse a Dockerfile's `pip install`.
  rm -f "$dir"/usr/lib/python3*/EXTERNALLY-MANAGED
  # Slim as Debian's slim images are: no manuals, docs or translations (about
  # 50 MB), now and for packages a Dockerfile installs later.
  cat >"$dir/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$dir/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/info/*
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  # Nothing of the build host stays in the image: podman provides these at run time.
  : >"$dir/etc/resolv.conf"
  : >"$dir/etc/hostname"
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
         "$dir"/var/log/*.log "$dir"/var/log/apt/* "$dir"/dev/* "$dir"/proc/* "$dir"/sys/* "$dir"/run/*
  mkdir -p "$dir/var/lib/apt/lists/partial"
  tar -C "$dir" --numeric-owner -cf "$rootfs_tar.tmp" .
  rm -f "$cache"/python-3.11.10-slim-bookworm.*.rootfs.tar "$cache/debootstrap.log"
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  cleanup
  trap - EXIT
fi

echo "base-image: importing $rootfs_tar as $base" >&2
podman import -q \
  --change 'CMD ["python3"]' \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --message "debootstrap bookworm minbase with Debian's python3 (recipe $recipe)" \
  "$rootfs_tar" "$base" >/dev/null \
  || fail "podman import of $rootfs_tar failed; remove it to rebuild it"
