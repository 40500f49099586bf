"""Vol surface: smiles in log-moneyness, total-variance interpolation in tau, exact pillars."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmargin.conventions import year_fraction
from pmargin.errors import InvalidInput, MarketDataError
from pmargin.instruments import parse_instrument
from pmargin.market import ForwardCurve, MarketSnapshot, Smile, VolSurface, load_deribit_csv

T0 = datetime(2026, 2, 5, 8, tzinfo=UTC)
E1 = datetime(2026, 3, 6, 8, tzinfo=UTC)
E2 = datetime(2026, 6, 5, 8, tzinfo=UTC)


def _tau(e: datetime) -> float:
    return year_fraction(T0, e)


@pytest.fixture
def surface() -> VolSurface:
    curve = ForwardCurve("BTC", 100.0, T0, futures={E1: 101.0, E2: 103.0})
    s1 = Smile(E1, _tau(E1), 101.0, np.array([80.0, 100.0, 120.0]), np.array([0.8, 0.6, 0.7]))
    s2 = Smile(E2, _tau(E2), 103.0, np.array([70.0, 100.0, 140.0]), np.array([0.75, 0.55, 0.65]))
    return VolSurface("BTC", T0, [s2, s1], curve)


def test_smile_exact_at_strikes_linear_in_k_flat_beyond():
    s = Smile(E1, 0.1, 100.0, [80.0, 100.0, 125.0], [0.8, 0.6, 0.7])
    for k, v in ((80.0, 0.8), (100.0, 0.6), (125.0, 0.7)):
        assert s.vol_at_strike(k) == v
    k_mid = 0.5 * (math.log(0.8) + 0.0)
    assert s.vol(k_mid) == pytest.approx(0.7)
    assert s.vol_at_strike(10.0) == 0.8
    assert s.vol_at_strike(1e6) == 0.7
    assert s.vol_at_strike(100.0 * math.exp(0.5 * math.log(1.25))) == pytest.approx(0.65)


def test_exact_smile_at_its_expiry(surface):
    for e, strikes, vols in ((E1, [80.0, 100.0, 120.0], [0.8, 0.6, 0.7]),
                             (E2, [70.0, 100.0, 140.0], [0.75, 0.55, 0.65])):
        f = surface.forward_curve.forward(e) if surface.forward_curve else 0.0
        got = surface.vol(np.full(3, _tau(e)), np.array(strikes), f)
        assert got.tolist() == vols
        assert [surface.vol_at(e, k) for k in strikes] == vols


def test_total_variance_linear_between_expiries(surface):
    t1, t2 = _tau(E1), _tau(E2)
    e = datetime(2026, 4, 20, 8, tzinfo=UTC)
    t = _tau(e)
    f = surface.forward_curve.forward(e) if surface.forward_curve else 0.0
    k = 0.0  # ATM in log-moneyness
    s1 = next(s for s in surface.smiles if s.expiry == E1)
    s2 = next(s for s in surface.smiles if s.expiry == E2)
    w1 = float(s1.vol(k)) ** 2 * t1
    w2 = float(s2.vol(k)) ** 2 * t2
    w = w1 + (w2 - w1) * (t - t1) / (t2 - t1)
    assert surface.vol(t, f, f)[()] == pytest.approx(math.sqrt(w / t), rel=1e-13)
    assert surface.vol_at(e, f) == pytest.approx(math.sqrt(w / t), rel=1e-13)


def test_flat_vol_before_first_and_beyond_last(surface):
    s1, s2 = surface.smiles
    early = np.array([1e-4, 0.5 * s1.tau])
    np.testing.assert_allclose(surface.vol(early, 101.0, 101.0), float(s1.vol(0.0)))
    late = np.array([s2.tau * 1.5, 3.0])
    np.testing.assert_allclose(surface.vol(late, 103.0 * 1.2, 103.0),
                               float(s2.vol(math.log(1.2))))
    assert surface.vol(0.0, 100.0, 100.0)[()] == float(s1.vol(0.0))


def test_vectorised_broadcasts_and_matches_scalar(surface):
    taus = np.array([[0.01], [0.2], [0.5]])
    strikes = np.array([60.0, 100.0, 150.0])
    fwd = surface.forward_curve.forwards(taus) if surface.forward_curve else taus
    out = surface.vol(taus, strikes, fwd)
    assert out.shape == (3, 3)
    for i in range(3):
        for j in range(3):
            assert out[i, j] == surface.vol(taus[i, 0], strikes[j], fwd[i, 0])[()]


def test_flat_constructor():
    s = VolSurface.flat(0.6, "BTC")
    assert s.is_flat
    assert s.vol_at(E1, 12345.0) == 0.6
    assert s.vol(np.array([0.1, 2.0]), 100.0, np.array([90.0, 110.0])).tolist() == [0.6, 0.6]
    with pytest.raises(MarketDataError, match=r"flat_vol.*above 10.*12\.0"):
        VolSurface.flat(12.0)
    with pytest.raises(MarketDataError, match=r"flat_vol.*positive.*0\.0"):
        VolSurface.flat(0.0)


def test_empty_surface_raises_naming_underlying():
    s = VolSurface("SOL", T0, [])
    assert s.is_empty
    with pytest.raises(MarketDataError, match=r"vol_surface\['SOL'\].*no option"):
        s.vol(0.1, 100.0, 100.0)


def test_vol_at_needs_curve_for_unknown_expiry():
    s1 = Smile(E1, _tau(E1), 101.0, [100.0], [0.5])
    s = VolSurface("BTC", T0, [s1])
    assert s.vol_at(E1, 100.0) == 0.5
    with pytest.raises(InvalidInput, match="forward_curve"):
        s.vol_at(E2, 100.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vols": [0.5, -0.1]}, r"vols\[120\].*positive.*-0\.1"),
        ({"vols": [0.5, 11.0]}, r"vols\[120\].*above 10.*11\.0"),
        ({"vols": [0.5, float("nan")]}, r"vols\[120\].*finite.*nan"),
        ({"strikes": [120.0, 100.0]}, r"strikes.*strictly increasing"),
        ({"strikes": [-100.0, 120.0]}, r"strikes.*positive.*-100\.0"),
        ({"forward": 0.0}, r"forward.*positive"),
        ({"tau": -0.1}, r"tau.*positive.*-0\.1"),
        ({"vols": [0.5]}, r"strikes.*as many vols"),
    ],
)
def test_bad_smile_inputs_are_named(kwargs, match):
    args = {"expiry": E1, "tau": 0.1, "forward": 100.0, "strikes": [100.0, 120.0],
            "vols": [0.5, 0.6], **kwargs}
    with pytest.raises(MarketDataError, match=match):
        Smile(**args)


def test_duplicate_expiry_rejected():
    s = Smile(E1, 0.1, 100.0, [100.0], [0.5])
    with pytest.raises(MarketDataError, match="share an expiry"):
        VolSurface("BTC", T0, [s, s])


@given(
    w0=st.floats(1e-4, 0.5),
    increments=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=6),
    gaps=st.lists(st.integers(1, 120), min_size=7, max_size=7),
    k=st.floats(-1.0, 1.0),
)
def test_total_variance_monotone_in_tau_for_flat_in_k_surface(w0, increments, gaps, k):
    """Calendar-arbitrage-free pillars (w non-decreasing) give w(tau) non-decreasing."""
    smiles = []
    day, w = T0, w0
    for i, inc in enumerate([0.0, *increments]):
        day = day + timedelta(days=gaps[i])
        w += inc
        tau = _tau(day)
        vol = min(math.sqrt(w / tau), 10.0)
        w = vol * vol * tau
        smiles.append(Smile(day, tau, 100.0, [100.0], [vol]))
    surf = VolSurface("X", T0, smiles)
    taus = np.linspace(1e-4, 2.0 * smiles[-1].tau, 400)
    taus = np.sort(np.concatenate([taus, [s.tau for s in smiles]]))
    fwd = 100.0
    strike = fwd * math.exp(k)
    tv = surf.vol(taus, strike, fwd) ** 2 * taus
    assert np.all(np.diff(tv) >= -1e-12 * np.maximum(tv[1:], 1e-12))


# -- real snapshots -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_snapshot(deribit_snapshots: list[Path]) -> tuple[Path, MarketSnapshot]:
    p = next(p for p in deribit_snapshots if "20260205T155132Z" in p.name)
    return p, load_deribit_csv(p)


@pytest.mark.slow
def test_surface_reproduces_every_pillar_exactly_on_real_snapshots(deribit_snapshots):
    for path in deribit_snapshots:
        snap = load_deribit_csv(path)
        om = snap.option_marks
        for u in snap.underlyings:
            surf = snap.vol_surface(u)
            for s in surf.smiles:
                got = snap.implied_vols(u, np.full(s.strikes.size, s.tau), s.strikes)
                assert np.array_equal(got, s.vols), (path.name, u, s.expiry)
                assert [surf.vol_at(s.expiry, k) for k in s.strikes] == s.vols.tolist()
            sub = om[om.underlying == u]
            vec = snap.implied_vols(u, sub.tau.to_numpy(), sub.strike.to_numpy())
            diff = vec != sub.mark_iv.to_numpy()
            # Only where the call and the put of one strike carry different mark IVs does the
            # surface (which keeps the out-of-the-money one) differ from a row's own IV.
            pairs = sub.groupby(["expiry", "strike"]).mark_iv.transform(lambda x: x.max() - x.min())
            assert not np.any(diff & (pairs.to_numpy() == 0.0)), path.name
            assert np.all(np.abs(vec - sub.mark_iv.to_numpy()) <= pairs.to_numpy())


def test_instrument_vol_is_each_rows_own_iv(one_snapshot):
    _, snap = one_snapshot
    om = snap.option_marks
    for name, iv in om.mark_iv.items():
        assert snap.instrument_vol(str(name)) == iv


def test_scalar_vol_at_matches_vectorised_on_real_snapshot(one_snapshot):
    _, snap = one_snapshot
    om = snap.option_marks.iloc[::37]
    for name, row in om.iterrows():
        inst = parse_instrument(str(name))
        assert inst.expiry is not None
        vec = snap.implied_vols(row.underlying, np.array([row.tau]), np.array([row.strike]))[0]
        assert snap.implied_vol(row.underlying, inst.expiry, row.strike) == vec
    # Off-pillar expiry: interpolated, positive and bounded by the neighbouring smiles.
    e = datetime(2026, 5, 15, 8, tzinfo=UTC)
    v = snap.implied_vol("BTC", e, 70000.0)
    assert 0.2 < v < 1.5
