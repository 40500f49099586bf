"""Account-level aggregates shared by every model: equity, collateral haircuts, order fills.

All functions are vectorised over the accounts of a :class:`~pmargin.book.Book`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray
from pmargin.book import Book
from pmargin.market import MarketSnapshot
from pmargin.models.params import CollateralHaircut
from pmargin.models.valuation import KIND_OPTION, InstrumentTable

__all__ = [
    "collateral_haircuts",
    "collateral_value",
    "order_cost",
    "order_matrices",
    "position_values",
]


def _coll_prices(book: Book, market: MarketSnapshot) -> FloatArray:
    mc = market.collateral_price(book.margin_currency)
    return np.array([market.collateral_price(c) / mc for c in book.collateral_currencies])


def collateral_value(book: Book, market: MarketSnapshot) -> FloatArray:
    """Value of every account's collateral in the margin currency, shape (accounts,)."""
    if not book.collateral_currencies:
        return np.zeros(book.n_accounts)
    return np.asarray(book.collateral @ _coll_prices(book, market), dtype=np.float64)


def collateral_haircuts(
    book: Book, market: MarketSnapshot, haircuts: Mapping[str, CollateralHaircut]
) -> tuple[FloatArray, FloatArray]:
    """IM and MM haircut amounts (margin currency) on positive collateral balances.

    Currencies without an entry have no haircut; the margin currency itself never has one.

    Returns
    -------
    (ndarray, ndarray)
        IM and MM haircut per account.
    """
    if not book.collateral_currencies:
        z = np.zeros(book.n_accounts)
        return z, z.copy()
    px = _coll_prices(book, market)
    h_im = np.array([
        0.0 if c == book.margin_currency else haircuts.get(c, CollateralHaircut(im=0, mm=0)).im
        for c in book.collateral_currencies
    ])
    h_mm = np.array([
        0.0 if c == book.margin_currency else haircuts.get(c, CollateralHaircut(im=0, mm=0)).mm
        for c in book.collateral_currencies
    ])
    pos = np.maximum(book.collateral, 0.0) * px
    return np.asarray(pos @ h_im), np.asarray(pos @ h_mm)


def position_values(positions: sp.csr_matrix, entry: sp.csr_matrix, table: InstrumentTable
                    ) -> sp.csr_matrix:
    """Mark-to-market value of every position cell in the margin currency.

    Options are valued at their mark (their premium went through cash when traded). Futures and
    perpetuals contribute their unrealised P&L against the entry notional: linear
    ``q * mark - entry``; inverse (coin) ``q - entry / mark``. A cell without an entry price has
    none.

    Parameters
    ----------
    positions, entry : scipy.sparse.csr_matrix
        Quantities and entry notionals (same sparsity; NaN entry = unknown).
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
    ent_m = sp.csr_matrix(entry)
    if ent_m.nnz == pos.nnz and np.array_equal(ent_m.indices, pos.indices) and np.array_equal(
        ent_m.indptr, pos.indptr
    ):
        ent = ent_m.data.copy()
    else:
        ent = np.asarray(ent_m[pos.nonzero()]).ravel() if pos.nnz else np.zeros(0)
    mark = table.mark[cols]
    ent = np.where(np.isnan(ent), q * mark, ent)
    opt = table.kind[cols] == KIND_OPTION
    inv = table.inverse[cols]
    opt_val = q * table.settle_value()[cols]
    fut_val = np.where(inv, q - ent / np.where(mark > 0, mark, 1.0), q * mark - ent)
    val = np.where(opt, opt_val, fut_val) * table.to_mc()[cols]
    return sp.csr_matrix((val, pos.indices.copy(), pos.indptr.copy()), shape=pos.shape)


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
    cb = np.bincount(o.account[buy], weights=cost[buy], minlength=n)
    cs = np.bincount(o.account[~buy], weights=cost[~buy], minlength=n)
    return cb, cs
