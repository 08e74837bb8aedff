"""The worker, operator and video-site images, built from their Dockerfiles (no Docker
engine: hack/images.sh) and run with podman on the host's network against a local Redis
and the local control plane."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis
import yaml

from taskfleet import App, live_workers, queue_stats
from taskfleet_operator.runtime import leader_lease_name
from testenv.cluster import Cluster
from testenv.images import (
    EXAMPLE_IMAGE,
    OPERATOR_IMAGE,
    WORKER_IMAGE,
    Container,
    oci_archives,
    podman,
    read_dockerfile,
    read_oci_archive,
)
from testenv.processes import ROOT
from testenv.redis_server import RedisServer
from testenv.resources import task_queue, worker_pool
from testenv.waiting import wait_for

WORKER = ROOT / "worker_image" / "Dockerfile"
OPERATOR = ROOT / "operator" / "Dockerfile"
HEALTH_FILE = "/tmp/taskfleet-health"
# What the WorkerPool's pods get too: no writable root, a scratch /tmp.
LOCKED_DOWN = ("--read-only", "--tmpfs", "/tmp")

Start = Callable[..., Container]


@pytest.mark.parametrize("path", [WORKER, OPERATOR], ids=["worker", "operator"])
def test_dockerfile_rules(path: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    out = subprocess.run([hadolint, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    d = read_dockerfile(path)
    assert len(d.stages) == 2, "a build stage and a slim final stage"
    for line in d.stages:
        image = line.split()[1]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), f"pinned base: {line}"
    assert d.final_user == "10001:10001", "runs as a fixed non-root UID"
    final_stage = path.read_text().split("\nFROM ")[-1]
    assert "pip install" not in final_stage and "apt-get" not in final_stage, \
        "no build tools or installs in the final stage"
    build_stage = path.read_text().split("\nFROM ")[1]
    assert f"--no-deps --require-hashes -r /src/{d.lock}" in build_stage, "installs the lock first"
    assert (ROOT / d.lock).is_file(), f"{d.lock} is not in the repository"
    assert f'--no-deps --no-build-isolation "{d.pip_target}"' in build_stage, \
        "the project itself adds no unlocked package, not even its build backend"


@pytest.fixture
def start(images: None) -> Iterator[Start]:
    """Starts containers; each is removed at the end, its log shown if the test failed."""
    started: list[Container] = []

    def run(image: str, args: Sequence[str] = (), options: Sequence[str] = ()) -> Container:
        container = Container(image, args, options=options)
        started.append(container)  # before start: a failed start may leave it created
        return container.start()

    yield run
    problems = []
    for container in started:
        print(f"--- {container.name} log ---\n{container.logs()}")
        try:
            container.remove()
        except AssertionError as exc:  # remove the others all the same
            problems.append(str(exc))
    assert not problems, problems


def video_worker(start: Start, url: str, seconds_per_1080p: float = 0.1,
                 extra: Sequence[str] = ()) -> Container:
    """The video site's image as its transcoder pool runs it (20-pools.yaml), locked down."""
    return start(EXAMPLE_IMAGE,
                 ["--app", "video.tasks:app", "--queues", "transcode,default",
                  "--concurrency", "2", "--pool", "processes", "--health-file", HEALTH_FILE,
                  *extra],
                 [*LOCKED_DOWN, "--env", f"TASKFLEET_BROKER_URL={url}",
                  "--env", f"TRANSCODE_SECONDS_PER_1080P={seconds_per_1080p}",
                  "--env", "POD_NAME=transcoder-0"])


def test_example_image_runs_the_example_tasks(start: Start, redis_url: str) -> None:
    video_worker(start, redis_url)
    app = App(redis_url)  # the web tier's view: task names only, no import of video.tasks
    transcoded = app.send_task("video.transcode", ["v1", 720], queue="transcode")
    welcomed = app.send_task("mail.send_welcome", ["u1"])
    assert transcoded.get(timeout=30) == {"video_id": "v1", "height": 720,
                                          "url": "/media/v1/720p.mp4"}
    assert welcomed.get(timeout=30) == "welcome mail sent to u1"


def test_worker_runs_as_uid_10001_on_a_read_only_root(start: Start, redis_url: str) -> None:
    c = video_worker(start, redis_url)
    assert App(redis_url).send_task("mail.send_welcome", ["u2"]).get(timeout=30)
    status = c.exec("cat", "/proc/1/status").stdout  # the entrypoint itself, PID 1
    assert re.search(r"^Uid:\s+10001\s+10001\s+10001\s+10001$", status, re.M), status
    assert re.search(r"^Gid:\s+10001\s", status, re.M), status
    denied = c.exec("touch", "/app/written")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert c.exec("touch", "/tmp/written").returncode == 0
    assert podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}",
                  c.name).stdout.strip() == "true"


def test_sigterm_drains_the_running_task_and_exits_0(start: Start, redis_url: str,
                                                    redis_client: redis.Redis) -> None:
    c = video_worker(start, redis_url, seconds_per_1080p=4.0)
    result = App(redis_url).send_task("video.transcode", ["long", 1080], queue="transcode")
    # busy is published the moment a task starts running (not at the next heartbeat)
    wait_for("the transcode running in the container",
             lambda: any(w.busy for w in live_workers(redis_client)), 30)
    c.signal("TERM")
    assert c.wait(timeout=60) == 0, "a drained worker exits 0"
    # the task had seconds left when SIGTERM came; it finished and its result is stored
    assert result.get(timeout=1) == {"video_id": "long", "height": 1080,
                                     "url": "/media/long/1080p.mp4"}
    stats = queue_stats(redis_client, ["transcode"])["transcode"]
    assert (stats.ready, stats.in_flight) == (0, 0)


def test_health_probe_passes_while_heartbeats_reach_redis_and_fails_when_they_stall(
        start: Start) -> None:
    server = RedisServer().start()  # its own: the test freezes it
    try:
        # a 3 s task lease: a heartbeat every second
        c = video_worker(start, server.url, extra=["--task-lease-seconds", "3"])

        def probe() -> subprocess.CompletedProcess[str]:
            return c.exec("taskfleet", "health", "--file", HEALTH_FILE, "--max-age", "4")

        def probe_failure() -> str | None:
            out = probe()
            return out.stderr if out.returncode == 1 else None

        wait_for("the health probe passing", lambda: probe().returncode == 0, 30)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)  # Redis hangs: heartbeats get no reply
        failure = wait_for("the health probe failing", probe_failure, 30)
        assert failure is not None and "no successful heartbeat" in failure
        assert c.state() == "running", "a stalled Redis does not stop the worker itself"
        os.kill(server.process.pid, signal.SIGCONT)
        wait_for("the health probe passing again", lambda: probe().returncode == 0, 60)
    finally:
        if server.process is not None and server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.close()


def test_oci_archives_carry_the_names_a_kubelet_asks_for(images: None) -> None:
    def saved() -> dict[str, tuple[str, int]] | None:
        """Per image: the ID its archive holds and when it was written; None when an image
        is not the one in storage (a build from edited sources ran in between)."""
        archives = oci_archives()
        assert sorted(archives) == ["localhost/taskfleet/operator:0.1.0",
                                    "localhost/taskfleet/worker:0.1.0",
                                    "localhost/video-site:1.0"]
        out = {}
        for name, path in archives.items():
            held = read_oci_archive(path)[1]
            assert Path(f"{path}.id").read_text().strip() == held
            if held != podman("image", "inspect", "--format", "{{.Id}}", name).stdout.strip():
                return None
            out[name] = (held, path.stat().st_mtime_ns)
        return out

    first = wait_for("archives of the images in storage", saved, 180, interval=0)
    second = wait_for("archives of the images in storage", saved, 180, interval=0)
    assert first is not None and second is not None
    for name, (image_id, written) in first.items():
        if second[name][0] == image_id:
            assert second[name][1] == written, f"{name} unchanged but saved again"


def test_operator_image_starts(images: None) -> None:
    out = podman("run", "--rm", OPERATOR_IMAGE, "--help")
    assert "--worker-image" in out.stdout and "--leader-lease-seconds" in out.stdout
    assert podman("image", "inspect", "--format", "{{.Config.User}}",
                  OPERATOR_IMAGE).stdout.strip() == "10001:10001"


def test_operator_image_leads_and_creates_a_pools_deployment(
        start: Start, crds: Cluster, namespace: str, redis_url: str, tmp_path: Path) -> None:
    # the credentials inline, in a file the image's user can read
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(crds.kubectl("config", "view", "--flatten", "--minify",
                                       "--raw").stdout)
    kubeconfig.chmod(0o644)
    identity = f"image-test-{namespace}"
    start(OPERATOR_IMAGE,
          ["--namespace", namespace, "--leader-lease-namespace", namespace,
           "--leader-lease-seconds", "2", "--worker-image", WORKER_IMAGE],
          [*LOCKED_DOWN, "--volume", f"{kubeconfig}:/etc/taskfleet/kubeconfig:ro",
           "--env", "KUBECONFIG=/etc/taskfleet/kubeconfig",
           "--env", f"TASKFLEET_OPERATOR_IDENTITY={identity}"])
    crds.apply(yaml.safe_dump(task_queue("jobs", redis_url)), namespace=namespace)
    crds.apply(yaml.safe_dump(worker_pool("jobs-pool", ["jobs"], replicas=1)),
               namespace=namespace)
    wait_for("the operator in the container holding the Lease",
             lambda: ((crds.get("lease", leader_lease_name(namespace), namespace) or {})
                      .get("spec", {}).get("holderIdentity") == identity), 60)
    deployment = wait_for("the pool's Deployment",
                          lambda: crds.get("deployment", "jobs-pool", namespace), 60)
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == WORKER_IMAGE, "the operator's --worker-image"
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "WorkerPool"
