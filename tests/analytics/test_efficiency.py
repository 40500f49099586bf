"""Capital-efficiency figures against hand calculations and the isolated model."""

import json

import numpy as np
import pytest

from pmargin.analytics.efficiency import efficiency, isolated_reference
from pmargin.book import Book
from pmargin.instruments import parse_instrument
from pmargin.models import load_model
from pmargin.portfolio import Portfolio, Position
from tests.factories import expiry_code, make_market

MARKET = make_market(linear=False)
S0 = MARKET.index_price("BTC")
CALL = parse_instrument(f"BTC-{expiry_code(30)}-88000-C")
PUT = parse_instrument(f"BTC-{expiry_code(30)}-72000-P")
PERP = parse_instrument("BTC-PERPETUAL")


def book():
    pfs = [
        Portfolio("BTC", (Position(CALL, -2.0), Position(PERP, 1.0, avg_price=S0)),
                  {"BTC": 1.5}, account_id="covered"),
        Portfolio("BTC", (Position(PUT, 1.0), Position(CALL, 1.0)), {"BTC": 0.2},
                  account_id="strangle"),
        Portfolio("BTC", (), {"BTC": 3.0}, account_id="cash"),
    ]
    return Book.from_portfolios(pfs)


@pytest.mark.parametrize("name", ["deribit-pm", "deribit-sm", "span"])
def test_figures_match_hand_calculation(name):
    b = book()
    model = load_model(name)
    eff = efficiency(model, b, MARKET)
    res = model.compute(b, MARKET)
    iso = load_model("deribit-sm-isolated").compute(b, MARKET)
    usd = res.mc_usd
    assert usd == S0
    # gross notional: |q| x index, options one coin per contract
    assert eff.gross_notional_usd == pytest.approx([3.0 * S0, 2.0 * S0, 0.0])
    im = res.initial_margin * usd
    eq = res.equity * usd
    assert eff.initial_margin_usd == pytest.approx(im)
    assert eff.im_over_gross_notional[:2] == pytest.approx(im[:2] / eff.gross_notional_usd[:2])
    assert np.isnan(eff.im_over_gross_notional[2])
    assert eff.utilisation == pytest.approx(im / eq)
    assert eff.free_collateral_usd == pytest.approx(eq - im)
    assert eff.capital_freed_usd == pytest.approx(iso.initial_margin * iso.mc_usd - im)
    # the cash-only account needs nothing anywhere
    assert eff.initial_margin_usd[2] == 0.0
    assert eff.capital_freed_usd[2] == 0.0
    tot = eff.totals()
    assert tot["capital_freed_usd"] == pytest.approx(eff.capital_freed_usd.sum())
    json.dumps(eff.row(2))  # NaN comes out as null
    assert eff.row(2)["im_over_gross_notional"] is None


def test_portfolio_margin_frees_capital_on_a_hedged_book():
    # a covered position (short calls against a long perpetual) is cheaper under PM than with
    # each leg margined on its own
    eff = efficiency(load_model("deribit-pm"), book(), MARKET)
    assert eff.capital_freed_usd[0] > 0


def test_isolated_reference_by_currency():
    assert isolated_reference("BTC") == "deribit-sm-isolated"
    assert isolated_reference("usdc") == "linear-sm-isolated"


def test_account_distance_is_the_brute_force_crossing():
    from pmargin.analytics.efficiency import account_efficiency

    pf = Portfolio("BTC", (Position(PERP, 2.0, avg_price=S0),), {"BTC": 0.5})
    model = load_model("deribit-sm")
    row = account_efficiency(model, pf, MARKET)
    down = row["liquidation_distance"]["BTC"]["down_pct"] / 100
    # brute force: the first move on a 0.05 % grid at which equity <= MM
    grid = -np.arange(1, 2000) * 0.0005
    for m in grid:
        r = model.margin_figures(pf, MARKET.bumped({"BTC": float(m)}))
        if r.equity[0] <= r.maintenance_margin[0]:
            break
    assert abs(down - m) <= 0.0005 + 1e-4
    assert row["liquidation_distance"]["BTC"]["up_pct"] is None  # a long is never hurt going up
