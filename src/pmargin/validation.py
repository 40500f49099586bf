"""Input validation shared by every loader: numbers, keys, arrays.

One helper per check, each raising :class:`pmargin.errors.InvalidInput` (or the subclass the
caller passes) that names the field and the value. Loaders of portfolios, markets, presets and
settings use these instead of private copies.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pmargin._typing import FloatArray
from pmargin.errors import InvalidInput

__all__ = [
    "check_keys",
    "finite_array",
    "finite_number",
    "nearest",
    "non_negative_number",
    "positive_number",
    "require_mapping",
    "unit_interval",
]


def nearest(key: str, allowed: Iterable[str]) -> str | None:
    """Return the allowed key closest to ``key`` (``None`` when nothing is close).

    Parameters
    ----------
    key : str
        The key that was given.
    allowed : iterable of str
        The keys that are valid at that place.

    Returns
    -------
    str or None
        The closest valid key by :func:`difflib.get_close_matches` (cutoff 0.5), or ``None``.
    """
    matches = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.5)
    return matches[0] if matches else None


def check_keys(
    data: Mapping[str, Any],
    allowed: Iterable[str],
    where: str,
    *,
    error: type[InvalidInput] = InvalidInput,
) -> None:
    """Reject keys of ``data`` not in ``allowed``, naming the key and the nearest valid one.

    Parameters
    ----------
    data : mapping
        The object read from a file.
    allowed : iterable of str
        Valid keys at this place.
    where : str
        Dotted path of ``data`` (``"positions[2]"``); empty for the top level.
    error : type of InvalidInput, optional
        The exception class to raise.

    Raises
    ------
    InvalidInput
        On the first unknown key (in sorted order, so the message is deterministic).
    """
    allowed_list = list(allowed)
    unknown = sorted(str(k) for k in data if k not in allowed_list)
    if not unknown:
        return
    key = unknown[0]
    field = f"{where}.{key}" if where else key
    hint = nearest(key, allowed_list)
    valid = ", ".join(sorted(allowed_list))
    reason = f"unknown field; did you mean '{hint}'?" if hint else f"unknown field (valid: {valid})"
    raise error(field, key, reason)


def require_mapping(
    value: Any, field: str, *, error: type[InvalidInput] = InvalidInput
) -> Mapping[str, Any]:
    """Return ``value`` if it is a mapping, else raise naming ``field``."""
    if not isinstance(value, Mapping):
        raise error(field, value, "must be an object (mapping of names to values)")
    return value


def finite_number(value: Any, field: str, *, error: type[InvalidInput] = InvalidInput) -> float:
    """Return ``value`` as a finite float; booleans and text are refused.

    Parameters
    ----------
    value : Any
        The value read.
    field : str
        Its dotted path, for the message.
    error : type of InvalidInput, optional
        The exception class to raise.

    Returns
    -------
    float
        The value.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise error(field, value, "must be a number")
    try:
        v = float(value)
    except OverflowError:  # an integer beyond the float range
        v = math.inf
    if not math.isfinite(v):
        raise error(field, value, "must be finite")
    return v


def positive_number(value: Any, field: str, *, error: type[InvalidInput] = InvalidInput) -> float:
    """Return ``value`` as a finite float > 0."""
    v = finite_number(value, field, error=error)
    if v <= 0.0:
        raise error(field, value, "must be positive")
    return v


def non_negative_number(
    value: Any, field: str, *, error: type[InvalidInput] = InvalidInput
) -> float:
    """Return ``value`` as a finite float >= 0."""
    v = finite_number(value, field, error=error)
    if v < 0.0:
        raise error(field, value, "must not be negative")
    return v


def unit_interval(value: Any, field: str, *, error: type[InvalidInput] = InvalidInput) -> float:
    """Return ``value`` as a finite float in [0, 1]."""
    v = finite_number(value, field, error=error)
    if not 0.0 <= v <= 1.0:
        raise error(field, value, "must lie in [0, 1]")
    return v


def finite_array(value: Any, field: str, *, error: type[InvalidInput] = InvalidInput) -> FloatArray:
    """Return ``value`` as a float64 array whose entries are all finite.

    Parameters
    ----------
    value : array_like
        Numbers of any shape.
    field : str
        The array's name; the message names the first bad index.
    error : type of InvalidInput, optional
        The exception class to raise.

    Returns
    -------
    numpy.ndarray
        float64, same shape as ``value``.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise error(field, value, "must be numeric") from exc
    flat = arr.reshape(-1)
    bad = np.flatnonzero(~np.isfinite(flat))
    if bad.size:
        raise error(f"{field}[{int(bad[0])}]", float(flat[bad[0]]), "must be finite")
    return arr
