"""Exact money: decimal amounts <-> integer minor units of the service ledger."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pmargin.errors import InvalidInput

__all__ = ["from_units", "parse_decimal", "to_units"]


def parse_decimal(value: Any, field: str) -> Decimal:
    """Read a JSON number or decimal string as an exact finite :class:`~decimal.Decimal`.

    Floats are read through their shortest repr (``0.1`` -> ``Decimal('0.1')``).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidInput(field, value, "must be a number or a decimal string")
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise InvalidInput(field, value, "is not a decimal number") from None
    if not d.is_finite():
        raise InvalidInput(field, value, "must be finite")
    return d


def to_units(amount: Decimal, quantum: Decimal, field: str) -> int:
    """Return ``amount / quantum`` as an int, refusing amounts off the grid.

    Parameters
    ----------
    amount : Decimal
        Amount in the currency (or contracts).
    quantum : Decimal
        One minor unit.
    field : str
        Name for the error.

    Returns
    -------
    int
        Minor units.
    """
    units = amount / quantum
    if units != units.to_integral_value():
        raise InvalidInput(field, str(amount), f"must be a multiple of {quantum}")
    n = int(units)
    if abs(n) >= 2**63:
        raise InvalidInput(field, str(amount), "is too large")
    return n


def from_units(units: int, quantum: Decimal) -> Decimal:
    """Return the decimal amount of ``units`` minor units."""
    return (Decimal(units) * quantum).normalize()
