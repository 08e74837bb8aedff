"""The chart's alert rules (charts/taskfleet/files/alerts.yaml, shipped as is in its
PrometheusRule) checked and unit-tested by promtool: every alert firing and not firing."""

from __future__ import annotations

from typing import Any

import yaml

from testenv.processes import ROOT
from testenv.prometheus import promtool

RULES = ROOT / "charts" / "taskfleet" / "files" / "alerts.yaml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yaml"


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"] for g in groups for r in g["rules"] if "alert" in r}


def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    out = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases: list[dict[str, Any]] = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]
                                   for c in t["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alert_names() == firing == quiet
    assert len(alert_names()) == 5
