"""Cascade simulation: money is conserved exactly; modes compare on the same book."""

import pytest

from pmargin.liquidation.cascade import load_cascade_params, run_cascade, split_isolated
from pmargin.models import load_model
from pmargin.synthetic import Archetypes, book_portfolio, chain_universe, generate_book
from tests.factories import make_market

MARKET = make_market()


@pytest.fixture(scope="module")
def portfolios():
    arch = Archetypes(mm_options=(5, 15))
    book = generate_book(MARKET, chain_universe(MARKET, "BTC"), 40, seed=11, archetypes=arch)
    return [book_portfolio(book, r) for r in range(book.n_accounts)]


@pytest.mark.parametrize("loss_mode", ["adl", "socialise"])
@pytest.mark.parametrize(("preset", "isolated"),
                         [("deribit-pm", False), ("deribit-sm", False), ("deribit-sm", True)])
def test_cascade_conserves_money_and_tracks_equity(portfolios, preset, isolated, loss_mode):
    model = load_model(preset)
    accts = split_isolated(portfolios, MARKET, model) if isolated else portfolios
    params = load_cascade_params().model_copy(update={"loss_mode": loss_mode,
                                                      "insurance_fund_usd": 20000.0})
    res = run_cascade(accts, MARKET, model, -0.3, params=params)
    d = res.to_dict()
    assert d["conservation_error"] == "0"
    assert res.ledger_equity_max_error < 1e-9
    assert d["liquidated_notional_usd"] > 0
    assert d["bad_debt_usd"] == pytest.approx(
        d["insurance_fund_used_usd"] + d["adl_usd"] + d["socialised_usd"] + d["uncovered_usd"],
        rel=1e-9, abs=1e-6)
    assert (d["adl_usd"] == 0) if loss_mode == "socialise" else (d["socialised_usd"] == 0)
    assert not res.stuck_accounts
    # the cascade ends with nobody left in liquidation (or the round limit)
    assert res.rounds[-1].liquidated_notional_usd == 0 or len(res.rounds) == params.max_rounds


def test_no_shock_no_liquidation(portfolios):
    model = load_model("deribit-pm")
    healthy = [p for p in portfolios
               if model.margin(p, MARKET).equity >= model.margin(p, MARKET).maintenance_margin]
    res = run_cascade(healthy, MARKET, model, 0.0)
    assert res.total("liquidated_notional_usd") == 0
    assert res.conservation_error == 0


def test_adl_closes_opposite_positions_at_the_bankruptcy_price():
    from decimal import Decimal

    import numpy as np

    from pmargin.liquidation.cascade import _adl_position_closes
    from tests.factories import pf

    # The bankrupt account (row 0) was long 10 perpetuals; its liquidation sold them (trade -10).
    # A is short 6 with profit 5, B short 8 with profit 1, C long 5 (same side: not eligible).
    # Loss 3 over 10 units -> 0.3 per unit at the bankruptcy price.
    # Ranking (profit / (equity - profit) x gross / equity): A = 5/5 x 6/10 = 0.6,
    # B = 1/9 x 8/10 = 0.089, so A first: closes 6, pays 1.8; B closes 4, pays min(1.2, 1) = 1.
    accounts = [pf("BTC", []), pf("BTC", [("BTC-PERPETUAL", -6)]),
                pf("BTC", [("BTC-PERPETUAL", -8)]), pf("BTC", [("BTC-PERPETUAL", 5)])]
    profits = [Decimal(0), Decimal(5), Decimal(1), Decimal(9)]
    equity = np.array([0.0, 10.0, 10.0, 10.0])
    closes = _adl_position_closes(Decimal(3), profits, equity, accounts, 0, "BTC-PERPETUAL",
                                  -10.0, Decimal("1e-18"))
    assert closes == [(1, 6.0, Decimal("1.8")), (2, 4.0, Decimal(1))]
