"""The lock (requirements/*.txt, written by hack/lock.sh) is what runs: exact versions with
hashes, one version per package across the locks, every range in pyproject.toml satisfied,
and the virtualenv holding exactly the locked versions."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from testenv.skips import skip_for_opt_out

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ["dev.txt", "worker.txt", "operator.txt"]


def pins(lock: str) -> dict[str, str]:
    """name -> version of every package in a lock; each must carry a hash."""
    text = (ROOT / "requirements" / lock).read_text()
    entries = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)((?: \\\n\s+--hash=sha256:[0-9a-f]{64})+)",
                         text, flags=re.M)
    listed = re.findall(r"^[A-Za-z0-9]", text, flags=re.M)
    assert len(entries) == len(listed), f"{lock}: an entry without an exact version or hash"
    return {canonicalize_name(name.split("[")[0]): v for name, v, _ in entries}


def test_every_lock_has_exact_versions_with_hashes() -> None:
    for lock in LOCKS:
        assert len(pins(lock)) > 5, lock


def test_one_version_per_package_in_every_lock() -> None:
    dev = pins("dev.txt")
    for lock in ("worker.txt", "operator.txt"):
        for name, v in pins(lock).items():
            assert dev.get(name) == v, f"{name}=={v} in {lock} but {dev.get(name)} in dev.txt"


def test_the_locks_satisfy_the_ranges_in_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in project["optional-dependencies"].values()
               for r in extra]
    dev = pins("dev.txt")
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in dev, f"{req} is not in requirements/dev.txt; run hack/lock.sh"
        assert req.specifier.contains(dev[name], prereleases=True), \
            f"requirements/dev.txt has {name}=={dev[name]}, outside {req}; run hack/lock.sh"
    for lock, extra in (("worker.txt", "metrics"), ("operator.txt", "operator")):
        runtime = [Requirement(r) for r in
                   [*project["dependencies"], *project["optional-dependencies"][extra]]]
        missing = [r.name for r in runtime if canonicalize_name(r.name) not in pins(lock)]
        assert not missing, f"{lock} lacks {missing}; run hack/lock.sh"


@pytest.mark.parametrize("name", sorted(pins("dev.txt")))
def test_the_virtualenv_holds_the_locked_version(name: str) -> None:
    skip_for_opt_out("TASKFLEET_DEPS", "the lock")
    try:
        installed = version(name)
    except PackageNotFoundError:
        pytest.fail(f"{name} is in requirements/dev.txt but not installed; run make setup")
    assert installed == pins("dev.txt")[name], \
        f"{name} {installed} is installed, the lock says {pins('dev.txt')[name]}; run make setup"
