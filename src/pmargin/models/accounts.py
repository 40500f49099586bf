"""Account-level aggregates shared by every model: equity, collateral haircuts, order fills.

All functions are vectorised over the accounts of a :class:`~pmargin.book.Book`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray, IntArray
from pmargin.book import Book
from pmargin.market import MarketSnapshot
from pmargin.models.params import CollateralHaircut
from pmargin.models.valuation import KIND_OPTION, InstrumentTable

__all__ = [
    "CollateralTerms",
    "collateral_haircuts",
    "collateral_terms",
    "collateral_value",
    "greek_weights",
    "open_orders_im",
    "order_cost",
    "order_matrices",
    "position_values",
    "value_weights",
    "values_and_greeks",
]


@dataclass(frozen=True)
class CollateralTerms:
    """Per-currency collateral prices (in margin currency) and haircut rates of a book."""

    price: FloatArray
    haircut_im: FloatArray
    """IM haircut per unit of currency, in margin currency (price times rate)."""
    haircut_mm: FloatArray
    stable: FloatArray | None = None
    """Value (margin currency) per unit of stablecoins other than the margin currency, else 0."""

    def value(self, balances: FloatArray) -> FloatArray:
        """Collateral value per account (margin currency)."""
        if balances.shape[1] == 0:
            return np.zeros(balances.shape[0])
        if balances.shape[1] == 1:  # one currency: the product's one term, 0.0 + b p (as BLAS)
            return np.asarray(balances[:, 0] * self.price[0] + 0.0, dtype=np.float64)
        return np.asarray(balances @ self.price, dtype=np.float64)

    @cached_property
    def used(self) -> IntArray:
        """Currencies with an IM or MM haircut rate."""
        return np.flatnonzero((self.haircut_im != 0.0) | (self.haircut_mm != 0.0))

    @cached_property
    def any_haircut(self) -> tuple[bool, bool]:
        """Whether any currency has an IM haircut, an MM haircut (else the amounts are 0)."""
        return bool(np.any(self.haircut_im)), bool(np.any(self.haircut_mm))

    def haircut_amounts(self, balances: FloatArray) -> tuple[FloatArray, FloatArray]:
        """IM and MM haircut amounts on positive balances, per account."""
        used = self.used
        if used.size == 0:  # balances are finite (Book checks): every term would be 0
            n = balances.shape[0]
            return np.zeros(n), np.zeros(n)  # two arrays (callers may own them), no copy
        pos = np.maximum(balances[:, used], 0.0)
        return np.asarray(pos @ self.haircut_im[used]), np.asarray(pos @ self.haircut_mm[used])


def collateral_terms(book: Book, market: MarketSnapshot,
                     haircuts: Mapping[str, CollateralHaircut]) -> CollateralTerms:
    """Prices and haircut rates of a book's collateral currencies.

    Currencies without an entry in ``haircuts`` have none; the margin currency never has one.
    """
    mc = market.collateral_price(book.margin_currency)
    px = np.array([market.collateral_price(c) / mc for c in book.collateral_currencies],
                  dtype=np.float64)
    none = CollateralHaircut(im=0.0, mm=0.0)
    h = [none if c == book.margin_currency else haircuts.get(c, none)
         for c in book.collateral_currencies]
    from pmargin.models.valuation import is_stable

    stable = np.array([p if is_stable(c) and c != book.margin_currency else 0.0
                       for c, p in zip(book.collateral_currencies, px, strict=True)],
                      dtype=np.float64)
    return CollateralTerms(px, px * np.array([x.im for x in h], dtype=np.float64),
                           px * np.array([x.mm for x in h], dtype=np.float64), stable)


def collateral_value(book: Book, market: MarketSnapshot) -> FloatArray:
    """Value of every account's collateral in the margin currency, shape (accounts,)."""
    return collateral_terms(book, market, {}).value(book.collateral)


def collateral_haircuts(
    book: Book, market: MarketSnapshot, haircuts: Mapping[str, CollateralHaircut]
) -> tuple[FloatArray, FloatArray]:
    """IM and MM haircut amounts (margin currency) on positive collateral balances.

    Returns
    -------
    (ndarray, ndarray)
        IM and MM haircut per account.
    """
    return collateral_terms(book, market, haircuts).haircut_amounts(book.collateral)


def value_weights(table: InstrumentTable) -> tuple[FloatArray, FloatArray]:
    """Per-column weights of a position's value: ``value = q * a + entry * b`` (margin currency).

    Options are valued at their mark (their premium went through cash when traded):
    ``a = mark_settle``, ``b = 0``. Futures and perpetuals contribute their unrealised P&L against
    the entry notional ``entry = sum q_k * price_k``: linear ``q * mark - entry``; inverse (coin)
    ``q - entry / mark``. A cell without an entry price (NaN) has its entry at the mark.
    """
    def calc() -> tuple[FloatArray, FloatArray]:
        conv = table.to_mc()
        opt = table.kind == KIND_OPTION
        safe_mark = np.where(table.mark > 0, table.mark, 1.0)
        a = np.where(opt, table.settle_value(), np.where(table.inverse, 1.0, table.mark)) * conv
        b = np.where(opt, 0.0, np.where(table.inverse, -1.0 / safe_mark, -1.0)) * conv
        return np.asarray(a), np.asarray(b)

    return table._memo("value_weights", calc)  # type: ignore[no-any-return]


def _aligned_entry(positions: sp.csr_matrix, entry: sp.csr_matrix) -> FloatArray:
    ent_m = sp.csr_matrix(entry)
    if ent_m.nnz == positions.nnz and np.array_equal(ent_m.indptr, positions.indptr) and \
            np.array_equal(ent_m.indices, positions.indices):
        return np.asarray(ent_m.data, dtype=np.float64)
    if positions.nnz == 0:
        return np.zeros(0)
    # every stored cell, explicit zeros included (``nonzero()`` would drop them); absent = 0
    rows = np.repeat(np.arange(positions.shape[0]), np.diff(positions.indptr))
    return np.asarray(ent_m[rows, positions.indices], dtype=np.float64).ravel()


def position_values(positions: sp.csr_matrix, entry: sp.csr_matrix, table: InstrumentTable
                    ) -> sp.csr_matrix:
    """Mark-to-market value of every position cell in the margin currency.

    See :func:`value_weights` for the valuation of each kind of instrument.

    Parameters
    ----------
    positions, entry : scipy.sparse.csr_matrix
        Quantities and entry notionals (NaN entry = unknown, i.e. at the mark).
    table : InstrumentTable
        Market inputs of the columns.

    Returns
    -------
    scipy.sparse.csr_matrix
        Values, same sparsity as ``positions``.
    """
    pos = sp.csr_matrix(positions)
    q = pos.data
    cols = pos.indices
    ent = _aligned_entry(pos, entry)
    ent = np.where(np.isnan(ent), q * table.mark[cols], ent)
    a, b = value_weights(table)
    val = q * a[cols] + ent * b[cols]
    return sp.csr_matrix((val, pos.indices.copy(), pos.indptr.copy()), shape=pos.shape)


GREEKS = ("delta", "delta_usd", "gamma", "vega", "theta")
"""Account Greeks, in the column order of :func:`greek_weights`."""


def greek_weights(table: InstrumentTable) -> tuple[tuple[str, ...], FloatArray]:
    """Per-unit Greeks of every column, summed over an account's positions.

    Returns
    -------
    (tuple of str, ndarray)
        Names (:data:`GREEKS`) and weights, shape (columns, Greeks): ``delta`` (coin),
        ``delta_usd``, ``gamma`` (coin per USD), ``vega`` (USD per vol point), ``theta`` (USD
        per day).
    """
    def calc() -> FloatArray:
        g = table.greeks()
        return np.ascontiguousarray(np.stack(
            [g["delta"], g["delta"] * table.index, g["gamma"], g["vega"], g["theta"]], axis=1))

    return GREEKS, table._memo("greek_weights", calc)


def values_and_greeks(positions: sp.csr_matrix, entry: sp.csr_matrix, table: InstrumentTable
                      ) -> tuple[FloatArray, dict[str, FloatArray]]:
    """Per-account position value and Greeks in one pass (Numba when available).

    Returns
    -------
    (ndarray, dict)
        Value of positions per account (margin currency) and account Greeks: ``delta``
        (coin), ``delta_usd``, ``gamma`` (coin per USD), ``vega`` (USD per vol point), ``theta``
        (USD per day).
    """
    from pmargin._numba import NUMBA_ENABLED
    from pmargin.models._pm_kernels import row_sums

    pos = sp.csr_matrix(positions)
    names, w = greek_weights(table)
    if NUMBA_ENABLED and pos.shape[0] > 0:
        a, b = value_weights(table)
        sums, values = row_sums(pos.indptr, pos.indices, pos.data, _aligned_entry(pos, entry),
                                w, a, b, table.mark)
    else:
        sums = np.asarray(pos @ w).reshape(pos.shape[0], len(names))
        values = np.asarray(position_values(pos, entry, table).sum(axis=1),
                            dtype=np.float64).ravel()
    return values, {k: sums[:, i] for i, k in enumerate(names)}


def order_matrices(book: Book) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Sparse matrices of all buy orders and all sell orders (signed quantities)."""
    o = book.orders
    shape = (book.n_accounts, book.n_instruments)
    buy = o.quantity > 0
    mb = sp.csr_matrix((o.quantity[buy], (o.account[buy], o.instrument[buy])), shape=shape)
    ms = sp.csr_matrix((o.quantity[~buy], (o.account[~buy], o.instrument[~buy])), shape=shape)
    return mb, ms


def order_cost(book: Book, table: InstrumentTable) -> tuple[FloatArray, FloatArray]:
    """Equity lost by filling all buy (resp. sell) orders at their limit instead of the mark.

    The cost of a fill of ``q`` at limit ``L`` is ``q (L - mark) / D`` in the settlement currency,
    with ``D`` the forward (mark) for inverse instruments and 1 for linear ones; it is converted
    to the margin currency. Negative costs (fills better than the mark) are kept: the caller
    floors the total.

    Returns
    -------
    (ndarray, ndarray)
        Cost per account of the buy side and of the sell side.
    """
    o = book.orders
    n = book.n_accounts
    if len(o) == 0:
        return np.zeros(n), np.zeros(n)
    j = o.instrument
    denom = np.where(table.inverse[j], table.forward[j], 1.0)
    cost = o.quantity * (o.price - table.mark[j]) / denom * table.to_mc()[j]
    buy = o.quantity > 0
    cb = np.bincount(o.account[buy], weights=cost[buy], minlength=n).astype(np.float64)
    cs = np.bincount(o.account[~buy], weights=cost[~buy], minlength=n).astype(np.float64)
    return cb, cs


def open_orders_im(book: Book, table: InstrumentTable, im: FloatArray,
                   requirement: Callable[[sp.csr_matrix, IntArray], FloatArray]) -> FloatArray:
    """Initial margin of the open orders: the worse side filled, over the positions' IM.

    Per account with orders: ``max(0, max(IM_buys + cost_buys, IM_sells + cost_sells) - IM)``,
    where ``IM_side`` is the requirement with every order of that side filled and ``cost_side``
    the fills' cost (:func:`order_cost`); 0 for an account without orders.

    Parameters
    ----------
    book : Book
        Accounts and their orders.
    table : InstrumentTable
        Market inputs of the book's columns.
    im : ndarray, shape (accounts,)
        Initial margin of the positions alone, margin currency.
    requirement : callable
        ``requirement(side, rows)``: the model's IM (margin currency) of the accounts ``rows``
        with the orders of ``side`` (a buy or sell matrix of :func:`order_matrices`, all
        accounts) added to their positions; shape ``(len(rows),)``.

    Returns
    -------
    ndarray, shape (accounts,)
        Margin currency.
    """
    out = np.zeros(book.n_accounts)
    if len(book.orders):
        rows = np.unique(book.orders.account)
        buys, sells = order_matrices(book)
        cb, cs = order_cost(book, table)
        im_b = requirement(buys, rows)
        im_s = requirement(sells, rows)
        out[rows] = np.maximum(0.0, np.maximum(im_b + cb[rows], im_s + cs[rows]) - im[rows])
    return out
