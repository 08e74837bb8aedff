#!/usr/bin/env bash
# Installs the Debian packages of the named groups of hack/debian-packages.txt that
# are missing, in one apt-get call that waits for dpkg's lock (parallel test processes
# and scripts may ask at once), then warns for each installed version that differs
# from the one tested.
#   hack/debian.sh NAME...      a group (setup, images, node, tests; "all" for every
#                               group) or one package of the list
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
list="$root/hack/debian-packages.txt"
[ $# -gt 0 ] || { echo "usage: hack/debian.sh GROUP... (groups: $(awk '!/^#/ && NF {print $1}' "$list" | sort -u | paste -sd' ' -), all)" >&2; exit 2; }

wanted=() missing=()
while read -r group package tested; do
  case "$group" in ''|'#'*) continue ;; esac
  for g in "$@"; do
    if [ "$g" = all ] || [ "$g" = "$group" ] || [ "$g" = "$package" ]; then
      wanted+=("$package=$tested")
      dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
    fi
  done
done < "$list"
[ ${#wanted[@]} -gt 0 ] || { echo "debian: no group or package named $* in hack/debian-packages.txt" >&2; exit 2; }

if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "debian: missing ${missing[*]} and there is no apt-get; install them by other means" >&2; exit 1; }
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "debian: installing ${missing[*]}" >&2
  log="${TMPDIR:-/tmp}/taskfleet-apt.log"
  apt_get() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
  { apt_get update -qq && apt_get install -y -qq "${missing[@]}"; } >"$log" 2>&1 \
    || { echo "debian: apt-get could not install ${missing[*]} (no Debian mirror, or no root?); see $log" >&2; exit 1; }
fi
for pair in "${wanted[@]}"; do
  package=${pair%%=*} tested=${pair#*=}
  have=$(dpkg-query -W -f '${Version}' "$package" 2>/dev/null || true)
  [ "$have" = "$tested" ] || echo "debian: $package is $have here; tested with $tested (hack/debian-packages.txt)" >&2
done
