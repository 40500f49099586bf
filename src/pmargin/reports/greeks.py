"""Position and portfolio Greeks as a table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pmargin.book import Book
from pmargin.market import MarketSnapshot
from pmargin.models.valuation import build_table
from pmargin.portfolio import Portfolio

__all__ = ["portfolio_greeks"]


def portfolio_greeks(portfolio: Portfolio, market: MarketSnapshot) -> pd.DataFrame:
    """Return each position's Greeks and a ``TOTAL`` row.

    Parameters
    ----------
    portfolio : Portfolio
        The account.
    market : MarketSnapshot
        Market data.

    Returns
    -------
    pandas.DataFrame
        Columns ``quantity``, ``delta`` (coin; inverse options use Deribit's net transaction
        delta), ``delta_usd``, ``gamma`` (coin per USD), ``vega`` (USD per vol point), ``theta``
        (USD per day), ``priced_by`` (``market``, ``index``, ``model`` or ``settlement``; empty
        on the ``TOTAL`` row), indexed by instrument.
    """
    book = Book.from_portfolios([portfolio])
    t = build_table(book.instruments, market, "USDC")
    pos = sp.csr_matrix(book.positions)
    q = pos.data
    j = pos.indices
    g = t.greeks()
    frame = pd.DataFrame({
        "instrument": [book.instruments[k].name for k in j],
        "quantity": q,
        "delta": q * g["delta"][j],
        "delta_usd": q * g["delta"][j] * t.index[j],
        "gamma": q * g["gamma"][j],
        "vega": q * g["vega"][j],
        "theta": q * g["theta"][j],
    }).set_index("instrument")
    total = frame.drop(columns=["quantity"]).sum()
    total["quantity"] = np.nan
    frame.loc["TOTAL"] = total
    frame["priced_by"] = [*t.priced_by[j], ""]  # market / index / model / settlement
    return frame
