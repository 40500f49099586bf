import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmargin.models import load_model
from pmargin.models.params import load_params
from pmargin.scenarios import tail_weight
from tests.factories import expiry_code, make_market, pf

MARKET = make_market()
NAMES = [f"BTC-{expiry_code(d)}-{k}-{cp}" for d in (7, 30, 90)
         for k in (64000, 72000, 80000, 88000, 96000) for cp in "CP"]
NAMES += ["BTC-PERPETUAL", f"BTC-{expiry_code(30)}", f"BTC-{expiry_code(90)}"]
PRESETS_LINEAR = ["deribit-pm", "paradex-pm", "span"]  # no size-dependent add-ons binding

positions = st.lists(
    st.tuples(st.sampled_from(NAMES), st.floats(-20, 20).filter(lambda x: abs(x) > 1e-3)),
    min_size=1, max_size=8,
)


def margin(preset, pos, coll=None):
    return load_model(preset).margin(pf("BTC", pos, coll), MARKET)


@given(positions, st.floats(0.1, 10.0))
def test_scaling_quantities_scales_margin(pos, c):
    for preset in ("span", "paradex-pm"):
        a = margin(preset, pos)
        b = margin(preset, [(n, q * c) for n, q in pos])
        assert b.initial_margin == pytest.approx(c * a.initial_margin, rel=1e-9, abs=1e-12)
        assert b.maintenance_margin == pytest.approx(c * a.maintenance_margin, rel=1e-9,
                                                     abs=1e-12)


@given(positions)
def test_portfolio_plus_opposite_needs_zero(pos):
    for preset in ("deribit-pm", "pmargin", "okx-pm"):
        res = margin(preset, pos + [(n, -q) for n, q in pos])
        assert res.initial_margin == pytest.approx(0.0, abs=1e-9)
        assert res.maintenance_margin == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
@given(positions, st.floats(0.0, 50.0))
def test_no_nan_and_margin_at_least_worst_loss(pos, coll):
    for preset in ("deribit-pm", "pmargin", "okx-pm", "paradex-pm", "span"):
        res = margin(preset, pos, {"BTC": coll})
        assert np.isfinite(res.initial_margin)
        assert np.isfinite(res.maintenance_margin)
        worst_loss = max(0.0, -res.scenarios["pnl"].min())
        assert res.initial_margin >= worst_loss - 1e-12


@given(positions, st.sampled_from([n for n in NAMES if n.endswith(("-C", "-P"))]),
       st.floats(0.01, 10.0))
@pytest.mark.slow
def test_adding_long_option_raises_worst_loss_by_at_most_its_value(pos, opt, q):
    for preset in ("deribit-pm", "pmargin"):
        a = margin(preset, pos)
        b = margin(preset, [*pos, (opt, q)])
        value = q * MARKET.mark_price(__import__("pmargin").instruments.parse_instrument(opt)) \
            / MARKET.forward("BTC", __import__("pmargin").instruments.parse_instrument(opt).expiry)
        wa = a.components["worst_case"]
        wb = b.components["worst_case"]
        assert wb <= wa + value * (1 + 1e-9) + 1e-12


def test_hedged_call_spread_needs_less_than_naked_call():
    k1, k2 = NAMES[4], NAMES[6]  # 7-day 72000 C and 80000 C
    naked = margin("deribit-pm", [(k1, -1)])
    spread = margin("deribit-pm", [(k1, -1), (k2, 1)])
    assert spread.initial_margin < naked.initial_margin


def test_scenario_table_and_worst_match():
    res = margin("deribit-pm", [(NAMES[5], -3), ("BTC-PERPETUAL", 1)])
    assert len(res.scenarios) == 27 + 8
    w = res.worst_scenario["BTC"]
    assert w["pnl"] == pytest.approx(res.scenarios["pnl"].min())
    assert res.components["worst_case"] == pytest.approx(-w["pnl"])
    # contributions of the positions at the worst scenario add up to its (undampened) P&L
    if not w["extended"]:
        assert res.by_position["pnl_at_worst"].sum() == pytest.approx(w["pnl"], rel=1e-9)


def test_paradex_tail_weights_are_range_over_move():
    p = load_params("paradex-pm")
    moves = np.array(p.for_underlying("BTC").grid.extended.moves)
    w = tail_weight(moves, 0.16)
    assert np.allclose(w * 100, [24.2424, 48.4848, 32, 16, 8, 5.3333, 4, 3.2], atol=1e-4)


def test_mm_is_factor_of_im_for_deribit():
    res = margin("deribit-pm", [(NAMES[7], -5)])
    assert res.maintenance_margin == pytest.approx(0.8 * res.initial_margin, rel=1e-12)
    okx = margin("okx-pm", [(NAMES[7], -5)])
    assert okx.initial_margin == pytest.approx(1.3 * okx.maintenance_margin, rel=1e-12)


def test_skew_scenarios_reprice_with_the_wing_rotation():
    from pmargin.instruments import parse_instrument
    from pmargin.pricing import black76
    from pmargin.scenarios import skew_multipliers

    name = f"BTC-{expiry_code(30)}-96000-C"
    res = margin("pmargin", [(name, -1)])
    row = res.scenarios[res.scenarios["vol_shock"] == "skew linear"].iloc[0]
    inst = parse_instrument(name)
    f = MARKET.forward("BTC", inst.expiry)
    tau = MARKET.tau(inst.expiry)
    vol = MARKET.implied_vol("BTC", inst.expiry, inst.strike)
    skew = load_params("pmargin").for_underlying("BTC").grid.skew
    lin, _ = skew_multipliers(np.array([tau]), np.log(np.array([inst.strike / f])), skew)
    assert lin[0] > 1.0  # an out-of-the-money call's vol goes up in the LINEAR rotation
    c0 = black76.price(f, inst.strike, tau, vol, True)
    c1 = black76.price(f, inst.strike, tau, vol * lin[0], True)
    assert row["pnl"] == pytest.approx(-(c1 - c0) / f, rel=1e-9)


def test_stablecoin_depeg_charges_foreign_stable_collateral_only():
    res = load_model("pmargin").margin(pf("USDC", [], {"USDT": 1000.0, "USDC": 500.0}), MARKET)
    assert res.components["stable_depeg"] == pytest.approx(0.02 * 1000.0)
    # haircut (1 % IM) and de-peg (2 %) on USDT; nothing on the margin currency itself
    assert res.initial_margin == pytest.approx(0.01 * 1000.0 + 0.02 * 1000.0)
    none = load_model("deribit-pm").margin(pf("USDC", [], {"USDT": 1000.0}), MARKET)
    assert none.components["stable_depeg"] == 0.0


@pytest.mark.parametrize("preset", ["deribit-pm", "deribit-sm", "pmargin"])
def test_margin_figures_equal_the_explained_margin(preset):
    p = pf("BTC", [(NAMES[3], -2), (NAMES[8], 1.5), ("BTC-PERPETUAL", 0.4)], {"BTC": 1.0})
    model = load_model(preset)
    full = model.margin(p, MARKET)
    quick = model.margin_figures(p, MARKET)
    assert quick.initial_margin[0] == pytest.approx(full.initial_margin, rel=1e-12)
    assert quick.maintenance_margin[0] == pytest.approx(full.maintenance_margin, rel=1e-12)
    assert quick.equity[0] == pytest.approx(full.equity, rel=1e-12)
