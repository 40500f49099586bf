"""Acceptance: a crash episode replayed into a real server triggers enforcement on its own.

The history-market builder (``pmargin.analytics.history.market_at``, branch ``history``) did not
exist when this was written, so the episode is scripted: the hourly BTC closes of the COVID
crash (2020-03-11 .. 03-13, ``shared/data/prices/btc_usd_1h.csv.gz``, every third hour) are
applied as relative moves to the demo snapshot with :meth:`MarketSnapshot.bumped` (index,
futures and forwards move, implied vols sticky to strike). The server is killed (SIGKILL) while
a liquidation is in progress and restarted; the replay then goes on.
"""

from __future__ import annotations

import csv
import gzip
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.service.conftest import _drop
from tests.service.test_enforcement_server import enforcement_events, start_server
from tests.service.venues import venue_file

pytestmark = [pytest.mark.slow, pytest.mark.data]


def episode_moves(prices: Path, start: str, end: str, every: int) -> list[float]:
    """Relative moves of the hourly close from the first bar of the window."""
    closes = []
    with gzip.open(prices, "rt") as f:
        for row in csv.DictReader(f):
            if start <= row["timestamp"] <= end:
                closes.append(float(row["close"]))
    assert closes, "window not in the file"
    return [c / closes[0] - 1 for c in closes[::every]]


def _wait_idle(srv: Any, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    quiet = 0
    last = -1
    with srv.client("risk") as c:
        while time.monotonic() < deadline:
            b = c.get("/v1/book").json()
            n = len(enforcement_events(srv))
            if b["enforcement"]["BTC"]["liquidation_in_progress"] is None and n == last:
                quiet += 1
                if quiet >= 3:
                    return
            else:
                quiet = 0
            last = n
            time.sleep(0.3)
    raise AssertionError("enforcement did not settle")


def test_covid_crash_enforced_automatically_with_a_restart(tmp_path: Path) -> None:
    from pmargin.demo import find_shared, latest_snapshot
    from pmargin.market.loaders import load_deribit_csv

    root = find_shared()
    snap = latest_snapshot()
    prices = root / "data" / "prices" / "btc_usd_1h.csv.gz" if root is not None else None
    if snap is None or prices is None or not prices.exists():
        pytest.skip("shared/data (prices and a Deribit snapshot) not available")
    moves = episode_moves(prices, "2020-03-11T00:00:00Z",
                          "2020-03-13T23:00:00Z", 3)
    assert min(moves) < -0.4  # the episode's ~ -50 % peak to trough is in the path
    base = load_deribit_csv(snap)
    venue = venue_file(tmp_path, accounts=120, breaker_share=0.9, insurance_fund_seed="1")
    srv, db = start_server(tmp_path, "sqlite", venue, demo=True)
    killed_mid = False
    try:
        for i, m in enumerate(moves):
            body = base.bumped({"BTC": m}).to_dict()
            r = srv.post("operator", "/v1/market", body, key=f"episode-{i}")
            assert r.status_code == 200, r.text[:300]
            if not killed_mid:
                with srv.client("risk") as c:
                    enf = c.get("/v1/book").json()["enforcement"]["BTC"]
                if enf["liquidation_in_progress"] is not None:
                    srv.kill()
                    open_before = enf["liquidation_in_progress"]
                    srv.start()
                    killed_mid = True
        _wait_idle(srv)
        assert killed_mid, "no liquidation was in progress at any update"
        evs = enforcement_events(srv)
        with srv.client("risk") as c:
            state = c.get("/v1/state").json()
            health_to = {e["to"] for e in evs if e["kind"] == "health"}
            assert {"margin_call", "liquidation"} <= health_to | {"bankrupt"}
            assert "margin_call" in health_to
            liqs: dict[str, list[dict[str, Any]]] = {}
            for e in evs:
                if e["kind"] == "liquidation":
                    liqs.setdefault(e["liquidation"], []).append(e)
            assert len(liqs) >= 3
            assert open_before in liqs
            assert liqs[open_before][-1]["action"] == "end"
            # money: the ledger conserves to zero per currency, in memory and in the database
            assert all(v == 0 for v in state["conservation"].values())
            eng = sa.create_engine(srv.db_url)
            with eng.connect() as conn:
                sums = conn.execute(sa.text(
                    "select currency, sum(units) from ledger_entries group by currency")).all()
                assert all(int(s) == 0 for _, s in sums)
                for lid, steps in liqs.items():
                    acct = steps[0]["account"]
                    # each step once, none skipped
                    assert [s["step"] for s in steps] == list(range(len(steps))), lid
                    assert steps[0]["action"] == "start"
                    t = steps[0]["trigger"]
                    assert t["equity"] < t["maintenance_margin"]  # why it started
                    # a health event put the account in liquidation before the start
                    h = [e for e in evs if e["kind"] == "health" and e["account"] == acct
                         and e["seq"] < steps[0]["seq"]]
                    assert h, lid
                    assert h[-1]["to"] in ("liquidation", "bankrupt"), lid
                    # the stored ledger rows of each step are exactly its logged postings
                    for s in steps:
                        rows = conn.execute(sa.text(
                            "select account, currency, units from ledger_entries where seq = :s"
                            " order by id"), {"s": s["seq"]}).all()
                        assert sorted([list(r) for r in rows]) == sorted(s["postings"]), lid
                        assert sum(u for _, _, u in s["postings"]) == 0
                    # the owner's view shows the same steps
                    view = c.get(f"/v1/accounts/{acct}").json()["liquidation"]
                    mine = [view["current"], *view["earlier"]]
                    got = next(x for x in mine if x and x["id"] == lid)
                    assert [s["step"] for s in got["steps"]] == [s["step"] for s in steps]
                    assert all(s.get("reason") for s in got["steps"])
            eng.dispose()
    finally:
        srv.stop()
        _drop(db)
