"""Distance to liquidation: the index move that takes an account's equity down to MM.

For each underlying an account is exposed to, :func:`liquidation_distance` finds the smallest
relative move of that index, downwards and upwards, at which the account's equity falls to its
maintenance margin, by search on the margin model itself: the market is moved with
:meth:`pmargin.market.MarketSnapshot.bumped` (index, futures, perpetuals and forwards scale
with the index; implied vols are **sticky to strike**: every option keeps its mark IV and is
re-priced with Black-76 at the moved forward), then the account is prepared and margined again.

Speed: only the instruments the account holds are re-priced. The market is first restricted to
every future and perpetual plus the options at the strikes the account holds
(:meth:`~pmargin.market.MarketSnapshot.restricted_to`, which values those instruments as the
full market does), the book to the account's own columns; one evaluation is then a bump of a
few dozen quotes and a one-row margin. The restriction is checked once per search:
if the unmoved account does not margin identically on the restricted and on the full market,
the search bumps the full market instead (exact, slower).

Search: a fixed grid of moves outward from 0 (:data:`DOWN_GRID`, :data:`UP_GRID`) finds the
first grid move at which ``equity <= MM``; bisection then narrows the crossing to ``tol``. A
window narrower than the grid spacing in which the account dips below MM and recovers would
be missed (the grid is finer near 0, where it matters most).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from pmargin.book.positions import Book, OrderTable
from pmargin.instruments import Instrument, InstrumentKind
from pmargin.market import MarketSnapshot
from pmargin.market.quotes import STABLECOINS
from pmargin.models.base import MarginModel
from pmargin.portfolio import Portfolio

__all__ = [
    "DOWN_GRID",
    "HIGHEST_MOVE",
    "LOWEST_MOVE",
    "UP_GRID",
    "AccountMoves",
    "Distance",
    "MarketCache",
    "liquidation_distance",
]

LOWEST_MOVE = -0.99
"""Largest downward move searched (relative: -99 %)."""

HIGHEST_MOVE = 5.0
"""Largest upward move searched (relative: +500 %)."""

DOWN_GRID: tuple[float, ...] = (-0.005, -0.01, -0.02, -0.03, -0.05, -0.075, -0.1, -0.125,
                                -0.15, -0.2, -0.25, -0.3, -0.4, -0.5, -0.6, -0.7, -0.8, -0.9,
                                LOWEST_MOVE)
"""Moves tried downwards, in order, before bisection (relative)."""

UP_GRID: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2,
                              0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, HIGHEST_MOVE)
"""Moves tried upwards, in order, before bisection (relative)."""


@dataclass(frozen=True)
class Distance:
    """Distance to liquidation along one underlying's index.

    Attributes
    ----------
    underlying : str
        The index moved (every other index unchanged).
    down, up : float or None
        Relative index move (``-0.25`` = 25 % down) at which equity first reaches maintenance
        margin going down / up, within ``tol`` (the value returned is the side of the crossing
        where ``equity <= MM``); 0.0 if the account is already there; None if no move in
        ``[-99 %, 0)`` / ``(0, +500 %]`` reaches it.
    down_reason, up_reason : str or None
        Why ``down`` / ``up`` is None or 0 (None otherwise).
    evaluations : int
        Margin evaluations spent (both directions).
    """

    underlying: str
    down: float | None
    up: float | None
    down_reason: str | None
    up_reason: str | None
    evaluations: int

    def to_json(self) -> dict[str, Any]:
        """Percent form for reports: ``down_pct``, ``up_pct`` (2 decimals) and the reasons."""
        def pct(x: float | None) -> float | None:
            return None if x is None else round(x * 100.0, 2) + 0.0  # + 0.0: no "-0.0"

        return {"down_pct": pct(self.down), "up_pct": pct(self.up),
                "down_reason": self.down_reason, "up_reason": self.up_reason}


@dataclass
class MarketCache:
    """Restricted markets of one market epoch, by the option cells they keep.

    Parameters
    ----------
    market : MarketSnapshot
        The full market; a cache is valid for this market only (make a new one per epoch).
    """

    market: MarketSnapshot
    _restricted: dict[frozenset[tuple[str, Any, Any]], MarketSnapshot] = field(
        default_factory=dict)

    def restricted(self, instruments: list[Instrument]) -> MarketSnapshot:
        """The market restricted to what values ``instruments`` (cached by option cells)."""
        key = frozenset((i.underlying, i.expiry, i.strike) for i in instruments
                        if i.kind is InstrumentKind.OPTION)
        hit = self._restricted.get(key)
        if hit is None:
            if len(self._restricted) > 256:  # many distinct expiry sets: start over
                self._restricted.clear()
            hit = self._restricted[key] = self.market.restricted_to(instruments)
        return hit


def _one_row(book: Book, row: int, market: MarketSnapshot) -> Book:
    """Row ``row`` of ``book`` with only the columns it holds or has orders in.

    A future or perpetual without an entry notional (NaN: "at the mark") is given the entry of
    the current mark, so that its P&L follows the moved index instead of being re-entered at
    every moved mark.
    """
    pos = sp.csr_matrix(book.positions[row])
    ent = sp.csr_matrix(book.entry_notional[row])
    keep_o = book.orders.account == row
    cols = np.unique(np.concatenate([pos.indices, book.orders.instrument[keep_o]])
                     ).astype(np.int64)
    remap = {int(c): k for k, c in enumerate(cols)}
    n = cols.size

    def compact(m: sp.csr_matrix) -> sp.csr_matrix:
        idx = np.array([remap[int(j)] for j in m.indices], dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        return sp.csr_matrix((np.asarray(m.data, np.float64)[order], idx[order],
                              np.array([0, idx.size], np.int64)), shape=(1, n))

    q_by_col = dict(zip(pos.indices.tolist(), pos.data.tolist(), strict=True))
    ent = sp.csr_matrix(ent, dtype=np.float64, copy=True)
    for k, j in enumerate(ent.indices.tolist()):
        inst = book.instruments[j]
        if math.isnan(ent.data[k]) and inst.kind is not InstrumentKind.OPTION:
            ent.data[k] = q_by_col.get(j, 0.0) * market.mark_price(inst)

    orders = OrderTable(np.zeros(int(keep_o.sum()), np.int64),
                        np.array([remap[int(j)] for j in book.orders.instrument[keep_o]],
                                 dtype=np.int64),
                        book.orders.quantity[keep_o], book.orders.price[keep_o])
    return Book(book.margin_currency, [book.account_ids[row]],
                [book.instruments[int(c)] for c in cols], compact(pos), compact(ent),
                list(book.collateral_currencies), book.collateral[row:row + 1].copy(), orders)


class AccountMoves:
    """One account margined under moves of one index at a time (the search's evaluation).

    Parameters
    ----------
    model : MarginModel
        Margin model.
    market : MarketSnapshot
        Market in use.
    book : Book
        A one-row book with only the account's columns (see :func:`liquidation_distance`).
    cache : MarketCache, optional
        Restricted markets of ``market``, shared between accounts of one epoch.
    """

    def __init__(self, model: MarginModel, market: MarketSnapshot, book: Book,
                 cache: MarketCache | None = None) -> None:
        self.model = model
        self.book = book
        self.evaluations = 0
        self.base = market
        self.exact = False  # True: bump the full market (the restriction did not reproduce it)
        if cache is None or cache.market is not market:
            cache = MarketCache(market)
        listed = all(market.is_listed(i) for i in book.instruments)
        self.small = cache.restricted(book.instruments) if listed else market
        if self.small is not market:
            full, small = self._margin(market), self._margin(self.small)
            if not all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
                       for a, b in zip(full, small, strict=True)):
                self.small, self.exact = market, True
        self.at_zero = self.excess("", 0.0)

    def _margin(self, market: MarketSnapshot) -> tuple[float, float, float]:
        self.evaluations += 1
        res = self.model.evaluate(self.model.prepare(self.book, market), self.book)
        return (float(res.initial_margin[0]), float(res.maintenance_margin[0]),
                float(res.equity[0]))

    def margin(self, underlying: str, move: float) -> tuple[float, float, float]:
        """IM, MM and equity (margin currency) with ``underlying`` moved by ``move``."""
        mkt = self.small if move == 0.0 else self.small.bumped({underlying: move})
        return self._margin(mkt)

    def excess(self, underlying: str, move: float) -> float:
        """Equity minus maintenance margin after the move (<= 0: at liquidation)."""
        _, mm, eq = self.margin(underlying, move)
        return eq - mm


def _underlyings(book: Book, market: MarketSnapshot) -> list[str]:
    out = dict.fromkeys(i.underlying for i in book.instruments)
    for k, c in enumerate(book.collateral_currencies):
        if (book.collateral[0, k] != 0 and c not in STABLECOINS and c != book.margin_currency
                and c in market.underlyings):
            out.setdefault(c)
    return list(out)


def _search(f: Callable[[float], float], grid: tuple[float, ...], tol: float
            ) -> float | None:
    prev = 0.0
    for g in grid:
        if f(g) <= 0.0:
            lo, hi = prev, g  # f(lo) > 0 >= f(hi)
            while abs(hi - lo) > tol:
                mid = 0.5 * (lo + hi)
                if f(mid) <= 0.0:
                    hi = mid
                else:
                    lo = mid
            return hi
        prev = g
    return None


def liquidation_distance(model: MarginModel, market: MarketSnapshot,
                         account: Portfolio | Book, row: int = 0, *, tol: float = 1e-4,
                         cache: MarketCache | None = None) -> dict[str, Distance]:
    """Index moves that take one account's equity to its maintenance margin.

    Parameters
    ----------
    model : MarginModel
        Margin model (any preset).
    market : MarketSnapshot
        Market in use.
    account : Portfolio or Book
        The account: a portfolio, or a book and the ``row`` of the account in it.
    row : int, optional
        Row of the account when ``account`` is a book.
    tol : float, optional
        Width of the final bracket (relative move; default 0.0001 = 0.01 %).
    cache : MarketCache, optional
        Restricted markets of ``market`` (share one per market epoch across accounts).

    Returns
    -------
    dict of str to Distance
        By underlying: each underlying of the account's positions and each non-stable
        collateral currency other than the margin currency (empty for an account with
        neither). Moves are relative (``-0.25`` = index 25 % down); see :class:`Distance`.

    Notes
    -----
    A future or perpetual without an entry price is taken as entered at the current mark (its
    P&L then follows the index); options are valued at their (moved) marks.
    """
    if not (math.isfinite(tol) and 0.0 < tol < 0.1):
        from pmargin.errors import InvalidInput

        raise InvalidInput("tol", tol, "must lie in (0, 0.1)")
    one = (_one_row(Book.from_portfolios([account]), 0, market) if isinstance(account, Portfolio)
           else _one_row(account, row, market))
    unds = _underlyings(one, market)
    if not unds:
        return {}
    moves = AccountMoves(model, market, one, cache)
    out: dict[str, Distance] = {}
    at_zero = moves.at_zero
    for u in unds:
        before = moves.evaluations
        if at_zero <= 0.0:
            why = "equity is already at or below maintenance margin"
            out[u] = Distance(u, 0.0, 0.0, why, why, 0)
            continue

        def f(m: float, u: str = u) -> float:
            return moves.excess(u, m)

        down = _search(f, DOWN_GRID, tol)
        up = _search(f, UP_GRID, tol)
        out[u] = Distance(
            u, down, up,
            None if down is not None else
            f"no fall of the {u} index down to -99 % takes equity to maintenance margin",
            None if up is not None else
            f"no rise of the {u} index up to +500 % takes equity to maintenance margin",
            moves.evaluations - before)
    return out
