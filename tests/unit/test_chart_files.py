"""The chart's CRDs are the top-level ones, byte for byte."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_chart_crds_equal_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (ROOT / "charts/taskfleet/crds").glob("*.yaml")}
    assert top, "no CRDs found"
    assert chart == top, "copy crds/*.yaml into charts/taskfleet/crds/"
