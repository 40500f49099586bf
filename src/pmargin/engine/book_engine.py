"""Book engine: every account of a venue margined in one pass, kept current incrementally.

Currently implemented
---------------------
* Full recompute on a market update: the model prices each instrument once per scenario
  (``prepare``) and evaluates all accounts as sparse products (``evaluate``), optionally in
  account chunks on an executor (local or Dask).
* Incremental updates: a trade, deposit or withdrawal re-evaluates only that account's row, in
  time proportional to its positions.
* What-if / pre-trade checks and withdrawal checks against the current prepared market.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray, IntArray
from pmargin.book.positions import Book, OrderTable
from pmargin.engine.executors import Executor, LocalExecutor
from pmargin.errors import BookError, InvalidInput, StaleMarketData
from pmargin.instruments import Instrument, parse_instrument
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel
from pmargin.models.result import BookMarginResult

__all__ = ["BookEngine", "WhatIf", "concat_results", "evaluate_chunk"]


@dataclass(frozen=True)
class WhatIf:
    """Outcome of a pre-trade or withdrawal check.

    Attributes
    ----------
    account_id : str
        Account checked.
    initial_margin, maintenance_margin, equity : float
        After the hypothetical change (margin currency).
    before_initial_margin, before_equity : float
        Current figures.
    passed : bool
        Whether equity stays at or above initial margin (or the change reduces risk:
        a change that lowers IM and does not lower equity is always allowed).
    excess : float
        ``equity - initial_margin`` after the change (negative = shortfall).
    """

    account_id: str
    initial_margin: float
    maintenance_margin: float
    equity: float
    before_initial_margin: float
    before_equity: float
    passed: bool
    excess: float


def evaluate_chunk(shared: tuple[MarginModel, Any], book: Book) -> BookMarginResult:
    """Evaluate one chunk of accounts (module-level so executors can pickle it)."""
    model, prep = shared
    return model.evaluate(prep, book)


def concat_results(parts: Sequence[BookMarginResult]) -> BookMarginResult:
    """Concatenate per-chunk results in order."""
    first = parts[0]
    cat = np.concatenate
    return BookMarginResult(
        model=first.model,
        params_digest=first.params_digest,
        margin_currency=first.margin_currency,
        mc_usd=first.mc_usd,
        account_ids=[a for p in parts for a in p.account_ids],
        initial_margin=cat([p.initial_margin for p in parts]),
        maintenance_margin=cat([p.maintenance_margin for p in parts]),
        equity=cat([p.equity for p in parts]),
        components={k: cat([p.components[k] for p in parts]) for k in first.components},
        greeks={k: cat([p.greeks[k] for p in parts]) for k in first.greeks},
    )


class BookEngine:
    """Holds a book, the prepared market and the current margin of every account.

    Parameters
    ----------
    model : MarginModel
        Margin model (any preset).
    book : Book
        Accounts; its columns should cover every instrument that may be traded (new
        instruments are added on the fly at the cost of a re-preparation).
    market : MarketSnapshot
        Initial market.
    chunk_size : int, optional
        Accounts per chunk for the full recompute (default: all in one).
    executor : Executor, optional
        Where chunks run (default in-process).
    """

    def __init__(self, model: MarginModel, book: Book, market: MarketSnapshot,
                 chunk_size: int | None = None, executor: Executor | None = None) -> None:
        self.model = model
        self.book = book
        self.chunk_size = chunk_size
        self.executor: Executor = executor or LocalExecutor()
        self._row = {a: i for i, a in enumerate(book.account_ids)}
        if len(self._row) != book.n_accounts:
            raise BookError("account_ids", "duplicates", "account ids must be unique")
        self._col = book.instrument_index()
        self._inst_col: dict[Instrument, int] = {}  # what-if lookups without formatting names
        self._ccy = {c: k for k, c in enumerate(book.collateral_currencies)}
        self.prep: Any = None
        self.result: BookMarginResult
        self._overlay: dict[int, tuple[sp.csr_matrix, sp.csr_matrix]] = {}
        self._chunks: list[Book] | None = None
        self._distance_cache: Any = None
        self.update_market(market)

    # ------------------------------------------------------------------ full recompute
    def update_market(self, market: MarketSnapshot) -> BookMarginResult:
        """Re-price risk arrays for ``market`` and recompute every account.

        Parameters
        ----------
        market : MarketSnapshot
            New market data.

        Returns
        -------
        BookMarginResult
            Margins of every account.

        Raises
        ------
        StaleMarketData
            If ``market`` is older than the market already in use: an out-of-order tick must
            never replace newer data (it could lower margins).
        """
        current = getattr(self, "market", None)
        if current is not None and market.valuation_time < current.valuation_time:
            raise StaleMarketData(
                "market.valuation_time", market.valuation_time.isoformat(),
                f"is older than the market in use ({current.valuation_time.isoformat()})")
        self.market = market
        self._flush()
        self.prep = self.model.prepare(self.book, market)
        self.result = self.recompute()
        return self.result

    def chunks(self) -> list[Book]:
        """Split the book into account chunks of ``chunk_size`` (kept until the book changes)."""
        if self._chunks is None:
            n = self.book.n_accounts
            size = self.chunk_size or max(n, 1)
            if size >= n:
                # a fresh (shallow) object each time the book changes, so that an executor
                # keeping chunks resident by identity never reuses a stale copy
                self._chunks = [dataclasses.replace(self.book)]
            else:
                self._chunks = [self.book.subset(np.arange(s, min(s + size, n)))
                                for s in range(0, n, size)]
        return self._chunks

    def book_copy(self) -> Book:
        """A copy of the book as it stands now (rows changed since the last recompute included).

        The engine is not changed (its overlay is merged into the copy, not into the engine), so
        a reader can take it while holding only a read lock; the copy can be margined elsewhere
        (in another thread, on other markets) without touching this engine.

        Returns
        -------
        Book
            Independent arrays: positions and entry notionals ``(n_accounts, n_instruments)``,
            collateral ``(n_accounts, n_currencies)``, the same account and instrument order.
        """
        b = self.book
        rows = sorted(self._overlay)
        pos = _replace_rows(b.positions, rows, [self._overlay[r][0] for r in rows])
        ent = _replace_rows(b.entry_notional, rows, [self._overlay[r][1] for r in rows])
        return Book(b.margin_currency, list(b.account_ids), list(b.instruments),
                    pos, ent, list(b.collateral_currencies), b.collateral.copy(),
                    OrderTable(b.orders.account.copy(), b.orders.instrument.copy(),
                               b.orders.quantity.copy(), b.orders.price.copy()))

    def recompute(self) -> BookMarginResult:
        """Evaluate every account against the prepared market (no re-pricing)."""
        self._flush()
        parts = self.executor.map_chunks(evaluate_chunk, (self.model, self.prep), self.chunks())
        self.result = concat_results(parts)
        return self.result

    # ------------------------------------------------------------------ one account
    def row(self, account_id: str) -> int:
        """Row of an account."""
        try:
            return self._row[account_id]
        except KeyError as exc:
            raise BookError("account_id", account_id, "is not in the book") from exc

    def _account_book(self, r: int, positions: sp.csr_matrix | None = None,
                      entry: sp.csr_matrix | None = None, collateral: FloatArray | None = None,
                      orders: OrderTable | None = None) -> Book:
        b = self.book
        if r in self._overlay and positions is None:
            positions, entry = self._overlay[r]
        if orders is None:
            keep = b.orders.account == r
            orders = OrderTable(np.zeros(int(keep.sum()), np.int64), b.orders.instrument[keep],
                                b.orders.quantity[keep], b.orders.price[keep])
        return Book(
            b.margin_currency, [b.account_ids[r]], b.instruments,
            positions if positions is not None else b.positions[r],
            entry if entry is not None else b.entry_notional[r],
            b.collateral_currencies,
            collateral if collateral is not None else b.collateral[r:r + 1],
            orders,
        )

    def _column(self, inst: Instrument | str) -> int:
        if not isinstance(inst, str):
            known = self._inst_col.get(inst)
            if known is not None:
                return known
        i = parse_instrument(inst) if isinstance(inst, str) else inst
        j = self._col.get(i.name)
        if j is None:
            self._add_column(i)
            j = self._col[i.name]
        self._inst_col[i] = j
        return j

    def _add_column(self, inst: Instrument) -> None:
        self._flush()
        self._chunks = None
        b = self.book
        b.instruments = [*b.instruments, inst]
        shape = (b.n_accounts, len(b.instruments))
        b.positions = sp.csr_matrix((b.positions.data, b.positions.indices, b.positions.indptr),
                                    shape=shape)
        b.entry_notional = sp.csr_matrix(
            (b.entry_notional.data, b.entry_notional.indices, b.entry_notional.indptr),
            shape=shape)
        self._col[inst.name] = len(b.instruments) - 1
        self.prep = self.model.prepare(b, self.market)

    def _ccy_col(self, currency: str) -> int:
        c = currency.upper()
        if c not in self._ccy:
            b = self.book
            b.collateral_currencies = [*b.collateral_currencies, c]
            b.collateral = np.hstack([b.collateral, np.zeros((b.n_accounts, 1))])
            self._chunks = None
            self._ccy[c] = len(b.collateral_currencies) - 1
            self.prep = self.model.prepare(b, self.market)
        return self._ccy[c]

    def _row_arrays(self, r: int) -> tuple[IntArray, FloatArray, FloatArray]:
        """Column indices (sorted), quantities and entry notionals of row ``r``."""
        if r in self._overlay:
            row_p, row_e = self._overlay[r]
            return row_p.indices, row_p.data, row_e.data
        p = self.book.positions
        e = self.book.entry_notional
        a, b = p.indptr[r], p.indptr[r + 1]
        idx: IntArray = p.indices[a:b]
        ent: FloatArray
        if e.indptr[r] == a and e.indptr[r + 1] == b and np.array_equal(e.indices[a:b], idx):
            ent = np.asarray(e.data[a:b], dtype=np.float64)
        else:
            ent = (np.asarray(e[r, idx].toarray(), dtype=np.float64).ravel() if idx.size
                   else np.zeros(0))
        order = np.argsort(idx, kind="stable")
        return idx[order], np.asarray(p.data[a:b], dtype=np.float64)[order], ent[order]

    def _trade_arrays(self, r: int, trades: Sequence[tuple[int, float, float]]
                      ) -> tuple[IntArray, FloatArray, FloatArray]:
        """Row r's column indices, quantities and entry notionals after fills.

        Fills are ``(column, quantity, price)``. The entry notional grows with a fill that adds
        to a position, shrinks in proportion when a fill reduces it, and restarts at the fill
        price when the position flips side.
        """
        idx, q, ent = self._row_arrays(r)
        idx = idx.astype(np.int64)
        q = q.copy()
        ent = ent.copy()
        for j, dq, px in trades:
            k = int(np.searchsorted(idx, j))
            if k == idx.size or idx[k] != j:
                idx = np.concatenate((idx[:k], np.array([j], np.int64), idx[k:]))
                q = np.concatenate((q[:k], np.zeros(1), q[k:]))
                ent = np.concatenate((ent[:k], np.zeros(1), ent[k:]))
            old_q = float(q[k])
            old_e = old_q * px if math.isnan(ent[k]) else float(ent[k])
            new_q = old_q + dq
            if old_q == 0 or (dq != 0 and (dq > 0) == (old_q > 0)):  # same side
                new_e = old_e + dq * px
            elif abs(dq) <= abs(old_q):
                new_e = old_e * (new_q / old_q)
            else:
                new_e = new_q * px
            q[k] = new_q
            ent[k] = new_e
        keep = q != 0.0
        if not keep.all():
            idx, q, ent = idx[keep], q[keep], ent[keep]
        return idx, q, ent

    def _row_with_trades(self, r: int, trades: Sequence[tuple[int, float, float]]
                         ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Row r's positions and entry notionals after fills, as one-row CSR matrices."""
        idx, q, ent = self._trade_arrays(r, trades)
        n_i = self.book.n_instruments
        ptr = np.array([0, idx.size], dtype=np.int64)
        row_q = sp.csr_matrix((q, idx, ptr), shape=(1, n_i))
        row_e = sp.csr_matrix((ent, idx, ptr.copy()), shape=(1, n_i))
        return row_q, row_e

    def what_if(self, account_id: str,
                orders: Sequence[tuple[Instrument | str, float, float]]) -> WhatIf:
        """Margin an account as if ``orders`` were filled, without changing the book.

        Parameters
        ----------
        account_id : str
            Account.
        orders : sequence of (instrument, signed quantity, price)
            Hypothetical fills; price in USD per unit of underlying.

        Returns
        -------
        WhatIf
            New IM/MM/equity, pass/fail and excess.
        """
        r = self.row(account_id)
        trades = [(self._column(i), float(q), float(p)) for i, q, p in orders]
        for _, dq, px in trades:
            if not math.isfinite(dq) or not math.isfinite(px) or px <= 0:
                raise InvalidInput("orders", (dq, px),
                                   "quantity must be finite and price positive")
        idx, qty, ent_row = self._trade_arrays(r, trades)
        fast = self._fast_row(r, idx, qty, ent_row, self.book.collateral[r:r + 1])
        if fast is not None:
            return self._verdict_values(r, *fast)
        pos, ent = self._row_with_trades(r, trades)
        res = self.model.evaluate(self.prep, self._account_book(r, pos, ent))
        return self._verdict(r, res)

    def _fast_row(self, r: int, idx: IntArray, q: FloatArray, ent: FloatArray, coll: FloatArray
                  ) -> tuple[float, float, float, bool] | None:
        """IM, MM, equity of one row via the model's kernel path, if it has one."""
        from pmargin.models.portfolio_margin import PortfolioMarginModel, RowsCSR

        if not isinstance(self.model, PortfolioMarginModel):
            return None
        if len(self.book.orders) and np.any(self.book.orders.account == r):
            return None
        out = self.model.evaluate_rows(
            self.prep, RowsCSR(np.array([0, idx.size], dtype=np.int64), idx, q), ent,
            np.ascontiguousarray(coll, dtype=np.float64))
        if out is None:
            return None
        return float(out[0][0]), float(out[1][0]), float(out[2][0]), True

    def check_withdrawal(self, account_id: str, currency: str, amount: float) -> WhatIf:
        """Check that withdrawing ``amount`` of ``currency`` leaves equity at or above IM.

        Parameters
        ----------
        account_id : str
            Account.
        currency : str
            Collateral currency.
        amount : float
            Positive amount to withdraw.

        Returns
        -------
        WhatIf
            Outcome; a withdrawal never counts as risk-reducing.
        """
        if not np.isfinite(amount) or amount <= 0:
            raise InvalidInput("amount", amount, "must be positive and finite")
        r = self.row(account_id)
        k = self._ccy_col(currency)
        coll = self.book.collateral[r:r + 1].copy()
        coll[0, k] -= amount
        res = self.model.evaluate(self.prep, self._account_book(r, collateral=coll))
        return self._verdict(r, res, allow_risk_reducing=False)

    def _verdict(self, r: int, res: BookMarginResult, allow_risk_reducing: bool = True) -> WhatIf:
        return self._verdict_values(r, float(res.initial_margin[0]),
                                    float(res.maintenance_margin[0]), float(res.equity[0]),
                                    allow_risk_reducing)

    def _verdict_values(self, r: int, im: float, mm: float, eq: float,
                        allow_risk_reducing: bool = True) -> WhatIf:
        before_im = float(self.result.initial_margin[r])
        before_eq = float(self.result.equity[r])
        ok = eq >= im or (allow_risk_reducing and im <= before_im and eq >= before_eq)
        return WhatIf(self.book.account_ids[r], im, mm, eq, before_im, before_eq, bool(ok),
                      eq - im)

    def liquidation_distance(self, account_id: str, tol: float = 1e-4) -> dict[str, Any]:
        """Index moves that take one account's equity to MM (see :mod:`pmargin.engine.distance`).

        Parameters
        ----------
        account_id : str
            Account.
        tol : float, optional
            Width of the final bracket (relative move).

        Returns
        -------
        dict of str to Distance
            By underlying (restricted markets cached for the market in use).
        """
        from pmargin.engine.distance import MarketCache, liquidation_distance

        r = self.row(account_id)
        if self._distance_cache is None or self._distance_cache.market is not self.market:
            self._distance_cache = MarketCache(self.market)
        return liquidation_distance(self.model, self.market, self._account_book(r), 0, tol=tol,
                                    cache=self._distance_cache)

    # ------------------------------------------------------------------ mutations
    def _store_row(self, r: int, pos: sp.csr_matrix, ent: sp.csr_matrix) -> None:
        """Keep the new row in an overlay (O(row)); merged into the CSR at the next recompute."""
        self._overlay[r] = (pos, ent)

    def _flush(self) -> None:
        """Merge overlaid rows into the book's CSR matrices in one pass."""
        if not self._overlay:
            return
        b = self.book
        rows = sorted(self._overlay)
        b.positions = _replace_rows(b.positions, rows, [self._overlay[r][0] for r in rows])
        b.entry_notional = _replace_rows(b.entry_notional, rows,
                                         [self._overlay[r][1] for r in rows])
        self._overlay.clear()
        self._chunks = None

    def _refresh_row(self, r: int) -> None:
        res = self.model.evaluate(self.prep, self._account_book(r))
        out = self.result
        out.initial_margin[r] = res.initial_margin[0]
        out.maintenance_margin[r] = res.maintenance_margin[0]
        out.equity[r] = res.equity[0]
        for k, v in res.components.items():
            out.components[k][r] = v[0]
        for k, v in res.greeks.items():
            out.greeks[k][r] = v[0]

    def apply_trade(self, account_id: str, instrument: Instrument | str, quantity: float,
                    price: float) -> None:
        """Book a fill and update that account's margin.

        Parameters
        ----------
        account_id : str
            Account.
        instrument : Instrument or str
            Instrument traded.
        quantity : float
            Signed quantity.
        price : float
            Fill price in USD per unit of underlying.
        """
        r = self.row(account_id)
        j = self._column(instrument)
        pos, ent = self._row_with_trades(r, [(j, float(quantity), float(price))])
        self._store_row(r, pos, ent)
        self._refresh_row(r)

    def deposit(self, account_id: str, currency: str, amount: float) -> None:
        """Add collateral and update that account's margin."""
        if not np.isfinite(amount) or amount <= 0:
            raise InvalidInput("amount", amount, "must be positive and finite")
        r = self.row(account_id)
        k = self._ccy_col(currency)
        self.book.collateral[r, k] += amount
        self._chunks = None  # sub-books hold copies of the collateral rows
        self._refresh_row(r)

    def check_account(self, account_id: str, positions: Mapping[str, tuple[float, float]],
                      collateral: Mapping[str, float], allow_risk_reducing: bool = True
                      ) -> WhatIf:
        """Margin an account as if its whole row were ``positions`` and ``collateral``.

        The book is not changed. Same verdict rule as :meth:`what_if`.

        Parameters
        ----------
        account_id : str
            Account.
        positions : mapping of instrument name to (quantity, entry notional)
            The hypothetical row; entry notional in USD (NaN = at the mark).
        collateral : mapping of currency to balance
            Hypothetical balances (currencies not given keep their current balance).
        allow_risk_reducing : bool, optional
            Pass a change that lowers IM without lowering equity even if equity < IM.

        Returns
        -------
        WhatIf
            New IM/MM/equity, pass/fail and excess.
        """
        r = self.row(account_id)
        cols, q, e, coll = self._hypothetical_arrays(r, positions, collateral)
        fast = self._fast_row(r, cols, q, e, coll)
        if fast is not None:  # the model's one-row kernel (same figures as evaluate)
            return self._verdict_values(r, fast[0], fast[1], fast[2], allow_risk_reducing)
        pos, ent, coll = self._hypothetical_row(r, positions, collateral)
        res = self.model.evaluate(self.prep, self._account_book(r, pos, ent, coll))
        return self._verdict(r, res, allow_risk_reducing)

    def _hypothetical_arrays(self, r: int, positions: Mapping[str, tuple[float, float]],
                             collateral: Mapping[str, float]
                             ) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
        """A hypothetical row of account row ``r``: columns, quantities, entry notionals.

        Columns sorted; the collateral row (shape (1, currencies)) has ``collateral`` set.
        """
        cols = np.array([self._column(n) for n in positions], dtype=np.int64)
        q = np.array([v[0] for v in positions.values()], dtype=np.float64)
        e = np.array([v[1] for v in positions.values()], dtype=np.float64)
        order = np.argsort(cols, kind="stable")
        ks = [self._ccy_col(ccy) for ccy in collateral]  # may add columns: before the copy
        coll = self.book.collateral[r:r + 1].copy()
        coll[0, ks] = list(collateral.values())
        return cols[order], q[order], e[order], coll

    def _hypothetical_row(self, r: int, positions: Mapping[str, tuple[float, float]],
                          collateral: Mapping[str, float]
                          ) -> tuple[sp.csr_matrix, sp.csr_matrix, FloatArray]:
        cols, q, e, coll = self._hypothetical_arrays(r, positions, collateral)
        n_i = self.book.n_instruments
        ptr = np.array([0, cols.size], dtype=np.int64)
        return (sp.csr_matrix((q, cols, ptr), shape=(1, n_i)),
                sp.csr_matrix((e, cols, ptr.copy()), shape=(1, n_i)), coll)

    def set_account(self, account_id: str, positions: Mapping[str, tuple[float, float]],
                    collateral: Mapping[str, float]) -> None:
        """Replace one account's positions and collateral and update its margin.

        For a caller that keeps positions itself (the service keeps them exactly, in decimals).

        Parameters
        ----------
        account_id : str
            Account.
        positions : mapping of instrument name to (quantity, entry notional)
            The account's whole row; entry notional in USD (NaN = at the mark).
        collateral : mapping of currency to balance
            Balances of the book's collateral currencies (others are left unchanged).
        """
        r = self.row(account_id)
        pos, ent, coll = self._hypothetical_row(r, positions, collateral)
        self._store_row(r, pos, ent)
        self.book.collateral[r] = coll[0]
        self._chunks = None
        self._refresh_row(r)

    def withdraw(self, account_id: str, currency: str, amount: float) -> WhatIf:
        """Withdraw collateral if the check passes (else nothing changes).

        Returns
        -------
        WhatIf
            The check's outcome.
        """
        verdict = self.check_withdrawal(account_id, currency, amount)
        if verdict.passed:
            r = self.row(account_id)
            self.book.collateral[r, self._ccy[currency.upper()]] -= amount
            self._chunks = None
            self._refresh_row(r)
        return verdict


def _replace_rows(m: sp.csr_matrix, rows: list[int], new: list[sp.csr_matrix]) -> sp.csr_matrix:
    """Return ``m`` with the given rows (sorted) replaced, in one pass over the matrix."""
    data: list[np.ndarray] = []
    idx: list[np.ndarray] = []
    counts = np.diff(m.indptr).astype(np.int64)
    prev = 0
    for r, row in zip(rows, new, strict=True):
        data += [m.data[m.indptr[prev]:m.indptr[r]], row.data]
        idx += [m.indices[m.indptr[prev]:m.indptr[r]], row.indices]
        counts[r] = row.nnz
        prev = r + 1
    data.append(m.data[m.indptr[prev]:])
    idx.append(m.indices[m.indptr[prev]:])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return sp.csr_matrix((np.concatenate(data), np.concatenate(idx).astype(m.indices.dtype),
                          indptr), shape=m.shape)
