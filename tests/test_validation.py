import math

import numpy as np
import pytest

from pmargin.errors import InvalidInput, MarketDataError
from pmargin.validation import (
    check_keys,
    finite_array,
    finite_number,
    nearest,
    non_negative_number,
    positive_number,
    unit_interval,
)


def test_unknown_key_names_key_and_nearest():
    with pytest.raises(InvalidInput) as exc:
        check_keys({"instrument": "x", "qty": 1}, ["instrument", "quantity", "avg_price"],
                   "positions[0]")
    assert exc.value.field == "positions[0].qty"
    assert "quantity" in str(exc.value)


def test_nearest_none_when_far():
    assert nearest("zzzz", ["quantity"]) is None
    assert nearest("avg_px", ["avg_price", "quantity"]) == "avg_price"


def test_known_keys_pass_and_error_class_kept():
    check_keys({"a": 1}, ["a", "b"], "")
    with pytest.raises(MarketDataError):
        check_keys({"c": 1}, ["a"], "", error=MarketDataError)


@pytest.mark.parametrize("bad", [True, "1", None, math.nan, math.inf, [1]])
def test_finite_number_refuses(bad):
    with pytest.raises(InvalidInput):
        finite_number(bad, "f")


def test_ranges():
    assert positive_number(2, "f") == 2.0
    with pytest.raises(InvalidInput):
        positive_number(0, "f")
    assert non_negative_number(0, "f") == 0.0
    with pytest.raises(InvalidInput):
        non_negative_number(-1e-9, "f")
    with pytest.raises(InvalidInput):
        unit_interval(1.5, "f")


def test_finite_array_names_index():
    with pytest.raises(InvalidInput) as exc:
        finite_array([1.0, np.nan], "equity")
    assert exc.value.field == "equity[1]"
    assert finite_array([1, 2], "x").dtype == np.float64
