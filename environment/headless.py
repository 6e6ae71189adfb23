"""Headless Chromium for the episode browser's screenshot, its tests and its benchmark (playwright, dev extra).

Playwright drives the system's Chromium (`/usr/bin/chromium`, Debian's package; `SA_CHROMIUM` to point elsewhere):
`playwright install` would download a browser, which fails offline. `make setup-dev` installs both.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conf.errors import UserError

HOW_TO_INSTALL = "run `make setup-dev` (pip install playwright; apt-get install chromium)"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


class BrowserMissing(UserError):
    """Playwright or Chromium is not installed (one line naming the fix)."""


def chromium_path() -> str:
    """The Chromium executable: $SA_CHROMIUM, /usr/bin/chromium, or `chromium` on PATH."""
    for candidate in (os.environ.get("SA_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrowserMissing(f"no Chromium found (/usr/bin/chromium or $SA_CHROMIUM); {HOW_TO_INSTALL}")


@contextmanager
def chromium() -> Iterator[Any]:
    """A playwright Browser: headless system Chromium (closed on exit); BrowserMissing names the fix."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserMissing(f"the playwright package is not installed; {HOW_TO_INSTALL}") from None
    executable = chromium_path()
    with sync_playwright() as driver, driver.chromium.launch(executable_path=executable, args=ARGS) as browser:
        yield browser


@contextmanager
def chromium_page(**context: Any) -> Iterator[Any]:
    """A fresh playwright Page in headless Chromium; `context`: new_context options (e.g. viewport)."""
    with chromium() as browser:
        yield browser.new_context(**context).new_page()
