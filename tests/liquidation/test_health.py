"""Health classification."""

from __future__ import annotations

import numpy as np
import pytest

from pmargin.errors import InvalidInput
from pmargin.liquidation import HealthState, classify, classify_one


def test_classify_table() -> None:
    # IM 60, MM 30 for everyone
    equity = np.array([100.0, 60.0, 59.9, 30.0, 29.9, 0.0, -0.1])
    codes = classify(equity, 60.0, 30.0)
    assert codes.tolist() == [
        HealthState.HEALTHY,  # above IM
        HealthState.HEALTHY,  # exactly IM: not a margin call
        HealthState.MARGIN_CALL,
        HealthState.MARGIN_CALL,  # exactly MM: not liquidated
        HealthState.LIQUIDATION,
        HealthState.LIQUIDATION,  # zero equity, not negative
        HealthState.BANKRUPT,
    ]
    assert codes.dtype == np.int64


def test_bankrupt_dominates_and_empty_account_is_healthy() -> None:
    assert classify_one(-1.0, 0.0, 0.0) is HealthState.BANKRUPT
    assert classify_one(0.0, 0.0, 0.0) is HealthState.HEALTHY
    assert classify_one(5.0, 10.0, 4.0) is HealthState.MARGIN_CALL


def test_nan_is_rejected_with_the_element_named() -> None:
    with pytest.raises(InvalidInput) as info:
        classify([1.0, 2.0], [1.0, np.nan], [0.5, 0.5])
    assert info.value.field == "initial_margin[1]"
