"""Auction price schedule and Derive's sizing formulas, with reserved cash (hand calculations)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from pmargin.errors import InvalidInput
from pmargin.liquidation import (
    buffer_margin,
    discount_at,
    discount_curve,
    insolvent_bid_price,
    max_liquidation_fraction,
    solvent_bid_price,
)

D = Decimal
MIN = 60
HOUR = 3600


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0, D("0.95")),
        (15 * MIN, D("0.70")),
        (15 * MIN + 6 * HOUR, D("0.35")),  # half-way through the slow phase: 0.70 / 2
        (12 * HOUR + 15 * MIN, D(0)),
        (13 * HOUR, D(0)),
        (450, D("0.825")),  # half-way through the fast phase: (0.95 + 0.70) / 2
        (D("7.5") * MIN, D("0.825")),
        (900.0, D("0.70")),
    ],
)
def test_discount_at_key_times(t: int | Decimal | float, expected: Decimal) -> None:
    assert discount_at(t) == expected


def test_discount_curve_matches_scalar_schedule() -> None:
    times = np.array([0, 100, 450, 899, 900, 901, 10_000, 22_500, 44_099, 44_100, 50_000.0])
    expected = [float(discount_at(float(t))) for t in times]
    np.testing.assert_allclose(discount_curve(times), expected, rtol=0, atol=1e-15)
    with pytest.raises(InvalidInput):
        discount_curve([-1.0])
    with pytest.raises(InvalidInput):
        discount_at(-1)


# ----------------------------------------------------------------------------- insolvent price
def test_insolvent_price_runs_from_zero_to_minus_mm() -> None:
    # MtM = 0, MM = 20: 0 at the start, -10 half-way (30 min), -20 at 60 min and after
    prices = [
        insolvent_bid_price(t, mark_to_market=D(0), maintenance_margin=D(20))
        for t in (0, 30 * MIN, 60 * MIN, 2 * HOUR)
    ]
    assert prices == [D(0), D(-10), D(-20), D(-20)]


def test_insolvent_price_starts_at_the_bankruptcy_amount() -> None:
    # MtM = -50, MM = 20: the fund pays 50 at once, then up to 50 + 20 = 70
    assert insolvent_bid_price(0, mark_to_market=D(-50), maintenance_margin=D(20)) == D(-50)
    assert insolvent_bid_price(HOUR, mark_to_market=D(-50), maintenance_margin=D(20)) == D(-70)


def test_buffer_margin_and_max_fraction() -> None:
    # MtM 180, MM 200: B = 180 - 1.15 x 200 = -50; at d = 1, f = 50 / (50 + 180) = 50/230
    assert buffer_margin(D(180), D(200)) == D(-50)
    assert max_liquidation_fraction(D(180), D(-50), D(1)) == D(50) / D(230)
    assert max_liquidation_fraction(D(180), D(1), D(1)) == 0
    assert max_liquidation_fraction(D(180), D(-50), D(0)) == 1


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
