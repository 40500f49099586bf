"""The in-memory venue: a new account joins a built engine without a rebuild, same margins."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from pmargin.service.app import market_from_payload
from pmargin.service.config import load_venue
from pmargin.service.state import Effect, VenueState
from tests.service.conftest import OPTION, market_json


def _venue() -> tuple[VenueState, int]:
    s = VenueState(load_venue(None))
    mkt = market_from_payload({"format": "json", "market": market_json()})
    seq = 0

    def do(eff: Effect) -> None:
        nonlocal seq
        seq += 1
        s.apply(eff, seq)

    do(Effect("market", "BTC", market=mkt, market_digest="m1"))
    for i in range(5):
        do(s.effect_account(f"a{i}", "BTC"))
        do(s.effect_transfer(f"a{i}", "BTC", Decimal("2"), "deposit"))
        do(s.effect_fill(f"a{i}", OPTION, Decimal(-1 - i), Decimal("0.05"), "BTC", Decimal(0)))
    return s, seq


def _same(a: VenueState, b: VenueState) -> None:
    ea, eb = a.engine("BTC"), b.engine("BTC")
    assert ea.book.account_ids == eb.book.account_ids == a.books["BTC"].accounts
    for f in ("initial_margin", "maintenance_margin", "equity"):
        np.testing.assert_allclose(getattr(ea.result, f), getattr(eb.result, f), rtol=1e-12)
    for k in ea.result.components:
        np.testing.assert_allclose(ea.result.components[k], eb.result.components[k],
                                   rtol=1e-12, atol=1e-12)
    assert a.state_hash() == b.state_hash()


def test_new_account_joins_a_built_engine_like_a_rebuild() -> None:
    live, seq = _venue()
    eng = live.engine("BTC")  # built: later accounts are appended to it
    live.apply(live.effect_account("new1", "BTC"), seq + 1)
    assert live.engine("BTC") is eng
    assert not live.books["BTC"].dirty
    live.apply(live.effect_transfer("new1", "BTC", Decimal("0.5"), "deposit"), seq + 2)
    live.apply(live.effect_fill("new1", OPTION, Decimal(-2), Decimal("0.05"), "BTC",
                                Decimal(0)), seq + 3)
    live.apply(live.effect_account("new2", "BTC"), seq + 4)  # stays empty
    assert live.engine("BTC") is eng
    # the same events on a venue whose engine is built only at the end
    clean, _ = _venue()
    clean.apply(clean.effect_account("new1", "BTC"), seq + 1)
    clean.apply(clean.effect_transfer("new1", "BTC", Decimal("0.5"), "deposit"), seq + 2)
    clean.apply(clean.effect_fill("new1", OPTION, Decimal(-2), Decimal("0.05"), "BTC",
                                  Decimal(0)), seq + 3)
    clean.apply(clean.effect_account("new2", "BTC"), seq + 4)
    _same(live, clean)
    # a market update afterwards recomputes the grown book like the rebuilt one
    up = market_from_payload({"format": "json", "market": market_json(index=78000.0,
                                                                       minutes=1)})
    live.apply(Effect("market", "BTC", market=up, market_digest="m2"), seq + 5)
    clean.apply(Effect("market", "BTC", market=up, market_digest="m2"), seq + 5)
    _same(live, clean)
    r = eng.row("new2")
    assert eng.result.initial_margin[r] == 0
    assert eng.result.equity[r] == 0
    assert eng.result.initial_margin[eng.row("new1")] > 0


def test_market_prepared_by_the_check_equals_update_market() -> None:
    a, seq = _venue()
    b, _ = _venue()
    ea, eb = a.engine("BTC"), b.engine("BTC")
    a.apply(a.effect_fill("a1", OPTION, Decimal(-1), Decimal("0.05"), "BTC", Decimal(0)), seq + 1)
    b.apply(b.effect_fill("a1", OPTION, Decimal(-1), Decimal("0.05"), "BTC", Decimal(0)), seq + 1)
    up = market_from_payload({"format": "json", "market": market_json(index=76000.0,
                                                                       minutes=2)})
    pre = Effect("market", "BTC", market=up, market_digest="m3")
    pre.prepared["BTC"] = (ea, ea.book.n_instruments, a.books["BTC"].model.prepare(ea.book, up))
    a.apply(pre, seq + 2)
    b.apply(Effect("market", "BTC", market=up, market_digest="m3"), seq + 2)
    assert ea.prep is pre.prepared["BTC"][2]  # used, not prepared again
    assert ea.market is up
    _same(a, b)
    assert eb.market is up
