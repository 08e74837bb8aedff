"""A taskfleet app serving a Celery queue that fails its tasks: ``video.sleep`` fails
twice (one retry, so it is dead-lettered as a taskfleet message), and ``video.where`` is
not registered (dead-lettered at once, still as the Celery client's envelope)."""

from __future__ import annotations

from taskfleet import App

app = App()  # broker from TASKFLEET_BROKER_URL or --broker


@app.task(name="video.sleep", max_retries=1, retry_backoff=0.05, retry_jitter=False)
def sleep(value: str, seconds: float) -> str:
    raise OSError(f"the transcoder's disk is full ({value})")
