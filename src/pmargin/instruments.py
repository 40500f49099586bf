"""Instrument specifications and Deribit-style instrument names.

Currently implemented
---------------------
* Spot pairs (``BTC_USDC``), dated futures (``BTC-28JUN24``), perpetuals (``BTC-PERPETUAL``) and
  European options (``BTC-28JUN24-65000-C``).
* Inverse (coin-settled, e.g. ``BTC-...``) and linear (USDC-settled, ``BTC_USDC-...``) variants.
* Parsing and formatting of names both ways; expiries at 08:00 UTC.

Units: strikes and prices in USD per one unit of underlying. Quantities of futures, perpetuals and
spot are in coin; options are in contracts of ``contract_size`` coin (1 by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import lru_cache

from pmargin.conventions import DERIBIT_EXPIRY_TIME
from pmargin.errors import UnknownInstrument

__all__ = [
    "Instrument",
    "InstrumentKind",
    "OptionRight",
    "Settlement",
    "format_expiry",
    "parse_expiry",
    "parse_instrument",
]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
LINEAR_QUOTES = frozenset({"USDC", "USDT", "USD"})


class InstrumentKind(StrEnum):
    """What an instrument is."""

    SPOT = "spot"
    FUTURE = "future"
    PERPETUAL = "perpetual"
    OPTION = "option"


class OptionRight(StrEnum):
    """Call or put."""

    CALL = "call"
    PUT = "put"


class Settlement(StrEnum):
    """Inverse instruments settle in the underlying coin, linear ones in the quote stablecoin."""

    INVERSE = "inverse"
    LINEAR = "linear"


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable instrument.

    Parameters
    ----------
    kind : InstrumentKind
        Spot, future, perpetual or option.
    underlying : str
        Underlying coin, e.g. ``"BTC"``.
    settlement : Settlement
        Inverse (coin-settled) or linear (quote-settled).
    quote : str
        Quote currency of linear instruments (``"USDC"``); ``"USD"`` for inverse ones.
    expiry : datetime or None
        Expiry (aware UTC) of futures and options.
    strike : float or None
        Strike in USD of options.
    right : OptionRight or None
        Call or put for options.
    contract_size : float
        Coin per contract (1 for every instrument of the conformance format).
    """

    kind: InstrumentKind
    underlying: str
    settlement: Settlement
    quote: str = "USD"
    expiry: datetime | None = None
    strike: float | None = None
    right: OptionRight | None = None
    contract_size: float = 1.0
    _name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # the name is read for every position and quote of every request: built once
        object.__setattr__(self, "_name", self._build_name())

    @property
    def settle_currency(self) -> str:
        """Currency in which P&L of this instrument is paid."""
        return self.underlying if self.settlement is Settlement.INVERSE else self.quote

    @property
    def is_option(self) -> bool:
        """Whether the instrument is an option."""
        return self.kind is InstrumentKind.OPTION

    @property
    def is_call(self) -> bool:
        """Whether the instrument is a call option."""
        return self.right is OptionRight.CALL

    @property
    def is_inverse(self) -> bool:
        """Whether the instrument settles in its underlying coin."""
        return self.settlement is Settlement.INVERSE

    @property
    def name(self) -> str:
        """Deribit-style name, e.g. ``BTC-28JUN24-65000-C`` or ``ETH_USDC-PERPETUAL``."""
        return self._name

    def _build_name(self) -> str:
        base = self.underlying if self.is_inverse else f"{self.underlying}_{self.quote}"
        if self.kind is InstrumentKind.SPOT:
            return f"{self.underlying}_{self.quote}"
        if self.kind is InstrumentKind.PERPETUAL:
            return f"{base}-PERPETUAL"
        assert self.expiry is not None
        exp = format_expiry(self.expiry)
        if self.kind is InstrumentKind.FUTURE:
            return f"{base}-{exp}"
        assert self.strike is not None
        assert self.right is not None
        return f"{base}-{exp}-{_format_strike(self.strike)}-{'C' if self.is_call else 'P'}"

    def __str__(self) -> str:
        return self.name


def _format_strike(strike: float) -> str:
    if float(strike).is_integer():
        return str(int(strike))
    return repr(float(strike)).replace(".", "d")


def format_expiry(expiry: datetime) -> str:
    """Format an expiry as Deribit does (``28JUN24``; day not zero-padded).

    Parameters
    ----------
    expiry : datetime
        Expiry date.

    Returns
    -------
    str
        E.g. ``"5FEB26"``.
    """
    return f"{expiry.day}{_MONTHS[expiry.month - 1]}{expiry.year % 100:02d}"


_EXPIRY_RE = re.compile(r"^(\d{1,2})([A-Z]{3})(\d{2})$")


def parse_expiry(text: str, field: str = "expiry") -> datetime:
    """Parse a Deribit expiry code into an aware datetime at 08:00 UTC.

    Parameters
    ----------
    text : str
        E.g. ``"28JUN24"``.
    field : str
        Field name for error messages.

    Returns
    -------
    datetime
        Expiry instant.

    Raises
    ------
    UnknownInstrument
        If the code is malformed or names no real date.
    """
    m = _EXPIRY_RE.match(text)
    if m is None or m.group(2) not in _MONTHS:
        raise UnknownInstrument(field, text, "is not a Deribit expiry such as 28JUN24")
    day, mon, yy = int(m.group(1)), _MONTHS.index(m.group(2)) + 1, 2000 + int(m.group(3))
    try:
        return datetime.combine(date(yy, mon, day), DERIBIT_EXPIRY_TIME).astimezone(UTC)
    except ValueError as exc:
        raise UnknownInstrument(field, text, "names no calendar date") from exc


_UNDERLYING_RE = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")


@lru_cache(maxsize=65536)
def parse_instrument(name: str) -> Instrument:
    """Parse a Deribit-style instrument name.

    Parameters
    ----------
    name : str
        ``BTC-PERPETUAL``, ``BTC-28JUN24``, ``BTC-28JUN24-65000-C``, ``BTC_USDC-PERPETUAL``,
        ``ETH_USDC-17NOV23-1850-P`` or a spot pair ``BTC_USDC``. A ``d`` in a strike stands for
        the decimal point (``XRP_USDC-28JUN24-0d625-C``).

    Returns
    -------
    Instrument
        The parsed specification.

    Raises
    ------
    UnknownInstrument
        If the name is malformed; the message names the bad part.
    """
    if not isinstance(name, str) or not name:
        raise UnknownInstrument("instrument", name, "must be a non-empty instrument name")
    parts = name.strip().upper().split("-")
    head = parts[0]
    if "_" in head:
        underlying, _, quote = head.partition("_")
        if quote not in LINEAR_QUOTES:
            raise UnknownInstrument("instrument", name, f"unknown quote currency {quote!r}")
        settlement = Settlement.LINEAR
    else:
        underlying, quote, settlement = head, "USD", Settlement.INVERSE
    if not _UNDERLYING_RE.match(underlying):
        raise UnknownInstrument("instrument", name, f"unknown underlying {underlying!r}")
    if len(parts) == 1:
        if settlement is Settlement.INVERSE:
            raise UnknownInstrument(
                "instrument", name, "a spot pair needs a quote currency, e.g. BTC_USDC"
            )
        return Instrument(InstrumentKind.SPOT, underlying, Settlement.LINEAR, quote)
    if len(parts) == 2:
        if parts[1] == "PERPETUAL":
            return Instrument(InstrumentKind.PERPETUAL, underlying, settlement, quote)
        expiry = parse_expiry(parts[1], "instrument")
        return Instrument(InstrumentKind.FUTURE, underlying, settlement, quote, expiry)
    if len(parts) == 4:
        expiry = parse_expiry(parts[1], "instrument")
        strike_text = parts[2].replace("D", ".")
        try:
            strike = float(strike_text)
        except ValueError as exc:
            raise UnknownInstrument(
                "instrument", name, f"strike {parts[2]!r} is not a number") from exc
        if not strike > 0 or strike == float("inf"):
            raise UnknownInstrument("instrument", name, "strike must be positive and finite")
        if parts[3] not in ("C", "P"):
            raise UnknownInstrument("instrument", name, f"option type {parts[3]!r} is not C or P")
        right = OptionRight.CALL if parts[3] == "C" else OptionRight.PUT
        return Instrument(InstrumentKind.OPTION, underlying, settlement, quote, expiry, strike,
                          right)
    raise UnknownInstrument(
        "instrument", name, "is not of the form BTC-PERPETUAL, BTC-28JUN24 or BTC-28JUN24-65000-C"
    )
