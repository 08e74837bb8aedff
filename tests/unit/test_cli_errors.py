"""Every subcommand's bad values: one line on stderr that names the option, a non-zero exit,
never a traceback or a silent hang. (What needs a live Redis is in the integration tests.)"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskfleet.cli import main

NOWHERE = "redis://127.0.0.1:1/0"  # never connected to: every case fails before that



@pytest.fixture(autouse=True)
def keep_signal_handlers() -> Iterator[None]:
    """``taskfleet worker`` holds SIGTERM and SIGINT while it starts; give them back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


CASES = [
    # (argv, what the one line must name)
    (["worker", "--app", "x:app", "--concurrency", "0"], "--concurrency"),
    (["worker", "--app", "x:app", "--concurrency", "-3", "--pool", "threads"], "--concurrency"),
    (["worker", "--app", "x:app", "--concurrency", "two"], "--concurrency"),
    (["worker", "--app", "x:app", "--queues", ","], "--queues"),
    (["worker", "--app", "x:app", "--pool", "gevent"], "--pool"),
    (["worker", "--app", "x:app", "--drain-timeout", "-1"], "--drain-timeout"),
    (["worker", "--app", "x:app", "--task-lease-seconds", "0"], "--task-lease-seconds"),
    (["worker", "--app", "x:app", "--redelivery-limit", "-1"], "--redelivery-limit"),
    (["worker", "--app", "x:app", "--metrics-port", "70000"], "--metrics-port"),
    (["worker", "--app", "no-colon"], "--app"),
    (["worker", "--app", "no_such_module_here:app"], "--app"),
    (["worker"], "--app"),
    (["send", "t", "--priority", "11"], "--priority"),
    (["send", "t", "--priority", "-1"], "--priority"),
    (["send", "t", "--args", "{not json"], "--args"),
    (["send", "t", "--args", '{"a": 1}'], "--args"),
    (["send", "t", "--kwargs", "[1]"], "--kwargs"),
    (["send", "t", "--countdown", "-5"], "--countdown"),
    (["send", "t", "--wait", "0"], "--wait"),
    (["send", "", "--queue", "q"], "send ''"),
    (["send"], "name"),
    (["dead", "bury", "q"], "action"),
    (["dead", "list", "q", "--limit", "0"], "--limit"),
    (["health", "--max-age", "-1"], "--max-age"),
    (["beat", "--schedule", "/nonexistent/schedules.yaml"], "--schedule"),
    (["beat", "--schedule", "s.yaml", "--interval", "0"], "--interval"),
    (["operator", "--leader-lease-seconds", "0"], "--leader-lease-seconds"),
    (["operator", "--liveness-port", "0"], "--liveness-port"),
    (["operator", "--metrics-port", "0"], "--metrics-port"),
    (["operator", "--dashboard-port", "70000"], "--dashboard-port"),
    (["operator", "--dashboard-actions"], "TASKFLEET_DASHBOARD_TOKEN"),
    (["dashboard", "--port", "0"], "--port"),
    (["dashboard", "--actions"], "TASKFLEET_DASHBOARD_TOKEN"),
    (["launch"], "command"),
]


@pytest.mark.parametrize(("argv", "names"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_values_get_one_line_naming_the_option(argv: list[str], names: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["--broker", NOWHERE, *argv])
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code not in (0, None), f"exit code {code}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"one line, not {len(lines)}:\n{err}"
    assert names in lines[0], lines[0]
    assert "Traceback" not in err


def test_a_stale_health_file_fails_with_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--file", str(tmp_path / "never-written")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"unhealthy: {tmp_path / 'never-written'} missing (worker never reached Redis)")


@pytest.mark.parametrize(("url", "names"), [
    ("http://redis:6379", "redis+sentinel://HOST:26379,HOST2:26379/MASTER_NAME/0"),
    ("redis+sentinel://s1:26379", "needs the master name"),
    ("redis+cluster://n1:7000/3", "only database 0"),
])
def test_a_bad_broker_url_gets_one_line_with_the_forms(url: str, names: str,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    code = main(["--broker", url, "inspect"])
    err = capsys.readouterr().err
    assert code not in (0, None)
    assert len(err.strip().splitlines()) == 1 and names in err, err
