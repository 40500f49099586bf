"""Scenario shock rules shared by every portfolio-margin model.

Currently implemented
---------------------
* Term-scaled volatility shocks ``1 +/- range * (pivot / max(DTE, floor)) ** p`` with a short- and a
  long-term exponent (Deribit, Paradex, Derive, OKX-style), multiplicative or additive.
* Tail weights ``factor * range / |move|`` (Deribit extended table, Paradex, Derive dampening).

Grid construction from preset parameters lives in :mod:`pmargin.models.grid`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from pmargin._typing import FloatArray

__all__ = ["tail_weight", "term_scale", "vol_multiplier_down", "vol_multiplier_up"]


def term_scale(
    dte_days: ArrayLike,
    *,
    short_power: float,
    long_power: float,
    floor_days: float = 1.0,
    pivot_days: float = 30.0,
    short_inclusive: bool = False,
) -> FloatArray:
    r"""Return the term scaling ``(pivot / max(DTE, floor)) ** p`` of a volatility shock.

    Parameters
    ----------
    dte_days : array_like
        Days to expiry (may be fractional).
    short_power, long_power : float
        Exponent below (short) and at or above (long) the pivot.
    floor_days : float, default 1.0
        Floor on days to expiry, so expiring options get a finite shock.
    pivot_days : float, default 30.0
        Tenor at which the scale is 1.
    short_inclusive : bool, default False
        If True the short exponent applies at ``DTE <= pivot`` (Derive); otherwise at
        ``DTE < pivot`` (Deribit, Paradex).

    Returns
    -------
    ndarray
        The scale, 1 at the pivot.
    """
    d = np.asarray(dte_days, dtype=np.float64)
    short = d <= pivot_days if short_inclusive else d < pivot_days
    p = np.where(short, short_power, long_power)
    return np.asarray((pivot_days / np.maximum(d, floor_days)) ** p)


def vol_multiplier_up(vol_range_up: float, scale: ArrayLike) -> FloatArray:
    """Multiplier of an upward vol shock: ``1 + range * scale``.

    Parameters
    ----------
    vol_range_up : float
        Relative shock at the pivot tenor (0.5 = +50%).
    scale : array_like
        Output of :func:`term_scale`.

    Returns
    -------
    ndarray
        Multiplier on implied volatility.
    """
    return np.asarray(1.0 + vol_range_up * np.asarray(scale, dtype=np.float64))


def vol_multiplier_down(vol_range_down: float, scale: ArrayLike) -> FloatArray:
    """Multiplier of a downward vol shock: ``max(0, 1 - range * scale)``.

    Parameters
    ----------
    vol_range_down : float
        Relative shock at the pivot tenor (0.25 = -25%).
    scale : array_like
        Output of :func:`term_scale`.

    Returns
    -------
    ndarray
        Multiplier on implied volatility, never negative.
    """
    return np.asarray(np.maximum(0.0, 1.0 - vol_range_down * np.asarray(scale, dtype=np.float64)))


def tail_weight(move: ArrayLike, price_range: float, factor: float = 1.0) -> FloatArray:
    """Weight of an extended (tail) move: ``factor * range / |move|`` (1 inside the range).

    Parameters
    ----------
    move : array_like
        Relative price moves (-0.66 = -66%).
    price_range : float
        Largest move of the standard grid.
    factor : float, default 1.0
        Extra multiplier (Deribit ``extended_table_factor``; Derive's 0.2).

    Returns
    -------
    ndarray
        Weights in (0, factor].
    """
    m = np.abs(np.asarray(move, dtype=np.float64))
    scaled = price_range / np.where(m > 0, m, 1.0)
    return np.asarray(factor * np.where(m > price_range, scaled, 1.0))
