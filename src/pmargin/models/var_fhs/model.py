"""``var-fhs``: expected shortfall over filtered historical scenarios, by full revaluation.

The model clearing houses call VaR/ES or FHS margin.

One market update prepares a risk matrix: every column of the book (and every collateral
currency) revalued under every scenario, in the margin currency per unit held. An account's
scenario P&L is then ``positions @ risk + collateral @ collateral_risk`` and its IM the mean of
its worst ``k = ceil((1 - confidence) * scenarios)`` losses. Accounts are evaluated in chunks,
so memory stays bounded on any book.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray, IntArray
from pmargin.book import Book
from pmargin.errors import InvalidInput
from pmargin.market import MarketSnapshot
from pmargin.market.history_series import DailySeries, load_daily_series
from pmargin.models.accounts import (
    CollateralTerms,
    collateral_terms,
    open_orders_im,
    values_and_greeks,
)
from pmargin.models.base import MarginModel, position_frame
from pmargin.models.liquidity import (
    ConcentrationColumns,
    concentration_addon,
    concentration_cells,
    concentration_columns,
    period_columns,
    period_multiple,
)
from pmargin.models.loss_bound import BoundTerms, loss_bound
from pmargin.models.result import AccountMargin, BookMarginResult, Columns
from pmargin.models.revaluation import bound_terms, option_columns, revalue
from pmargin.models.valuation import InstrumentTable, is_stable
from pmargin.models.var_fhs.apc import (
    buffer_release,
    buffered,
    lookback_shortfall_years,
    scenario_weights,
    tail_weights,
    weighted_expected_shortfall,
)
from pmargin.models.var_fhs.params import VarFhsParams
from pmargin.models.var_fhs.scenarios import (
    FilteredSeries,
    ScenarioSet,
    filter_series,
    history_is_fresh,
    scenario_set,
)
from pmargin.portfolio import Portfolio

__all__ = ["VarFhsModel", "VarFhsPrepared", "expected_shortfall", "tail_size"]

CHUNK_ROWS = 1024
"""Accounts per chunk of the (accounts x scenarios) P&L matrix (each row's figures do not depend
on it; 1,024 rows of 1,000-3,000 scenarios stay within 8-25 MB, a third faster than 8,192 rows
on a 10,000-account book)."""

IMPLIED_TENOR_YEARS = 30.0 / 365.0
"""Tenor of the ATM implied vol used as the current volatility (DVOL is a 30-day index)."""


def tail_size(confidence: float, n: int) -> int:
    """Number of worst scenarios averaged by ES: ``ceil((1 - confidence) * n)``, at least 1."""
    return max(1, math.ceil((1.0 - confidence) * n - 1e-9))


def expected_shortfall(pnl: FloatArray, confidence: float) -> FloatArray:
    """ES of the loss per row: mean of the ``tail_size`` largest losses (``-pnl``).

    Parameters
    ----------
    pnl : ndarray, shape (rows, scenarios)
        Scenario P&L (gains positive).
    confidence : float
        ES level.

    Returns
    -------
    ndarray, shape (rows,)
        Expected shortfall (a loss: positive when the tail loses money).
    """
    n = pnl.shape[1]
    k = tail_size(confidence, n)
    if pnl.shape[0] == 0:
        return np.zeros(0)
    worst = np.partition(pnl, k - 1, axis=1)[:, :k]
    return np.asarray(-worst.mean(axis=1))


@lru_cache(maxsize=8)
def _series(asset: str) -> DailySeries:
    return load_daily_series(asset)


_SHARED_FILTERED: dict[tuple[str, str, str], FilteredSeries] = {}
"""Filtered shared history by (asset, last day, parameter digest): filtering is per day."""


@dataclass(frozen=True)
class VarFhsPrepared:
    """What one market update prepares for ``var-fhs``."""

    table: InstrumentTable
    market: MarketSnapshot
    collateral: CollateralTerms
    scenarios: ScenarioSet
    risk: FloatArray
    """(instruments, scenarios): P&L per unit held, margin currency."""
    collateral_risk: FloatArray
    """(collateral currencies, scenarios): P&L per unit of each balance, margin currency."""
    filtered: dict[str, FilteredSeries]
    bounds: list[tuple[np.ndarray, BoundTerms]]
    """Per underlying: book column -> unit column map, and the loss-bound terms."""
    weights: FloatArray | None = None
    """(scenarios,) ES weights when ``apc.stressed_weight`` > 0 (else plain ES)."""
    buffer_released: float = 0.0
    """Share of the ``apc.buffer`` drawn down by stress (0 calm, 1 all: IM = ES)."""
    lookback_shortfall: float = 0.0
    """Years the look-back falls short of ``apc.lookback_floor_years`` (0 = met or no floor)."""
    concentration: ConcentrationColumns | None = None
    """Per-column inputs of the concentration add-on (None: off)."""
    period_daily: FloatArray | None = None
    """Units of each column a liquidator trades per day (liquidation-period scaling; None: off)."""


class VarFhsModel(MarginModel):
    """Expected-shortfall margin over filtered historical scenarios (see module doc)."""

    params: VarFhsParams

    def __init__(self, params: VarFhsParams,
                 series: dict[str, DailySeries] | None = None) -> None:
        super().__init__(params)
        self._given = dict(series or {})
        self._filtered: dict[tuple[str, str, str], FilteredSeries] = {}

    # ------------------------------------------------------------------ history
    def _history(self, asset: str, when: datetime) -> FilteredSeries:
        s = self._given.get(asset)
        cache = self._filtered
        if s is None:
            s = _series(asset)
            cache = _SHARED_FILTERED
        known = s.known_at(when)
        start = np.datetime64(self.params.history_start, "D")
        keep = known.day >= start
        known = DailySeries(known.asset, known.day[keep], known.close[keep], known.dvol[keep])
        if known.day.size == 0:
            raise InvalidInput("valuation_time", when.isoformat(),
                               f"no {asset} history is known before it")
        key = (asset, str(known.day[-1]), self.digest)
        f = cache.get(key)
        if f is None:
            f = filter_series(known, self.params)
            cache[key] = f
        return f

    def _sigma_now(self, asset: str, f: FilteredSeries, market: MarketSnapshot) -> float:
        p = self.params
        fresh = history_is_fresh(f.last_day, market.valuation_time, p)
        implied: float | None = None
        if p.current_vol != "filter" and asset in market.underlyings:
            fwd = market.forwards(asset, [IMPLIED_TENOR_YEARS])
            iv = float(market.implied_vols(asset, [IMPLIED_TENOR_YEARS], fwd)[0])
            if math.isfinite(iv) and iv > 0:
                implied = iv / math.sqrt(365.0)
        if p.current_vol == "filter" or (p.current_vol == "max" and implied is None):
            if not fresh:
                raise InvalidInput("valuation_time", market.valuation_time.isoformat(),
                                   f"{asset} history ends {f.last_day}: more than "
                                   f"max_history_gap_days={p.max_history_gap_days} before it, "
                                   "and no implied vol to rescale to")
            return f.forecast_ret
        if implied is None:
            raise InvalidInput("market", asset, "has no implied vol surface (current_vol = "
                               "'implied' needs one)")
        if p.current_vol == "implied" or not fresh:
            return implied
        return max(implied, f.forecast_ret)

    def _vol_history(self, asset: str, f: FilteredSeries, market: MarketSnapshot) -> FloatArray:
        """The current-vol measure of ``_sigma_now`` on each day of the look-back (daily).

        ``filter``: the filter's conditional vol of the day; ``implied``: the previous day's DVOL
        / sqrt(365); ``max``: the larger where both exist (as ``_sigma_now``, which uses implied
        vol alone when the history is stale).
        """
        p = self.params
        given = self._given.get(asset)
        s = given if given is not None else _series(asset)
        prev = f.day - np.timedelta64(1, "D")
        i = np.clip(np.searchsorted(s.day, prev), 0, s.day.size - 1)
        iv = np.where(s.day[i] == prev, s.dvol[i], np.nan) / math.sqrt(365.0)
        fresh = history_is_fresh(f.last_day, market.valuation_time, p)
        if p.current_vol == "filter" or not np.isfinite(iv).any():
            return np.asarray(f.sigma_ret)
        if p.current_vol == "implied" or not fresh:
            return np.asarray(iv)
        return np.asarray(np.fmax(iv, f.sigma_ret))

    def _apc(self, filtered: dict[str, FilteredSeries], sigma: dict[str, float],
             sc: ScenarioSet, market: MarketSnapshot) -> tuple[FloatArray | None, float, float]:
        """Scenario weights, buffer release and look-back shortfall (``apc`` options)."""
        a = self.params.apc
        weights = scenario_weights(sc.stressed, a.stressed_weight) \
            if a.stressed_weight > 0 else None
        if weights is not None and np.all(weights == weights[0]):
            weights = None  # equal weights: the plain ES (the stressed share is already met)
        released = 0.0 if a.buffer == 0 else max(  # the market is in stress when any coin is
            buffer_release(sigma[c], self._vol_history(c, f, market), a.stress_quantile,
                           a.release_full_quantile) for c, f in filtered.items())
        short = 0.0
        if a.lookback_floor_years > 0:
            days = sc.day[~sc.stressed]
            short = lookback_shortfall_years(days.min(), days.max(), a.lookback_floor_years)
            if short > 0 and a.lookback_floor_action == "refuse":
                years = a.lookback_floor_years - short
                raise InvalidInput("history", f"{years:.2f} years",
                                   f"the look-back ({days.min()} to {days.max()}) is shorter "
                                   f"than apc.lookback_floor_years={a.lookback_floor_years}")
        return weights, released, short

    # ------------------------------------------------------------------ prepare
    def prepare(self, book: Book, market: MarketSnapshot) -> VarFhsPrepared:
        """Revalue every column and collateral currency of ``book`` under every scenario.

        Parameters
        ----------
        book : Book
            Only its columns, collateral currencies and margin currency are used.
        market : MarketSnapshot
            Market data; history is used strictly before its valuation time.

        Returns
        -------
        VarFhsPrepared
            Scenario set and risk matrices.
        """
        t = self.table(book, market)
        mc = book.margin_currency
        coins = {str(u) for u in t.underlying}
        coins |= {c for c in book.collateral_currencies if not is_stable(c)}
        if not is_stable(mc):
            coins.add(mc)
        if not coins:  # only stablecoins: no risk, one null scenario
            coins = set()
        when = market.valuation_time
        filtered = {c: self._history(c, when) for c in sorted(coins)}
        weights: FloatArray | None = None
        released, short = 0.0, 0.0
        if filtered:
            sigma = {c: self._sigma_now(c, f, market) for c, f in filtered.items()}
            sc = scenario_set(filtered, sigma, self.params)
            weights, released, short = self._apc(filtered, sigma, sc, market)
        else:
            sc = ScenarioSet(np.zeros(1, "datetime64[D]"), np.zeros(1, bool), {}, {}, {},
                             np.zeros(1, bool))
        n_s = sc.size

        def usd(c: str) -> FloatArray:
            px = market.collateral_price(c)
            return np.asarray(px * (1.0 + sc.move[c]) if c in sc.move else np.full(n_s, px))

        p_mc = usd(mc)
        p_mc0 = market.collateral_price(mc)
        risk = np.zeros((book.n_instruments, n_s))
        bounds = []
        for u in sorted({str(x) for x in t.underlying}):
            cols = np.flatnonzero(t.underlying == u)
            colmap = np.full(book.n_instruments, -1, np.int64)
            colmap[cols] = np.arange(cols.size)
            bounds.append((colmap, bound_terms(t, cols, u, mc, p_mc0)))
            o = option_columns(t, cols)
            sig = np.maximum(t.vol[o][:, None] * sc.vol_factor[u][None, :], self.params.min_vol)
            risk[cols] = revalue(t, cols, sc.move[u], sig, self.params.horizon_days, p_mc,
                                 p_mc0, u, market)
        coll = np.zeros((len(book.collateral_currencies), n_s))
        for k, c in enumerate(book.collateral_currencies):
            coll[k] = usd(c) / p_mc - market.collateral_price(c) / p_mc0
        conc, lp = self.params.concentration, self.params.liquidation_period
        return VarFhsPrepared(t, market, collateral_terms(book, market, {}), sc, risk, coll,
                              filtered, bounds, weights, released, short,
                              None if conc is None else concentration_columns(t, market, conc),
                              None if lp is None else period_columns(t, market, lp))

    # ------------------------------------------------------------------ evaluate
    def _multiple(self, prep: VarFhsPrepared, pos: sp.csr_matrix) -> FloatArray | None:
        """``MPOR_eff / MPOR`` of every row (None when the scaling is off)."""
        lp = self.params.liquidation_period
        if lp is None or prep.period_daily is None:
            return None
        return period_multiple(prep.period_daily, np.asarray(pos.indptr),
                               np.asarray(pos.indices), np.asarray(pos.data), lp.max_multiple)

    def _es(self, prep: VarFhsPrepared, pos: sp.csr_matrix, coll: FloatArray
            ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """ES, and ES plus the APC buffer, per account, each capped at the largest possible loss.

        Also returns the IM the cap removed from the buffered figure, and the capped ES before
        the liquidation-period scaling (with the scaling on, ES is first multiplied by
        ``sqrt(MPOR_eff / MPOR)`` of the row; off, the last output is the first).
        """
        n = pos.shape[0]
        out = np.zeros(n)
        held, risk, rest = pos, prep.risk, coll.shape[1] > 0
        if coll.shape[1] == 1 and pos.has_sorted_indices:
            # one balance: a last column of the positions. The sparse product adds each row's
            # terms in column order, so the balance's term comes last, after the positions' sum,
            # as the separate product added it (the same floating-point operations)
            held = sp.csr_matrix(sp.hstack([pos, sp.csr_matrix(coll)], format="csr"))
            risk, rest = np.vstack([prep.risk, prep.collateral_risk]), False
        for a in range(0, n, CHUNK_ROWS):
            b = min(a + CHUNK_ROWS, n)
            pnl = np.asarray((held if a == 0 and b == n else held[a:b]) @ risk)
            if rest:
                pnl += coll[a:b] @ prep.collateral_risk
            out[a:b] = expected_shortfall(pnl, self.params.confidence) if prep.weights is None \
                else weighted_expected_shortfall(pnl, prep.weights, self.params.confidence)
        plain = np.maximum(out, 0.0)
        base = plain
        mult = self._multiple(prep, pos)
        if mult is not None:
            base = plain.copy()
            plain = plain * np.sqrt(mult)
        es = buffered(plain, self.params.apc.buffer, prep.buffer_released)
        relief = np.zeros(n)
        rows = np.flatnonzero(es > 0.0)
        if rows.size == 0 or not prep.bounds:
            return plain, es, relief, base
        cap = self._bound(prep, pos, coll, rows)
        relief[rows] = np.maximum(es[rows] - cap, 0.0)
        es[rows] = np.minimum(es[rows], cap)
        plain[rows] = np.minimum(plain[rows], cap)
        if mult is not None:
            base[rows] = np.minimum(base[rows], cap)
        return plain, es, relief, base

    @staticmethod
    def _bound(prep: VarFhsPrepared, pos: sp.csr_matrix, coll: FloatArray, rows: np.ndarray
               ) -> FloatArray:
        """Largest possible loss of the given rows (``inf`` where it is not bounded)."""
        cap = np.zeros(rows.size)
        args = (np.asarray(pos.indptr), np.asarray(pos.indices), np.asarray(pos.data))
        for colmap, terms in prep.bounds:
            cap += loss_bound(*args, colmap, terms, rows)
        if coll.shape[1] and prep.collateral_risk.any():
            cap += np.maximum(0.0, -(coll[rows] @ prep.collateral_risk).min(axis=1))
        return cap

    def pnl(self, prep: VarFhsPrepared, book: Book) -> FloatArray:
        """Scenario P&L of every account, shape (accounts, scenarios), margin currency."""
        pos = sp.csr_matrix(book.positions)
        pnl = np.asarray(pos @ prep.risk)
        if book.collateral.shape[1]:
            pnl += np.asarray(book.collateral, np.float64) @ prep.collateral_risk
        return pnl

    def evaluate(self, prep: VarFhsPrepared, book: Book) -> BookMarginResult:
        """Margin every account of ``book`` against the prepared risk matrix.

        Parameters
        ----------
        prep : VarFhsPrepared
            Output of :meth:`prepare` for a book with the same columns.
        book : Book
            Accounts.

        Returns
        -------
        BookMarginResult
            IM (ES + APC buffer + open orders), MM (``mm_fraction`` x ES, without the buffer),
            equity; components ``expected_shortfall`` (weighted when ``apc.stressed_weight`` >
            0; capped at the account's largest possible loss, issue 9.3), ``apc_buffer`` (what
            stress left of the buffer: 0 when all of it is released, or off),
            ``loss_bound_relief`` (what the cap removed),
            ``open_orders`` and ``lookback_floor_shortfall_years`` (years, not money: how far
            the look-back falls short of ``apc.lookback_floor_years``, the same for every
            account; 0 when met or off). With ``liquidation_period`` on, IM and MM use the ES
            scaled by ``sqrt(MPOR_eff / MPOR)``: ``expected_shortfall`` is then the ES at the
            preset's horizon, ``liquidation_period`` what the scaling adds and
            ``liquidation_period_multiple`` is ``MPOR_eff / MPOR`` (a ratio, not money). With
            ``concentration`` on, ``concentration`` (margin currency) is added to IM, and times
            its ``mm_fraction`` to MM (docs/models/liquidity-risk.md).
        """
        t = prep.table
        pos = sp.csr_matrix(book.positions)
        coll = np.ascontiguousarray(book.collateral, dtype=np.float64)
        plain, es, relief, base_es = self._es(prep, pos, coll)
        conc, cut = self._concentration(prep, pos, coll, es)

        def filled_requirement(side: sp.csr_matrix, rows: IntArray) -> FloatArray:
            filled = sp.csr_matrix(pos[rows] + side[rows])
            r = self._es(prep, filled, coll[rows])[1]
            c_f = self._concentration(prep, filled, coll[rows], r)[0]
            return r if c_f is None else r + c_f

        orders_im = open_orders_im(book, t, es if conc is None else es + conc,
                                   filled_requirement)
        values, greeks = values_and_greeks(pos, book.entry_notional, t)
        equity = prep.collateral.value(coll) + values
        components = {"expected_shortfall": plain, "apc_buffer": es - plain,
                      "loss_bound_relief": relief, "open_orders": orders_im,
                      "lookback_floor_shortfall_years":
                          np.full(book.n_accounts, prep.lookback_shortfall)}
        im = es + orders_im
        mm = self.params.mm_fraction * plain
        mult = self._multiple(prep, pos)
        if mult is not None:  # ES at the base MPOR, and what the longer period adds
            components["expected_shortfall"] = base_es
            components["liquidation_period"] = plain - base_es
            components["liquidation_period_multiple"] = mult
        if conc is not None and prep.concentration is not None:
            components["concentration"] = conc
            components["loss_bound_relief"] = relief + cut
            im = im + conc
            mm = mm + prep.concentration.mm_fraction * conc
        return self.book_result(book, t.mc_price, im, mm, equity, components, greeks)

    def _concentration(self, prep: VarFhsPrepared, pos: sp.csr_matrix, coll: FloatArray,
                       es: FloatArray) -> tuple[FloatArray | None, FloatArray]:
        """Concentration add-on of every row, margin currency (None when off), and its cut.

        The add-on only fills the room the largest possible loss leaves above ``es`` (the capped
        requirement); the second output is what that removed (zeros when nothing).
        """
        if prep.concentration is None:
            return None, np.zeros(pos.shape[0])
        add = concentration_addon(prep.concentration, np.asarray(pos.indptr),
                                  np.asarray(pos.indices), np.asarray(pos.data))
        cut = np.zeros(add.size)
        rows = np.flatnonzero(add > 0.0)
        if rows.size and prep.bounds:
            kept = np.minimum(add[rows],
                              np.maximum(self._bound(prep, pos, coll, rows) - es[rows], 0.0))
            cut[rows] = add[rows] - kept
            add[rows] = kept
        return add, cut

    # ------------------------------------------------------------------ one account
    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> AccountMargin:
        """Margin of one account, explained by its worst historical scenarios.

        Parameters
        ----------
        portfolio : Portfolio
            The account.
        market : MarketSnapshot
            Market data.

        Returns
        -------
        AccountMargin
            Margins; ``scenarios``: the ES tail (worst scenarios, with their historical days,
            index move and vol factor per underlying, and the account's P&L), worst first;
            ``worst_scenario``: the worst day per underlying.
        """
        book = Book.from_portfolios([portfolio])
        prep = self.prepare(book, market)
        res = self.evaluate(prep, book)
        pnl = self.pnl(prep, book)[0]
        sc = prep.scenarios
        k = tail_size(self.params.confidence, sc.size)
        share = tail_weights(pnl, prep.weights, self.params.confidence) \
            if prep.weights is not None else None
        if share is not None:
            k = int(np.count_nonzero(share))
        order = np.argsort(pnl, kind="stable")[:max(k, 10)]
        rows: list[dict[str, Any]] = []
        worst: dict[str, Any] = {}
        for rank, s in enumerate(order):
            label = f"{sc.day[s]}" + (" (stressed)" if sc.stressed[s] else "")
            for u in sorted(sc.move):
                row = {"underlying": u, "name": label, "price_shock": float(sc.move[u][s]),
                       "vol_shock": f"x{sc.vol_factor[u][s]:.4f}",
                       "weight": (float(share[s]) if share is not None
                                  else 1.0 / k if rank < k else 0.0),
                       "extended": bool(sc.stressed[s]), "pnl": float(pnl[s])}
                rows.append(row)
                if rank == 0:
                    worst[u] = {"index": int(s), **row}
        pos = sp.csr_matrix(book.positions)
        s0 = int(order[0]) if order.size else 0
        frame = position_frame(
            book, pos, prep.table, pnl_at_worst=pos.data * prep.risk[pos.indices, s0],
            **({} if prep.concentration is None else {
                "concentration": concentration_cells(prep.concentration, pos.indices,
                                                     pos.data)}))
        return self.account_margin(res, "portfolio", frame, scenarios=Columns.from_records(rows),
                                   worst_scenario=worst or None)
