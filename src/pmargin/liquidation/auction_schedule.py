r"""Price schedule of the Dutch auction and Derive's sizing formulas.

Solvent phase: the whole (non-reserved) portfolio is offered at :math:`d(t)\,(M - R)`, the
discount :math:`d` falling from 95 % to 70 % in 15 minutes and then to 0 over 12 hours
(:func:`discount_at`, :func:`solvent_bid_price`); a bid may take at most the fraction
:func:`max_liquidation_fraction` that brings the buffer margin (:func:`buffer_margin`) back to
zero. :math:`R` is the *reserved cash*: what bidders have paid into the account so far in this
auction, which stays in the account and is not sold again. Insolvent phase:
:func:`insolvent_bid_price`.

Source: Derive v2-core ``src/liquidation/DutchAuction.sol`` (methodologies.md §6.4, peers.md
§2.1): ``f = BM / (BM - MtM d - R (1 - d))`` and bid price ``(MtM - R) d``.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from numpy.typing import ArrayLike

from pmargin._typing import FloatArray
from pmargin.errors import InvalidInput
from pmargin.liquidation.auction_params import AuctionParams, load_auction_params
from pmargin.liquidation.ledger import as_decimal

__all__ = [
    "buffer_margin",
    "discount_at",
    "discount_curve",
    "insolvent_bid_price",
    "max_liquidation_fraction",
    "solvent_bid_price",
]


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
    mark_to_market: Decimal,
    buffer: Decimal,
    discount: Decimal,
    reserved_cash: Decimal = Decimal(0),
) -> Decimal:
    r"""Return the largest fraction of the current portfolio a bid may take (Derive ``f_max``).

    Parameters
    ----------
    mark_to_market : Decimal
        Current account mark-to-market :math:`M > 0` (cash, reserved cash included, plus the
        positions at the current marks).
    buffer : Decimal
        Current buffer margin :math:`B` (see :func:`buffer_margin`).
    discount : Decimal
        Current discount :math:`d`.
    reserved_cash : Decimal
        :math:`R \ge 0`: cash bidders have paid into the account earlier in this auction. It
        stays in the account and is not part of what is sold.

    Returns
    -------
    Decimal
        :math:`f = B / (B - d M - R (1 - d))` clipped to :math:`[0, 1]`; 0 when
        :math:`B \ge 0`.

    Notes
    -----
    A bid for a fraction :math:`f` takes :math:`f` of the positions and of the non-reserved
    cash (value :math:`f (M - R)`) and pays :math:`f d (M - R)`; the requirement scales by
    :math:`1 - f`. The buffer margin afterwards is
    :math:`B - f (B - d M - R (1 - d))`, zero at the :math:`f` above.
    """
    as_decimal(reserved_cash, "reserved_cash")
    if reserved_cash < 0:
        raise InvalidInput("reserved_cash", reserved_cash, "must be non-negative")
    if buffer >= 0:
        return Decimal(0)
    denominator = buffer - discount * mark_to_market - reserved_cash * (1 - discount)
    if denominator >= 0:
        return Decimal(1)
    return min(buffer / denominator, Decimal(1))


def solvent_bid_price(
    mark_to_market: Decimal, discount: Decimal, reserved_cash: Decimal = Decimal(0)
) -> Decimal:
    r"""Return the price of the whole current (non-reserved) portfolio, :math:`d (M - R)`.

    Parameters
    ----------
    mark_to_market : Decimal
        Current account mark-to-market :math:`M`.
    discount : Decimal
        Current discount :math:`d`.
    reserved_cash : Decimal
        Cash paid in by earlier bids of this auction, :math:`R` (not sold again).

    Returns
    -------
    Decimal
        What a bidder pays for 100 % of the current portfolio; a bid for a fraction :math:`f`
        pays :math:`f d (M - R)`.

    Raises
    ------
    InvalidInput
        If ``reserved_cash`` is negative.
    """
    as_decimal(reserved_cash, "reserved_cash")
    if reserved_cash < 0:
        raise InvalidInput("reserved_cash", reserved_cash, "must be non-negative")
    return discount * (mark_to_market - reserved_cash)
