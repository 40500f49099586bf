"""Shocked markets: spot moves as bumped, vols shifted and twisted by the documented rule."""

import math

import pytest

from pmargin.analytics.shocks import MIN_SHOCKED_VOL, MarketShock, shocked_market
from pmargin.errors import InvalidInput
from pmargin.instruments import parse_instrument
from tests.factories import expiry_code, make_market

MARKET = make_market(linear=False, vol=0.6)
PUT = parse_instrument(f"BTC-{expiry_code(30)}-60000-P")
CALL = parse_instrument(f"BTC-{expiry_code(30)}-96000-C")


def test_vol_shift_and_twist_follow_the_rule():
    shock = MarketShock({"BTC": -0.2}, vol_shift=0.5, skew_twist=-0.3)
    m = shocked_market(MARKET, shock)
    assert m.index_price("BTC") == pytest.approx(0.8 * MARKET.index_price("BTC"))
    for inst in (PUT, CALL):
        f = 0.8 * MARKET.forward("BTC", inst.expiry)
        want = 0.6 * 1.5 - 0.3 * math.log(inst.strike / f)
        assert m.instrument_vol(inst) == pytest.approx(want, rel=1e-9)
    # the put (K < F after the move? 60,000 < 64,000) gains vol from the twist, the call loses
    assert m.instrument_vol(PUT) > 0.9 > m.instrument_vol(CALL)


def test_spot_only_shock_is_bumped_and_empty_shock_is_the_market():
    assert shocked_market(MARKET, MarketShock()) is MARKET
    a = shocked_market(MARKET, MarketShock({"BTC": 0.1}))
    b = MARKET.bumped({"BTC": 0.1})
    assert a.mark_price(CALL) == pytest.approx(b.mark_price(CALL), rel=1e-12)


def test_floor_and_depeg():
    m = shocked_market(MARKET, MarketShock(skew_twist=5.0, collateral_prices={"USDC": 0.9}))
    assert m.instrument_vol(PUT) == pytest.approx(MIN_SHOCKED_VOL)
    assert m.collateral_price("USDC") == pytest.approx(0.9)


def test_bad_shocks_are_named():
    with pytest.raises(InvalidInput, match=r"spot_move\.BTC"):
        MarketShock({"BTC": -1.0})
    with pytest.raises(InvalidInput, match="vol_shift"):
        MarketShock(vol_shift=float("nan"))
    with pytest.raises(InvalidInput, match=r"collateral_prices\.USDC"):
        MarketShock(collateral_prices={"USDC": 0.0})
