"""RQ peer: a no-op job function."""


def noop() -> None:
    return None
