"""Unit and property tests of the PMRM_2 computation (pmargin.models.derive.pm2) and its
parameters (pmargin.models.derive.params)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmargin.conformance.derive import is_derive_case, load_derive_case, run_derive_case
from pmargin.errors import InvalidInput, ParamsError
from pmargin.models.derive.params import DerivePM2Params, DeriveScenario, load_derive_pm2_params
from pmargin.models.derive.pm2 import (
    DeriveCollateral,
    DeriveExpiryFeed,
    DeriveOption,
    DerivePerp,
    DerivePM2Inputs,
    compute_derive_pm2,
    forward_portions,
    static_discounts,
)
from tests.conftest import SHARED

P0 = load_derive_pm2_params()

# TV-07 (methodologies.md): test_20_structures_basic_put, one short put.
TV07_SPOT = 95_663.50604855
TV07_FEED = DeriveExpiryFeed(expiry_seconds=1_399_652, forward=95_923.63240250274,
                             rate=0.16999999999999998)
TV07_PUT = DeriveOption(expiry_seconds=1_399_652, strike=100_000.0, is_call=False, amount=-1.0,
                        mark_vol=0.4547630768795904)


def tv07_inputs() -> DerivePM2Inputs:
    return DerivePM2Inputs(spot=TV07_SPOT, options=(TV07_PUT,), feeds=(TV07_FEED,),
                           stable_price=1.00019088635)


# ----------------------------------------------------------------------------- parameters
def test_preset_loads_with_p0_shape():
    assert P0.name == "derive-pm2"
    assert "7736900d" in P0.source
    kinds = [s.kind for s in P0.scenarios]
    assert kinds.count("regular") == 23
    assert kinds.count("tail") == 6
    assert kinds.count("skew") == 2
    assert P0.vol_shock.min_vol_eval_shocked == 0.45
    assert P0.margin.base_static_discount_neg == 1.04
    tails = [s.dampening for s in P0.scenarios if s.kind == "tail"]
    moves = [abs(s.spot_shock - 1) for s in P0.scenarios if s.kind == "tail"]
    assert tails == pytest.approx([0.2 * 0.18 / m for m in moves], rel=1e-12)


@pytest.mark.data
def test_preset_matches_a_p0_case_file():
    path = SHARED / "conformance" / "derive-pm2" / "test_20_structures_basic_put.json"
    if not path.exists():
        pytest.skip("shared Derive cases not found")
    _, params, _ = load_derive_case(path)
    assert params.vol_shock == P0.vol_shock
    assert params.skew_shock == P0.skew_shock
    assert params.margin == P0.margin
    assert params.basis_contingency == P0.basis_contingency
    assert params.other_contingency.model_dump() == pytest.approx(
        P0.other_contingency.model_dump(), rel=1e-12)
    assert len(params.scenarios) == len(P0.scenarios)
    for a, b in zip(params.scenarios, P0.scenarios, strict=True):
        assert (a.vol_shock, a.kind) == (b.vol_shock, b.kind)
        assert a.spot_shock == pytest.approx(b.spot_shock, rel=1e-14)
        assert a.dampening == pytest.approx(b.dampening, rel=1e-14)


def test_overrides_dotted_and_nested():
    p = load_derive_pm2_params(overrides={"margin.mm_loss_factor": 0.75,
                                          "other_contingency": {"conf_threshold": 0.6}})
    assert p.margin.mm_loss_factor == 0.75
    assert p.other_contingency.conf_threshold == 0.6
    assert p.margin.im_loss_factor == P0.margin.im_loss_factor


def test_bad_parameters_name_the_field(tmp_path: Path):
    with pytest.raises(ParamsError, match="mm_loss_factor"):
        load_derive_pm2_params(overrides={"margin.mm_loss_factor": -1.0})
    with pytest.raises(ParamsError, match="mm_los_factor"):
        load_derive_pm2_params(overrides={"margin.mm_los_factor": 0.8})
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ParamsError, match="TOML"):
        load_derive_pm2_params(bad)
    with pytest.raises(ParamsError):
        load_derive_pm2_params(tmp_path / "missing.toml")


def test_scenario_accepts_case_file_names_and_infers_family():
    s = DeriveScenario.model_validate({"SpotShock": 1, "VolShockDirection": "LINEAR",
                                       "DampeningFactor": 1.0})
    assert (s.vol_shock, s.kind) == ("linear", "skew")
    t = DeriveScenario.model_validate({"SpotShock": 0.34, "VolShockDirection": "Up",
                                       "DampeningFactor": 0.05})
    assert t.kind == "tail"
    with pytest.raises(ValueError, match="does not match"):
        DeriveScenario(spot_shock=1.0, vol_shock="up", dampening=1.0, kind="skew")


def test_params_are_frozen():
    with pytest.raises(ValueError, match="frozen"):
        P0.margin.mm_loss_factor = 0.5  # type: ignore[misc]


# ----------------------------------------------------------------------------- building blocks
def test_forward_portions_inside_and_outside_settlement_window():
    fixed, var = forward_portions(np.array([100.0, 100.0, 100.0, 100.0]),
                                  np.array([0.0, 900.0, 1800.0, 86400.0]))
    assert fixed == pytest.approx([100.0, 50.0, 0.0, 0.0])
    assert var == pytest.approx([0.0, 50.0, 100.0, 100.0])


def test_static_discounts_tv07_and_expired():
    tau = np.array([1_399_652 / (365 * 86400), 0.0])
    pos, neg = static_discounts(tau, np.array([0.17, 0.17]), P0.margin)
    assert pos[0] == pytest.approx(0.939517378372809, rel=1e-12)
    assert neg[0] == pytest.approx(1.0075735901873772, rel=1e-12)
    assert (pos[1], neg[1]) == (1.0, 1.0)
    # negative rates are floored at 0: neg discount capped at exp(0) = 1
    _, neg_r = static_discounts(np.array([0.6]), np.array([-1.2]), P0.margin)
    assert neg_r[0] == 1.0


# ----------------------------------------------------------------------------- TV-07
def test_tv07_single_short_put():
    res = compute_derive_pm2(tv07_inputs(), P0)
    assert res.vol_shock_up_multiplier[0] == pytest.approx(1.601526, abs=1e-6)
    assert res.vol_shock_down_multiplier[0] == pytest.approx(0.669161, abs=1e-6)
    assert res.vol_shock_up_evaluated[0] == pytest.approx(0.728315, abs=1e-6)
    assert res.discount_pos[0] == pytest.approx(0.939517, abs=1e-6)
    assert res.discount_neg[0] == pytest.approx(1.007574, abs=1e-6)
    assert res.option_mtm == pytest.approx(-6082.239829, abs=1e-6)
    assert res.worst_reg_loss == pytest.approx(-15603.263080, abs=1e-6)
    assert res.worst_reg_scenario is not None
    assert res.worst_reg_scenario.spot_shock == pytest.approx(0.82)
    assert res.worst_reg_scenario.vol_shock == "up"
    assert res.worst_tail_loss == pytest.approx(-3343.84, abs=5e-3)
    assert res.worst_skew_loss == pytest.approx(-86.59, abs=5e-3)
    assert res.forward_contingency == pytest.approx(-1846.45, abs=5e-3)
    assert res.mm_option_cont == pytest.approx(-286.9905, abs=1e-4)
    assert res.mm_option_cont + res.im_option_cont == pytest.approx(-478.3175, abs=1e-4)
    assert res.worst_all_scenarios == "regular"
    assert res.mm == pytest.approx(-18_851.840812, abs=1e-6)
    assert res.im == pytest.approx(-22_163.820440, abs=1e-6)
    # pmargin's convention (TV-07 "requirement beyond MtM"): MM 12,769.60, IM 16,081.58 USD
    assert res.maintenance_margin == pytest.approx(12_769.60, abs=5e-3)
    assert res.initial_margin == pytest.approx(16_081.58, abs=5e-3)
    # (1.0, None) is not zero: the static discount applies to the shocked MtM
    i = next(j for j, s in enumerate(P0.scenarios) if s.spot_shock == 1.0 and s.vol_shock == "none")
    assert res.scenario_pnl[i] == pytest.approx(
        res.option_mtm_per_expiry_discounted[0] - res.option_mtm, rel=1e-12)


def test_identities_im_mm():
    res = compute_derive_pm2(tv07_inputs(), P0)
    assert res.mm == pytest.approx(
        res.portfolio_mtm + res.worst_loss * res.mm_loss_factor + res.mm_contingency, rel=1e-14)
    assert res.im == pytest.approx(
        res.portfolio_mtm + res.worst_loss * res.im_loss_factor + res.mm_contingency
        + res.im_contingency, rel=1e-14)
    # the requirements are the same terms without the MtM
    assert res.initial_margin == pytest.approx(res.portfolio_mtm - res.im, rel=1e-12)
    assert res.maintenance_margin == pytest.approx(res.portfolio_mtm - res.mm, rel=1e-12)


# ----------------------------------------------------------------------------- contingencies
FEEDS = (
    DeriveExpiryFeed(expiry_seconds=7 * 86400, forward=3000.0, rate=0.05),
    DeriveExpiryFeed(expiry_seconds=40 * 86400, forward=3010.0, rate=0.08),
)


def opt(exp: int, k: float, call: bool, q: float, vol: float = 0.7) -> DeriveOption:
    return DeriveOption(expiry_seconds=FEEDS[exp].expiry_seconds, strike=k, is_call=call,
                        amount=q, mark_vol=vol)


def test_naked_shorts_net_per_expiry_and_strike_across_calls_and_puts():
    base = dict(spot=3000.0, feeds=FEEDS)
    r = compute_derive_pm2(DerivePM2Inputs(options=(opt(0, 3000, True, -2), opt(0, 3000, False, 1)),
                                           **base), P0)  # type: ignore[arg-type]
    assert r.mm_option_cont == pytest.approx(-0.003 * 3000 * 1)
    assert r.im_option_cont == pytest.approx(-0.002 * 3000 * 1)
    # same strike in another expiry does not net
    r = compute_derive_pm2(DerivePM2Inputs(options=(opt(0, 3000, True, -2), opt(1, 3000, False, 2)),
                                           **base), P0)  # type: ignore[arg-type]
    assert r.mm_option_cont == pytest.approx(-0.003 * 3000 * 2)
    # both short at one strike add up; longs alone carry nothing
    r = compute_derive_pm2(DerivePM2Inputs(options=(opt(0, 3000, True, -2), opt(0, 3000, False, -1),
                                                    opt(1, 2500, True, 5)), **base), P0)  # type: ignore[arg-type]
    assert r.mm_option_cont == pytest.approx(-0.003 * 3000 * 3)


def test_perp_scenario_uses_perp_price_and_contingency_uses_spot():
    inputs = DerivePM2Inputs(spot=3000.0, perp=DerivePerp(amount=1.0, price=3100.0,
                                                          unrealised_funding=10.0))
    r = compute_derive_pm2(inputs, P0)
    assert r.worst_reg_loss == pytest.approx(-0.18 * 3100, rel=1e-12)
    assert r.mm_perp_cont == pytest.approx(-45.0)
    assert r.im_perp_cont == pytest.approx(-15.0)
    assert r.portfolio_mtm == pytest.approx(10.0)
    assert r.im == pytest.approx(10.0 - 558.0 - 60.0, rel=1e-12)
    assert r.mm == pytest.approx(10.0 - 0.8 * 558.0 - 45.0, rel=1e-12)
    assert r.initial_margin == pytest.approx(558.0 + 60.0, rel=1e-12)
    assert r.maintenance_margin == pytest.approx(0.8 * 558.0 + 45.0, rel=1e-12)


def test_oracle_confidence_contingency():
    coll = (DeriveCollateral(amount=1.0, price=100.0, confidence=1.0),
            DeriveCollateral(amount=1.0, price=100.0, confidence=0.1))
    inputs = DerivePM2Inputs(spot=1000.0, spot_confidence=0.5, collaterals=coll,
                             perp=DerivePerp(amount=-1.0, price=1000.0, confidence=0.3),
                             options=(opt(0, 3000, True, -2),), feeds=FEEDS)
    r = compute_derive_pm2(inputs, P0)
    # collateral: min(own, spot) -> 0.5 and 0.1; perp: min(spot, perp) = 0.3 on |1| x spot;
    # expiry: min(spot, perp, forward, rate, vol) = 0.3 on 2 x spot
    expected = 0.5 * 100 + 0.9 * 100 + 0.7 * 1000 + 0.7 * 2000
    assert r.oracle_cont == pytest.approx(-expected)
    # above the threshold nothing is charged
    calm = replace(inputs, spot_confidence=1.0, perp=replace(inputs.perp, confidence=1.0),  # type: ignore[arg-type]
                   collaterals=(coll[0],))
    assert compute_derive_pm2(calm, P0).oracle_cont == 0.0


def test_peg_loss_raises_only_the_im_factor():
    inputs = DerivePM2Inputs(spot=2000.0, stable_price=0.1, cash=-3000.0,
                             collaterals=(DeriveCollateral(amount=1.0, price=2000.0,
                                                           is_risk_cancelling=True),))
    r = compute_derive_pm2(inputs, P0)
    assert r.im_loss_factor == pytest.approx(1.0 + 2.0 * (0.98 - 0.1))
    assert r.mm_loss_factor == 0.8
    assert r.collateral_mtm == pytest.approx(20_000.0)
    assert r.worst_reg_loss == pytest.approx(-0.18 * 20_000.0)


def test_cash_only_account():
    r = compute_derive_pm2(DerivePM2Inputs(spot=2681.6, cash=1000.0, stable_price=0.52), P0)
    assert (r.im, r.mm) == (1000.0, 1000.0)
    assert (r.initial_margin, r.maintenance_margin) == (0.0, 0.0)
    assert r.worst_all_scenarios == "regular"


def test_near_expiry_only_variable_forward_is_shocked():
    feed = DeriveExpiryFeed(expiry_seconds=900, forward=2000.0)
    call = DeriveOption(expiry_seconds=900, strike=1900.0, is_call=True, amount=1.0, mark_vol=0.5)
    r = compute_derive_pm2(DerivePM2Inputs(spot=2000.0, options=(call,), feeds=(feed,)), P0)
    up = next(j for j, s in enumerate(P0.scenarios) if s.spot_shock == 1.18)
    # half the forward is fixed: the 1.18 shock moves F to 2000 (0.5 + 0.5 x 1.18) = 2180
    shocked = (r.scenario_pnl[up] + r.option_mtm) / r.discount_pos[0]
    assert shocked == pytest.approx(280.0, rel=1e-9)  # 460 if the whole forward moved


def test_expired_option_is_intrinsic_and_undiscounted():
    feed = DeriveExpiryFeed(expiry_seconds=0, forward=2000.0, rate=0.1)
    call = DeriveOption(expiry_seconds=0, strike=1900.0, is_call=True, amount=1.0, mark_vol=0.5)
    r = compute_derive_pm2(DerivePM2Inputs(spot=2000.0, options=(call,), feeds=(feed,)), P0)
    assert r.option_mtm == pytest.approx(100.0)
    assert (r.discount_pos[0], r.discount_neg[0]) == (1.0, 1.0)
    assert np.allclose(r.scenario_pnl, 0.0)
    assert r.forward_contingency == 0.0


def test_invalid_inputs_name_the_field():
    # shared validation helpers: text and booleans are refused with the field named (the
    # private copies raised TypeError on text and accepted True as 1)
    with pytest.raises(InvalidInput, match=r"option\.strike"):
        DeriveOption(expiry_seconds=10, strike="100", is_call=True, amount=1.0,  # type: ignore[arg-type]
                     mark_vol=0.5)
    with pytest.raises(InvalidInput, match=r"option\.amount"):
        DeriveOption(expiry_seconds=10, strike=100.0, is_call=True, amount=True, mark_vol=0.5)
    with pytest.raises(InvalidInput, match=r"feed\.rate_confidence"):
        DeriveExpiryFeed(expiry_seconds=10, forward=100.0, rate_confidence=float("nan"))
    with pytest.raises(InvalidInput, match="strike"):
        DeriveOption(expiry_seconds=10, strike=-1.0, is_call=True, amount=1.0, mark_vol=0.5)
    with pytest.raises(InvalidInput, match="has no feed"):
        DerivePM2Inputs(spot=1.0, options=(opt(0, 3000, True, 1),))
    with pytest.raises(InvalidInput, match="spot_confidence"):
        DerivePM2Inputs(spot=1.0, spot_confidence=1.5)
    with pytest.raises(InvalidInput, match="unique"):
        DerivePM2Inputs(spot=1.0, feeds=(FEEDS[0], FEEDS[0]))


# ----------------------------------------------------------------------------- properties
option_st = st.tuples(
    st.integers(0, 1),
    st.sampled_from([2000.0, 2600.0, 3000.0, 3400.0, 4500.0]),
    st.booleans(),
    st.floats(-20, 20).filter(lambda q: abs(q) > 1e-3),
    st.floats(0.2, 1.5),
)


def build(rows: list[tuple[int, float, bool, float, float]], perp: float) -> DerivePM2Inputs:
    return DerivePM2Inputs(
        spot=3000.0, feeds=FEEDS,
        options=tuple(opt(e, k, c, q, v) for e, k, c, q, v in rows),
        perp=DerivePerp(amount=perp, price=3005.0, unrealised_pnl=12.0 * perp),
    )


@given(st.lists(option_st, min_size=1, max_size=6), st.floats(-5, 5),
       st.floats(0.1, 10.0))
def test_requirement_scales_with_position_size(rows, perp, c):
    a = compute_derive_pm2(build(rows, perp), P0)
    b = compute_derive_pm2(build([(e, k, ca, q * c, v) for e, k, ca, q, v in rows], perp * c), P0)
    assert b.initial_margin == pytest.approx(c * a.initial_margin, rel=1e-9, abs=1e-9)
    assert b.maintenance_margin == pytest.approx(c * a.maintenance_margin, rel=1e-9, abs=1e-9)


@given(st.lists(option_st, min_size=1, max_size=6), st.floats(-5, 5))
def test_opposite_portfolio_hedges_completely(rows, perp):
    hedged = [*rows, *[(e, k, ca, -q, v) for e, k, ca, q, v in rows]]
    inputs = DerivePM2Inputs(spot=3000.0, feeds=FEEDS,
                             options=tuple(opt(e, k, c, q, v) for e, k, c, q, v in hedged),
                             perp=DerivePerp(amount=0.0, price=3005.0))
    r = compute_derive_pm2(inputs, P0)
    scale = sum(abs(q) for *_, q, _v in rows) * 3000.0
    assert r.option_mtm == pytest.approx(0.0, abs=1e-12 * scale)
    assert r.im == pytest.approx(0.0, abs=1e-9 * scale)
    assert r.mm == pytest.approx(0.0, abs=1e-9 * scale)
    assert r.initial_margin == pytest.approx(0.0, abs=1e-9 * scale)
    assert r.mm_option_cont == pytest.approx(0.0, abs=1e-12 * scale)


@given(st.lists(option_st, min_size=1, max_size=6))
def test_im_requirement_never_below_mm(rows):
    r = compute_derive_pm2(build(rows, 0.0), P0)
    assert r.im <= r.mm + 1e-9 * (1 + abs(r.mm))
    assert r.initial_margin >= r.maintenance_margin - 1e-9 * (1 + abs(r.mm))
    assert r.maintenance_margin >= 0.0
    assert r.worst_loss <= 0.0
    assert r.forward_contingency <= 0.0


# ----------------------------------------------------------------------------- case loader
def _synthetic_case() -> dict[str, object]:
    params = P0.model_dump(by_alias=True, exclude={"name", "source", "assumptions"})
    for s in params["Scenarios"]:
        s["VolShockDirection"] = {"up": "Up", "down": "Down", "none": "None"}.get(
            s["VolShockDirection"], s["VolShockDirection"].upper())
        del s["kind"]
    res = compute_derive_pm2(tv07_inputs(), P0)
    return {
        "Scenario": {
            "Cash": 0, "Collaterals": [], "SpotPrice": str(TV07_SPOT), "SpotConfidence": 1.0,
            "NumPerps": 0, "PerpPrice": 0, "PerpConfidence": 0, "UnrealisedPerpPNL": 0.0,
            "UnrealisedFunding": 0.0, "StablePrice": "1.00019088635", "StableConfidence": 1.0,
            "Options": [{"Expiry": 1399652, "Strike": "100000.0", "IsCall": 0, "Amount": "-1.0",
                         "MarkVol": "0.4547630768795904"}],
            "OptionFeeds": [{"FeedExpiry": 1399652, "Forward": 95923.63240250274,
                             "ForwardConfidence": 1.0, "Rate": "0.16999999999999998",
                             "RateConfidence": 1.0, "OptionVolConfidences": 0.95}],
        },
        "Parameters": params,
        "Result": {"IM": str(res.im), "MM": res.mm, "PortfolioMTM": res.portfolio_mtm,
                   "reg_losses": [[0, 0, "0"]] * 23, "tail_losses": [[0, 1, "0"]] * 6,
                   "skew_losses": [["LINEAR", "0"], ["ABS", "0"]]},
    }


def test_synthetic_case_with_decimal_strings_round_trips(tmp_path: Path):
    case = _synthetic_case()
    assert is_derive_case(case)
    assert not is_derive_case({"Scenario": {}, "Parameters": {}})
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case))
    inputs, params, exp = load_derive_case(path)
    assert inputs.options[0].strike == 100_000.0
    assert [s.kind for s in params.scenarios] == [s.kind for s in P0.scenarios]
    out = run_derive_case(path)
    assert out.passed, out.detail
    assert out.model == "derive-pm2"
    # pmargin's convention in the outcome: the requirement, computed and expected
    assert out.initial_margin == pytest.approx(16_081.58, abs=5e-3)
    assert out.expected_im == pytest.approx(16_081.58, abs=5e-3)
    assert "Derive native" in out.detail
    assert exp.notes == ()


def test_file_skew_multipliers_are_never_used(tmp_path: Path):
    # 9.6: the runner used the file's linear_multiplier wherever the formula differed
    case = _synthetic_case()
    case["Scenario"]["Options"][0]["linear_multiplier"] = 1.3  # type: ignore[index]
    case["Scenario"]["Options"][0]["abs_multiplier"] = 1.3  # type: ignore[index]
    path = tmp_path / "skew.json"
    path.write_text(json.dumps(case))
    inputs, params, exp = load_derive_case(path)
    assert exp.notes == ()
    res = compute_derive_pm2(inputs, params)
    # the formula's value (hand value of test_skew_multipliers_hand_values), not the file's
    assert res.linear_multiplier[0] == pytest.approx(1.0118974505108735, rel=1e-13)
    assert res.abs_multiplier[0] == pytest.approx(1.0118974505108735, rel=1e-13)
    assert run_derive_case(path).passed


def test_case_passes_only_at_derive_tolerance(tmp_path: Path):
    # 9.6: a 1e-7 relative gap passed at the old 1e-6 rule; Derive's harness allows 1e-8
    case = _synthetic_case()
    im = compute_derive_pm2(tv07_inputs(), P0).im
    for gap, passes in ((1e-7, False), (5e-9, True)):
        case["Result"]["IM"] = repr(im * (1 + gap))  # type: ignore[index]
        path = tmp_path / f"gap{gap}.json"
        path.write_text(json.dumps(case))
        out = run_derive_case(path)
        assert out.passed is passes, out.detail
        if not passes:
            assert "Derive IM" in out.detail


def test_bad_case_input_raises_invalid_input(tmp_path: Path):
    case = _synthetic_case()
    case["Scenario"]["Options"][0]["Strike"] = "abc"  # type: ignore[index]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(case))
    with pytest.raises(InvalidInput, match=r"Options\[0\]\.Strike"):
        load_derive_case(path)
    case = _synthetic_case()
    case["Parameters"]["Margin"]["MM_LOSS_FACTOR"] = -2  # type: ignore[index]
    path.write_text(json.dumps(case))
    with pytest.raises(ParamsError, match=r"MM_LOSS_FACTOR|mm_loss_factor"):
        load_derive_case(path)


def test_params_model_is_exported_type():
    assert isinstance(P0, DerivePM2Params)
