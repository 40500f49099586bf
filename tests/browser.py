"""Headless Chromium for the browser tests (Debian ``chromium`` + ``chromium-driver``), once.

The ``browser`` fixture of ``tests/conftest.py`` starts it; a test using the fixture skips,
saying why, when Chromium, ChromeDriver or selenium is missing (``make browser`` installs the
first two).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def why_no_browser() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if CHROMIUM is None:
        return "no chromium on PATH (make browser, or apt-get install chromium)"
    if CHROMEDRIVER is None:
        return "no chromedriver on PATH (make browser, or apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make env)"
    return None


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A headless Chromium driver, 1280 x 900, console kept for the checks; quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,900", "--disable-extensions", "--no-first-run",
              "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=DriverService(executable_path=str(CHROMEDRIVER)),
                           options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


def console_errors(drv: Any) -> list[dict[str, Any]]:
    """Console entries of level SEVERE since the last call (the log is drained)."""
    return [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
