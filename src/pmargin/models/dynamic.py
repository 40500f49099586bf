"""Dynamic overlay of the grid presets (issue 12.4a): price ranges scaled by the vol regime.

Each underlying's scenario price range (``grid.price_range``) is multiplied by a scale::

    regime = ATM implied vol (tenor ``tenor_days``) / reference_vol
    target = min(max(regime, floor), cap)
    scale  = target                                   (no previous scale)
           = max(floor, min(target, previous * (1 + max_increase)))   (else)

so the range follows the volatility regime within ``[floor, cap]``, and rises by at most
``max_increase`` (relative) per step, while it may fall at once. The speed limit needs the
previous step's scale: :func:`dynamic_scale` is a pure function of (previous scale, today's
regime) and the caller (the backtest, a service) carries the scale from one step to the next
(:meth:`pmargin.models.portfolio_margin.PortfolioMarginModel.with_previous_scale`).

A market without an implied vol for the underlying (a coin held only as collateral, say) uses
``cap``: missing data never makes margin smaller.
"""

from __future__ import annotations

import math

from pmargin.errors import InvalidInput
from pmargin.market import MarketSnapshot
from pmargin.models.params import DynamicParams

__all__ = ["MAX_PRICE_RANGE", "dynamic_scale", "vol_regime"]

MAX_PRICE_RANGE = 0.99
"""A scaled price range is clipped here (a -100 % move has no meaning for the grid)."""


def vol_regime(market: MarketSnapshot, underlying: str, p: DynamicParams) -> float | None:
    """Today's volatility regime: ATM implied vol at ``tenor_days`` over ``reference_vol``.

    Parameters
    ----------
    market : MarketSnapshot
        Market data.
    underlying : str
        Coin.
    p : DynamicParams
        Overlay parameters.

    Returns
    -------
    float or None
        The ratio (dimensionless), or None when the market has no implied vol for it.
    """
    if underlying not in market.underlyings:
        return None
    tau = p.tenor_days / 365.0
    try:
        fwd = market.forwards(underlying, [tau])
        iv = float(market.implied_vols(underlying, [tau], fwd)[0])
    except (KeyError, ValueError, InvalidInput):
        return None
    if not (math.isfinite(iv) and iv > 0):
        return None
    return iv / p.reference_vol


def dynamic_scale(previous: float | None, regime: float | None, p: DynamicParams) -> float:
    """Scale of the price range for today (module doc formula).

    Parameters
    ----------
    previous : float or None
        The previous step's scale (None on the first step: no speed limit).
    regime : float or None
        Today's regime (:func:`vol_regime`); None (no implied vol) gives ``cap``.
    p : DynamicParams
        Floor, cap and speed limit.

    Returns
    -------
    float
        Scale in ``[floor, cap]``.
    """
    if previous is not None and not (math.isfinite(previous) and previous > 0):
        raise InvalidInput("previous_scale", previous, "must be a positive number")
    if regime is not None and not (math.isfinite(regime) and regime >= 0):
        raise InvalidInput("regime", regime, "must be a non-negative number")
    target = p.cap if regime is None else min(max(regime, p.floor), p.cap)
    if previous is None:
        return target
    return max(p.floor, min(target, previous * (1.0 + p.max_increase)))
