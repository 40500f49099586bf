"""Implied vols of option marks given as prices, solved by :mod:`pmargin.pricing.implied_vol`.

The market layer has no solver of its own: it calls the package's one implied-vol module and
turns its failure codes into :class:`~pmargin.errors.MarketDataError` naming the mark.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from pmargin._typing import FloatArray
from pmargin.errors import MarketDataError
from pmargin.market.surface import MAX_VOL
from pmargin.pricing.implied_vol import ABOVE_UPPER_BOUND, BELOW_INTRINSIC, OK, REASONS, implied_vol

__all__ = ["MIN_SOLVED_VOL", "solve_implied_vol", "solve_implied_vols"]

MIN_SOLVED_VOL = 1e-6
"""Smallest implied vol accepted from a price; below it the price carries no time value."""


def solve_implied_vols(
    prices: ArrayLike, forwards: ArrayLike, strikes: ArrayLike, taus: ArrayLike,
    is_call: ArrayLike, fields: Sequence[str],
) -> FloatArray:
    """Black-76 implied vols of undiscounted USD option prices, all at once.

    Parameters
    ----------
    prices : array_like, shape (n,)
        Option premiums in USD per option on one unit of underlying.
    forwards, strikes : array_like, shape (n,)
        Forward and strike in USD.
    taus : array_like, shape (n,)
        Times to expiry in years (positive).
    is_call : array_like of bool, shape (n,)
        Call or put.
    fields : sequence of str, length n
        The field of each price, named in errors.

    Returns
    -------
    ndarray, shape (n,)
        Implied vols in ``[MIN_SOLVED_VOL, MAX_VOL]`` (decimal), to the relative tolerance
        1e-12 of :func:`pmargin.pricing.implied_vol.implied_vol`.

    Raises
    ------
    MarketDataError
        On the first price (in input order) outside the no-arbitrage bounds
        ``intrinsic < price < F`` (call) or ``intrinsic < price < K`` (put), equal to intrinsic
        value, implying a vol outside ``[MIN_SOLVED_VOL, MAX_VOL]``, or not solved.
    """
    p = np.asarray(prices, dtype=np.float64).reshape(-1)
    f = np.asarray(forwards, dtype=np.float64).reshape(-1)
    k = np.asarray(strikes, dtype=np.float64).reshape(-1)
    t = np.asarray(taus, dtype=np.float64).reshape(-1)
    c = np.asarray(is_call, dtype=bool).reshape(-1)
    if p.size == 0:
        return np.zeros(0)
    res = implied_vol(p, f, k, t, c)
    vol = res.vol
    bad = ~res.ok | ~(vol >= MIN_SOLVED_VOL) | ~(vol <= MAX_VOL)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        _raise(fields[i], float(p[i]), float(f[i]), float(k[i]), bool(c[i]),
               int(res.reason[i]), float(vol[i]))
    return vol


def solve_implied_vol(
    price: float, forward: float, strike: float, tau: float, is_call: bool,
    field: str = "mark_price",
) -> float:
    """Black-76 implied vol of one undiscounted USD option price.

    Parameters
    ----------
    price : float
        Option premium in USD per option on one unit of underlying.
    forward, strike : float
        Forward and strike in USD.
    tau : float
        Time to expiry in years (positive).
    is_call : bool
        Call or put.
    field : str
        Field named in errors.

    Returns
    -------
    float
        Implied vol in ``[MIN_SOLVED_VOL, MAX_VOL]``.

    Raises
    ------
    MarketDataError
        As :func:`solve_implied_vols`.
    """
    return float(solve_implied_vols([price], [forward], [strike], [tau], [is_call], [field])[0])


def _raise(field: str, price: float, forward: float, strike: float, is_call: bool,
           reason: int, vol: float) -> None:
    intrinsic = max(forward - strike, 0.0) if is_call else max(strike - forward, 0.0)
    upper = forward if is_call else strike
    what = "call" if is_call else "put"
    if reason == BELOW_INTRINSIC and price < intrinsic:
        raise MarketDataError(
            field, price,
            f"is below the {what}'s intrinsic value {intrinsic:.10g} (forward {forward:.10g}, "
            f"strike {strike:.10g}): an arbitrage price, no implied volatility exists",
        )
    if reason == ABOVE_UPPER_BOUND:
        raise MarketDataError(
            field, price,
            f"is at or above the {what}'s upper bound {upper:.10g} "
            f"({'forward' if is_call else 'strike'}): an arbitrage price",
        )
    if reason == BELOW_INTRINSIC or (reason == OK and vol < MIN_SOLVED_VOL):
        raise MarketDataError(
            field, price,
            f"equals the intrinsic value {intrinsic:.10g} (implied volatility below "
            f"{MIN_SOLVED_VOL:g}, effectively zero); give mark_iv instead",
        )
    if reason == OK:
        raise MarketDataError(field, price,
                              f"implies a volatility above {MAX_VOL:g} ({MAX_VOL:.0%}); "
                              "is the price in USD per unit of underlying?")
    raise MarketDataError(field, price,
                          f"no implied volatility: {REASONS.get(reason, 'unknown failure')} "
                          f"(forward {forward:.10g}, strike {strike:.10g})")
