"""A real Prometheus (Debian's ``prometheus`` package, which brings ``promtool``) on a
free loopback port, scraping the targets a test gives it; stopped and removed at the end."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from testenv.processes import ROOT, terminate
from testenv.redis_server import free_port
from testenv.waiting import wait_for


def ensure_installed() -> None:
    """Install Debian's prometheus when missing, as hack/setup.sh installs redis-server."""
    if shutil.which("prometheus") and shutil.which("promtool"):
        return
    if not shutil.which("apt-get"):
        raise RuntimeError("prometheus and promtool are missing and there is no apt-get; "
                           "install Prometheus >= 2.40 by other means")
    done = subprocess.run([str(ROOT / "hack" / "debian.sh"), "prometheus"], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"hack/debian.sh prometheus failed: {done.stderr[-500:]}")


class PrometheusServer:
    """``prometheus`` scraping ``targets`` (job name -> host:port list) every second."""

    def __init__(self, targets: dict[str, list[str]], rule_files: Sequence[Path] = ()) -> None:
        ensure_installed()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="taskfleet-prometheus-"))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]}
                               for job, hosts in targets.items()],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        with open(self.dir / "prometheus.log", "ab") as log:
            self.process = subprocess.Popen(
                ["prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("prometheus ready", self._ready, timeout=60, describe=self.log)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector (or a scalar as one sample without labels)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "vector":
            result: list[dict[str, Any]] = data["result"]
            return result
        return [{"metric": {}, "value": data["result"]}]

    def targets_up(self) -> dict[str, str]:
        """Each active target's job and its health ('up', 'down', 'unknown')."""
        active = self.api("targets")["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}

    def alerts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return found

    def log(self) -> str:
        path = self.dir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        terminate(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
"""Its Go module carries the monitoring.coreos.com CRDs (example/prometheus-operator-crd)."""


def prometheus_operator_crds(*kinds: str) -> list[Path]:
    """The CRD files of those plural kinds (servicemonitors, ...), from the Go module proxy
    (no registry, no release download); cached in Go's module cache."""
    done = subprocess.run(["go", "mod", "download", "-json", PROMETHEUS_OPERATOR],
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"go mod download {PROMETHEUS_OPERATOR} failed (is the Go module "
                           f"proxy reachable?): {info.get('Error') or done.stderr[-500:]}")
    crds = Path(info["Dir"]) / "example" / "prometheus-operator-crd"
    return [crds / f"monitoring.coreos.com_{kind}.yaml" for kind in kinds]


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    ensure_installed()
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd)


__all__ = ["PrometheusServer", "ensure_installed", "prometheus_operator_crds", "promtool"]
