"""Takeover and Dutch auction of whole-account slices."""

import pytest

from pmargin.liquidation.auction_params import load_auction_params
from pmargin.liquidation.execution import auction_account, takeover_account
from pmargin.models import load_model
from pmargin.portfolio import Portfolio, Position
from tests.factories import expiry_code, make_market, pf

MARKET = make_market()
MODEL = load_model("deribit-pm")
WEAK = pf("BTC", [(f"BTC-{expiry_code(30)}-80000-C", -5), (f"BTC-{expiry_code(30)}-80000-P", -5)],
          {"BTC": 1.0})


def test_takeover_takes_the_smallest_slice_that_restores_health():
    out = takeover_account(WEAK, MARKET, MODEL)
    assert out.conservation_error == 0
    f = out.fraction_sold
    assert 0 < f < 1
    cost = float(load_auction_params().takeover.discount
                 + load_auction_params().takeover.insurance_fee_rate) * abs(out.positions_value)

    def remaining(frac):
        return Portfolio("BTC", tuple(Position(p.instrument, p.quantity * (1 - frac))
                                      for p in WEAK.positions), dict(WEAK.collateral))

    after = MODEL.margin(remaining(f), MARKET)
    assert out.equity - f * cost >= 1.05 * after.maintenance_margin - 1e-9
    less = MODEL.margin(remaining(f - 1e-3), MARKET)
    assert out.equity - (f - 1e-3) * cost < 1.05 * less.maintenance_margin


def test_auction_sells_slices_and_conserves_money():
    out = auction_account(WEAK, MARKET, MODEL)
    assert out.conservation_error == 0
    assert out.auction is not None
    assert out.auction.fills
    assert float(sum(x.fraction for x in out.auction.fills)) == pytest.approx(out.fraction_sold)
