#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine: Debian's
# redis-server, a virtualenv with the project (editable) and its test tools,
# and the control plane built from Go modules. Each missing prerequisite stops
# it with one line that names it and the fix.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
venv=${VENV:-$root/.venv}

fail() { echo "setup: $*" >&2; exit 1; }

command -v "$python" >/dev/null || fail "no '$python' on PATH; install Python >= 3.11 (or set PYTHON=/path/to/python3.11)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || fail "$python is $("$python" -V 2>&1); taskfleet needs Python >= 3.11 (set PYTHON=...)"
if [ -z "${TASKFLEET_TESTENV_BIN:-}" ]; then
  command -v go >/dev/null || fail "no 'go' on PATH; install Go >= 1.24, or set TASKFLEET_TESTENV_BIN to prebuilt binaries"
fi

if ! command -v redis-server >/dev/null; then
  command -v apt-get >/dev/null || fail "redis-server is missing and there is no apt-get; install redis-server (>= 7) by other means"
  "$root/hack/debian.sh" setup || fail "could not install redis-server; run 'apt-get install redis-server' by hand"
fi

# Exactly the locked versions (requirements/dev.txt, with hashes), then the project
# itself without dependencies and without build isolation, so that its build backend
# comes from the lock too. The stamp makes a warm run skip pip entirely.
lock="$root/requirements/dev.txt"
stamp="$venv/.taskfleet-installed"
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" || fail "could not create a virtualenv at $venv (is python3-venv installed?)"
  echo "setup: installing the locked dependencies (requirements/dev.txt) into $venv" >&2
  pip=("$venv/bin/pip" install -q --disable-pip-version-check)
  "${pip[@]}" --no-deps --require-hashes -r "$lock" \
    || fail "pip could not install requirements/dev.txt (is the package index reachable? if pyproject.toml changed, run hack/lock.sh)"
  "${pip[@]}" --no-deps --no-build-isolation -e "$root" \
    || fail "pip could not install taskfleet itself from $root"
  "$venv/bin/pip" check >&2 || fail "the lock is incomplete (see above); run hack/lock.sh"
  touch "$stamp"
fi
# The repository root on the virtualenv's path, as an editable install puts its
# packages there: the benchmarks and the demo import testenv (the same
# servers and fixtures the tests use) from any working directory.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$root" > "$site/taskfleet-dev.pth"

"$root/hack/testenv/build.sh" >/dev/null
echo "setup: ready ($venv, test binaries in $("$root/hack/testenv/build.sh"))" >&2
