"""The :class:`Book`: positions of many accounts as a sparse accounts x instruments matrix.

Spot holdings are folded into collateral (a spot position of ``q`` BTC is ``q`` BTC of
collateral). Several rows of one instrument in one account are netted; their entry notional
(``sum q_k * avg_price_k``) is kept for the unrealised P&L of futures and perpetuals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray, IntArray
from pmargin.errors import BookError
from pmargin.instruments import Instrument, InstrumentKind
from pmargin.portfolio import Portfolio, Position

__all__ = ["Book", "OrderTable"]


@dataclass(frozen=True)
class OrderTable:
    """Open orders of a book, one row per order (struct of arrays).

    Parameters
    ----------
    account : ndarray of int
        Row of the account in the book.
    instrument : ndarray of int
        Column of the instrument in the book.
    quantity : ndarray of float
        Signed quantity (positive buy, negative sell).
    price : ndarray of float
        Limit price in USD per unit of underlying.
    """

    account: IntArray
    instrument: IntArray
    quantity: FloatArray
    price: FloatArray

    @staticmethod
    def empty() -> OrderTable:
        """Return a table with no orders."""
        return OrderTable(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return int(self.account.size)


@dataclass
class Book:
    """All accounts of one margin currency.

    Parameters
    ----------
    margin_currency : str
        Currency every account is margined in.
    account_ids : list of str
        Account identifiers, one per row.
    instruments : list of Instrument
        Instrument of each column.
    positions : scipy.sparse.csr_matrix
        Signed quantities, shape (accounts, instruments).
    entry_notional : scipy.sparse.csr_matrix
        ``sum q * avg_price`` per cell, NaN where no entry price was given (same sparsity).
    collateral_currencies : list of str
        Currency of each collateral column.
    collateral : ndarray
        Balances, shape (accounts, currencies).
    orders : OrderTable
        Open orders.
    """

    margin_currency: str
    account_ids: list[str]
    instruments: list[Instrument]
    positions: sp.csr_matrix
    entry_notional: sp.csr_matrix
    collateral_currencies: list[str]
    collateral: FloatArray
    orders: OrderTable = field(default_factory=OrderTable.empty)

    def __post_init__(self) -> None:
        a, i = len(self.account_ids), len(self.instruments)
        if self.positions.shape != (a, i):
            raise BookError("positions", self.positions.shape, f"must have shape ({a}, {i})")
        if self.collateral.shape != (a, len(self.collateral_currencies)):
            raise BookError("collateral", self.collateral.shape,
                            "does not match accounts x currencies")
        if not np.all(np.isfinite(self.positions.data)):
            raise BookError("positions", "non-finite", "quantities must be finite")
        if not np.all(np.isfinite(self.collateral)):
            raise BookError("collateral", "non-finite", "balances must be finite")

    @property
    def n_accounts(self) -> int:
        """Number of accounts."""
        return len(self.account_ids)

    @property
    def n_instruments(self) -> int:
        """Number of instrument columns."""
        return len(self.instruments)

    def portfolio(self, row: int) -> Portfolio:
        """Return the :class:`Portfolio` of one account row.

        Parameters
        ----------
        row : int
            Account row.

        Returns
        -------
        Portfolio
            Its positions (average price = entry notional / quantity, None when unknown) and
            non-zero collateral balances; no orders.
        """
        pos = self.positions[row]
        ent = self.entry_notional[row]
        ent_map = dict(zip(ent.indices, ent.data, strict=True))
        positions = []
        for j, q in zip(pos.indices, pos.data, strict=True):
            e = ent_map.get(j, np.nan)
            avg = None if np.isnan(e) or q == 0 else float(e / q)
            positions.append(Position(self.instruments[j], float(q), avg))
        coll = {c: float(self.collateral[row, k])
                for k, c in enumerate(self.collateral_currencies) if self.collateral[row, k] != 0}
        return Portfolio(self.margin_currency, tuple(positions), coll, (), self.account_ids[row])

    def instrument_index(self) -> dict[str, int]:
        """Return column index by instrument name."""
        return {inst.name: j for j, inst in enumerate(self.instruments)}

    def subset(self, rows: Sequence[int] | IntArray) -> Book:
        """Return a book with only the given account rows (same columns), in that order.

        Parameters
        ----------
        rows : sequence of int
            Account rows to keep.

        Returns
        -------
        Book
            The sub-book; orders are re-indexed.
        """
        r = np.asarray(rows, dtype=np.int64)
        remap = np.full(self.n_accounts, -1, dtype=np.int64)
        remap[r] = np.arange(r.size)
        keep = remap[self.orders.account] >= 0
        orders = OrderTable(
            remap[self.orders.account[keep]],
            self.orders.instrument[keep],
            self.orders.quantity[keep],
            self.orders.price[keep],
        )
        return Book(
            self.margin_currency,
            [self.account_ids[k] for k in r],
            self.instruments,
            sp.csr_matrix(self.positions[r]),
            sp.csr_matrix(self.entry_notional[r]),
            self.collateral_currencies,
            self.collateral[r],
            orders,
        )

    @staticmethod
    def from_portfolios(
        portfolios: Sequence[Portfolio],
        instruments: Sequence[Instrument] | None = None,
        margin_currency: str | None = None,
    ) -> Book:
        """Build a book from portfolios of one margin currency.

        Parameters
        ----------
        portfolios : sequence of Portfolio
            Accounts.
        instruments : sequence of Instrument, optional
            Column order to use (instruments held but not listed are appended).
        margin_currency : str, optional
            Required when ``portfolios`` is empty.

        Returns
        -------
        Book
            The book.

        Raises
        ------
        BookError
            If the portfolios have different margin currencies.
        """
        if not portfolios and margin_currency is None:
            raise BookError("portfolios", [], "an empty book needs a margin_currency")
        mc = margin_currency or portfolios[0].margin_currency
        cols: dict[str, int] = {}
        insts: list[Instrument] = []
        for inst in instruments or ():
            if inst.name not in cols:
                cols[inst.name] = len(insts)
                insts.append(inst)
        ccys: dict[str, int] = {}
        rows: list[int] = []
        colidx: list[int] = []
        qty: list[float] = []
        ent: list[float] = []
        coll_rows: list[tuple[int, str, float]] = []
        o_acc: list[int] = []
        o_ins: list[int] = []
        o_q: list[float] = []
        o_p: list[float] = []
        for a, pf in enumerate(portfolios):
            if pf.margin_currency != mc:
                raise BookError(
                    f"portfolios[{a}].margin_currency", pf.margin_currency,
                    f"differs from the book's margin currency {mc}",
                )
            for c, bal in pf.collateral.items():
                coll_rows.append((a, c, bal))
            for pos in pf.positions:
                inst = pos.instrument
                if inst.kind is InstrumentKind.SPOT:
                    coll_rows.append((a, inst.underlying, pos.quantity))
                    continue
                if inst.name not in cols:
                    cols[inst.name] = len(insts)
                    insts.append(inst)
                rows.append(a)
                colidx.append(cols[inst.name])
                qty.append(pos.quantity)
                ent.append(np.nan if pos.avg_price is None else pos.quantity * pos.avg_price)
            for o in pf.orders:
                if o.instrument.kind is InstrumentKind.SPOT:
                    continue
                if o.instrument.name not in cols:
                    cols[o.instrument.name] = len(insts)
                    insts.append(o.instrument)
                o_acc.append(a)
                o_ins.append(cols[o.instrument.name])
                o_q.append(o.signed_quantity)
                o_p.append(o.price)
        for _, c, _ in coll_rows:
            ccys.setdefault(c, len(ccys))
        n_a, n_i = len(portfolios), len(insts)
        pos_m = sp.csr_matrix((qty, (rows, colidx)), shape=(n_a, n_i), dtype=np.float64)
        ent_m = _entry_matrix(rows, colidx, ent, (n_a, n_i))
        coll = np.zeros((n_a, len(ccys)))
        for a, c, bal in coll_rows:
            coll[a, ccys[c]] += bal
        orders = OrderTable(
            np.asarray(o_acc, np.int64), np.asarray(o_ins, np.int64),
            np.asarray(o_q, np.float64), np.asarray(o_p, np.float64),
        )
        return Book(mc, [p.account_id for p in portfolios], insts, pos_m, ent_m, list(ccys), coll,
                    orders)


def _entry_matrix(
    rows: list[int], cols: list[int], ent: list[float], shape: tuple[int, int]
) -> sp.csr_matrix:
    """Sum entry notionals per cell; NaN (unknown entry) propagates through the sum."""
    m = sp.csr_matrix((np.asarray(ent, dtype=np.float64), (rows, cols)), shape=shape)
    m.sum_duplicates()
    return m
