"""Isolated margin: every position is its own sub-account with its own collateral.

Deribit and OKX define isolated margin as margin assigned to one position: the position is
judged against its own collateral only, its losses cannot use the rest of the account and its
liquidation does not touch other positions. :class:`IsolatedMarginModel` wraps any margin model
(the *base*, e.g. ``deribit-sm``) and applies it to one sub-account per position, vectorised over
a book, so books, the book engine, the cascade and the CLI share one implementation. It is
loaded by name: ``load_model("deribit-sm-isolated")`` (see :mod:`pmargin.models.registry`).

Currently implemented
---------------------
* Sub-accounts: one per (account, position) cell of the book, plus one ``free`` sub-account per
  account that holds no position or keeps unassigned collateral.
* Collateral: a position's ``isolated_collateral`` (margin currency) when the portfolio gives one
  (:meth:`IsolatedMarginModel.margin`); otherwise the account's collateral (every currency) is
  shared among its positions in proportion to each position's own IM under the base model
  (equally when all IMs are 0). All of it is assigned: nothing is kept in reserve. A
  :class:`~pmargin.book.Book` carries no per-position collateral, so books always use the
  proportional rule.
* Account figures: IM, MM and equity are the sums over the account's sub-accounts (equity is the
  account's value, collateral plus positions, as in cross margin); components add
  ``isolated_shortfall_im`` / ``isolated_shortfall_mm`` (sum over positions of the requirement
  not covered by the position's own equity) and ``isolated_deficit`` (sum of negative position
  equities). Open orders are margined by the base model on the
  whole account (as if filled) and added to IM.
* Health: an account is as unhealthy as its worst sub-account (the rule of
  :mod:`pmargin.models.health` applied to each sub-account, recovered from the components by
  :func:`pmargin.models.result.isolated_health`), so one position below its MM puts the account
  in liquidation even when the account's total equity covers the total MM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray, IntArray
from pmargin.book import Book, OrderTable
from pmargin.errors import InvalidInput
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel
from pmargin.models.health import HEALTH_NAMES
from pmargin.models.result import AccountMargin, BookMarginResult, Columns
from pmargin.portfolio import Portfolio, Position

__all__ = ["IsolatedBook", "IsolatedMarginModel", "IsolatedPrepared"]


@dataclass(frozen=True)
class IsolatedBook:
    """Sub-accounts of a book: one per position (and one per account with free collateral).

    Attributes
    ----------
    book : Book
        The sub-accounts, same columns and collateral currencies as the original book, no orders.
    parent : ndarray of int, shape (sub-accounts,)
        Row of the owning account in the original book.
    cell : ndarray of int, shape (sub-accounts,)
        Index of the position in the original book's CSR data (-1 for a ``free`` sub-account).
    """

    book: Book
    parent: IntArray
    cell: IntArray


@dataclass(frozen=True)
class IsolatedPrepared:
    """Per-market work of the base model (the sub-accounts have the book's columns)."""

    base: Any


def _cell_entry(book: Book, rows: IntArray) -> FloatArray:
    """Entry notional of every stored position cell (CSR data order; NaN where unknown)."""
    pos = sp.csr_matrix(book.positions)
    ent = sp.csr_matrix(book.entry_notional)
    if ent.nnz == pos.nnz and np.array_equal(ent.indptr, pos.indptr) \
            and np.array_equal(ent.indices, pos.indices):
        return np.asarray(ent.data, np.float64)
    if pos.nnz == 0:
        return np.zeros(0)
    return np.asarray(ent[rows, pos.indices], np.float64).ravel()


def _sub_book(book: Book, collateral: FloatArray, free_rows: IntArray) -> IsolatedBook:
    """Build the sub-account book: one row per position cell, then the ``free`` rows."""
    pos = sp.csr_matrix(book.positions)
    n_cells = pos.nnz
    rows = np.repeat(np.arange(book.n_accounts), np.diff(pos.indptr))
    n_sub = n_cells + free_rows.size
    indptr = np.r_[np.arange(n_cells + 1), np.full(free_rows.size, n_cells)]
    shape = (n_sub, book.n_instruments)
    positions = sp.csr_matrix((pos.data.copy(), pos.indices.copy(), indptr), shape=shape)
    entry = sp.csr_matrix((_cell_entry(book, rows), pos.indices.copy(), indptr.copy()),
                          shape=shape)
    names = [f"{book.account_ids[r]}/{book.instruments[j].name}"
             for r, j in zip(rows, pos.indices, strict=True)]
    names += [f"{book.account_ids[r]}/free" for r in free_rows]
    sub = Book(book.margin_currency, names, book.instruments, positions, entry,
               book.collateral_currencies, collateral, OrderTable.empty())
    return IsolatedBook(sub, np.r_[rows, free_rows].astype(np.int64),
                        np.r_[np.arange(n_cells), np.full(free_rows.size, -1)].astype(np.int64))


class IsolatedMarginModel(MarginModel):
    """Isolated margin: a base model applied to one sub-account per position.

    Parameters
    ----------
    base : MarginModel
        The rules each position is margined with (``deribit-sm`` for ``deribit-sm-isolated``).
    name : str
        Model name (``<base>-isolated``).
    """

    def __init__(self, base: MarginModel, name: str) -> None:
        super().__init__(base.params)
        self.base = base
        self._name = name
        self.digest = hashlib.sha256(f"isolated:{base.digest}".encode()).hexdigest()

    @property
    def name(self) -> str:
        """Model name (``<base>-isolated``)."""
        return self._name

    # ------------------------------------------------------------------ sub-accounts
    def isolate(self, prep: IsolatedPrepared, book: Book,
                assigned: Mapping[int, float] | None = None) -> IsolatedBook:
        """Split every account of ``book`` into its isolated sub-accounts.

        Parameters
        ----------
        prep : IsolatedPrepared
            Output of :meth:`prepare` for ``book``'s columns.
        book : Book
            Accounts.
        assigned : mapping of int to float, optional
            Collateral (margin currency) given to position cells by index in the CSR data of
            ``book.positions``; the rest of each account's collateral is shared as usual.

        Returns
        -------
        IsolatedBook
            Sub-accounts with their collateral.

        Raises
        ------
        InvalidInput
            If the collateral assigned in an account exceeds its margin-currency balance.
        """
        pos = sp.csr_matrix(book.positions)
        counts = np.diff(pos.indptr)
        rows = np.repeat(np.arange(book.n_accounts), counts)
        coll = np.asarray(book.collateral, np.float64)
        fixed = np.zeros(pos.nnz, bool)
        fixed_amt = np.zeros(pos.nnz)
        for c, amt in (assigned or {}).items():
            fixed[c], fixed_amt[c] = True, amt
        left = coll.copy()
        if fixed.any():
            if book.margin_currency not in book.collateral_currencies:
                raise InvalidInput("isolated_collateral", float(fixed_amt.sum()),
                                   f"the account holds no {book.margin_currency}")
            k = book.collateral_currencies.index(book.margin_currency)
            used = np.bincount(rows, weights=fixed_amt, minlength=book.n_accounts)
            over = np.flatnonzero(used > coll[:, k] * (1 + 1e-12) + 1e-12)
            if over.size:
                a = int(over[0])
                raise InvalidInput(f"{book.account_ids[a]}.isolated_collateral", float(used[a]),
                                   f"exceeds the {book.margin_currency} balance {coll[a, k]}")
            left[:, k] -= used
        # each position's own IM under the base model, without collateral
        bare = _sub_book(book, np.zeros((pos.nnz, len(book.collateral_currencies))),
                         np.zeros(0, np.int64))
        im = self.base.evaluate(prep.base, bare.book).initial_margin if pos.nnz else np.zeros(0)
        share = np.where(fixed, 0.0, np.maximum(im, 0.0))
        tot = np.bincount(rows, weights=share, minlength=book.n_accounts)
        n_free = np.bincount(rows, weights=(~fixed).astype(float), minlength=book.n_accounts)
        w = np.where(tot[rows] > 0, share / np.where(tot[rows] > 0, tot[rows], 1.0),
                     np.where(fixed, 0.0, 1.0 / np.maximum(n_free[rows], 1.0)))
        cell_coll = left[rows] * w[:, None]
        if fixed.any():
            cell_coll[:, k] += fixed_amt
        free = np.flatnonzero((counts == 0) | (n_free == 0))
        return _sub_book(book, np.vstack([cell_coll, left[free]]), free.astype(np.int64))

    def isolate_portfolios(self, portfolios: Sequence[Portfolio], market: MarketSnapshot
                           ) -> list[Portfolio]:
        """Split accounts into isolated sub-account portfolios (for the liquidation cascade).

        Each sub-account holds one position and the collateral :meth:`isolate` assigns to it
        (an account without positions is kept whole); margining a sub-account with this model
        or its base gives the same numbers.

        Parameters
        ----------
        portfolios : sequence of Portfolio
            Accounts of one margin currency.
        market : MarketSnapshot
            Market used to share the collateral (positions' IM).

        Returns
        -------
        list of Portfolio
            Sub-accounts named ``<account>/<instrument>`` (``<account>/free`` for collateral
            that no position holds).
        """
        if not portfolios:
            return []
        book = Book.from_portfolios(portfolios)
        iso = self.isolate(self.prepare(book, market), book)
        sub = iso.book
        pos = sp.csr_matrix(sub.positions)
        out: list[Portfolio] = []
        for r in range(sub.n_accounts):
            mc = portfolios[int(iso.parent[r])].margin_currency
            coll = {c: float(v) for c, v in zip(sub.collateral_currencies, sub.collateral[r],
                                                 strict=True) if v != 0.0}
            held: tuple[Position, ...] = ()
            if iso.cell[r] >= 0:  # row r of the sub-book holds exactly one cell
                name = book.instruments[int(pos.indices[pos.indptr[r]])].name
                held = _positions_of(portfolios[int(iso.parent[r])], name)
            out.append(Portfolio(mc, held, coll, (), sub.account_ids[r]))
        return out

    # ------------------------------------------------------------------ interface
    def prepare(self, book: Book, market: MarketSnapshot) -> IsolatedPrepared:
        """Prepare the base model for the columns of ``book``."""
        return IsolatedPrepared(self.base.prepare(book, market))

    def evaluate(self, prep: IsolatedPrepared, book: Book) -> BookMarginResult:
        """Margin every account of ``book`` as the sum of its isolated sub-accounts.

        Parameters
        ----------
        prep : IsolatedPrepared
            Output of :meth:`prepare`.
        book : Book
            Accounts.

        Returns
        -------
        BookMarginResult
            One row per account (see the module docstring); the sub-account figures are
            ``self.base.evaluate(prep.base, self.isolate(prep, book).book)``.
        """
        counts = np.diff(sp.csr_matrix(book.positions).indptr)
        if book.n_accounts and not len(book.orders) and int(counts.max()) <= 1:
            # every account is already its own sub-account (one position or none, e.g. a book
            # split by isolate_portfolios): the split would give the same rows, each with all of
            # its account's collateral (weight exactly 1), so the base margins the book as it is
            sub = self.base.evaluate(prep.base, book)
            return self._combine(book, sub, np.arange(book.n_accounts), prep)
        return self._evaluate(prep, book, None)[0]

    def _evaluate(self, prep: IsolatedPrepared, book: Book,
                  assigned: Mapping[int, float] | None
                  ) -> tuple[BookMarginResult, IsolatedBook, BookMarginResult]:
        iso = self.isolate(prep, book, assigned)
        sub = self.base.evaluate(prep.base, iso.book)
        return self._combine(book, sub, iso.parent, prep), iso, sub

    def _combine(self, book: Book, sub: BookMarginResult, parent: IntArray,
                 prep: IsolatedPrepared) -> BookMarginResult:
        """Account figures: sums of the sub-accounts' (``parent`` = account of each sub row)."""
        n = book.n_accounts

        def total(x: FloatArray) -> FloatArray:
            return np.bincount(parent, weights=x, minlength=n).astype(np.float64)

        comps = {k: total(v) for k, v in sub.components.items()}
        comps["isolated_deficit"] = total(np.maximum(0.0, -sub.equity))
        comps["isolated_shortfall_im"] = total(np.maximum(0.0, sub.initial_margin - sub.equity))
        comps["isolated_shortfall_mm"] = total(
            np.maximum(0.0, sub.maintenance_margin - sub.equity))
        orders = np.zeros(n)
        if len(book.orders):
            orders = self.base.evaluate(prep.base, book).components.get("open_orders", orders)
        comps["open_orders"] = np.asarray(orders, np.float64)
        return self.book_result(book, sub.mc_usd, total(sub.initial_margin) + comps["open_orders"],
                                total(sub.maintenance_margin), total(sub.equity), comps,
                                {k: total(v) for k, v in sub.greeks.items()})

    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> AccountMargin:
        """Compute and explain isolated margin of one account.

        Positions with ``isolated_collateral`` keep exactly that amount (margin currency); the
        rest of the collateral is shared among the other positions in proportion to their IM.
        The per-position table has ``isolated_collateral`` (value, margin currency),
        ``isolated_equity`` and ``isolated_health``; ``components["free_collateral"]`` is the
        collateral value no position holds.

        Parameters
        ----------
        portfolio : Portfolio
            The account.
        market : MarketSnapshot
            Market data.

        Returns
        -------
        AccountMargin
            Sums over the positions; ``health`` is the worst position's.
        """
        book = Book.from_portfolios([portfolio])
        pos = sp.csr_matrix(book.positions)
        index = {book.instruments[j].name: c for c, j in enumerate(pos.indices)}
        assigned: dict[int, float] = {}
        for p in portfolio.positions:
            if p.isolated_collateral is not None and p.instrument.name in index:
                c = index[p.instrument.name]
                assigned[c] = assigned.get(c, 0.0) + p.isolated_collateral
        prep = self.prepare(book, market)
        res, iso, sub = self._evaluate(prep, book, assigned)
        cells = iso.cell >= 0
        coll_value = sub.equity - _position_value(sub, iso, self, prep)
        frame = Columns({
            "instrument": [book.instruments[j].name for j in pos.indices[iso.cell[cells]]],
            "quantity": pos.data[iso.cell[cells]],
            "priced_by": self.table(book, market).priced_by[pos.indices[iso.cell[cells]]],
            "value": (sub.equity - coll_value)[cells],
            "initial_margin": sub.initial_margin[cells],
            "maintenance_margin": sub.maintenance_margin[cells],
            "isolated_collateral": coll_value[cells],
            "isolated_equity": sub.equity[cells],
            "isolated_health": [HEALTH_NAMES[int(h)] for h in sub.health[cells]],
        }, index="instrument")
        comps = {k: float(v[0]) for k, v in res.components.items()}
        comps["free_collateral"] = float(coll_value[~cells].sum())
        return self.account_margin(res, "isolated", frame, components=comps)


def _position_value(sub: BookMarginResult, iso: IsolatedBook, model: IsolatedMarginModel,
                    prep: IsolatedPrepared) -> FloatArray:
    """Value of each sub-account's position (equity without its collateral)."""
    bare = Book(iso.book.margin_currency, iso.book.account_ids, iso.book.instruments,
                iso.book.positions, iso.book.entry_notional, iso.book.collateral_currencies,
                np.zeros_like(iso.book.collateral), OrderTable.empty())
    return np.asarray(model.base.evaluate(prep.base, bare).equity, np.float64)


def _positions_of(portfolio: Portfolio, name: str) -> tuple[Position, ...]:
    """The position(s) of ``portfolio`` in instrument ``name`` (one cell of its book)."""
    return tuple(p for p in portfolio.positions if p.instrument.name == name)
