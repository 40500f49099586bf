"""The dashboard in a real headless Chromium against a real `pmargin serve` (small book).

Checked: every page loads with no console error and shows the service's figures; the
calculator reproduces `pmargin margin --json` (the CLI, another process on the same market)
under several models, also after one more trade; a trader key cannot see another account in
the page or through the API; a market update reaches the overview within a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import console_errors
from tests.service.conftest import OPTION, market_json
from tests.service.web.conftest import js_json, use_key, wait_for

pytestmark = pytest.mark.slow

FUTURE = OPTION.rsplit("-", 2)[0]  # the future of the option's expiry
PORTFOLIO = {"margin_currency": "BTC", "collateral": {"BTC": 1.5}, "positions": [
    {"instrument": OPTION, "quantity": -2},
    {"instrument": OPTION.replace("-80000-P", "-90000-C"), "quantity": 1},
    {"instrument": "BTC-PERPETUAL", "quantity": 0.25, "avg_price": 80000}]}
CLI_MODELS = ("deribit-pm", "deribit-sm", "okx-pm")


def _cells(drv: Any, table: str, col: str) -> dict[str, float]:
    rows = js_json(drv, f"""Object.fromEntries(
        [...document.querySelectorAll('#{table} tbody tr')].filter(r => r.cells.length > 2)
        .map(r => [r.cells[0].textContent,
                   r.querySelector('td[data-col={col}]').dataset.value]))""")
    return {k: float(v) for k, v in rows.items()}


def _cli(tmp: Path, pf: dict[str, Any], market: dict[str, Any], model: str) -> dict[str, Any]:
    (tmp / "pf.json").write_text(json.dumps(pf))
    (tmp / "market.json").write_text(json.dumps(market))
    out = subprocess.run([sys.executable, "-m", "pmargin.cli", "margin", str(tmp / "pf.json"),
                          "--market", str(tmp / "market.json"), "--model", model, "--json"],
                         capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(out.stdout))


def test_pages_load_without_console_errors(browser: Any, small_venue: Any, shots: Any) -> None:
    srv = small_venue
    use_key(browser, srv.url, srv.keys["risk"])
    console_errors(browser)
    browser.get(f"{srv.url}/ui/overview")
    wait_for(browser, "document.body.dataset.seq")
    with srv.client("risk") as c:
        book = c.get("/v1/book").json()["books"][0]
    cards = js_json(browser, """[...document.querySelectorAll('#cards .card')].map(c =>
        [c.querySelector('.label').textContent, c.querySelector('.value') &&
         c.querySelector('.value').dataset.value])""")
    got = {k: v for k, v in cards}
    assert float(got["total initial margin"]) == pytest.approx(book["total_initial_margin"])
    assert float(got["total equity"]) == pytest.approx(book["total_equity"])
    assert int(float(got["accounts"])) == book["accounts"] == len(srv.accounts)
    health = _cells(browser, "health-table", "accounts")
    assert {k.replace(" ", "_").lstrip("●▲✖■ "): v for k, v in health.items()} == {
        k: float(v) for k, v in book["by_health"].items()}
    largest = js_json(browser, "[...document.querySelectorAll('#largest-table tbody tr')]"
                               ".map(r => r.cells[0].textContent)")
    assert largest[0] == book["largest"][0]["account"]
    # a click on a header sorts by that column (the server's order, here ascending equity)
    browser.execute_script("document.querySelector('#largest-table button[data-key=equity]')"
                           ".click()")
    wait_for(browser, "document.querySelector('#largest-table th[aria-sort]') && document"
                      ".querySelector('#largest-table th[aria-sort]').textContent"
                      ".includes('equity')")
    eq = list(_cells(browser, "largest-table", "equity").values())
    assert eq == sorted(eq, reverse=True)
    # the liquidation-proximity curve: drawn from GET /v1/book/proximity once it is computed
    wait_for(browser, "document.querySelector('#proximity-stamp[data-status=current]')",
             timeout=60)
    with srv.client("risk") as c:
        prox = c.get("/v1/book/proximity").json()
        enforcement = c.get("/v1/book").json()["enforcement"]["BTC"]
    assert prox["status"] == "current"
    curve = prox["curve"]
    drawn = js_json(browser, """[...document.querySelectorAll('#proximity-chart polyline')]
        .map(p => [p.dataset.series, p.getAttribute('points').trim().split(' ').length])""")
    assert sorted(drawn) == [["share_accounts", len(curve["moves"])],
                             ["share_open_interest", len(curve["moves"])]]
    shown = js_json(browser, """[...document.querySelectorAll('#proximity-table tbody tr')]
        .map(r => [Number(r.cells[0].dataset.value), Number(r.cells[1].dataset.value)])""")
    assert shown, "the proximity table is empty"
    for move_pct, n in shown:
        k = min(range(len(curve["moves"])), key=lambda i: abs(curve["moves"][i] - move_pct / 100))
        assert n == curve["accounts_under_mm"][k]
    assert max(curve["accounts_under_mm"]) > 0  # short puts: some moves put accounts under MM
    fund = browser.execute_script(
        "return document.querySelector('#insurance-fund .value').dataset.value")
    assert float(fund) == pytest.approx(float(enforcement["insurance_fund"]))
    assert "none in progress" in browser.find_element("id", "liq-progress").text or \
        enforcement["liquidation_in_progress"]
    assert console_errors(browser) == []
    shots(browser, "overview")
    # a narrow screen: the page does not scroll sideways (wide tables scroll in their box)
    browser.set_window_size(400, 900)
    try:
        browser.get(f"{srv.url}/ui/overview")
        wait_for(browser, "document.body.dataset.seq")
        wide = browser.execute_script(
            "return [...document.querySelectorAll('body *')].filter(e => "
            "e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll'))"
            ".map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5)")
        assert wide == []
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1")
        shots(browser, "overview-narrow")
    finally:
        browser.set_window_size(1280, 900)

    acct = srv.accounts[1]
    browser.get(f"{srv.url}/ui/account?id={acct}")
    wait_for(browser, f"document.body.dataset.loaded === '{acct}'")
    with srv.client("risk") as c:
        a = c.get(f"/v1/accounts/{acct}/margin", params={"explain": "true"}).json()
    im = browser.execute_script("return document.querySelector('#c-im .value').dataset.value")
    assert float(im) == pytest.approx(a["initial_margin"], rel=1e-12)
    worst = browser.find_elements("css selector", "#a-matrix rect[data-worst=true]")
    assert len(worst) == 1  # one worst cell per underlying, marked by more than colour
    binding = a["explain"]["worst_scenario"]["BTC"]
    assert worst[0].get_attribute("data-name") == binding["name"]
    cells = js_json(browser, "[...document.querySelectorAll('#a-matrix rect')].map(r => "
                             "Number(r.dataset.pnl))")
    scen = [s for s in a["explain"]["scenarios"] if s["underlying"] == "BTC"]
    assert len(cells) == len({(s["price_shock"], s["vol_shock"]) for s in scen})
    assert float(worst[0].get_attribute("data-pnl")) == pytest.approx(min(cells))
    legend = browser.find_element("css selector", "#a-matrix p.legend").text
    assert "Worst scenario" in legend
    assert binding["name"] in legend
    assert console_errors(browser) == []
    shots(browser, "account")

    browser.get(f"{srv.url}/ui/calculator")
    wait_for(browser, "document.body.dataset.ready")
    assert console_errors(browser) == []
    paths = httpx.get(f"{srv.url}/openapi.json").json()["paths"]
    browser.get(f"{srv.url}/ui/attestations?account={acct}")
    state = wait_for(browser, "document.body.dataset.loaded", timeout=60)
    if "/v1/attestations/latest" not in paths:
        assert state == "na"
        assert browser.find_element("id", "att-na").is_displayed()
    else:
        # the proof checked in the page (Web Crypto SHA-256 over the leaf and the path)
        assert state == "yes"
        assert wait_for(browser, "document.body.dataset.proof", timeout=60) == "valid"
        with srv.client("risk") as c:
            latest = c.get("/v1/attestations/latest").json()["attestation"]
        assert latest["merkle_root"] in browser.find_element("id", "att-table").text
        sig = browser.find_element("css selector", "#att-table tr:first-child td").text
        assert sig.startswith(("valid", "not checked")), sig
    assert console_errors(browser) == []
    shots(browser, "attestations")


def test_calculator_reproduces_the_cli(browser: Any, small_venue: Any, shots: Any,
                                       tmp_path: Path) -> None:
    srv = small_venue
    use_key(browser, srv.url, srv.keys["operator"])  # any role may simulate
    browser.get(f"{srv.url}/ui/calculator")
    wait_for(browser, "document.body.dataset.ready")
    # search by strike and expiry, and add from the list
    box = browser.find_element("id", "find")
    box.send_keys(f"{OPTION.split('-')[1]} 90000 C")
    wait_for(browser, "document.querySelectorAll('#found li').length === 1")
    browser.find_element("css selector", "#found button[data-inst]").click()
    wait_for(browser, "document.querySelectorAll('#positions-table tbody tr').length === 1")
    # paste the known portfolio (replaces it), compute under every model
    paste = browser.find_element("id", "paste")
    paste.clear()
    paste.send_keys(json.dumps(PORTFOLIO))
    browser.find_element("id", "load-json").click()
    browser.find_element("id", "compute").click()
    wait_for(browser, "document.body.dataset.computed", timeout=60)
    ims = _cells(browser, "results-table", "initial_margin")
    mms = _cells(browser, "results-table", "maintenance_margin")
    for model in CLI_MODELS:
        cli = _cli(tmp_path, PORTFOLIO, srv.market, model)
        assert ims[model] == pytest.approx(cli["initial_margin"], rel=1e-9), model
        assert mms[model] == pytest.approx(cli["maintenance_margin"], rel=1e-9), model
    # one more trade: sell 1 more put
    browser.find_element("id", "wi-inst").send_keys(OPTION)
    q = browser.find_element("id", "wi-qty")
    q.clear()
    q.send_keys("-1")
    browser.find_element("id", "wi-go").click()
    wait_for(browser, "document.body.dataset.whatif", timeout=60)
    after = _cells(browser, "whatif-table", "im_after")
    more = json.loads(json.dumps(PORTFOLIO))
    more["positions"].append({"instrument": OPTION, "quantity": -1})
    cli = _cli(tmp_path, more, srv.market, "deribit-pm")
    assert after["deribit-pm"] == pytest.approx(cli["initial_margin"], rel=1e-9)
    assert after["deribit-pm"] > ims["deribit-pm"]
    assert browser.find_elements("css selector", "#matrix rect[data-worst=true]")
    # a model that refuses the portfolio says why in its row (Derive margins USDC accounts);
    # the browser logs those 422 answers, and nothing else
    refused = browser.find_element("css selector", "#results-table td.bad-mark").text
    assert "margin_currency" in refused
    assert "BTC" in refused
    errors = console_errors(browser)
    assert all("/v1/simulate" in e["message"] and "422" in e["message"] for e in errors), errors
    shots(browser, "calculator")


def test_trader_sees_only_its_own_account(browser: Any, small_venue: Any) -> None:
    srv = small_venue
    own, other = srv.accounts[1], srv.accounts[0]
    use_key(browser, srv.url, srv.keys["trader"])
    browser.get(f"{srv.url}/ui/account")
    wait_for(browser, f"document.body.dataset.loaded === '{own}'")  # its own by default
    browser.get(f"{srv.url}/ui/account?id={other}")
    wait_for(browser, "document.body.dataset.loaded === 'error'")
    err = browser.find_element("id", "error").text
    assert "403" in err
    assert "may not see" in err
    assert browser.find_element("id", "acct").get_attribute("hidden") is not None
    with srv.client("risk") as c:
        theirs = c.get(f"/v1/accounts/{other}").json()
    page = browser.find_element("tag name", "body").text
    assert f"{theirs['equity']:.4f}" not in page
    h = {"Authorization": f"Bearer {srv.keys['trader']}"}
    for path in (f"/v1/accounts/{other}", f"/v1/accounts/{other}/margin",
                 f"/v1/accounts/{other}/events", "/v1/book/accounts", "/v1/book"):
        r = httpx.get(f"{srv.url}{path}", headers=h)
        assert r.status_code == 403, (path, r.text)
    # the overview needs a risk key and says so
    console_errors(browser)
    browser.get(f"{srv.url}/ui/overview")
    wait_for(browser, "!document.getElementById('error').hidden")
    assert "risk key" in browser.find_element("id", "error").text
    assert console_errors(browser) == []  # it asks /v1/me first: no refused request


def test_market_update_reaches_the_overview(browser: Any, small_venue: Any) -> None:
    srv = small_venue
    use_key(browser, srv.url, srv.keys["risk"])
    console_errors(browser)
    browser.get(f"{srv.url}/ui/overview")
    wait_for(browser, "document.body.dataset.seq")
    time.sleep(0.5)
    n = len(js_json(browser, "window.pmOverview.updates"))
    srv.market = market_json(index=72000.0, minutes=2)
    r = srv.post("operator", "/v1/market", srv.market)
    done_ms = time.time() * 1000  # the engine has re-margined the book when the 200 arrives
    assert r.status_code == 200, r.text
    ups = wait_for(browser, f"window.pmOverview.updates.length > {n} && "
                            "window.pmOverview.updates", timeout=5)
    lag = ups[-1]["at"] - done_ms
    assert lag <= 1000, lag
    with srv.client("risk") as c:
        book = c.get("/v1/book").json()["books"][0]
    shown = browser.execute_script("return [...document.querySelectorAll('#cards .card')]"
                                   ".find(c => c.textContent.includes('total equity'))"
                                   ".querySelector('.value').dataset.value")
    assert float(shown) == pytest.approx(book["total_equity"])
    assert console_errors(browser) == []


def _leaf(i: int) -> dict[str, Any]:
    return {"account": f"acc{i}", "currency": "BTC", "equity": 150_000_000 - 7 * i,
            "initial_margin": 12_345_678 + i, "maintenance_margin": -3 if i == 2 else 9_000_000,
            "health": i % 4}


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, recursively (split at the largest power of two below n)."""
    import hashlib

    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 audit path, from the leaf up."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def test_the_pages_proof_check_is_rfc_6962(browser: Any, small_venue: Any) -> None:
    """The page's leaf encoding and path walk against a Python reference written from the RFC
    and the leaf table of docs/attestations.md (struct, big-endian)."""
    import struct

    srv = small_venue
    browser.get(f"{srv.url}/ui/attestations")
    wait_for(browser, "window.pmAttest")
    run = ("const done = arguments[arguments.length - 1]; window.pmAttest.rootFromProof("
           "arguments[0]).then(done, (e) => done('error: ' + e.message));")
    for n in range(1, 10):
        raw = [struct.pack(">B64s10sqqqB", 1, d["account"].encode(), d["currency"].encode(),
                           d["equity"], d["initial_margin"], d["maintenance_margin"],
                           d["health"]) for d in map(_leaf, range(n))]
        assert all(len(b) == 100 for b in raw)
        root = _mth(raw).hex()
        for m in range(n):
            assert browser.execute_script("return window.pmAttest.leafBytes(arguments[0])",
                                          _leaf(m)) == raw[m].hex()
            proof = {"leaf": _leaf(m), "index": m, "count": n,
                     "path": [h.hex() for h in _path(m, raw)]}
            assert browser.execute_async_script(run, proof) == root, (n, m)
            # a changed figure, a wrong index or a missing hash do not reach the root
            bad = {**proof, "leaf": {**_leaf(m), "equity": _leaf(m)["equity"] + 1}}
            assert browser.execute_async_script(run, bad) != root
            if n > 1:
                assert browser.execute_async_script(run, {**proof, "index": (m + 1) % n}) != root
                short = {**proof, "path": proof["path"][:-1]}
                assert str(browser.execute_async_script(run, short)).startswith("error")
    assert console_errors(browser) == []
