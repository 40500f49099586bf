"""Black-76 prices and Greeks: the executable specification (pure NumPy).

Every function takes arrays that broadcast NumPy-style, in the same argument order:
``(forward, strike, tau, vol, is_call, discount=1.0)``, and returns float64 arrays.

Units
-----
* ``forward``, ``strike``: USD per unit of underlying. ``tau``: years (ACT/365). ``vol``: decimal.
* ``discount``: discount factor to expiry (1 for Deribit marks, which are undiscounted).
* price: USD per option on one unit of underlying (linear). ``inverse_price`` is in coin.
* delta: dV/dF, dimensionless (forward delta times discount).
* gamma: d2V/dF2, per USD.
* vega: dV/dsigma per 1.00 of volatility (divide by 100 for "per vol point").
* theta: dV/dt per year of calendar time at constant discount rate (divide by 365 for per day).
* rho: dV/dr per 1.00 of rate, with ``discount = exp(-r tau)`` (equals ``-tau * price``).

Expired options (``tau == 0``) and zero volatility give the discounted intrinsic value; their
delta is the discounted step function and gamma and vega are zero. A NaN vol or tau gives NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

from pmargin._typing import FloatArray

__all__ = [
    "delta",
    "gamma",
    "greeks",
    "inverse_delta",
    "inverse_price",
    "price",
    "rho",
    "theta",
    "vega",
]

_SQRT_2PI = np.sqrt(2.0 * np.pi)


def _pdf(x: FloatArray) -> FloatArray:
    return np.asarray(np.exp(-0.5 * x * x) / _SQRT_2PI)


def _d1_d2(
    forward: FloatArray, strike: FloatArray, tau: FloatArray, vol: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, np.ndarray]:
    """Return d1, d2, sigma*sqrt(tau) and the mask of live options.

    Live means ``sigma*sqrt(tau) > 0`` or NaN: a NaN vol or tau must give NaN results, not the
    intrinsic value of a dead option.
    """
    sd = vol * np.sqrt(np.maximum(tau, 0.0))
    live = ~(sd <= 0.0)
    safe_sd = np.where(live, sd, 1.0)
    with np.errstate(divide="ignore"):
        lnfk = np.log(forward / strike)
    d1 = np.where(live, lnfk / safe_sd + 0.5 * safe_sd, 0.0)
    d2 = d1 - np.where(live, safe_sd, 0.0)
    return d1, d2, sd, live


def _prep(*args: ArrayLike) -> list[FloatArray]:
    return [np.asarray(a, dtype=np.float64) for a in args]


def price(
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> FloatArray:
    r"""Black-76 price of a European option on a forward.

    Parameters
    ----------
    forward, strike : array_like
        Forward and strike in USD (positive).
    tau : array_like
        Time to expiry in years (non-negative).
    vol : array_like
        Implied volatility as a decimal (non-negative).
    is_call : array_like of bool
        True for calls, False for puts.
    discount : array_like, default 1.0
        Discount factor to expiry.

    Returns
    -------
    ndarray
        Price in USD per option on one unit of underlying.

    Notes
    -----
    .. math:: C = D\,[F N(d_1) - K N(d_2)],\quad P = D\,[K N(-d_2) - F N(-d_1)],
              \quad d_{1,2} = \frac{\ln(F/K) \pm \sigma^2\tau/2}{\sigma\sqrt\tau}
    """
    f, k, t, v, df = _prep(forward, strike, tau, vol, discount)
    c = np.asarray(is_call, dtype=bool)
    d1, d2, _, live = _d1_d2(f, k, t, v)
    call = f * ndtr(d1) - k * ndtr(d2)
    put = k * ndtr(-d2) - f * ndtr(-d1)
    live_price = np.where(c, call, put)
    intrinsic = np.where(c, np.maximum(f - k, 0.0), np.maximum(k - f, 0.0))
    # Cancellation in F N(d1) - K N(d2) can give tiny negatives deep out of the money.
    return np.asarray(df * np.where(live, np.maximum(live_price, 0.0), intrinsic))


def delta(
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> FloatArray:
    """Forward delta ``dV/dF``: ``D N(d1)`` for calls, ``D (N(d1) - 1)`` for puts.

    Parameters
    ----------
    forward, strike, tau, vol, is_call, discount : array_like
        As in :func:`price`.

    Returns
    -------
    ndarray
        Delta per unit of underlying (dimensionless).
    """
    f, k, t, v, df = _prep(forward, strike, tau, vol, discount)
    c = np.asarray(is_call, dtype=bool)
    d1, _, _, live = _d1_d2(f, k, t, v)
    step = np.where(f > k, 1.0, np.where(f == k, 0.5, 0.0))
    n1 = np.where(live, ndtr(d1), step)
    # N(-d1), not 1 - N(d1): keeps full relative accuracy for far out-of-the-money puts.
    n1_put = np.where(live, ndtr(-d1), 1.0 - step)
    return np.asarray(df * np.where(c, n1, -n1_put))


def gamma(
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike = True,
    discount: ArrayLike = 1.0,
) -> FloatArray:
    """Gamma ``d2V/dF2 = D phi(d1) / (F sigma sqrt(tau))`` (same for calls and puts).

    Parameters
    ----------
    forward, strike, tau, vol, is_call, discount : array_like
        As in :func:`price`.

    Returns
    -------
    ndarray
        Gamma per USD.
    """
    f, k, t, v, df = _prep(forward, strike, tau, vol, discount)
    d1, _, sd, live = _d1_d2(f, k, t, v)
    shape = np.broadcast_shapes(np.shape(is_call), d1.shape)
    out = np.where(live, df * _pdf(d1) / (f * np.where(live, sd, 1.0)), 0.0)
    return np.broadcast_to(out, shape).astype(np.float64)


def vega(
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike = True,
    discount: ArrayLike = 1.0,
) -> FloatArray:
    """Vega ``dV/dsigma = D F phi(d1) sqrt(tau)`` per 1.00 of volatility.

    Parameters
    ----------
    forward, strike, tau, vol, is_call, discount : array_like
        As in :func:`price`.

    Returns
    -------
    ndarray
        Vega in USD per 1.00 of volatility.
    """
    f, k, t, v, df = _prep(forward, strike, tau, vol, discount)
    d1, _, _, live = _d1_d2(f, k, t, v)
    shape = np.broadcast_shapes(np.shape(is_call), d1.shape)
    out = np.where(live, df * f * _pdf(d1) * np.sqrt(np.maximum(t, 0.0)), 0.0)
    return np.broadcast_to(out, shape).astype(np.float64)


def theta(
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> FloatArray:
    r"""Theta ``dV/dt`` per year of calendar time, forward and rate held constant.

    Parameters
    ----------
    forward, strike, tau, vol, is_call, discount : array_like
        As in :func:`price`; the rate is implied by ``discount = exp(-r tau)``.

    Returns
    -------
    ndarray
        Theta in USD per year (negative for a long option at zero rate).

    Notes
    -----
    .. math:: \Theta = -\frac{D F \phi(d_1)\sigma}{2\sqrt\tau} + r V
    """
    f, k, t, v, df = _prep(forward, strike, tau, vol, discount)
    d1, _, _, live = _d1_d2(f, k, t, v)
    safe_t = np.where(live, t, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where((t > 0) & (df > 0), -np.log(df) / np.where(t > 0, t, 1.0), 0.0)
    decay = np.where(live, -df * f * _pdf(d1) * v / (2.0 * np.sqrt(safe_t)), 0.0)
    return np.asarray(decay + r * price(f, k, t, v, is_call, df))


def rho(
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> FloatArray:
    """Rho ``dV/dr = -tau V`` per 1.00 of rate, forward held constant.

    Parameters
    ----------
    forward, strike, tau, vol, is_call, discount : array_like
        As in :func:`price`.

    Returns
    -------
    ndarray
        Rho in USD per 1.00 of rate.
    """
    t = np.asarray(tau, dtype=np.float64)
    return np.asarray(-np.maximum(t, 0.0) * price(forward, strike, tau, vol, is_call, discount))


def inverse_price(
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> FloatArray:
    """Price of an inverse (coin-settled) option in coin: Black-76 USD price divided by F.

    Parameters
    ----------
    forward, strike, tau, vol, is_call, discount : array_like
        As in :func:`price`.

    Returns
    -------
    ndarray
        Price in coin per option on one coin (Deribit's ``mark_price`` convention).
    """
    f = np.asarray(forward, dtype=np.float64)
    return np.asarray(price(f, strike, tau, vol, is_call, discount) / f)


def inverse_delta(
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> FloatArray:
    """Deribit's coin delta of an inverse option: forward delta minus the coin price.

    Deribit calls this the *net transaction delta*: the coin exposure of a position once the coin
    premium itself is counted (``N(d1) - mark`` for a call).

    Parameters
    ----------
    forward, strike, tau, vol, is_call, discount : array_like
        As in :func:`price`.

    Returns
    -------
    ndarray
        Delta in coin per option on one coin.
    """
    return np.asarray(
        delta(forward, strike, tau, vol, is_call, discount)
        - inverse_price(forward, strike, tau, vol, is_call, discount)
    )


def greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> dict[str, FloatArray]:
    """Return price and every Greek in one dictionary.

    Parameters
    ----------
    forward, strike, tau, vol, is_call, discount : array_like
        As in :func:`price`.

    Returns
    -------
    dict of str to ndarray
        Keys ``price``, ``delta``, ``gamma``, ``vega``, ``theta``, ``rho``.
    """
    args = (forward, strike, tau, vol, is_call, discount)
    return {
        "price": price(*args),
        "delta": delta(*args),
        "gamma": gamma(*args),
        "vega": vega(*args),
        "theta": theta(*args),
        "rho": rho(*args),
    }
