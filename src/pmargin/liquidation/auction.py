r"""Dutch-auction liquidation of one account (Derive): the simulation.

A liquidated account's portfolio is offered to bidders at a price that falls with time (see
:mod:`pmargin.liquidation.auction_schedule`). While the account is solvent the whole non-reserved
portfolio is priced :math:`d(t)\,(M - R)`; bidders buy slices of the *current* portfolio until
the account is back above its buffer margin. When the account is insolvent the price is
negative: the insurance fund pays bidders to take the portfolio, the payment growing from the
bankruptcy amount towards :math:`M - MM` over 60 minutes.

Currently implemented
---------------------
* :class:`AuctionLot` (with an optional mark path: the market may move during the auction),
  :class:`Bidder`, :func:`run_auction`: fills and ledger postings (liquidation fee to the
  insurance fund, bidder payments, cash handed over with the slices, fund payouts, uncovered
  payouts booked against ``socialised:<currency>``).

Parameters are in :mod:`pmargin.liquidation.auction_params`, the takeover alternative in
:mod:`pmargin.liquidation.takeover`.

Sign conventions: ``positions_value`` is the signed mark value of the positions; the account's
mark-to-market is its ledger cash plus that value; ``maintenance_margin`` is the (non-negative)
requirement, so Derive's "MM" (a surplus, negative when liquidatable) is ``MtM - maintenance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum

from pmargin.errors import InvalidInput, LiquidationError
from pmargin.liquidation.auction_params import AuctionParams, load_auction_params
from pmargin.liquidation.auction_schedule import (
    buffer_margin,
    max_liquidation_fraction,
    solvent_bid_price,
)
from pmargin.liquidation.insurance_fund import InsuranceFund
from pmargin.liquidation.ledger import (
    Ledger,
    Transfer,
    as_decimal,
    floor_to_quantum,
    socialised_account,
)

__all__ = [
    "AuctionFill",
    "AuctionLot",
    "AuctionPhase",
    "AuctionResult",
    "Bidder",
    "run_auction",
]


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
    mark_path : tuple of (Decimal, Decimal, Decimal), optional
        The market moving during the auction: ``(t_seconds, positions_value,
        maintenance_margin)`` of the whole original portfolio from ``t_seconds`` on (times
        positive and increasing). Empty: the marks stay where they were at the start.
    """

    account: str
    currency: str
    positions_value: Decimal
    maintenance_margin: Decimal
    cash: Decimal | None = None
    mark_path: tuple[tuple[Decimal, Decimal, Decimal], ...] = ()

    def __post_init__(self) -> None:
        as_decimal(self.positions_value, "lot.positions_value")
        as_decimal(self.maintenance_margin, "lot.maintenance_margin")
        if self.maintenance_margin < 0:
            raise InvalidInput(
                "lot.maintenance_margin", self.maintenance_margin, "must be non-negative"
            )
        if self.cash is not None:
            as_decimal(self.cash, "lot.cash")
        last = Decimal(0)
        for k, point in enumerate(self.mark_path):
            if len(point) != 3:
                raise InvalidInput(f"lot.mark_path[{k}]", point, "must be (t, value, MM)")
            t, _value, mm = (as_decimal(x, f"lot.mark_path[{k}]") for x in point)
            if t <= last:
                raise InvalidInput(
                    f"lot.mark_path[{k}]", t, "times must be positive and increasing"
                )
            if mm < 0:
                raise InvalidInput(f"lot.mark_path[{k}]", mm, "MM must be non-negative")
            last = t

    def marks_at(self, t_seconds: Decimal) -> tuple[Decimal, Decimal]:
        """Return the value and MM of the whole original portfolio at ``t_seconds``.

        Parameters
        ----------
        t_seconds : Decimal
            Seconds since the start of the auction.

        Returns
        -------
        tuple of Decimal
            ``(positions_value, maintenance_margin)`` of the last mark-path point at or
            before ``t_seconds`` (the lot's own figures before the first point).
        """
        value, mm = self.positions_value, self.maintenance_margin
        for t, v, m in self.mark_path:
            if t > t_seconds:
                break
            value, mm = v, m
        return value, mm


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
        Price of the whole current portfolio at the bid (``discount * (MtM - R)`` or the
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
    on the current state at the bid time (marks from ``lot.mark_path``, the fraction of the
    positions still held, the reserved cash :math:`R` paid in by earlier bids): it asks for
    ``max_fraction`` :math:`g` of the current portfolio, capped at Derive's
    :math:`f_{max} = B / (B - d M - R (1-d))` (:func:`max_liquidation_fraction`), pays
    :math:`g d (M - R)` (:func:`solvent_bid_price`) and receives the slice :math:`g` of the
    positions and of the non-reserved cash, :math:`g (C - R)`. Hitting the cap restores the
    buffer margin and ends the auction. If the mark-to-market falls to zero or below the
    reserved cash, or bidders run out with the account still below maintenance, the auction
    turns insolvent (then, or when the solvent schedule expires).

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
            cash, rho, terminated, stopped = _solvent_phase(run, bidders, cash0 - fee)
            end_seconds = run.fills[-1].t_seconds if run.fills else Decimal(0)
        else:
            stopped = Decimal(0)
        insolvent = False
        if not terminated and rho > 0:
            start = stopped if stopped is not None else p.solvent_length_seconds
            value_now, mm_now = lot.marks_at(start)
            if cash + rho * value_now < rho * mm_now:
                insolvent = True
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
) -> tuple[Decimal, Decimal, bool, Decimal | None]:
    # returns (account cash at the end, fraction of positions left, buffer restored?, time the
    # solvent auction was stopped early because the account went under, else None)
    # Every bid is sized and priced on the *current* state (Derive): marks at the bid time,
    # the fraction rho of the positions still held, and the reserved cash R paid in by the
    # earlier bids (kept by the account, never sold again).
    p, lot = run.params, run.lot
    queue: list[tuple[Decimal, int, Bidder, Decimal]] = []
    for i, b in enumerate(bidders):
        if b.reservation_discount is None:
            continue
        t = p.solvent_time_of(b.reservation_discount)
        if t is not None:
            queue.append((t, i, b, min(b.reservation_discount, p.solvent.starting_mtm_fraction)))
    queue.sort(key=lambda item: (item[0], item[1]))
    rho, reserved = Decimal(1), Decimal(0)
    for t, _, bidder, d in queue:
        value, mm = lot.marks_at(t)
        mtm = cash + rho * value
        if mtm <= 0 or reserved >= mtm:
            # Derive ends the solvent auction here (it restarts as insolvent if below MM)
            return cash, rho, False, t
        bm = buffer_margin(mtm, rho * mm, p)
        if bm >= 0:
            return cash, rho, True, None
        cap = max_liquidation_fraction(mtm, bm, d, reserved)
        restores = bidder.max_fraction >= cap
        g = run.fraction(cap if restores else bidder.max_fraction)
        if g <= 0:
            if restores:
                return cash, rho, True, None
            continue
        takes_all = g == 1
        gross = run.money(g * solvent_bid_price(mtm, d, reserved))
        share = cash - reserved if takes_all else run.money(g * (cash - reserved))
        run.move(bidder.account, lot.account, gross, "auction payment")
        run.move(lot.account, bidder.account, share, "auction cash share")
        phi = g * rho
        rho -= phi
        cash = cash - share + gross
        reserved += gross
        run.fills.append(
            AuctionFill(
                bidder=bidder.account,
                phase=AuctionPhase.SOLVENT,
                t_seconds=t,
                fraction=phi,
                lot_price=solvent_bid_price(mtm, d, reserved - gross),
                discount=d,
                paid_by_bidder=gross,
                paid_to_bidder=Decimal(0),
                cash_share=share,
                covered_by_fund=Decimal(0),
                socialised=Decimal(0),
            )
        )
        if restores or takes_all:
            return cash, rho, True, None
    return cash, rho, False, None


def _insolvent_phase(
    run: _Run, bidders: Sequence[Bidder], cash: Decimal, scale: Decimal, start: Decimal
) -> tuple[Decimal, bool]:
    # the insolvent lot is what is left: cash `cash`, a fraction `scale` of the positions
    p, lot = run.params, run.lot
    value, whole_mm = lot.marks_at(start)
    mtm = cash + scale * value
    mm = scale * whole_mm
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
