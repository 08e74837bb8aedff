"""The chart's monitoring objects as `helm template` renders them: off by default; when on,
the PrometheusRule carries files/alerts.yaml unchanged, the dashboard ConfigMap carries
files/dashboard.json, and the ServiceMonitor and PodMonitor select what the operator and the
workers really expose (the operator's Service, the pods build_deployment labels)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import yaml

from taskfleet_operator.deployment import build_deployment
from taskfleet_operator.model import parse_task_queue, parse_worker_pool
from testenv.cluster import Cluster, binaries_dir
from testenv.processes import ROOT
from testenv.prometheus import prometheus_operator_crds

CHART = ROOT / "charts" / "taskfleet"
ALL_ON = ("monitoring.serviceMonitor.enabled=true,monitoring.podMonitor.enabled=true,"
          "monitoring.prometheusRule.enabled=true,monitoring.grafanaDashboard.enabled=true")


def render(*sets: str) -> dict[str, dict[str, Any]]:
    """The rendered objects by kind (one of each kind asked for here)."""
    argv = [str(binaries_dir() / "helm"), "template", "tf", str(CHART), "-n", "ops",
            "--kube-version", "v1.34.4"]
    for s in sets:
        argv += ["--set", s]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    return {d["kind"]: d for d in docs}


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = render()
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(kinds)
    assert "ConfigMap" not in kinds
    operator = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=8081" in operator["args"]
    assert {"name": "metrics", "containerPort": 8081} in operator["ports"]


def test_the_rule_and_dashboard_are_the_files_unchanged() -> None:
    kinds = render(ALL_ON)
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert kinds["PrometheusRule"]["spec"] == rules
    dashboard = kinds["ConfigMap"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["taskfleet.json"]) == json.loads(
        (CHART / "files" / "dashboard.json").read_text())


def test_the_service_monitor_scrapes_the_operators_metrics_port() -> None:
    kinds = render(ALL_ON, "metricsPort=9444")
    service, monitor = kinds["Service"], kinds["ServiceMonitor"]
    pod_labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"][
        "labels"].items()
    assert {"name": "metrics", "port": 9444, "targetPort": "metrics"} in service["spec"]["ports"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True


def test_the_pod_monitor_selects_worker_pods_with_metrics_on() -> None:
    monitor = render(ALL_ON)["PodMonitor"]
    pool = parse_worker_pool({"metadata": {"namespace": "video", "name": "transcoder"},
                              "spec": {"queues": ["q"], "app": "video.tasks:app",
                                       "metrics": {"enabled": True}}})
    queue = parse_task_queue({"metadata": {"namespace": "video", "name": "q"},
                              "spec": {"redis": {"url": "redis://redis:6379/0"}}})
    template = build_deployment(pool, [queue], 1)["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"][
        "labels"].items()
    ports = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    assert "metrics" in ports
    # namespaced by default: the release namespace, or the ones it watches
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    several = render(ALL_ON, "namespaces={ops,video}")["PodMonitor"]
    assert several["spec"]["namespaceSelector"] == {"matchNames": ["ops", "video"]}
    cluster_wide = render(ALL_ON, "clusterWide=true")["PodMonitor"]
    assert cluster_wide["spec"]["namespaceSelector"] == {"any": True}


def test_the_dashboard_is_served_read_only_unless_actions_with_a_token_secret() -> None:
    kinds = render()
    operator = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert "--dashboard-port=8082" in operator["args"]
    assert "--dashboard-actions" not in operator["args"]
    assert {"name": "dashboard", "containerPort": 8082} in operator["ports"]
    assert {"name": "dashboard", "port": 8082, "targetPort": "dashboard"} in kinds["Service"][
        "spec"]["ports"]
    assert "TASKFLEET_DASHBOARD_TOKEN" not in {e["name"] for e in operator["env"]}
    kinds = render("dashboard.actions=true,dashboard.tokenSecret.name=dash")
    operator = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert "--dashboard-actions" in operator["args"]
    [token] = [e for e in operator["env"] if e["name"] == "TASKFLEET_DASHBOARD_TOKEN"]
    assert token["valueFrom"] == {"secretKeyRef": {"name": "dash", "key": "token"}}
    argv = [str(binaries_dir() / "helm"), "template", "tf", str(CHART), "--kube-version",
            "v1.34.4", "--set", "dashboard.actions=true"]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode != 0 and "dashboard.tokenSecret.name" in out.stderr


def test_a_wrong_monitoring_value_names_it() -> None:
    argv = [str(binaries_dir() / "helm"), "template", "tf", str(CHART), "--kube-version",
            "v1.34.4", "--set", "monitoring.podMonitor.interval=5"]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode != 0 and "/monitoring/podMonitor/interval" in out.stderr


def test_the_api_server_accepts_them_with_the_prometheus_operator_crds(
        crds: Cluster, namespace: str) -> None:
    """Server-side validation against the Prometheus Operator's own CRDs (from its Go module)."""
    for path in prometheus_operator_crds("servicemonitors", "podmonitors", "prometheusrules"):
        crds.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    for crd in ("servicemonitors", "podmonitors", "prometheusrules"):
        crds.kubectl("wait", "--for=condition=Established",
                     f"crd/{crd}.monitoring.coreos.com", "--timeout=30s")
    argv = [str(binaries_dir() / "helm"), "template", "tf", str(CHART), "-n", namespace,
            "--kube-version", "v1.34.4", "--set", ALL_ON]
    rendered = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    out = crds.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered,
                       namespace=namespace).stdout
    for created in ("servicemonitor.monitoring.coreos.com/tf-taskfleet",
                    "podmonitor.monitoring.coreos.com/tf-taskfleet-workers",
                    "prometheusrule.monitoring.coreos.com/tf-taskfleet",
                    "configmap/tf-taskfleet-dashboard", "service/tf-taskfleet"):
        assert f"{created} created (server dry run)" in out, out
