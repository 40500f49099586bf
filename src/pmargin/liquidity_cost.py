r"""The one liquidity cost rule: the cost of closing a position at once (half-spread + impact).

The price at which a position can be unwound is the mark moved against the closer by half the
bid/ask spread and by a linear price impact:

.. math::

    P_{exec} = P_{mark} \mp \left(h + \frac{k\,|N|}{D}\,1\%\,P_{mark}\right),
    \qquad N = |q|\,c\,P_{mark},

with :math:`h` the half-spread (from the quotes, or a floor when a quote is missing), :math:`D`
the depth in USD of notional per 1 % of price impact and :math:`k` a coefficient. The cost of
closing is :math:`q\,c\,(P_{mark} - P_{exec}) \ge 0`; a long is never sold below 0.

This module holds only the arithmetic and the per-kind parameter schema, with no file and no
market: the liquidation engine (:mod:`pmargin.liquidation.liquidity`, depths per instrument kind
from ``liquidity.toml``) and the models' concentration add-on (:mod:`pmargin.models.liquidity`,
depths per instrument from open interest and volume) both call :func:`cost_rule`, so the two
can never price a close-out differently for the same depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field

from pmargin._typing import BoolArray, FloatArray

__all__ = ["PERCENT", "ClosingCost", "KindLiquidity", "cost_rule"]

PERCENT = 0.01
"""Depth is quoted per 1 % of price: a unit conversion, not a parameter."""


class KindLiquidity(BaseModel):
    """Liquidity of one instrument kind (depth and half-spread floors)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    depth_usd_per_pct: float = Field(gt=0)
    """USD notional that moves the price by 1 %."""
    min_half_spread_fraction: float = Field(ge=0)
    """Half-spread as a fraction of mark when the bid or ask is missing."""
    min_half_spread_usd: float = Field(ge=0)
    """Absolute floor of that half-spread, USD in price units."""


@dataclass(frozen=True, slots=True)
class ClosingCost:
    """Execution price and cost of closing positions (arrays of the broadcast shape).

    Parameters
    ----------
    execution_price : ndarray
        Price at which the position is closed, USD per unit (never below 0).
    half_spread : ndarray
        Half-spread used, USD per unit.
    impact : ndarray
        Price impact, USD per unit.
    notional_usd : ndarray
        ``|quantity| * contract_size * mark_price``.
    cost_usd : ndarray
        ``quantity * contract_size * (mark_price - execution_price)``, non-negative.
    quote_missing : ndarray of bool
        Where the half-spread floor was used because a quote was missing or crossed.
    """

    execution_price: FloatArray
    half_spread: FloatArray
    impact: FloatArray
    notional_usd: FloatArray
    cost_usd: FloatArray
    quote_missing: BoolArray

    @property
    def total_cost_usd(self) -> float:
        """Sum of the costs."""
        return float(np.sum(self.cost_usd))


def cost_rule(quantity: ArrayLike, mark: ArrayLike, bid: ArrayLike, ask: ArrayLike,
              contract_size: ArrayLike, depth: ArrayLike, floor_fraction: ArrayLike,
              floor_usd: ArrayLike, impact_coefficient: float) -> ClosingCost:
    """Return the execution price and cost of closing signed positions at once (the rule).

    Inputs are broadcast together; they are assumed checked by the caller (finite quantities
    and marks, marks >= 0, contract sizes and depths > 0).

    Parameters
    ----------
    quantity : array_like
        Signed position to close (positive: long, closed by selling), contracts.
    mark : array_like
        Mark price, USD per unit of underlying.
    bid, ask : array_like
        Best quotes, USD per unit; NaN when missing. A non-positive or crossed pair is treated as
        missing (the half-spread is then the floor).
    contract_size : array_like
        Units of underlying per contract.
    depth : array_like
        ``D``: USD notional per 1 % of price impact.
    floor_fraction, floor_usd : array_like
        Half-spread floor ``max(floor_fraction * mark, floor_usd)`` used when a quote is missing.
    impact_coefficient : float
        ``k``.

    Returns
    -------
    ClosingCost
        Arrays of the broadcast shape of the inputs.
    """
    q, mark_, size, b, a, d, ff, fu = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (quantity, mark, contract_size, bid, ask,
                                                    depth, floor_fraction, floor_usd)))
    with np.errstate(invalid="ignore"):
        quoted = np.isfinite(b) & np.isfinite(a) & (b > 0) & (a >= b)
    floor = np.maximum(ff * mark_, fu)
    half_spread = np.where(
        quoted, 0.5 * (np.where(quoted, a, 0.0) - np.where(quoted, b, 0.0)), floor
    )
    notional = np.abs(q) * size * mark_
    impact = impact_coefficient * notional / d * PERCENT * mark_
    side = np.sign(q)
    execution = np.where(
        side > 0,
        np.maximum(mark_ - half_spread - impact, 0.0),
        np.where(side < 0, mark_ + half_spread + impact, mark_),
    )
    cost = q * size * (mark_ - execution)
    return ClosingCost(
        execution_price=np.asarray(execution, dtype=np.float64),
        half_spread=np.asarray(half_spread, dtype=np.float64),
        impact=np.asarray(impact, dtype=np.float64),
        notional_usd=np.asarray(notional, dtype=np.float64),
        cost_usd=np.asarray(cost, dtype=np.float64),
        quote_missing=np.asarray(~quoted, dtype=np.bool_),
    )
