r"""Liquidity risk options of any model: concentration add-on and liquidation-period scaling.

Simple risk arrays price every position as if it could be closed at the mark within the margin
period of risk, whatever its size. Two options (off in every venue preset) charge what they
overlook; docs/models/liquidity-risk.md gives the formulas, units and an example.

* **Concentration / liquidity add-on** (:class:`~pmargin.models.params.ConcentrationParams`):
  for each position, the cost of closing it at once by the one liquidity cost rule
  (:func:`pmargin.liquidity_cost.cost_rule`, the liquidation engine's), with the depth of the
  instrument itself from its open interest ``OI`` and 24-hour volume ``V`` (contracts)::

      L = oi_share * OI + volume_share * V                 units per 1 % of price impact
      D = max(min_depth_fraction * D_kind, min(D_kind, L * mark))      USD per 1 %

  A missing ``OI`` or ``V`` counts as 0: it can only lower ``D`` (raise the cost), never the
  margin. The add-on of an account is the sum over its positions, in the margin currency; each
  model then cuts it to the room its loss-bound cap leaves (a bounded holding is never asked for
  more than it can lose).
* **Liquidation-period scaling** (:class:`~pmargin.models.params.LiquidationPeriodParams`):
  ``m = min(max_multiple, max(1, max_i |q_i| / (participation * V_i)))`` per account (the
  slowest position sets how long the account takes to close; no volume: ``max_multiple``), and
  the model's risk measure is scaled by ``sqrt(m)`` (the square-root-of-time rule of liquidity
  horizons).

Both are computed per cell of the positions' CSR arrays and summed (or maxed) per row in cell
order, so an account gets the same figure in any book.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pmargin._typing import BoolArray, FloatArray, IntArray
from pmargin.instruments import InstrumentKind
from pmargin.liquidity_cost import cost_rule
from pmargin.market import MarketSnapshot
from pmargin.models.params import ConcentrationParams, LiquidationPeriodParams
from pmargin.models.valuation import InstrumentTable

__all__ = [
    "ConcentrationColumns",
    "concentration_addon",
    "concentration_cells",
    "concentration_columns",
    "grid_scale",
    "instrument_depth",
    "period_columns",
    "period_multiple",
]


def _activity(t: InstrumentTable, market: MarketSnapshot) -> tuple[FloatArray, FloatArray]:
    """Open interest and 24-hour volume of every column (contracts; NaN where missing)."""
    oi = np.full(t.n, np.nan)
    vol = np.full(t.n, np.nan)
    for j, inst in enumerate(t.instruments):
        o, v = market.activity(inst)
        oi[j] = np.nan if o is None else o
        vol[j] = np.nan if v is None else v
    return oi, vol


def instrument_depth(open_interest: FloatArray, volume: FloatArray, mark: FloatArray,
                     kind_depth: FloatArray, params: ConcentrationParams) -> FloatArray:
    """Depth of each instrument, USD of notional per 1 % of price impact.

    Parameters
    ----------
    open_interest, volume : ndarray, shape (n,)
        Contracts (units of underlying); NaN or negative where missing (counted as 0).
    mark : ndarray, shape (n,)
        Mark, USD per unit.
    kind_depth : ndarray, shape (n,)
        ``D_kind`` of each instrument's kind, USD per 1 %.
    params : ConcentrationParams
        ``oi_share``, ``volume_share``, ``min_depth_fraction``.

    Returns
    -------
    ndarray, shape (n,)
        ``max(min_depth_fraction * D_kind, min(D_kind, L * mark))``, always > 0.
    """
    def known(x: FloatArray) -> FloatArray:
        return np.where(np.isfinite(x) & (x > 0.0), x, 0.0)

    units = params.oi_share * known(open_interest) + params.volume_share * known(volume)
    own = np.minimum(kind_depth, units * np.maximum(mark, 0.0))
    return np.asarray(np.maximum(params.min_depth_fraction * kind_depth, own), np.float64)


@dataclass(frozen=True)
class ConcentrationColumns:
    """Per-column inputs of the concentration add-on for one prepared market.

    Attributes
    ----------
    charged : ndarray of bool, shape (columns,)
        Columns of a listed kind that are not expired.
    mark, bid, ask : ndarray, shape (columns,)
        USD per unit (bid/ask NaN where missing).
    depth, floor_fraction, floor_usd : ndarray, shape (columns,)
        Depth ``D_i`` (USD per 1 %) and half-spread floors.
    open_interest, volume : ndarray, shape (columns,)
        As supplied (NaN where missing), for the explanation.
    impact_coefficient : float
        ``k``.
    mc_price : float
        USD price of the margin currency (the add-on is reported in the margin currency).
    mm_fraction : float
        Share of the add-on added to MM.
    """

    charged: BoolArray
    mark: FloatArray
    bid: FloatArray
    ask: FloatArray
    depth: FloatArray
    floor_fraction: FloatArray
    floor_usd: FloatArray
    open_interest: FloatArray
    volume: FloatArray
    impact_coefficient: float
    mc_price: float
    mm_fraction: float


def concentration_columns(t: InstrumentTable, market: MarketSnapshot,
                          params: ConcentrationParams) -> ConcentrationColumns:
    """Build the per-column inputs of the add-on (once per market update).

    Parameters
    ----------
    t : InstrumentTable
        Market inputs of the book's columns.
    market : MarketSnapshot
        Quotes, open interest and volume.
    params : ConcentrationParams
        The add-on's parameters.

    Returns
    -------
    ConcentrationColumns
        Arrays over the columns.
    """
    n = t.n
    charged = np.zeros(n, bool)
    kind_depth = np.ones(n)
    ff = np.zeros(n)
    fu = np.zeros(n)
    bid = np.full(n, np.nan)
    ask = np.full(n, np.nan)
    for j, inst in enumerate(t.instruments):
        spec = params.kinds.get(InstrumentKind(inst.kind))
        if spec is None or bool(t.expired[j]):
            continue
        charged[j] = True
        kind_depth[j] = spec.depth_usd_per_pct
        ff[j] = spec.min_half_spread_fraction
        fu[j] = spec.min_half_spread_usd
        b, a = market.quote(inst)
        bid[j] = np.nan if b is None else b
        ask[j] = np.nan if a is None else a
    oi, vol = _activity(t, market)
    mark = np.asarray(t.mark, np.float64)
    return ConcentrationColumns(charged, mark, bid, ask,
                                instrument_depth(oi, vol, mark, kind_depth, params), ff, fu,
                                oi, vol, params.impact_coefficient, float(t.mc_price),
                                params.mm_fraction)


def _row_of_cell(indptr: IntArray) -> IntArray:
    return np.repeat(np.arange(indptr.size - 1), np.diff(indptr))


def concentration_cells(c: ConcentrationColumns, indices: IntArray, data: FloatArray
                        ) -> FloatArray:
    """Add-on of each stored cell (position), margin currency, shape (cells,)."""
    if indices.size == 0:
        return np.zeros(0)
    cc = cost_rule(data, c.mark[indices], c.bid[indices], c.ask[indices], 1.0,
                   c.depth[indices], c.floor_fraction[indices], c.floor_usd[indices],
                   c.impact_coefficient)
    return np.asarray(np.where(c.charged[indices], cc.cost_usd, 0.0) / c.mc_price, np.float64)


def concentration_addon(c: ConcentrationColumns, indptr: IntArray, indices: IntArray,
                        data: FloatArray) -> FloatArray:
    """Concentration add-on of every row of CSR positions, in the margin currency.

    Parameters
    ----------
    c : ConcentrationColumns
        Output of :func:`concentration_columns` for the book's columns.
    indptr, indices, data : ndarray
        CSR arrays of the positions (``data``: signed quantities, units of underlying).

    Returns
    -------
    ndarray, shape (rows,)
        Sum over each row's positions of the cost of closing them at once (>= 0).
    """
    n = int(indptr.size - 1)
    cells = concentration_cells(c, np.asarray(indices), np.asarray(data, np.float64))
    if cells.size == 0:
        return np.zeros(n)
    return np.asarray(np.bincount(_row_of_cell(np.asarray(indptr)), weights=cells, minlength=n),
                      np.float64)


def period_columns(t: InstrumentTable, market: MarketSnapshot,
                   params: LiquidationPeriodParams) -> FloatArray:
    """Units of each column a liquidator can trade per day: ``participation * V``.

    Parameters
    ----------
    t : InstrumentTable
        The book's columns.
    market : MarketSnapshot
        24-hour volumes.
    params : LiquidationPeriodParams
        ``participation`` and the kinds concerned.

    Returns
    -------
    ndarray, shape (columns,)
        ``inf`` for kinds not listed and expired columns (they never lengthen the period); 0
        where the volume is missing or not positive (they take ``max_multiple``).
    """
    _, vol = _activity(t, market)
    listed = np.array([InstrumentKind(i.kind) in params.kinds for i in t.instruments], bool)
    known = np.where(np.isfinite(vol) & (vol > 0.0), vol, 0.0)
    daily = np.where(listed & ~np.asarray(t.expired, bool), params.participation * known, np.inf)
    return np.asarray(daily, np.float64)


def period_multiple(daily: FloatArray, indptr: IntArray, indices: IntArray, data: FloatArray,
                    max_multiple: float) -> FloatArray:
    """``MPOR_eff / MPOR`` of every row: ``min(max_multiple, max(1, max |q| / daily))``.

    Parameters
    ----------
    daily : ndarray, shape (columns,)
        Output of :func:`period_columns`.
    indptr, indices, data : ndarray
        CSR arrays of the positions.
    max_multiple : float
        Cap (also the multiple of a position without volume).

    Returns
    -------
    ndarray, shape (rows,)
        At least 1, at most ``max_multiple``.
    """
    n = int(indptr.size - 1)
    out = np.ones(n)
    if len(indices) == 0:
        return out
    q = np.abs(np.asarray(data, np.float64))
    d = daily[np.asarray(indices)]
    with np.errstate(divide="ignore", invalid="ignore"):
        days = np.where(q > 0.0, q / d, 0.0)
    np.maximum.at(out, _row_of_cell(np.asarray(indptr)), days)
    return np.minimum(out, max_multiple)


def grid_scale(multiple: FloatArray, step: float) -> FloatArray:
    """Scale of a grid preset's moves: ``sqrt(multiple)`` rounded up to a multiple of ``step``.

    Parameters
    ----------
    multiple : ndarray, shape (rows,)
        ``MPOR_eff / MPOR`` (>= 1).
    step : float
        Rounding step (> 0).

    Returns
    -------
    ndarray, shape (rows,)
        Exactly 1 where ``multiple`` is 1, else ``ceil(sqrt(multiple) / step) * step`` (>= 1).
    """
    root = np.sqrt(np.maximum(multiple, 1.0))
    up = np.ceil(root / step - 1e-9) * step
    return np.asarray(np.where(multiple <= 1.0, 1.0, np.maximum(up, 1.0)), np.float64)
