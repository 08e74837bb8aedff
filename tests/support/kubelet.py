"""A stand-in for the kubelet: runs each Running worker pod's command as a local process.

Pods on kwok's fake nodes run no containers. For end-to-end runs and the demo,
this runs the pod's ``taskfleet`` command (image ignored) in a local process
for the life of the pod, and sends it SIGTERM when the pod is deleted, so real
workers drain as they would under a real kubelet. It is test scaffolding, not
part of the product.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

POLL_SECONDS = 0.3
"""How often pods are listed: pod starts and deletes are seen within this."""


class PodProcessRunner:
    def __init__(self, kubeconfig: str, namespace: str, selector: str, cwd: Path,
                 extra_env: dict[str, str] | None = None, log_dir: Path | None = None) -> None:
        api = k8s_config.new_client_from_config(config_file=kubeconfig)
        self.core = k8s.CoreV1Api(api)
        self.namespace = namespace
        self.selector = selector
        self.cwd = cwd
        self.extra_env = extra_env or {}
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started: list[str] = []
        self.terminated: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="pod-runner")

    def start(self) -> PodProcessRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def running(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is None]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # the API may blink during tests; keep going
                print(f"pod-runner: {exc}", file=sys.stderr)
            self._stop.wait(POLL_SECONDS)

    def _sync(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        alive = set()
        for pod in pods:
            name = pod.metadata.name
            if pod.metadata.deletion_timestamp is not None:
                continue
            alive.add(name)
            if name not in self.processes and pod.status.phase == "Running":
                self._launch(pod)
        for name, proc in self.processes.items():
            if name not in alive and name not in self.terminated and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the pod is going: drain
                self.terminated.add(name)

    def _launch(self, pod: Any) -> None:
        container = pod.spec.containers[0]
        env = {**os.environ, **self.extra_env}
        for var in container.env or []:
            env[var.name] = self._env_value(pod, var)
        command = list(container.command or [])
        if command[:1] == ["taskfleet"]:
            command = [sys.executable, "-m", "taskfleet", *command[1:]]
        argv = [*command, *(container.args or [])]
        if "--health-file" in argv:  # the pod's path is /tmp/...; give each process its own
            i = argv.index("--health-file")
            argv[i + 1] = f"/tmp/taskfleet-health-{pod.metadata.name}"
        log = self.log_dir / f"{pod.metadata.name}.log" if self.log_dir else Path(os.devnull)
        with open(log, "ab") as out:  # the child keeps its own descriptor
            self.processes[pod.metadata.name] = subprocess.Popen(
                argv, cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(pod.metadata.name)

    def _env_value(self, pod: Any, var: Any) -> str:
        if var.value is not None:
            return str(var.value)
        source = var.value_from
        if source is None:
            return ""
        if source.field_ref is not None and source.field_ref.field_path == "metadata.name":
            return str(pod.metadata.name)
        if source.secret_key_ref is not None:
            ref = source.secret_key_ref
            secret = self.core.read_namespaced_secret(ref.name, self.namespace)
            return base64.b64decode(secret.data[ref.key]).decode()
        return ""
