"""Dutch-auction and takeover parameters (``auction.toml``): schemas and loader.

The price schedule itself is in :mod:`pmargin.liquidation.auction_schedule`.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from pmargin.errors import InvalidInput
from pmargin.liquidation._params import FrozenParams, load_params_file

__all__ = [
    "AuctionParams",
    "InsolventAuctionParams",
    "SolventAuctionParams",
    "TakeoverParams",
    "load_auction_params",
]


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

