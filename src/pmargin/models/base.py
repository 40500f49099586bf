"""The interface every margin model implements, and pieces common to all of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import scipy.sparse as sp
from pydantic import BaseModel

from pmargin._typing import FloatArray
from pmargin.book import Book
from pmargin.market import MarketSnapshot
from pmargin.models.params import params_digest
from pmargin.models.result import AccountMargin, BookMarginResult, Columns
from pmargin.models.valuation import InstrumentTable, build_table
from pmargin.portfolio import Portfolio

__all__ = ["MarginModel", "position_frame"]


def position_frame(book: Book, pos: sp.csr_matrix, table: InstrumentTable,
                   **columns: Any) -> Columns:
    """The per-position table of a one-account book: the columns every model shows, then its own.

    Parameters
    ----------
    book : Book
        The account's book.
    pos : csr_matrix
        ``book.positions`` as CSR (one cell per position).
    table : InstrumentTable
        Market inputs of the book's columns.
    **columns : array-like
        Further columns, one value per position, in this order (e.g. ``value``, margin
        currency, or ``pnl_at_worst``).

    Returns
    -------
    Columns
        Indexed by ``instrument``: ``quantity``, ``mark_usd`` (USD per unit), ``priced_by``,
        then ``columns``.
    """
    return Columns({
        "instrument": [book.instruments[j].name for j in pos.indices],
        "quantity": pos.data,
        "mark_usd": table.mark[pos.indices],
        "priced_by": table.priced_by[pos.indices],
        **columns,
    }, index="instrument")


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

    def book_result(self, book: Book, mc_usd: float, initial_margin: FloatArray,
                    maintenance_margin: FloatArray, equity: FloatArray,
                    components: dict[str, FloatArray],
                    greeks: dict[str, FloatArray]) -> BookMarginResult:
        """The result of :meth:`evaluate`: this model's figures, labelled (one assembly).

        Parameters
        ----------
        book : Book
            The accounts (row labels and margin currency).
        mc_usd : float
            USD price of the margin currency.
        initial_margin, maintenance_margin, equity : ndarray, shape (accounts,)
            Requirements and account values, margin currency.
        components : dict of str to ndarray
            Named parts of the requirement, per account.
        greeks : dict of str to ndarray
            Account Greeks (see :class:`BookMarginResult`).

        Returns
        -------
        BookMarginResult
            With this model's name and parameter digest.
        """
        return BookMarginResult(
            model=self.name,
            params_digest=self.digest,
            margin_currency=book.margin_currency,
            mc_usd=mc_usd,
            account_ids=book.account_ids,  # the book's own list: its rows are never renamed
            initial_margin=initial_margin,
            maintenance_margin=maintenance_margin,
            equity=equity,
            components=components,
            greeks=greeks,
        )

    def account_margin(self, res: BookMarginResult, mode: str, by_position: Columns, *,
                       components: dict[str, float] | None = None,
                       scenarios: Columns | None = None, risk_matrix: Columns | None = None,
                       worst_scenario: dict[str, Any] | None = None) -> AccountMargin:
        """The result of :meth:`margin`: the figures of a one-account result and their explanation.

        Parameters
        ----------
        res : BookMarginResult
            This model's result for a book of one account.
        mode : str
            ``cross``, ``isolated`` or ``portfolio``.
        by_position : Columns
            Per-position table (:func:`position_frame`).
        components : dict of str to float, optional
            Components (margin currency); default: those of ``res``.
        scenarios, risk_matrix : Columns, optional
            Scenario table and risk matrix (scenario models).
        worst_scenario : dict, optional
            The binding scenario per underlying.

        Returns
        -------
        AccountMargin
            Amounts in ``res.margin_currency``.
        """
        return AccountMargin(
            model=self.name,
            margin_currency=res.margin_currency,
            mode=mode,
            initial_margin=float(res.initial_margin[0]),
            maintenance_margin=float(res.maintenance_margin[0]),
            equity=float(res.equity[0]),
            mc_usd=res.mc_usd,
            params_digest=self.digest,
            components=(components if components is not None
                        else {k: float(v[0]) for k, v in res.components.items()}),
            by_position=by_position,
            scenarios=scenarios,
            risk_matrix=risk_matrix,
            worst_scenario=worst_scenario,
            greeks={k: float(v[0]) for k, v in res.greeks.items()},
        )

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
