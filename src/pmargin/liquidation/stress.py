"""Stress runs: the same generated book and shock under isolated, cross and portfolio margin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pmargin.book import Book
from pmargin.book.generator import chain_universe, generate_book
from pmargin.errors import InvalidInput
from pmargin.liquidation.cascade import CascadeParams, CascadeResult, run_cascade, split_isolated
from pmargin.market import MarketSnapshot
from pmargin.models import load_model
from pmargin.models.base import MarginModel
from pmargin.portfolio import Portfolio

__all__ = ["STRESS_MODES", "StressSetup", "model_for_mode", "run_stress"]

STRESS_MODES = {
    "isolated": ("deribit-sm", "cross"),
    "cross": ("deribit-sm", "cross"),
    "portfolio": ("deribit-pm", None),
}
"""Mode name to (preset, mode). Isolated margin splits each account into one sub-account per
position (collateral allocated in proportion to each position's IM) and margins each alone."""


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
        The model and whether the book is split into isolated sub-accounts first (today's
        isolated mode; an isolated-margin model margining each position with its own
        collateral replaces the split by returning that model with ``split_isolated=False``).

    Raises
    ------
    InvalidInput
        If ``mode`` is unknown.
    """
    if mode not in STRESS_MODES:
        raise InvalidInput("mode", mode, f"must be one of {sorted(STRESS_MODES)}")
    preset, m = STRESS_MODES[mode]
    return StressSetup(load_model(preset, mode=m), mode == "isolated")


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
            accts = split_isolated(portfolios, market, setup.model)
        out.append(run_cascade(accts, market, setup.model, shock, "BTC", params, label=mode))
    return out
