"""``GET /v1/book/proximity`` against a real service, checked account by account.

The expected curve is computed here from the per-account reads (``GET /v1/accounts/{id}``:
balances and positions), each account margined alone with the single-account model path on
the market the test posted, moved by each index move: a different code path from the service's
background book computation on its copy of the engine's book.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pmargin.liquidation.health import HealthState
from pmargin.market import load_market_json
from pmargin.models import load_model
from pmargin.portfolio import portfolio_from_dict
from tests.service.conftest import OPTION, Server, _drop, market_json, open_account
from tests.service.test_enforcement_server import start_server
from tests.service.venues import venue_file


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A service with automatic liquidation off (accounts under MM stay as posted) and a curve
    recomputed at most every 0.5 s."""
    tmp = tmp_path_factory.mktemp("proximity")
    venue = venue_file(tmp, enabled=False, refresh_seconds=0.5)
    s, db = start_server(tmp, "sqlite", venue)
    try:
        assert s.post("operator", "/v1/market", market_json()).status_code == 200
        yield s
    finally:
        s.stop()
        _drop(db)


def _mark(server: Server, name: str) -> str:
    with server.client("risk") as c:
        rows = c.get("/v1/instruments", params={"q": name}).json()["instruments"]
    (row,) = [r for r in rows if r["name"] == name]
    return f"{row['mark_price']:.4f}"


def _wait_current(server: Server, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with server.client("risk") as c:
        while True:
            body = c.get("/v1/book/proximity").json()
            if body["status"] == "current":
                return body
            assert body["status"] in ("computing", "outdated"), body
            assert time.monotonic() < deadline, body
            time.sleep(0.2)


def _expected(server: Server, accounts: list[str], moves: list[float]) -> list[int]:
    model = load_model("deribit-pm")
    market = load_market_json(market_json())
    counts = [0] * len(moves)
    with server.client("risk") as c:
        for a in accounts:
            acct = c.get(f"/v1/accounts/{a}").json()
            if not acct["positions"]:
                continue  # an account without positions is not active: never counted
            pf = portfolio_from_dict({
                "margin_currency": "BTC",
                "collateral": {k: float(v) for k, v in acct["balances"].items()},
                "positions": [{"instrument": p["instrument"], "quantity": float(p["quantity"])}
                              for p in acct["positions"]]})
            for k, m in enumerate(moves):
                mkt = market.bumped({"BTC": m}) if m != 0.0 else market
                fig = model.margin_figures(pf, mkt)
                counts[k] += int(fig.health[0] >= HealthState.LIQUIDATION)
    return counts


def test_curve_is_computed_in_the_background_and_equals_each_account_alone(
        server: Server) -> None:
    with server.client("risk") as c:
        empty = c.get("/v1/book/proximity").json()
        assert empty["status"] == "unavailable"
        assert empty["curve"] is None
        assert empty["reason"] == "the book has no accounts"
        r = c.get("/v1/book/proximity", params={"book": "NOPE"})
        assert r.status_code == 422
        assert r.json()["field"] == "book"
    with server.client("operator") as c:
        assert c.get("/v1/book/proximity").status_code == 403  # risk only
    accounts = []
    for i, (btc, qty) in enumerate([("1", "1"), ("0.6", "3"), ("0.5", "0"), ("0.4", "2"),
                                    ("2", "4"), ("0.25", "1")]):
        acct = open_account(server, f"px{i}", btc)
        if qty != "0":
            r = server.post("operator", "/v1/fills", {
                "account": acct, "instrument": OPTION, "quantity": f"-{qty}",
                "price": _mark(server, OPTION), "price_currency": "BTC"})
            assert r.status_code == 200, r.text
        accounts.append(acct)
    body = _wait_current(server)
    curve = body["curve"]
    with server.client("risk") as c:
        state = c.get("/v1/book/accounts", params={"size": 1}).json()
        every = c.get("/v1/book/accounts", params={"size": 200}).json()
    assert curve["seq"] == body["seq"] == state["seq"]
    assert curve["market_digest"] == body["market_digest"] == state["market"]["digest"]
    moves = curve["moves"]
    assert len(moves) >= 61
    assert moves[0] == pytest.approx(-0.6)
    assert moves[-1] == pytest.approx(0.6)
    # the whole book (accounts of other tests in this module included) counted account by account
    ids = [r["account"] for r in every["rows"]]
    assert every["total"] == len(ids)
    sample = list(range(0, len(moves), 6))
    want = _expected(server, ids, [moves[k] for k in sample])
    got = [curve["accounts_under_mm"][k] for k in sample]
    assert got == want
    assert min(want) < max(want)  # the check is not vacuous
    n_active = curve["active_accounts"]
    assert n_active >= 5
    for k in sample:
        assert curve["share_accounts"][k] == pytest.approx(curve["accounts_under_mm"][k] / n_active)
    # short puts and cash: a lower index can only put more accounts under MM
    under = curve["accounts_under_mm"]
    assert all(a >= b for a, b in itertools.pairwise(under))


def test_a_new_state_makes_the_curve_outdated_then_current_again(server: Server) -> None:
    first = _wait_current(server)
    acct = open_account(server, "px-late", "0.3")
    r = server.post("operator", "/v1/fills", {
        "account": acct, "instrument": OPTION, "quantity": "-1",
        "price": _mark(server, OPTION), "price_currency": "BTC"})
    assert r.status_code == 200, r.text
    with server.client("risk") as c:
        body = c.get("/v1/book/proximity").json()
    assert body["seq"] > first["seq"]
    assert body["status"] in ("outdated", "current")
    if body["status"] == "outdated":  # the old curve is served, labelled, while a new one runs
        assert body["curve"]["seq"] == first["seq"]
        assert body["reason"]
    later = _wait_current(server)
    assert later["curve"]["seq"] == later["seq"] > first["seq"]
    assert later["curve"]["active_accounts"] == first["curve"]["active_accounts"] + 1


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no setpriority on this system")
def test_the_curve_thread_yields_the_cpu_to_the_live_path() -> None:
    from pmargin.service.proximity import BACKGROUND_NICE, _lower_priority

    seen: dict[str, int] = {}

    def probe() -> None:
        tid = threading.get_native_id()
        seen["before"] = os.getpriority(os.PRIO_PROCESS, tid)
        _lower_priority()
        seen["after"] = os.getpriority(os.PRIO_PROCESS, tid)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert seen["after"] == min(seen["before"] + BACKGROUND_NICE, 19)
    # the calling (main) thread is untouched
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == seen["before"]
