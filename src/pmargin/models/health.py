"""Health of accounts from equity and margin requirements: the one rule of the package.

Currently implemented
---------------------
* :class:`HealthState`: ``HEALTHY``, ``MARGIN_CALL`` (equity below initial margin),
  ``LIQUIDATION`` (below maintenance margin), ``BANKRUPT`` (negative equity).
* :func:`classify` vectorised over accounts, :func:`classify_one` for a single account.

The worst state applies: an account with negative equity is ``BANKRUPT`` whatever its margins.
Thresholds are strict: equity exactly at maintenance margin is not liquidated. A NaN or infinite
equity or margin is refused (:class:`~pmargin.errors.InvalidInput`), never classified: a margin
that could not be computed must never read as healthy. Margin results
(:mod:`pmargin.models.result`) and liquidation (:mod:`pmargin.liquidation.health` re-exports this
module) use this rule and no other.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike

from pmargin._typing import IntArray
from pmargin.validation import finite_array

__all__ = ["HEALTH_NAMES", "HealthState", "classify", "classify_one"]


class HealthState(IntEnum):
    """Health of an account, ordered from best to worst (the integer code of :func:`classify`)."""

    HEALTHY = 0
    MARGIN_CALL = 1
    LIQUIDATION = 2
    BANKRUPT = 3


HEALTH_NAMES = tuple(s.name.lower() for s in HealthState)
"""Names of the codes: ``healthy``, ``margin_call``, ``liquidation``, ``bankrupt``."""


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
    eq = finite_array(equity, "equity")
    im = finite_array(initial_margin, "initial_margin")
    mm = finite_array(maintenance_margin, "maintenance_margin")
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
