"""The Numba twin reproduces the NumPy reference; the kernel selector honours its switches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.special import ndtr

from pmargin.pricing import black76, kernels

numba = pytest.importorskip("numba")
nb = pytest.importorskip("pmargin.pricing._black76_numba")

NAMES = ("price", "delta", "gamma", "vega", "theta", "rho", "inverse_price", "inverse_delta")
RTOL = 1e-12


def random_inputs(rng: np.random.Generator, n: int, z_max: float, sd_min: float):
    """Inputs with total vol ``sigma sqrt(tau)`` in [sd_min, 8] and |ln(K/F)| <= z_max sd."""
    f = np.exp(rng.uniform(np.log(1.0), np.log(1e6), n))
    sd = np.exp(rng.uniform(np.log(sd_min), np.log(8.0), n))
    tau = np.exp(rng.uniform(np.log(1e-4), np.log(10.0), n))
    vol = sd / np.sqrt(tau)
    k = f * np.exp(sd * rng.uniform(-z_max, z_max, n))
    c = rng.random(n) < 0.5
    d = np.exp(-rng.uniform(-0.05, 0.2, n) * tau)
    return f, k, tau, vol, c, d


def test_ndtr_matches_scipy():
    x = np.linspace(-20.0, 9.0, 200_001)
    ours = np.array([nb._ndtr(v) for v in x[::97]])
    np.testing.assert_allclose(ours, ndtr(x[::97]), rtol=1e-13, atol=0)
    # the branch point |x| = 1 and exact values
    for v in (-1.0, -np.nextafter(1.0, 0.0), 0.0, np.nextafter(1.0, 0.0), 1.0):
        assert nb._ndtr(v) == pytest.approx(float(ndtr(v)), rel=1e-15)
    assert nb._ndtr(0.0) == 0.5
    assert np.isnan(nb._ndtr(np.nan))


@pytest.mark.parametrize("name", NAMES)
def test_twin_equals_reference_well_conditioned(name, rng):
    # Strikes within 6 standard deviations and sigma sqrt(tau) >= 0.02: every output agrees to
    # 1e-12 relative with no absolute slack.
    args = random_inputs(rng, 50_000, z_max=6.0, sd_min=0.02)
    ours = getattr(nb, name)(*args)
    ref = getattr(black76, name)(*args)
    assert ours.shape == ref.shape
    if name in ("inverse_delta", "theta"):
        # differences of two terms that may cancel: tolerance relative to the terms
        _, _, t, v, _, d = args
        if name == "inverse_delta":
            size = np.abs(black76.delta(*args)) + np.abs(black76.inverse_price(*args))
        else:  # decay + r V
            size = v * black76.vega(*args) / (2 * t) + np.abs(np.log(d) / t) * black76.price(*args)
        assert np.all(np.abs(ours - ref) <= RTOL * size)
    else:
        np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_twin_equals_reference_everywhere(name, rng):
    # Far from the money or with tiny sigma sqrt(tau), F N(d1) - K N(d2) cancels and both kernels
    # lose relative accuracy on astronomically small values (scipy's cephes erfc and libm's erfc
    # differ in the last bits, more so in the far tail). Allow 1e-15 per unit of each output's
    # natural scale (USD per USD of forward for prices) on top of the 1e-12 relative tolerance.
    args = random_inputs(rng, 50_000, z_max=40.0, sd_min=1e-5)
    f, _, t, v, _, _ = args
    ours = getattr(nb, name)(*args)
    ref = getattr(black76, name)(*args)
    scale = {
        "price": f,
        "rho": t * f,
        "theta": f / t,
        "vega": f * np.sqrt(t),
        "gamma": 1.0 / (f * v * np.sqrt(t)),
    }.get(name, 1.0)
    err = np.abs(ours - ref)
    bad = ~(err <= RTOL * np.abs(ref) + 1e-15 * scale)
    assert not bad.any(), (name, int(bad.sum()), ours[bad][:3], ref[bad][:3])


def test_edge_cases_identical():
    f = np.array([80.0, 100.0, 120.0, 100.0, 100.0, 100.0, 100.0, 100.0])
    k = 100.0
    tau = np.array([0.0, 0.0, 0.0, -1.0, 1.0, 1.0, np.nan, 1e-300])
    vol = np.array([0.5, 0.5, 0.5, 0.5, 0.0, np.nan, 0.5, 0.5])
    for c in (True, False):
        for d in (1.0, 0.9, 0.0):
            for name in NAMES:
                ours = getattr(nb, name)(f, k, tau, vol, c, d)
                ref = getattr(black76, name)(f, k, tau, vol, c, d)
                np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=0, err_msg=name)
                # NaN in the same places
                np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))


def test_degenerate_inputs_identical():
    # Zero, negative and infinite forwards or strikes: same values, NaNs and infinities.
    f = np.array([0.0, 100.0, -5.0, 100.0, np.inf, 100.0])
    k = np.array([100.0, 0.0, 100.0, -5.0, 100.0, np.inf])
    with np.errstate(all="ignore"):
        for c in (True, False):
            for name in NAMES[:6]:
                ours = getattr(nb, name)(f, k, 1.0, 0.5, c)
                ref = getattr(black76, name)(f, k, 1.0, 0.5, c)
                np.testing.assert_array_equal(ours, ref, err_msg=name)


def test_broadcasting_and_scalars_like_reference(rng):
    f = rng.uniform(50, 150, (3, 1, 1))
    k = rng.uniform(50, 150, (1, 4, 1))
    tau = rng.uniform(0, 2, (1, 1, 5))
    c = rng.random((4, 1)) < 0.5
    for name in NAMES:
        ours = getattr(nb, name)(f, k, tau, 0.8, c, 0.97)
        ref = getattr(black76, name)(f, k, tau, 0.8, c, 0.97)
        assert ours.shape == ref.shape == (3, 4, 5)
        np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=0)
    scalar = nb.price(100, 90, 1, 0.5, True)
    assert isinstance(scalar, np.ndarray)
    assert scalar.shape == ()
    assert scalar.dtype == np.float64
    # non-contiguous and integer inputs
    f2 = np.arange(200.0, 100.0, -1.0)[::2]
    np.testing.assert_allclose(nb.price(f2, 150, 1, 0.5, False), black76.price(f2, 150, 1, 0.5,
                                                                              False), rtol=RTOL)
    np.testing.assert_allclose(nb.delta(np.arange(1, 5), 2, 1, 1, True),
                               black76.delta(np.arange(1, 5), 2, 1, 1, True), rtol=RTOL)


def test_fused_greeks_equal_single_functions(rng):
    args = random_inputs(rng, 10_000, z_max=6.0, sd_min=0.02)
    g = nb.greeks(*args)
    ref = black76.greeks(*args)
    assert set(g) == set(ref)
    for name, arr in g.items():
        np.testing.assert_array_equal(arr, getattr(nb, name)(*args), err_msg=name)
        np.testing.assert_allclose(arr, ref[name], rtol=RTOL, atol=0, err_msg=name)


def test_kernels_selects_numba_in_this_process():
    expected = os.environ.get("PMARGIN_DISABLE_NUMBA") != "1"
    assert expected is kernels.NUMBA_ENABLED
    if expected:
        assert kernels.price is nb.price
        assert kernels.greeks is nb.greeks
    for name in (*NAMES, "greeks"):
        assert callable(getattr(kernels, name))


def _run(code: str, **env: str) -> list[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "PMARGIN_DISABLE_NUMBA"}
    full_env.update(env)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=full_env, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


PROBE = """
    import warnings
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        from pmargin.errors import PerformanceWarning
        from pmargin.pricing import kernels
    n = sum(issubclass(x.category, PerformanceWarning) for x in w)
    p = float(kernels.price(100.0, 100.0, 1.0, 0.2, True))
    print(kernels.NUMBA_ENABLED, kernels.price.__module__, n, round(p, 9))
"""


def test_env_var_disables_numba_without_warning():
    enabled, module, n_warn, p = _run(PROBE, PMARGIN_DISABLE_NUMBA="1")
    assert enabled == "False"
    assert module == "pmargin.pricing.black76"
    assert n_warn == "0"
    assert p == "7.965567455"


def test_env_var_other_than_1_keeps_numba():
    enabled, module, n_warn, _ = _run(PROBE, PMARGIN_DISABLE_NUMBA="0")
    assert enabled == "True"
    assert module == "pmargin.pricing._black76_numba"
    assert n_warn == "0"


def test_missing_numba_falls_back_with_one_warning():
    code = "import sys\nsys.modules['numba'] = None\n" + textwrap.dedent(PROBE)
    enabled, module, n_warn, p = _run(code)
    assert enabled == "False"
    assert module == "pmargin.pricing.black76"
    assert n_warn == "1"
    assert p == "7.965567455"
