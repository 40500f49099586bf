"""An epoch recomputed from inputs: the figures against single-account margins, the document."""

from __future__ import annotations

import copy

import pytest

from pmargin.attest.epoch import (
    attestation_body,
    proof_document,
    recompute_leaves,
    sign_attestation,
    tree_of,
)
from pmargin.attest.inputs import engine_info
from pmargin.attest.leaves import SCALE
from pmargin.attest.signing import load_or_create_key, public_key_hex
from pmargin.errors import InvalidInput
from tests.attest._book import C30, inputs_doc


def test_recomputed_figures_match_single_account_margins() -> None:
    """Each leaf equals the model's one-portfolio margin (NumPy path) to one unit of 1e-8."""
    from pmargin.attest.inputs import market_from_stored
    from pmargin.models import load_model
    from pmargin.portfolio import portfolio_from_dict

    doc = inputs_doc()
    books, leaves = recompute_leaves(doc)
    assert leaves.accounts() == ["alice", "bob", "carol"]
    mkt = market_from_stored(doc["market"])
    model = load_model("deribit-pm")
    portfolios = {
        "carol": [{"instrument": f"BTC-{C30}-80000-P", "quantity": -2.0},
                  {"instrument": "BTC-PERPETUAL", "quantity": 0.5, "avg_price": 80000.0}],
        "alice": [{"instrument": f"BTC-{C30}-90000-C", "quantity": -1.0}],
        "bob": []}
    coll = {"carol": 1.5, "alice": 0.02, "bob": 3.0}
    for acct, pos in portfolios.items():
        r = model.margin(portfolio_from_dict({"margin_currency": "BTC",
                                              "collateral": {"BTC": coll[acct]},
                                              "positions": pos}), mkt)
        leaf = leaves.leaf(acct)
        assert abs(leaf.equity - r.equity * SCALE) <= 1, acct
        assert abs(leaf.initial_margin - r.initial_margin * SCALE) <= 1, acct
        assert abs(leaf.maintenance_margin - r.maintenance_margin * SCALE) <= 1, acct
    assert leaves.leaf("bob").equity == 300_000_000
    assert leaves.leaf("bob").initial_margin == 0
    assert books[0].accounts == ["carol", "alice", "bob"]  # engine row order kept


def test_recompute_is_deterministic_and_order_sensitive_only_in_layout() -> None:
    _, a = recompute_leaves(inputs_doc())
    _, b = recompute_leaves(inputs_doc())
    assert a.records.tobytes() == b.records.tobytes()


def test_missing_book_field_is_bad_input() -> None:
    doc = inputs_doc()
    del doc["books"][0]["model"]
    with pytest.raises(InvalidInput) as e:
        recompute_leaves(doc)
    assert e.value.field == "inputs.books[0].model"


def test_wrong_params_digest_refused() -> None:
    doc = inputs_doc()
    doc["books"][0]["params_digest"] = "0" * 64
    with pytest.raises(InvalidInput) as e:
        recompute_leaves(doc)
    assert e.value.field == "inputs.books[0].params_digest"


@pytest.mark.parametrize(("path", "value", "field"), [
    (("books", 0, "accounts", 0, "positions", 0, 1), "x", "quantity"),
    (("books", 0, "accounts", 0, "positions", 0, 0), "BTC-NOPE", "positions[0]"),
    (("books", 0, "accounts", 1, "balances"), {"ETH": "1"}, "balances"),
])
def test_malformed_inputs_name_the_field(path: tuple, value: object, field: str) -> None:
    doc = copy.deepcopy(inputs_doc())
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(InvalidInput) as e:
        recompute_leaves(doc)
    assert field in e.value.field


def test_document_and_proof(tmp_path) -> None:
    key = load_or_create_key(tmp_path / "k.pem")
    books, leaves = recompute_leaves(inputs_doc())
    tree = tree_of(leaves)
    body = attestation_body(epoch=1, seq=9, log_hash="00" * 32, market_digest="ab" * 32,
                            valuation_time="2026-05-20T08:00:00+00:00", books=books, tree=tree,
                            engine=engine_info(), created_at="2026-05-20T08:00:01+00:00",
                            public_hex=public_key_hex(key))
    doc = sign_attestation(key, body)
    assert doc["attestation"]["leaves"]["count"] == 3
    assert doc["attestation"]["books"][0]["accounts"] == 3
    p = proof_document(doc, leaves, tree, "alice")
    assert p["index"] == 0
    assert p["count"] == 3
    assert len(p["path"]) == 2
    with pytest.raises(InvalidInput):
        proof_document(doc, leaves, tree, "nobody")
