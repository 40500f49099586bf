"""Agreement with independent implementations: QuantLib and vollib (Jaeckel's LetsBeRational).

Both oracles are evaluated one option at a time on the same random inputs (forwards 50..2e5, tau
1 day..3 years, vol 0.05..3, strikes within 5 standard deviations, rates -1 %..8 %). The
comparison is restricted to inputs where the oracle itself is accurate to better than 1e-10:

* QuantLib's normal CDF is ``0.5 (1 + erf(x / sqrt 2))`` above 1e-8 (an asymptotic series below):
  its relative error is ~1e-13 for ``|x| <= 3.5``, 8e-12 at -4.5 and ~1e-8 around -6;
* QuantLib's ``blackFormula`` and vollib's analytical theta evaluate ``F N(d1) - K N(d2)`` as
  written, so where the two terms cancel by a factor of more than 100 their last digits are noise.
  (vollib's ``black`` price uses LetsBeRational and has no such limit; it is compared everywhere.)
* theta is ``decay + r V``; where those cancel it is compared relative to ``|decay| + |r V|``;
* an implied vol is only determined to ``eps * price / (vega * vol)`` relative; it is compared where
  that is below 1e-11 (deep in-the-money options with negligible time value are left out).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtr

from pmargin.pricing import black76, implied_vol

N = 2000
RTOL = 1e-10


@pytest.fixture
def cases(rng):
    f = np.exp(rng.uniform(np.log(50.0), np.log(2e5), N))
    tau = np.exp(rng.uniform(np.log(1 / 365), np.log(3.0), N))
    vol = rng.uniform(0.05, 3.0, N)
    sd = vol * np.sqrt(tau)
    k = f * np.exp(sd * rng.uniform(-5.0, 5.0, N))
    c = rng.random(N) < 0.5
    r = rng.uniform(-0.01, 0.08, N)
    return f, k, tau, vol, c, r


def well_conditioned(f, k, tau, vol, c, r, d_max=np.inf):
    """Mask: |d1|, |d2| <= d_max and the terms of F N(d1) - K N(d2) cancel by at most 100x."""
    sd = vol * np.sqrt(tau)
    d1 = np.log(f / k) / sd + 0.5 * sd
    d2 = d1 - sd
    gross = np.where(c, f * ndtr(d1) + k * ndtr(d2), k * ndtr(-d2) + f * ndtr(-d1))
    price = black76.price(f, k, tau, vol, c)
    return (np.abs(d1) <= d_max) & (np.abs(d2) <= d_max) & (gross <= 100.0 * price)


def rel_err(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b))


def theta_size(f, k, tau, vol, c, r):
    """``|decay| + |r V|``: the magnitude of the two terms that make up theta."""
    d = np.exp(-r * tau)
    decay = vol * black76.vega(f, k, tau, vol, c, d) / (2.0 * tau)
    return decay + np.abs(r * black76.price(f, k, tau, vol, c, d))


def test_quantlib_prices_and_greeks(cases):
    ql = pytest.importorskip("QuantLib")
    keep = well_conditioned(*cases, d_max=3.5)
    assert keep.sum() >= 1000
    f, k, tau, vol, c, r = (a[keep] for a in cases)
    n = f.size
    d = np.exp(-r * tau)
    sd = vol * np.sqrt(tau)
    ours = black76.greeks(f, k, tau, vol, c, d)
    ref = {name: np.empty(n) for name in ("price", "delta", "gamma", "vega", "theta")}
    for i in range(n):
        typ = ql.Option.Call if c[i] else ql.Option.Put
        ref["price"][i] = ql.blackFormula(typ, k[i], f[i], sd[i], d[i])
        calc = ql.BlackCalculator(ql.PlainVanillaPayoff(typ, k[i]), f[i], sd[i], d[i])
        ref["delta"][i] = calc.deltaForward()
        ref["gamma"][i] = calc.gammaForward()
        ref["vega"][i] = calc.vega(tau[i])  # per 1.00 of vol, like ours
        # theta(spot, T) with spot = F (no carry) is dV/dt per year at a constant rate, like ours
        ref["theta"][i] = calc.theta(f[i], tau[i])
    size = {"theta": theta_size(f, k, tau, vol, c, r)}
    for name, expected in ref.items():
        worst = (np.abs(ours[name] - expected) / size.get(name, np.abs(expected))).max()
        assert worst < RTOL, (name, worst)


def test_vollib_prices_and_greeks(cases):
    pytest.importorskip("vollib")
    from vollib.black import black
    from vollib.black.greeks import analytical

    f, k, tau, vol, c, r = cases
    d = np.exp(-r * tau)
    ours = black76.greeks(f, k, tau, vol, c, d)
    flags = np.where(c, "c", "p")
    ref = {name: np.empty(N) for name in ("price", "delta", "gamma", "vega", "theta", "rho")}
    for i in range(N):
        args = (flags[i], f[i], k[i], tau[i], r[i], vol[i])
        ref["price"][i] = black(*args)
        ref["delta"][i] = analytical.delta(*args)
        ref["gamma"][i] = analytical.gamma(*args)
        ref["vega"][i] = analytical.vega(*args) * 100.0  # vollib: per 1 vol point
        ref["theta"][i] = analytical.theta(*args) * 365.0  # vollib: per calendar day
        ref["rho"][i] = analytical.rho(*args) * 100.0  # vollib: per 1 % of rate
    keep = well_conditioned(*cases)
    assert keep.sum() >= 1000
    size = {"theta": theta_size(*cases)}
    for name, expected in ref.items():
        mask = keep if name == "theta" else np.ones(N, bool)
        err = np.abs(ours[name] - expected) / size.get(name, np.abs(expected))
        worst = err[mask].max()
        assert worst < RTOL, (name, worst)


def test_implied_vol_matches_quantlib_and_vollib(cases):
    ql = pytest.importorskip("QuantLib")
    pytest.importorskip("vollib")
    from vollib.black.implied_volatility import implied_volatility as lbr_iv

    f, k, tau, vol, c, r = cases
    d = np.exp(-r * tau)
    price = black76.price(f, k, tau, vol, c, d)
    res = implied_vol(price, f, k, tau, c, d)
    assert res.ok.all()

    ql_vol = np.empty(N)
    lbr_vol = np.empty(N)
    for i in range(N):
        typ = ql.Option.Call if c[i] else ql.Option.Put
        std = ql.blackFormulaImpliedStdDev(typ, k[i], f[i], price[i], d[i], 0.0, 0.5, 1e-15, 500)
        ql_vol[i] = std / math.sqrt(tau[i])
        lbr_vol[i] = lbr_iv(price[i], f[i], k[i], r[i], tau[i], "c" if c[i] else "p")

    # Round trip against the generating vol and LetsBeRational wherever the price determines the
    # vol; QuantLib's solver inverts its own blackFormula, so only where that is accurate too.
    vega = black76.vega(f, k, tau, vol, c, d)
    determined = np.finfo(float).eps * price / (vega * vol) < 1e-11
    assert determined.sum() >= 0.8 * N
    assert rel_err(res.vol, vol)[determined].max() < RTOL
    assert rel_err(res.vol, lbr_vol)[determined].max() < RTOL
    keep = determined & well_conditioned(*cases, d_max=3.5)
    assert keep.sum() >= 1000
    assert rel_err(res.vol, ql_vol)[keep].max() < RTOL
