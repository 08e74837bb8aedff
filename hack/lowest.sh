#!/usr/bin/env bash
# Runs the unit tests against the lowest releases pyproject.toml's ranges allow for
# the runtime dependencies (uv's lowest-direct resolution), in .venv-lowest: the lower
# bounds users install with are ones the project ran. The test tools come from the lock.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${LOWEST_VENV:-$root/.venv-lowest}
uv="$root/.venv/bin/uv"
[ -x "$uv" ] || { echo "lowest: no .venv/bin/uv; run 'make setup' first" >&2; exit 1; }
reqs=$(mktemp); trap 'rm -f "$reqs"' EXIT
# The runtime extras at their lowest, the test extra as locked.
"$uv" pip compile --quiet --python-version 3.11 --resolution lowest-direct \
  -o "$reqs" - <<<"-e file://$root#egg=taskfleet[operator,metrics,dashboard]"
grep -E '^(pytest|pytest-timeout|pytest-xdist|execnet|hypothesis|packaging|iniconfig|pluggy|sortedcontainers|attrs)==' \
  requirements/dev.txt | sed 's/ .*//' >> "$reqs"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs"
echo "lowest: $(grep -E '^(redis|hiredis|pyyaml|kopf|kubernetes|prometheus-client|aiohttp)==' "$reqs" | paste -sd' ' -)" >&2
# The lock's own check and the Celery client's (celery is a bench extra) do not apply.
TASKFLEET_DEPS=lowest "$venv/bin/python" -m pytest tests/unit -p no:cacheprovider -q \
  -n "${TEST_PROCESSES:-2}"
