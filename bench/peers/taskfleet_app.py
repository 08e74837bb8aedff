"""taskfleet: the same no-op task."""

from taskfleet import App

app = App()


@app.task(name="bench.noop")
def noop() -> None:
    return None
