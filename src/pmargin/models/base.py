"""The interface every margin model implements, and pieces common to all of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel

from pmargin.book import Book
from pmargin.market import MarketSnapshot
from pmargin.models.params import params_digest
from pmargin.models.result import AccountMargin, BookMarginResult
from pmargin.models.valuation import InstrumentTable, build_table
from pmargin.portfolio import Portfolio

__all__ = ["MarginModel"]


class MarginModel(ABC):
    """A margin model: pure, vectorised over the accounts of a book.

    One account is a book of one; :meth:`margin` is a convenience around :meth:`compute` that adds
    the explanation (scenario table, per-position breakdown).
    """

    params: BaseModel
    """Validated, frozen parameters (each model narrows the type); they have a ``name``."""

    def __init__(self, params: BaseModel) -> None:
        self.params = params
        self.digest = params_digest(params)
        self._name = str(params.model_dump(include={"name"})["name"])

    @property
    def name(self) -> str:
        """Preset name."""
        return self._name

    def table(self, book: Book, market: MarketSnapshot) -> InstrumentTable:
        """Build the instrument table of a book's columns."""
        return build_table(book.instruments, market, book.margin_currency)

    @abstractmethod
    def prepare(self, book: Book, market: MarketSnapshot) -> Any:
        """Do the per-market-update work for the columns of ``book`` (pricing, risk arrays)."""

    @abstractmethod
    def evaluate(self, prep: Any, book: Book) -> BookMarginResult:
        """Margin every account of ``book`` against the output of :meth:`prepare`."""

    def compute(self, book: Book, market: MarketSnapshot) -> BookMarginResult:
        """Compute IM, MM, equity and components of every account of ``book``.

        Every model computes a book the same way: :meth:`prepare` once, then :meth:`evaluate`.

        Parameters
        ----------
        book : Book
            Accounts.
        market : MarketSnapshot
            Market data.

        Returns
        -------
        BookMarginResult
            Arrays over accounts, in the book's margin currency.
        """
        return self.evaluate(self.prepare(book, market), book)

    def margin_figures(self, portfolio: Portfolio, market: MarketSnapshot) -> BookMarginResult:
        """IM, MM, equity, components and Greeks of one account, without the explanation.

        Several times faster than :meth:`margin` (no scenario table or per-position frames);
        the figures are the same.

        Parameters
        ----------
        portfolio : Portfolio
            The account.
        market : MarketSnapshot
            Market data.

        Returns
        -------
        BookMarginResult
            Arrays of length one.
        """
        return self.compute(Book.from_portfolios([portfolio]), market)

    @abstractmethod
    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> AccountMargin:
        """Compute and explain the margin of one account.

        Parameters
        ----------
        portfolio : Portfolio
            The account.
        market : MarketSnapshot
            Market data.

        Returns
        -------
        AccountMargin
            Margins with their breakdown.
        """
