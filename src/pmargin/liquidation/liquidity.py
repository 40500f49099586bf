r"""Liquidity cost of closing positions at once, with the liquidation engine's parameters.

The rule itself (half-spread plus linear price impact, the cost of closing
:math:`q\,c\,(P_{mark} - P_{exec}) \ge 0`) is stated once, in :mod:`pmargin.liquidity_cost`;
this module supplies its parameters per instrument kind (depth in USD of notional per 1 % of
price impact, half-spread floors when a quote is missing) and applies it to positions.

Currently implemented
---------------------
* :class:`LiquidityParams` from ``liquidity.toml`` (per-kind depth and half-spread floors).
* :func:`closing_cost`, vectorised over positions (numpy broadcasting): checks its inputs, looks
  up each kind's depth and floors and applies the one rule, :func:`pmargin.liquidity_cost.cost_rule`
  (which the models' concentration add-on also uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
from numpy.typing import ArrayLike
from pydantic import Field, model_validator

from pmargin._typing import FloatArray
from pmargin.errors import InvalidInput, MarketDataError
from pmargin.instruments import InstrumentKind
from pmargin.liquidation._params import FrozenParams, load_params_file
from pmargin.liquidity_cost import ClosingCost, KindLiquidity, cost_rule
from pmargin.validation import finite_array

__all__ = [
    "ClosingCost",
    "KindLiquidity",
    "LiquidityParams",
    "closing_cost",
    "load_liquidity_params",
]

class LiquidityParams(FrozenParams):
    """Liquidity cost parameters (``liquidity.toml``)."""

    schema_version: int = 1
    name: str
    source: str
    assumptions: tuple[str, ...] = ()
    impact_coefficient: float = Field(ge=0)
    """``k`` in ``impact = k |N| / depth``."""
    kinds: dict[InstrumentKind, KindLiquidity]

    @model_validator(mode="after")
    def _every_kind(self) -> Self:
        missing = [k.value for k in InstrumentKind if k not in self.kinds]
        if missing:
            raise ValueError(f"kinds is missing {missing}")
        return self

    def columns(self, kind: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Return depth, half-spread fraction floor and USD floor for each kind.

        Parameters
        ----------
        kind : InstrumentKind, str or array_like of them
            Instrument kinds (``"option"``, ``"future"``, ``"perpetual"``, ``"spot"``).

        Returns
        -------
        tuple of ndarray
            Three float arrays of the shape of ``kind``.

        Raises
        ------
        InvalidInput
            If a kind is unknown.
        """
        names = np.asarray(kind, dtype=object)
        flat = names.reshape(-1)
        uniq, inverse = np.unique(
            np.asarray([str(k) for k in flat], dtype=object), return_inverse=True
        )
        table = np.empty((len(uniq), 3), dtype=np.float64)
        for j, name in enumerate(uniq.tolist()):
            try:
                spec = self.kinds[InstrumentKind(name)]
            except ValueError as exc:
                allowed = [k.value for k in InstrumentKind]
                raise InvalidInput("kind", name, f"must be one of {allowed}") from exc
            table[j] = (
                spec.depth_usd_per_pct,
                spec.min_half_spread_fraction,
                spec.min_half_spread_usd,
            )
        rows = table[inverse.reshape(-1)]
        shape = names.shape
        return (rows[:, 0].reshape(shape), rows[:, 1].reshape(shape), rows[:, 2].reshape(shape))


def load_liquidity_params(path: str | Path | None = None) -> LiquidityParams:
    """Load liquidity cost parameters.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file; the shipped ``liquidity.toml`` when omitted (cached).

    Returns
    -------
    LiquidityParams
        Validated parameters.

    Raises
    ------
    ParamsError
        If the file is unreadable or invalid.
    """
    return load_params_file(LiquidityParams, "liquidity.toml", path)


def closing_cost(
    quantity: ArrayLike,
    mark_price: ArrayLike,
    bid: ArrayLike | None = None,
    ask: ArrayLike | None = None,
    *,
    kind: InstrumentKind | str | Sequence[InstrumentKind | str] | ArrayLike,
    contract_size: ArrayLike = 1.0,
    params: LiquidityParams | None = None,
) -> ClosingCost:
    """Return the execution price and cost of closing signed positions at once.

    Parameters
    ----------
    quantity : array_like
        Signed position to close (positive: long, closed by selling).
    mark_price : array_like
        Mark price, USD per unit, non-negative.
    bid, ask : array_like, optional
        Best quotes in USD; NaN (or omitted) when missing. A non-positive or crossed pair is
        treated as missing.
    kind : InstrumentKind, str or array_like of them
        Instrument kind of each position (selects depth and spread floors).
    contract_size : array_like
        Units of underlying per contract.
    params : LiquidityParams, optional
        Parameters; the shipped ``liquidity.toml`` when omitted.

    Returns
    -------
    ClosingCost
        Arrays of the broadcast shape of the inputs.

    Raises
    ------
    MarketDataError
        If a mark price is negative or not finite (a worthless option, mark 0, is closed at
        the spread floor: sold at 0, bought back at the floor).
    InvalidInput
        If a quantity or contract size is not finite, or a kind is unknown.
    """
    p = params or load_liquidity_params()
    q = finite_array(quantity, "quantity")
    mark = finite_array(mark_price, "mark_price", error=MarketDataError)
    size = finite_array(contract_size, "contract_size")
    if not np.all(mark >= 0):
        raise MarketDataError("mark_price", mark_price, "must not be negative")
    if not np.all(size > 0):
        raise InvalidInput("contract_size", contract_size, "must be positive and finite")
    try:  # quotes may be NaN (missing): only their type is checked here
        b = np.asarray(np.nan if bid is None else bid, dtype=np.float64)
        a = np.asarray(np.nan if ask is None else ask, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("bid/ask", (bid, ask), "must be numeric") from exc
    depth, floor_fraction, floor_usd = p.columns(kind)
    return cost_rule(q, mark, b, a, size, depth, floor_fraction, floor_usd,
                     p.impact_coefficient)
