"""The operator against a real API server (kwok nodes) and a real redis-server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import yaml

from taskfleet import App
from taskfleet.keys import QueueKeys
from taskfleet_operator.agenda import REST_SECONDS
from testenv.cluster import Cluster
from testenv.operator import OperatorProcess
from testenv.processes import WorkerProcess
from testenv.redis_server import RedisServer
from testenv.resources import FAST_SCALING, SAMPLE_APP, Pool, task_queue, worker_pool
from testenv.waiting import assert_stays, wait_for


def apply_queue(cluster: Cluster, ns: str, name: str, url: str, **spec: Any) -> None:
    cluster.apply(yaml.safe_dump(task_queue(name, url, **spec)), namespace=ns)


def test_burst_scales_out_to_max_then_in_and_to_zero(pools: Callable[[str], Pool],
                                                     cluster: Cluster, namespace: str,
                                                     redis_url: str,
                                                     workers: list[WorkerProcess]) -> None:
    apply_queue(cluster, namespace, "burst", redis_url)
    pool = pools("burst-pool").apply(["burst"], {"minReplicas": 0, "maxReplicas": 4,
                                                 "targetPerReplica": 5,
                                                 "scaleToZeroAfterSeconds": 4, **FAST_SCALING})
    pool.wait_replicas(0)
    App(redis_url).send_many("sample.add", [[i, i] for i in range(400)], queue="burst")
    pool.wait_replicas(4)
    # The status follows the Deployment: it is written at most once per 2 s.
    pool.wait("the status shows 4 desired", lambda: pool.status().get("desiredReplicas") == 4)
    assert pool.condition("MetricsAvailable")["status"] == "True"
    # the queue is drained by real workers; the pool comes in, then goes to zero
    workers.append(WorkerProcess(redis_url, SAMPLE_APP, ["burst"], concurrency=4).start())
    pool.wait_replicas(0, timeout=60)
    messages = pool.scale_events()
    assert messages[0].startswith("ready=400 inFlight=0 target=5 → 4"), messages
    assert any(m.endswith("→ 1") for m in messages), "in to one while idle, before zero"
    assert "idle" in messages[-1] and messages[-1].split(" → ")[1].startswith("0"), messages
    out = cluster.kubectl("get", "wp", "burst-pool", namespace=namespace).stdout
    assert out.split()[:7] == ["NAME", "QUEUES", "READY", "IN-FLIGHT", "REPLICAS", "DESIRED",
                               "AGE"]


def test_below_activation_threshold_nothing_scales(pools: Callable[[str], Pool],
                                                   cluster: Cluster, namespace: str,
                                                   redis_url: str) -> None:
    apply_queue(cluster, namespace, "act", redis_url)
    pool = pools("act-pool").apply(["act"], {"maxReplicas": 3, "activationThreshold": 10,
                                             **FAST_SCALING})
    app = App(redis_url)
    app.send_many("sample.add", [[1, 1]] * 10, queue="act")
    pool.wait("the operator saw 10 ready tasks", lambda: pool.status().get("queueReady") == 10)
    assert_stays("no replica at the threshold", lambda: pool.replicas() == 0, 2.0,
                 describe=pool.describe)
    assert pool.scale_events() == []
    app.send_task("sample.add", [1, 1], queue="act")
    pool.wait("activated above the threshold", lambda: (pool.replicas() or 0) >= 1)


def test_in_flight_tasks_alone_keep_the_pool_up(pools: Callable[[str], Pool], cluster: Cluster,
                                                namespace: str, redis_url: str,
                                                redis_client: redis.Redis,
                                                workers: list[WorkerProcess]) -> None:
    apply_queue(cluster, namespace, "busy", redis_url)
    pool = pools("busy-pool").apply(["busy"], {"maxReplicas": 3, "targetPerReplica": 1,
                                               "scaleToZeroAfterSeconds": 0.5, **FAST_SCALING})
    app = App(redis_url)
    results = [app.send_task("sample.sleep_record", [str(i), 6.0], queue="busy")
               for i in range(2)]
    pool.wait_replicas(2)
    workers.append(WorkerProcess(redis_url, SAMPLE_APP, ["busy"], concurrency=2).start())
    wait_for("both tasks running", lambda: redis_client.llen("test:runs:started") == 2, 30)
    pool.wait("the operator sees them in flight only",
              lambda: (pool.status().get("queueReady"), pool.status().get("queueInFlight"))
              == (0, 2))
    # several polls and the scale-to-zero period pass while the tasks run
    assert_stays("two replicas while two tasks run", lambda: pool.replicas() == 2, 2.5,
                 describe=pool.describe)
    for r in results:
        r.get(timeout=30)
    pool.wait_replicas(0)


def test_a_pool_at_rest_wakes_for_a_countdown_task_when_it_is_due(
        pools: Callable[[str], Pool], cluster: Cluster, namespace: str, redis_url: str) -> None:
    """At rest (empty queue, at zero) a pool's queue is read only when it wakes, or every
    REST_SECONDS: a task with a countdown wakes it too, and it scales when the task is due,
    not at the next safety read."""
    apply_queue(cluster, namespace, "later", redis_url)
    pool = pools("later-pool").apply(["later"], {"maxReplicas": 2, **FAST_SCALING})
    pool.wait_replicas(0)
    pool.wait("the pool read its empty queue", lambda: pool.status().get("queueReady") == 0)
    App(redis_url).send_task("sample.add", [1, 2], queue="later", countdown=3.0)
    assert_stays("no replica before the task is due", lambda: pool.replicas() == 0, 2.0,
                 describe=pool.describe)
    pool.wait("scaled up once the task was due",
              lambda: (pool.replicas() or 0) == 1, timeout=REST_SECONDS / 2)


def test_redis_down_holds_the_count_and_recovery_resumes(pools: Callable[[str], Pool],
                                                         cluster: Cluster,
                                                         namespace: str) -> None:
    server = RedisServer().start()
    try:
        apply_queue(cluster, namespace, "fragile", server.url)
        pool = pools("fragile-pool").apply(["fragile"], {
            "maxReplicas": 5, "targetPerReplica": 5, "scaleToZeroAfterSeconds": 1, **FAST_SCALING})
        App(server.url).send_many("sample.add", [[1, 1]] * 10, queue="fragile")
        pool.wait_replicas(2)
        server.stop()
        pool.wait_condition("MetricsAvailable", "status", "False")
        assert "redis" in pool.condition("MetricsAvailable")["message"].lower()
        # many polls with Redis gone, far past scaleToZeroAfterSeconds
        assert_stays("two replicas while Redis is away",
                     lambda: pool.replicas() == 2 and pool.status()["desiredReplicas"] == 2,
                     3.0, describe=pool.describe)
        server.start()  # back, empty: the queue is idle now
        pool.wait_replicas(0, timeout=60)
        assert pool.condition("MetricsAvailable")["status"] == "True"
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


def test_kubectl_finds_both_kinds_by_category_and_short_name(crds: Cluster, namespace: str,
                                                             tmp_path: Path) -> None:
    apply_queue(crds, namespace, "films", "redis://127.0.0.1:6379/0")
    crds.apply(yaml.safe_dump(worker_pool("films", ["films"])), namespace=namespace)

    def listed(kind: str) -> list[str]:
        # A discovery cache of its own: what the API server says, not what kubectl kept
        # from an earlier cluster on the same port.
        out = crds.kubectl("--cache-dir", str(tmp_path / "kube-cache"), "get", kind, "-o",
                           "name", namespace=namespace)
        return sorted(out.stdout.split())

    assert listed("taskfleet") == ["taskqueue.taskfleet.dev/films",
                                   "workerpool.taskfleet.dev/films"]
    assert listed("tq") == ["taskqueue.taskfleet.dev/films"]
    assert listed("wp") == ["workerpool.taskfleet.dev/films"]


def test_missing_queue_is_reported_and_nothing_is_created(pools: Callable[[str], Pool],
                                                          namespace: str) -> None:
    pool = pools("orphan").apply(["nowhere"], {"maxReplicas": 2, **FAST_SCALING})
    pool.wait_condition("Ready", "reason", "QueueNotFound")
    assert pool.condition("Ready")["message"] == (
        f"TaskQueue 'nowhere' not found in namespace {namespace}; create it or fix spec.queues")
    assert pool.deployment() is None


def test_spec_errors_only_the_operator_sees_are_reported(pools: Callable[[str], Pool],
                                                         cluster: Cluster, namespace: str,
                                                         redis_url: str) -> None:
    apply_queue(cluster, namespace, "q", redis_url)
    pool = pools("odd").apply(["q"], {"maxReplicas": 2, "onMetricsError": "zero"})
    pool.wait_condition("Ready", "reason", "InvalidSpec")
    assert pool.condition("Ready")["message"].startswith(
        "spec.autoscaling.onMetricsError must be 'hold' or {fallbackReplicas: N}")
    assert pool.deployment() is None
    assert [e["type"] for e in pool.events("InvalidSpec")] == ["Warning"]
    # a pod template the API server refuses: the API's own message, on the pool
    pool.apply(["q"], {"maxReplicas": 2}, podTemplate={"spec": {"restartPolicy": "Never"}})
    pool.wait_condition("Ready", "reason", "ApplyFailed")
    assert "spec.template.spec.restartPolicy: Unsupported value: \"Never\"" in \
        pool.condition("Ready")["message"]
    # fixed by the user: served from then on
    pool.apply(["q"], {"maxReplicas": 2, "onMetricsError": "hold"})
    pool.wait("reconciled once fixed", pool.deployment)


def test_deleting_a_pool_garbage_collects_its_deployment(pools: Callable[[str], Pool],
                                                         cluster: Cluster, namespace: str,
                                                         redis_url: str) -> None:
    apply_queue(cluster, namespace, "gc", redis_url)
    pool = pools("gc-pool").apply(["gc"], replicas=2)
    pool.wait_replicas(2)
    dep = pool.deployment()
    assert dep is not None
    [owner] = dep["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("WorkerPool", "gc-pool", True)
    cluster.kubectl("delete", "workerpool", "gc-pool", namespace=namespace)
    pool.wait("Deployment and pods garbage-collected",
              lambda: pool.deployment() is None and not pool.pods(), 60)


def test_a_hand_edit_of_the_deployment_spec_is_undone(pools: Callable[[str], Pool],
                                                      cluster: Cluster, namespace: str,
                                                      redis_url: str) -> None:
    """The pool owns its Deployment's spec: an edit moves the Deployment's generation past
    the one the operator's apply returned, and the next pass applies the pool's spec."""
    apply_queue(cluster, namespace, "owned", redis_url)
    pool = pools("owned-pool").apply(["owned"], replicas=1)
    pool.wait_replicas(1)
    dep = pool.deployment()
    assert dep is not None
    image, generation = dep["spec"]["template"]["spec"]["containers"][0]["image"], \
        dep["metadata"]["generation"]
    cluster.kubectl("set", "image", "deployment/owned-pool", "worker=edited:by-hand",
                    namespace=namespace)

    def restored() -> bool:
        now = pool.deployment()
        return now is not None and now["metadata"]["generation"] > generation + 1 \
            and now["spec"]["template"]["spec"]["containers"][0]["image"] == image
    pool.wait("the edited image replaced by the pool's", restored, 30)


def test_manual_mode_follows_kubectl_scale(pools: Callable[[str], Pool], cluster: Cluster,
                                           namespace: str, redis_url: str) -> None:
    apply_queue(cluster, namespace, "manual", redis_url)
    pool = pools("manual-pool").apply(["manual"], replicas=1)
    pool.wait_replicas(1)
    cluster.kubectl("scale", "wp/manual-pool", "--replicas=3", namespace=namespace)
    pool.wait("three ready replicas", lambda: pool.status().get("readyReplicas") == 3, 60)
    scale = json.loads(cluster.kubectl("get", "--raw", f"/apis/taskfleet.dev/v1alpha1/namespaces/"
                                       f"{namespace}/workerpools/manual-pool/scale").stdout)
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["selector"] == ("app.kubernetes.io/name=taskfleet-worker,"
                                           "app.kubernetes.io/instance=manual-pool")
    assert pool.scale_events()[-1] == "autoscaling off: spec.replicas=3"


def test_deployment_shape(pools: Callable[[str], Pool], cluster: Cluster, namespace: str,
                          redis_url: str) -> None:
    cluster.kubectl("create", "secret", "generic", "redis-auth", "--from-literal=password=pw",
                    namespace=namespace)
    cluster.kubectl("label", "secret", "redis-auth", "taskfleet.dev/redis-credentials=true",
                    namespace=namespace)
    apply_queue(cluster, namespace, "hi", redis_url,
                redis={"url": redis_url, "passwordFrom": {"secretKeyRef": {
                    "name": "redis-auth", "key": "password"}}})
    apply_queue(cluster, namespace, "lo", redis_url,
                redis={"url": redis_url, "passwordFrom": {"secretKeyRef": {
                    "name": "redis-auth", "key": "password"}}}, queueName="low-q")
    pool = pools("shape").apply(["hi", "lo"], replicas=1, concurrency=3,
                                terminationGracePeriodSeconds=120,
                                resources={"requests": {"cpu": "2"}},
                                code={"configMap": "scripts"},
                                podTemplate={"metadata": {"labels": {"team": "media"}}})
    dep = pool.wait("Deployment created", pool.deployment)
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
    assert c["args"][:9] == ["worker", "--app", SAMPLE_APP, "--queues", "hi,low-q",
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


def test_operator_restart_converges_without_duplicates(pools: Callable[[str], Pool],
                                                       cluster: Cluster, namespace: str,
                                                       operator: OperatorProcess,
                                                       redis_url: str, tmp_path: Path) -> None:
    apply_queue(cluster, namespace, "steady", redis_url)
    pool = pools("steady-pool").apply(["steady"], {"maxReplicas": 5, "targetPerReplica": 5,
                                                   **FAST_SCALING})
    App(redis_url).send_many("sample.add", [[1, 1]] * 15, queue="steady")
    pool.wait_replicas(3)
    before = pool.deployment()
    assert before is not None
    operator.kill()
    restarted = OperatorProcess(cluster, namespace, tmp_path / "restarted.log").start()
    try:
        wait_for("the new operator holds the lease",
                 lambda: (cluster.get("lease", operator.lease_name, namespace) or {}).get(
                     "spec", {}).get("leaseTransitions", 0) >= 1, 30,
                 describe=lambda: restarted.log())
        wait_for("the new operator acquired leadership",
                 lambda: "acquired leadership" in restarted.log(), 30,
                 describe=lambda: restarted.log())
        def unchanged() -> bool:
            deployments = cluster.list("deployments", namespace)
            after = deployments[0]
            return ([d["metadata"]["name"] for d in deployments] == ["steady-pool"]
                    and after["metadata"]["uid"] == before["metadata"]["uid"]
                    and after["spec"]["replicas"] == 3
                    and after["metadata"]["generation"] == before["metadata"]["generation"]
                    and len(cluster.list("replicasets", namespace)) == 1)

        assert_stays("the one Deployment, as it was: nothing that was right is rewritten",
                     unchanged, 2.0, describe=lambda: restarted.log())
    finally:
        restarted.stop()


def test_standby_operator_takes_over_after_sigkill(pools: Callable[[str], Pool],
                                                  cluster: Cluster, namespace: str,
                                                  operator: OperatorProcess, redis_url: str,
                                                  tmp_path: Path) -> None:
    standby = OperatorProcess(cluster, namespace, tmp_path / "standby.log").start()
    try:
        apply_queue(cluster, namespace, "ha", redis_url)
        pool = pools("ha-pool").apply(["ha"], {"maxReplicas": 5, "targetPerReplica": 5,
                                               **FAST_SCALING})
        app = App(redis_url)
        app.send_many("sample.add", [[1, 1]] * 5, queue="ha")
        pool.wait_replicas(1)
        lease = cluster.get("lease", operator.lease_name, namespace)
        assert lease is not None
        leader = lease["spec"]["holderIdentity"]
        active, passive = (operator, standby) if str(operator.process.pid) in leader \
            else (standby, operator)  # type: ignore[union-attr]
        wait_for("the standby says whom it waits for",
                 lambda: f"standing by: lease {namespace}/{operator.lease_name} is held by "
                         f"{leader}" in passive.log(), 10, describe=passive.log)
        active.kill()
        app.send_many("sample.add", [[1, 1]] * 10, queue="ha")
        wait_for("the standby scales after taking over", lambda: pool.replicas() == 3, 30,
                 describe=lambda: passive.log())
        assert (cluster.get("lease", operator.lease_name, namespace) or {})["spec"][
            "holderIdentity"] != leader
        assert len(pool.scale_events()) == 2, \
            "one event per scale: only the active operator writes"
    finally:
        standby.stop()


def test_operators_of_different_namespaces_do_not_block_each_other(
        crds: Cluster, namespace: str, redis_url: str, tmp_path: Path) -> None:
    """Both keep their Lease in one namespace (as two Helm releases sharing a namespace
    would); each must lead its own scope."""
    other = f"{namespace}-b"
    crds.kubectl("create", "namespace", other)
    operators = [OperatorProcess(crds, ns, tmp_path / f"{ns}.log", lease_namespace=namespace)
                 for ns in (namespace, other)]
    try:
        for op in operators:
            op.start()
        for ns in (namespace, other):
            apply_queue(crds, ns, "q", redis_url)
            Pool(crds, ns, "p").apply(["q"], replicas=1)
        for ns, op in zip((namespace, other), operators, strict=True):
            Pool(crds, ns, "p", op.log).wait_replicas(1)
        leases = {lease["metadata"]["name"] for lease in crds.list("leases", namespace)}
        assert {op.lease_name for op in operators} <= leases
    finally:
        for op in operators:
            op.stop()
        crds.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_a_task_queue_caps_its_dead_letters_for_every_worker(
        cluster: Cluster, namespace: str, operator: OperatorProcess, redis_url: str,
        workers: list[WorkerProcess]) -> None:
    apply_queue(cluster, namespace, "capped", redis_url, deadLetterLimit=2)
    app = App(redis_url)
    wait_for("the operator wrote the queue's setting",
             lambda: app.redis.hget(QueueKeys("capped").settings, "dead_letter_limit") == "2",
             30, describe=operator.log)
    for i in range(5):
        app.send_task("no.such.task", [i], queue="capped")
    workers.append(WorkerProcess(redis_url, SAMPLE_APP, ["capped"]).start())

    def status() -> dict[str, Any]:
        found: dict[str, Any] = (cluster.get("taskqueue", "capped", namespace) or {}).get(
            "status") or {}
        return found

    wait_for("two kept, three dropped and counted",
             lambda: (status().get("dead"), status().get("deadTrimmed")) == (2, 3), 30,
             describe=lambda: json.dumps(status()))
