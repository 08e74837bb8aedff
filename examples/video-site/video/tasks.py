"""Tasks of the video site. Only the workers import this module; the web
servers send these tasks by name (see web/app.py)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from taskfleet import App

app = App(routes={"video.*": "transcode", "report.*": "reports"})

# Seconds of (simulated) work to transcode one video to 1080p; scaled by height.
SECONDS_PER_1080P = float(os.environ.get("TRANSCODE_SECONDS_PER_1080P", "30"))


@app.task(name="video.transcode", queue="transcode", max_retries=3, retry_backoff=5.0,
          time_limit=3600)
def transcode(video_id: str, height: int) -> dict[str, object]:
    """Transcode an upload to one rendition (the real work would call ffmpeg here)."""
    if height not in (360, 480, 720, 1080, 2160):
        raise ValueError(f"unsupported height {height}")
    time.sleep(SECONDS_PER_1080P * height / 1080)
    return {"video_id": video_id, "height": height, "url": f"/media/{video_id}/{height}p.mp4"}


@app.task(name="mail.send_welcome")
def send_welcome(user_id: str) -> str:
    """A light task: the default pool serves these next to the reports."""
    time.sleep(0.05)
    return f"welcome mail sent to {user_id}"


@app.task(name="report.hourly", queue="reports")
def hourly_report() -> dict[str, str]:
    """Fired once per hour by the TaskQueue schedule, whatever the number of servers."""
    return {"report": "uploads per hour", "generated_at": datetime.now(UTC).isoformat()}
