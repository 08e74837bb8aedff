"""An app that names its broker itself, as the README's ``App("redis://...")`` does; the
URL comes from OWN_URL_APP_BROKER so a test can point it at its server (or nowhere)."""

from __future__ import annotations

import os

from taskfleet import App

app = App(os.environ.get("OWN_URL_APP_BROKER") or None)


@app.task(name="own_url.where")
def where() -> str:
    """Which URL the worker that ran it was given by the app's module."""
    return os.environ.get("OWN_URL_APP_BROKER", "")
