"""Headless Chromium (Debian ``chromium`` + ``chromium-driver``) driving a real `pmargin serve`.

The ``browser`` fixture (``tests/conftest.py``, :mod:`tests.browser`) skips, saying why, when
Chromium, ChromeDriver or selenium is missing (``make browser`` installs the first two).
Screenshots go to ``$PMARGIN_SCREENSHOTS`` when it is set (the docs' copies:
``PMARGIN_SCREENSHOTS=docs/img``), else to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def wait_for(drv: Any, script: str, timeout: float = 20.0) -> Any:
    """Poll a JavaScript expression until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        v = drv.execute_script(f"return ({script});")
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {script}: {v!r}; console: "
                                 f"{drv.get_log('browser')}")
        time.sleep(0.05)


def use_key(drv: Any, url: str, key: str) -> None:
    """Enter the API key once through the form (kept in sessionStorage for the tab)."""
    from selenium.webdriver.common.by import By

    drv.get(f"{url}/ui/calculator")
    drv.execute_script("sessionStorage.clear();")
    box = drv.find_element(By.ID, "api-key")
    box.clear()
    box.send_keys(key)
    drv.find_element(By.ID, "key-save").click()
    wait_for(drv, "document.getElementById('key-state').textContent.startsWith('key in use')")
    assert drv.execute_script("return sessionStorage.getItem('pmargin.apiKey')") == key


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Any, str], Path]:
    """Save a full-page screenshot as ``<name>.png``."""
    where = os.environ.get("PMARGIN_SCREENSHOTS")
    folder = Path(where) if where else tmp_path_factory.mktemp("screens")
    folder.mkdir(parents=True, exist_ok=True)

    def save(drv: Any, name: str) -> Path:
        h = drv.execute_script("return document.documentElement.scrollHeight")
        w = drv.execute_script("return window.innerWidth")
        size = drv.get_window_size()
        drv.set_window_size(size["width"], min(max(int(h) + 120, 600), 4000))
        path = folder / f"{name}.png"
        drv.save_screenshot(str(path))
        drv.set_window_size(size["width"], size["height"])
        assert path.stat().st_size > 1000, w
        return path

    return save


def js_json(drv: Any, expr: str) -> Any:
    """A JavaScript value through JSON (numbers keep full precision)."""
    return json.loads(drv.execute_script(f"return JSON.stringify({expr});"))


@pytest.fixture(scope="module")
def small_venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real `pmargin serve` on SQLite with a few accounts holding short puts, and keys."""
    import uuid

    from pmargin.service.database import connect, migrate
    from pmargin.service.server import create_key
    from tests.service.conftest import OPTION, Server, _free_port, market_json

    tmp = tmp_path_factory.mktemp("web")
    db_url = f"sqlite:///{tmp / 'svc.db'}"
    port = _free_port()
    srv = Server(f"http://127.0.0.1:{port}", db_url, port)
    migrate(connect(db_url))
    srv.keys = {r: create_key(r, None, db_url) for r in ("admin", "operator", "risk")}
    srv.start()
    try:
        srv.market = market_json()  # type: ignore[attr-defined]
        assert srv.post("operator", "/v1/market", srv.market).status_code == 200
        with srv.client("risk") as c:
            rows = c.get("/v1/instruments", params={"q": OPTION}).json()["instruments"]
        mark = f"{rows[0]['mark_price']:.4f}"
        ids = []
        for i, (btc, qty) in enumerate([("1", "1"), ("2", "3"), ("0.5", "0"), ("3", "2"),
                                        ("0.9", "3"), ("0.8", "2")]):
            acct = f"w{i}-{uuid.uuid4().hex[:6]}"
            assert srv.post("operator", "/v1/accounts", {"id": acct, "book": "BTC"}
                            ).status_code == 200
            assert srv.post("operator", "/v1/transfers", {
                "account": acct, "currency": "BTC", "amount": btc, "direction": "deposit"}
            ).status_code == 200
            if qty != "0":
                r = srv.post("operator", "/v1/fills", {
                    "account": acct, "instrument": OPTION, "quantity": f"-{qty}",
                    "price": mark, "price_currency": "BTC"})
                assert r.status_code == 200, r.text
            ids.append(acct)
        # a market after the accounts (the overview's first epoch)
        srv.market = market_json(minutes=1)  # type: ignore[attr-defined]
        assert srv.post("operator", "/v1/market", srv.market).status_code == 200
        srv.accounts = ids  # type: ignore[attr-defined]
        with srv.client("admin") as c:
            srv.keys["trader"] = c.post("/v1/keys", json={"role": "trader",
                                                          "account": ids[1]}).json()["key"]
        yield srv
    finally:
        srv.stop()
