r"""Dutch-auction liquidation (Derive) and liquidator takeover.

A liquidated account's portfolio is offered to bidders at a price that falls with time. While the
account is solvent (mark-to-market :math:`M > 0`) the price of the whole portfolio is
:math:`d(t)\,M`, the *discount* :math:`d` falling from 95 % to 70 % in a 15-minute fast phase and
then to 0 over 12 hours; bidders buy slices until the account is back above its buffer margin.
When the account is insolvent the price is negative: the insurance fund pays bidders to take the
portfolio, the payment growing from the bankruptcy amount towards :math:`M - MM` over 60 minutes.

Currently implemented
---------------------
* :class:`AuctionParams` (frozen pydantic, loaded from ``auction.toml``) with the price schedule
  :meth:`AuctionParams.discount_at`, its vectorised twin :func:`discount_curve`, and
  :func:`insolvent_bid_price`.
* :func:`buffer_margin` and :func:`max_liquidation_fraction` (Derive's ``f_max``).
* :func:`run_auction`: simulation of a solvent and/or insolvent auction of one lot against bidders
  with reservation discounts, taking partial percentages; fills and ledger postings (liquidation
  fee to the insurance fund, bidder payments, cash handed over with the slices, fund payouts,
  uncovered payouts booked against ``socialised:<currency>``).
* :func:`takeover`: a liquidator takes positions over at a fixed discount to mark.

Sign conventions: ``positions_value`` is the signed mark value of the positions; the account's
mark-to-market is its ledger cash plus that value; ``maintenance_margin`` is the (non-negative)
requirement, so Derive's "MM" (a surplus, negative when liquidatable) is ``MtM - maintenance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum
from pathlib import Path
from typing import Self

import numpy as np
from numpy.typing import ArrayLike
from pydantic import Field, field_validator, model_validator

from pmargin._typing import FloatArray
from pmargin.errors import InvalidInput, LiquidationError
from pmargin.liquidation._params import FrozenParams, load_params_file
from pmargin.liquidation.insurance_fund import InsuranceFund
from pmargin.liquidation.ledger import (
    Ledger,
    Transfer,
    as_decimal,
    fees_account,
    floor_to_quantum,
    socialised_account,
)

__all__ = [
    "AuctionFill",
    "AuctionLot",
    "AuctionParams",
    "AuctionPhase",
    "AuctionResult",
    "Bidder",
    "InsolventAuctionParams",
    "SolventAuctionParams",
    "TakeoverParams",
    "TakeoverResult",
    "buffer_margin",
    "discount_at",
    "discount_curve",
    "insolvent_bid_price",
    "load_auction_params",
    "max_liquidation_fraction",
    "run_auction",
    "takeover",
]


# ----------------------------------------------------------------------------- parameters
class SolventAuctionParams(FrozenParams):
    """Price schedule of the solvent auction (fractions of mark-to-market, times in seconds)."""

    starting_mtm_fraction: Decimal = Field(gt=0, le=1)
    """Discount at the start (Derive ``startingMtMPercentage``)."""
    fast_cutoff_fraction: Decimal = Field(ge=0, le=1)
    """Discount at the end of the fast phase (``fastAuctionCutoffPercentage``)."""
    fast_length_seconds: Decimal = Field(gt=0)
    """Length of the fast phase."""
    slow_length_seconds: Decimal = Field(gt=0)
    """Length of the slow phase (discount from the cutoff to zero)."""

    @model_validator(mode="after")
    def _cutoff_below_start(self) -> Self:
        if self.fast_cutoff_fraction > self.starting_mtm_fraction:
            raise ValueError("fast_cutoff_fraction must not exceed starting_mtm_fraction")
        return self


class InsolventAuctionParams(FrozenParams):
    """Insolvent auction: price from ``min(MtM, 0)`` to ``MtM - MM`` over ``length_seconds``."""

    length_seconds: Decimal = Field(gt=0)


class TakeoverParams(FrozenParams):
    """Liquidator takeover at a fixed discount to mark."""

    discount: Decimal = Field(ge=0, lt=1)
    """Fraction of the absolute mark value the liquidator is paid to take positions over."""
    insurance_fee_rate: Decimal = Field(ge=0, lt=1)
    """Penalty charged to the account for the insurance fund, fraction of the absolute value."""


class AuctionParams(FrozenParams):
    """Dutch-auction parameters (``auction.toml``).

    Examples
    --------
    >>> params = load_auction_params()
    >>> params.discount_at(0), params.discount_at(900), params.discount_at(900 + 6 * 3600)
    (Decimal('0.95'), Decimal('0.7'), Decimal('0.35'))
    """

    schema_version: int = 1
    name: str
    source: str
    assumptions: tuple[str, ...] = ()
    buffer_margin_fraction: Decimal = Field(ge=0)
    """``b`` in the buffer margin ``MtM - (1 + b) MM``."""
    liquidator_fee_rate: Decimal = Field(ge=0)
    """Fee charged at the start of a solvent auction, fraction of ``f_max(1) MtM``."""
    max_liquidator_fee_rate: Decimal = Field(ge=0, le=1)
    """Hard cap of ``liquidator_fee_rate``."""
    fraction_quantum: Decimal = Field(gt=0, le=1)
    """Resolution of bid percentages (bids are rounded down to it)."""
    solvent: SolventAuctionParams
    insolvent: InsolventAuctionParams
    takeover: TakeoverParams

    @field_validator("fraction_quantum")
    @classmethod
    def _power_of_ten(cls, value: Decimal) -> Decimal:
        if value.normalize().as_tuple().digits != (1,):
            raise ValueError("fraction_quantum must be a power of ten")
        return value

    @model_validator(mode="after")
    def _fee_capped(self) -> Self:
        if self.liquidator_fee_rate > self.max_liquidator_fee_rate:
            raise ValueError(
                f"liquidator_fee_rate {self.liquidator_fee_rate} exceeds the cap "
                f"{self.max_liquidator_fee_rate}"
            )
        return self

    @property
    def solvent_length_seconds(self) -> Decimal:
        """Total length of the solvent auction (fast + slow)."""
        return self.solvent.fast_length_seconds + self.solvent.slow_length_seconds

    def discount_at(self, t_seconds: Decimal | float) -> Decimal:
        r"""Return the solvent-auction discount (price as a fraction of MtM) at a time.

        Parameters
        ----------
        t_seconds : Decimal, int or float
            Seconds since the auction started, non-negative.

        Returns
        -------
        Decimal
            :math:`d(t)`: linear from ``starting_mtm_fraction`` to ``fast_cutoff_fraction`` over
            the fast phase, then linear to 0 over the slow phase, 0 afterwards.

        Raises
        ------
        InvalidInput
            If ``t_seconds`` is negative or not finite.
        """
        t = _seconds(t_seconds)
        s = self.solvent
        if t < s.fast_length_seconds:
            drop = s.starting_mtm_fraction - s.fast_cutoff_fraction
            return s.starting_mtm_fraction - drop * t / s.fast_length_seconds
        if t >= self.solvent_length_seconds:
            return Decimal(0)
        slow_elapsed = t - s.fast_length_seconds
        cutoff = s.fast_cutoff_fraction
        return cutoff - cutoff * slow_elapsed / s.slow_length_seconds

    def solvent_time_of(self, discount: Decimal) -> Decimal | None:
        """Return the first time at which the discount has fallen to ``discount``.

        Parameters
        ----------
        discount : Decimal
            Target discount.

        Returns
        -------
        Decimal or None
            0 if ``discount`` is at or above the starting discount; None if ``discount <= 0``
            (the solvent auction ends before reaching it).
        """
        s = self.solvent
        if discount >= s.starting_mtm_fraction:
            return Decimal(0)
        if discount <= 0:
            return None
        if discount >= s.fast_cutoff_fraction:
            drop = s.starting_mtm_fraction - s.fast_cutoff_fraction
            return s.fast_length_seconds * (s.starting_mtm_fraction - discount) / drop
        return (
            s.fast_length_seconds
            + s.slow_length_seconds * (s.fast_cutoff_fraction - discount) / s.fast_cutoff_fraction
        )

    def insolvent_progress_at(self, t_seconds: Decimal | float) -> Decimal:
        """Return the fraction of the insolvent auction elapsed, ``min(t / length, 1)``."""
        t = _seconds(t_seconds)
        return min(t / self.insolvent.length_seconds, Decimal(1))


def _seconds(value: Decimal | float) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        raise InvalidInput("t_seconds", value, "must be a number of seconds")
    t = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not t.is_finite() or t < 0:
        raise InvalidInput("t_seconds", value, "must be finite and non-negative")
    return t


def load_auction_params(path: str | Path | None = None) -> AuctionParams:
    """Load Dutch-auction parameters.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file; the shipped ``auction.toml`` (Derive mainnet) when omitted (cached).

    Returns
    -------
    AuctionParams
        Validated parameters.

    Raises
    ------
    ParamsError
        If the file is unreadable or a value is missing, unknown or out of range.
    """
    return load_params_file(AuctionParams, "auction.toml", path)


def discount_at(t_seconds: Decimal | float, params: AuctionParams | None = None) -> Decimal:
    """Return the solvent-auction discount at ``t_seconds`` (see :meth:`AuctionParams.discount_at`).

    Parameters
    ----------
    t_seconds : Decimal, int or float
        Seconds since the start of the auction.
    params : AuctionParams, optional
        Parameters; the shipped defaults when omitted.

    Returns
    -------
    Decimal
        Price of the portfolio as a fraction of its mark-to-market.
    """
    return (params or load_auction_params()).discount_at(t_seconds)


def discount_curve(t_seconds: ArrayLike, params: AuctionParams | None = None) -> FloatArray:
    """Return the solvent-auction discount at many times (float64, for plots and sweeps).

    Parameters
    ----------
    t_seconds : array_like
        Seconds since the start, any shape, non-negative.
    params : AuctionParams, optional
        Parameters; the shipped defaults when omitted.

    Returns
    -------
    ndarray
        Discounts, same shape as ``t_seconds``.

    Raises
    ------
    InvalidInput
        If a time is negative or not finite.
    """
    p = params or load_auction_params()
    t = np.asarray(t_seconds, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InvalidInput("t_seconds", t_seconds, "must be finite and non-negative")
    s = p.solvent
    knots = np.array(
        [0.0, float(s.fast_length_seconds), float(p.solvent_length_seconds)], dtype=np.float64
    )
    values = np.array(
        [float(s.starting_mtm_fraction), float(s.fast_cutoff_fraction), 0.0], dtype=np.float64
    )
    return np.asarray(np.interp(t, knots, values, right=0.0), dtype=np.float64)


def insolvent_bid_price(
    t_seconds: Decimal | float,
    *,
    mark_to_market: Decimal,
    maintenance_margin: Decimal,
    params: AuctionParams | None = None,
) -> Decimal:
    r"""Return the (non-positive) price of a whole insolvent portfolio at ``t_seconds``.

    Parameters
    ----------
    t_seconds : Decimal, int or float
        Seconds since the insolvent auction started.
    mark_to_market : Decimal
        Account mark-to-market :math:`M` (cash plus positions value).
    maintenance_margin : Decimal
        Maintenance requirement :math:`MM \ge 0`.
    params : AuctionParams, optional
        Parameters; the shipped defaults when omitted.

    Returns
    -------
    Decimal
        :math:`p(t) = m_0 + (M - MM - m_0) \min(t/T, 1)` with :math:`m_0 = \min(M, 0)`: minus
        what the fund pays a bidder to take the whole portfolio. For :math:`M = 0` this runs
        from 0 to :math:`-MM`; for :math:`M < 0` it starts at the bankruptcy amount.
    """
    p = params or load_auction_params()
    as_decimal(mark_to_market, "mark_to_market")
    as_decimal(maintenance_margin, "maintenance_margin")
    start = min(mark_to_market, Decimal(0))
    end = mark_to_market - maintenance_margin
    return start + (end - start) * p.insolvent_progress_at(t_seconds)


def buffer_margin(
    mark_to_market: Decimal, maintenance_margin: Decimal, params: AuctionParams | None = None
) -> Decimal:
    r"""Return Derive's buffer margin :math:`M - (1 + b)\,MM` (negative: keep selling).

    Parameters
    ----------
    mark_to_market : Decimal
        Account mark-to-market.
    maintenance_margin : Decimal
        Maintenance requirement (non-negative).
    params : AuctionParams, optional
        Parameters; the shipped defaults when omitted.

    Returns
    -------
    Decimal
        Buffer margin.
    """
    p = params or load_auction_params()
    return mark_to_market - (1 + p.buffer_margin_fraction) * maintenance_margin


def max_liquidation_fraction(
    mark_to_market: Decimal, buffer: Decimal, discount: Decimal
) -> Decimal:
    r"""Return the largest fraction a bid may take before the account is back at buffer margin.

    Parameters
    ----------
    mark_to_market : Decimal
        Account mark-to-market :math:`M > 0`.
    buffer : Decimal
        Buffer margin :math:`B` (see :func:`buffer_margin`).
    discount : Decimal
        Current discount :math:`d`.

    Returns
    -------
    Decimal
        :math:`f = B / (B - d M)` clipped to :math:`[0, 1]`; 0 when :math:`B \ge 0`.

    Notes
    -----
    Selling a fraction :math:`f` at :math:`d M` leaves :math:`(1-f) B + f d M`, which is zero
    at :math:`f = B / (B - dM)`.
    """
    if buffer >= 0:
        return Decimal(0)
    denominator = buffer - discount * mark_to_market
    if denominator >= 0:
        return Decimal(1)
    return min(buffer / denominator, Decimal(1))


# ----------------------------------------------------------------------------- auction model
class AuctionPhase(StrEnum):
    """Phase of a Dutch auction."""

    SOLVENT = "solvent"
    INSOLVENT = "insolvent"


@dataclass(frozen=True, slots=True)
class AuctionLot:
    """The portfolio of a liquidated account put up for auction.

    Parameters
    ----------
    account : str
        Ledger account of the liquidated account.
    currency : str
        Settlement (margin) currency of the account.
    positions_value : Decimal
        Signed mark value of the positions auctioned.
    maintenance_margin : Decimal
        Maintenance requirement of those positions (non-negative; scales with the fraction sold).
    cash : Decimal, optional
        Cash of the account; its ledger balance at the start of the auction when omitted.
    """

    account: str
    currency: str
    positions_value: Decimal
    maintenance_margin: Decimal
    cash: Decimal | None = None

    def __post_init__(self) -> None:
        as_decimal(self.positions_value, "lot.positions_value")
        as_decimal(self.maintenance_margin, "lot.maintenance_margin")
        if self.maintenance_margin < 0:
            raise InvalidInput(
                "lot.maintenance_margin", self.maintenance_margin, "must be non-negative"
            )
        if self.cash is not None:
            as_decimal(self.cash, "lot.cash")


@dataclass(frozen=True, slots=True)
class Bidder:
    """A simulated liquidator.

    Parameters
    ----------
    account : str
        Ledger account of the bidder, e.g. ``"liquidator:7:USDC"``.
    max_fraction : Decimal
        Percentage of the *current* portfolio it asks for in one bid, in (0, 1].
    reservation_discount : Decimal, optional
        Solvent phase: the bidder bids as soon as the discount has fallen to this value (it pays
        at most this fraction of MtM). None: does not bid in the solvent phase.
    reservation_progress : Decimal, optional
        Insolvent phase: the bidder bids once this fraction of the insolvent auction has
        elapsed (0 = at the start, 1 = only at the maximum payout). None: does not bid there.
    """

    account: str
    max_fraction: Decimal = Decimal(1)
    reservation_discount: Decimal | None = None
    reservation_progress: Decimal | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.account, str) or not self.account:
            raise InvalidInput("bidder.account", self.account, "must be a non-empty string")
        as_decimal(self.max_fraction, "bidder.max_fraction")
        if not 0 < self.max_fraction <= 1:
            raise InvalidInput("bidder.max_fraction", self.max_fraction, "must be in (0, 1]")
        if self.reservation_discount is not None:
            as_decimal(self.reservation_discount, "bidder.reservation_discount")
            if not 0 <= self.reservation_discount <= 1:
                raise InvalidInput(
                    "bidder.reservation_discount", self.reservation_discount, "must be in [0, 1]"
                )
        if self.reservation_progress is not None:
            as_decimal(self.reservation_progress, "bidder.reservation_progress")
            if not 0 <= self.reservation_progress <= 1:
                raise InvalidInput(
                    "bidder.reservation_progress", self.reservation_progress, "must be in [0, 1]"
                )


@dataclass(frozen=True, slots=True)
class AuctionFill:
    """One accepted bid.

    Parameters
    ----------
    bidder : str
        Bidder account.
    phase : AuctionPhase
        Solvent or insolvent.
    t_seconds : Decimal
        Time since the start of the auction.
    fraction : Decimal
        Fraction of the lot's original positions handed to the bidder.
    lot_price : Decimal
        Price of the whole portfolio offered in the phase at the bid (``discount * MtM`` or the
        negative insolvent price).
    discount : Decimal or None
        Discount at the bid (solvent phase only).
    paid_by_bidder : Decimal
        Cash the bidder paid to the account (solvent phase).
    paid_to_bidder : Decimal
        Payout owed to the bidder (insolvent phase): ``covered_by_fund + socialised``.
    cash_share : Decimal
        Account cash handed over with the slice (negative: the bidder took over a debt).
    covered_by_fund : Decimal
        Part of the payout paid by the insurance fund.
    socialised : Decimal
        Part of the payout the fund could not pay, booked against ``socialised:<currency>``.
    """

    bidder: str
    phase: AuctionPhase
    t_seconds: Decimal
    fraction: Decimal
    lot_price: Decimal
    discount: Decimal | None
    paid_by_bidder: Decimal
    paid_to_bidder: Decimal
    cash_share: Decimal
    covered_by_fund: Decimal
    socialised: Decimal


@dataclass(frozen=True, slots=True)
class AuctionResult:
    """Outcome of :func:`run_auction`.

    Parameters
    ----------
    lot : AuctionLot
        The lot auctioned.
    mark_to_market : Decimal
        Account mark-to-market at the start (before the fee).
    buffer_margin : Decimal
        Buffer margin at the start (before the fee).
    fee : Decimal
        Liquidation fee paid to the insurance fund at the start.
    fills : tuple of AuctionFill
        Accepted bids in time order.
    transfers : tuple of Transfer
        All postings, in order.
    remaining_fraction : Decimal
        Fraction of the original positions still held by the account.
    insolvent : bool
        Whether an insolvent phase ran.
    terminated : bool
        Whether the auction ended normally: buffer margin restored (solvent) or the whole
        portfolio taken over (insolvent).
    socialised : Decimal
        Total payouts the fund could not cover.
    end_seconds : Decimal
        Time of the last fill (or of the end of the solvent phase when it expired).
    """

    lot: AuctionLot
    mark_to_market: Decimal
    buffer_margin: Decimal
    fee: Decimal
    fills: tuple[AuctionFill, ...]
    transfers: tuple[Transfer, ...]
    remaining_fraction: Decimal
    insolvent: bool
    terminated: bool
    socialised: Decimal
    end_seconds: Decimal


class _Run:
    """Mutable state of one auction simulation (private helper of :func:`run_auction`)."""

    def __init__(
        self, ledger: Ledger, fund: InsuranceFund, lot: AuctionLot, params: AuctionParams, ref: str
    ) -> None:
        self.ledger = ledger
        self.fund = fund
        self.lot = lot
        self.params = params
        self.ref = ref
        self.ccy = lot.currency
        self.transfers: list[Transfer] = []
        self.fills: list[AuctionFill] = []
        self.socialised = Decimal(0)

    def money(self, amount: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        return self.ledger.quantize(amount, self.ccy, rounding)

    def fraction(self, value: Decimal) -> Decimal:
        return floor_to_quantum(value, self.params.fraction_quantum)

    def move(self, payer: str, payee: str, signed_amount: Decimal, reason: str) -> None:
        # positive: payer -> payee; negative: the other way round
        if signed_amount > 0:
            self.transfers.append(
                self.ledger.move(payer, payee, signed_amount, self.ccy, reason, self.ref)
            )
        elif signed_amount < 0:
            self.transfers.append(
                self.ledger.move(payee, payer, -signed_amount, self.ccy, reason, self.ref)
            )

    def fund_payout(self, bidder: str, amount: Decimal) -> tuple[Decimal, Decimal]:
        cover = self.fund.pay(bidder, amount, ref=self.ref)
        if cover.transfer is not None:
            self.transfers.append(cover.transfer)
        if cover.uncovered > 0:
            self.move(
                socialised_account(self.ccy),
                bidder,
                cover.uncovered,
                "insolvent auction payout (socialised)",
            )
            self.socialised += cover.uncovered
        return cover.covered, cover.uncovered


def _check_bidders(bidders: Sequence[Bidder], lot: AuctionLot) -> None:
    seen: set[str] = set()
    for i, b in enumerate(bidders):
        if not isinstance(b, Bidder):
            raise InvalidInput(f"bidders[{i}]", b, "must be a Bidder")
        if b.account in seen:
            raise InvalidInput(f"bidders[{i}].account", b.account, "appears twice")
        if b.account == lot.account:
            raise InvalidInput(
                f"bidders[{i}].account", b.account, "must differ from the liquidated account"
            )
        seen.add(b.account)


def run_auction(
    ledger: Ledger,
    lot: AuctionLot,
    bidders: Sequence[Bidder],
    *,
    fund: InsuranceFund,
    params: AuctionParams | None = None,
    ref: str = "",
) -> AuctionResult:
    r"""Simulate the Dutch auction of a liquidated account and post its cash flows.

    Parameters
    ----------
    ledger : Ledger
        Ledger holding the account, the bidders and the fund.
    lot : AuctionLot
        Portfolio put up for auction.
    bidders : sequence of Bidder
        Simulated liquidators (distinct accounts).
    fund : InsuranceFund
        Insurance fund (security module) of ``lot.currency``: receives the fee, pays insolvent
        bidders.
    params : AuctionParams, optional
        Parameters; the shipped Derive-mainnet defaults when omitted.
    ref : str
        Reference stamped on every posting.

    Returns
    -------
    AuctionResult
        Fills, postings and the state at the end.

    Raises
    ------
    LiquidationError
        If the account is not below maintenance margin (``MtM >= MM``).
    InvalidInput
        If a bidder is invalid or repeated, or the fund's ledger or currency does not match.

    Notes
    -----
    With cash :math:`C`, positions value :math:`V`, :math:`M = C + V`, requirement :math:`MM`
    and buffer :math:`B = M - (1+b) MM`:

    *Solvent phase* (:math:`M > 0`). A fee :math:`r f_{max}(1) M` (rounded down) is paid to the
    fund and deducted from :math:`C`, :math:`M` and :math:`B`. Each bidder bids when
    :math:`d(t)` reaches its reservation discount, asking for ``max_fraction`` of what is left,
    capped at :math:`\phi_{max} = (\rho B + R) / (B - d M)` (:math:`\rho` = fraction left,
    :math:`R` = bidder payments received so far): it pays :math:`\phi d M` and receives the
    slice :math:`\phi` of the positions and of the cash, :math:`\phi C`. Hitting the cap
    restores the buffer margin and ends the auction. If bidders run out with the account still
    below maintenance, the auction turns insolvent when the solvent schedule expires.

    *Insolvent phase* (:math:`M \le 0`, or after expiry). Price of the whole portfolio
    :math:`p = m_0 + (M - MM - m_0)\pi` (see :func:`insolvent_bid_price`), :math:`\pi` the
    bidder's reservation progress; a bidder taking :math:`\phi` receives :math:`-p\phi` from the
    fund (the uncovered part from ``socialised:<currency>``) and the slice :math:`\phi` of the
    positions and cash. The auction ends when nothing is left.

    Amounts are rounded half-even to the currency quantum, fractions down to
    ``fraction_quantum``; the last slice takes the exact cash left so a fully taken account ends
    at zero.
    """
    p = params if params is not None else load_auction_params()
    if fund.ledger is not ledger:
        raise InvalidInput("fund", fund.account, "must live in the same ledger")
    if fund.currency != lot.currency:
        raise InvalidInput("fund", fund.currency, f"must be in the lot currency {lot.currency}")
    _check_bidders(bidders, lot)
    cash0 = lot.cash if lot.cash is not None else ledger.balance(lot.account, lot.currency)
    with localcontext(ledger.decimal_context()):
        mtm0 = cash0 + lot.positions_value
        if mtm0 >= lot.maintenance_margin:
            raise LiquidationError(
                f"account {lot.account} is not below maintenance margin: mark-to-market {mtm0} "
                f">= maintenance margin {lot.maintenance_margin}"
            )
        bm0 = buffer_margin(mtm0, lot.maintenance_margin, p)
        run = _Run(ledger, fund, lot, p, ref)
        fee = Decimal(0)
        rho = Decimal(1)  # fraction of the original positions still in the account
        cash = cash0
        terminated = False
        end_seconds = Decimal(0)
        if mtm0 > 0:
            fee = run.money(
                p.liquidator_fee_rate * max_liquidation_fraction(mtm0, bm0, Decimal(1)) * mtm0,
                ROUND_DOWN,
            )
            if fee > 0:
                t = fund.receive_penalty(lot.account, fee, ref=ref)
                if t is not None:
                    run.transfers.append(t)
            cash, rho, terminated = _solvent_phase(run, bidders, cash0 - fee)
            end_seconds = run.fills[-1].t_seconds if run.fills else Decimal(0)
        insolvent = False
        if not terminated and rho > 0:
            mtm_now = cash + rho * lot.positions_value
            if mtm_now < rho * lot.maintenance_margin:
                insolvent = True
                start = p.solvent_length_seconds if mtm0 > 0 else Decimal(0)
                end_seconds = max(end_seconds, start)
                rho, terminated = _insolvent_phase(run, bidders, cash, rho, start)
                if run.fills and run.fills[-1].phase is AuctionPhase.INSOLVENT:
                    end_seconds = run.fills[-1].t_seconds
    return AuctionResult(
        lot=lot,
        mark_to_market=mtm0,
        buffer_margin=bm0,
        fee=fee,
        fills=tuple(run.fills),
        transfers=tuple(run.transfers),
        remaining_fraction=rho,
        insolvent=insolvent,
        terminated=terminated,
        socialised=run.socialised,
        end_seconds=end_seconds,
    )


def _solvent_phase(
    run: _Run, bidders: Sequence[Bidder], cash: Decimal
) -> tuple[Decimal, Decimal, bool]:
    # returns (account cash at the end, fraction of positions left, buffer restored?)
    p, lot = run.params, run.lot
    mtm = cash + lot.positions_value
    bm = buffer_margin(mtm, lot.maintenance_margin, p)
    queue: list[tuple[Decimal, int, Bidder, Decimal]] = []
    for i, b in enumerate(bidders):
        if b.reservation_discount is None:
            continue
        t = p.solvent_time_of(b.reservation_discount)
        if t is not None:
            queue.append((t, i, b, min(b.reservation_discount, p.solvent.starting_mtm_fraction)))
    queue.sort(key=lambda item: (item[0], item[1]))
    rho, received, shares = Decimal(1), Decimal(0), Decimal(0)
    for t, _, bidder, d in queue:
        cap = (rho * bm + received) / (bm - d * mtm)
        want = bidder.max_fraction * rho
        restores = want >= cap
        phi = run.fraction(min(cap if restores else want, rho))
        if phi <= 0:
            if restores:
                return cash - shares + received, rho, True
            continue
        takes_all = phi == rho
        gross = run.money(phi * d * mtm)
        share = cash - shares if takes_all else run.money(phi * cash)
        run.move(bidder.account, lot.account, gross, "auction payment")
        run.move(lot.account, bidder.account, share, "auction cash share")
        rho -= phi
        received += gross
        shares += share
        run.fills.append(
            AuctionFill(
                bidder=bidder.account,
                phase=AuctionPhase.SOLVENT,
                t_seconds=t,
                fraction=phi,
                lot_price=d * mtm,
                discount=d,
                paid_by_bidder=gross,
                paid_to_bidder=Decimal(0),
                cash_share=share,
                covered_by_fund=Decimal(0),
                socialised=Decimal(0),
            )
        )
        if restores or takes_all:
            return cash - shares + received, rho, True
    return cash - shares + received, rho, False


def _insolvent_phase(
    run: _Run, bidders: Sequence[Bidder], cash: Decimal, scale: Decimal, start: Decimal
) -> tuple[Decimal, bool]:
    # the insolvent lot is what is left: cash `cash`, a fraction `scale` of the positions
    p, lot = run.params, run.lot
    mtm = cash + scale * lot.positions_value
    mm = scale * lot.maintenance_margin
    first = min(mtm, Decimal(0))
    last = mtm - mm
    queue = sorted(
        (
            (b.reservation_progress, i, b)
            for i, b in enumerate(bidders)
            if b.reservation_progress is not None
        ),
        key=lambda item: (item[0], item[1]),
    )
    rho, shares = Decimal(1), Decimal(0)
    for progress, _, bidder in queue:
        phi = run.fraction(min(bidder.max_fraction * rho, rho))
        if phi <= 0:
            continue
        takes_all = phi == rho
        price = first + (last - first) * progress
        payout = run.money(-price * phi)
        share = cash - shares if takes_all else run.money(phi * cash)
        covered, uncovered = run.fund_payout(bidder.account, payout)
        run.move(lot.account, bidder.account, share, "auction cash share")
        rho -= phi
        shares += share
        run.fills.append(
            AuctionFill(
                bidder=bidder.account,
                phase=AuctionPhase.INSOLVENT,
                t_seconds=start + progress * p.insolvent.length_seconds,
                fraction=phi * scale,
                lot_price=price,
                discount=None,
                paid_by_bidder=Decimal(0),
                paid_to_bidder=payout,
                cash_share=share,
                covered_by_fund=covered,
                socialised=uncovered,
            )
        )
        if takes_all:
            return Decimal(0), True
    return rho * scale, False


# ----------------------------------------------------------------------------- takeover
@dataclass(frozen=True, slots=True)
class TakeoverResult:
    """Outcome of :func:`takeover`.

    Parameters
    ----------
    account : str
        Liquidated account.
    liquidator : str
        Account taking the positions over.
    fraction : Decimal
        Fraction of the positions taken over.
    positions_value : Decimal
        Signed mark value of the slice taken over.
    price : Decimal
        Cash paid by the liquidator to the account (negative: paid to the liquidator).
    discount_amount : Decimal
        Liquidator's reward, ``discount * |value|``.
    penalty : Decimal
        Penalty paid by the account to the insurance fund (or the fee account).
    transfers : tuple of Transfer
        Postings.
    """

    account: str
    liquidator: str
    fraction: Decimal
    positions_value: Decimal
    price: Decimal
    discount_amount: Decimal
    penalty: Decimal
    transfers: tuple[Transfer, ...]


def takeover(
    ledger: Ledger,
    *,
    account: str,
    liquidator: str,
    positions_value: Decimal,
    currency: str,
    fraction: Decimal = Decimal(1),
    fund: InsuranceFund | None = None,
    params: AuctionParams | None = None,
    ref: str = "",
) -> TakeoverResult:
    r"""Let a liquidator take positions over at a fixed discount to mark.

    Parameters
    ----------
    ledger : Ledger
        Ledger receiving the postings.
    account : str
        Liquidated account.
    liquidator : str
        Account taking the positions over.
    positions_value : Decimal
        Signed mark value of the account's positions.
    currency : str
        Settlement currency.
    fraction : Decimal
        Fraction of the positions taken, in (0, 1].
    fund : InsuranceFund, optional
        Receives the penalty; without it the penalty goes to ``fees:<currency>``.
    params : AuctionParams, optional
        Parameters (``[takeover]``); the shipped defaults when omitted.
    ref : str
        Reference.

    Returns
    -------
    TakeoverResult
        Price, reward, penalty and postings.

    Raises
    ------
    InvalidInput
        If an amount is not a Decimal, ``fraction`` is outside (0, 1], the accounts coincide or
        the fund's currency differs.

    Notes
    -----
    For a slice of value :math:`v = \phi V`: the liquidator pays :math:`v - \delta |v|` (a long
    portfolio is bought below mark, a short one is taken with a payment above its liability) and
    the account pays a penalty :math:`r |v|` (rounded down) to the fund.
    """
    p = params if params is not None else load_auction_params()
    as_decimal(positions_value, "positions_value")
    as_decimal(fraction, "fraction")
    if not 0 < fraction <= 1:
        raise InvalidInput("fraction", fraction, "must be in (0, 1]")
    if account == liquidator:
        raise InvalidInput("liquidator", liquidator, "must differ from the liquidated account")
    if fund is not None and (fund.currency != currency or fund.ledger is not ledger):
        raise InvalidInput("fund", fund.account, f"must be a {currency} fund of this ledger")
    with localcontext(ledger.decimal_context()):
        value = fraction * positions_value
        reward = ledger.quantize(p.takeover.discount * abs(value), currency)
        price = ledger.quantize(value, currency) - reward
        penalty = ledger.quantize(p.takeover.insurance_fee_rate * abs(value), currency, ROUND_DOWN)
    transfers: list[Transfer] = []
    if price > 0:
        transfers.append(ledger.move(liquidator, account, price, currency, "takeover", ref))
    elif price < 0:
        transfers.append(ledger.move(account, liquidator, -price, currency, "takeover", ref))
    if penalty > 0:
        if fund is not None:
            t = fund.receive_penalty(account, penalty, ref=ref)
            if t is not None:
                transfers.append(t)
        else:
            transfers.append(
                ledger.move(
                    account, fees_account(currency), penalty, currency, "liquidation penalty", ref
                )
            )
    return TakeoverResult(
        account=account,
        liquidator=liquidator,
        fraction=fraction,
        positions_value=value,
        price=price,
        discount_amount=reward,
        penalty=penalty,
        transfers=tuple(transfers),
    )
