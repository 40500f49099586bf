"""Stress auditor: scenario figures against hand calculations, the proximity curve against
accounts margined one by one, and monotone curves where the book makes them so."""

import numpy as np
import pytest

from pmargin.analytics.audit import (
    AuditParams,
    book_exposure,
    curve_markets,
    load_audit_params,
    proximity_curve,
    run_audit,
)
from pmargin.book import Book
from pmargin.engine import BookEngine
from pmargin.errors import InvalidInput, ParamsError
from pmargin.instruments import parse_instrument
from pmargin.models import load_model
from pmargin.models.health import HealthState
from pmargin.portfolio import Portfolio, Position
from pmargin.synthetic import Archetypes, chain_universe, generate_book
from tests.factories import expiry_code, make_market

MARKET = make_market(linear=False)
S0 = MARKET.index_price("BTC")
PERP = parse_instrument("BTC-PERPETUAL")


def perp_book(quantities, cash):
    pfs = [Portfolio("BTC", (Position(PERP, q, avg_price=S0),), {"BTC": c}, account_id=f"a{i}")
           for i, (q, c) in enumerate(zip(quantities, cash, strict=True))]
    return Book.from_portfolios(pfs)


def option_book(name, quantities, cash):
    inst = parse_instrument(name)
    pfs = [Portfolio("BTC", (Position(inst, q),), {"BTC": c}, account_id=f"a{i}")
           for i, (q, c) in enumerate(zip(quantities, cash, strict=True))]
    return Book.from_portfolios(pfs)


def params_with(scenarios, models=("deribit-sm",), points=5):
    base = load_audit_params().model_dump()
    base["scenarios"] = scenarios
    base["models"] = list(models)
    base["curve"] = {"min_move": -0.4, "max_move": 0.4, "points": points}
    return AuditParams.model_validate(base)


def scenario(name, move, haircut=0.0):
    return {"name": name, "description": "", "spot_move": {"BTC": move}, "vol_shift": 0.0,
            "skew_twist": 0.0, "collateral_prices": {}, "liquidity_haircut": haircut}


def test_shipped_scenarios_cover_the_issue_list():
    p = load_audit_params()
    names = {s.name for s in p.scenarios}
    assert {"crash_vol_up", "rally_vol_up", "skew_twist", "btc_eth_decorrelation",
            "stablecoin_depeg", "liquidity_haircut"} <= names
    assert p.curve.points >= 61
    assert p.curve.min_move == -0.6
    assert p.curve.max_move == 0.6


def test_losses_beyond_collateral_and_cover_match_hand_calculation():
    # long inverse perpetuals (q coin at the mark), cash c BTC; index -50 %:
    # coin P&L = q (1 - F/F') = q (1 - 2) = -q; equity c - q; loss beyond collateral
    # max(0, q - c) coin, worth (q - c) * S0 * 0.5 USD.
    q = np.array([3.0, 2.0, 1.0, 0.5])
    c = np.array([1.0, 0.5, 2.0, 0.1])
    book = perp_book(q, c)
    rep = run_audit(book, MARKET, params=params_with([scenario("crash", -0.5)]),
                    insurance_fund_usd=100_000.0, curve=False)
    (o,) = rep.outcomes
    loss = np.maximum(q - c, 0.0) * S0 * 0.5
    assert o.losses_beyond_collateral_usd == pytest.approx(loss.sum(), rel=1e-9)
    top = np.sort(loss)[::-1]
    assert o.cover1_usd == pytest.approx(top[0], rel=1e-9)
    assert o.cover2_usd == pytest.approx(top[:2].sum(), rel=1e-9)
    assert o.cover1_covered == (top[0] <= 100_000.0)
    assert o.cover2_covered == (top[:2].sum() <= 100_000.0)
    assert o.accounts_with_losses_beyond_collateral == int((loss > 0).sum())
    # every account with negative equity is under MM; the 4th (equity 0.1-0.5 < 0) too
    assert o.accounts_under_mm >= int((loss > 0).sum())


def test_liquidity_haircut_charges_accounts_under_mm():
    # short perpetual 1 coin, cash 0.6; index +20 %: coin P&L = -q (1 - F/F') = -(1 - 1/1.2)
    q, c, h = -1.0, 0.6, 0.05
    book = perp_book([q], [c])
    rep = run_audit(book, MARKET, params=params_with([scenario("up", 0.2, haircut=h)]),
                    curve=False)
    (o,) = rep.outcomes
    eq_coin = c + q * (1 - 1 / 1.2)
    s1 = S0 * 1.2
    # equity positive: under MM? deribit-sm MM of a perpetual is a fraction of notional, small
    assert eq_coin > 0
    notional = abs(q) * S0  # gross notional at the base market
    under = o.accounts_under_mm == 1
    expected = max(0.0, h * notional - eq_coin * s1) if under else 0.0
    assert o.losses_beyond_collateral_usd == pytest.approx(expected, rel=1e-9, abs=1e-9)


def sample_book(n=60, seed=5):
    arch = Archetypes(market_maker=0.05, mm_options=(5, 20))
    return generate_book(MARKET, chain_universe(MARKET, "BTC"), n, seed=seed, archetypes=arch)


@pytest.mark.parametrize("name", ["deribit-sm", "deribit-pm", "deribit-sm-isolated", "okx-pm"])
def test_curve_equals_per_account_checks(name):
    book = sample_book()
    model = load_model(name)
    engine = BookEngine(model, book, MARKET)
    exposure = book_exposure(book, MARKET, engine.result)
    moves = np.array([-0.45, -0.2, 0.0, 0.15, 0.4])
    curve, flags = proximity_curve(engine, curve_markets(MARKET, moves), moves, exposure)
    rows = np.random.default_rng(0).choice(book.n_accounts, 25, replace=False)
    for k, m in enumerate(moves):
        mkt = MARKET.bumped({"BTC": float(m)})
        for r in rows:
            one = model.margin_figures(book.portfolio(int(r)), mkt)
            alone = bool(one.health[0] >= HealthState.LIQUIDATION) and exposure.active[r]
            assert alone == bool(flags[k][r]), (name, m, r)
        assert curve.accounts_under_mm[k] == int(flags[k].sum())
        assert curve.share_accounts[k] == pytest.approx(flags[k].sum() / exposure.active.sum())


PUT = f"BTC-{expiry_code(30)}-72000-P"


@pytest.mark.parametrize("name", ["deribit-sm", "deribit-pm", "span"])
def test_curve_monotone_for_one_sided_books(name):
    rng = np.random.default_rng(1)
    n = 40
    moves = np.linspace(-0.6, 0.6, 25)
    model = load_model(name)

    def curve(book):
        engine = BookEngine(model, book, MARKET)
        return proximity_curve(engine, curve_markets(MARKET, moves), moves,
                               book_exposure(book, MARKET, engine.result))[0]

    # short puts + cash: a lower index can only put more accounts under MM
    short_puts = curve(option_book(PUT, -rng.uniform(0.5, 3, n), rng.uniform(0.05, 1.0, n)))
    assert np.all(np.diff(short_puts.share_accounts) <= 0)
    assert short_puts.share_accounts[0] > short_puts.share_accounts[-1]
    # long perpetuals + cash: the same; short perpetuals: the mirror image
    longs = curve(perp_book(rng.uniform(0.5, 3, n), rng.uniform(0.05, 1.5, n)))
    assert np.all(np.diff(longs.share_accounts) <= 0)
    assert np.all(np.diff(longs.share_open_interest) <= 0)
    shorts = curve(perp_book(-rng.uniform(0.5, 3, n), rng.uniform(0.05, 1.5, n)))
    assert np.all(np.diff(shorts.share_accounts) >= 0)
    assert shorts.share_accounts[-1] > 0
    # long puts + cash are never under MM (their loss is bounded by the premium they hold)
    long_puts = curve(option_book(PUT, rng.uniform(0.5, 3, n), rng.uniform(0.0, 0.2, n)))
    assert np.all(long_puts.accounts_under_mm == 0)


def test_audit_runs_every_shipped_scenario_on_a_generated_book():
    book = sample_book(40)
    rep = run_audit(book, MARKET, models=["deribit-sm", "deribit-pm"],
                    params=params_with(load_audit_params().model_dump()["scenarios"],
                                       ("deribit-sm",), 7))
    assert len(rep.outcomes) == 2 * len(load_audit_params().scenarios)
    assert len(rep.curves) == 2
    assert rep.curves[0].moves.size == 7
    d = rep.to_dict()
    assert {b["model"] for b in d["base"]} == {"deribit-sm", "deribit-pm"}
    for o in rep.outcomes:
        assert 0.0 <= o.share_accounts_under_mm <= 1.0
        assert o.cover2_usd >= o.cover1_usd >= 0.0
    # the crash hurts more accounts than no shock at all
    crash = [o for o in rep.outcomes if o.scenario == "crash_vol_up" and o.model == "deribit-pm"]
    base = next(b for b in rep.base if b.model == "deribit-pm")
    assert crash[0].accounts_under_mm >= base.accounts_under_mm


def test_bad_inputs_are_named():
    with pytest.raises(InvalidInput, match="insurance_fund_usd"):
        run_audit(perp_book([1.0], [1.0]), MARKET, params=params_with([scenario("x", -0.1)]),
                  insurance_fund_usd=-1.0)
    bad = load_audit_params().model_dump()
    bad["curve"]["points"] = 1
    with pytest.raises(Exception, match="points"):
        AuditParams.model_validate(bad)
    with pytest.raises(ParamsError, match="model"):
        run_audit(perp_book([1.0], [1.0]), MARKET, models=["deribit-pn"],
                  params=params_with([scenario("x", -0.1)]))
