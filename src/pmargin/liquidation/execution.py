"""Executing a liquidation of one account by takeover or Dutch auction (whole-account slices).

The planner (:mod:`pmargin.liquidation.planner`) closes positions against the market. These two
alternatives hand a slice of the *whole* account to liquidators instead, as Derive (auction) and
Drift/Mango (takeover) do; money moves through a fresh Decimal ledger whose conservation error is
reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from pmargin.book import Book
from pmargin.liquidation._params import FrozenParams, load_params_file
from pmargin.liquidation.auction import AuctionLot, AuctionResult, Bidder, run_auction
from pmargin.liquidation.auction_params import AuctionParams, load_auction_params
from pmargin.liquidation.insurance_fund import InsuranceFund
from pmargin.liquidation.ledger import Ledger
from pmargin.liquidation.takeover import TakeoverResult, takeover
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel
from pmargin.portfolio import Portfolio, Position

__all__ = ["BidderSpec", "BiddersParams", "ExecutionOutcome", "auction_account",
           "load_bidders", "takeover_account", "takeover_fraction"]


class BidderSpec(FrozenParams):
    """One simulated liquidator."""

    account: str
    max_fraction: float
    reservation_discount: float | None = None
    reservation_progress: float | None = None


class BiddersParams(FrozenParams):
    """Simulated liquidators (``bidders.toml``)."""

    schema_version: int = 1
    name: str
    source: str
    assumptions: tuple[str, ...] = ()
    opening_cash: float
    bidders: tuple[BidderSpec, ...]


def load_bidders(path: str | Path | None = None) -> BiddersParams:
    """Load the simulated liquidators (shipped ``bidders.toml`` or a user file)."""
    return load_params_file(BiddersParams, "bidders.toml", path)


@dataclass(frozen=True)
class ExecutionOutcome:
    """Result of a takeover or an auction, with the ledger that recorded it."""

    method: str
    account: str
    positions_value: float
    maintenance_margin: float
    equity: float
    auction: AuctionResult | None
    takeover: TakeoverResult | None
    conservation_error: Decimal
    fraction_sold: float


def _setup(portfolio: Portfolio, market: MarketSnapshot, model: MarginModel, fund_usd: float
           ) -> tuple[Ledger, InsuranceFund, str, float, float, float]:
    res = model.margin(portfolio, market)
    ccy = portfolio.margin_currency
    ledger = Ledger()
    fund = InsuranceFund(ledger, ccy)
    fund_amt = ledger.quantize(Decimal(repr(fund_usd / market.collateral_price(ccy))), ccy)
    if fund_amt > 0:
        fund.deposit(fund_amt)
    account = f"account:{portfolio.account_id}"
    value = float(res.by_position["value"].sum()) if len(res.by_position) else 0.0
    cash = ledger.quantize(Decimal(repr(res.equity - value)), ccy)
    if cash != 0:
        ledger.opening(account, ccy, cash)
    return ledger, fund, account, value, res.maintenance_margin, res.equity


def auction_account(portfolio: Portfolio, market: MarketSnapshot, model: MarginModel,
                    bidders: BiddersParams | None = None, fund_usd: float = 250_000.0
                    ) -> ExecutionOutcome:
    """Put the whole account up for a Dutch auction (``auction.toml``) to simulated bidders.

    Parameters
    ----------
    portfolio : Portfolio
        Account in liquidation.
    market : MarketSnapshot
        Market data.
    model : MarginModel
        Margin model giving the account's mark value and maintenance margin.
    bidders : BiddersParams, optional
        Simulated liquidators (``bidders.toml`` by default).
    fund_usd : float
        Insurance fund (security module) opening balance, USD.

    Returns
    -------
    ExecutionOutcome
        The auction's fills and cash flows, and the ledger's conservation error (exactly 0).
    """
    bp = bidders or load_bidders()
    ledger, fund, account, value, mm, equity = _setup(portfolio, market, model, fund_usd)
    ccy = portfolio.margin_currency
    specs = []
    for b in bp.bidders:
        acct = f"{b.account}:{ccy}"
        ledger.opening(acct, ccy, ledger.quantize(Decimal(repr(bp.opening_cash)), ccy))
        specs.append(Bidder(
            acct, Decimal(repr(b.max_fraction)),
            None if b.reservation_discount is None else Decimal(repr(b.reservation_discount)),
            None if b.reservation_progress is None else Decimal(repr(b.reservation_progress))))
    lot = AuctionLot(account, ccy, ledger.quantize(Decimal(repr(value)), ccy),
                     ledger.quantize(Decimal(repr(mm)), ccy))
    result = run_auction(ledger, lot, specs, fund=fund, params=load_auction_params())
    return ExecutionOutcome("auction", portfolio.account_id, value, mm, equity, result, None,
                            ledger.conservation_error(ccy),
                            float(1 - result.remaining_fraction))


def takeover_fraction(portfolio: Portfolio, market: MarketSnapshot, model: MarginModel,
                      value: float, equity: float, buffer: float = 0.05,
                      params: AuctionParams | None = None) -> Decimal:
    """The smallest slice of an account a liquidator takes over to restore its health.

    The slice ``f`` is the smallest (to 1e-6, by bisection with the margin model on the scaled
    account) such that ``equity - f (discount + penalty) |value| >= (1 + buffer) MM((1 - f) P)``;
    ``f = 1`` when no slice suffices, ``0`` when the account needs none.

    Parameters
    ----------
    portfolio : Portfolio
        The account.
    market : MarketSnapshot
        Market data.
    model : MarginModel
        The account's margin model.
    value : float
        Signed mark value of its positions, margin currency.
    equity : float
        Its equity, margin currency.
    buffer : float
        Margin kept above MM after the takeover (fraction of MM).
    params : AuctionParams, optional
        ``[takeover]`` discount and penalty rate (the shipped ``auction.toml`` by default).

    Returns
    -------
    Decimal
        The fraction in [0, 1], a multiple of 1e-6.
    """
    ap = params if params is not None else load_auction_params()
    cost_rate = float(ap.takeover.discount + ap.takeover.insurance_fee_rate)

    def healthy(fractions: np.ndarray) -> np.ndarray:
        pfs = [Portfolio(portfolio.margin_currency,
                         tuple(Position(p.instrument, p.quantity * (1 - f), p.avg_price)
                               for p in portfolio.positions),
                         dict(portfolio.collateral), (), portfolio.account_id) for f in fractions]
        res = model.compute(Book.from_portfolios(pfs), market)
        eq_after = equity - fractions * cost_rate * abs(value)
        return np.asarray(eq_after >= (1 + buffer) * res.maintenance_margin)

    lo, hi = 0.0, 1.0
    if not healthy(np.array([1.0]))[0] or healthy(np.array([0.0]))[0]:
        hi = 1.0 if not healthy(np.array([0.0]))[0] else 0.0
    else:
        for _ in range(20):
            mid = 0.5 * (lo + hi)
            if healthy(np.array([mid]))[0]:
                hi = mid
            else:
                lo = mid
    return Decimal(repr(round(hi, 6))) if hi > 0 else Decimal(0)


def takeover_account(portfolio: Portfolio, market: MarketSnapshot, model: MarginModel,
                     liquidator: str = "liquidator:takeover", buffer: float = 0.05,
                     fund_usd: float = 250_000.0) -> ExecutionOutcome:
    """Hand the smallest slice of the account that restores health to a liquidator.

    The slice is :func:`takeover_fraction`'s.

    Returns
    -------
    ExecutionOutcome
        The takeover's cash flows and the ledger's conservation error (exactly 0).
    """
    ap = load_auction_params()
    ledger, fund, account, value, mm, equity = _setup(portfolio, market, model, fund_usd)
    ccy = portfolio.margin_currency
    frac = takeover_fraction(portfolio, market, model, value, equity, buffer, ap)
    if frac == 0:
        return ExecutionOutcome("takeover", portfolio.account_id, value, mm, equity, None, None,
                                ledger.conservation_error(ccy), 0.0)
    ledger.opening(f"{liquidator}:{ccy}", ccy, ledger.quantize(Decimal("1e9"), ccy))
    result = takeover(ledger, account=account, liquidator=f"{liquidator}:{ccy}",
                      positions_value=ledger.quantize(Decimal(repr(value)), ccy), currency=ccy,
                      fraction=frac, fund=fund, params=ap)
    return ExecutionOutcome("takeover", portfolio.account_id, value, mm, equity, None, result,
                            ledger.conservation_error(ccy), float(frac))
