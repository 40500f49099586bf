"""Liquidity cost: half-spread plus linear impact."""

from __future__ import annotations

import numpy as np
import pytest

from pmargin.errors import InvalidInput, MarketDataError
from pmargin.instruments import InstrumentKind
from pmargin.liquidation import closing_cost, load_liquidity_params


def test_quoted_option_long_is_sold_below_mark() -> None:
    # mark 100, bid 95, ask 105 -> half-spread 5; 10 contracts -> notional 1000 USD;
    # impact = 1000 / 250000 x 1 % = 0.004 % of 100 = 0.004 USD; price 100 - 5.004 = 94.996;
    # cost 10 x 5.004 = 50.04 USD
    out = closing_cost(10.0, 100.0, 95.0, 105.0, kind=InstrumentKind.OPTION)
    assert out.half_spread == pytest.approx(5.0)
    assert out.impact == pytest.approx(0.004)
    assert out.execution_price == pytest.approx(94.996)
    assert out.cost_usd == pytest.approx(50.04)
    assert not out.quote_missing


def test_unquoted_perpetual_short_is_bought_above_mark() -> None:
    # mark 60000, no quotes -> half-spread max(0.02 % x 60000, 0.5) = 12; -2 BTC -> notional
    # 120000; impact 120000 / 2e7 x 1 % = 0.006 % -> 3.6 USD; price 60015.6; cost 2 x 15.6 = 31.2
    out = closing_cost(-2.0, 60000.0, kind="perpetual")
    assert out.half_spread == pytest.approx(12.0)
    assert out.impact == pytest.approx(3.6)
    assert out.execution_price == pytest.approx(60015.6)
    assert out.cost_usd == pytest.approx(31.2)
    assert out.quote_missing


def test_vectorised_mixed_kinds_and_missing_quotes() -> None:
    q = np.array([10.0, -2.0, 0.0, 5.0])
    mark = np.array([100.0, 60000.0, 50.0, 2.0])
    bid = np.array([95.0, np.nan, 49.0, 0.0])  # last quote missing (bid 0)
    ask = np.array([105.0, np.nan, 51.0, 3.0])
    kinds = ["option", "perpetual", "future", "option"]
    out = closing_cost(q, mark, bid, ask, kind=kinds)
    assert out.cost_usd.shape == (4,)
    np.testing.assert_allclose(out.cost_usd[:2], [50.04, 31.2])
    assert out.cost_usd[2] == 0
    assert out.execution_price[2] == 50.0
    # cheap option, no bid: floor max(2.5 % x 2, 1.0) = 1.0 USD
    assert out.half_spread[3] == pytest.approx(1.0)
    assert out.quote_missing.tolist() == [False, True, False, True]
    assert out.total_cost_usd == pytest.approx(float(out.cost_usd.sum()))
    assert np.all(out.cost_usd >= 0)


def test_sell_price_is_floored_at_zero() -> None:
    out = closing_cost(1e9, 1.0, kind="option")
    assert out.execution_price == 0.0
    assert out.cost_usd == pytest.approx(1e9)


def test_cost_grows_with_size() -> None:
    sizes = np.array([1.0, 10.0, 100.0, 1000.0])
    out = closing_cost(sizes, 50000.0, 49990.0, 50010.0, kind="future")
    per_unit = out.cost_usd / sizes
    assert np.all(np.diff(per_unit) > 0)


def test_invalid_inputs() -> None:
    with pytest.raises(MarketDataError):
        closing_cost(1.0, np.inf, kind="option")
    with pytest.raises(InvalidInput, match="finite"):
        closing_cost(np.nan, 1.0, kind="option")
    with pytest.raises(InvalidInput, match="one of"):
        closing_cost(1.0, 1.0, kind="swap")


def test_params_cover_every_kind() -> None:
    params = load_liquidity_params()
    assert set(params.kinds) == set(InstrumentKind)
    assert params.assumptions


def test_non_finite_inputs_name_the_first_bad_index():
    with pytest.raises(InvalidInput) as err:
        closing_cost([1.0, np.nan, 2.0], 100.0, kind="future")
    assert err.value.field == "quantity[1]"
    with pytest.raises(MarketDataError) as err:
        closing_cost([1.0, 2.0], [100.0, np.inf], kind="future")
    assert err.value.field == "mark_price[1]"
    with pytest.raises(InvalidInput, match="bid"):
        closing_cost(1.0, 100.0, "x", 101.0, kind="future")


def test_worthless_option_is_closed_at_the_spread_floor() -> None:
    # A far out-of-the-money option marked at 0 (after a crash): a long is sold at 0 (no
    # cost), a short is bought back at the half-spread floor max(fraction x 0, USD floor).
    params = load_liquidity_params()
    floor = params.kinds[InstrumentKind.OPTION].min_half_spread_usd
    out = closing_cost(np.array([3.0, -3.0]), np.array([0.0, 0.0]), None, None,
                       kind="option", params=params)
    assert list(out.execution_price) == [0.0, floor]  # impact is 0: the notional is 0
    assert list(out.cost_usd) == [0.0, 3.0 * floor]
    with pytest.raises(MarketDataError):
        closing_cost(1.0, -1.0, None, None, kind="option")
