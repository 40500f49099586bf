"""Stress runs: the same generated book and shock under isolated, cross and portfolio margin."""

from __future__ import annotations

from collections.abc import Sequence

from pmargin.liquidation.cascade import CascadeParams, CascadeResult, run_cascade, split_isolated
from pmargin.market import MarketSnapshot
from pmargin.models import load_model
from pmargin.synthetic import book_portfolio, chain_universe, generate_book

__all__ = ["STRESS_MODES", "run_stress"]

STRESS_MODES = {
    "isolated": "deribit-sm-isolated",
    "cross": "deribit-sm",
    "portfolio": "deribit-pm",
}
"""Mode name to model name. Isolated margin splits each account into one sub-account per
position (collateral allocated in proportion to each position's IM) and margins each alone."""


def run_stress(accounts: int, shock: float, modes: Sequence[str], seed: int = 3,
               params: CascadeParams | None = None, market: MarketSnapshot | None = None
               ) -> list[CascadeResult]:
    """Generate one BTC book and run the cascade under each margin mode.

    Parameters
    ----------
    accounts : int
        Accounts in the generated book.
    shock : float
        Initial relative BTC move.
    modes : sequence of str
        Keys of :data:`STRESS_MODES`.
    seed : int
        Generator seed.
    params : CascadeParams, optional
        Cascade parameters.
    market : MarketSnapshot, optional
        Market (default: the demo market, i.e. the latest Deribit snapshot).

    Returns
    -------
    list of CascadeResult
        One per mode, in order.
    """
    from pmargin.demo import demo_market

    mkt = market or demo_market()[0]
    book = generate_book(mkt, chain_universe(mkt, "BTC"), accounts, seed=seed)
    portfolios = [book_portfolio(book, r) for r in range(book.n_accounts)]
    out = []
    for mode in modes:
        model = load_model(STRESS_MODES[mode])
        accts = split_isolated(portfolios, mkt, model) if mode == "isolated" else portfolios
        out.append(run_cascade(accts, mkt, model, shock, "BTC", params, label=mode))
    return out
