"""Exception and warning hierarchy of pmargin.

Every error raised on bad input names the field and the offending value, so a user can fix the
input without reading the code.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BookError",
    "DuplicatePositionWarning",
    "ImpliedVolFailureWarning",
    "InvalidInput",
    "LiquidationError",
    "MarketDataError",
    "ParamsError",
    "PerformanceWarning",
    "PmarginError",
    "PmarginWarning",
    "StaleMarketData",
    "UnknownInstrument",
]


class PmarginError(Exception):
    """Base class of every pmargin error."""


class InvalidInput(PmarginError, ValueError):
    """A field of an input holds a value that cannot be used.

    Parameters
    ----------
    field : str
        Dotted path of the offending field, e.g. ``"positions[2].quantity"``.
    value : Any
        The value that was supplied.
    reason : str
        Why the value was rejected.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}: {reason} (value was {value!r})")


class UnknownInstrument(InvalidInput):
    """An instrument name could not be parsed or is not in the market."""


class MarketDataError(InvalidInput):
    """Market data is missing, non-finite, non-positive or otherwise unusable."""


class StaleMarketData(MarketDataError):
    """Market data is older than allowed or refers to an expired instrument."""


class ParamsError(InvalidInput):
    """A parameter file or override is invalid."""


class BookError(InvalidInput):
    """A book (positions of many accounts) is inconsistent."""


class LiquidationError(PmarginError):
    """A liquidation could not be planned or executed."""


class PmarginWarning(UserWarning):
    """Base class of every pmargin warning."""


class PerformanceWarning(PmarginWarning):
    """An accelerated path is unavailable and a slower fallback is used."""


class DuplicatePositionWarning(PmarginWarning):
    """Several rows of one instrument in a portfolio file were merged into one position."""


class ImpliedVolFailureWarning(PmarginWarning):
    """Some implied volatilities could not be solved."""
