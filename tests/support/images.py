"""The images, without a Docker engine: read each Dockerfile and build a virtualenv the
way its build stage does, so the entrypoint's exact command can run here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import ROOT


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    stages: list[str]
    """The FROM lines."""
    pip_target: str
    """What the build stage installs, e.g. "/src[metrics]"."""
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
    pip = next(ln for ln in lines if "pip install" in ln)
    target = re.findall(r'"([^"]+)"', pip)[-1]
    user = next((ln.split(None, 1)[1] for ln in reversed(final) if ln.upper().startswith("USER ")),
                None)
    entry = next(ln for ln in final if ln.upper().startswith("ENTRYPOINT "))
    return Dockerfile(path=path, stages=stages, pip_target=target, final_user=user,
                      entrypoint=json.loads(entry.split(None, 1)[1]))


def build_like_image(dockerfile: Dockerfile, where: Path) -> Path:
    """A virtualenv with the project installed as the image's build stage installs it
    (a regular, non-editable install of the source with the same extras). Returns bin/."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    target = f"{ROOT}[{dockerfile.extras}]" if dockerfile.extras else str(ROOT)
    subprocess.run([str(where / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    target], check=True, cwd=where)
    return where / "bin"
