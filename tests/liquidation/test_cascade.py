"""Cascade simulation: money is conserved exactly; modes compare on the same book."""

import pytest

from pmargin.liquidation.cascade import load_cascade_params, run_cascade
from pmargin.models import load_model
from pmargin.synthetic import Archetypes, chain_universe, generate_book
from tests.factories import make_market

MARKET = make_market()


@pytest.fixture(scope="module")
def portfolios():
    arch = Archetypes(mm_options=(5, 15))
    book = generate_book(MARKET, chain_universe(MARKET, "BTC"), 40, seed=11, archetypes=arch)
    return [book.portfolio(r) for r in range(book.n_accounts)]


@pytest.mark.parametrize("loss_mode", ["adl", "socialise"])
@pytest.mark.parametrize("preset", ["deribit-pm", "deribit-sm", "deribit-sm-isolated"])
def test_cascade_conserves_money_and_tracks_equity(portfolios, preset, loss_mode):
    model = load_model(preset)
    accts = (model.isolate_portfolios(portfolios, MARKET)  # type: ignore[attr-defined]
             if preset.endswith("-isolated") else portfolios)
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


@pytest.mark.parametrize("rounds", [1, 2])
def test_a_cascade_cut_by_the_round_limit_settles_its_last_move(portfolios, rounds):
    # the last round executed and moved the index, then max_rounds ended the cascade: the ledger
    # must hold the equity at the final index (it once missed the last impact's P&L: 0.073 BTC
    # per account in 10,000-account replays)
    model = load_model("deribit-pm")
    params = load_cascade_params().model_copy(update={"max_rounds": rounds,
                                                      "depth_usd_per_pct": 2e5})
    res = run_cascade(portfolios, MARKET, model, -0.3, params=params)
    assert len(res.rounds) == rounds
    assert res.rounds[-1].price_impact != 0.0
    assert res.final_move != res.rounds[-1].move_from_start
    assert res.conservation_error == 0
    assert res.ledger_equity_max_error < 1e-12


def test_no_shock_no_liquidation(portfolios):
    model = load_model("deribit-pm")
    healthy = [p for p in portfolios
               if model.margin(p, MARKET).equity >= model.margin(p, MARKET).maintenance_margin]
    assert len(healthy) >= 10  # there is something to check
    res = run_cascade(healthy, MARKET, model, 0.0)
    assert res.total("liquidated_notional_usd") == 0
    assert res.conservation_error == 0


def test_adl_closes_opposite_positions_at_the_bankruptcy_price():
    from decimal import Decimal

    import numpy as np

    from pmargin.book import Book
    from pmargin.liquidation.cascade import _adl_close_positions, _Holdings
    from pmargin.liquidation.ledger import Ledger
    from tests.factories import pf

    # The bankrupt account (row 0) was long 10 perpetuals; its liquidation sold them (trade -10).
    # A is short 6 with profit 5, B short 8 with profit 1, C long 5 (same side: not eligible).
    # Loss 3 over the 10 units the shorts can absorb -> 0.3 per unit at the bankruptcy price.
    # BitMEX ranking of whole accounts (adl.rank_accounts): PnL% = profit / starting equity,
    # leverage = gross notional / equity (in coin: |q| for a BTC perpetual in a BTC book):
    # A = 5/5 x 6/10 = 0.6, B = 1/9 x 8/10 = 0.089, so A first: closes 6, pays 6 x 0.3 = 1.8;
    # B may pay at most its profit 1, i.e. close 1 / 0.3 = 3.33 units, paying 1 less one BTC
    # quantum (1e-18: 3.33...3 x 0.3 rounded down, so it never exceeds its profit). The rest of
    # the loss is left for cash ADL.
    book = Book.from_portfolios([
        pf("BTC", [("BTC-PERPETUAL", 1e-9)]), pf("BTC", [("BTC-PERPETUAL", -6)]),
        pf("BTC", [("BTC-PERPETUAL", -8)]), pf("BTC", [("BTC-PERPETUAL", 5)])])
    profits = [Decimal(0), Decimal(5), Decimal(1), Decimal(9)]
    equity = np.array([0.0, 10.0, 10.0, 10.0])
    start = equity - np.array([float(p) for p in profits])
    names = [f"account:{k}" for k in range(4)]
    ledger = Ledger()
    for name in names[1:]:
        ledger.opening(name, "BTC", Decimal(10))
    profit = np.array([float(p) for p in profits])
    gross = np.abs(book.positions.toarray()[:, 0])  # coin notional of a BTC perpetual
    paid = _adl_close_positions(_Holdings(book), ledger, Decimal(3), profit, equity, start,
                                gross, 0, 0, -10.0, names, "r")
    q = Decimal("1e-18")
    assert paid == {1: Decimal("1.8"), 2: 1 - q}
    held = book.positions[:, 0].toarray().ravel()
    assert held[1] == 0.0
    assert held[2] == pytest.approx(-8 + 1 / 0.3, rel=1e-12)
    assert held[3] == 5.0
    assert ledger.balance("account:0", "BTC") == Decimal("2.8") - q
    assert ledger.conservation_error("BTC") == 0
