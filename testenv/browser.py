"""Headless Chromium (Debian's ``chromium``) driven by Playwright from PyPI, with the
browser's path given explicitly: no browser is ever downloaded (no `playwright install`)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Page, sync_playwright

from testenv.processes import ROOT


def chromium_path() -> str:
    """Debian's chromium, installed with apt-get when missing."""
    found = shutil.which("chromium")
    if found:
        return found
    if not shutil.which("apt-get"):
        raise RuntimeError("chromium is missing and there is no apt-get; install Chromium and "
                           "put it on PATH as 'chromium'")
    done = subprocess.run([str(ROOT / "hack" / "debian.sh"), "chromium"], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"hack/debian.sh chromium failed: {done.stderr[-500:]}")
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


@contextmanager
def browser_page(width: int = 1400, height: int = 1000) -> Iterator[Page]:
    """A page in a fresh headless Chromium, closed at the end."""
    with sync_playwright() as p:
        # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


__all__ = ["browser_page", "chromium_path"]
