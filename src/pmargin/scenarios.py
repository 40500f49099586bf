"""Scenario shock rules shared by every portfolio-margin model.

Currently implemented
---------------------
* Term-scaled volatility shocks ``1 +/- range * (pivot / max(DTE, floor)) ** p`` with a short- and a
  long-term exponent (Deribit, Paradex, Derive, OKX-style), multiplicative or additive.
* Tail weights ``factor * range / |move|`` (Deribit extended table, Paradex, Derive dampening).
* Skew (wing-rotation) vol multipliers of the LINEAR and ABS scenarios (Derive PMRM_2), with
  their parameter schema :class:`SkewShockParams` (used by the ``pmargin`` preset's grids and by
  the Derive model).

Grid construction from preset parameters lives in :mod:`pmargin.models.grid`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field

from pmargin._typing import BoolArray, FloatArray

__all__ = [
    "SkewShockParams",
    "skew_multipliers",
    "tail_weight",
    "term_scale",
    "vol_multiplier_down",
    "vol_multiplier_up",
]


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


class SkewShockParams(BaseModel):
    """Wing rotations of the LINEAR and ABS skew scenarios (Derive's ``SkewShock`` group).

    Field names are snake_case; the Derive case-file names (``LINEAR_SCALE_CAP`` ...) are
    accepted as aliases. Unknown keys are refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    linear_scale_cap: float = Field(alias="LINEAR_SCALE_CAP")
    """Cap of the LINEAR multiplier at ``tau = 0``."""
    linear_cbase: float = Field(alias="LINEAR_CBASE")
    """Slope of the LINEAR cap in ``sqrt(tau)``."""
    abs_scale_cap: float = Field(alias="ABS_SCALE_CAP")
    abs_cbase: float = Field(alias="ABS_CBASE")
    min_k_star: float = Field(ge=0.0, alias="MIN_K_STAR")
    """Floor on the width ``k*`` (log-moneyness)."""
    min_width_scale: float = Field(ge=0.0, alias="MIN_WIDTH_SCALE")
    vol_param_static: float = Field(alias="VOL_PARAM_STATIC")
    vol_param_scale: float = Field(alias="VOL_PARAM_SCALE")


def _capped(ratio: FloatArray, cap: FloatArray, positive: BoolArray) -> FloatArray:
    """``min(cap, ratio)`` where ``positive`` else ``max(-cap, ratio)``."""
    return np.asarray(np.where(positive, np.minimum(cap, ratio), np.maximum(-cap, ratio)))


def skew_multipliers(
    tau: ArrayLike, log_moneyness: ArrayLike, skew: SkewShockParams
) -> tuple[FloatArray, FloatArray]:
    """Vol multipliers of the LINEAR and ABS skew scenarios.

    Parameters
    ----------
    tau : array_like, shape (n,)
        Years to expiry of each option.
    log_moneyness : array_like, shape (n,)
        ``k = ln(K / F)`` with the unshocked forward.
    skew : SkewShockParams
        Caps and width parameters.

    Returns
    -------
    linear, abs : ndarray, shape (n,)
        ``1 + min(cap, k cap / k*)`` for ``k >= 0`` and ``1 + max(-cap, k cap / k*)`` for
        ``k < 0`` (with ``|k|`` for ABS), where ``cap = CBASE sqrt(tau) + SCALE_CAP`` and
        ``k* = max(MIN_K_STAR, MIN_WIDTH_SCALE sqrt(tau) (VOL_PARAM_STATIC + VOL_PARAM_SCALE
        sqrt(tau)))``. The shocked vol is ``vol * max(multiplier, 0)``. A zero ``k*`` is read
        as the limit (the cap binds).
    """
    st = np.sqrt(np.maximum(np.asarray(tau, dtype=np.float64), 0.0))
    k = np.asarray(log_moneyness, dtype=np.float64)
    kstar = np.maximum(
        skew.min_k_star,
        skew.min_width_scale * st * (skew.vol_param_static + skew.vol_param_scale * st),
    )
    safe = np.where(kstar > 0.0, kstar, 1.0)
    with np.errstate(invalid="ignore"):
        rel = np.where(k == 0.0, 0.0, np.where(kstar > 0.0, k / safe, np.sign(k) * np.inf))
        rel_abs = np.abs(rel)
        lin_cap = skew.linear_cbase * st + skew.linear_scale_cap
        abs_cap = skew.abs_cbase * st + skew.abs_scale_cap
        lin_ratio = np.where(rel == 0.0, 0.0, rel * lin_cap)
        abs_ratio = np.where(rel_abs == 0.0, 0.0, rel_abs * abs_cap)
    linear = 1.0 + _capped(lin_ratio, lin_cap, k >= 0.0)
    absolute = 1.0 + _capped(abs_ratio, abs_cap, np.ones_like(k, dtype=bool))
    return np.asarray(linear, dtype=np.float64), np.asarray(absolute, dtype=np.float64)
