"""The project's images: built here without a Docker engine (``hack/images.sh``) and run
with podman in tests; also the Dockerfile reader, and the virtualenv built the way an
image's build stage installs the project (for tests that run the operator's entrypoint
as a process)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testenv.processes import ROOT

CONTAINERS_CONF = ROOT / "hack" / "containers.conf"
"""podman's settings for this kind of machine (rlimits, runtime); images.sh uses it too."""
WORKER_IMAGE = "localhost/taskfleet/worker:0.1.0"
OPERATOR_IMAGE = "localhost/taskfleet/operator:0.1.0"
EXAMPLE_IMAGE = "localhost/video-site:1.0"
"""The video site's image: the worker image plus examples/video-site/{video,web} in /app."""
TEST_LABEL = "dev.taskfleet.test"
"""Carried by every container a test starts, so a leftover one is easy to find."""


def build_images() -> None:
    """Build (or, with nothing changed, confirm from the layer cache) all three images."""
    out = subprocess.run([str(ROOT / "hack" / "images.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"hack/images.sh failed ({out.returncode}):\n{out.stderr[-4000:]}")


def oci_archives() -> dict[str, Path]:
    """The images as OCI archives (``hack/images.sh --save``; re-saved only when an image
    changed), by their fully qualified names (``localhost/taskfleet/worker:0.1.0``, and so
    on: what pods on the real node ask its containerd for). Each
    archive carries that name, so ``ctr -n k8s.io images import PATH`` needs no --base-name."""
    out = subprocess.run([str(ROOT / "hack" / "images.sh"), "--save"], capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"hack/images.sh --save failed ({out.returncode}):\n"
                           f"{out.stderr[-4000:]}")
    paths = [Path(line) for line in out.stdout.splitlines()]
    return {read_oci_archive(path)[0]: path for path in paths}


def read_oci_archive(path: Path) -> tuple[str, str]:
    """The image name an OCI archive carries, and its image ID (its config's digest, which
    is podman's image ID)."""
    with tarfile.open(path) as tar:
        def blob(name: str) -> Any:
            member = tar.extractfile(name)
            assert member is not None, f"{path}: no {name}"
            return json.load(member)

        entry = blob("index.json")["manifests"][0]
        manifest = blob("blobs/" + entry["digest"].replace(":", "/"))
    name: str = entry["annotations"]["org.opencontainers.image.ref.name"]
    return name, manifest["config"]["digest"].removeprefix("sha256:")


def podman(*args: str, check: bool = True, timeout: float = 120.0
           ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    out = subprocess.run(["podman", *args], capture_output=True, text=True, env=env,
                         timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out


def storage_mounts() -> list[str]:
    """Mounts of podman's storage now (overlay layers, shm of containers)."""
    with open("/proc/mounts") as f:
        return [line for line in f if "containers/storage" in line]


class Container:
    """One detached container on the host's network; ``remove`` always cleans it up."""

    def __init__(self, image: str, args: Sequence[str] = (), *,
                 options: Sequence[str] = ()) -> None:
        self.name = f"taskfleet-test-{uuid.uuid4().hex[:10]}"
        self.argv = ["run", "--detach", "--name", self.name, "--label", f"{TEST_LABEL}=1",
                     "--network=host", *options, image, *args]
        self.id = ""
        self.merged_dir = ""

    def start(self) -> Container:
        self.id = podman(*self.argv).stdout.strip()
        self.merged_dir = podman("inspect", "--format", "{{.GraphDriver.Data.MergedDir}}",
                                 self.name).stdout.strip()
        return self

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside, as the image's user (what a kubelet's exec probe does)."""
        return podman("exec", self.name, *command, check=False)

    def signal(self, name: str) -> None:
        podman("kill", "--signal", name, self.name)

    def wait(self, timeout: float) -> int:
        """The exit code, once the container has stopped."""
        return int(podman("wait", self.name, timeout=timeout).stdout.strip())

    def state(self) -> str:
        return podman("inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()

    def logs(self) -> str:
        out = podman("logs", self.name, check=False)
        return (out.stdout + out.stderr)[-6000:]

    def remove(self) -> None:
        """Remove it, stopped or not, and check that nothing of it stays mounted."""
        podman("rm", "--force", "--time", "0", self.name, check=False)
        assert podman("container", "exists", self.name, check=False).returncode == 1, \
            f"container {self.name} still exists"
        left = [m for m in storage_mounts()
                if (self.id and self.id in m) or (self.merged_dir and self.merged_dir in m)]
        assert not left, f"container {self.name} left mounts behind: {left}"


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    stages: list[str]
    """The FROM lines."""
    pip_target: str
    """What the build stage installs, e.g. "/src[metrics]"."""
    lock: str
    """The lock the build stage installs first, relative to the repository root."""
    final_user: str | None
    entrypoint: list[str]

    @property
    def extras(self) -> str:
        m = re.search(r"\[(.*)\]", self.pip_target)
        return m.group(1) if m else ""


def read_dockerfile(path: Path) -> Dockerfile:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages = [ln for ln in lines if ln.upper().startswith("FROM ")]
    final = lines[max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")):]
    pips = [ln for ln in lines if "pip install" in ln]
    lock = next(m.group(1) for ln in pips if (m := re.search(r"-r /src/(\S+)", ln)))
    target = next(re.findall(r'"([^"]+)"', ln)[-1] for ln in pips if '"' in ln)
    user = next((ln.split(None, 1)[1] for ln in reversed(final) if ln.upper().startswith("USER ")),
                None)
    entry = next(ln for ln in final if ln.upper().startswith("ENTRYPOINT "))
    return Dockerfile(path=path, stages=stages, pip_target=target, lock=lock,
                      final_user=user,
                      entrypoint=json.loads(entry.split(None, 1)[1]))


def build_like_image(dockerfile: Dockerfile, where: Path) -> Path:
    """A virtualenv with the project installed as the image's build stage installs it
    (its lock, then a regular, non-editable install of the source with the same extras).
    Returns bin/."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    pip = [str(where / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    lock = str(ROOT / dockerfile.lock)
    subprocess.run([*pip, "--no-deps", "--require-hashes", "-r", lock], check=True, cwd=where)
    target = f"{ROOT}[{dockerfile.extras}]" if dockerfile.extras else str(ROOT)
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", target], check=True, cwd=where)
    return where / "bin"
