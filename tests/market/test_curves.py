"""Forward curve: pillars, log-linear interpolation, flat-basis extrapolation, validation."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmargin.conventions import year_fraction
from pmargin.errors import InvalidInput, MarketDataError
from pmargin.market import ForwardCurve

T0 = datetime(2026, 2, 5, 15, 51, 32, tzinfo=UTC)
E1 = datetime(2026, 2, 13, 8, tzinfo=UTC)
E2 = datetime(2026, 3, 27, 8, tzinfo=UTC)
E3 = datetime(2026, 6, 26, 8, tzinfo=UTC)


@pytest.fixture
def curve() -> ForwardCurve:
    return ForwardCurve("BTC", 68000.0, T0, futures={E1: 68100.0, E3: 69500.0},
                        perpetual=68010.0, option_forwards={E2: 68400.0})


def test_pillars_are_exact_scalar_and_vectorised(curve):
    for e, f in ((E1, 68100.0), (E2, 68400.0), (E3, 69500.0)):
        assert curve.forward(e) == f
    taus = np.array([p.tau for p in curve.pillars])
    assert curve.forwards(taus).tolist() == [68100.0, 68400.0, 69500.0]
    assert [p.source for p in curve.pillars] == ["future", "option", "future"]


def test_perpetual_and_index_defaults(curve):
    assert curve.forward(None) == 68010.0
    assert curve.perpetual_mark == 68010.0
    bare = ForwardCurve("ETH", 2000.0, T0)
    assert bare.forward(None) == 2000.0
    assert bare.forward(E3) == 2000.0
    assert bare.forwards(np.array([0.0, 0.5, 3.0])).tolist() == [2000.0] * 3


def test_tau_at_or_before_zero_is_index(curve):
    assert curve.forwards(np.array([-1.0, 0.0])).tolist() == [68000.0, 68000.0]
    assert curve.forward(T0 - timedelta(days=3)) == 68000.0
    assert math.isnan(curve.forwards(np.array([np.nan]))[0])


def test_log_linear_between_pillars(curve):
    t1 = year_fraction(T0, E1)
    t2 = year_fraction(T0, E2)
    for x in (0.1, 0.5, 0.9):
        t = t1 + x * (t2 - t1)
        expect = math.exp((1 - x) * math.log(68100.0) + x * math.log(68400.0))
        assert curve.forwards(np.array([t]))[0] == pytest.approx(expect, rel=1e-14)
    # Between the index (tau = 0) and the first pillar as well.
    t = 0.5 * t1
    assert curve.forwards(np.array([t]))[0] == pytest.approx(math.sqrt(68000.0 * 68100.0),
                                                             rel=1e-14)


def test_flat_basis_rate_beyond_last_pillar(curve):
    t3 = year_fraction(T0, E3)
    r = math.log(69500.0 / 68000.0) / t3
    assert curve.long_end_rate == pytest.approx(r)
    taus = np.array([t3 * 1.0001, 1.0, 2.5])
    got = curve.forwards(taus)
    np.testing.assert_allclose(np.log(got / 68000.0) / taus, r, rtol=1e-12)
    # Continuous at the last pillar.
    assert curve.forwards(np.array([t3 * (1 + 1e-12)]))[0] == pytest.approx(69500.0, rel=1e-9)


def test_scalar_matches_vectorised_off_pillar(curve):
    e = datetime(2026, 5, 1, 8, tzinfo=UTC)
    assert curve.forward(e) == curve.forwards(np.array([year_fraction(T0, e)]))[0]


def test_futures_have_priority_over_option_forwards():
    c = ForwardCurve("BTC", 100.0, T0, futures={E2: 101.0}, option_forwards={E2: 105.0, E3: 107.0})
    assert c.forward(E2) == 101.0
    assert c.forward(E3) == 107.0


def test_scaled_multiplies_everything(curve):
    s = curve.scaled(1.1)
    assert s.index == pytest.approx(68000.0 * 1.1)
    assert s.forward(None) == pytest.approx(68010.0 * 1.1)
    for e in (E1, E2, E3):
        assert s.forward(e) == pytest.approx(curve.forward(e) * 1.1)
    assert s.long_end_rate == pytest.approx(curve.long_end_rate)
    with pytest.raises(MarketDataError, match="factor"):
        curve.scaled(-1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"index": float("nan")}, r"forward_curve\['BTC'\]\.index.*nan"),
        ({"index": 0.0}, r"forward_curve\['BTC'\]\.index.*must be positive.*0\.0"),
        ({"futures": {E1: -5.0}}, r"futures.*2026-02-13.*must be positive.*-5\.0"),
        ({"option_forwards": {E1: float("inf")}}, r"options.*must be finite.*inf"),
        ({"perpetual": 0.0}, r"perpetual.*must be positive"),
        ({"futures": {T0 - timedelta(hours=1): 100.0}}, r"futures.*not after the valuation time"),
    ],
)
def test_bad_inputs_name_the_field(kwargs, match):
    args = {"underlying": "BTC", "index": 100.0, "valuation_time": T0, **kwargs}
    with pytest.raises(MarketDataError, match=match):
        ForwardCurve(**args)


def test_naive_valuation_time_rejected():
    with pytest.raises(InvalidInput, match="valuation_time"):
        ForwardCurve("BTC", 1.0, datetime(2026, 1, 1))  # noqa: DTZ001


@given(
    spot=st.floats(10.0, 1e5),
    rates=st.lists(st.floats(-0.5, 0.8), min_size=1, max_size=6),
    gaps=st.lists(st.integers(1, 200), min_size=6, max_size=6),
)
def test_interpolated_forwards_stay_between_neighbouring_pillars(spot, rates, gaps):
    expiries, fwds = [], []
    day = T0
    for r, g in zip(rates, gaps, strict=False):
        day = day + timedelta(days=g)
        expiries.append(day)
        fwds.append(spot * math.exp(r * year_fraction(T0, day)))
    c = ForwardCurve("X", spot, T0, futures=dict(zip(expiries, fwds, strict=True)))
    knots = [0.0, *(year_fraction(T0, e) for e in expiries)]
    values = [spot, *fwds]
    for i in range(len(knots) - 1):
        ts = np.linspace(knots[i], knots[i + 1], 7)
        got = c.forwards(ts)
        lo, hi = min(values[i], values[i + 1]), max(values[i], values[i + 1])
        assert np.all(got >= lo * (1 - 1e-12))
        assert np.all(got <= hi * (1 + 1e-12))
    far = np.array([knots[-1] * 2, knots[-1] * 5])
    np.testing.assert_allclose(np.log(c.forwards(far) / spot) / far, c.long_end_rate, atol=1e-12)
