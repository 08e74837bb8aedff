"""``taskfleet beat``: schedules from a YAML file, for users without Kubernetes.

Several beats may run at once (for availability): each tick is still sent
exactly once, by whichever claims it first (see schedule.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis
import yaml

from .broker import Broker
from .connection import connect
from .errors import ConfigError
from .schedule import Schedule, ScheduleError, Scheduler

log = logging.getLogger("taskfleet.beat")


def load_schedules(path: Path) -> list[Schedule]:
    """Parse a schedule file; ConfigError names the file, the schedule and the field."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--schedule {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--schedule {path}: not valid YAML ({exc})") from exc
    items = data.get("schedules") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"--schedule {path}: needs a 'schedules:' list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: schedules[{i}] must be a mapping")
        try:
            out.append(Schedule.from_dict(item, where=f"{path}: schedules"))
        except ScheduleError as exc:
            raise ConfigError(str(exc)) from exc
    names = [s.name for s in out]
    if len(set(zip(names, [s.queue for s in out], strict=True))) != len(out):
        raise ConfigError(f"{path}: schedule names must be unique per queue")
    return out


def run_beat(url: str, path: Path, interval: float) -> int:
    schedules = load_schedules(path)
    scheduler = Scheduler(Broker(connect(url)))
    # The handler only writes to a pipe: it runs between two bytecodes of the loop, also
    # inside a lock the loop holds, so setting a threading.Event there could deadlock.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            os.write(wake_write, b"s")

    def stopped(timeout: float) -> bool:
        return bool(select.select([wake_read], [], [], timeout)[0])

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("beat: %d schedule(s) from %s", len(schedules), path)
    while not stopped(0):
        now = datetime.now(UTC)
        for s in schedules:
            try:
                result = scheduler.run_due(s, now)
            except redis.RedisError as exc:
                log.error("schedule %s: redis error (%s); will retry", s.name, exc)
                continue
            if result.sent is not None:
                log.info("schedule %s: sent %s for %s as %s", s.name, s.task,
                         result.sent.isoformat(), result.task_id)
            for tick in result.skipped:
                log.warning("schedule %s: tick %s skipped (past startingDeadlineSeconds)",
                            s.name, tick.isoformat())
        if stopped(interval):
            break
    return 0
