"""RQ peer: job functions."""

from bench.peers import body


def noop() -> None:
    return None


def incr() -> None:
    body.incr()
