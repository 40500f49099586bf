"""Properties of the surgical liquidation planner."""

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pmargin.instruments import parse_instrument
from pmargin.liquidation.planner import (
    DEFICIT_COVER,
    load_planner_params,
    plan_book,
    plan_liquidation,
)
from pmargin.models import load_model
from pmargin.synthetic import Archetypes, chain_universe, generate_book
from tests.factories import expiry_code, make_market, pf

MARKET = make_market()
NAMES = [f"BTC-{expiry_code(d)}-{k}-{cp}" for d in (7, 30)
         for k in (72000, 80000, 88000) for cp in "CP"]
NAMES += ["BTC-PERPETUAL", f"BTC-{expiry_code(30)}"]
MODELS = {m: load_model(m) for m in ("deribit-pm", "deribit-sm", "pmargin")}

positions = st.lists(
    st.tuples(st.sampled_from(NAMES), st.floats(-5, 5).filter(lambda x: abs(x) > 0.05)),
    min_size=1, max_size=5, unique_by=lambda t: t[0],
)


def check_plan(plan, model):
    # an account is liquidated exactly when it is below maintenance margin
    assert plan.needed == (plan.before_equity < plan.before_maintenance_margin)
    assert bool(plan.steps) == plan.needed
    if not plan.needed:
        assert plan.healthy
        assert plan.final.net_positions() == pytest.approx(
            {n: q for n, q in plan.final.net_positions().items()})
        return
    # never increases maintenance margin, step after step; penalties are capped at what the
    # account still has after the execution cost (a bankrupt account pays none)
    mm = plan.before_maintenance_margin
    eq = plan.before_equity
    for s in plan.steps:
        assert s.maintenance_margin <= mm * (1 + 1e-9) + 1e-12
        assert 0.0 <= s.penalty <= max(0.0, eq - s.slippage) + 1e-12
        mm, eq = s.maintenance_margin, s.equity
    left = [p for p in plan.final.positions if p.quantity != 0]
    assert plan.healthy or not left
    assert not plan.stuck
    assert plan.conservation_error == 0
    assert plan.deficit == pytest.approx(max(0.0, -plan.steps[-1].equity))
    assert plan.deficit_covered_by == (DEFICIT_COVER if plan.deficit > 0 else "")
    if plan.steps:
        # removing the last step leaves the account below target (no over-liquidation)
        prev_eq = plan.steps[-2].equity if len(plan.steps) > 1 else plan.before_equity
        prev_tg = plan.steps[-2].target if len(plan.steps) > 1 else plan.before_target
        assert prev_eq < prev_tg
        # the final state is what the model says
        res = model.margin(plan.final, MARKET)
        assert res.equity == pytest.approx(plan.steps[-1].equity, rel=1e-9, abs=1e-9)
        assert res.maintenance_margin == pytest.approx(plan.steps[-1].maintenance_margin,
                                                       rel=1e-9, abs=1e-12)


@pytest.mark.slow
@settings(max_examples=25)
@given(positions, st.floats(0.0, 0.3), st.sampled_from(sorted(MODELS)))
def test_plan_restores_health_minimally_and_never_raises_mm(pos, coll, name):
    model = MODELS[name]
    plan = plan_liquidation(pf("BTC", pos, {"BTC": coll}), MARKET, model)
    check_plan(plan, model)


short_heavy = st.lists(
    st.tuples(st.sampled_from(NAMES), st.floats(-8, -0.5)),
    min_size=1, max_size=4, unique_by=lambda t: t[0],
)


@settings(max_examples=20, suppress_health_check=[HealthCheck.filter_too_much])
@given(short_heavy, st.floats(0.0, 0.05), st.sampled_from(sorted(MODELS)))
def test_accounts_in_liquidation_get_a_minimal_plan(pos, coll, name):
    # the same properties on accounts that do need a plan (an example that does not is
    # discarded, so the test cannot pass by checking empty plans)
    model = MODELS[name]
    plan = plan_liquidation(pf("BTC", pos, {"BTC": coll}), MARKET, model)
    assume(plan.needed)
    assert plan.steps
    check_plan(plan, model)


def test_last_step_is_the_smallest_that_restores_health():
    model = MODELS["deribit-pm"]
    name = f"BTC-{expiry_code(30)}-80000-C"
    plan = plan_liquidation(pf("BTC", [(name, -10)], {"BTC": 1.0}), MARKET, model)
    assert plan.needed
    assert plan.healthy
    assert len(plan.steps) == 1
    (_n, q, _), = plan.steps[-1].trades
    assert 0 < q < 10  # partial: only what is needed
    # closing 2 % less than the plan (the 2 % stays open, its value stays in cash) leaves the
    # account below target: the plan closed no more than needed
    mark_coin = MARKET.mark_price(name) / MARKET.forward("BTC", parse_instrument(name).expiry)
    cash = plan.final.collateral["BTC"] + 0.02 * q * mark_coin
    res = model.margin(pf("BTC", [(name, -10 + 0.98 * q)], {"BTC": cash}), MARKET)
    assert res.equity == pytest.approx(plan.steps[-1].equity, rel=1e-3)
    assert res.equity < res.maintenance_margin * 1.05


def test_hedge_is_not_unwound_when_that_raises_margin():
    model = MODELS["deribit-pm"]
    short = f"BTC-{expiry_code(30)}-80000-C"
    long_ = f"BTC-{expiry_code(30)}-88000-C"
    plan = plan_liquidation(pf("BTC", [(short, -20), (long_, 20)], {"BTC": 0.05}), MARKET, model)
    assert plan.needed
    assert plan.steps
    for s in plan.steps:
        for n, _q, _ in s.trades:
            if n == long_ and len(s.trades) == 1:
                pytest.fail("the protective long leg was sold on its own")


def test_delta_hedge_first_trades_the_perpetual():
    model = MODELS["deribit-pm"]
    params = load_planner_params().model_copy(update={"delta_hedge_first": True})
    plan = plan_liquidation(pf("BTC", [(f"BTC-{expiry_code(30)}-72000-P", -15)], {"BTC": 0.9}),
                            MARKET, model, params)
    assert plan.steps
    assert plan.steps[0].trades[0][0] == "BTC-PERPETUAL"
    check_plan(plan, model)


def test_bankrupt_account_is_closed_out_pays_no_penalty_and_states_its_deficit():
    model = MODELS["deribit-sm"]
    plan = plan_liquidation(pf("BTC", [("BTC-PERPETUAL", -300)], {"BTC": 0.01}),
                            make_market(index={"BTC": 90000.0, "ETH": 2500.0}), model)
    assert plan.steps
    assert not [p for p in plan.final.positions if p.quantity != 0]
    # short 300 BTC perpetuals (27 M USD) on 0.01 BTC: closing them costs more than the
    # account has, so it ends bankrupt and pays no penalty (nothing is left to pay it with)
    assert plan.total_slippage > plan.before_equity
    assert all(s.penalty == 0.0 for s in plan.steps)
    final = plan.steps[-1].equity
    assert final < 0
    assert plan.deficit == pytest.approx(-final)
    assert plan.deficit_covered_by == "insurance fund, then ADL or socialised loss"
    assert plan.conservation_error == Decimal(0)


def test_penalty_is_capped_at_what_the_account_still_has():
    # A short call on an account with 0.05 BTC of equity: the penalty, 0.75 % of the notional
    # traded, is cut to what the account has left after the execution cost, so the account
    # ends at zero instead of being pushed into bankruptcy by the penalty.
    model = MODELS["deribit-sm"]
    name = f"BTC-{expiry_code(30)}-72000-C"
    probe = model.margin_figures(pf("BTC", [(name, -10)], {"BTC": 0.0}), MARKET)
    cash = -float(probe.equity[0]) + 0.05
    plan = plan_liquidation(pf("BTC", [(name, -10)], {"BTC": cash}), MARKET, model)
    assert plan.needed
    assert plan.steps
    eq = plan.before_equity
    assert eq == pytest.approx(0.05)
    capped = 0
    for s in plan.steps:
        dq = sum(abs(q) for _, q, _ in s.trades)
        raw = (load_planner_params().penalty_rate * dq * MARKET.index_price("BTC")
               / MARKET.collateral_price("BTC"))
        assert s.penalty == pytest.approx(min(raw, max(0.0, eq - s.slippage)), abs=1e-15)
        capped += s.penalty < raw
        assert s.equity >= -1e-15 or s.slippage > eq
        eq = s.equity
    assert capped  # the cap did bind


def test_no_liquidation_at_or_above_maintenance_margin():
    # Equity 2 % above MM but below the planner's target MM x 1.05: the account is not in
    # liquidation, so the planner does nothing (the buffer is where a plan stops, not a
    # reason to start one).
    model = MODELS["deribit-pm"]
    name = f"BTC-{expiry_code(30)}-80000-P"
    probe = model.margin_figures(pf("BTC", [(name, -5)], {"BTC": 0.0}), MARKET)
    mm, eq = float(probe.maintenance_margin[0]), float(probe.equity[0])
    cash = 1.02 * mm - eq
    portfolio = pf("BTC", [(name, -5)], {"BTC": cash})
    plan = plan_liquidation(portfolio, MARKET, model)
    assert plan.before_maintenance_margin <= plan.before_equity < plan.before_target
    assert not plan.needed
    assert not plan.steps
    assert plan.healthy
    assert plan.final.net_positions() == portfolio.net_positions()


LONG_ONLY = [(preset, f"BTC-{expiry_code(d)}-{k}-{cp}") for preset in
             ("deribit-pm", "deribit-sm", "pmargin", "okx-pm", "span")
             for d in (7, 30) for k in (72000, 80000, 88000) for cp in "CP"]


def test_fully_paid_long_options_are_never_liquidated():
    # Long options paid in full (no cash, no borrowing): the loss is bounded by the premium, so
    # MM never exceeds the equity (the models' long-only bound) and the account is never
    # liquidated -- also where MM equals the premium, just below the planner's target.
    checked = 0
    for preset, name in LONG_ONLY:
        model = load_model(preset)
        portfolio = pf("BTC", [(name, 2.0)], {})
        plan = plan_liquidation(portfolio, MARKET, model)
        if plan.before_equity < plan.before_maintenance_margin:
            continue  # the margin side of the long-only bound (models), not the planner's
        checked += 1
        assert not plan.steps, (preset, name)
        assert plan.final.net_positions() == portfolio.net_positions()
    assert checked >= len(LONG_ONLY) // 2


def test_book_plan_equals_each_account_planned_alone():
    # planning the whole book in one vectorised pass gives each account the plan it gets alone
    model = MODELS["deribit-pm"]
    shocked = MARKET.bumped({"BTC": -0.3})
    book = generate_book(MARKET, chain_universe(MARKET, "BTC"), 30, seed=11,
                         archetypes=Archetypes(mm_options=(5, 12)))
    bp = plan_book(book, shocked, model)
    assert bp.needed.sum() >= 3  # several accounts are liquidated together
    for r in range(book.n_accounts):
        alone = plan_liquidation(book.portfolio(r), shocked, model)
        assert alone.needed == bool(bp.needed[r])
        assert len(alone.steps) == int(np.sum(bp.step_account == r))
        final_eq = alone.steps[-1].equity if alone.steps else alone.before_equity
        assert bp.equity[r] == pytest.approx(final_eq, rel=1e-9, abs=1e-12)
        assert bp.penalty[r] == pytest.approx(alone.total_penalty, rel=1e-9, abs=1e-15)
        assert bp.book.portfolio(r).net_positions() == pytest.approx(
            alone.final.net_positions(), rel=1e-12, abs=1e-12)
