"""The overview of a 100,000-account demo book: first render and live-update lag, in the browser.

Targets (issue 14): first render <= 1 s after the page is requested, live updates <= 1 s behind
the engine. "First render" is the page's own mark (``window.pmOverview.firstRenderMs``: time
from the navigation start to the moment the totals and both tables are in the DOM, read from
``performance.now()``). "Behind the engine" is from the moment the service publishes the
re-margined book on its stream (``published_at`` of the ``book`` message, server clock) to the
moment the page shows that state (browser clock; both on this machine). The time from the 200
of ``POST /v1/market`` is reported beside it: it can be negative, because the service answers
the POST only after the epoch's health events and attestation are stored, while the stream
message goes out as soon as the margins are current. Figures are printed and reported in
docs/dashboard.md.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import console_errors
from tests.service.conftest import _free_port
from tests.service.web.conftest import js_json, use_key, wait_for

pytestmark = pytest.mark.slow

ACCOUNTS = int(os.environ.get("PMARGIN_DASHBOARD_ACCOUNTS", "100000"))


@pytest.fixture(scope="module")
def big_venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`pmargin serve --demo` seeded with ACCOUNTS generated accounts (minutes on first start)."""
    from importlib.resources import files

    # PMARGIN_DASHBOARD_REUSE=<folder of an earlier run> restarts on its database (a replay
    # of the log instead of the seeding)
    reuse = os.environ.get("PMARGIN_DASHBOARD_REUSE")
    tmp = Path(reuse) if reuse else tmp_path_factory.mktemp("big")
    shipped = files("pmargin.service").joinpath("venue.toml").read_text()
    assert "accounts = 3000" in shipped
    (tmp / "venue.toml").write_text(shipped.replace("accounts = 3000", f"accounts = {ACCOUNTS}"))
    port = _free_port()
    env = {**os.environ, "PMARGIN_DATABASE_URL": f"sqlite:///{tmp / 'big.db'}"}
    log = (tmp / "serve.log").open("ab")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pmargin.cli", "serve", "--demo", "--port",
                             str(port), "--venue", str(tmp / "venue.toml")], cwd=tmp, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError((tmp / "serve.log").read_text()[-3000:])
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > 3600:
                raise RuntimeError("the demo venue did not start in an hour")
            time.sleep(1)
        keys = json.loads((tmp / "var" / "demo-keys.json").read_text())
        yield {"url": url, "keys": keys, "seed_seconds": time.monotonic() - t0, "tmp": tmp}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _moved_markets(n: int) -> list[dict[str, Any]]:
    """The demo's market (as the server built it) moved up 0.2 %, 0.4 %, ... (JSON bodies)."""
    from pmargin.demo import demo_market, latest_snapshot
    from pmargin.market.loaders import load_deribit_csv

    snap = latest_snapshot()
    mkt = load_deribit_csv(snap) if snap is not None else demo_market()[0]
    return [dict(mkt.bumped({u: 0.002 * (i + 1) for u in mkt.underlyings}).to_dict())
            for i in range(n)]


def test_overview_of_100k_accounts(browser: Any, big_venue: dict[str, Any], shots: Any
                                   ) -> None:
    url, keys = big_venue["url"], big_venue["keys"]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['risk']}"},
                      timeout=60) as c:
        assert c.get("/v1/book").json()["books"][0]["accounts"] == ACCOUNTS
    use_key(browser, url, keys["risk"])
    renders = []
    for _ in range(5):  # first render of a fresh page load, five times
        browser.get(f"{url}/ui/overview")
        renders.append(wait_for(browser, "window.pmOverview.firstRenderMs", timeout=30))
    assert console_errors(browser) == []
    total = js_json(browser, "document.querySelector('#largest .pager span').textContent")
    assert f"{ACCOUNTS:,}" in total
    lags: list[float] = []
    after_200: list[float] = []
    for m in _moved_markets(5):
        r = httpx.post(f"{url}/v1/market", json=m, timeout=120, headers={
            "Authorization": f"Bearer {keys['operator']}",
            "Idempotency-Key": f"bump-{uuid.uuid4().hex}"})
        done_ms = time.time() * 1000
        assert r.status_code == 200, r.text
        digest = r.json()["digest"]
        shown = wait_for(browser, "window.pmOverview.updates.find(u => u.market === "
                                  f"{json.dumps(digest)})", timeout=30)
        published = wait_for(browser, "window.pmOverview.marketPublished["
                                      f"{json.dumps(digest)}]", timeout=30)
        after_200.append(shown["at"] - done_ms)
        # behind the engine: from the market's book message (the book re-margined, server
        # clock) to the page showing that market's state (browser clock; same machine)
        lags.append(shown["at"] - published)
    # the liquidation-proximity curve of the whole book, computed in the background
    # (current, or outdated when the enforcer's steps moved the book on since: both drawn)
    wait_for(browser, "document.querySelector('#proximity-stamp')", timeout=300)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['risk']}"},
                      timeout=60) as c:
        prox = c.get("/v1/book/proximity").json()
    assert prox["status"] in ("current", "outdated"), prox["status"]
    assert prox["curve"]["active_accounts"] > 0
    stamp = browser.find_element("id", "proximity-stamp").get_attribute("data-seq")
    assert int(stamp) <= prox["seq"]
    assert console_errors(browser) == []
    shots(browser, "overview-100k")
    report = {"accounts": ACCOUNTS, "first_render_ms": renders, "update_lag_ms": lags,
              "first_render_median_ms": statistics.median(renders),
              "update_lag_median_ms": statistics.median(lags),
              "after_post_200_ms": after_200,
              "proximity_curve_s": prox["curve"]["seconds"],
              "proximity_points": len(prox["curve"]["moves"]),
              "seed_and_start_s": big_venue["seed_seconds"]}
    print("\nDASHBOARD-TIMING " + json.dumps(report))
    out = os.environ.get("PMARGIN_DASHBOARD_TIMING")
    if out:
        Path(out).write_text(json.dumps(report, indent=2))
    # the target (1 s) holds for the median of five; the suite runs this test beside others on
    # two cores, where one load in five has been seen at 1.1 s: single loads are bounded at 2 s
    # (a regression, not noise); the quiet figures are in docs/dashboard.md
    assert statistics.median(renders) <= 1000, renders
    assert statistics.median(lags) <= 1000, lags
    assert max(renders) <= 2000, renders
    assert max(lags) <= 2000, lags
