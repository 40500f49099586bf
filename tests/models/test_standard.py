import numpy as np
import pytest

from pmargin.models import load_model
from tests.factories import expiry_code, make_market, pf

E30 = expiry_code(30)


@pytest.fixture(scope="module")
def market():
    return make_market()


def test_short_call_inverse_rule(market):
    name = f"BTC-{E30}-90000-C"
    res = load_model("deribit-sm").margin(pf("BTC", [(name, -2)]), market)
    inst_mark = res.by_position.loc[name, "mark_usd"]
    f = 80000.0
    m = inst_mark / f
    otm = 90000 - f
    # IM = max(0.15 - OTM/S, 0.10) + mark ; MM = 0.075 + mark, per contract, times 2
    assert res.initial_margin == pytest.approx(2 * (max(0.15 - otm / f, 0.10) + m), rel=1e-12)
    assert res.maintenance_margin == pytest.approx(2 * (0.075 + m), rel=1e-12)


def test_short_put_linear_floor_is_mm(market):
    name = f"BTC_USDC-{E30}-60000-P"
    res = load_model("linear-sm").margin(pf("USDC", [(name, -1)]), market)
    f = 80000.0
    mark = res.by_position.loc[name, "mark_usd"]
    mm = max(0.075 * f, 0.075 * mark) + mark
    im = max(max(0.15 * f - (f - 60000), 0.10 * f) + mark, mm)
    assert res.maintenance_margin == pytest.approx(mm, rel=1e-12)
    assert res.initial_margin == pytest.approx(im, rel=1e-12)


def test_futures_size_dependent_rate(market):
    res = load_model("deribit-sm").margin(pf("BTC", [("BTC-PERPETUAL", -100)]), market)
    # IM% = 2% + 100 x 0.005% = 2.5% of 100 BTC; MM% = 1% + 0.5%
    assert res.initial_margin == pytest.approx(2.5, rel=1e-12)
    assert res.maintenance_margin == pytest.approx(1.5, rel=1e-12)


def test_long_option_im_is_its_value_and_mm_zero(market):
    name = f"BTC-{E30}-80000-C"
    res = load_model("deribit-sm").margin(pf("BTC", [(name, 3)], {"BTC": 1.0}), market)
    assert res.initial_margin == pytest.approx(res.by_position.loc[name, "value"], rel=1e-12)
    assert res.maintenance_margin == 0.0
    assert res.equity == pytest.approx(1.0 + res.by_position.loc[name, "value"], rel=1e-12)


def test_cross_is_sum_of_positions_and_orders_take_worse_side(market):
    a, b = f"BTC-{E30}-90000-C", f"BTC-{E30}-70000-P"
    m = load_model("deribit-sm")
    both = m.margin(pf("BTC", [(a, -1), (b, -1)]), market)
    ra = m.margin(pf("BTC", [(a, -1)]), market)
    rb = m.margin(pf("BTC", [(b, -1)]), market)
    assert both.initial_margin == pytest.approx(ra.initial_margin + rb.initial_margin, rel=1e-12)
    orders = [{"instrument": a, "side": "sell", "quantity": 1, "price": 1.0,
               "price_unit": "USD"},
              {"instrument": b, "side": "buy", "quantity": 1, "price": 1.0,
               "price_unit": "USD"}]
    with_orders = m.margin(pf("BTC", [(a, -1), (b, -1)], orders=orders), market)
    assert with_orders.components["open_orders"] > 0
    assert with_orders.maintenance_margin == both.maintenance_margin


def test_coin_account_rejects_foreign_instruments(market):
    with pytest.raises(Exception, match="BTC_USDC-PERPETUAL"):
        load_model("deribit-sm").margin(pf("BTC", [("BTC_USDC-PERPETUAL", 1)]), market)


def test_collateral_haircut_added_to_requirement(market):
    res = load_model("linear-sm").margin(pf("USDC", [], {"BTC": 2.0, "USDC": 100.0}), market)
    assert res.equity == pytest.approx(2 * 80000 + 100)
    assert res.initial_margin == pytest.approx(0.05 * 160000)
    assert res.maintenance_margin == pytest.approx(0.03 * 160000)
    assert np.isfinite(res.margin_ratio)
