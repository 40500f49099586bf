"""Validation of the UTC timestamps of market data (valuation time, data time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pmargin.errors import MarketDataError

__all__ = ["check_time"]


def check_time(value: Any, field: str = "market.valuation_time") -> datetime:
    """Parse and validate a UTC timestamp (ISO-8601 text or aware datetime).

    Parameters
    ----------
    value : str or datetime
        ``"2024-06-17T10:22:20.501Z"``, ``"...+00:00"`` or a datetime with a zero UTC offset.
    field : str
        Field named in errors.

    Returns
    -------
    datetime
        Aware datetime with ``tzinfo=UTC``.

    Raises
    ------
    MarketDataError
        If the value is not a timestamp, is naive, or has a non-zero UTC offset.
    """
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise MarketDataError(field, value, "is not an ISO-8601 timestamp") from exc
    elif isinstance(value, datetime):
        ts = value
    else:
        raise MarketDataError(field, value, "must be an ISO-8601 string or a datetime")
    offset = ts.utcoffset() if ts.tzinfo is not None else None
    if offset is None:
        raise MarketDataError(field, value,
                              "must be timezone-aware UTC (e.g. 2024-06-17T10:22:20Z); "
                              "a naive timestamp is ambiguous")
    if offset != timedelta(0):
        raise MarketDataError(field, value,
                              f"must be in UTC (offset +00:00 or Z), not UTC{ts.isoformat()[-6:]}; "
                              "convert it to UTC first")
    return ts.astimezone(UTC)
