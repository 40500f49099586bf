"""Properties of the surgical liquidation planner."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmargin.instruments import parse_instrument
from pmargin.liquidation.planner import load_planner_params, plan_liquidation
from pmargin.models import load_model
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
    # never increases maintenance margin, step after step
    mm = plan.before_maintenance_margin
    for s in plan.steps:
        assert s.maintenance_margin <= mm * (1 + 1e-9) + 1e-12
        mm = s.maintenance_margin
    left = [p for p in plan.final.positions if p.quantity != 0]
    assert plan.healthy or not left
    assert not plan.stuck
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


def test_bankrupt_account_is_closed_out():
    model = MODELS["deribit-sm"]
    plan = plan_liquidation(pf("BTC", [("BTC-PERPETUAL", -300)], {"BTC": 0.01}),
                            make_market(index={"BTC": 90000.0, "ETH": 2500.0}), model)
    assert not [p for p in plan.final.positions if p.quantity != 0]
