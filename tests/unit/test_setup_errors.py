"""A missing prerequisite stops setup with one line naming it and the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_no_go_on_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id", "cat", "env"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    out = _run(["bash", "hack/setup.sh"], env)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "setup: no 'go' on PATH; install Go >= 1.24, or set TASKFLEET_TESTENV_BIN to prebuilt "
        "binaries"]


def test_old_python_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = -V ]; then echo 'Python 3.9.2'; exit 0; fi\n"
                    "exit 1\n")
    fake.chmod(0o755)
    out = _run(["bash", "hack/setup.sh"], {**os.environ, "PYTHON": str(fake)})
    assert out.returncode == 1
    assert out.stderr.strip() == (f"setup: {fake} is Python 3.9.2; taskfleet needs Python >= "
                                  "3.11 (set PYTHON=...)")


def test_module_proxy_out_of_reach(tmp_path: Path) -> None:
    # A proxy on a loopback port where nothing listens.
    env = {**os.environ, "TASKFLEET_TESTENV_CACHE": str(tmp_path / "cache"),
           "GOMODCACHE": str(tmp_path / "gomod"), "GOPROXY": "http://127.0.0.1:9",
           "GOFLAGS": "-mod=mod"}
    env.pop("TASKFLEET_TESTENV_BIN", None)
    out = _run(["bash", "hack/testenv/build.sh"], env)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "testenv: cannot download Go modules for hack/testenv/kube (is the Go module proxy "
        "reachable? check GOPROXY and the network)")


def test_no_module_proxy_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "TASKFLEET_TESTENV_CACHE": str(tmp_path / "cache"), "GOPROXY": "off"}
    env.pop("TASKFLEET_TESTENV_BIN", None)
    out = _run(["bash", "hack/testenv/build.sh"], env)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "go: GOPROXY is 'off', no module proxy; set GOPROXY to one (or set "
        "TASKFLEET_TESTENV_BIN to prebuilt binaries)")


def test_modules_never_come_from_their_source_hosts() -> None:
    """'direct' (fetch from the source host when the proxy fails) is dropped, in either of
    GOPROXY's list forms; the proxies stay in their order."""
    for given, kept in (("http://127.0.0.1:9,direct", "http://127.0.0.1:9"),
                        ("http://127.0.0.1:9|direct", "http://127.0.0.1:9"),
                        ("http://127.0.0.1:9,http://127.0.0.1:10|off",
                         "http://127.0.0.1:9,http://127.0.0.1:10")):
        out = _run(["bash", "-c", ". hack/testenv/goproxy.sh && echo \"$GOPROXY\""],
                   {**os.environ, "GOPROXY": given})
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == kept, given


def test_prebuilt_binaries_must_be_complete(tmp_path: Path) -> None:
    env = {**os.environ, "TASKFLEET_TESTENV_BIN": str(tmp_path)}
    out = _run(["bash", "hack/testenv/build.sh"], env)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"testenv: TASKFLEET_TESTENV_BIN={tmp_path} has no executable "
                                  "'etcd'; put it there or unset the variable to build it")
