"""A runtime celery pool on the real node: the Deployment's own command and probe run
``celery worker`` in containers of the generic worker image, and a burst sent by Celery's
client takes the pool from zero to real containers and back.

The worker image has no Celery; a user's image would. Here the pinned Celery
libraries (copied from this virtualenv, no download) and the test's Celery app reach the
containers through the pod's /tmp volume, a hostPath in place of its emptyDir, with PATH
and PYTHONPATH pointing there."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from celery import Celery
from packaging.requirements import Requirement

from testenv.cluster import Cluster
from testenv.images import WORKER_IMAGE, oci_archives
from testenv.node import RealNode
from testenv.operator import OperatorProcess
from testenv.resources import FAST_SCALING, Pool, task_queue, worker_pool
from testenv.waiting import wait_for
from tests.integration.apps import celery_tasks

IN_POD = "/tmp"
"""Where the pod mounts its tmp volume (deployment.py)."""


def requirements(name: str, extras: frozenset[str] = frozenset(), seen: set[str] | None = None
                 ) -> set[str]:
    """The distribution and everything it needs here (with ``extras``), installed here."""
    seen = set() if seen is None else seen
    key = re.sub(r"[-_.]+", "-", name).lower()
    visit = f"{key}[{','.join(sorted(extras))}]"  # kombu, then kombu[redis], differ
    if visit in seen:
        return seen
    seen.update((visit, key))
    for text in importlib.metadata.requires(name) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate({"extra": e})
                                          for e in (*extras, "")):
            continue  # another extra, another Python, another platform
        try:
            requirements(requirement.name, frozenset(requirement.extras), seen)
        except importlib.metadata.PackageNotFoundError:
            continue
    return seen


def copy_distributions(names: set[str], into: Path) -> None:
    for name in names:
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            if file.parts[0].endswith((".dist-info", "__pycache__")) or ".." in file.parts:
                continue
            source = Path(str(dist.locate_file(file)))
            if source.is_file() and not source.name.endswith(".pyc"):
                target = into / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)


@pytest.fixture(scope="module")
def worker_image(real_node: RealNode) -> str:
    archives = oci_archives()
    real_node.load_image(archives[WORKER_IMAGE])
    return WORKER_IMAGE


@pytest.fixture
def celery_dir(tmp_path: Path) -> Iterator[Path]:
    """The pod's /tmp: Celery's libraries, a ``celery`` command and the test's app."""
    root = tmp_path / "pod-tmp"
    libs = root / "libs"
    libs.mkdir(parents=True)
    names = {n for n in requirements("celery", frozenset({"redis"}))
             if "[" not in n} - {"redis", "hiredis"}
    copy_distributions(names, libs)
    shutil.copy2(Path(celery_tasks.__file__), libs / "celery_tasks.py")
    (libs / "bin").mkdir()
    launcher = libs / "bin" / "celery"
    launcher.write_text("#!/opt/taskfleet/bin/python\nimport sys\nfrom celery.__main__ import "
                        "main\nsys.exit(main())\n")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() or path == launcher else 0o644)
    yield root


def test_a_celery_pool_runs_real_celery_containers_from_zero_and_back(
        crds: Cluster, real_node: RealNode, worker_image: str, namespace: str,
        redis_url: str, redis_client: redis.Redis, celery_dir: Path, tmp_path: Path) -> None:
    operator = OperatorProcess(crds, namespace, tmp_path / "operator.log").start()
    try:
        crds.apply(yaml.safe_dump(task_queue("films", redis_url, protocol="celery")),
                   namespace=namespace)
        manifest = worker_pool("films", ["films"], {"minReplicas": 0, "maxReplicas": 2,
                                                    "targetPerReplica": 2,
                                                    "scaleToZeroAfterSeconds": 3,
                                                    **FAST_SCALING},
                               app="celery_tasks:app", runtime="celery", image=worker_image,
                               concurrency=2, terminationGracePeriodSeconds=30,
                               env=[{"name": "PATH", "value": f"{IN_POD}/libs/bin:"
                                     "/opt/taskfleet/bin:/usr/local/bin:/usr/bin:/bin"},
                                    {"name": "PYTHONPATH", "value": f"{IN_POD}/libs:/app"}])
        spec = real_node.place_pool(manifest["spec"])
        spec["podTemplate"]["spec"]["volumes"] = [
            {"name": "tmp", "hostPath": {"path": str(celery_dir), "type": "Directory"}}]
        crds.apply(yaml.safe_dump(manifest), namespace=namespace)
        pool = Pool(crds, namespace, "films", operator.log)
        pool.wait_replicas(0, timeout=60)
        client = Celery("web", broker=redis_url, backend=redis_url)
        try:
            results = [client.send_task("video.where", args=[1.0], queue="films",
                                        priority=p) for p in range(4)]
            pool.wait_replicas(2, timeout=60)

            def pods_described() -> str:
                return "\n".join([
                    crds.kubectl("describe", "pods", namespace=namespace, check=False).stdout,
                    *(crds.kubectl("logs", p["metadata"]["name"], "--tail=40",
                                   namespace=namespace, check=False).stdout
                      + crds.kubectl("logs", p["metadata"]["name"], "--tail=40",
                                     namespace=namespace, check=False).stderr
                      for p in pool.pods())])

            wait_for("two celery containers ready", lambda: len(pool.pods()) == 2 and all(
                (p.get("status", {}).get("containerStatuses") or [{}])[0].get("ready")
                for p in pool.pods()), 120, describe=pods_described)
            running = pool.pods()
            for p in running:
                assert p["spec"]["nodeName"] == real_node.name
                [c] = p["status"]["containerStatuses"]
                assert c["image"].endswith(WORKER_IMAGE.split("/", 1)[1])
            try:
                ran_on = {r.get(timeout=120) for r in results}
            except Exception as exc:
                raise AssertionError(f"{exc!r}\n{pods_described()}") from exc
            # the tasks ran in those containers (celery@<pod name>)
            assert ran_on and ran_on <= {p["metadata"]["name"] for p in running}, ran_on
        finally:
            client.close()
        pool.wait("back to zero, the containers gone",
                  lambda: pool.replicas() == 0 and not pool.pods(), 120)
    finally:
        operator.stop()
        print(f"--- operator log ---\n{operator.log()}")
