"""An app whose import takes seconds, as a large code base's does: a worker stopped
while it loads must still exit 0."""

from __future__ import annotations

import os
import time
from pathlib import Path

from taskfleet import App

Path(os.environ["SLOW_START_MARKER"]).touch()  # tells the test the import has begun
time.sleep(3)

app = App()


@app.task(name="slow_start.noop")
def noop() -> None:
    return None
