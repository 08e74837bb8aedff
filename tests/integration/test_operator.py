"""The operator against a real API server (kwok nodes) and a real redis-server."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from taskfleet import App
from tests.support.cluster import Cluster, wait_for
from tests.support.kubelet import PodProcessRunner
from tests.support.operator import OperatorProcess
from tests.support.processes import ROOT, WorkerProcess
from tests.support.redis_server import RedisServer

SAMPLE = "tests.integration.apps.sample:app"
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
FAST = {"pollSeconds": 0.5, "scaleDown": {"stabilizationSeconds": 1}}


def apply_queue(cluster: Cluster, ns: str, name: str, url: str, **spec: Any) -> None:
    cluster.apply(yaml.safe_dump({
        "apiVersion": "taskfleet.dev/v1alpha1", "kind": "TaskQueue",
        "metadata": {"name": name}, "spec": {"redis": {"url": url}, **spec}}), namespace=ns)


def apply_pool(cluster: Cluster, ns: str, name: str, queues: list[str],
               autoscaling: dict[str, Any] | None = None, **spec: Any) -> None:
    body: dict[str, Any] = {"queues": queues, "app": SAMPLE, "tolerations": [KWOK_TOLERATION],
                            **spec}
    if autoscaling is not None:
        body["autoscaling"] = autoscaling
    cluster.apply(yaml.safe_dump({
        "apiVersion": "taskfleet.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": name}, "spec": body}), namespace=ns)


def spec_replicas(cluster: Cluster, ns: str, name: str) -> int | None:
    d = cluster.get("deployment", name, ns)
    return None if d is None else int(d["spec"]["replicas"])


def pool_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    wp = cluster.get("workerpool", name, ns) or {}
    status: dict[str, Any] = wp.get("status") or {}
    return status


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def scale_events(cluster: Cluster, ns: str, name: str) -> list[str]:
    """Scale events in the order they were written: timestamps have whole seconds only,
    so ties go by resourceVersion (etcd's revision, increasing as events are created)."""
    events = cluster.list("events", ns)
    ordered = sorted(events, key=lambda e: (e["metadata"]["creationTimestamp"],
                                            int(e["metadata"]["resourceVersion"])))
    return [e["message"] for e in ordered if e["involvedObject"]["name"] == name
            and e["reason"] in ("ScaledUp", "ScaledDown")]


def describe(cluster: Cluster, ns: str, name: str, op: OperatorProcess | None = None
             ) -> Any:
    def text() -> str:
        parts = [cluster.kubectl("get", "wp,tq,deploy,pods", "-o", "wide", namespace=ns,
                                 check=False).stdout,
                 json.dumps(pool_status(cluster, ns, name), indent=1)]
        if op is not None:
            parts.append(op.log()[-3000:])
        return "\n".join(parts)
    return text


def test_burst_scales_out_to_max_then_in_and_to_zero(cluster: Cluster, namespace: str,
                                                     operator: OperatorProcess,
                                                     redis_url: str,
                                                     workers: list[WorkerProcess]) -> None:
    apply_queue(cluster, namespace, "burst", redis_url)
    apply_pool(cluster, namespace, "burst-pool", ["burst"],
               {"minReplicas": 0, "maxReplicas": 4, "targetPerReplica": 5,
                "scaleToZeroAfterSeconds": 4, **FAST})
    show = describe(cluster, namespace, "burst-pool", operator)
    wait_for("Deployment created at 0", lambda: spec_replicas(cluster, namespace,
                                                              "burst-pool") == 0, 30,
             describe=show)
    App(redis_url).send_many("sample.add", [[i, i] for i in range(400)], queue="burst")
    wait_for("scaled out to max", lambda: spec_replicas(cluster, namespace, "burst-pool") == 4,
             30, describe=show)
    status = pool_status(cluster, namespace, "burst-pool")
    assert status["desiredReplicas"] == 4
    assert condition(status, "MetricsAvailable")["status"] == "True"
    # the queue is drained by real workers; the pool comes in, then goes to zero
    workers.append(WorkerProcess(redis_url, SAMPLE, ["burst"], concurrency=4).start())
    wait_for("scaled to zero after the idle period",
             lambda: spec_replicas(cluster, namespace, "burst-pool") == 0, 60, describe=show)
    messages = scale_events(cluster, namespace, "burst-pool")
    assert messages[0].startswith("ready=400 inFlight=0 target=5 → 4"), messages
    assert any(m.endswith("→ 1") for m in messages), "in to one while idle, before zero"
    assert "idle" in messages[-1] and messages[-1].split(" → ")[1].startswith("0"), messages
    out = cluster.kubectl("get", "wp", "burst-pool", namespace=namespace).stdout
    assert out.split()[:7] == ["NAME", "QUEUES", "READY", "IN-FLIGHT", "REPLICAS", "DESIRED",
                               "AGE"]


def test_below_activation_threshold_nothing_scales(cluster: Cluster, namespace: str,
                                                   operator: OperatorProcess,
                                                   redis_url: str) -> None:
    apply_queue(cluster, namespace, "act", redis_url)
    apply_pool(cluster, namespace, "act-pool", ["act"],
               {"maxReplicas": 3, "activationThreshold": 10, **FAST})
    app = App(redis_url)
    app.send_many("sample.add", [[1, 1]] * 10, queue="act")
    show = describe(cluster, namespace, "act-pool", operator)
    wait_for("the operator saw 10 ready tasks",
             lambda: pool_status(cluster, namespace, "act-pool").get("queueReady") == 10, 30,
             describe=show)
    assert spec_replicas(cluster, namespace, "act-pool") == 0
    assert scale_events(cluster, namespace, "act-pool") == []
    app.send_task("sample.add", [1, 1], queue="act")
    wait_for("activated above the threshold",
             lambda: (spec_replicas(cluster, namespace, "act-pool") or 0) >= 1, 30,
             describe=show)


def test_in_flight_tasks_alone_keep_the_pool_up(cluster: Cluster, namespace: str,
                                                operator: OperatorProcess, redis_url: str,
                                                redis_client: redis.Redis,
                                                workers: list[WorkerProcess]) -> None:
    apply_queue(cluster, namespace, "busy", redis_url)
    apply_pool(cluster, namespace, "busy-pool", ["busy"],
               {"maxReplicas": 3, "targetPerReplica": 1, "scaleToZeroAfterSeconds": 0.5,
                **FAST})
    app = App(redis_url)
    results = [app.send_task("sample.sleep_record", [str(i), 6.0], queue="busy")
               for i in range(2)]
    show = describe(cluster, namespace, "busy-pool", operator)
    wait_for("scaled for the two tasks",
             lambda: spec_replicas(cluster, namespace, "busy-pool") == 2, 30, describe=show)
    workers.append(WorkerProcess(redis_url, SAMPLE, ["busy"], concurrency=2).start())
    wait_for("both tasks running", lambda: redis_client.llen("test:runs:started") == 2, 30)
    wait_for("the operator sees them in flight only",
             lambda: (pool_status(cluster, namespace, "busy-pool").get("queueReady"),
                      pool_status(cluster, namespace, "busy-pool").get("queueInFlight"))
             == (0, 2), 30, describe=show)
    # several polls and the scale-to-zero period pass while the tasks run
    import time
    time.sleep(2.5)
    assert spec_replicas(cluster, namespace, "busy-pool") == 2
    for r in results:
        r.get(timeout=30)
    wait_for("zero once the work is done",
             lambda: spec_replicas(cluster, namespace, "busy-pool") == 0, 30, describe=show)


def test_redis_down_holds_the_count_and_recovery_resumes(cluster: Cluster, namespace: str,
                                                         operator: OperatorProcess) -> None:
    server = RedisServer().start()
    try:
        apply_queue(cluster, namespace, "fragile", server.url)
        apply_pool(cluster, namespace, "fragile-pool", ["fragile"],
                   {"maxReplicas": 5, "targetPerReplica": 5, "scaleToZeroAfterSeconds": 1,
                    **FAST})
        App(server.url).send_many("sample.add", [[1, 1]] * 10, queue="fragile")
        show = describe(cluster, namespace, "fragile-pool", operator)
        wait_for("two replicas", lambda: spec_replicas(cluster, namespace, "fragile-pool") == 2,
                 30, describe=show)
        server.stop()
        wait_for("MetricsAvailable=False",
                 lambda: condition(pool_status(cluster, namespace, "fragile-pool"),
                                   "MetricsAvailable").get("status") == "False", 30,
                 describe=show)
        status = pool_status(cluster, namespace, "fragile-pool")
        assert "redis" in condition(status, "MetricsAvailable")["message"].lower()
        import time
        time.sleep(3)  # many polls with Redis gone, far past scaleToZeroAfterSeconds
        assert spec_replicas(cluster, namespace, "fragile-pool") == 2
        assert pool_status(cluster, namespace, "fragile-pool")["desiredReplicas"] == 2
        server.start()  # back, empty: the queue is idle now
        wait_for("scaling resumed after recovery",
                 lambda: spec_replicas(cluster, namespace, "fragile-pool") == 0, 60,
                 describe=show)
        assert condition(pool_status(cluster, namespace, "fragile-pool"),
                         "MetricsAvailable")["status"] == "True"
    finally:
        server.close()


def test_invalid_worker_pool_is_refused_by_the_api_server(crds: Cluster, namespace: str) -> None:
    out = crds.apply(yaml.safe_dump({
        "apiVersion": "taskfleet.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": "bad"},
        "spec": {"queues": ["a"], "app": "no colon",
                 "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}),
        namespace=namespace, check=False)
    assert out.returncode != 0
    assert "spec.app in body should match" in out.stderr
    assert "autoscaling.minReplicas must be <= autoscaling.maxReplicas" in out.stderr
    out = crds.apply(yaml.safe_dump({
        "apiVersion": "taskfleet.dev/v1alpha1", "kind": "TaskQueue",
        "metadata": {"name": "bad"}, "spec": {"redis": {}}}), namespace=namespace, check=False)
    assert "give exactly one of redis.url and redis.urlFrom" in out.stderr


def test_missing_queue_is_reported_and_nothing_is_created(cluster: Cluster, namespace: str,
                                                          operator: OperatorProcess) -> None:
    apply_pool(cluster, namespace, "orphan", ["nowhere"], {"maxReplicas": 2, **FAST})
    wait_for("Ready=False QueueNotFound",
             lambda: condition(pool_status(cluster, namespace, "orphan"),
                               "Ready").get("reason") == "QueueNotFound", 30,
             describe=describe(cluster, namespace, "orphan", operator))
    message = condition(pool_status(cluster, namespace, "orphan"), "Ready")["message"]
    assert message == (f"TaskQueue 'nowhere' not found in namespace {namespace}; "
                       "create it or fix spec.queues")
    assert cluster.get("deployment", "orphan", namespace) is None


def test_spec_errors_only_the_operator_sees_are_reported(cluster: Cluster, namespace: str,
                                                         operator: OperatorProcess,
                                                         redis_url: str) -> None:
    apply_queue(cluster, namespace, "q", redis_url)
    apply_pool(cluster, namespace, "odd", ["q"], {"maxReplicas": 2,
                                                  "onMetricsError": "zero"})
    wait_for("Ready=False InvalidSpec",
             lambda: condition(pool_status(cluster, namespace, "odd"),
                               "Ready").get("reason") == "InvalidSpec", 30,
             describe=describe(cluster, namespace, "odd", operator))
    message = condition(pool_status(cluster, namespace, "odd"), "Ready")["message"]
    assert message.startswith("spec.autoscaling.onMetricsError must be 'hold' or "
                              "{fallbackReplicas: N}")
    assert cluster.get("deployment", "odd", namespace) is None
    warnings = [e for e in cluster.list("events", namespace) if e["type"] == "Warning"]
    assert any(e["reason"] == "InvalidSpec" and e["involvedObject"]["name"] == "odd"
               for e in warnings)
    # a pod template the API server refuses: the API's own message, on the pool
    apply_pool(cluster, namespace, "odd", ["q"], {"maxReplicas": 2},
               podTemplate={"spec": {"restartPolicy": "Never"}})
    wait_for("Ready=False ApplyFailed",
             lambda: condition(pool_status(cluster, namespace, "odd"),
                               "Ready").get("reason") == "ApplyFailed", 30,
             describe=describe(cluster, namespace, "odd", operator))
    assert "spec.template.spec.restartPolicy: Unsupported value: \"Never\"" in condition(
        pool_status(cluster, namespace, "odd"), "Ready")["message"]
    # fixed by the user: served from then on
    apply_pool(cluster, namespace, "odd", ["q"], {"maxReplicas": 2, "onMetricsError": "hold"})
    wait_for("reconciled once fixed", lambda: cluster.get("deployment", "odd", namespace), 30)


def test_deleting_a_pool_garbage_collects_its_deployment(cluster: Cluster, namespace: str,
                                                         operator: OperatorProcess,
                                                         redis_url: str) -> None:
    apply_queue(cluster, namespace, "gc", redis_url)
    apply_pool(cluster, namespace, "gc-pool", ["gc"], replicas=2)
    wait_for("manual replicas applied",
             lambda: spec_replicas(cluster, namespace, "gc-pool") == 2, 30,
             describe=describe(cluster, namespace, "gc-pool", operator))
    dep = cluster.get("deployment", "gc-pool", namespace)
    assert dep is not None
    [owner] = dep["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("WorkerPool", "gc-pool", True)
    cluster.kubectl("delete", "workerpool", "gc-pool", namespace=namespace)
    wait_for("Deployment and pods garbage-collected",
             lambda: cluster.get("deployment", "gc-pool", namespace) is None
             and not cluster.list("pods", namespace, "app.kubernetes.io/instance=gc-pool"), 60)


def test_manual_mode_follows_kubectl_scale(cluster: Cluster, namespace: str,
                                           operator: OperatorProcess, redis_url: str) -> None:
    apply_queue(cluster, namespace, "manual", redis_url)
    apply_pool(cluster, namespace, "manual-pool", ["manual"], replicas=1)
    show = describe(cluster, namespace, "manual-pool", operator)
    wait_for("one replica", lambda: spec_replicas(cluster, namespace, "manual-pool") == 1, 30,
             describe=show)
    cluster.kubectl("scale", "wp/manual-pool", "--replicas=3", namespace=namespace)
    wait_for("three ready replicas",
             lambda: pool_status(cluster, namespace, "manual-pool").get("readyReplicas") == 3,
             60, describe=show)
    scale = json.loads(cluster.kubectl("get", "--raw", f"/apis/taskfleet.dev/v1alpha1/namespaces/"
                                       f"{namespace}/workerpools/manual-pool/scale").stdout)
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["selector"] == ("app.kubernetes.io/name=taskfleet-worker,"
                                           "app.kubernetes.io/instance=manual-pool")
    assert scale_events(cluster, namespace, "manual-pool")[-1] == \
        "autoscaling off: spec.replicas=3"


def test_deployment_shape(cluster: Cluster, namespace: str, operator: OperatorProcess,
                          redis_url: str) -> None:
    cluster.kubectl("create", "secret", "generic", "redis-auth", "--from-literal=password=pw",
                    namespace=namespace)
    apply_queue(cluster, namespace, "hi", redis_url,
                redis={"url": redis_url, "passwordFrom": {"secretKeyRef": {
                    "name": "redis-auth", "key": "password"}}})
    apply_queue(cluster, namespace, "lo", redis_url,
                redis={"url": redis_url, "passwordFrom": {"secretKeyRef": {
                    "name": "redis-auth", "key": "password"}}}, queueName="low-q")
    apply_pool(cluster, namespace, "shape", ["hi", "lo"], replicas=1, concurrency=3,
               terminationGracePeriodSeconds=120, resources={"requests": {"cpu": "2"}},
               code={"configMap": "scripts"},
               podTemplate={"metadata": {"labels": {"team": "media"}}})
    wait_for("deployment", lambda: cluster.get("deployment", "shape", namespace), 30,
             describe=describe(cluster, namespace, "shape", operator))
    dep = cluster.get("deployment", "shape", namespace)
    assert dep is not None
    labels = dep["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "taskfleet-worker"
    assert labels["app.kubernetes.io/instance"] == "shape"
    assert labels["app.kubernetes.io/component"] == "worker"
    full = json.loads(cluster.kubectl("get", "deployment", "shape", "-o", "json",
                                      "--show-managed-fields", namespace=namespace).stdout)
    managers = {m["manager"] for m in full["metadata"]["managedFields"]
                if m["operation"] == "Apply"}
    assert managers == {"taskfleet-operator"}
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["command"] == ["taskfleet"]
    assert c["args"][:9] == ["worker", "--app", SAMPLE, "--queues", "hi,low-q",
                             "--concurrency", "3", "--pool", "processes"]
    assert c["args"][c["args"].index("--drain-timeout") + 1] == "115"
    env = {e["name"]: e for e in c["env"]}
    assert env["TASKFLEET_BROKER_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-auth", "key": "password"}
    assert "pw" not in json.dumps(dep), "the secret is referenced, never copied"
    assert c["resources"] == {"requests": {"cpu": "2"}}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] == 120
    assert c["livenessProbe"]["exec"]["command"][:2] == ["taskfleet", "health"]
    assert env["PYTHONPATH"]["value"] == "/opt/taskfleet/code"
    assert {"name": "code", "configMap": {"name": "scripts", "defaultMode": 420}} in pod["volumes"]
    assert dep["spec"]["template"]["metadata"]["labels"]["team"] == "media"


def test_operator_restart_converges_without_duplicates(cluster: Cluster, namespace: str,
                                                       operator: OperatorProcess,
                                                       redis_url: str, tmp_path: Path) -> None:
    apply_queue(cluster, namespace, "steady", redis_url)
    apply_pool(cluster, namespace, "steady-pool", ["steady"],
               {"maxReplicas": 5, "targetPerReplica": 5, **FAST})
    App(redis_url).send_many("sample.add", [[1, 1]] * 15, queue="steady")
    show = describe(cluster, namespace, "steady-pool", operator)
    wait_for("three replicas", lambda: spec_replicas(cluster, namespace, "steady-pool") == 3,
             30, describe=show)
    before = cluster.get("deployment", "steady-pool", namespace)
    assert before is not None
    operator.kill()
    restarted = OperatorProcess(cluster, namespace, tmp_path / "restarted.log").start()
    try:
        wait_for("the new operator holds the lease",
                 lambda: (cluster.get("lease", "taskfleet-operator", namespace) or {}).get(
                     "spec", {}).get("leaseTransitions", 0) >= 1, 30,
                 describe=lambda: restarted.log())
        wait_for("the new operator acquired leadership",
                 lambda: "acquired leadership" in restarted.log(), 30,
                 describe=lambda: restarted.log())
        import time
        time.sleep(2)
        deployments = cluster.list("deployments", namespace)
        assert [d["metadata"]["name"] for d in deployments] == ["steady-pool"]
        after = deployments[0]
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["spec"]["replicas"] == 3
        assert after["metadata"]["generation"] == before["metadata"]["generation"], \
            "nothing that was right was rewritten"
        assert len(cluster.list("replicasets", namespace)) == 1
    finally:
        restarted.stop()


def test_scale_down_removes_idle_workers_first(cluster: Cluster, namespace: str,
                                               operator: OperatorProcess, redis_url: str,
                                               redis_client: redis.Redis) -> None:
    apply_queue(cluster, namespace, "mixed", redis_url)
    apply_pool(cluster, namespace, "mixed-pool", ["mixed"],
               {"maxReplicas": 4, "targetPerReplica": 1, "scaleToZeroAfterSeconds": 600,
                **FAST}, concurrency=1, pool="threads")
    runner = PodProcessRunner(str(cluster.kubeconfig), namespace,
                              "app.kubernetes.io/instance=mixed-pool", ROOT).start()
    try:
        app = App(redis_url)
        app.send_task("sample.sleep_record", ["long", 25.0], queue="mixed")
        for i in range(3):
            app.send_task("sample.sleep_record", [f"short{i}", 1.0], queue="mixed")
        show = describe(cluster, namespace, "mixed-pool", operator)
        wait_for("four replicas", lambda: spec_replicas(cluster, namespace, "mixed-pool") == 4,
                 30, describe=show)
        wait_for("all four tasks started",
                 lambda: redis_client.llen("test:runs:started") == 4, 60, describe=show)
        busy_pod = wait_for("the long task's worker heartbeat",
                            lambda: _busy_pod(redis_client, app), 30)
        wait_for("scaled down to one",
                 lambda: spec_replicas(cluster, namespace, "mixed-pool") == 1, 60,
                 describe=show)
        wait_for("one pod left",
                 lambda: len([p for p in cluster.list("pods", namespace,
                                                      "app.kubernetes.io/instance=mixed-pool")
                              if not p["metadata"].get("deletionTimestamp")]) == 1, 60)
        [survivor] = [p for p in cluster.list("pods", namespace,
                                              "app.kubernetes.io/instance=mixed-pool")
                      if not p["metadata"].get("deletionTimestamp")]
        assert survivor["metadata"]["name"] == busy_pod, "the busy worker was kept"
        cost = survivor["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"]
        assert cost == "100"
        assert redis_client.lrange("test:runs:started", 0, -1).count("long") == 1, \
            "the long task was never interrupted"
    finally:
        runner.stop()


def _busy_pod(client: redis.Redis, app: App) -> str | None:
    from taskfleet import live_workers

    busy = [w.pod for w in live_workers(app.redis) if w.busy]
    shorts_done = client.llen("test:runs:record") >= 3
    return busy[0] if len(busy) == 1 and shorts_done else None


@pytest.mark.parametrize("sig", [signal.SIGKILL])
def test_standby_operator_takes_over(cluster: Cluster, namespace: str,
                                     operator: OperatorProcess, redis_url: str,
                                     tmp_path: Path, sig: int) -> None:
    standby = OperatorProcess(cluster, namespace, tmp_path / "standby.log").start()
    try:
        apply_queue(cluster, namespace, "ha", redis_url)
        apply_pool(cluster, namespace, "ha-pool", ["ha"],
                   {"maxReplicas": 5, "targetPerReplica": 5, **FAST})
        app = App(redis_url)
        app.send_many("sample.add", [[1, 1]] * 5, queue="ha")
        show = describe(cluster, namespace, "ha-pool", operator)
        wait_for("one replica", lambda: spec_replicas(cluster, namespace, "ha-pool") == 1, 30,
                 describe=show)
        lease = cluster.get("lease", "taskfleet-operator", namespace)
        assert lease is not None
        leader = lease["spec"]["holderIdentity"]
        active, passive = (operator, standby) if str(operator.process.pid) in leader \
            else (standby, operator)  # type: ignore[union-attr]
        active.kill()
        app.send_many("sample.add", [[1, 1]] * 10, queue="ha")
        wait_for("the standby scales after taking over",
                 lambda: spec_replicas(cluster, namespace, "ha-pool") == 3, 30,
                 describe=lambda: passive.log())
        assert (cluster.get("lease", "taskfleet-operator", namespace) or {})["spec"][
            "holderIdentity"] != leader
        assert len(scale_events(cluster, namespace, "ha-pool")) == 2, \
            "one event per scale: only the active operator writes"
    finally:
        standby.stop()
