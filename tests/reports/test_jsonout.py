"""JSON conversion rules of the CLI (pmargin.reports.jsonout)."""

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmargin.reports.jsonout import dumps, to_jsonable


class Phase(Enum):
    SOLVENT = "solvent"


@dataclass
class Fill:
    price: Decimal
    phase: Phase
    qty: float


def test_exact_decimals_are_decimal_strings_that_round_trip():
    out = to_jsonable({"x": Decimal("-0.000000012345678901234567890"), "z": Decimal("0")})
    assert out == {"x": "-1.2345678901234567890E-8", "z": "0"}
    assert Decimal(out["x"]) == Decimal("-0.000000012345678901234567890")


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, np.float64("inf"),
                                 np.float32("nan"), Decimal("Infinity"), Decimal("NaN")])
def test_non_finite_values_become_null(bad):
    assert to_jsonable({"v": bad}) == {"v": None}
    assert json.loads(dumps({"v": bad})) == {"v": None}


def test_numpy_dataclass_enum():
    out = to_jsonable([np.int64(3), np.bool_(True), np.array([1.5, np.nan]),
                       Fill(Decimal("1.5"), Phase.SOLVENT, 2.0)])
    assert out == [3, True, [1.5, None], {"price": "1.5", "phase": "solvent", "qty": 2.0}]
    assert type(out[0]) is int
    assert type(out[1]) is bool


def test_unknown_types_are_refused_not_stringified():
    with pytest.raises(TypeError):
        to_jsonable({"x": object()})


json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                        st.decimals(allow_nan=True), st.text(max_size=5))
nested = st.recursive(json_leaves, lambda c: st.lists(c, max_size=4)
                      | st.dictionaries(st.text(max_size=4), c, max_size=4), max_leaves=20)


@given(nested)
def test_dumps_always_gives_strict_json(obj):
    text = dumps(obj)
    # strict parse: a NaN or Infinity token would be rejected
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_zeros_print_as_zero():
    # a quantized Decimal zero (0E-18, as a ledger conservation error) and negative zeros
    assert to_jsonable(Decimal("0E-18")) == "0"
    assert to_jsonable(Decimal("-0.000")) == "0"
    assert to_jsonable(Decimal("-1E-18")) == "-1E-18"  # a non-zero keeps every digit
    out = to_jsonable({"a": -0.0, "b": np.float64(-0.0), "c": [-0.0]})
    assert json.dumps(out) == '{"a": 0.0, "b": 0.0, "c": [0.0]}'
