"""The inputs document: the book the engine held, the market digest, the log chain."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from pmargin.attest.inputs import LOG_GENESIS, book_from_inputs, log_step, market_digest
from tests.attest._book import C30, inputs_doc


def test_book_rows_columns_and_floats() -> None:
    b = book_from_inputs(inputs_doc()["books"][0])
    assert b.account_ids == ["carol", "alice", "bob"]
    assert [i.name for i in b.instruments][:2] == [f"BTC-{C30}", f"BTC-{C30}-80000-P"]
    dense = b.positions.toarray()
    want = np.array([[0, -2, 0, 0.5], [0, 0, -1, 0], [0, 0, 0, 0]])
    assert np.array_equal(dense, want)
    ent = b.entry_notional
    assert math.isnan(ent[0, 1])
    assert ent[0, 3] == 40000.0
    assert b.collateral.tolist() == [[1.5], [0.02], [3.0]]
    assert b.positions.has_sorted_indices


def test_market_digest_is_sorted_json_sha256() -> None:
    m = {"format": "json", "market": {"b": 1, "a": [1.5]}}
    assert market_digest(m) == hashlib.sha256(
        b'{"format": "json", "market": {"a": [1.5], "b": 1}}').hexdigest()


def test_log_chain_by_hand() -> None:
    h1 = log_step(LOG_GENESIS, 1, "BTC", "account", {"id": "a", "book": "BTC"}, "t1")
    want = hashlib.sha256(b"pmargin-log/1\x00" + bytes(32)
                          + b'[1,"BTC","account",{"book":"BTC","id":"a"},"t1"]').hexdigest()
    assert h1 == want
    h2 = log_step(h1, 2, "BTC", "deposit", {"amount": "1"}, "t2")
    assert h2 == hashlib.sha256(b"pmargin-log/1\x00" + bytes.fromhex(h1) + json.dumps(
        [2, "BTC", "deposit", {"amount": "1"}, "t2"], separators=(",", ":")).encode()
    ).hexdigest()
