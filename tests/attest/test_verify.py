"""Tampering with the leaf, the root, an input digest or the signature is caught."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pmargin.attest.epoch import (
    attestation_body,
    proof_document,
    recompute_leaves,
    sign_attestation,
    tree_of,
)
from pmargin.attest.inputs import engine_info, market_digest
from pmargin.attest.signing import load_or_create_key, public_key_hex, sign_body
from pmargin.attest.verify import Report, check_attestation, check_proof, check_recompute
from pmargin.errors import InvalidInput
from tests.attest._book import inputs_doc


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict, dict, dict]:
    key = load_or_create_key(tmp_path_factory.mktemp("k") / "k.pem")
    inputs = inputs_doc()
    books, leaves = recompute_leaves(inputs)
    tree = tree_of(leaves)
    body = attestation_body(epoch=1, seq=9, log_hash="00" * 32,
                            market_digest=market_digest(inputs["market"]),
                            valuation_time="2026-05-20T08:00:00+00:00", books=books, tree=tree,
                            engine=engine_info(), created_at="2026-05-20T08:00:01+00:00",
                            public_hex=public_key_hex(key))
    doc = sign_attestation(key, body)
    return key, doc, proof_document(doc, leaves, tree, "carol"), inputs


def _run(doc: dict, proof: dict | None = None, inputs: dict | None = None,
         pub: Any = None) -> Report:
    r = Report()
    check_attestation(doc, pub, r)
    if proof is not None:
        check_proof(doc, proof, r)
    if inputs is not None:
        check_recompute(doc, inputs, r)
    return r


def _failed(r: Report) -> set[str]:
    return {c.name for c in r.checks if not c.passed}


def test_untouched_is_valid(signed) -> None:
    key, doc, proof, inputs = signed
    r = _run(doc, proof, inputs, key.public_key())
    assert r.valid, r.to_dict()


def test_tampered_leaf_caught(signed) -> None:
    _, doc, proof, _ = signed
    p = copy.deepcopy(proof)
    p["leaf"]["initial_margin"] -= 1  # one unit of 1e-8 less margin
    assert _failed(_run(doc, p)) == {"inclusion"}


def test_tampered_root_caught(signed) -> None:
    key, doc, proof, _inputs = signed
    d = copy.deepcopy(doc)
    d["attestation"]["merkle_root"] = "11" * 32
    assert "signature" in _failed(_run(d, pub=key.public_key()))
    # re-signed by someone else's key: the venue's key refuses it; inclusion fails too
    other = load_or_create_key(
        __import__("pathlib").Path(__import__("tempfile").mkdtemp()) / "o.pem")
    d["signature"] = sign_body(other, d["attestation"])
    d["public_key"] = public_key_hex(other)
    assert {"public key", "signature", "inclusion"} <= _failed(
        _run(d, proof, pub=key.public_key()))


def test_tampered_input_digest_caught(signed) -> None:
    _, doc, _, inputs = signed
    d = copy.deepcopy(doc)
    d["attestation"]["market_digest"] = "22" * 32
    assert "signature" in _failed(_run(d))
    # inputs that are not the attested ones: the digest check fails, no recompute is trusted
    i2 = copy.deepcopy(inputs)
    i2["market"]["market"]["index"]["BTC"] = 80001.0
    f = _failed(_run(doc, inputs=i2))
    assert {"market digest", "recompute"} <= f


def test_changed_book_state_fails_the_recompute(signed) -> None:
    _, doc, _, inputs = signed
    i2 = copy.deepcopy(inputs)
    i2["books"][0]["accounts"][1]["balances"]["BTC"] = "0.03"  # alice richer
    assert _failed(_run(doc, inputs=i2)) == {"recompute"}


def test_tampered_signature_caught(signed) -> None:
    key, doc, _, _ = signed
    d = copy.deepcopy(doc)
    s = d["signature"]
    d["signature"] = s[:10] + ("0" if s[10] != "0" else "1") + s[11:]
    assert _failed(_run(d, pub=key.public_key())) == {"signature"}


def test_malformed_document_is_bad_input(signed) -> None:
    _, doc, proof, _ = signed
    d = copy.deepcopy(doc)
    del d["signature"]
    with pytest.raises(InvalidInput) as e:
        _run(d)
    assert e.value.field == "signature"
    p = copy.deepcopy(proof)
    del p["path"]
    with pytest.raises(InvalidInput) as e:
        _run(doc, p)
    assert e.value.field == "proof.path"
