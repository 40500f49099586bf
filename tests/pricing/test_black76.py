"""Properties of the Black-76 kernel, run on the NumPy reference and on the Numba twin."""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmargin.pricing import black76

IMPLS: list[ModuleType] = [black76]
try:
    from pmargin.pricing import _black76_numba

    IMPLS.append(_black76_numba)
except ImportError:  # pragma: no cover - numba is in the lock file
    pass

impls = pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])


def assert_within(actual, expected, tol):
    """Element-wise ``|actual - expected| <= tol`` with an informative failure message."""
    err = np.abs(np.asarray(actual) - np.asarray(expected))
    bad = ~(err <= tol)
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        pytest.fail(f"{bad.sum()} of {bad.size} elements off; first at {i}: "
                    f"{np.ravel(actual)[i]!r} vs {np.ravel(expected)[i]!r}")


def random_inputs(rng: np.random.Generator, n: int, z_max: float = 4.0):
    """Forward, strike, tau, vol, is_call, discount, rate: realistic but wide."""
    f = np.exp(rng.uniform(np.log(10.0), np.log(2e5), n))
    tau = np.exp(rng.uniform(np.log(1 / (365 * 24)), np.log(5.0), n))
    vol = rng.uniform(0.05, 3.0, n)
    s = vol * np.sqrt(tau)
    k = f * np.exp(s * rng.uniform(-z_max, z_max, n))
    c = rng.random(n) < 0.5
    r = rng.uniform(-0.02, 0.10, n)
    return f, k, tau, vol, c, np.exp(-r * tau), r


def test_known_value_at_the_money():
    # ATM: C = F * erf(sigma sqrt(tau) / (2 sqrt 2)), a closed form independent of d1/d2.
    expected = 100.0 * math.erf(0.2 / (2.0 * math.sqrt(2.0)))
    assert black76.price(100.0, 100.0, 1.0, 0.2, True) == pytest.approx(expected, rel=1e-14)
    assert float(black76.price(100.0, 100.0, 1.0, 0.2, True)) == pytest.approx(7.965567455405804)
    # Put on the same terms, discounted.
    assert black76.price(100.0, 100.0, 1.0, 0.2, False, 0.9) == pytest.approx(0.9 * expected)


@impls
def test_put_call_parity(impl, rng):
    f, k, t, v, _, d, _ = random_inputs(rng, 20_000, z_max=8.0)
    call = impl.price(f, k, t, v, True, d)
    put = impl.price(f, k, t, v, False, d)
    assert_within(call - put, d * (f - k), 3e-15 * (f + k))


@impls
def test_no_arbitrage_bounds(impl, rng):
    f, k, t, v, _, d, _ = random_inputs(rng, 20_000, z_max=8.0)
    call = impl.price(f, k, t, v, True, d)
    put = impl.price(f, k, t, v, False, d)
    slack = 1e-14 * (f + k)
    assert np.all(call >= 0.0)
    assert np.all(put >= 0.0)
    assert np.all(call <= d * f)
    assert np.all(put <= d * k)
    assert np.all(call >= d * np.maximum(f - k, 0.0) - slack)
    assert np.all(put >= d * np.maximum(k - f, 0.0) - slack)


@impls
def test_call_decreasing_and_convex_in_strike(impl):
    k = np.linspace(20.0, 400.0, 2001)
    for tau, vol in [(0.01, 0.5), (0.5, 0.8), (3.0, 1.5)]:
        call = impl.price(100.0, k, tau, vol, True)
        put = impl.price(100.0, k, tau, vol, False)
        assert np.all(np.diff(call) <= 0.0)
        assert np.all(np.diff(put) >= 0.0)
        # strictly where the price is not negligible
        live = call[:-1] > 1e-8
        assert np.all(np.diff(call)[live] < 0.0)
        # butterflies are non-negative (convexity)
        assert np.all(call[:-2] - 2 * call[1:-1] + call[2:] >= -1e-12)


@impls
def test_increasing_in_vol(impl):
    vol = np.linspace(0.01, 5.0, 1000)
    for k in (50.0, 100.0, 150.0):
        for c in (True, False):
            p = impl.price(100.0, k, 0.25, vol, c, 0.99)
            assert np.all(np.diff(p) >= 0.0), (k, c)
            # strictly once there is representable time value
            tv = p - 0.99 * max(100.0 - k if c else k - 100.0, 0.0)
            assert np.all(np.diff(p)[tv[:-1] > 1e-9] > 0.0), (k, c)
            assert (tv > 1e-9).mean() > 0.9


@impls
def test_increasing_in_tau_at_zero_rate(impl):
    tau = np.linspace(1e-4, 10.0, 1000)
    for k in (50.0, 100.0, 150.0):
        for c in (True, False):
            p = impl.price(100.0, k, tau, 0.6, c)
            assert np.all(np.diff(p) >= 0.0), (k, c)
            tv = p - max(100.0 - k if c else k - 100.0, 0.0)
            assert np.all(np.diff(p)[tv[:-1] > 1e-9] > 0.0), (k, c)
            assert (tv > 1e-9).mean() > 0.9


@impls
def test_greeks_match_central_finite_differences(impl, rng):
    n = 2000
    f, k, t, v, c, _, r = random_inputs(rng, n, z_max=2.5)
    t = np.maximum(t, 0.02)
    d = np.exp(-r * t)
    g = impl.greeks(f, k, t, v, c, d)

    def p(ff=f, tt=t, vv=v, rr=r):
        return impl.price(ff, k, tt, vv, c, np.exp(-rr * tt))

    sd = v * np.sqrt(t)  # steps scale with the width of the distribution
    h = 1e-4 * f * sd
    fd_delta = (p(ff=f + h) - p(ff=f - h)) / (2 * h)
    np.testing.assert_allclose(g["delta"], fd_delta, rtol=1e-6, atol=1e-9)

    h = 2e-3 * f * sd
    fd_gamma = (p(ff=f + h) - 2 * p() + p(ff=f - h)) / h**2
    np.testing.assert_allclose(g["gamma"] * f * sd, fd_gamma * f * sd, rtol=1e-4, atol=1e-7)

    h = 1e-4 * v
    fd_vega = (p(vv=v + h) - p(vv=v - h)) / (2 * h)
    np.testing.assert_allclose(g["vega"] / f, fd_vega / f, rtol=1e-6, atol=1e-10)

    # theta = dV/dt = -dV/dtau with the rate (not the discount factor) held fixed
    h = 1e-5 * t
    fd_theta = -(p(tt=t + h) - p(tt=t - h)) / (2 * h)
    np.testing.assert_allclose(g["theta"] / f, fd_theta / f, rtol=1e-6, atol=1e-9)

    h = 1e-6
    fd_rho = (p(rr=r + h) - p(rr=r - h)) / (2 * h)
    np.testing.assert_allclose(g["rho"] / f, fd_rho / f, rtol=1e-6, atol=1e-10)


@impls
def test_expired_and_zero_vol_give_discounted_intrinsic(impl):
    f = np.array([80.0, 100.0, 120.0])
    k = 100.0
    d = 0.95
    for tau, vol in [(0.0, 0.5), (1.0, 0.0), (-0.1, 0.5)]:
        np.testing.assert_array_equal(
            impl.price(f, k, tau, vol, True, d), d * np.array([0.0, 0.0, 20.0])
        )
        np.testing.assert_array_equal(
            impl.price(f, k, tau, vol, False, d), d * np.array([20.0, 0.0, 0.0])
        )
        np.testing.assert_array_equal(
            impl.delta(f, k, tau, vol, True, d), d * np.array([0.0, 0.5, 1.0])
        )
        np.testing.assert_array_equal(
            impl.delta(f, k, tau, vol, False, d), d * np.array([-1.0, -0.5, 0.0])
        )
        np.testing.assert_array_equal(impl.gamma(f, k, tau, vol), np.zeros(3))
        np.testing.assert_array_equal(impl.vega(f, k, tau, vol), np.zeros(3))
    # expired: no time decay and no rate sensitivity
    np.testing.assert_array_equal(impl.theta(f, k, 0.0, 0.5, True, d), np.zeros(3))
    np.testing.assert_array_equal(impl.rho(f, k, 0.0, 0.5, True, d), np.zeros(3))


@impls
def test_nan_vol_or_tau_propagates(impl):
    # A missing vol must not silently price at intrinsic.
    for name in ("price", "delta", "gamma", "vega", "theta", "rho"):
        fn = getattr(impl, name)
        assert np.isnan(fn(120.0, 100.0, 0.5, np.nan, True)), name
        assert np.isnan(fn(120.0, 100.0, np.nan, 0.5, False)), name


@impls
def test_broadcasting_shapes(impl, rng):
    f = np.array([[90.0], [100.0], [110.0]])  # (3, 1)
    k = np.array([80.0, 95.0, 105.0, 130.0])  # (4,)
    c = np.array([[True, False, True, False]])  # (1, 4)
    for name in ("price", "delta", "gamma", "vega", "theta", "rho", "inverse_price",
                 "inverse_delta"):
        out = getattr(impl, name)(f, k, 0.5, 0.7, c, 0.98)
        assert out.shape == (3, 4), name
        assert out.dtype == np.float64
        # element-wise evaluation agrees with the broadcast one
        i, j = 2, 1
        one = getattr(impl, name)(f[i, 0], k[j], 0.5, 0.7, c[0, j], 0.98)
        assert one.shape == ()
        assert float(one) == pytest.approx(out[i, j], rel=1e-14, abs=1e-300)
    # gamma and vega default is_call, but its shape still broadcasts
    assert impl.gamma(f, k, 0.5, 0.7).shape == (3, 4)
    assert impl.vega(f, 100.0, 0.5, 0.7, np.ones((2, 1, 1), bool)).shape == (2, 3, 1)
    g = impl.greeks(f, k, np.array([0.1, 0.2, 0.3, 0.4]), 0.7, c)
    assert set(g) == {"price", "delta", "gamma", "vega", "theta", "rho"}
    assert all(a.shape == (3, 4) for a in g.values())
    with pytest.raises(ValueError):
        impl.price(np.ones(3), np.ones(4), 0.5, 0.7, True)


@impls
def test_greeks_dict_equals_single_functions(impl, rng):
    f, k, t, v, c, d, _ = random_inputs(rng, 500)
    g = impl.greeks(f, k, t, v, c, d)
    for name, arr in g.items():
        np.testing.assert_array_equal(arr, getattr(impl, name)(f, k, t, v, c, d))


@impls
def test_inverse_conventions(impl, rng):
    f, k, t, v, c, d, _ = random_inputs(rng, 2000)
    inv_p = impl.inverse_price(f, k, t, v, c, d)
    np.testing.assert_allclose(inv_p, impl.price(f, k, t, v, c, d) / f, rtol=1e-15)
    np.testing.assert_allclose(
        impl.inverse_delta(f, k, t, v, c, d),
        impl.delta(f, k, t, v, c, d) - inv_p,
        rtol=1e-15, atol=1e-16,
    )
    # Net transaction delta is the sensitivity of the coin value of a USD payoff held in coin:
    # d(V/F)/dF * F = delta - V/F.
    h = 1e-4 * f * v * np.sqrt(t)
    fd = (impl.inverse_price(f + h, k, t, v, c, d) - impl.inverse_price(f - h, k, t, v, c, d))
    fd = fd / (2 * h) * f
    np.testing.assert_allclose(impl.inverse_delta(f, k, t, v, c, d), fd, rtol=1e-6, atol=1e-9)


moneyness = st.floats(-6.0, 6.0)
taus = st.floats(1e-4, 10.0)
vols = st.floats(0.01, 5.0)
rates = st.floats(-0.05, 0.2)
forwards = st.floats(1.0, 1e6)


@impls
@given(f=forwards, z=moneyness, tau=taus, vol=vols, r=rates, call=st.booleans())
def test_property_bounds_parity_and_greek_signs(impl, f, z, tau, vol, r, call):
    k = f * math.exp(z * vol * math.sqrt(tau))
    d = math.exp(-r * tau)
    g = impl.greeks(f, k, tau, vol, call, d)
    p, other = float(g["price"]), float(impl.price(f, k, tau, vol, not call, d))
    scale = 1e-13 * (f + k)
    assert -scale <= p <= d * (f if call else k) + scale
    c_minus_p = (p - other) if call else (other - p)
    assert c_minus_p == pytest.approx(d * (f - k), abs=scale * 8)
    delta = float(g["delta"])
    if call:
        assert 0.0 <= delta <= d
    else:
        assert -d <= delta <= 0.0
    assert float(g["gamma"]) >= 0.0
    assert float(g["vega"]) >= 0.0
    assert float(g["rho"]) == pytest.approx(-tau * p, rel=1e-14, abs=1e-300)
    inv = impl.inverse_delta(f, k, tau, vol, call, d)
    assert float(inv) == pytest.approx(delta - p / f, rel=1e-12, abs=1e-15)


@impls
@given(f=forwards, z=moneyness, tau=taus, vol=vols)
def test_property_zero_rate_theta_is_minus_half_vol_vega(impl, f, z, tau, vol):
    # At zero rate theta = -sigma * vega / (2 tau).
    k = f * math.exp(z * vol * math.sqrt(tau))
    theta = float(impl.theta(f, k, tau, vol, True))
    vega = float(impl.vega(f, k, tau, vol))
    assert theta == pytest.approx(-vol * vega / (2.0 * tau), rel=1e-12, abs=1e-300)
