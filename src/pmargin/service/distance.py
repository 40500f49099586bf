"""Distance to liquidation of service accounts, cached per market and account row.

The search is :func:`pmargin.engine.distance.liquidation_distance` (sticky-strike index moves,
the account re-margined by the book's model). The answer of an account is kept until the market
or the account's row (positions, balances) changes; the restricted markets the search uses are
shared by every account of one market.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import scipy.sparse as sp

from pmargin.book import Book
from pmargin.engine.distance import MarketCache, liquidation_distance
from pmargin.instruments import parse_instrument
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel

__all__ = ["DistanceCache", "row_book"]


def row_book(margin_currency: str, account: str, positions: dict[str, tuple[float, float]],
             collateral: dict[str, float]) -> Book:
    """A one-account book from an engine row.

    Parameters
    ----------
    margin_currency : str
        The book's margin currency.
    account : str
        Account id.
    positions : dict of str to (float, float)
        Instrument name -> (quantity, entry notional in USD; NaN = at the mark).
    collateral : dict of str to float
        Balances by currency (units of the currency).

    Returns
    -------
    Book
        One row, one column per position.
    """
    names = sorted(positions)
    n = len(names)
    ptr = np.array([0, n], np.int64)
    idx = np.arange(n, dtype=np.int64)
    q = np.array([positions[k][0] for k in names], np.float64)
    e = np.array([positions[k][1] for k in names], np.float64)
    ccys = list(collateral)
    return Book(margin_currency, [account], [parse_instrument(k) for k in names],
                sp.csr_matrix((q, idx, ptr), shape=(1, n)),
                sp.csr_matrix((e, idx.copy(), ptr.copy()), shape=(1, n)), ccys,
                np.array([[collateral[c] for c in ccys]], np.float64))


class DistanceCache:
    """Distances by (market, account row); at most ``size`` accounts kept.

    Parameters
    ----------
    size : int, optional
        Accounts remembered (least recently used dropped first).
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._markets: MarketCache | None = None
        self._hits: OrderedDict[tuple[str, str], tuple[str, dict[str, Any]]] = OrderedDict()

    def distance(self, model: MarginModel, market: MarketSnapshot, market_digest: str,
                 margin_currency: str, account: str,
                 positions: dict[str, tuple[float, float]], collateral: dict[str, float]
                 ) -> dict[str, Any]:
        """Distance to liquidation of one account (JSON form, percent), cached.

        Parameters
        ----------
        model : MarginModel
            The book's model.
        market : MarketSnapshot
            The market in use; ``market_digest`` its digest.
        market_digest : str
            Digest of ``market``.
        margin_currency, account : str
            The account's book margin currency and id.
        positions, collateral : dict
            The account's engine row (see :func:`row_book`).

        Returns
        -------
        dict
            By underlying: ``down_pct``, ``up_pct`` (index move in percent at which equity
            reaches maintenance margin; None when no move in [-99 %, +500 %] does) and the
            reasons.
        """
        fp = repr((sorted(positions.items()), sorted(collateral.items())))
        key = (market_digest, account)
        with self._lock:
            hit = self._hits.get(key)
            if hit is not None and hit[0] == fp:
                self._hits.move_to_end(key)
                return hit[1]
            if self._markets is None or self._markets.market is not market:
                self._markets = MarketCache(market)
                self._hits.clear()
            markets = self._markets
        out = {u: d.to_json() for u, d in liquidation_distance(
            model, market, row_book(margin_currency, account, positions, collateral), 0,
            cache=markets).items()}
        with self._lock:
            self._hits[key] = (fp, out)
            while len(self._hits) > self.size:
                self._hits.popitem(last=False)
        return out
