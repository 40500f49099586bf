"""Stress runs: the same generated book and shock under isolated, cross and portfolio margin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pmargin.book import Book
from pmargin.errors import InvalidInput
from pmargin.liquidation.cascade import CascadeParams, CascadeResult, run_cascade
from pmargin.market import MarketSnapshot
from pmargin.models import load_model
from pmargin.models.base import MarginModel
from pmargin.models.isolated import IsolatedMarginModel
from pmargin.portfolio import Portfolio
from pmargin.synthetic import chain_universe, generate_book

__all__ = ["STRESS_MODES", "StressSetup", "model_for_mode", "run_stress"]

STRESS_MODES = {
    "isolated": "deribit-sm-isolated",
    "cross": "deribit-sm",
    "portfolio": "deribit-pm",
}
"""Mode name to model name. Under the isolated model each account is split into one
sub-account per position (its collateral shared in proportion to each position's IM, by
:meth:`~pmargin.models.isolated.IsolatedMarginModel.isolate_portfolios`), and each sub-account
is liquidated on its own."""


@dataclass(frozen=True)
class StressSetup:
    """How a margin mode is run: its model and whether accounts are split per position."""

    model: MarginModel
    split_isolated: bool


def model_for_mode(mode: str) -> StressSetup:
    """Return the margin model of a stress mode (the one place that chooses it).

    Parameters
    ----------
    mode : str
        A key of :data:`STRESS_MODES`.

    Returns
    -------
    StressSetup
        The model and whether the book is split into isolated sub-accounts first (the
        isolated model's own split, so each position is liquidated on its own).

    Raises
    ------
    InvalidInput
        If ``mode`` is unknown.
    """
    if mode not in STRESS_MODES:
        raise InvalidInput("mode", mode, f"must be one of {sorted(STRESS_MODES)}")
    model = load_model(STRESS_MODES[mode])
    return StressSetup(model, isinstance(model, IsolatedMarginModel))


def run_stress(accounts: int, shock: float, modes: Sequence[str], market: MarketSnapshot,
               seed: int = 3, params: CascadeParams | None = None) -> list[CascadeResult]:
    """Generate one BTC book and run the cascade under each margin mode.

    Parameters
    ----------
    accounts : int
        Accounts in the generated book.
    shock : float
        Initial relative BTC move.
    modes : sequence of str
        Keys of :data:`STRESS_MODES`.
    market : MarketSnapshot
        Market the book is generated on and shocked (from :mod:`pmargin.market.loaders`).
    seed : int
        Generator seed.
    params : CascadeParams, optional
        Cascade parameters.

    Returns
    -------
    list of CascadeResult
        One per mode, in order.
    """
    book = generate_book(market, chain_universe(market, "BTC"), accounts, seed=seed)
    out = []
    for mode in modes:
        setup = model_for_mode(mode)
        accts: Book | list[Portfolio] = book
        if setup.split_isolated:
            portfolios = [book.portfolio(r) for r in range(book.n_accounts)]
            assert isinstance(setup.model, IsolatedMarginModel)
            accts = setup.model.isolate_portfolios(portfolios, market)
        out.append(run_cascade(accts, market, setup.model, shock, "BTC", params, label=mode))
    return out
