"""Tasks for the stop-at-any-moment tests: an import that takes ``STOPS_IMPORT_SECONDS``
(as a large code base's does) and a short task that records its start and its end."""

from __future__ import annotations

import os
import time

from taskfleet import App
from taskfleet.connection import connect

time.sleep(float(os.environ.get("STOPS_IMPORT_SECONDS", "0")))

app = App()  # broker from TASKFLEET_BROKER_URL or --broker

STARTED = "test:stops:started"
"""A set of the keys of tasks that started."""
DONE = "test:stops:done"
"""A list of the keys of tasks that ran to their end, one entry per run."""


@app.task(name="stops.work", ignore_result=True)
def work(key: str, seconds: float) -> None:
    client = connect(os.environ["TASKFLEET_BROKER_URL"])
    client.sadd(STARTED, key)
    time.sleep(seconds)
    client.rpush(DONE, key)
    client.close()
