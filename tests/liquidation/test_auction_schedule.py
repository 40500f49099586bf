"""Derive's sizing formulas with reserved cash (hand calculations)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pmargin.errors import InvalidInput
from pmargin.liquidation import buffer_margin, max_liquidation_fraction, solvent_bid_price

D = Decimal


def test_max_fraction_counts_the_reserved_cash() -> None:
    # State after one earlier bid: M = 128.4 (cash 576.4 incl. R = 32.4 paid in by the first
    # bidder, positions -448), MM = 176: B = 128.4 - 1.15 x 176 = -74.
    # f = 74 / (74 + 0.8 x 128.4 + 32.4 x (1 - 0.8)) = 74 / 183.2
    assert buffer_margin(D("128.4"), D(176)) == D(-74)
    f = max_liquidation_fraction(D("128.4"), D(-74), D("0.8"), D("32.4"))
    assert f == D(74) / D("183.2")
    # check by selling f: the slice takes f x (M - R) = f x 96 of value, pays f x 0.8 x 96,
    # the requirement falls to (1 - f) x 176; the buffer margin afterwards is zero
    m_after = D("128.4") - f * 96 + f * D("0.8") * 96
    assert abs(m_after - D("1.15") * (1 - f) * 176) < D("1e-20")
    # without the reserved cash the formula over-sizes the bid (74 / 176.72)
    assert max_liquidation_fraction(D("128.4"), D(-74), D("0.8")) > f


def test_bid_price_excludes_the_reserved_cash() -> None:
    assert solvent_bid_price(D("128.4"), D("0.8"), D("32.4")) == D("76.8")
    assert solvent_bid_price(D(180), D("0.9")) == D("162")
    with pytest.raises(InvalidInput):
        solvent_bid_price(D(180), D("0.9"), D(-1))
    with pytest.raises(InvalidInput):
        max_liquidation_fraction(D(180), D(-50), D(1), D(-1))
