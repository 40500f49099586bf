"""Surgical liquidation planner: the least costly trades that bring accounts back to health.

Currently implemented
---------------------
* One vectorised pass for a whole book (:func:`plan_book`): the accounts under maintenance
  margin are planned together. At each greedy step the candidate close-outs of *every* account
  still short (a full close of one position, or of every position) are rows of one book,
  margined in one ``model.evaluate`` call against one ``model.prepare`` of the market; each
  account takes its candidate with the largest shortfall reduction per unit of cost. The last
  step is shrunk by a bisection run for all accounts at once. :func:`plan_liquidation` is the
  same code on a book of one.
* Cost: execution against the liquidity model (bid/ask from the market where known, plus size
  impact against depth) and the liquidation penalty (to the insurance fund).
* No over-liquidation: the step that restores health is shrunk by bisection to the smallest size
  that does; the plan stops as soon as the account is healthy.
* Only accounts below maintenance margin are liquidated (equity >= MM: no step, whatever the
  buffer), so a fully paid long-option account, whose MM never exceeds its value, never is.
* Bounded: the penalty of a step is capped at what the account still has after the execution
  cost (a bankrupt account pays none); the plan states its deficit (negative final equity), who
  covers it (insurance fund, then ADL or socialised loss) and the conservation error of its
  cash flows posted to a Decimal ledger (exactly 0).
* Never increases maintenance margin: candidates that raise MM (unwinding a hedge) are excluded.
* Optional delta-hedge-first: trade the perpetual against the net delta before unwinding.

The target is ``equity >= MM x (1 + buffer)`` (or ``equity >= IM``). An account whose shortfall
cannot be reduced without raising MM is reported ``stuck`` (for an auction or a takeover).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from pmargin._typing import BoolArray, FloatArray, IntArray
from pmargin.book import Book
from pmargin.book.positions import OrderTable
from pmargin.instruments import parse_instrument
from pmargin.liquidation._params import FrozenParams, load_params_file
from pmargin.liquidation.ledger import Ledger
from pmargin.liquidation.liquidity import LiquidityParams, closing_cost
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel
from pmargin.portfolio import Portfolio

__all__ = ["BookPlan", "LiquidationPlan", "PlanStep", "PlannerParams", "load_planner_params",
           "plan_book", "plan_liquidation"]


class PlannerParams(FrozenParams):
    """Parameters of the planner (``planner.toml``)."""

    schema_version: int = 1
    name: str
    source: str
    assumptions: tuple[str, ...] = ()
    target: Literal["maintenance", "initial"]
    buffer: float
    max_positions_per_step: int
    max_steps: int
    bisection_iterations: int
    penalty_rate: float
    delta_hedge_first: bool


def load_planner_params(path: str | Path | None = None) -> PlannerParams:
    """Load the planner parameters (shipped ``planner.toml`` or a user file)."""
    return load_params_file(PlannerParams, "planner.toml", path)


@dataclass(frozen=True)
class PlanStep:
    """One liquidation trade and the account's state after it (margin currency).

    ``trades`` lists ``(instrument, signed quantity, execution price USD)``; a pro-rata step
    trades every position.
    """

    label: str
    trades: tuple[tuple[str, float, float], ...]
    slippage: float
    penalty: float
    equity: float
    initial_margin: float
    maintenance_margin: float
    target: float


@dataclass
class LiquidationPlan:
    """The plan for one account."""

    account_id: str
    model: str
    margin_currency: str
    before_equity: float
    before_initial_margin: float
    before_maintenance_margin: float
    before_target: float
    steps: list[PlanStep] = field(default_factory=list)
    final: Portfolio | None = None
    stuck: bool = False
    deficit: float = 0.0
    """Negative final equity (margin currency), 0 if the account ends solvent."""
    deficit_covered_by: str = ""
    """Who covers the deficit: ``"insurance fund, then ADL or socialised loss"`` (empty if none)."""
    conservation_error: Decimal = Decimal(0)
    """Conservation error of the plan's cash flows in a Decimal ledger (exactly 0)."""

    @property
    def healthy(self) -> bool:
        """Whether the account is out of liquidation after the plan (or never was in it)."""
        if not self.steps:
            return not self.needed
        return self.steps[-1].equity >= self.steps[-1].target

    @property
    def needed(self) -> bool:
        """Whether the account was below maintenance margin (in liquidation) before the plan."""
        return self.before_equity < self.before_maintenance_margin

    @property
    def total_penalty(self) -> float:
        """Penalties paid (margin currency)."""
        return sum(s.penalty for s in self.steps)

    @property
    def total_slippage(self) -> float:
        """Execution cost against the mark (margin currency)."""
        return sum(s.slippage for s in self.steps)

    @property
    def liquidated_notional_usd(self) -> float:
        """Underlying notional traded, USD (set by the planner)."""
        return self._notional

    _notional: float = 0.0



DEFICIT_COVER = "insurance fund, then ADL or socialised loss"
"""Who covers a plan's deficit (the cascade's order; ``cascade.toml`` chooses ADL or socialised)."""

_LABEL_CLOSE, _LABEL_ALL, _LABEL_HEDGE, _LABEL_LAST = 0, 1, 2, 3


@dataclass
class BookPlan:
    """Liquidation plans of every account of a book (struct of arrays).

    Parameters
    ----------
    book : Book
        The accounts after their plans (same rows; the columns of the input book, plus any
        perpetual a delta hedge added at the end). Orders are cancelled.
    before_equity, before_initial_margin, before_maintenance_margin, before_target : ndarray
        Figures before the plans, shape (A,), margin currency.
    equity, initial_margin, maintenance_margin, target : ndarray
        Figures after the plans, shape (A,).
    delta : ndarray
        Account delta after the plans (coin), shape (A,).
    penalty, slippage, notional_usd : ndarray
        Totals per account, shape (A,) (margin currency; notional in USD).
    needed, stuck : ndarray of bool
        In liquidation before the plan; no reduction possible without raising MM.
    step_account, step_label : ndarray of int
        Account row and kind of each step (0 close one position, 1 close every position pro
        rata, 2 delta hedge, 3 close everything because the account cannot be restored).
    step_slippage, step_penalty, step_equity, step_im, step_mm, step_target : ndarray
        Per step, shape (S,).
    trade_step, trade_column : ndarray of int
        Step and book column of each trade, shape (T,).
    trade_quantity, trade_price : ndarray of float
        Signed quantity and execution price (USD) of each trade.
    """

    book: Book
    before_equity: FloatArray
    before_initial_margin: FloatArray
    before_maintenance_margin: FloatArray
    before_target: FloatArray
    equity: FloatArray
    initial_margin: FloatArray
    maintenance_margin: FloatArray
    target: FloatArray
    delta: FloatArray
    penalty: FloatArray
    slippage: FloatArray
    notional_usd: FloatArray
    needed: BoolArray
    stuck: BoolArray
    step_account: IntArray
    step_label: IntArray
    step_slippage: FloatArray
    step_penalty: FloatArray
    step_equity: FloatArray
    step_im: FloatArray
    step_mm: FloatArray
    step_target: FloatArray
    trade_step: IntArray
    trade_column: IntArray
    trade_quantity: FloatArray
    trade_price: FloatArray

    @property
    def executed(self) -> BoolArray:
        """Whether each account has at least one step."""
        return np.bincount(self.step_account, minlength=self.book.n_accounts) > 0

    def largest_trades(self, index: FloatArray) -> tuple[IntArray, FloatArray]:
        """Column and signed quantity of each account's largest trade by USD notional.

        Parameters
        ----------
        index : ndarray
            Index price (USD) of each column's underlying, shape (I,).

        Returns
        -------
        tuple of ndarray
            Column (-1 for an account without trades) and quantity, shape (A,) each.
        """
        n = self.book.n_accounts
        col = np.full(n, -1, dtype=np.int64)
        qty = np.zeros(n)
        if self.trade_step.size == 0:
            return col, qty
        acc = self.step_account[self.trade_step]
        notional = np.abs(self.trade_quantity) * index[self.trade_column]
        order = np.lexsort((-notional, acc))
        first = order[np.r_[True, acc[order][1:] != acc[order][:-1]]]
        col[acc[first]] = self.trade_column[first]
        qty[acc[first]] = self.trade_quantity[first]
        return col, qty


class _Columns:
    """Per-column market inputs of the liquidity model (mark, quotes, index, kind)."""

    def __init__(self, book: Book, market: MarketSnapshot) -> None:
        n = book.n_instruments
        self.mark = np.empty(n)
        self.bid = np.full(n, np.nan)
        self.ask = np.full(n, np.nan)
        self.index = np.empty(n)
        self.kind = np.empty(n, dtype=object)
        for j, inst in enumerate(book.instruments):
            self.mark[j] = market.mark_price(inst)
            b, a = market.quote(inst)
            if b is not None:
                self.bid[j] = b
            if a is not None:
                self.ask[j] = a
            self.index[j] = market.index_price(inst.underlying)
            self.kind[j] = inst.kind.value


class _Planner:
    """State of a vectorised plan: flat, row-sorted position entries of every account."""

    def __init__(self, book: Book, market: MarketSnapshot, model: MarginModel,
                 params: PlannerParams, liquidity: LiquidityParams | None,
                 prepared: Any = None) -> None:
        self.p = params
        self.model = model
        self.liquidity = liquidity
        self.mc = book.margin_currency
        self.p_mc = market.collateral_price(self.mc)
        self.book = book
        self.prep = prepared if prepared is not None else model.prepare(book, market)
        self.cols = _Columns(book, market)
        n = book.n_accounts
        pos = sp.csr_matrix(book.positions)
        pos.sum_duplicates()
        ent = sp.csr_matrix(book.entry_notional)
        self.rows = np.repeat(np.arange(n), np.diff(pos.indptr))
        self.cols_e = pos.indices.astype(np.int64)
        self.qty = pos.data.astype(np.float64)
        # entry price per unit (NaN unknown): entry notional of the same cell over quantity
        ent_map = _cell_values(ent, self.rows, self.cols_e)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.avg = np.where(self.qty != 0, ent_map / self.qty, np.nan)
        self.collateral = book.collateral.copy()
        self.ccys = list(book.collateral_currencies)
        self.km = self.ccys.index(self.mc)
        self._compact()
        self.steps: list[tuple[IntArray, int | IntArray, FloatArray, FloatArray, FloatArray,
                               FloatArray, FloatArray, FloatArray]] = []
        self.trades: list[tuple[IntArray, IntArray, FloatArray, FloatArray]] = []
        self.n_steps = 0
        self.penalty = np.zeros(n)
        self.slippage = np.zeros(n)
        self.notional = np.zeros(n)

    # ------------------------------------------------------------------ state
    def _compact(self) -> None:
        keep = self.qty != 0.0
        order = np.lexsort((self.cols_e[keep], self.rows[keep]))
        self.rows = self.rows[keep][order]
        self.cols_e = self.cols_e[keep][order]
        self.qty = self.qty[keep][order]
        self.avg = self.avg[keep][order]
        self.ptr = np.searchsorted(self.rows, np.arange(self.book.n_accounts + 1))

    def live(self) -> IntArray:
        """Number of open positions per account."""
        return np.diff(self.ptr)

    def target_of(self, im: FloatArray, mm: FloatArray) -> FloatArray:
        return np.asarray(im if self.p.target == "initial" else mm * (1.0 + self.p.buffer),
                          dtype=np.float64)

    def evaluate(self, acc: IntArray, t_row: IntArray, t_col: IntArray, t_dq: FloatArray,
                 t_avg: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Margin rows ``r`` = state of account ``acc[r]`` plus the trades ``(t_row, t_col, t_dq)``.

        Returns IM, MM, model equity (current collateral) and delta of each row.
        """
        n_rows = acc.size
        counts = self.ptr[acc + 1] - self.ptr[acc]
        src = _ranges(self.ptr[acc], counts)
        r = np.concatenate([np.repeat(np.arange(n_rows), counts), t_row])
        c = np.concatenate([self.cols_e[src], t_col])
        q = np.concatenate([self.qty[src], t_dq])
        a = np.concatenate([self.avg[src], t_avg])
        order = np.lexsort((c, r))
        r, c, q, a = r[order], c[order], q[order], a[order]
        first = np.ones(r.size, dtype=bool)
        first[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
        starts = np.flatnonzero(first)
        qs = np.add.reduceat(q, starts) if starts.size else q[:0]
        avg = a[starts]
        rr, cc = r[starts], c[starts]
        qs = np.where(np.abs(qs) < 1e-12, 0.0, qs)
        keep = qs != 0.0
        rr, cc, qs, avg = rr[keep], cc[keep], qs[keep], avg[keep]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rr, minlength=n_rows))])
        shape = (n_rows, self.book.n_instruments)
        pos = sp.csr_matrix((qs, cc, indptr), shape=shape)
        ent = sp.csr_matrix((qs * avg, cc, indptr), shape=shape)
        book = Book(self.mc, [self.book.account_ids[k] for k in acc], self.book.instruments,
                    pos, ent, self.ccys, self.collateral[acc], OrderTable.empty())
        res = self.model.evaluate(self.prep, book)
        delta = res.greeks.get("delta", np.zeros(n_rows))
        return (np.asarray(res.initial_margin, dtype=np.float64),
                np.asarray(res.maintenance_margin, dtype=np.float64),
                np.asarray(res.equity, dtype=np.float64), np.asarray(delta, dtype=np.float64))

    def costs(self, col: IntArray, dq: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray,
                                                            FloatArray]:
        """Execution price (USD), slippage and raw penalty (margin currency), USD notional."""
        if col.size == 0:
            z = np.zeros(0)
            return z, z, z, z
        cc = closing_cost(-dq, self.cols.mark[col], self.cols.bid[col], self.cols.ask[col],
                          kind=self.cols.kind[col], params=self.liquidity)
        px = np.asarray(cc.execution_price, dtype=np.float64)
        slip = np.abs(dq) * np.abs(px - self.cols.mark[col]) / self.p_mc
        und = np.abs(dq) * self.cols.index[col]
        pen = self.p.penalty_rate * und / self.p_mc
        return px, slip, pen, und

    # ------------------------------------------------------------------ steps
    def apply(self, acc: IntArray, label: int | IntArray, t_row: IntArray, t_col: IntArray,
              t_dq: FloatArray, t_avg: FloatArray, eq_before: FloatArray,
              figures: tuple[FloatArray, FloatArray, FloatArray, FloatArray]) -> FloatArray:
        """Execute the trades of rows ``r`` (account ``acc[r]``); return the new equity."""
        px, slip_e, pen_e, und_e = self.costs(t_col, t_dq)
        n = acc.size
        slip = np.bincount(t_row, slip_e, minlength=n)
        pen_raw = np.bincount(t_row, pen_e, minlength=n)
        pen = np.minimum(pen_raw, np.maximum(eq_before - slip, 0.0))
        eq = eq_before - slip - pen
        im, mm, eq_model, _ = figures
        # closing at the mark is value-neutral: the value becomes cash, costs are paid
        self.collateral[acc, self.km] += eq - eq_model
        self.rows = np.concatenate([self.rows, acc[t_row]])
        self.cols_e = np.concatenate([self.cols_e, t_col])
        self.qty = np.concatenate([self.qty, t_dq])
        self.avg = np.concatenate([self.avg, t_avg])
        self._merge()
        step_ids = self.n_steps + np.arange(n)
        self.steps.append((acc, label, np.asarray(slip, np.float64), np.asarray(pen, np.float64),
                           np.asarray(eq, np.float64), im, mm, self.target_of(im, mm)))
        self.trades.append((step_ids[t_row], t_col, t_dq, px))
        self.n_steps += n
        self.penalty[acc] += pen
        self.slippage[acc] += slip
        self.notional[acc] += np.bincount(t_row, und_e, minlength=n)
        return eq

    def _merge(self) -> None:
        order = np.lexsort((self.cols_e, self.rows))
        r, c, q, a = self.rows[order], self.cols_e[order], self.qty[order], self.avg[order]
        first = np.ones(r.size, dtype=bool)
        first[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
        starts = np.flatnonzero(first)
        qs = np.add.reduceat(q, starts) if starts.size else q
        # the entry price of a position that is added to keeps the first row's (the old one)
        self.rows, self.cols_e, self.avg = r[starts], c[starts], a[starts]
        self.qty = np.where(np.abs(qs) < 1e-12, 0.0, qs)
        self._compact()

    def shrink(self, acc: IntArray, t_row: IntArray, t_col: IntArray, t_dq: FloatArray,
               t_avg: FloatArray, eq_before: FloatArray, target_before: FloatArray,
               full: tuple[FloatArray, FloatArray, FloatArray, FloatArray]) -> tuple[
                   FloatArray, tuple[FloatArray, FloatArray, FloatArray, FloatArray]]:
        """Smallest multiple ``s`` in (0, 1] of each row's trades that restores health.

        A safeguarded false-position search (Illinois rule, every third step a bisection) on
        ``f(s) = equity(s) - target(s)``, bracketed by ``f(0) < 0 <= f(1)``: ``s`` is always a
        multiple that restores health, and the search of an account stops once its excess
        ``f(s)`` is below ``1e-9`` of its target or the bracket is narrower than
        ``2**-bisection_iterations``; only the accounts still searching are margined.
        """
        n = acc.size
        lo, hi = np.zeros(n), np.ones(n)
        tgt_full = self.target_of(full[0], full[1])
        _, slip_full, pen_full = self._step_costs(t_row, t_col, t_dq, eq_before, np.ones(n))
        fh = eq_before - slip_full - pen_full - tgt_full
        fl = eq_before - target_before
        best = tuple(x.copy() for x in full)
        width = 2.0 ** -self.p.bisection_iterations
        tol = 1e-9 * np.maximum(1.0, np.abs(tgt_full))
        side = np.zeros(n, dtype=np.int64)  # Illinois: which end was kept last time
        for it in range(self.p.bisection_iterations):
            active = np.flatnonzero((hi - lo > width) & (fh > tol))
            if active.size == 0:
                break
            if it % 3 == 2:
                mid = 0.5 * (lo + hi)
            else:
                denom = fh - fl
                mid = np.where(denom > 0, hi - fh * (hi - lo) / np.where(denom > 0, denom, 1.0),
                               0.5 * (lo + hi))
                mid = np.clip(mid, lo + 0.01 * (hi - lo), hi - 0.01 * (hi - lo))
            sel = np.isin(t_row, active)
            remap = np.full(n, -1, dtype=np.int64)
            remap[active] = np.arange(active.size)
            r = remap[t_row[sel]]
            scale = mid[active]
            dq = t_dq[sel] * scale[r]
            _, slip_e, pen_e, _ = self.costs(t_col[sel], dq)
            slip = np.bincount(r, slip_e, minlength=active.size)
            eb = eq_before[active]
            pen = np.minimum(np.bincount(r, pen_e, minlength=active.size),
                             np.maximum(eb - slip, 0.0))
            fig = self.evaluate(acc[active], r, t_col[sel], dq, t_avg[sel])
            f = eb - slip - pen - self.target_of(fig[0], fig[1])
            ok = f >= 0.0
            a_ok, a_no = active[ok], active[~ok]
            # Illinois: halve the value kept at the end that did not move twice in a row
            fl[a_ok] = np.where(side[a_ok] == 1, 0.5 * fl[a_ok], fl[a_ok])
            fh[a_no] = np.where(side[a_no] == -1, 0.5 * fh[a_no], fh[a_no])
            hi[a_ok], fh[a_ok], side[a_ok] = scale[ok], f[ok], 1
            lo[a_no], fl[a_no], side[a_no] = scale[~ok], f[~ok], -1
            for k in range(4):
                best[k][a_ok] = fig[k][ok]
        return hi, best  # type: ignore[return-value]

    def _step_costs(self, t_row: IntArray, t_col: IntArray, t_dq: FloatArray,
                    eq_before: FloatArray, scale: FloatArray) -> tuple[FloatArray, FloatArray,
                                                                       FloatArray]:
        """USD notional, slippage and capped penalty per row of the trades scaled by ``scale``."""
        n = eq_before.size
        _, slip_e, pen_e, und_e = self.costs(t_col, t_dq * scale[t_row])
        slip = np.bincount(t_row, slip_e, minlength=n)
        pen = np.minimum(np.bincount(t_row, pen_e, minlength=n), np.maximum(eq_before - slip, 0.0))
        und = np.bincount(t_row, und_e, minlength=n)
        return (np.asarray(und, np.float64), np.asarray(slip, np.float64),
                np.asarray(pen, np.float64))

    def table(self) -> tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray,
                             FloatArray, FloatArray, IntArray, IntArray, FloatArray, FloatArray]:
        if not self.steps:
            zi, zf = np.zeros(0, np.int64), np.zeros(0)
            return zi, zi, zf, zf, zf, zf, zf, zf, zi, zi, zf, zf
        acc = np.concatenate([s[0] for s in self.steps])
        label = np.concatenate([np.broadcast_to(np.asarray(s[1], np.int64), s[0].shape)
                                for s in self.steps])
        cols = [np.concatenate([s[k] for s in self.steps]) for k in range(2, 8)]
        tr = [np.concatenate([t[k] for t in self.trades]) for k in range(4)]
        return (acc, label, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5],
                tr[0].astype(np.int64), tr[1].astype(np.int64), tr[2], tr[3])


def _ranges(starts: IntArray, counts: IntArray) -> IntArray:
    """Concatenation of ``arange(s, s + c)`` for each pair (vectorised)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offs = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return np.asarray(np.arange(total) + offs, dtype=np.int64)


def _cell_values(m: sp.csr_matrix, rows: IntArray, cols: IntArray) -> FloatArray:
    """Values of ``m`` at the cells ``(rows, cols)`` (NaN where the cell is not stored)."""
    coo = m.tocoo()
    key_m = coo.row.astype(np.int64) * m.shape[1] + coo.col
    key = rows * m.shape[1] + cols
    order = np.argsort(key_m, kind="stable")
    key_m, vals = key_m[order], coo.data[order]
    at = np.searchsorted(key_m, key)
    at = np.minimum(at, max(key_m.size - 1, 0))
    found = (key_m.size > 0) & (key_m[at] == key) if key_m.size else np.zeros(key.size, bool)
    return np.where(found, vals[at] if key_m.size else np.nan, np.nan)


def _with_perpetuals(book: Book, live_rows: IntArray) -> tuple[Book, IntArray]:
    """Add the perpetual of each account's largest position's underlying as a column if needed.

    Returns the book and, per account, the column of its hedge perpetual (-1 if none).
    """
    names = book.instrument_index()
    insts = list(book.instruments)
    perp_col = np.full(book.n_accounts, -1, dtype=np.int64)
    pos = sp.csr_matrix(book.positions)
    for a in live_rows:
        lo, hi = pos.indptr[a], pos.indptr[a + 1]
        if hi == lo:
            continue
        j = int(pos.indices[lo + int(np.argmax(np.abs(pos.data[lo:hi])))])
        perp = f"{insts[j].underlying}-PERPETUAL"
        if perp not in names:
            names[perp] = len(insts)
            insts.append(parse_instrument(perp))
        perp_col[a] = names[perp]
    extra = len(insts) - book.n_instruments
    if extra:
        shape = (book.n_accounts, len(insts))
        book = Book(book.margin_currency, book.account_ids, insts,
                    sp.csr_matrix(sp.hstack([book.positions,
                                             sp.csr_matrix((book.n_accounts, extra))]),
                                  shape=shape),
                    sp.csr_matrix(sp.hstack([book.entry_notional,
                                             sp.csr_matrix((book.n_accounts, extra))]),
                                  shape=shape),
                    book.collateral_currencies, book.collateral, book.orders)
    return book, perp_col


def plan_book(
    book: Book,
    market: MarketSnapshot,
    model: MarginModel,
    params: PlannerParams | None = None,
    liquidity: LiquidityParams | None = None,
    *,
    prepared: Any = None,
) -> BookPlan:
    """Plan the liquidation of every account of a book in one vectorised pass.

    Parameters
    ----------
    book : Book
        Accounts (open orders are cancelled first). Accounts at or above maintenance margin
        are left alone.
    market : MarketSnapshot
        Market data (marks, bid/ask for the liquidity model).
    model : MarginModel
        Margin model that judges every candidate (one ``prepare``, one ``evaluate`` per step).
    params : PlannerParams, optional
        Planner parameters (shipped defaults if omitted).
    liquidity : LiquidityParams, optional
        Liquidity model parameters (shipped defaults if omitted).
    prepared : object, optional
        ``model.prepare(b, market)`` of a book ``b`` with the same columns, to reuse (the
        cascade prepares once per round); ignored when a delta hedge adds a column.

    Returns
    -------
    BookPlan
        Steps and trades of every account, the book afterwards and the figures before/after.

    Notes
    -----
    Per account, the same greedy rule as documented in ``docs/liquidation.md``: among the
    candidates that do not raise MM and reduce the shortfall ``max(0, target - equity)``, take
    the one with the largest reduction per unit of cost (slippage + penalty); a candidate that
    restores health is shrunk by bisection to the smallest multiple that does. All accounts take
    their step at the same time, so the number of margin calls is the number of greedy steps of
    the slowest account (plus the bisection), not the number of accounts or candidates.
    """
    p = params or load_planner_params()
    ccys, coll = list(book.collateral_currencies), book.collateral
    if book.margin_currency not in ccys:  # a column for the cash liquidations pay in
        ccys.append(book.margin_currency)
        coll = np.hstack([coll, np.zeros((book.n_accounts, 1))])
        prepared = None
    base = Book(book.margin_currency, book.account_ids, book.instruments, book.positions,
                book.entry_notional, ccys, coll, OrderTable.empty())
    n = base.n_accounts
    all_rows = np.arange(n, dtype=np.int64)
    perp_col: IntArray = np.full(n, -1, dtype=np.int64)
    if p.delta_hedge_first:
        base, perp_col = _with_perpetuals(base, all_rows)
        if base.n_instruments != book.n_instruments:
            prepared = None
    pl = _Planner(base, market, model, p, liquidity, prepared)
    none_i, none_f = np.zeros(0, np.int64), np.zeros(0)
    im0, mm0, eq0, _ = pl.evaluate(all_rows, none_i, none_i, none_f, none_f)
    target0 = pl.target_of(im0, mm0)
    equity, mm, target = eq0.copy(), mm0.copy(), target0.copy()
    needed = eq0 < mm0
    stuck = np.zeros(n, dtype=bool)
    done = ~needed | (pl.live() == 0)
    tol = 1e-12 * np.maximum(1.0, np.abs(target))

    def update(acc: IntArray, eq_new: FloatArray, fig: tuple[FloatArray, ...]) -> None:
        equity[acc] = eq_new
        mm[acc] = fig[1]
        target[acc] = pl.target_of(fig[0], fig[1])

    if p.delta_hedge_first:
        acc = np.flatnonzero(~done & (equity < target) & (perp_col >= 0))
        if acc.size:
            _, _, _, delta = pl.evaluate(acc, none_i, none_i, none_f, none_f)
            has = np.abs(delta) > 1e-12
            acc, delta = acc[has], delta[has]
            t_row = np.arange(acc.size)
            t_col, t_dq = perp_col[acc], -delta
            t_avg = _cell_values_state(pl, acc, t_col)
            fig = pl.evaluate(acc, t_row, t_col, t_dq, t_avg)
            _, slip_e, pen_e, _ = pl.costs(t_col, t_dq)
            pen = np.minimum(pen_e, np.maximum(equity[acc] - slip_e, 0.0))
            eq_c = equity[acc] - slip_e - pen
            short_b = np.maximum(0.0, target[acc] - equity[acc])
            short_a = np.maximum(0.0, pl.target_of(fig[0], fig[1]) - eq_c)
            ok = (fig[1] <= mm[acc] * (1 + 1e-12) + 1e-12) & (short_b - short_a > tol[acc])
            restores = ok & (short_a <= 0.0)
            grow = ok & ~restores
            if restores.any():
                k = np.flatnonzero(restores)
                a_k = acc[k]
                s, fig_s = pl.shrink(a_k, np.arange(k.size), t_col[k], t_dq[k], t_avg[k],
                                     equity[a_k], target[a_k],
                                     tuple(f[k] for f in fig))  # type: ignore[arg-type]
                eq_new = pl.apply(a_k, _LABEL_HEDGE, np.arange(k.size), t_col[k], t_dq[k] * s,
                                  t_avg[k], equity[a_k], fig_s)
                update(a_k, eq_new, fig_s)
            if grow.any():
                k = np.flatnonzero(grow)
                a_k = acc[k]
                fig_k = (fig[0][k], fig[1][k], fig[2][k], fig[3][k])
                eq_new = pl.apply(a_k, _LABEL_HEDGE, np.arange(k.size), t_col[k], t_dq[k],
                                  t_avg[k], equity[a_k], fig_k)
                update(a_k, eq_new, fig_k)

    deferred: list[_Deferred] = []
    for _ in range(p.max_steps):
        live = pl.live()
        acc = np.flatnonzero(~done & (equity < target) & (live > 0))
        done |= ~((equity < target) & (live > 0))
        if acc.size == 0:
            break
        # candidates: close one position (accounts with few positions), or all of them
        la = live[acc]
        n_single = np.where(la <= p.max_positions_per_step, la, 0)
        n_all = (la > 1).astype(np.int64)
        n_cand = n_single + n_all
        c_acc_local = np.repeat(np.arange(acc.size), n_cand)
        c_first = np.concatenate([[0], np.cumsum(n_cand)[:-1]])
        c_pos = np.arange(c_acc_local.size) - c_first[c_acc_local]
        c_is_all = c_pos >= n_single[c_acc_local]
        c_acc = acc[c_acc_local]
        # trades of each candidate: one entry (close j) or every entry (close all)
        t_cnt = np.where(c_is_all, live[c_acc], 1)
        t_row = np.repeat(np.arange(c_acc.size), t_cnt)
        t_first = np.concatenate([[0], np.cumsum(t_cnt)[:-1]])
        t_k = np.arange(t_row.size) - t_first[t_row]
        t_src = pl.ptr[c_acc[t_row]] + np.where(c_is_all[t_row], t_k, c_pos[t_row])
        t_col, t_dq, t_avg = pl.cols_e[t_src], -pl.qty[t_src], pl.avg[t_src]
        fig = pl.evaluate(c_acc, t_row, t_col, t_dq, t_avg)
        _, slip_e, pen_e, _ = pl.costs(t_col, t_dq)
        slip = np.bincount(t_row, slip_e, minlength=c_acc.size)
        eq_b = equity[c_acc]
        pen = np.minimum(np.bincount(t_row, pen_e, minlength=c_acc.size),
                         np.maximum(eq_b - slip, 0.0))
        eq_c = eq_b - slip - pen
        short_b = np.maximum(0.0, target[c_acc] - eq_b)
        short_a = np.maximum(0.0, pl.target_of(fig[0], fig[1]) - eq_c)
        gain = short_b - short_a
        cost = slip + pen
        mm_ok = fig[1] <= mm[c_acc] * (1 + 1e-12) + 1e-12
        ok = mm_ok & (gain > tol[c_acc])
        score = np.where(ok, gain / np.maximum(cost, tol[c_acc]), -np.inf)
        order = np.lexsort((-score, c_acc_local))
        best = order[c_first]  # first candidate of each account in score order
        best_ok = ok[best]
        # accounts with no useful candidate: close everything (if MM does not rise) or stuck
        all_idx = c_first + np.where(n_all > 0, n_single, 0)
        hopeless = np.flatnonzero(~best_ok)
        if hopeless.size:
            closable = mm_ok[all_idx[hopeless]]
            stuck[acc[hopeless[~closable]]] = True
            k = hopeless[closable]
            if k.size:
                cands = all_idx[k]
                _apply_candidates(pl, acc[k], cands, _LABEL_LAST, t_row, t_col, t_dq, t_avg,
                                  equity, fig, update)
            done[acc[hopeless]] = True
        good = np.flatnonzero(best_ok)
        if good.size:
            cands = best[good]
            labels = np.where(c_is_all[cands], _LABEL_ALL, _LABEL_CLOSE)
            restores = short_a[cands] <= 0.0
            if restores.any():
                # the account is done: its last step is shrunk later, with every other
                # account's, in one vectorised bisection (its state no longer changes)
                k = good[restores]
                deferred.append(_select(acc[k], cands[restores], labels[restores], t_row, t_col,
                                        t_dq, t_avg, fig))
                done[acc[k]] = True
            if (~restores).any():
                k = good[~restores]
                _apply_candidates(pl, acc[k], cands[~restores], labels[~restores], t_row,
                                  t_col, t_dq, t_avg, equity, fig, update)

    if deferred:
        acc = np.concatenate([d.acc for d in deferred])
        offsets = np.cumsum([0] + [d.acc.size for d in deferred[:-1]])
        t_row = np.concatenate([d.t_row + o for d, o in zip(deferred, offsets, strict=True)])
        t_col = np.concatenate([d.t_col for d in deferred])
        t_dq = np.concatenate([d.t_dq for d in deferred])
        t_avg = np.concatenate([d.t_avg for d in deferred])
        labels = np.concatenate([d.labels for d in deferred])
        full = tuple(np.concatenate([d.fig[k] for d in deferred]) for k in range(4))
        s, fig_s = pl.shrink(acc, t_row, t_col, t_dq, t_avg, equity[acc], target[acc],
                             full)  # type: ignore[arg-type]
        eq_new = pl.apply(acc, labels, t_row, t_col, t_dq * s[t_row], t_avg, equity[acc], fig_s)
        update(acc, eq_new, fig_s)
    im1, mm1, eq1, d1 = pl.evaluate(all_rows, none_i, none_i, none_f, none_f)
    final_pos = sp.csr_matrix((pl.qty, pl.cols_e, pl.ptr), shape=(n, base.n_instruments))
    final_ent = sp.csr_matrix((pl.qty * pl.avg, pl.cols_e, pl.ptr),
                              shape=(n, base.n_instruments))
    final = Book(base.margin_currency, base.account_ids, base.instruments, final_pos, final_ent,
                 pl.ccys, pl.collateral, OrderTable.empty())
    tb = pl.table()
    return BookPlan(final, eq0, im0, mm0, target0, eq1, im1, mm1, pl.target_of(im1, mm1), d1,
                    pl.penalty, pl.slippage, pl.notional, needed, stuck, *tb)


@dataclass(frozen=True)
class _Deferred:
    """Accounts whose chosen candidate restores health, waiting for the common bisection."""

    acc: IntArray
    labels: IntArray
    t_row: IntArray
    t_col: IntArray
    t_dq: FloatArray
    t_avg: FloatArray
    fig: tuple[FloatArray, FloatArray, FloatArray, FloatArray]


def _select(acc: IntArray, cands: IntArray, labels: IntArray, t_row: IntArray, t_col: IntArray,
            t_dq: FloatArray, t_avg: FloatArray, fig: tuple[FloatArray, ...]) -> _Deferred:
    """The trades and figures of candidate ``cands[k]`` for account ``acc[k]``."""
    sel = np.isin(t_row, cands)
    remap = np.full(int(t_row.max()) + 1, -1, dtype=np.int64)
    remap[cands] = np.arange(cands.size)
    f = tuple(x[cands] for x in fig)
    return _Deferred(acc, np.asarray(labels, np.int64), remap[t_row[sel]], t_col[sel],
                     t_dq[sel], t_avg[sel], (f[0], f[1], f[2], f[3]))


def _cell_values_state(pl: _Planner, acc: IntArray, col: IntArray) -> FloatArray:
    """Entry price of account ``acc[k]``'s position in ``col[k]`` (NaN if none or unknown)."""
    out = np.full(acc.size, np.nan)
    for k, (a, c) in enumerate(zip(acc, col, strict=True)):
        lo, hi = pl.ptr[a], pl.ptr[a + 1]
        hit = np.flatnonzero(pl.cols_e[lo:hi] == c)
        if hit.size:
            out[k] = pl.avg[lo + hit[0]]
    return out


def _apply_candidates(pl: _Planner, acc: IntArray, cands: IntArray, labels: int | IntArray,
                      t_row: IntArray, t_col: IntArray, t_dq: FloatArray, t_avg: FloatArray,
                      equity: FloatArray, fig: tuple[FloatArray, ...], update: object) -> None:
    """Execute candidate ``cands[k]`` for account ``acc[k]`` in full."""
    sel = np.isin(t_row, cands)
    remap = np.full(int(t_row.max()) + 1 if t_row.size else 0, -1, dtype=np.int64)
    remap[cands] = np.arange(cands.size)
    r, c, dq, av = remap[t_row[sel]], t_col[sel], t_dq[sel], t_avg[sel]
    full = tuple(f[cands] for f in fig)
    eq_b = equity[acc]
    eq_new = pl.apply(acc, labels, r, c, dq, av, eq_b, full)  # type: ignore[arg-type]
    update(acc, eq_new, full)  # type: ignore[operator]


def plan_liquidation(
    portfolio: Portfolio,
    market: MarketSnapshot,
    model: MarginModel,
    params: PlannerParams | None = None,
    liquidity: LiquidityParams | None = None,
) -> LiquidationPlan:
    """Plan the least costly reduction that restores one account's health.

    The account is planned by :func:`plan_book` on a book of one (one code path).

    Parameters
    ----------
    portfolio : Portfolio
        The account (open orders are ignored: they are cancelled before liquidation).
    market : MarketSnapshot
        Market data (marks, bid/ask for the liquidity model).
    model : MarginModel
        Margin model that judges health after each step.
    params : PlannerParams, optional
        Planner parameters (shipped defaults if omitted).
    liquidity : LiquidityParams, optional
        Liquidity model parameters (shipped defaults if omitted).

    Returns
    -------
    LiquidationPlan
        Steps with sizes, prices and margins after each; ``final`` is the account afterwards;
        ``deficit``, ``deficit_covered_by`` and ``conservation_error`` state who pays what.
    """
    mc = portfolio.margin_currency
    book = Book.from_portfolios([portfolio.with_orders(())], margin_currency=mc)
    bp = plan_book(book, market, model, params, liquidity)
    plan = LiquidationPlan(portfolio.account_id, model.name, mc, float(bp.before_equity[0]),
                           float(bp.before_initial_margin[0]),
                           float(bp.before_maintenance_margin[0]), float(bp.before_target[0]))
    names = [inst.name for inst in bp.book.instruments]
    labels = {_LABEL_ALL: "close every position pro rata",
              _LABEL_LAST: "close every position (account cannot be restored)"}
    for st in range(bp.step_account.size):
        k = np.flatnonzero(bp.trade_step == st)
        trades = tuple((names[int(bp.trade_column[t])], float(bp.trade_quantity[t]),
                        float(bp.trade_price[t])) for t in k)
        code = int(bp.step_label[st])
        if code == _LABEL_HEDGE:
            label = f"hedge delta with {trades[0][0]}"
        else:
            label = labels.get(code, f"close {trades[0][0]}")
        plan.steps.append(PlanStep(label, trades, float(bp.step_slippage[st]),
                                   float(bp.step_penalty[st]), float(bp.step_equity[st]),
                                   float(bp.step_im[st]), float(bp.step_mm[st]),
                                   float(bp.step_target[st])))
    plan.final = bp.book.portfolio(0)
    plan.stuck = bool(bp.stuck[0])
    plan._notional = float(bp.notional_usd[0])
    final_equity = plan.steps[-1].equity if plan.steps else plan.before_equity
    plan.deficit = max(0.0, -final_equity)
    plan.deficit_covered_by = DEFICIT_COVER if plan.deficit > 0 else ""
    plan.conservation_error = _plan_conservation(plan)
    return plan


def _plan_conservation(plan: LiquidationPlan) -> Decimal:
    """Post the plan's cash flows to a Decimal ledger and return its conservation error.

    The account opens at its equity; each step pays its execution cost to the market and its
    penalty to the insurance fund; a deficit left at the end is paid in by the insurance fund
    (which recovers it by ADL or socialised loss, outside the plan).
    """
    ledger = Ledger()
    ccy = plan.margin_currency
    acct = f"account:{plan.account_id}"

    def dec(x: float) -> Decimal:
        return ledger.quantize(Decimal(repr(float(x))), ccy)

    opening = dec(plan.before_equity)
    if opening != 0:
        ledger.opening(acct, ccy, opening)
    for s in plan.steps:
        for amount, payee, why in ((s.slippage, "external:market", "execution cost"),
                                   (s.penalty, f"insurance_fund:{ccy}", "liquidation penalty")):
            d = dec(amount)
            if d > 0:
                ledger.move(acct, payee, d, ccy, why)
    bal = ledger.balance(acct, ccy)
    if plan.deficit > 0 and bal < 0:
        ledger.move(f"insurance_fund:{ccy}", acct, -bal, ccy, "deficit cover")
    return ledger.conservation_error(ccy)
