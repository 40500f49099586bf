"""Leaves: fixed point by the documented rule, the byte layout, order, refusals.

Expected bytes come from ``struct`` (an encoder written independently of the NumPy records);
expected integers from hand arithmetic on the IEEE product and from Python's scalar ``round``.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from pmargin.attest.leaves import (
    LEAF_SIZE,
    MAX_ABS,
    Leaf,
    encode_leaves,
    leaf_hashes,
    to_fixed,
)
from pmargin.errors import InvalidInput


def _struct_leaf(acct: str, ccy: str, eq: int, im: int, mm: int, h: int) -> bytes:
    return struct.pack(">B64s10sqqqB", 1, acct.encode(), ccy.encode(), eq, im, mm, h)


def test_fixed_point_hand_cases() -> None:
    # products exact in binary64: ties go to even
    assert 2.5e-8 * 1e8 == 2.5
    assert 0.5e-8 * 1e8 == 0.5
    x = np.array([1.0, -0.5, 2.5e-8, 0.5e-8, -2.5e-8, 1.5e-8, 1.23456789, 0.0])
    # 1.5e-8 * 1e8 is 1.4999999999999998 in binary64, so it rounds to 1 (not 2)
    assert to_fixed(x, "equity").tolist() == [100_000_000, -50_000_000, 2, 0, -2, 1,
                                              123_456_789, 0]


def test_fixed_point_equals_python_round_on_the_float_product() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 10, 2000), rng.normal(0, 1e-7, 2000),
                        rng.uniform(-1e4, 1e4, 2000)])
    want = [round(float(v) * 1e8) for v in x]  # Python rounds half to even too
    assert to_fixed(x, "equity").tolist() == want


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), MAX_ABS * 1.01])
def test_fixed_point_refuses(bad: float) -> None:
    with pytest.raises(InvalidInput) as e:
        to_fixed(np.array([1.0, bad]), "initial_margin")
    assert e.value.field == "initial_margin"
    assert "row 1" in e.value.reason


def test_layout_matches_struct_and_sorts_by_id() -> None:
    t = encode_leaves(["bob", "alice", "a"], ["BTC", "BTC", "ETH"],
                      np.array([1.0, 2.0, -0.25]), np.array([0.5, 3.0, 0.0]),
                      np.array([0.4, 1.0, 0.0]))
    assert LEAF_SIZE == 100
    # order: "a" < "alice" < "bob"; health: bob healthy (1 >= .5), alice margin call
    # (2 < 3, 2 >= 1), a bankrupt (equity < 0)
    want = (_struct_leaf("a", "ETH", -25_000_000, 0, 0, 3)
            + _struct_leaf("alice", "BTC", 200_000_000, 300_000_000, 100_000_000, 1)
            + _struct_leaf("bob", "BTC", 100_000_000, 50_000_000, 40_000_000, 0))
    assert t.records.tobytes() == want
    assert t.accounts() == ["a", "alice", "bob"]
    assert [t.position(a) for a in ("a", "alice", "bob")] == [0, 1, 2]
    with pytest.raises(KeyError):
        t.position("al")
    assert t.leaf("alice") == Leaf("alice", "BTC", 200_000_000, 300_000_000, 100_000_000, 1)
    assert Leaf("bob", "BTC", 100_000_000, 50_000_000, 40_000_000, 0).to_bytes() == \
        want[200:]
    hashes = leaf_hashes(t.records)
    assert hashes == b"".join(hashlib.sha256(b"\x00" + want[i:i + 100]).digest()
                              for i in range(0, 300, 100))
    assert t.leaf("a").hash() == hashes[:32]


def test_sort_is_python_string_order() -> None:
    rng = np.random.default_rng(5)
    alphabet = list("ab_.-Z09")
    ids = list({"".join(rng.choice(alphabet, rng.integers(1, 20))) for _ in range(500)})
    n = len(ids)
    t = encode_leaves(ids, ["BTC"] * n, np.ones(n), np.zeros(n), np.zeros(n))
    assert t.accounts() == sorted(ids)


def test_liquidation_health_code() -> None:
    t = encode_leaves(["x"], ["BTC"], np.array([0.5]), np.array([2.0]), np.array([1.0]))
    assert int(t.records["health"][0]) == 2  # 0 <= equity < MM


@pytest.mark.parametrize(("ids", "field"), [(["a", "a"], "account"), (["", "b"], "account"),
                                        (["x" * 65, "b"], "account"), (["é", "b"], "account")])
def test_bad_ids_refused(ids: list[str], field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        encode_leaves(ids, ["BTC"] * 2, np.ones(2), np.zeros(2), np.zeros(2))
    assert e.value.field == field


def test_nan_margin_refused_not_classified() -> None:
    with pytest.raises(InvalidInput):
        encode_leaves(["a"], ["BTC"], np.array([1.0]), np.array([np.nan]), np.array([0.0]))


def test_leaf_from_dict_names_the_field() -> None:
    d = Leaf("a", "BTC", 1, 2, 3, 0).to_dict()
    assert Leaf.from_dict(d) == Leaf("a", "BTC", 1, 2, 3, 0)
    bad = {**d, "equity": "1"}
    with pytest.raises(InvalidInput) as e:
        Leaf.from_dict(bad)
    assert e.value.field == "leaf.equity"
