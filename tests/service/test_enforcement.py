"""Automatic enforcement in process: liquidation steps, fund, ADL / socialised loss, breaker.

The enforcer's worker is off (``enabled = false``); the tests call ``step_once`` so that every
step can be looked at. The real-server tests (worker on, SIGKILL, stream) are in
``test_enforcement_server.py`` and ``test_stream.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pmargin.service.app import Service, create_app
from pmargin.service.enforcement import insurance_fund
from pmargin.service.server import open_service
from tests.service.conftest import market_json
from tests.service.venues import venue_file

Q = Decimal("0.00000001")  # BTC quantum of the shipped venue


class Venue:
    """An in-process service, a TestClient and keys."""

    def __init__(self, tmp: Path, **enf: Any) -> None:
        self.db = f"sqlite:///{tmp / 'e.db'}"
        self.venue = venue_file(tmp, **{"enabled": False, "breaker_min_accounts": 1000, **enf})
        self.svc: Service = open_service(self.db, self.venue)
        self.client = TestClient(create_app(self.svc))
        self.client.__enter__()
        self.keys = {r: self.svc.store.create_key(r, None) for r in ("operator", "risk")}
        self.minutes = 0
        self.market(80000.0)

    def post(self, path: str, body: Any, role: str = "operator") -> dict[str, Any]:
        r = self.client.post(path, json=body, headers={
            "Authorization": f"Bearer {self.keys[role]}", "Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def get(self, path: str) -> dict[str, Any]:
        r = self.client.get(path, headers={"Authorization": f"Bearer {self.keys['risk']}"})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def market(self, index: float) -> None:
        # a move beyond the feed's jump band is held (202) until a later update of the same
        # source confirms it (docs/realtime.md): the test's feed sends that update
        for _ in range(2):
            r = self.client.post("/v1/market", json=market_json(index, self.minutes), headers={
                "Authorization": f"Bearer {self.keys['operator']}",
                "Idempotency-Key": uuid.uuid4().hex})
            self.minutes += 1
            assert r.status_code in (200, 202), r.text
            if r.status_code == 200:
                return
        raise AssertionError(f"market {index} still held after a confirming update: {r.text}")

    def account(self, name: str, btc: str, perp: str | None = None) -> None:
        self.post("/v1/accounts", {"id": name, "book": "BTC"})
        self.post("/v1/transfers", {"account": name, "currency": "BTC", "amount": btc,
                                    "direction": "deposit"})
        if perp is not None:
            self.post("/v1/fills", {"account": name, "instrument": "BTC-PERPETUAL",
                                    "quantity": perp, "price": "80000",
                                    "price_currency": "USD", "new_order": False})

    def run(self, limit: int = 200) -> int:
        n = 0
        while self.svc.enforcer.step_once():
            n += 1
            assert n < limit
        return n

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = []
        for e in self.svc.store.events():
            if kind is None or e.kind == kind:
                out.append({"seq": int(e.seq), "kind": e.kind, **json.loads(e.payload)})
        return out

    def units(self, ledger_account: str) -> int:
        return int(self.svc.state.balances.get((ledger_account, "BTC"), 0))

    def close(self) -> None:
        self.client.__exit__(None, None, None)


@pytest.fixture
def venue(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Venue]:
    v = Venue(tmp_path, **getattr(request, "param", {}))
    yield v
    v.close()


def _liq_steps(v: Venue, account: str) -> list[dict[str, Any]]:
    return [e for e in v.events("liquidation") if e["account"] == account]


def test_health_transitions_are_events_and_survive_replay(venue: Venue) -> None:
    venue.account("h1", "0.2", "-1")  # short one coin of the inverse perpetual
    venue.account("h2", "5")           # no position: always healthy
    assert venue.events("health") == []  # healthy from the start: nothing to say
    # BTC +50 %: the short loses 1 - 80000/120000 = 1/3 BTC > its 0.2 BTC: bankrupt
    venue.market(120000.0)
    ev = venue.events("health")
    assert [(e["account"], e["from"], e["to"]) for e in ev] == [("h1", "healthy", "bankrupt")]
    acct = venue.get("/v1/accounts/h1")
    assert ev[0]["equity"] == pytest.approx(acct["equity"], rel=1e-12)
    assert acct["equity"] == pytest.approx(0.2 - 1 / 3, abs=2e-3)  # perp mark = index
    assert ev[0]["maintenance_margin"] == pytest.approx(acct["maintenance_margin"])
    assert ev[0]["epoch"] is not None
    assert ev[0]["cause_seq"] < ev[0]["seq"]
    # a deposit that brings it back above IM: the way back is an event too
    venue.post("/v1/transfers", {"account": "h1", "currency": "BTC", "amount": "2",
                                 "direction": "deposit"})
    ev = venue.events("health")
    assert [(e["from"], e["to"]) for e in ev] == [("healthy", "bankrupt"),
                                                  ("bankrupt", "healthy")]
    # the same market again changes nobody's health: no new event
    venue.market(120000.0)
    assert len(venue.events("health")) == 2
    # replay from empty: same state, same tracker
    again = Service(venue.svc.cfg, venue.svc.store)
    assert again.state.state_hash() == venue.svc.state.state_hash()
    assert again.enforcer.health.last == venue.svc.enforcer.health.last == {}


def test_liquidation_restores_an_account_step_by_step(venue: Venue) -> None:
    venue.account("r1", "0.6", "-3")  # short 3 coins
    venue.account("w1", "2")
    fund0 = venue.units(insurance_fund("BTC"))
    assert fund0 == 10 * 10**8  # seeded on start (venue.toml insurance_fund_seed)
    venue.market(96000.0)           # +20 %: loses 3 (1 - 80/96) = 0.5 BTC of 0.6
    before = venue.get("/v1/accounts/r1")
    assert before["health"] in ("liquidation", "bankrupt") or (
        before["equity"] < before["maintenance_margin"])
    venue.run()
    steps = _liq_steps(venue, "r1")
    acts = [s["action"] for s in steps]
    assert acts[0] == "start"
    assert acts[-1] == "end"
    assert "trade" in acts
    assert [s["step"] for s in steps] == list(range(len(steps)))
    assert len({s["liquidation"] for s in steps}) == 1
    # each trade's cash is the exact value of the position closed at the logged price
    held, entry = Decimal(-3), Decimal(-3 * 80000)
    pen_total = 0
    for s in (s for s in steps if s["action"] == "trade"):
        for t in s["trades"]:
            assert t["instrument"] == "BTC-PERPETUAL"
            dq, px = Decimal(t["quantity"]), Decimal(t["price"])
            new = held + dq
            new_e = entry * new / held if new else Decimal(0)
            # inverse: value q - e/p; a reduction realises the value of the part closed
            want = ((held - entry / px) - (new - new_e / px)).quantize(Q, "ROUND_FLOOR")
            assert Decimal(t["cash"]).quantize(Q, "ROUND_FLOOR") == want
            assert abs(px - 96000) / 96000 < 0.01  # near the mark (liquidity cost)
            assert dq > 0  # buys back the short, never adds to it
            held, entry = new, new_e
        pen_total += int(Decimal(s["penalty"]) / Q)
        # the postings of the step are exactly the account's change
        assert sum(u for a, c, u in s["postings"]) == 0
    assert venue.units(insurance_fund("BTC")) == fund0 + pen_total
    end = steps[-1]
    assert end["outcome"] == "restored"
    after = venue.get("/v1/accounts/r1")
    assert after["equity"] >= after["maintenance_margin"]
    assert Decimal(after["positions"][0]["quantity"]) == held if held else True
    sec = after["liquidation"]
    assert sec["state"] == "done"
    assert sec["current"]["outcome"] == "restored"
    assert [s["action"] for s in sec["current"]["steps"]] == acts
    assert venue.get("/v1/state")["conservation"] == {"BTC": 0}
    # nothing more to do on this market
    assert venue.run() == 0
    again = Service(venue.svc.cfg, venue.svc.store)
    assert again.state.state_hash() == venue.svc.state.state_hash()
    assert again.enforcer.account_section("r1") == venue.svc.enforcer.account_section("r1")


@pytest.mark.parametrize("venue", [{"insurance_fund_seed": "0.05"}], indirect=True)
def test_bankrupt_account_fund_then_adl(venue: Venue) -> None:
    venue.account("b1", "0.15", "-1")
    venue.account("w1", "1", "1")   # long 1 coin: wins 1/3 BTC when BTC goes to 120,000
    venue.account("w2", "1")         # no profit: gives nothing
    venue.market(120000.0)
    venue.run()
    steps = _liq_steps(venue, "b1")
    acts = [s["action"] for s in steps]
    assert acts[0] == "start"
    assert acts[-1] == "end"
    assert acts[-3:-1] == ["fund", "adl"]
    assert not venue.svc.state.books["BTC"].positions.get("b1")
    trade_cash = sum(int(Decimal(t["cash"]) / Q) for s in steps if s["action"] == "trade"
                     for t in s["trades"])
    pen = sum(int(Decimal(s["penalty"]) / Q) for s in steps if s["action"] == "trade")
    assert pen == 0  # a bankrupt account pays no penalty (capped at its equity)
    deficit = -(15_000_000 + trade_cash)
    # closing 1 coin short at ~120,000 after selling at 80,000 loses about 1/3 BTC
    assert deficit == pytest.approx(10**8 / 3 - 15_000_000, rel=0.02)
    fund = steps[acts.index("fund")]
    assert int(Decimal(fund["paid"]) / Q) == 5_000_000
    assert Decimal(fund["deficit"]) == \
        Decimal(deficit) * Q
    adl = steps[acts.index("adl")]
    assert adl["taken"] == {"w1": str(Decimal(deficit - 5_000_000) * Q)}
    assert Decimal(adl["unallocated"]) == 0
    assert venue.units("acct:b1") == 0
    assert venue.units("acct:w1") == 10**8 - (deficit - 5_000_000)
    assert venue.units(insurance_fund("BTC")) == 0
    assert steps[-1]["outcome"] == "closed"
    assert steps[-1]["after"]["equity"] == 0
    # the account's way down and back is in its health events
    hb = [(e["from"], e["to"]) for e in venue.events("health") if e["account"] == "b1"]
    assert hb == [("healthy", "bankrupt"), ("bankrupt", "healthy")]
    assert venue.get("/v1/accounts/b1")["liquidation"]["health_logged"] == "healthy"
    assert venue.get("/v1/state")["conservation"] == {"BTC": 0}
    assert venue.svc.store.ledger_sums() == {"BTC": 0}


@pytest.mark.parametrize("venue", [{"insurance_fund_seed": "0", "loss_method": "socialised"}],
                         indirect=True)
def test_bankrupt_account_socialised_pro_rata(venue: Venue) -> None:
    venue.account("b1", "0.15", "-1")
    venue.account("w1", "3", "1")
    venue.account("w2", "3", "2")
    venue.market(120000.0)
    prof = {a: venue.get(f"/v1/accounts/{a}")["equity"] - 3 for a in ("w1", "w2")}
    venue.run()
    steps = _liq_steps(venue, "b1")
    soc = next(s for s in steps if s["action"] == "socialised")
    deficit = int(Decimal(soc["deficit"]) / Q)
    taken = {a: int(Decimal(x) / Q) for a, x in soc["taken"].items()}
    assert sum(taken.values()) == deficit
    tot = prof["w1"] + prof["w2"]
    for a in ("w1", "w2"):  # pro rata to profit, to one unit
        assert abs(taken[a] - deficit * prof[a] / tot) <= 1.0 + 1e-6 * deficit
    assert venue.units("acct:b1") == 0
    assert venue.get("/v1/state")["conservation"] == {"BTC": 0}


@pytest.mark.parametrize("venue", [{"breaker_min_accounts": 3, "breaker_share": 0.5}],
                         indirect=True)
def test_breaker_stops_liquidation_until_reset(venue: Venue) -> None:
    for i in range(4):
        venue.account(f"s{i}", "0.3", "-1")
    venue.account("ok", "10")
    venue.market(110000.0)  # 4 of 5 under MM: 80 % > 50 %
    br = venue.events("breaker")
    assert [b["state"] for b in br] == ["tripped"]
    assert br[0]["under_mm"] == 4
    assert br[0]["accounts"] == 5
    book = venue.get("/v1/book")["enforcement"]["BTC"]
    assert book["breaker"]["state"] == "tripped"
    assert "automatic liquidation stopped" in \
        book["breaker"]["last"]["alert"]
    assert venue.run() == 0
    assert venue.events("liquidation") == []
    assert venue.get("/v1/accounts/s0")["liquidation"]["state"] == "none"
    # only a risk key resets it
    r = venue.client.post("/v1/books/BTC/breaker/reset", headers={
        "Authorization": f"Bearer {venue.keys['operator']}"})
    assert r.status_code == 403
    out = venue.post("/v1/books/BTC/breaker/reset", {}, role="risk")
    assert out["breaker"] == "reset"
    assert venue.run() > 0
    done = {e["account"] for e in venue.events("liquidation") if e["action"] == "end"}
    assert done == {"s0", "s1", "s2", "s3"}
    # liquidations brought the share back: the breaker re-arms at the next re-margin
    venue.market(110000.0)
    assert [b["state"] for b in venue.events("breaker")] == ["tripped", "reset", "armed"]


@pytest.mark.parametrize("venue", [{"breaker_min_accounts": 3, "breaker_share": 0.5}],
                         indirect=True)
def test_breaker_clears_when_the_share_falls_back(venue: Venue) -> None:
    for i in range(4):
        venue.account(f"s{i}", "0.3", "-1")
    venue.market(110000.0)
    venue.market(80000.0)  # the bad price is gone
    assert [b["state"] for b in venue.events("breaker")] == ["tripped", "armed"]
    assert venue.run() == 0  # nobody under MM any more


def test_bad_reset_changes_nothing(venue: Venue) -> None:
    h = venue.get("/v1/state")["state_hash"]
    r = venue.client.post("/v1/books/BTC/breaker/reset", headers={
        "Authorization": f"Bearer {venue.keys['risk']}"})
    assert r.status_code == 422
    assert r.json()["field"] == "book"
    r = venue.client.post("/v1/books/NOPE/breaker/reset", headers={
        "Authorization": f"Bearer {venue.keys['risk']}"})
    assert r.status_code == 422
    assert r.json()["value"] == "NOPE"
    assert venue.get("/v1/state")["state_hash"] == h


def _money_of(v: Venue, account: str) -> dict[str, Any]:
    return {"cash": v.units(f"acct:{account}"),
            "positions": dict(v.svc.state.books["BTC"].positions.get(account, {}))}


@pytest.mark.parametrize("venue", [{"method": "takeover"}], indirect=True)
def test_takeover_hands_the_smallest_slice_to_the_liquidator(venue: Venue) -> None:
    from pmargin.liquidation.auction_params import load_auction_params
    from pmargin.liquidation.execution import takeover_fraction

    tk = load_auction_params().takeover
    liq = "liquidator-BTC"
    assert liq in venue.svc.state.account_book  # created at start, as a logged event
    venue.account("t1", "0.6", "-3")  # short 3 coins of the inverse perpetual
    venue.account("w1", "2")
    venue.post("/v1/transfers", {"account": liq, "currency": "BTC", "amount": "5",
                                 "direction": "deposit"})
    venue.market(96000.0)  # +20 %: loses 0.5 BTC of 0.6, below MM
    before = venue.get("/v1/accounts/t1")
    assert before["equity"] < before["maintenance_margin"]
    # the slice the library's rule gives for this account (independent of the service's steps)
    svc = venue.svc
    pf, mkt, model = svc.portfolio("t1"), svc.market(), svc.state.books["BTC"].model
    res = model.margin(pf, mkt)
    value = float(res.by_position["value"].sum())
    want_f = takeover_fraction(pf, mkt, model, value, res.equity)
    assert Decimal(0) < want_f < Decimal(1)
    fund0, liq0 = venue.units(insurance_fund("BTC")), venue.units(f"acct:{liq}")
    venue.run()
    steps = _liq_steps(venue, "t1")
    assert [s["action"] for s in steps] == ["start", "takeover", "end"]
    tko = steps[1]
    assert Decimal(tko["fraction"]) == want_f
    assert tko["liquidator"] == liq
    (moved,) = tko["moved"]
    dq = Decimal(moved["quantity"])
    assert dq == (Decimal(-3) * want_f).quantize(Q)  # the slice, to the quantity grid
    after = _money_of(venue, "t1")
    liq_pos = venue.svc.state.books["BTC"].positions[liq]["BTC-PERPETUAL"]
    assert after["positions"]["BTC-PERPETUAL"][0] + liq_pos[0] == -3 * 10**8  # nothing lost
    assert liq_pos[0] == int(dq / Q)
    # discount and penalty: the stated rates of |slice value|, floored to the quantum
    slice_abs = abs(Decimal(repr(value)) * want_f)
    disc, pen = int(Decimal(tko["discount"]) / Q), int(Decimal(tko["penalty"]) / Q)
    assert disc == int(tk.discount * slice_abs / Q)
    assert pen == int(tk.insurance_fee_rate * slice_abs / Q)
    assert venue.units(insurance_fund("BTC")) == fund0 + pen
    # the liquidator's cash moves by the discount plus what the fill at the mark books
    liq_cash = sum(u for a, c, u in tko["postings"] if a == f"acct:{liq}")
    assert venue.units(f"acct:{liq}") == liq0 + liq_cash
    assert steps[-1]["outcome"] == "restored"
    acct = venue.get("/v1/accounts/t1")
    assert acct["equity"] >= acct["maintenance_margin"]
    assert venue.get("/v1/state")["conservation"] == {"BTC": 0}
    assert venue.svc.store.ledger_sums() == {"BTC": 0}
    assert venue.run() == 0  # the liquidator itself is never liquidated by the worker
    again = Service(venue.svc.cfg, venue.svc.store)
    assert again.state.state_hash() == venue.svc.state.state_hash()


@pytest.mark.parametrize("venue", [{"method": "takeover", "insurance_fund_seed": "0.05"}],
                         indirect=True)
def test_takeover_of_a_bankrupt_account_then_fund_then_adl(venue: Venue) -> None:
    venue.account("b1", "0.15", "-1")
    venue.account("w1", "1", "1")
    venue.market(120000.0)  # the short loses 1/3 BTC of 0.15: bankrupt
    venue.run()
    steps = _liq_steps(venue, "b1")
    acts = [s["action"] for s in steps]
    assert acts == ["start", "takeover", "fund", "adl", "end"]
    tko = steps[1]
    assert Decimal(tko["fraction"]) == 1  # no slice restores a bankrupt account: all of it
    assert Decimal(tko["penalty"]) == 0  # a bankrupt account pays no penalty
    assert not venue.svc.state.books["BTC"].positions.get("b1")
    assert venue.svc.state.books["BTC"].positions["liquidator-BTC"]["BTC-PERPETUAL"][0] \
        == -10**8
    assert venue.units("acct:b1") == 0
    assert steps[-1]["outcome"] == "closed"
    assert venue.get("/v1/state")["conservation"] == {"BTC": 0}
    assert venue.svc.store.ledger_sums() == {"BTC": 0}


def test_bad_enforcement_settings_are_refused(tmp_path: Path) -> None:
    from pmargin.errors import ParamsError
    from pmargin.service.config import load_venue

    with pytest.raises(ParamsError, match="breaker_share"):
        load_venue(venue_file(tmp_path, breaker_share=1.5))
    with pytest.raises(ParamsError, match="loss_method"):
        load_venue(venue_file(tmp_path, loss_method="pray"))
    venue = venue_file(tmp_path, method="auction")
    with pytest.raises(ParamsError, match=r"enforcement\.method") as exc:
        open_service(f"sqlite:///{tmp_path / 'm.db'}", venue)
    assert "auction" in str(exc.value)
