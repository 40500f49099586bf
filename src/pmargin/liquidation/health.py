"""Health classification of accounts from equity and margin requirements.

Currently implemented
---------------------
* :class:`HealthState`: ``HEALTHY``, ``MARGIN_CALL`` (equity below initial margin),
  ``LIQUIDATION`` (below maintenance margin), ``BANKRUPT`` (negative equity).
* :func:`classify` vectorised over accounts, :func:`classify_one` for a single account.

The worst state applies: an account with negative equity is ``BANKRUPT`` whatever its margins.
Thresholds are strict: equity exactly at maintenance margin is not liquidated.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike

from pmargin._typing import FloatArray, IntArray
from pmargin.errors import InvalidInput

__all__ = ["HealthState", "classify", "classify_one"]


class HealthState(IntEnum):
    """Health of an account, ordered from best to worst (the integer code of :func:`classify`)."""

    HEALTHY = 0
    MARGIN_CALL = 1
    LIQUIDATION = 2
    BANKRUPT = 3


def _finite(value: ArrayLike, field: str) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(field, value, "must be numeric") from exc
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr.reshape(-1)))
        raise InvalidInput(
            f"{field}[{int(bad[0])}]",
            float(arr.reshape(-1)[bad[0]]),
            "must be finite (a NaN margin must never reach a liquidation decision)",
        )
    return arr


def classify(
    equity: ArrayLike, initial_margin: ArrayLike, maintenance_margin: ArrayLike
) -> IntArray:
    """Classify accounts by health.

    Parameters
    ----------
    equity : array_like of shape (n,)
        Account equity (margin-currency units).
    initial_margin : array_like of shape (n,)
        Initial margin requirement.
    maintenance_margin : array_like of shape (n,)
        Maintenance margin requirement.

    Returns
    -------
    ndarray of int64 of shape (n,)
        :class:`HealthState` codes: 3 if ``equity < 0``, else 2 if ``equity < maintenance``,
        else 1 if ``equity < initial``, else 0. Inputs broadcast.

    Raises
    ------
    InvalidInput
        If an input is not finite; the message names the first offending element.

    Examples
    --------
    >>> classify([100.0, 50.0, 10.0, -1.0], [60.0, 60.0, 60.0, 60.0], [30.0, 30.0, 30.0, 30.0])
    array([0, 1, 2, 3])
    """
    eq = _finite(equity, "equity")
    im = _finite(initial_margin, "initial_margin")
    mm = _finite(maintenance_margin, "maintenance_margin")
    eq, im, mm = np.broadcast_arrays(eq, im, mm)
    codes = np.select(
        [eq < 0, eq < mm, eq < im],
        [HealthState.BANKRUPT.value, HealthState.LIQUIDATION.value, HealthState.MARGIN_CALL.value],
        default=HealthState.HEALTHY.value,
    )
    return np.asarray(codes, dtype=np.int64)


def classify_one(equity: float, initial_margin: float, maintenance_margin: float) -> HealthState:
    """Classify one account (scalar wrapper of :func:`classify`).

    Parameters
    ----------
    equity : float
        Account equity.
    initial_margin : float
        Initial margin requirement.
    maintenance_margin : float
        Maintenance margin requirement.

    Returns
    -------
    HealthState
        The account's state.

    Raises
    ------
    InvalidInput
        If an input is not finite.
    """
    return HealthState(int(classify(equity, initial_margin, maintenance_margin)))
