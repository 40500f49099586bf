"""Checks a third party runs on a published attestation (``pmargin verify``).

Each check gives a :class:`Check` (name, passed, detail); a report is valid when every check
passed. Malformed documents raise :class:`~pmargin.errors.InvalidInput` (bad input, not an
invalid attestation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pmargin.attest.epoch import ATTESTATION_FORMAT, recompute_leaves, tree_of
from pmargin.attest.inputs import engine_info, market_digest
from pmargin.attest.leaves import Leaf
from pmargin.attest.merkle import verify_inclusion
from pmargin.attest.signing import key_id, public_key_hex, read_public_key, verify_body
from pmargin.errors import InvalidInput

__all__ = ["Check", "Report", "check_attestation", "check_proof", "check_recompute"]


@dataclass(frozen=True)
class Check:
    """One check's outcome."""

    name: str
    passed: bool
    detail: str


@dataclass
class Report:
    """All checks run on one attestation."""

    checks: list[Check] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Every check passed (and there was at least one)."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def add(self, name: str, passed: bool, detail: str) -> None:
        """Record a check."""
        self.checks.append(Check(name, bool(passed), detail))

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"valid": self.valid, "checks": [
            {"check": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks]}


def _body(doc: Mapping[str, Any]) -> dict[str, Any]:
    for k in ("attestation", "signature", "public_key"):
        if k not in doc:
            raise InvalidInput(k, None, "is missing from the attestation document")
    body = doc["attestation"]
    if not isinstance(body, dict):
        raise InvalidInput("attestation", type(body).__name__, "must be an object")
    if body.get("format") != ATTESTATION_FORMAT:
        raise InvalidInput("attestation.format", body.get("format"),
                           f"must be {ATTESTATION_FORMAT}")
    for k in ("epoch", "seq", "merkle_root", "market_digest", "books", "leaves"):
        if k not in body:
            raise InvalidInput(f"attestation.{k}", None, "is missing")
    return body


def check_attestation(doc: Mapping[str, Any], public_key: Ed25519PublicKey | None,
                      report: Report) -> None:
    """The signature over the body, under ``public_key`` (else the embedded key, said so)."""
    body = _body(doc)
    embedded = read_public_key(str(doc["public_key"]), "public_key")
    if public_key is None:
        pub, source = embedded, "the key embedded in the document (pass --public-key to " \
                                "check it is the venue's)"
    else:
        pub, source = public_key, "the given public key"
        same = public_key_hex(public_key) == public_key_hex(embedded)
        report.add("public key", same, "the document names the given key" if same else
                   f"the document carries key {key_id(public_key_hex(embedded))}, not the "
                   f"given {key_id(public_key_hex(public_key))}")
    ok = verify_body(pub, body, str(doc["signature"]))
    report.add("signature", ok, f"Ed25519 signature valid under {source}" if ok else
               f"Ed25519 signature does NOT match the body under {source}")
    kid = body.get("key_id")
    report.add("key id", kid == key_id(public_key_hex(pub)),
               f"key_id {kid} vs {key_id(public_key_hex(pub))}")


def check_proof(doc: Mapping[str, Any], proof: Mapping[str, Any], report: Report) -> None:
    """The leaf in ``proof`` is included under the attestation's root."""
    body = _body(doc)
    for k in ("leaf", "index", "count", "path"):
        if k not in proof:
            raise InvalidInput(f"proof.{k}", None, "is missing")
    leaf = Leaf.from_dict(dict(proof["leaf"]))
    if proof.get("epoch") != body["epoch"]:
        report.add("proof epoch", False, f"proof of epoch {proof.get('epoch')}, attestation "
                   f"of epoch {body['epoch']}")
    if proof.get("merkle_root") not in (None, body["merkle_root"]):
        report.add("proof root", False, "the proof names another root than the attestation")
    count = proof["count"]
    if count != body["leaves"].get("count"):
        report.add("proof count", False, f"proof for {count} leaves, attestation has "
                   f"{body['leaves'].get('count')}")
    try:
        path = [bytes.fromhex(h) for h in proof["path"]]
        root = bytes.fromhex(body["merkle_root"])
    except (ValueError, TypeError):
        raise InvalidInput("proof.path", proof["path"], "hashes must be hex strings") from None
    if not isinstance(proof["index"], int) or not isinstance(count, int):
        raise InvalidInput("proof.index", proof["index"], "index and count must be integers")
    try:
        ok = verify_inclusion(leaf.hash(), proof["index"], count, path, root)
    except InvalidInput:
        ok = False
    report.add("inclusion", ok, f"leaf of {leaf.account} (equity {leaf.equity}, IM "
               f"{leaf.initial_margin}, MM {leaf.maintenance_margin} x 1e-8 "
               f"{leaf.currency}, health {leaf.health}) "
               + ("is included under the root" if ok else "is NOT included under the root"))


def check_recompute(doc: Mapping[str, Any], inputs: Mapping[str, Any], report: Report) -> None:
    """Re-run the engine on ``inputs`` and compare the root bit for bit."""
    body = _body(doc)
    if "market" not in inputs or "books" not in inputs:
        raise InvalidInput("inputs", sorted(inputs), "needs market and books")
    md = market_digest(inputs["market"])
    report.add("market digest", md == body["market_digest"],
               f"inputs market {md[:16]}, attested {str(body['market_digest'])[:16]}")
    report.add("sequence", inputs.get("seq") == body["seq"],
               f"inputs at seq {inputs.get('seq')}, attested seq {body['seq']}")
    att_books = {b["id"]: b for b in body["books"]}
    for b in inputs["books"]:
        a = att_books.get(b.get("id"))
        ok = a is not None and a["params_digest"] == b.get("params_digest") \
            and a["model"] == b.get("model")
        report.add(f"parameters {b.get('id')}", ok,
                   f"inputs {b.get('model')} {str(b.get('params_digest'))[:16]}, attested "
                   + (f"{a['model']} {a['params_digest'][:16]}" if a else "no such book"))
    if not all(c.passed for c in report.checks):
        report.add("recompute", False, "skipped: the inputs are not the attested ones")
        return
    try:
        _, leaves = recompute_leaves(inputs)
    except InvalidInput as exc:
        report.add("recompute", False, f"the engine refused the inputs: {exc}")
        return
    tree = tree_of(leaves)
    ok = tree.root.hex() == body["merkle_root"]
    mine = engine_info()
    att = body.get("engine", {})
    detail = f"recomputed root {tree.root.hex()[:16]} over {tree.count} leaves, attested " \
             f"{str(body['merkle_root'])[:16]} over {body['leaves'].get('count')}"
    if not ok and att != mine:
        detail += f" (attested by engine {att}, recomputed with {mine})"
    report.add("recompute", ok, detail)
