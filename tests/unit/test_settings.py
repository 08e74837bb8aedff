"""Settings built once and handed on whole (taskfleet.settings): the broker URL's rule, the
App's one place of broker settings, and every worker option reaching a processes pool's
children without a command line."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from taskfleet import App, cli, supervisor, worker
from taskfleet.celery_wire import DEFAULT_PRIORITY_STEPS
from taskfleet.connection import BROKER_ENV, app_broker_url, broker_url, parse_broker_url
from taskfleet.errors import ConfigError
from taskfleet.settings import BrokerSettings, PoolChildSettings, WorkerSettings
from tests.integration.apps import sample

FLAG, ENV, OWN = "redis://flag:6379/0", "redis://env:6379/0", "redis://own:6379/0"
SAMPLE = "tests.integration.apps.sample:app"


@pytest.fixture(autouse=True)
def keep_signal_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize(("flag", "env", "own", "chosen"), [
    (FLAG, ENV, OWN, FLAG),
    (None, ENV, OWN, ENV),
    (None, None, OWN, OWN),
    (FLAG, None, None, FLAG),
])
def test_the_command_takes_the_flag_then_the_environment_then_the_app(
        flag: str | None, env: str | None, own: str | None, chosen: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BROKER_ENV, raising=False)
    if env:
        monkeypatch.setenv(BROKER_ENV, env)
    assert broker_url(flag, own, "m:app") == chosen


def test_with_no_url_the_error_names_every_place_one_may_come_from(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BROKER_ENV, raising=False)
    with pytest.raises(ConfigError) as with_app:
        broker_url(None, None, "video.tasks:app")
    for names in ("--broker", BROKER_ENV, "App('redis://", "video.tasks:app"):
        assert names in str(with_app.value)
    with pytest.raises(ConfigError) as without_app:
        broker_url(None)
    assert "--broker" in str(without_app.value) and BROKER_ENV in str(without_app.value)


def test_a_bad_url_is_named_by_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BROKER_ENV, raising=False)
    with pytest.raises(ConfigError, match="the broker URL of m:app is not a usable"):
        broker_url(None, "http://own", "m:app")


def test_an_app_in_user_code_keeps_its_own_url_before_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BROKER_ENV, ENV)
    assert app_broker_url(OWN) == OWN
    assert app_broker_url(None) == ENV
    assert App(OWN).broker_url == OWN


def test_the_app_and_its_broker_share_one_settings_object_the_url_completes() -> None:
    app = App("redis://own:6379/0?replica_acks=2&replica_ack_timeout_ms=300",
              result_ttl=60, redelivery_limit=2, dead_letter_limit=7, max_message_bytes=999)
    settings = app.broker.settings
    assert settings == dataclasses.replace(app.broker_settings, replica_acks=2,
                                           replica_ack_timeout_ms=300)
    assert (settings.result_ttl, settings.redelivery_limit, settings.dead_letter_limit,
            settings.max_message_bytes) == (60, 2, 7, 999)
    assert App("redis://own:6379/0?replica_acks=2", replica_acks=1).broker.settings \
        .replica_acks == 1
    address = parse_broker_url("redis://own:6379/0")
    assert BrokerSettings().for_address(address).replica_acks == 0


def test_settings_cannot_change_after_they_are_built() -> None:
    settings = BrokerSettings(celery_queues={"films": [0, 5]})
    assert settings.celery_queues["films"] == (0, 5)
    with pytest.raises(TypeError):
        settings.celery_queues["clips"] = DEFAULT_PRIORITY_STEPS  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.dead_letter_limit = 1  # type: ignore[misc]
    assert WorkerSettings(queues=["a", "b"]).queues == ("a", "b")


def test_pool_child_settings_come_back_equal_from_their_encoding() -> None:
    child = PoolChildSettings(
        app=SAMPLE, broker_url="redis://:pw@own:6379/0",
        broker=BrokerSettings(result_ttl=5, redelivery_limit=0, dead_letter_limit=3,
                              max_message_bytes=100, replica_acks=1, replica_ack_timeout_ms=20,
                              celery_queues={"films": (0, 9)}),
        worker=WorkerSettings(queues=["films", "default"], pool="inline", drain_timeout=3.5,
                              task_lease_seconds=9.0, health_file="/tmp/h", supervised=True),
        log_level="DEBUG", metrics=True)
    assert PoolChildSettings.decode(child.encode()) == child


EVERY_OPTION = ["--log-level", "DEBUG", "worker", "--app", SAMPLE, "--queues", "films,default",
                "--celery-queues", "films", "--celery-priority-steps", "films=0,5",
                "--concurrency", "3", "--drain-timeout", "4.5",
                "--task-lease-seconds", "12", "--redelivery-limit", "2",
                "--dead-letter-limit", "40", "--health-file", "/tmp/taskfleet-test-health"]


def test_every_worker_option_reaches_the_processes_pools_children(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BROKER_ENV, raising=False)
    started: list[tuple[PoolChildSettings, int]] = []

    class Captured:
        def __init__(self, child: PoolChildSettings, processes: int) -> None:
            started.append((child, processes))

        def run(self) -> int:
            return 0

    monkeypatch.setattr(supervisor, "Supervisor", Captured)
    assert cli.main(["--broker", FLAG, *EVERY_OPTION, "--pool", "processes"]) == 0
    [(child, processes)] = started
    assert processes == 3
    expected = PoolChildSettings(
        app=SAMPLE, broker_url=FLAG, log_level="DEBUG", metrics=False,
        broker=BrokerSettings(redelivery_limit=2, dead_letter_limit=40,
                              celery_queues={"films": (0, 5)}),
        worker=WorkerSettings(queues=["films", "default"], concurrency=1, pool="inline",
                              drain_timeout=4.5, task_lease_seconds=12.0,
                              health_file="/tmp/taskfleet-test-health", supervised=True))
    assert PoolChildSettings.decode(child.encode()) == expected


def test_every_worker_option_reaches_a_threads_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BROKER_ENV, raising=False)
    for name in ("broker_settings", "_broker_url", "_redis", "_broker"):  # put back after
        monkeypatch.setattr(sample.app, name, getattr(sample.app, name))
    ran: list[Any] = []
    monkeypatch.setattr(worker.Worker, "run", lambda self: ran.append(self) or 0)
    assert cli.main(["--broker", FLAG, *EVERY_OPTION, "--pool", "threads"]) == 0
    [w] = ran
    assert w.settings == WorkerSettings(queues=["films", "default"], concurrency=3,
                                        pool="threads", drain_timeout=4.5,
                                        task_lease_seconds=12.0,
                                        health_file="/tmp/taskfleet-test-health")
    assert w.app.broker_url == FLAG
    assert w.app.broker.settings == BrokerSettings(
        redelivery_limit=2, dead_letter_limit=40, replica_acks=0, replica_ack_timeout_ms=1000,
        celery_queues={"films": (0, 5)})


def test_a_pool_child_started_by_hand_says_what_starts_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TASKFLEET_POOL_CHILD", raising=False)
    assert cli.main(["pool-child"]) == 2
    assert "taskfleet worker --pool processes" in capsys.readouterr().err
