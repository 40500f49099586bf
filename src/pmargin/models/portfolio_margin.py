"""Portfolio (risk-array) margin: full revaluation under scenario grids, tails and add-ons.

Currently implemented
---------------------
* Risk arrays per underlying (risk unit): every instrument and collateral currency revalued with
  Black-76 under every scenario, P&L per unit in the margin currency.
* Account P&L per scenario as a sparse matrix product; extended scenarios weighted by
  ``factor * range / |move|``, re-expressed at the range edge and dampened by a USD amount
  (Deribit); explicitly weighted scenarios (Paradex tails, SPAN extremes, OKX MR6).
* Add-ons per risk unit: roll (basis) shock per expiry bucket, delta (liquidity) shock, per-strike
  naked-short contingency, futures/perpetual contingency, Paradex minimum delta requirement and
  OKX MR7-style tiered minimum charge.
* IM/MM composition ``mm_from_im`` (MM = k x IM) or ``im_from_mm`` (IM = k x MM); open orders as
  if filled (worse side); collateral haircuts.

Risk units are margined separately and added (no diversification across underlyings).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray, IntArray
from pmargin.book import Book
from pmargin.market import MarketSnapshot
from pmargin.models._pm_compose import COMPONENTS, PackedTerms, compose, pack_terms
from pmargin.models._pm_kernels import (
    NUMBA_ENABLED,
    PackedUnits,
    book_pass,
    pack_units,
)
from pmargin.models.accounts import (
    CollateralTerms,
    collateral_terms,
    greek_weights,
    open_orders_im,
    position_values,
    value_weights,
    values_and_greeks,
)
from pmargin.models.base import MarginModel, position_frame
from pmargin.models.dynamic import MAX_PRICE_RANGE, dynamic_scale, vol_regime
from pmargin.models.grid import ScenarioGrid, build_grid, shocked_vol
from pmargin.models.liquidity import (
    ConcentrationColumns,
    concentration_addon,
    concentration_cells,
    concentration_columns,
    grid_scale,
    period_columns,
    period_multiple,
)
from pmargin.models.loss_bound import BoundTerms, loss_bound
from pmargin.models.params import PMParams, UnderlyingPMParams
from pmargin.models.result import AccountMargin, BookMarginResult, Columns
from pmargin.models.revaluation import bound_terms, option_columns, revalue
from pmargin.models.valuation import (
    KIND_FUTURE,
    KIND_OPTION,
    KIND_PERPETUAL,
    InstrumentTable,
    is_stable,
)
from pmargin.portfolio import Portfolio

__all__ = ["PMPrepared", "PortfolioMarginModel", "RiskUnit", "RowsCSR", "build_risk_units"]

ADDONS = ("roll_shock", "delta_shock", "naked_short", "perp_contingency")


@dataclass(frozen=True)
class RiskUnit:
    """Risk arrays of one underlying.

    Attributes
    ----------
    underlying : str
        Coin.
    params : UnderlyingPMParams
        Its parameters.
    grid : ScenarioGrid
        Its scenarios.
    columns : ndarray of int
        Book columns (instruments) of this underlying.
    risk : ndarray, shape (len(columns), scenarios)
        Weighted P&L per unit held, margin currency.
    collateral_risk : ndarray, shape (collateral currencies, scenarios)
        Weighted P&L per unit of each collateral currency.
    damp : ndarray, shape (scenarios,)
        Dampener of each scenario in the margin currency.
    index : float
        Index price of the underlying (USD).
    coin_to_mc : float
        Value of one coin of the underlying in the margin currency.
    colmap : ndarray of int
        Book column to row of ``risk`` (-1 for columns of other units).
    delta : ndarray
        Coin delta per unit of each column of the unit (0 for expired instruments).
    bucket, n_buckets, roll_rate : ndarray, int, ndarray
        Expiry bucket of each column (perpetual its own) and the roll-shock rate of each bucket
        (no buckets when the roll shock is disabled).
    group, n_groups : ndarray, int
        (expiry, strike) group of each option column for the naked-short contingency (-1 for
        non-options; no groups when the contingency is disabled).
    is_lin : ndarray of bool
        Futures and perpetual columns.
    bound : BoundTerms or None
        Inputs of the largest-possible-loss cap (:mod:`pmargin.models.loss_bound`).
    """

    underlying: str
    params: UnderlyingPMParams
    grid: ScenarioGrid
    columns: IntArray
    risk: FloatArray
    collateral_risk: FloatArray
    damp: FloatArray
    index: float
    coin_to_mc: float
    colmap: IntArray
    delta: FloatArray
    bucket: IntArray
    n_buckets: int
    roll_rate: FloatArray
    group: IntArray
    n_groups: int
    is_lin: np.ndarray
    bound: BoundTerms | None = None


@dataclass(frozen=True)
class PMPrepared:
    """What one market update prepares: the instrument table and the risk units."""

    table: InstrumentTable
    units: list[RiskUnit]
    market: MarketSnapshot
    collateral: CollateralTerms
    dynamic_scale: dict[str, float] | None = None
    """Price-range scale per risk unit when the dynamic overlay is on (carry it to the next
    step with :meth:`PortfolioMarginModel.with_previous_scale`)."""
    concentration: ConcentrationColumns | None = None
    """Per-column inputs of the concentration add-on (None: off)."""
    period_daily: FloatArray | None = None
    """Units of each column a liquidator trades per day (liquidation-period scaling; None: off)."""
    book: Book | None = None
    """The book prepared (its columns and collateral currencies rebuild widened grids for the
    liquidation-period scaling; None when the scaling is off)."""


@dataclass(frozen=True)
class RowsCSR:
    """Bare CSR arrays of a few account rows (the what-if fast path builds these directly)."""

    indptr: IntArray
    indices: IntArray
    data: FloatArray

    @property
    def shape(self) -> tuple[int, int]:
        """Rows; the column count is not needed by the kernels."""
        return (int(self.indptr.size - 1), -1)


def _price_ratio(ccy: str, unit: str, move: FloatArray, market: MarketSnapshot) -> FloatArray:
    """USD price of ``ccy`` under each scenario of ``unit`` (moves only the unit's coin)."""
    px = market.collateral_price(ccy)
    return np.asarray(px * (1.0 + move) if ccy == unit else np.full(move.shape, px))


def build_risk_units(book: Book, t: InstrumentTable, market: MarketSnapshot, params: PMParams,
                     scales: dict[str, float] | None = None) -> list[RiskUnit]:
    """Revalue every instrument and collateral currency of a book under every scenario.

    Parameters
    ----------
    book : Book
        Accounts (only its columns and collateral currencies are used).
    t : InstrumentTable
        Market inputs of the columns.
    market : MarketSnapshot
        Market data (index and collateral prices).
    params : PMParams
        Model parameters.
    scales : dict of str to float, optional
        Multiplier of each unit's ``grid.price_range`` (dynamic overlay; clipped at
        ``MAX_PRICE_RANGE``); units not listed are unscaled.

    Returns
    -------
    list of RiskUnit
        One per underlying held or per non-stable collateral currency.
    """
    mc = book.margin_currency
    units: list[str] = sorted({str(u) for u in t.underlying}
                              | {c for c in book.collateral_currencies if not is_stable(c)})
    out: list[RiskUnit] = []
    for u in units:
        up = params.for_underlying(u)
        if scales is not None and u in scales:
            g = up.grid
            rng = min(g.price_range * scales[u], MAX_PRICE_RANGE)
            up = up.model_copy(update={"grid": g.model_copy(update={"price_range": rng})})
        grid = build_grid(up)
        m = grid.move
        cols = np.flatnonzero(t.underlying == u)
        p_mc = _price_ratio(mc, u, m, market)           # (S,)
        p_mc0 = market.collateral_price(mc)
        edge_mc = _price_ratio(mc, u, grid.edge_move, market)
        # extended scenarios: re-express at the range edge (coin margin), then weight
        scale = grid.weight * np.where(grid.extended, p_mc / edge_mc, 1.0)
        risk = _instrument_risk(t, cols, grid, up, p_mc, p_mc0, u, market)
        risk *= scale[None, :]
        coll = np.zeros((len(book.collateral_currencies), grid.size))
        for k, c in enumerate(book.collateral_currencies):
            pc = _price_ratio(c, u, m, market)
            coll[k] = (pc / p_mc - market.collateral_price(c) / p_mc0) * scale
        damp = np.where(grid.extended, grid.dampener_usd / edge_mc, 0.0)
        index = market.index_price(u)
        out.append(RiskUnit(u, up, grid, cols, risk, coll, damp, index, index / p_mc0,
                            *_column_maps(t, cols, up, book.n_instruments),
                            bound=bound_terms(t, cols, u, mc, p_mc0)))
    return out


def _column_maps(t: InstrumentTable, cols: IntArray, up: UnderlyingPMParams, n_cols: int
                 ) -> tuple[IntArray, FloatArray, IntArray, int, FloatArray, IntArray, int,
                            np.ndarray]:
    """Per-column lookup arrays of a unit used by the add-ons (see :class:`RiskUnit`)."""
    colmap = np.full(n_cols, -1, np.int64)
    colmap[cols] = np.arange(cols.size)
    delta = np.where(t.expired[cols], 0.0, t.coin_delta()[cols])
    bucket = np.zeros(cols.size, np.int64)
    rate = np.zeros(0)
    if up.roll_shock is not None and cols.size:
        keys, bucket = np.unique(t.expiry_key[cols], return_inverse=True)
        bucket = bucket.ravel().astype(np.int64)
        tau_b = np.zeros(keys.size)
        np.maximum.at(tau_b, bucket, t.tau[cols])
        rs = up.roll_shock
        f = (np.expm1(rs.annualised_move_risk * tau_b) if rs.form == "exp"
             else rs.annualised_move_risk * tau_b)
        rate = np.maximum(rs.min_annualised_move, f)
    group = np.full(cols.size, -1, np.int64)
    n_groups = 0
    opt = t.kind[cols] == KIND_OPTION
    if up.naked_short is not None and opt.any():
        pairs = np.stack([t.expiry_key[cols][opt].astype(np.float64), t.strike[cols][opt]], axis=1)
        _, g = np.unique(pairs, axis=0, return_inverse=True)
        group[opt] = g.ravel()
        n_groups = int(g.max()) + 1
    is_lin = (t.kind[cols] == KIND_FUTURE) | (t.kind[cols] == KIND_PERPETUAL)
    return colmap, delta, bucket, int(rate.size), rate, group, n_groups, is_lin


def _instrument_risk(t: InstrumentTable, cols: IntArray, grid: ScenarioGrid,
                     up: UnderlyingPMParams, p_mc: FloatArray, p_mc0: float, unit: str,
                     market: MarketSnapshot) -> FloatArray:
    """Unweighted P&L per unit (margin currency) of the given columns under every scenario."""
    o = option_columns(t, cols)
    sig_s = shocked_vol(t.vol[o], t.tau[o], grid.vol_mode, up.vol_shock,
                        np.log(t.strike[o] / t.forward[o]), up.grid.skew)
    return revalue(t, cols, grid.move, sig_s, grid.horizon_days, p_mc, p_mc0, unit, market)


def _damped(pnl: FloatArray, damp: FloatArray) -> FloatArray:
    """Move each P&L toward zero by its dampener (never across zero)."""
    return np.asarray(np.sign(pnl) * np.maximum(np.abs(pnl) - damp[None, :], 0.0))


def _total(first: FloatArray, *terms: FloatArray | None) -> FloatArray:
    """``first`` plus the given terms, added left to right into one new array (None: skipped).

    ``first`` itself is returned when there is nothing to add (callers pass an array they own).
    """
    out: FloatArray | None = None
    for x in terms:
        if x is not None:
            if out is None:
                out = first + x
            else:
                out += x
    return first if out is None else out


def _tiered(raw: FloatArray, tiers: list[tuple[float, float]]) -> FloatArray:
    """Apply a piecewise multiplier schedule to raw amounts (OKX MR7 scaling)."""
    out = np.zeros_like(raw)
    lower = 0.0
    for upper, mult in tiers:
        out += np.clip(raw - lower, 0.0, upper - lower) * mult
        lower = upper
    return out


def _capped(unit: RiskUnit, pos: sp.csr_matrix | RowsCSR, coll: FloatArray,
            gross_linear: FloatArray, im: FloatArray, mm: FloatArray,
            cap: FloatArray | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cap IM and MM of one unit at the largest possible loss (see :mod:`.loss_bound`).

    Only accounts with a requirement and no future or perpetual of the unit are capped. The cap
    is the options' bound plus the worst scenario loss of the account's collateral in the unit's
    grid (collateral revalued in the margin currency), from :func:`~.loss_bound.loss_bound`
    (the NumPy specification; the fused Numba pass, :func:`._pm_kernels.book_pass`, computes
    it in its traversal of the rows and :func:`._pm_compose.compose` applies it). ``cap``, when
    given, is the fused pass's cap of every row (``inf`` where none applies): ``im`` and ``mm``
    are then capped in place.

    Returns
    -------
    (ndarray, ndarray, ndarray)
        Capped IM, capped MM and the IM removed by the cap.
    """
    relief = np.zeros(im.shape)
    if unit.bound is None or not unit.bound.bounded or im.size == 0:
        return im, mm, relief
    if cap is not None:  # the fused pass's cap, for every row
        charged = im > 0.0
        np.subtract(im, cap, out=relief, where=charged)
        np.maximum(relief, 0.0, out=relief)
        np.minimum(im, cap, out=im, where=charged)
        np.minimum(mm, cap, out=mm, where=charged)
        return im, mm, relief
    rows = np.flatnonzero((im > 0.0) & (gross_linear == 0.0))
    if rows.size == 0:
        return im, mm, relief
    cap = loss_bound(np.asarray(pos.indptr), np.asarray(pos.indices), np.asarray(pos.data),
                     unit.colmap, unit.bound, rows)
    if coll.shape[1] and unit.collateral_risk.any():
        c_pnl = coll[rows] @ unit.collateral_risk
        cap = cap + np.maximum(0.0, -c_pnl.min(axis=1)) if c_pnl.shape[1] else cap
    im, mm = im.copy(), mm.copy()
    relief[rows] = np.maximum(im[rows] - cap, 0.0)
    im[rows] = np.minimum(im[rows], cap)
    mm[rows] = np.minimum(mm[rows], cap)
    return im, mm, relief


def _widened(up: UnderlyingPMParams, scale: float) -> UnderlyingPMParams:
    """An underlying's parameters with its scenario moves and vol shocks times ``scale``.

    ``buckets`` grids: ``price_range`` (clipped at ``MAX_PRICE_RANGE``; the extended moves stay,
    their weights ``range / |move|`` follow the range); ``explicit`` grids: every price shock
    (clipped at ``-MAX_PRICE_RANGE``); vol shocks: ``up`` and ``down`` (the shocked vols keep
    their floors).
    """
    g = up.grid
    if g.explicit is not None:
        grid = g.model_copy(update={
            "price_range": min(g.price_range * scale, MAX_PRICE_RANGE),
            "explicit": [sc.model_copy(update={
                "price_shock": max(sc.price_shock * scale, -MAX_PRICE_RANGE)})
                for sc in g.explicit]})
    else:
        grid = g.model_copy(update={"price_range": min(g.price_range * scale, MAX_PRICE_RANGE)})
    vs = up.vol_shock.model_copy(update={"up": up.vol_shock.up * scale,
                                         "down": up.vol_shock.down * scale})
    return up.model_copy(update={"grid": grid, "vol_shock": vs})


def _rows_of(pos: sp.csr_matrix | RowsCSR, rows: IntArray) -> sp.csr_matrix | RowsCSR:
    """The given rows of CSR positions, of the same type."""
    if isinstance(pos, sp.csr_matrix):
        return sp.csr_matrix(pos[rows])
    ptr = np.asarray(pos.indptr)
    starts, ends = ptr[rows], ptr[rows + 1]
    take = np.concatenate([np.arange(a, b) for a, b in zip(starts.tolist(), ends.tolist(),
                                                            strict=True)]
                          ) if rows.size else np.zeros(0, np.int64)
    indptr = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
    return RowsCSR(indptr, np.asarray(pos.indices)[take].astype(np.int64),
                   np.asarray(pos.data, np.float64)[take])


class PortfolioMarginModel(MarginModel):
    """Scenario (risk-array) portfolio margin; venue methodologies are presets of it."""

    params: PMParams

    def __init__(self, params: PMParams,
                 previous_scale: dict[str, float] | None = None) -> None:
        super().__init__(params)
        self.previous_scale = dict(previous_scale or {})
        """Yesterday's dynamic-overlay scale per underlying (the speed limit's reference)."""

    def with_previous_scale(self, previous: dict[str, float] | None) -> PortfolioMarginModel:
        """The same model with the previous step's dynamic scales (the backtest's day carry).

        Parameters
        ----------
        previous : dict of str to float, optional
            ``PMPrepared.dynamic_scale`` of the previous step.

        Returns
        -------
        PortfolioMarginModel
            A new model; this one is unchanged.
        """
        return PortfolioMarginModel(self.params, previous)

    def dynamic_scales(self, units: list[str], market: MarketSnapshot) -> dict[str, float] | None:
        """Today's price-range scale of each unit (None when the overlay is off).

        Parameters
        ----------
        units : list of str
            Risk units (underlyings and non-stable collateral coins).
        market : MarketSnapshot
            Market data (ATM implied vols).

        Returns
        -------
        dict of str to float or None
            :func:`pmargin.models.dynamic.dynamic_scale` of each unit.
        """
        d = self.params.dynamic
        if d is None:
            return None
        return {u: dynamic_scale(self.previous_scale.get(u), vol_regime(market, u, d), d)
                for u in units}

    # ------------------------------------------------------------------ core
    def _unit_aggregates(self, unit: RiskUnit, pos: sp.csr_matrix | RowsCSR, coll: FloatArray,
                         need_pnl: bool) -> tuple[dict[str, FloatArray], FloatArray | None]:
        """Per-account aggregates of one unit: worst loss and the add-on inputs (NumPy).

        This is the specification of the fused kernel (:func:`_pm_kernels.book_pass`), which
        :meth:`_core` uses instead when Numba is available and the P&L matrix is not needed.
        """
        n = pos.shape[0]
        assert isinstance(pos, sp.csr_matrix), "the NumPy path needs a scipy CSR matrix"
        cols = unit.columns
        q = sp.csr_matrix(pos[:, cols]) if cols.size else sp.csr_matrix((n, 0))
        pnl = np.asarray(q @ unit.risk) if cols.size else np.zeros((n, unit.grid.size))
        if coll.shape[1]:
            pnl = pnl + coll @ unit.collateral_risk
        pnl = _damped(pnl, unit.damp) if unit.damp.any() else pnl
        worst = np.maximum(0.0, -pnl.min(axis=1)) if pnl.shape[1] else np.zeros(n)
        ncol = cols.size
        if unit.n_buckets:
            b = sp.csr_matrix((unit.delta, (np.arange(ncol), unit.bucket)),
                              shape=(ncol, unit.n_buckets))
            roll = np.abs((q @ b).toarray()) @ unit.roll_rate
        else:
            roll = np.zeros(n)
        if unit.n_groups:
            opt = unit.group >= 0
            g = sp.csr_matrix((np.ones(int(opt.sum())), (np.flatnonzero(opt), unit.group[opt])),
                              shape=(ncol, unit.n_groups))
            naked = np.maximum(-(q @ g).toarray(), 0.0).sum(axis=1)
        else:
            naked = np.zeros(n)
        e = sp.csr_matrix(q.multiply(unit.delta[None, :])) if ncol else sp.csr_matrix((n, 0))
        return {
            "worst_case": worst,
            "roll": np.asarray(roll, np.float64),
            "net": np.asarray(q @ unit.delta) if ncol else np.zeros(n),
            "naked": np.asarray(naked, np.float64),
            "gross": np.asarray(abs(q) @ unit.is_lin.astype(np.float64)) if ncol else np.zeros(n),
            "long": np.asarray(e.maximum(0).sum(axis=1)).ravel() if ncol else np.zeros(n),
            "short": -np.asarray(e.minimum(0).sum(axis=1)).ravel() if ncol else np.zeros(n),
        }, pnl

    def _unit_core(self, unit: RiskUnit, pos: sp.csr_matrix | RowsCSR, coll: FloatArray,
                   need_pnl: bool = False, agg: dict[str, FloatArray] | None = None
                   ) -> tuple[FloatArray, FloatArray, dict[str, FloatArray], FloatArray | None]:
        """IM and MM of one risk unit for every account, with components (and the P&L).

        The NumPy specification of :func:`._pm_compose.compose` (which the Numba path uses,
        summed over the units as :meth:`_core` sums them). ``agg``: the unit's aggregates if
        already computed (the fused pass's, in tests of the compiled composition); its arrays
        are then modified in place, and ``agg["bound"]`` is the loss-bound cap of every row.
        """
        pnl: FloatArray | None = None
        if agg is None:
            agg, pnl = self._unit_aggregates(unit, pos, coll, need_pnl)
        n = pos.shape[0]
        p = unit.params
        c2m = unit.coin_to_mc
        worst = agg["worst_case"]
        # same operations in the same order as the plain expressions in the comments
        roll = agg["roll"]
        comps: dict[str, FloatArray] = {"worst_case": worst,
                                        "roll_shock": np.multiply(roll, c2m, out=roll)}
        if p.delta_shock is not None:
            ds = p.delta_shock
            # pct = min(max_delta_shock, m_inc * max(0, |net| - threshold)); pct * |net| * c2m
            ad = np.abs(agg["net"])
            pct = np.subtract(ad, ds.threshold_usd / unit.index)
            np.maximum(0.0, pct, out=pct)
            np.multiply(ds.m_inc, pct, out=pct)
            np.minimum(ds.max_delta_shock, pct, out=pct)
            np.multiply(pct, ad, out=pct)
            comps["delta_shock"] = np.multiply(pct, c2m, out=pct)
        else:
            comps["delta_shock"] = np.zeros(n)
        if p.naked_short is not None:  # naked * rate * c2m
            naked = np.multiply(agg["naked"], p.naked_short.rate)
            comps["naked_short"] = np.multiply(naked, c2m, out=naked)
        else:
            comps["naked_short"] = np.zeros(n)
        if p.perp_contingency is not None:  # gross * rate * c2m (gross is read again below)
            perp = np.multiply(agg["gross"], p.perp_contingency.rate)
            comps["perp_contingency"] = np.multiply(perp, c2m, out=perp)
        else:
            comps["perp_contingency"] = np.zeros(n)
        # worst + (((roll + delta) + naked) + perp), the order of worst + sum(add-ons)
        addons = np.add(comps[ADDONS[0]], comps[ADDONS[1]])
        for k in ADDONS[2:]:
            addons += comps[k]
        risk = np.add(worst, addons, out=addons)
        if p.min_delta is not None:
            hedged = np.minimum(agg["long"], agg["short"])
            md = (p.min_delta.net_rate * np.abs(agg["long"] - agg["short"])
                  + p.min_delta.hedged_rate * hedged) * c2m
            comps["min_delta"] = md
            risk = np.maximum(risk, md)
        if p.min_charge is not None:
            raw = p.min_charge.rate * np.abs(agg["net"]) * unit.index
            adj = _tiered(raw, p.min_charge.tiers) * c2m / unit.index
            comps["min_charge"] = adj
            risk = np.maximum(risk, adj)
        comp = self.params.composition
        if comp.mode == "mm_from_im":
            im, mm = risk, comp.factor * risk
        else:
            im, mm = comp.factor * risk, risk
        im, mm, comps["loss_bound_relief"] = _capped(unit, pos, coll, agg["gross"], im, mm,
                                                     agg.get("bound"))
        return im, mm, comps, pnl

    def _packed(self, prep: PMPrepared) -> PackedUnits:
        """The prepared risk units laid out for the fused kernel (built once per ``prep``)."""
        packed: PackedUnits | None = prep.__dict__.get("_packed")
        if packed is None:
            t = prep.table
            a, b = value_weights(t)
            packed = pack_units(prep.units, t.n, prep.collateral.price.size,
                                greek_weights(t)[1], a, b, t.mark)
            object.__setattr__(prep, "_packed", packed)  # a cache, not state: prep is frozen
        return packed

    def _terms(self, prep: PMPrepared) -> PackedTerms:
        """The units' add-on parameters laid out for the fused composition (once per ``prep``)."""
        terms: PackedTerms | None = prep.__dict__.get("_terms")
        if terms is None:
            comp = self.params.composition
            terms = pack_terms(prep.units, comp.mode, comp.factor)
            object.__setattr__(prep, "_terms", terms)  # a cache, not state: prep is frozen
        return terms

    def _core(self, prep: PMPrepared, pos: sp.csr_matrix | RowsCSR, coll: FloatArray,
              need_pnl: bool = False,
              entry: tuple[IntArray, IntArray, FloatArray] | None = None
              ) -> tuple[FloatArray, FloatArray, dict[str, FloatArray], list[FloatArray | None],
                         tuple[FloatArray, FloatArray] | None]:
        """IM, MM and components of every row, with the liquidity-risk options when on.

        The risk units' figures (:meth:`_core_units`), on grids widened by the liquidation-period
        scale for the rows it concerns (:meth:`widened`), plus the concentration add-on
        (:mod:`pmargin.models.liquidity`; after the loss-bound cap, to IM whole and to MM times
        its ``mm_fraction``): orders, what-if rows and books all carry them.
        """
        im, mm, comps, pnls, vg = self._core_units(prep, pos, coll, need_pnl, entry)
        lp = self.params.liquidation_period
        level: FloatArray | None = None
        if lp is not None and prep.period_daily is not None:
            mult = period_multiple(prep.period_daily, np.asarray(pos.indptr),
                                   np.asarray(pos.indices), np.asarray(pos.data),
                                   lp.max_multiple)
            level = grid_scale(mult, lp.grid_scale_step)
            im, mm = im.copy(), mm.copy()
            base = im.copy()
            for s_ in np.unique(level[level > 1.0]).tolist():
                rows = np.flatnonzero(level == s_)
                im_s, mm_s, _, pnl_s, _ = self._core_units(
                    self.widened(prep, s_), _rows_of(pos, rows), coll[rows], need_pnl)
                im[rows] = im_s
                mm[rows] = mm_s
                if need_pnl and pos.shape[0] == 1:  # margin(): explain the widened grids
                    pnls = pnl_s
            comps["liquidation_period"] = im - base
            comps["liquidation_period_multiple"] = mult
        c = prep.concentration
        if c is not None:
            add = concentration_addon(c, np.asarray(pos.indptr), np.asarray(pos.indices),
                                      np.asarray(pos.data))
            rows = np.flatnonzero(add > 0.0)
            if rows.size:  # the add-on only fills the room the largest possible loss leaves
                cap = self._account_bound(prep, pos, coll, rows,
                                          None if level is None else level[rows])
                kept = np.minimum(add[rows], np.maximum(cap - im[rows], 0.0))
                cut = add[rows] - kept
                if cut.any():
                    relief = comps.get("loss_bound_relief", np.zeros(add.size)).copy()
                    relief[rows] += cut
                    comps["loss_bound_relief"] = relief
                    add = add.copy()
                    add[rows] = kept
            comps["concentration"] = add
            im = im + add
            mm = mm + c.mm_fraction * add
        return im, mm, comps, pnls, vg

    def _account_bound(self, prep: PMPrepared, pos: sp.csr_matrix | RowsCSR, coll: FloatArray,
                       rows: IntArray, level: FloatArray | None) -> FloatArray:
        """Largest possible loss of the given rows, summed over the risk units (``inf``: none).

        Each unit's term is the cap :func:`_capped` applies to it (options' bound plus the worst
        loss of the collateral in the unit's grid: the widened grid of the row's level when the
        liquidation-period scaling widened it).
        """
        args = (np.asarray(pos.indptr), np.asarray(pos.indices), np.asarray(pos.data))
        cap = np.zeros(rows.size)
        levels = [1.0] if level is None else np.unique(level).tolist()
        for s_ in levels:
            sel = np.arange(rows.size) if level is None else np.flatnonzero(level == s_)
            r = rows[sel]
            for unit in self.widened(prep, s_).units:
                if unit.bound is None:
                    cap[sel] = np.inf
                    continue
                term = loss_bound(*args, unit.colmap, unit.bound, r)
                if coll.shape[1] and unit.collateral_risk.any():
                    c_pnl = coll[r] @ unit.collateral_risk
                    term = term + np.maximum(0.0, -c_pnl.min(axis=1))
                cap[sel] += term
        return cap

    def widened(self, prep: PMPrepared, scale: float) -> PMPrepared:
        """``prep`` with every grid widened by ``scale`` (liquidation-period scaling; cached).

        Parameters
        ----------
        prep : PMPrepared
            A market prepared with the scaling on.
        scale : float
            ``sqrt(MPOR_eff / MPOR)`` rounded up to ``grid_scale_step``; 1 returns ``prep``.

        Returns
        -------
        PMPrepared
            The same market and columns with the risk units of the widened grids.
        """
        if scale == 1.0:
            return prep
        cache: dict[float, PMPrepared] = prep.__dict__.setdefault("_widened", {})
        out = cache.get(scale)
        if out is None:
            assert prep.book is not None, "prepared without liquidation_period"
            p = self.params
            wide = p.model_copy(update={"underlyings": {
                k: _widened(v, scale) for k, v in p.underlyings.items()}})
            units = build_risk_units(prep.book, prep.table, prep.market, wide,
                                     prep.dynamic_scale)
            out = replace(prep, units=units, period_daily=None)
            cache[scale] = out
        return out

    def _core_units(self, prep: PMPrepared, pos: sp.csr_matrix | RowsCSR, coll: FloatArray,
                    need_pnl: bool = False,
                    entry: tuple[IntArray, IntArray, FloatArray] | None = None
                    ) -> tuple[FloatArray, FloatArray, dict[str, FloatArray],
                               list[FloatArray | None], tuple[FloatArray, FloatArray] | None]:
        """IM, MM and components of every row, summed over the risk units.

        With Numba (and no P&L matrix wanted) every unit's aggregates come from one fused pass
        over the rows, which also sums position values and Greeks when ``entry`` (CSR arrays of
        the entry notionals aligned with ``pos``) is given: the last output, ``(values, Greek
        sums of shape (Greeks, rows))``, else None.
        """
        units = prep.units
        n = pos.shape[0]
        if NUMBA_ENABLED and not need_pnl and n > 0:
            agg, values, gsum = book_pass(self._packed(prep), pos.indptr, pos.indices,
                                          pos.data, coll, entry)
            vg = (values, gsum) if values is not None and gsum is not None else None
            # the add-ons and the cap of every unit in one compiled pass (the twin of
            # _unit_core summed over the units, below)
            terms = self._terms(prep)
            im, mm, c_arr = compose(terms, agg)
            comps = {COMPONENTS[i]: c_arr[i] for i in terms.reported}
            return im, mm, comps, [None] * len(units), vg
        pnls: list[FloatArray | None] = []
        if len(units) == 1:  # nothing to add up
            im, mm, comps, pnl = self._unit_core(units[0], pos, coll, need_pnl)
            pnls.append(pnl)
        else:
            im = np.zeros(n)
            mm = np.zeros(n)
            comps = {}
            for unit in units:
                i_u, m_u, c_u, pnl = self._unit_core(unit, pos, coll, need_pnl)
                im += i_u
                mm += m_u
                for k, v in c_u.items():
                    comps[k] = comps.get(k, np.zeros(n)) + v
                pnls.append(pnl)
        for k in ("worst_case", *ADDONS, "loss_bound_relief"):
            comps.setdefault(k, np.zeros(n))
        return im, mm, comps, pnls, None

    def prepare(self, book: Book, market: MarketSnapshot) -> PMPrepared:
        """Price every column of ``book`` under every scenario (once per market update).

        Parameters
        ----------
        book : Book
            Only its columns, collateral currencies and margin currency are used; any book with
            the same columns (a subset of accounts, say) can be evaluated against the result.
        market : MarketSnapshot
            Market data.

        Returns
        -------
        PMPrepared
            Instrument table and risk units.
        """
        t = self.table(book, market)
        units = sorted({str(u) for u in t.underlying}
                       | {c for c in book.collateral_currencies if not is_stable(c)})
        scales = self.dynamic_scales(units, market)
        conc, lp = self.params.concentration, self.params.liquidation_period
        return PMPrepared(t, build_risk_units(book, t, market, self.params, scales), market,
                          collateral_terms(book, market, self.params.haircuts), scales,
                          None if conc is None else concentration_columns(t, market, conc),
                          None if lp is None else period_columns(t, market, lp),
                          None if lp is None else book)

    def evaluate(self, prep: PMPrepared, book: Book) -> BookMarginResult:
        """Margin every account of ``book`` against prepared risk arrays.

        Parameters
        ----------
        prep : PMPrepared
            Output of :meth:`prepare` for a book with the same columns and collateral currencies.
        book : Book
            Accounts.

        Returns
        -------
        BookMarginResult
            IM, MM, equity and components ``worst_case``, ``roll_shock``, ``delta_shock``,
            ``naked_short``, ``perp_contingency`` (and ``min_delta``/``min_charge`` where
            enabled), ``open_orders``, ``collateral_haircut_im``, ``collateral_haircut_mm``, and
            ``concentration`` when the add-on is on (margin currency).
        """
        return self._evaluate(prep, book, need_pnl=False)[0]

    def evaluate_rows(self, prep: PMPrepared, rows: RowsCSR, entry: FloatArray,
                      coll: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray] | None:
        """IM, MM and equity of a few account rows without open orders (fast path).

        Parameters
        ----------
        prep : PMPrepared
            Prepared market.
        rows : RowsCSR
            Positions of the rows (column indices of the prepared book).
        entry : ndarray
            Entry notional of each stored cell (NaN: at the mark).
        coll : ndarray
            Collateral balances, shape (rows, collateral currencies of the prepared book).

        Returns
        -------
        (ndarray, ndarray, ndarray) or None
            IM, MM and equity; None when Numba is unavailable (use :meth:`evaluate`).
        """
        if not NUMBA_ENABLED:
            return None
        im, mm, _, _, vg = self._core(prep, rows, coll, entry=(rows.indptr, rows.indices, entry))
        values = vg[0] if vg is not None else np.zeros(rows.shape[0])
        h_im, h_mm = prep.collateral.haircut_amounts(coll)
        im, mm = self._with_collateral_terms(prep, im, mm, h_im, h_mm,
                                             self._depeg(prep, coll), None)
        return im, mm, prep.collateral.value(coll) + values

    def _with_collateral_terms(self, prep: PMPrepared, im: FloatArray, mm: FloatArray,
                               h_im: FloatArray, h_mm: FloatArray, depeg: FloatArray,
                               orders_im: FloatArray | None) -> tuple[FloatArray, FloatArray]:
        """IM and MM with open orders, collateral haircuts and the de-peg loss added.

        Terms that are zero for every account are not added (x + 0 is x: the same numbers).
        """
        depeg_on = self.params.stable_depeg != 0.0
        hc_im, hc_mm = prep.collateral.any_haircut  # no rate: the haircut is 0 for everyone
        return (_total(im, orders_im, h_im if hc_im else None, depeg if depeg_on else None),
                _total(mm, h_mm if hc_mm else None, depeg if depeg_on else None))

    def _depeg(self, prep: PMPrepared, coll: FloatArray) -> FloatArray:
        """Loss of stablecoin collateral (other than the margin currency) in a de-peg."""
        stable = prep.collateral.stable
        if self.params.stable_depeg == 0.0 or stable is None or coll.shape[1] == 0:
            return np.zeros(coll.shape[0])
        return np.asarray(coll.clip(min=0.0) @ stable * self.params.stable_depeg)

    def _evaluate(self, prep: PMPrepared, book: Book, need_pnl: bool
                  ) -> tuple[BookMarginResult, list[FloatArray | None]]:
        t = prep.table
        pos = sp.csr_matrix(book.positions)
        coll = np.ascontiguousarray(book.collateral, dtype=np.float64)
        ent = sp.csr_matrix(book.entry_notional)
        im, mm, comps, pnls, vg = self._core(
            prep, pos, coll, need_pnl,
            (ent.indptr, ent.indices, np.asarray(ent.data, dtype=np.float64)))
        orders_im = open_orders_im(book, t, im, lambda side, rows: self._core(
            prep, sp.csr_matrix(pos[rows] + side[rows]), coll[rows])[0])
        h_im, h_mm = prep.collateral.haircut_amounts(coll)
        depeg = self._depeg(prep, coll)
        comps["stable_depeg"] = depeg
        comps["open_orders"] = orders_im
        comps["collateral_haircut_im"] = h_im
        comps["collateral_haircut_mm"] = h_mm
        if vg is None:
            values, greeks = values_and_greeks(pos, book.entry_notional, t)
        else:
            values = vg[0]
            greeks = dict(zip(greek_weights(t)[0], vg[1], strict=True))
        equity = prep.collateral.value(coll) + values
        im, mm = self._with_collateral_terms(prep, im, mm, h_im, h_mm, depeg,
                                             orders_im if len(book.orders) else None)
        return self.book_result(book, t.mc_price, im, mm, equity, comps, greeks), pnls

    # ------------------------------------------------------------------ one account
    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> AccountMargin:
        """Compute and explain portfolio margin of one account.

        Parameters
        ----------
        portfolio : Portfolio
            The account.
        market : MarketSnapshot
            Market data.

        Returns
        -------
        AccountMargin
            Margins, the scenario table (weighted and dampened P&L per scenario), the risk
            matrix (price move x vol direction), the worst scenario of each underlying, and each
            position's P&L at that scenario.
        """
        book = Book.from_portfolios([portfolio])
        prep = self.prepare(book, market)
        res, pnls_opt = self._evaluate(prep, book, need_pnl=True)
        pnls = [p for p in pnls_opt if p is not None]
        lp = self.params.liquidation_period
        shown = prep
        if lp is not None and "liquidation_period_multiple" in res.components:
            level = grid_scale(res.components["liquidation_period_multiple"], lp.grid_scale_step)
            shown = self.widened(prep, float(level[0]))  # the grids the account was margined on
        units, t = shown.units, prep.table
        pos = sp.csr_matrix(book.positions)
        rows: list[dict[str, Any]] = []
        worst: dict[str, Any] = {}
        contrib = np.zeros(pos.nnz)
        col_unit = {}
        for unit, pnl in zip(units, pnls, strict=True):
            g = unit.grid
            vec = pnl[0]
            vol_names = g.vol_names()
            first = len(rows)
            for s in range(g.size):
                rows.append({
                    "underlying": unit.underlying,
                    "name": g.names[s],
                    "price_shock": float(g.move[s]),
                    "vol_shock": vol_names[s],
                    "weight": float(g.weight[s]),
                    "extended": bool(g.extended[s]),
                    "pnl": float(vec[s]),
                })
            s_star = int(np.argmin(vec))
            worst[unit.underlying] = {"index": s_star, **{
                k: v for k, v in rows[first + s_star].items() if k != "underlying"}}
            for k, c in enumerate(unit.columns):
                col_unit[int(c)] = (unit, k, s_star)
        for n_, j in enumerate(pos.indices):
            unit, k, s_star = col_unit[int(j)]
            contrib[n_] = pos.data[n_] * unit.risk[k, s_star]
        vals = position_values(pos, book.entry_notional, t).data
        frame = position_frame(book, pos, t, value=vals, pnl_at_worst=contrib, **(
            {} if prep.concentration is None else {
                "concentration": concentration_cells(prep.concentration, pos.indices,
                                                     pos.data)}))
        std = [r for r in rows if not r["extended"]]
        matrix = (Columns.from_records(std, pivot=(["underlying", "price_shock"], "vol_shock",
                                                   "pnl")) if std else None)
        return self.account_margin(res, "portfolio", frame, scenarios=Columns.from_records(rows),
                                   risk_matrix=matrix, worst_scenario=worst or None)
