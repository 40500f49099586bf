"""The one liquidity cost rule (pmargin.liquidity_cost): the liquidation engine applies it."""

from __future__ import annotations

import numpy as np

from pmargin.liquidation import closing_cost, load_liquidity_params
from pmargin.liquidity_cost import cost_rule


def test_hand_computed_close_out() -> None:
    # short 50 at mark 2,000, quotes 1,950/2,050, depth 80,000 USD per 1 %, k = 1:
    # impact = 50 * 2,000 / 80,000 * 1 % * 2,000 = 25, half-spread 50, cost 50 * 75
    out = cost_rule(-50.0, 2000.0, 1950.0, 2050.0, 1.0, 80000.0, 0.025, 1.0, 1.0)
    assert float(out.impact) == 25.0
    assert float(out.half_spread) == 50.0
    assert float(out.execution_price) == 2075.0
    assert float(out.cost_usd) == 3750.0


def test_liquidation_closing_cost_is_the_rule_with_the_kind_depths() -> None:
    p = load_liquidity_params()
    q = np.array([3.0, -7.0, 0.0, 2e4])
    mark = np.array([120.0, 65000.0, 3.0, 0.5])
    bid = np.array([118.0, np.nan, 2.0, np.nan])
    ask = np.array([123.0, np.nan, 4.0, np.nan])
    kinds = ["option", "perpetual", "future", "option"]
    got = closing_cost(q, mark, bid, ask, kind=kinds)
    depth, ff, fu = p.columns(kinds)
    want = cost_rule(q, mark, bid, ask, 1.0, depth, ff, fu, p.impact_coefficient)
    np.testing.assert_array_equal(got.cost_usd, want.cost_usd)
    np.testing.assert_array_equal(got.execution_price, want.execution_price)
