"""taskfleet peer of bench/throughput.py: the shared task body, with its result stored
(taskfleet's default) and without."""

from bench.peers import body
from taskfleet import App

app = App()


@app.task(name="bench.incr")
def incr() -> None:
    body.incr()


@app.task(name="bench.incr_no_result", ignore_result=True)
def incr_no_result() -> None:
    body.incr()
