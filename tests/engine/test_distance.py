"""Distance to liquidation against a brute-force scan of the model on the full market."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pmargin.book import Book
from pmargin.engine import BookEngine
from pmargin.engine.distance import AccountMoves, MarketCache, _one_row, liquidation_distance
from pmargin.errors import InvalidInput
from pmargin.market import MarketSnapshot
from pmargin.models import load_model
from pmargin.portfolio import Portfolio, portfolio_from_dict
from tests.factories import expiry_code, make_market, pf

M30 = expiry_code(30)
TOL = 1e-4


def excess_full(model_name: str, market: MarketSnapshot, p: Portfolio, u: str,
                move: float) -> float:
    """Equity - MM with the whole market moved (MarketSnapshot.bumped), margined alone."""
    mkt = market if move == 0.0 else market.bumped({u: move})
    res = load_model(model_name).margin(p, mkt)
    return res.equity - res.maintenance_margin


def brute_first(model_name: str, market: MarketSnapshot, p: Portfolio, u: str,
                grid: np.ndarray) -> float | None:
    """First move of ``grid`` (ordered outward from 0) at which equity <= MM."""
    for m in grid:
        if excess_full(model_name, market, p, u, float(m)) <= 0.0:
            return float(m)
    return None


DOWN = -np.arange(1, 100) * 0.01            # -1 % .. -99 %
UP = np.concatenate([np.arange(1, 101) * 0.01, 1.0 + np.arange(1, 41) * 0.1])  # .. +500 %


def check_against_scan(model_name: str, market: MarketSnapshot, p: Portfolio, u: str,
                       found: float | None, grid: np.ndarray, step: float) -> None:
    want = brute_first(model_name, market, p, u, grid)
    if want is None:
        assert found is None
        return
    assert found is not None
    assert abs(found - want) <= step + TOL
    # exact on the real model: at the reported move equity <= MM, a tolerance nearer 0 not
    assert excess_full(model_name, market, p, u, found) <= 0.0
    assert excess_full(model_name, market, p, u, found - np.sign(found) * TOL) > 0.0


@pytest.fixture(scope="module")
def market() -> MarketSnapshot:
    return make_market(index={"BTC": 80000.0, "ETH": 2500.0}, linear=False)


@pytest.mark.parametrize("model_name", ["deribit-pm", "deribit-sm"])
def test_short_strangle_both_sides_equal_brute_force(market: MarketSnapshot,
                                                     model_name: str) -> None:
    p = pf("BTC", [(f"BTC-{M30}-96000-C", -2.0), (f"BTC-{M30}-64000-P", -2.0)],
           {"BTC": 0.6})
    d = liquidation_distance(load_model(model_name), market, p)["BTC"]
    assert d.down is not None
    assert d.up is not None
    assert -0.99 < d.down < 0.0 < d.up < 5.0
    check_against_scan(model_name, market, p, "BTC", d.down, DOWN, 0.01)
    check_against_scan(model_name, market, p, "BTC", d.up, UP, 0.1)


def perp(q: float, btc: float, avg: float | None = 80000.0) -> Portfolio:
    row: dict[str, object] = {"instrument": "BTC-PERPETUAL", "quantity": q}
    if avg is not None:
        row["avg_price"] = avg
    return portfolio_from_dict({"margin_currency": "BTC", "collateral": {"BTC": btc},
                                "positions": [row]})


def test_long_future_only_falls_liquidate(market: MarketSnapshot) -> None:
    # an inverse perpetual long 1 BTC (entered at the mark, 80,000) on 0.3 BTC
    p = perp(1.0, 0.3)
    # hand calculation: the P&L of the inverse perpetual is 1 - 80,000 / F BTC, so equity
    # reaches 0 at F = 80,000 / 1.3 (-23.1 %); MM > 0 makes liquidation come first
    assert excess_full("deribit-pm", market, p, "BTC", 1 / 1.3 - 1) < 0
    d = liquidation_distance(load_model("deribit-pm"), market, p)["BTC"]
    assert d.up is None
    assert d.up_reason is not None
    assert "+500 %" in d.up_reason
    check_against_scan("deribit-pm", market, p, "BTC", d.down, DOWN, 0.01)
    check_against_scan("deribit-pm", market, p, "BTC", d.up, UP[::5], 0.5)
    # monotone: less collateral -> liquidation nearer
    d2 = liquidation_distance(load_model("deribit-pm"), market, perp(1.0, 0.2))["BTC"]
    assert d.down is not None
    assert d2.down is not None
    assert 1 / 1.3 - 1 < d.down < d2.down < 0
    # without an entry price the position counts as entered at the current mark: the same
    assert liquidation_distance(load_model("deribit-pm"), market, perp(1.0, 0.3, None)) == {
        "BTC": d}


def test_short_future_only_rises_liquidate(market: MarketSnapshot) -> None:
    p = perp(-1.0, 0.3)
    d = liquidation_distance(load_model("deribit-pm"), market, p)["BTC"]
    assert d.down is None
    assert d.up is not None
    assert d.up > 0
    check_against_scan("deribit-pm", market, p, "BTC", d.up, UP, 0.1)
    check_against_scan("deribit-pm", market, p, "BTC", d.down, DOWN[::5], 0.05)


def test_long_put_is_never_liquidated(market: MarketSnapshot) -> None:
    # a long option loses at most its premium: with collateral it never reaches MM
    p = pf("BTC", [(f"BTC-{M30}-72000-P", 3.0)], {"BTC": 0.05})
    d = liquidation_distance(load_model("deribit-pm"), market, p)["BTC"]
    assert d.down is None
    assert d.up is None
    assert "-99 %" in (d.down_reason or "")
    assert "+500 %" in (d.up_reason or "")
    check_against_scan("deribit-pm", market, p, "BTC", None, DOWN[::4], 0.02)
    assert d.to_json() == {"down_pct": None, "up_pct": None, "down_reason": d.down_reason,
                           "up_reason": d.up_reason}


def test_already_below_mm_is_zero(market: MarketSnapshot) -> None:
    p = pf("BTC", [(f"BTC-{M30}-80000-C", -5.0)], {"BTC": 0.01})
    assert excess_full("deribit-pm", market, p, "BTC", 0.0) <= 0.0
    d = liquidation_distance(load_model("deribit-pm"), market, p)["BTC"]
    assert d.down == 0.0
    assert d.up == 0.0
    assert "already" in (d.down_reason or "")
    assert d.to_json()["down_pct"] == 0.0
    assert str(d.to_json()["down_pct"]) == "0.0"


def test_each_underlying_moved_alone() -> None:
    mkt = make_market(index={"BTC": 80000.0, "ETH": 2500.0})
    p = pf("USDC", [(f"BTC_USDC-{M30}-96000-C", -1.0), (f"ETH_USDC-{M30}-2000-P", -10.0)],
           {"USDC": 9000.0})
    out = liquidation_distance(load_model("deribit-pm"), mkt, p)
    assert sorted(out) == ["BTC", "ETH"]
    for u, grid_up in (("BTC", UP[:100]), ("ETH", UP[:100])):
        check_against_scan("deribit-pm", mkt, p, u, out[u].up, grid_up, 0.01)


def test_book_row_equals_portfolio_and_engine(market: MarketSnapshot) -> None:
    ps = [portfolio_from_dict({"margin_currency": "BTC", "collateral": {"BTC": 0.3},
                               "account_id": "a", "positions": [
                                   {"instrument": "BTC-PERPETUAL", "quantity": 1.0,
                                    "avg_price": 80000.0}]}),
          pf("BTC", [(f"BTC-{M30}-96000-C", -2.0), (f"BTC-{M30}-64000-P", -2.0)],
             {"BTC": 0.6}, account_id="b")]
    book = Book.from_portfolios(ps)
    model = load_model("deribit-pm")
    cache = MarketCache(market)
    for r, p in enumerate(ps):
        assert (liquidation_distance(model, market, book, r, cache=cache)
                == liquidation_distance(model, market, p))
    eng = BookEngine(model, book, market)
    assert eng.liquidation_distance("b") == liquidation_distance(model, market, ps[1])


def test_no_positions_no_entry(market: MarketSnapshot) -> None:
    p = pf("BTC", [], {"BTC": 1.0})
    assert liquidation_distance(load_model("deribit-pm"), market, p) == {}


def test_bad_tolerance_is_refused(market: MarketSnapshot) -> None:
    p = perp(1.0, 0.3)
    with pytest.raises(InvalidInput) as exc:
        liquidation_distance(load_model("deribit-pm"), market, p, tol=float("nan"))
    assert exc.value.field == "tol"


@pytest.mark.data
def test_fast_on_the_real_chain() -> None:
    from pmargin.demo import latest_snapshot
    from pmargin.market.loaders import load_deribit_csv

    snap = latest_snapshot()
    if snap is None:
        pytest.skip("no Deribit snapshot in ../shared/data")
    mkt = load_deribit_csv(snap)
    calls = sorted(n for n in mkt.instrument_names if n.endswith("-C") and n.startswith("BTC-"))
    short_call = calls[len(calls) // 2]
    p = portfolio_from_dict({"margin_currency": "BTC", "collateral": {"BTC": 1.0}, "positions": [
        {"instrument": short_call, "quantity": -3.0},
        {"instrument": "BTC-PERPETUAL", "quantity": 1.0,
         "avg_price": mkt.mark_price("BTC-PERPETUAL")}]})
    model = load_model("deribit-pm")
    cache = MarketCache(mkt)
    d = liquidation_distance(model, mkt, p, cache=cache)["BTC"]
    # one trial re-prices the account's instruments only: several times cheaper than moving
    # the whole 2,000-option market (a ratio, measured side by side: the machine is shared)
    moves = AccountMoves(model, mkt, _one_row(Book.from_portfolios([p]), 0, mkt), cache)
    assert not moves.exact
    assert len(moves.small.instrument_names) < 60
    t0 = time.process_time()
    for m in (-0.1, -0.2, -0.3):
        moves.margin("BTC", m)
    small = time.process_time() - t0
    t0 = time.process_time()
    for m in (-0.1, -0.2, -0.3):
        model.margin(p, mkt.bumped({"BTC": m}))
    full = time.process_time() - t0
    assert small < full / 3, (small, full)
    for m in (d.down, d.up):
        if m is not None:
            assert excess_full("deribit-pm", mkt, p, "BTC", m) <= 0.0
            assert excess_full("deribit-pm", mkt, p, "BTC", m - np.sign(m) * TOL) > 0.0
