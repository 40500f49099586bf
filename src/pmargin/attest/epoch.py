"""One epoch's attestation: leaves from margins, the Merkle tree, the signed document.

The same functions serve the service (leaves from its engine's results) and a third party
(leaves from a recompute on exported inputs, :func:`recompute_leaves`), so both sides encode
and hash identically by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pmargin._typing import FloatArray
from pmargin.attest.inputs import INPUTS_FORMAT, book_from_inputs, market_from_stored
from pmargin.attest.leaves import LEAF_FORMAT, SCALE, LeafTable, encode_leaves
from pmargin.attest.merkle import MerkleTree, build_tree
from pmargin.attest.signing import key_id, public_key_hex, sign_body
from pmargin.errors import InvalidInput

__all__ = [
    "ATTESTATION_FORMAT",
    "BookMargins",
    "attestation_body",
    "leaves_of",
    "proof_document",
    "recompute_leaves",
    "sign_attestation",
]

ATTESTATION_FORMAT = "pmargin-attestation/1"


@dataclass
class BookMargins:
    """One book's figures at an epoch (engine row order)."""

    book: str
    margin_currency: str
    model: str
    params_digest: str
    accounts: Sequence[str]
    equity: FloatArray
    initial_margin: FloatArray
    maintenance_margin: FloatArray


def leaves_of(books: Sequence[BookMargins]) -> LeafTable:
    """Every account's leaf across ``books``, sorted by account id."""
    ids: list[str] = []
    ccy_parts = []
    for b in books:
        ids += list(b.accounts)
        ccy_parts.append(np.repeat(np.array([b.margin_currency], dtype="S10"),
                                   len(b.accounts)))
    ccys = np.concatenate(ccy_parts) if ccy_parts else np.zeros(0, dtype="S10")

    def cat(name: str) -> FloatArray:
        parts = [np.asarray(getattr(b, name), dtype=np.float64) for b in books]
        return np.concatenate(parts) if parts else np.zeros(0)

    return encode_leaves(ids, ccys, cat("equity"), cat("initial_margin"),
                         cat("maintenance_margin"))


def attestation_body(*, epoch: int, seq: int, log_hash: str, market_digest: str,
                     valuation_time: str, books: Sequence[BookMargins], tree: MerkleTree,
                     engine: Mapping[str, str], created_at: str, public_hex: str
                     ) -> dict[str, Any]:
    """The signed body (strings and integers only)."""
    return {
        "format": ATTESTATION_FORMAT,
        "epoch": int(epoch),
        "seq": int(seq),
        "log_hash": log_hash,
        "market_digest": market_digest,
        "valuation_time": valuation_time,
        "books": [{"id": b.book, "margin_currency": b.margin_currency, "model": b.model,
                   "params_digest": b.params_digest, "accounts": len(b.accounts)}
                  for b in books],
        "engine": dict(engine),
        "leaves": {"format": LEAF_FORMAT, "count": tree.count, "scale": SCALE,
                   "rounding": "half-even", "order": "account id (bytes)",
                   "hash": "sha256(0x00||leaf)", "node": "sha256(0x01||left||right)",
                   "odd": "promote"},
        "merkle_root": tree.root.hex(),
        "created_at": created_at,
        "key_id": key_id(public_hex),
    }


def sign_attestation(key: Ed25519PrivateKey, body: dict[str, Any]) -> dict[str, Any]:
    """The published document: ``{"attestation": body, "signature", "public_key"}``."""
    return {"attestation": body, "signature": sign_body(key, body),
            "public_key": public_key_hex(key)}


def proof_document(doc: Mapping[str, Any], leaves: LeafTable, tree: MerkleTree,
                   account: str) -> dict[str, Any]:
    """Inclusion proof of ``account`` in the attestation ``doc`` (its tree and leaves)."""
    try:
        i = leaves.position(account)
    except KeyError:
        raise InvalidInput("account", account, "has no leaf in this epoch") from None
    body = doc["attestation"]
    return {"format": "pmargin-proof/1", "epoch": body["epoch"],
            "merkle_root": body["merkle_root"], "leaf": leaves.leaf(account).to_dict(),
            "index": i, "count": tree.count, "path": [h.hex() for h in tree.proof(i)]}


def recompute_leaves(inputs: Mapping[str, Any]) -> tuple[list[BookMargins], LeafTable]:
    """Re-run the engine on an inputs document; the figures and leaves it gives.

    Each book's model is loaded from the shipped presets by name and must have the attested
    parameter digest (:class:`InvalidInput` otherwise); the market is rebuilt from its stored
    form; each book is margined by a fresh :class:`~pmargin.engine.BookEngine`, as the service
    did right after the market update.
    """
    from pmargin.engine import BookEngine
    from pmargin.models import load_model

    if inputs.get("format") != INPUTS_FORMAT:
        raise InvalidInput("inputs.format", inputs.get("format"), f"must be {INPUTS_FORMAT}")
    for k in ("market", "books"):
        if k not in inputs:
            raise InvalidInput(f"inputs.{k}", None, "is missing")
    market = market_from_stored(inputs["market"])
    out: list[BookMargins] = []
    if not isinstance(inputs["books"], list):
        raise InvalidInput("inputs.books", type(inputs["books"]).__name__, "must be a list")
    for i, b in enumerate(inputs["books"]):
        where = f"inputs.books[{i}]"
        for k in ("id", "model", "params_digest"):
            if not isinstance(b, Mapping) or not isinstance(b.get(k), str):
                raise InvalidInput(f"{where}.{k}", b.get(k) if isinstance(b, Mapping) else b,
                                   "is missing or not a string")
        model = load_model(str(b["model"]))
        if model.digest != b.get("params_digest"):
            raise InvalidInput(f"{where}.params_digest", b.get("params_digest"),
                               f"this pmargin's preset {b['model']} has digest {model.digest}")
        book = book_from_inputs(b, where)
        if book.n_accounts == 0:
            eq = im = mm = np.zeros(0)
        else:
            res = BookEngine(model, book, market).result
            eq, im, mm = res.equity, res.initial_margin, res.maintenance_margin
        out.append(BookMargins(str(b["id"]), book.margin_currency, str(b["model"]),
                               model.digest, list(book.account_ids), eq, im, mm))
    return out, leaves_of(out)


def tree_of(leaves: LeafTable, workers: int = 1) -> MerkleTree:
    """The Merkle tree over sorted leaves."""
    return build_tree(leaves.records, workers=workers)
