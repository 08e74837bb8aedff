"""The chart's permissions on the real API server: the rendered RBAC is the table of
docs/security.md, and `kubectl auth can-i` answers as it says; the operator's admission
policy refuses writes beyond what the operator owns, made as its ServiceAccount; the
aggregated view and edit roles; the optional WorkerPool pod policy refusing and allowing;
worker pods without a token or Service links unless the pool asks."""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from testenv.cluster import Cluster
from testenv.processes import ROOT
from testenv.resources import Pool, task_queue
from testenv.waiting import wait_for
from tests.integration.test_chart import CHART, KWOK, helm

FULLNAME = "tf-taskfleet"
TABLE_START = "<!-- the operator's permissions: a test compares the chart with this table -->"
TABLE_END = "<!-- end of the operator's permissions -->"
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
COST = "controller.kubernetes.io/pod-deletion-cost"
MANAGED = {"app.kubernetes.io/managed-by": "taskfleet-operator"}

Grant = tuple[str, str, str, str, str]
"""(where, API group, resource, resource name or "", verb)"""


SECURITY_PAGE = ROOT / "docs" / "security.md"


def documented_permissions() -> set[Grant]:
    """docs/security.md's table of the operator's permissions, one row per verb and resource."""
    text = SECURITY_PAGE.read_text()
    assert TABLE_START in text and TABLE_END in text, \
        "docs/security.md lost its permissions table"
    lines = text[text.index(TABLE_START):text.index(TABLE_END)].splitlines()[3:]
    grants: set[Grant] = set()
    for line in lines:
        where, groups, resources, names, verbs, why = [c.strip() for c in
                                                       line.strip("|").split("|")]
        assert why, f"the permissions table gives no reason for {line}"
        for group, resource, verb in itertools.product(
                groups.split(", "), resources.split(", "), verbs.split(", ")):
            name = names.replace("RELEASE-taskfleet", FULLNAME)
            grants.add((where, "" if group == "core" else group, resource, name, verb))
    return grants


def render(crds: Cluster, namespace: str, *values: str) -> list[dict[str, Any]]:
    args = [a for v in values for a in ("--set", v)]
    out = helm(crds, "template", "tf", str(CHART), "-n", namespace, "--kube-version",
               "v1.34.4", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def rendered_permissions(docs: list[dict[str, Any]], namespace: str,
                         watched: set[str]) -> set[Grant]:
    """What the rendered roles bound to the operator's ServiceAccount grant, by where."""
    sa = {"kind": "ServiceAccount", "name": FULLNAME, "namespace": namespace}
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    grants: set[Grant] = set()
    for b in docs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding") or sa not in b["subjects"]:
            continue
        ns = b["metadata"].get("namespace", "")
        role = roles[(b["roleRef"]["kind"], ns if b["roleRef"]["kind"] == "Role" else "",
                      b["roleRef"]["name"])]
        if b["kind"] == "ClusterRoleBinding":
            where = "cluster" if role["metadata"]["name"].endswith("-discovery") \
                else "watched namespaces"
        elif ns in watched and not role["metadata"]["name"].endswith("-leader"):
            where = "watched namespaces"
        else:
            assert ns == namespace, f"a binding outside the watched namespaces: {b}"
            where = "release namespace"
        for rule in role["rules"]:
            for group, resource, verb in itertools.product(
                    rule["apiGroups"], rule["resources"], rule["verbs"]):
                for name in rule.get("resourceNames") or [""]:
                    grants.add((where, group, resource, name, verb))
    return grants


@pytest.mark.parametrize("values,watched", [
    ((), {"NS"}),
    (("namespaces={NS,other-a,other-b}",), {"NS", "other-a", "other-b"}),
    (("clusterWide=true",), set()),
])
def test_rendered_rbac_is_the_permissions_table(crds: Cluster, namespace: str,
                                           values: tuple[str, ...], watched: set[str]) -> None:
    values = tuple(v.replace("NS", namespace) for v in values)
    watched = {w.replace("NS", namespace) for w in watched}
    docs = render(crds, namespace, *values)
    assert rendered_permissions(docs, namespace, watched) == documented_permissions()
    roles = [(d["kind"], d["metadata"].get("namespace")) for d in docs if d["kind"] == "Role"]
    assert sorted(roles) == sorted([("Role", namespace)] + [("Role", w) for w in watched])
    [dep] = [d for d in docs if d["kind"] == "Deployment"]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    if watched:
        [arg] = [a for a in args if a.startswith("--namespace=")]
        assert set(arg.split("=", 1)[1].split(",")) == watched
    else:
        assert not any(a.startswith("--namespace") for a in args)
        assert any(d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == FULLNAME
                   for d in docs)


def deployment(name: str, labels: dict[str, str], owners: list[dict[str, Any]]) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "ownerReferences": owners},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "w"}]}}}})


_names = itertools.count()


@pytest.fixture
def other_namespace(crds: Cluster) -> Iterator[str]:
    name = f"o{next(_names)}-{os.getpid()}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def installed(crds: Cluster, namespace: str, other_namespace: str) -> Iterator[str]:
    """The chart with its defaults (namespaced), watching the release namespace and one
    more; the aggregated roles left to the test that checks them (they are one per
    cluster, and tests of other processes install the chart too)."""
    helm(crds, "install", "tf", str(CHART), "-n", namespace, "--set", KWOK,
         "--set", f"namespaces={{{namespace},{other_namespace}}}",
         "--set", "aggregatedClusterRoles.create=false", "--wait", "--timeout", "90s")
    who = f"system:serviceaccount:{namespace}:{FULLNAME}"
    probe = deployment("probe", {}, [])
    wait_for("the operator's admission policy in force", lambda: "writes only its own" in
             crds.kubectl("apply", "--dry-run=server", "-f", "-", f"--as={who}", input=probe,
                          namespace=namespace, check=False).stderr, 30)
    yield who
    helm(crds, "uninstall", "tf", "-n", namespace, check=False)


def can_i(crds: Cluster, who: str, verb: str, what: str, namespace: str | None) -> bool:
    args = ["auth", "can-i", verb, what, f"--as={who}"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    out = crds.kubectl(*args, check=False).stdout.strip()
    assert out in ("yes", "no"), out
    return out == "yes"


def test_can_i_answers_as_the_permissions_table(crds: Cluster, namespace: str,
                                           other_namespace: str, installed: str) -> None:
    table = documented_permissions()
    places = {"watched namespaces": [namespace, other_namespace],
              "release namespace": [namespace], "cluster": [namespace]}
    wrong = []
    for where, group, resource, name in sorted({g[:4] for g in table}):
        what = f"{resource}.{group}" if group else resource
        if "/" in resource:      # can-i takes a subresource as --subresource
            base, sub = resource.split("/")
            what = f"{base}.{group}" if group else base
        target = f"{what}/{name}" if name else what
        for verb in VERBS:
            # a rule without names covers every name
            allowed = {(where, group, resource, name, verb),
                       (where, group, resource, "", verb)} & table != set()
            for ns in places[where]:
                args = [verb, target]
                out = crds.kubectl("auth", "can-i", *args, f"--as={installed}", "-n", ns,
                                   *([f"--subresource={sub}"] if "/" in resource else []),
                                   check=False).stdout.strip()
                if (out == "yes") != allowed:
                    wrong.append(f"{verb} {resource} {name} in {ns}: {out}")
            if where == "watched namespaces" and allowed and "/" not in resource:
                # not in a namespace it does not watch
                for ns in ("default", "kube-system"):
                    if can_i(crds, installed, verb, target, ns):
                        wrong.append(f"{verb} {resource} in {ns}: yes")
    assert wrong == [], "\n".join(wrong)
    # the leader Lease is the release namespace's, and nobody else's Lease
    assert not can_i(crds, installed, "update", "leases/other-lease", namespace)
    assert not can_i(crds, installed, "create", "leases", other_namespace)
    for verb, what in [("list", "secrets"), ("delete", "pods"), ("create", "pods"),
                       ("create", "roles"), ("create", "clusterroles"),
                       ("list", "deployments")]:
        if verb == "list" and what == "deployments":
            assert not can_i(crds, installed, verb, what, None), "never across the cluster"
        else:
            assert not can_i(crds, installed, verb, what, namespace), f"{verb} {what}"


def as_operator(crds: Cluster, who: str, namespace: str, *args: str,
                input: str | None = None) -> tuple[bool, str]:
    out = crds.kubectl(*args, f"--as={who}", input=input, namespace=namespace, check=False)
    return out.returncode == 0, out.stderr


def pod_manifest(name: str, labels: dict[str, str]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "labels": labels,
                                    "annotations": {"keep": "me"}},
                       "spec": {"containers": [{"name": "c", "image": "worker"}]}})


def test_admission_policy_holds_the_operator_to_what_it_owns(crds: Cluster, namespace: str,
                                                             installed: str) -> None:
    ns = namespace
    crds.apply(pod_manifest("worker", {**MANAGED, "app.kubernetes.io/instance": "p"}), ns)
    crds.apply(pod_manifest("foreign", {"app": "web"}), ns)

    # kubectl patch reads the pod first, which the operator may not (it lists): the
    # Kubernetes client with the same impersonation header kubectl --as sends
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(crds.kubeconfig))
    api.set_default_header("Impersonate-User", installed)
    core = k8s.CoreV1Api(api)

    def patch_pod(pod: str, body: dict[str, Any]) -> tuple[bool, str]:
        try:
            core.patch_namespaced_pod(pod, ns, body)
        except ApiException as exc:
            return False, str(exc.body)
        return True, ""

    def annotations(**extra: str | None) -> dict[str, Any]:
        return {"metadata": {"annotations": {COST: "-5", **extra}}}

    ok, err = patch_pod("worker", annotations())
    assert ok, f"the deletion cost of its own worker: {err}"
    pod = crds.get("pod", "worker", ns) or {}
    assert pod["metadata"]["annotations"][COST] == "-5"
    for what, pod_name, body in [
            ("the deletion cost of a pod it does not manage", "foreign", annotations()),
            ("another annotation", "worker", annotations(other="x")),
            ("an annotation removed", "worker", annotations(keep=None)),
            ("a label", "worker", {"metadata": {"labels": {"app": "x"}}}),
            ("its managed-by label", "worker",
             {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}}),
            ("the spec", "worker", {"spec": {"activeDeadlineSeconds": 5}}),
            ("an owner", "worker", {"metadata": {"ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "x",
                 "uid": "00000000-0000-0000-0000-000000000000"}]}})]:
        ok, err = patch_pod(pod_name, body)
        assert not ok and "pod-deletion-cost" in err, f"{what} must be refused: {err}"
    assert COST not in (crds.get("pod", "foreign", ns) or {})["metadata"]["annotations"]
    # made as an administrator, the same patch passes: the policy is the operator's alone
    crds.kubectl("patch", "pod", "foreign", "--type=merge", "-p",
                 json.dumps(annotations()), namespace=ns)

    crds.apply(yaml.safe_dump({"apiVersion": "taskfleet.dev/v1alpha1", "kind": "WorkerPool",
                               "metadata": {"name": "p"},
                               "spec": {"queues": ["q"], "app": "a.b:app"}}), ns)
    uid = (crds.get("workerpool", "p", ns) or {})["metadata"]["uid"]
    owner = {"apiVersion": "taskfleet.dev/v1alpha1", "kind": "WorkerPool", "name": "p",
             "uid": uid, "controller": True, "blockOwnerDeletion": True}

    def apply_as_operator(body: str) -> tuple[bool, str]:
        return as_operator(crds, installed, ns, "apply", "--server-side",
                           "--field-manager=taskfleet-operator", "-f", "-", input=body)

    ok, err = apply_as_operator(deployment("p", MANAGED, [owner]))
    assert ok, f"its own Deployment: {err}"
    ok, err = apply_as_operator(deployment("p", {**MANAGED, "extra": "1"}, [owner]))
    assert ok, f"an update of its own Deployment: {err}"
    for what, manifest in [("no label", deployment("bare", {}, [owner])),
                       ("no WorkerPool owner", deployment("orphan", MANAGED, [])),
                       ("a foreign owner", deployment("fo", MANAGED, [
                           {**owner, "apiVersion": "v1", "kind": "ConfigMap"}])),
                       ("its label removed", deployment("p", {}, [owner]))]:
        ok, err = apply_as_operator(manifest)
        assert not ok and "writes only its own Deployments" in err, \
            f"{what} must be refused: {err}"
    # a Deployment somebody else made is not taken over by adding the label and owner
    crds.apply(deployment("web", {"app": "web"}, []), ns)
    ok, err = apply_as_operator(deployment("web", MANAGED, [owner]))
    assert not ok and "writes only its own Deployments" in err, err
    web = crds.get("deployment", "web", ns) or {}
    assert web["metadata"]["labels"] == {"app": "web"}


def test_aggregated_roles_give_view_and_edit_workerpools(crds: Cluster, namespace: str) -> None:
    prefix = f"tf-agg-{namespace}"
    helm(crds, "install", "tf", str(CHART), "-n", namespace, "--set", KWOK,
         "--set", f"aggregatedClusterRoles.name={prefix}", "--set",
         "operatorAdmissionPolicy.enabled=false")
    try:
        for role, labels in [("view", {"view", "edit", "admin"}), ("edit", {"edit", "admin"})]:
            cr = crds.get("clusterrole", f"{prefix}-{role}") or {}
            assert {k.rsplit("-", 1)[1] for k, v in cr["metadata"]["labels"].items()
                    if k.startswith("rbac.authorization.k8s.io/aggregate-to-")
                    and v == "true"} == labels
        for user, role in [("viewer", "view"), ("editor", "edit"), ("boss", "admin")]:
            crds.kubectl("create", "rolebinding", user, f"--clusterrole={role}",
                         f"--user={user}", namespace=namespace)

        def answers() -> dict[tuple[str, str], bool]:
            return {(user, verb): can_i(crds, user, verb, "workerpools.taskfleet.dev",
                                        namespace)
                    for user in ("viewer", "editor", "boss") for verb in ("list", "create")}

        expected = {("viewer", "list"): True, ("viewer", "create"): False,
                    ("editor", "list"): True, ("editor", "create"): True,
                    ("boss", "list"): True, ("boss", "create"): True}
        wait_for("the aggregation controller folds the roles in",
                 lambda: answers() == expected, 30, describe=lambda: str(answers()))
        assert can_i(crds, "editor", "delete", "taskqueues.taskfleet.dev", namespace)
        assert not can_i(crds, "viewer", "patch", "taskqueues.taskfleet.dev", namespace)
        # a second release finds the roles and leaves them to the first
        helm(crds, "install", "tf2", str(CHART), "-n", namespace, "--set", KWOK,
             "--set", f"aggregatedClusterRoles.name={prefix}", "--set",
             "operatorAdmissionPolicy.enabled=false")
        helm(crds, "uninstall", "tf2", "-n", namespace)
        assert crds.get("clusterrole", f"{prefix}-view") is not None
    finally:
        helm(crds, "uninstall", "tf2", "-n", namespace, check=False)
        helm(crds, "uninstall", "tf", "-n", namespace, check=False)
    assert crds.get("clusterrole", f"{prefix}-edit") is None


POD_OVERRIDES: list[tuple[str, dict[str, Any]]] = [
    ("hostNetwork", {"hostNetwork": True}),
    ("hostPID", {"hostPID": True}),
    ("hostIPC", {"hostIPC": True}),
    ("privileged", {"containers": [{"name": "w", "image": "w",
                                    "securityContext": {"privileged": True}}]}),
    ("privileged", {"initContainers": [{"name": "i", "image": "w",
                                        "securityContext": {"privileged": True}}]}),
    ("capabilities", {"containers": [{"name": "w", "image": "w", "securityContext": {
        "capabilities": {"add": ["NET_ADMIN"]}}}]}),
    ("hostPath", {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}),
]


def test_workerpool_pod_policy_refuses_host_access(crds: Cluster, namespace: str) -> None:
    helm(crds, "install", "tf", str(CHART), "-n", namespace, "--set", KWOK,
         "--set", "aggregatedClusterRoles.create=false", "--set",
         "workerPoolPodPolicy.enabled=true")
    try:
        def apply_pool(name: str, pod_spec: dict[str, Any] | None,
                       *how: str) -> tuple[bool, str]:
            spec: dict[str, Any] = {"queues": ["q"], "app": "a.b:app"}
            if pod_spec is not None:
                spec["podTemplate"] = {"spec": pod_spec}
            out = crds.kubectl(*(how or ("apply",)), "-f", "-", input=yaml.safe_dump(
                {"apiVersion": "taskfleet.dev/v1alpha1", "kind": "WorkerPool",
                 "metadata": {"name": name}, "spec": spec}), namespace=namespace, check=False)
            return out.returncode == 0, out.stderr

        # a create each time (an unchanged apply sends nothing), stored nowhere
        wait_for("the WorkerPool pod policy in force",
                 lambda: not apply_pool("probe", {"hostNetwork": True}, "create",
                                        "--dry-run=server")[0], 30,
                 describe=lambda: crds.kubectl(
                     "get", "validatingadmissionpolicies,validatingadmissionpolicybindings",
                     "-o", "yaml").stdout)
        for i, (what, pod_spec) in enumerate(POD_OVERRIDES):
            ok, err = apply_pool(f"bad-{i}", pod_spec)
            assert not ok and what in err and "WorkerPool pod policy" in err, \
                f"{what} must be refused: {err}"
        allowed: list[dict[str, Any] | None] = [
            None, {}, {"hostNetwork": False, "priorityClassName": "x"},
            {"containers": [{"name": "w", "image": "w", "securityContext": {
                "privileged": False, "capabilities": {"drop": ["ALL"], "add": []}}}]},
            {"volumes": [{"name": "e", "emptyDir": {}}]}]
        for i, good in enumerate(allowed):
            ok, err = apply_pool(f"good-{i}", good)
            assert ok, f"{good} must be allowed: {err}"
        # an update that adds host access is refused too
        ok, err = apply_pool("good-0", {"hostNetwork": True})
        assert not ok and "hostNetwork" in err, err
    finally:
        helm(crds, "uninstall", "tf", "-n", namespace, check=False)
    # uninstalled (and off by default): the same pool is accepted, once the API server
    # has dropped the policy
    host = yaml.safe_dump({"apiVersion": "taskfleet.dev/v1alpha1", "kind": "WorkerPool",
                           "metadata": {"name": "host"},
                           "spec": {"queues": ["q"], "app": "a.b:app",
                                    "podTemplate": {"spec": {"hostNetwork": True}}}})
    wait_for("a hostNetwork pool accepted without the policy",
             lambda: crds.apply(host, namespace, check=False).returncode == 0, 30)


def test_worker_pods_get_no_token_nor_service_links_unless_asked(
        pools: Callable[[str], Pool], crds: Cluster, namespace: str, redis_url: str) -> None:
    crds.apply(yaml.safe_dump(task_queue("q", redis_url)), namespace=namespace)
    quiet = pools("quiet").apply(["q"])
    asks = pools("asks").apply(["q"], automountServiceAccountToken=True,
                               enableServiceLinks=True)
    overrides = pools("overrides").apply(["q"], podTemplate={"spec": {
        "automountServiceAccountToken": True}})
    for pool, token, links in [(quiet, False, False), (asks, True, True),
                               (overrides, True, False)]:
        dep = pool.wait("its Deployment", pool.deployment)
        spec = dep["spec"]["template"]["spec"]
        assert (spec["automountServiceAccountToken"], spec["enableServiceLinks"]) == \
            (token, links), pool.name
    stored = crds.get("workerpool", "quiet", namespace) or {}
    assert stored["spec"]["automountServiceAccountToken"] is False, "the CRD's default"
    out = crds.apply(yaml.safe_dump({"apiVersion": "taskfleet.dev/v1alpha1",
                                     "kind": "WorkerPool", "metadata": {"name": "bad"},
                                     "spec": {"queues": ["q"], "app": "a.b:app",
                                              "enableServiceLinks": "yes"}}),
                     namespace, check=False)
    assert out.returncode != 0 and "enableServiceLinks" in out.stderr, out.stderr


def test_the_security_page_says_a_workerpool_is_a_deployment() -> None:
    text = re.sub(r"\s+", " ", SECURITY_PAGE.read_text())
    assert "creating a WorkerPool is equivalent to creating a Deployment there" in text
