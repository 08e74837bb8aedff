#!/usr/bin/env bash
# Writes the lock: requirements/*.txt, exact versions with hashes, from the ranges in
# pyproject.toml. pip installs them as they are (--require-hashes), in make setup, CI
# and the images; uv only writes them. Without --upgrade, every version already in a
# lock is kept and only what pyproject.toml changed is resolved again.
#   hack/lock.sh [--upgrade]
#   requirements/dev.txt       every extra and the tools: what make setup installs
#   requirements/worker.txt    the worker image (the library and [metrics])
#   requirements/operator.txt  the operator image ([operator])
# The image locks are resolved under dev.txt as a constraint, so one package has one
# version everywhere.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
uv=${UV:-$root/.venv/bin/uv}
[ -x "$uv" ] || uv=$(command -v uv) || { echo "lock: no uv; run 'make setup' first" >&2; exit 1; }
upgrade=()
for arg in "$@"; do
  case $arg in
    --upgrade) upgrade=(--upgrade) ;;
    *) echo "lock: unknown argument '$arg'; usage: hack/lock.sh [--upgrade]" >&2; exit 1 ;;
  esac
done
# The images and the test machine: CPython 3.11 on x86_64 glibc.
target=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes
        --quiet --custom-compile-command "hack/lock.sh")
"$uv" pip compile "${target[@]}" "${upgrade[@]}" pyproject.toml requirements/tools.in \
  --all-extras -o requirements/dev.txt
"$uv" pip compile "${target[@]}" pyproject.toml requirements/build.in --extra metrics \
  -c requirements/dev.txt -o requirements/worker.txt
"$uv" pip compile "${target[@]}" pyproject.toml requirements/build.in --extra operator \
  -c requirements/dev.txt -o requirements/operator.txt
