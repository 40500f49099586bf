"""Books for the analytics: a book JSON file, or a generated book on a market.

A book file is a JSON object ``{"accounts": [portfolio, ...]}`` whose items follow the portfolio
format of ``docs/inputs.md`` (each with its ``account_id``; all with one margin currency), or a
single portfolio (a book of one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pmargin.book import Book
from pmargin.errors import InvalidInput
from pmargin.market import MarketSnapshot
from pmargin.portfolio import portfolio_from_dict
from pmargin.synthetic import chain_universe, generate_book

__all__ = ["book_from_dict", "generated_book", "load_book"]


def book_from_dict(data: Any) -> Book:
    """Build a book from parsed book JSON (see the module notes).

    Raises
    ------
    InvalidInput
        Naming the field (``book.accounts[3].positions[0].quantity``) and value.
    """
    if not isinstance(data, dict):
        raise InvalidInput("book", type(data).__name__, "must be a JSON object")
    if "accounts" not in data:
        return Book.from_portfolios([portfolio_from_dict(data)])
    extra = sorted(set(data) - {"accounts"})
    if extra:
        raise InvalidInput(f"book.{extra[0]}", data[extra[0]], "unknown field (use 'accounts')")
    accounts = data["accounts"]
    if not isinstance(accounts, list) or not accounts:
        raise InvalidInput("book.accounts", accounts, "must be a non-empty list of portfolios")
    pfs = [portfolio_from_dict(a, prefix=f"book.accounts[{i}]") for i, a in enumerate(accounts)]
    ids = [p.account_id for p in pfs]
    if len(set(ids)) != len(ids):
        dup = next(a for a in ids if ids.count(a) > 1)
        raise InvalidInput("book.accounts.account_id", dup, "appears more than once")
    mcs = {p.margin_currency for p in pfs}
    if len(mcs) > 1:
        raise InvalidInput("book.accounts.margin_currency", sorted(mcs),
                           "a book has one margin currency")
    return Book.from_portfolios(pfs)


def load_book(path: str | Path) -> Book:
    """Read a book JSON file (UTF-8); see :func:`book_from_dict`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("book", str(p), "is not UTF-8 text") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput("book", str(p), f"is not JSON ({exc.msg}, line {exc.lineno})") from exc
    return book_from_dict(data)


def generated_book(market: MarketSnapshot, accounts: int, seed: int = 1,
                   underlying: str = "BTC") -> Book:
    """A generated coin-margined book (:func:`pmargin.synthetic.generate_book`) on ``market``."""
    if accounts < 1:
        raise InvalidInput("--generate", accounts, "must be at least 1 account")
    return generate_book(market, chain_universe(market, underlying), accounts, seed=seed,
                         margin_currency=underlying)
