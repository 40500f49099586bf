"""Time conventions: day count, expiry time of day, year fractions.

All times are timezone-aware UTC. Time to expiry is ACT/365 measured in seconds, which is the
convention that reproduces Deribit's option marks (see docs/conventions.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from pmargin.errors import InvalidInput

SECONDS_PER_YEAR: float = 365.0 * 86400.0
"""Seconds in the ACT/365 year used for every time to expiry."""

DERIBIT_EXPIRY_TIME: time = time(8, 0, tzinfo=UTC)
"""Deribit instruments expire at 08:00 UTC."""


def ensure_utc(ts: datetime, field: str = "valuation_time") -> datetime:
    """Return ``ts`` as an aware UTC datetime, rejecting naive datetimes.

    Parameters
    ----------
    ts : datetime
        A timezone-aware datetime.
    field : str
        Field name used in the error message.

    Returns
    -------
    datetime
        The same instant in UTC.

    Raises
    ------
    InvalidInput
        If ``ts`` carries no timezone.
    """
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise InvalidInput(field, ts, "must be timezone-aware (UTC)")
    return ts.astimezone(UTC)


def parse_time(text: str, field: str = "valuation_time") -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` suffix allowed) into aware UTC.

    Parameters
    ----------
    text : str
        ISO-8601 text, e.g. ``"2024-06-17T10:22:20.501Z"``.
    field : str
        Field name used in the error message.

    Returns
    -------
    datetime
        Aware UTC datetime.

    Raises
    ------
    InvalidInput
        If the text is not an ISO-8601 timestamp with a timezone.
    """
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(field, text, "is not an ISO-8601 timestamp") from exc
    return ensure_utc(ts, field)


def year_fraction(start: datetime, end: datetime) -> float:
    """Return ACT/365 years from ``start`` to ``end`` (negative if ``end`` is earlier).

    Parameters
    ----------
    start, end : datetime
        Aware datetimes.

    Returns
    -------
    float
        ``(end - start).total_seconds() / (365 * 86400)``.
    """
    return (end - start).total_seconds() / SECONDS_PER_YEAR
