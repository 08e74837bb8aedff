"""The dashboard's pure parts: who may act, and what the pools' history keeps."""

from __future__ import annotations

from typing import Any

import pytest

from taskfleet.dashboard import AccessSettings, PoolView
from taskfleet.dashboard.server import TOKEN_HEADER
from taskfleet.dashboard.views import HISTORY_POINTS, REASONS_KEPT, PoolHistory

TOKEN = "0123456789abcdef0123"


class Request:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


def refusal(settings: AccessSettings, headers: dict[str, str]) -> str | None:
    request: Any = Request(headers)
    return settings.action_refusal(request)


def test_actions_need_to_be_enabled_and_the_token() -> None:
    off = AccessSettings(token=TOKEN, actions=False)
    assert "read-only" in (refusal(off, {TOKEN_HEADER: TOKEN}) or "")
    on = AccessSettings(token=TOKEN, actions=True)
    assert refusal(on, {TOKEN_HEADER: TOKEN}) is None
    for wrong in ({}, {TOKEN_HEADER: ""}, {TOKEN_HEADER: TOKEN[:-1]},
                  {TOKEN_HEADER: TOKEN + "x"}):
        assert TOKEN_HEADER in (refusal(on, wrong) or ""), wrong


def test_a_short_token_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        AccessSettings(token="short", actions=True)


def test_the_token_rule_is_checked_when_the_settings_are_built() -> None:
    with pytest.raises(ValueError, match="actions need a token"):
        AccessSettings(actions=True)
    with pytest.raises(ValueError, match="16 characters"):
        AccessSettings(token="short")
    with pytest.raises(ValueError, match=r"without credentials on 0\.0\.0\.0"):
        AccessSettings(address="0.0.0.0")
    assert AccessSettings(token=TOKEN, address="0.0.0.0", actions=True).actions
    assert not AccessSettings().token, "on loopback, reads need no token (port-forward)"


def pool(name: str, desired: int, ready: int, when: str | None = None,
         reason: str | None = None) -> PoolView:
    return PoolView("ns", name, ["q"], desired, desired, ready, 10, when, reason)


def test_history_samples_once_a_second_and_keeps_reasons_once_each() -> None:
    h = PoolHistory()
    h.record([pool("p", 0, 0)], 100.0)
    h.record([pool("p", 3, 0, "t1", "ready=12 → 3")], 100.4)   # reason kept, no sample
    h.record([pool("p", 3, 1, "t1", "ready=12 → 3")], 101.0)
    h.record([pool("p", 1, 1, "t2", "idle → 1")], 102.0)
    [row] = h.rows([pool("p", 1, 1)])
    assert row["history"] == [[100.0, 0, 0], [101.0, 3, 1], [102.0, 1, 1]]
    assert [r["reason"] for r in row["reasons"]] == ["idle → 1", "ready=12 → 3"]


def test_history_is_bounded_and_forgets_deleted_pools() -> None:
    h = PoolHistory()
    for i in range(HISTORY_POINTS + 50):
        h.record([pool("p", i % 4, 0, f"t{i}", f"r{i}"), pool("gone", 1, 1)], float(i))
    rows = {r["key"]: r for r in h.rows([pool("p", 0, 0), pool("gone", 1, 1)])}
    row = rows["ns/p"]
    assert len(row["history"]) == HISTORY_POINTS
    assert len(row["reasons"]) == REASONS_KEPT
    h.record([pool("p", 0, 0)], 10_000.0)
    assert set(h.points) == {"ns/p"}
