"""Attestations of a real server: every market update signed, proofs, verify in a second process.

The figures in a leaf are checked against the account endpoint; the log hash against the
event log read through ``GET /v1/events`` and hashed here by the documented formula; the root
against a recompute by ``pmargin verify`` in another process that has only the exported files.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import OPTION, Server, market_json, open_account

pytestmark = pytest.mark.slow


def _get(srv: Server, role: str, path: str) -> Any:
    with srv.client(role) as c:
        r = c.get(path)
    assert r.status_code == 200, (path, r.text)
    return r.json()


def _verify(tmp: Path, doc: Any, *args: str, proof: Any = None, inputs: Any = None,
            key: Any = None) -> subprocess.CompletedProcess[str]:
    (tmp / "att.json").write_text(json.dumps(doc))
    cmd = [sys.executable, "-m", "pmargin.cli", "verify", str(tmp / "att.json"), *args]
    if proof is not None:
        (tmp / "proof.json").write_text(json.dumps(proof))
        cmd += ["--proof", str(tmp / "proof.json")]
    if inputs is not None:
        d = tmp / "inputs"
        d.mkdir(exist_ok=True)
        (d / "inputs.json").write_text(json.dumps(inputs))
        cmd += ["--recompute", "--inputs", str(d)]
    if key is not None:
        (tmp / "key.json").write_text(json.dumps(key))
        cmd += ["--public-key", str(tmp / "key.json")]
    # a fresh process in another folder: it sees only the files written above
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=300)


def _log_hash(srv: Server, upto: int) -> str:
    h = bytes(32)
    after = 0
    while after < upto:
        page = _get(srv, "risk", f"/v1/events?after={after}&limit=1000")
        for e in page["events"]:
            if e["seq"] > upto:
                return h.hex()
            body = json.dumps([e["seq"], e["book"], e["kind"], e["payload"], e["created_at"]],
                              sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            h = hashlib.sha256(b"pmargin-log/1\x00" + h + body.encode()).digest()
        if not page["events"]:
            break
        after = page["next_after"]
    return h.hex()


def test_every_market_update_is_attested_and_verifies(server: Server, tmp_path: Path) -> None:
    own = open_account(server, "att", "0.3")
    other = open_account(server, "att2", "2")
    r = server.post("operator", "/v1/fills", {"account": own, "instrument": OPTION,
                                              "quantity": "-1", "price": "0.06",
                                              "price_currency": "BTC"})
    assert r.status_code == 200, r.text
    before = _get(server, "risk", "/v1/attestations/latest")["attestation"]["epoch"]
    r = server.post("operator", "/v1/market", market_json(index=76000.0, minutes=300))
    assert r.status_code == 200, r.text
    seq = r.json()["seq"]
    doc = _get(server, "risk", "/v1/attestations/latest")
    body = doc["attestation"]
    assert body["epoch"] == before + 1
    assert body["seq"] == seq
    assert _get(server, "risk", f"/v1/attestations/{body['epoch']}") == doc
    assert body["log_hash"] == _log_hash(server, seq)
    state = _get(server, "risk", "/v1/state")
    assert body["market_digest"] == _get(server, "risk", f"/v1/accounts/{own}")["market_digest"]
    assert state["seq"] == seq
    # the leaf holds the account's figures as the account endpoint reports them
    proof = _get(server, "risk", f"/v1/accounts/{own}/proof")
    acct = _get(server, "risk", f"/v1/accounts/{own}")
    leaf = proof["leaf"]
    assert leaf["equity"] == round(acct["equity"] * 1e8)
    assert leaf["initial_margin"] == round(acct["initial_margin"] * 1e8)
    assert leaf["maintenance_margin"] == round(acct["maintenance_margin"] * 1e8)
    assert leaf["health_name"] == acct["health"]
    key = _get(server, "operator", "/v1/attestations/public-key")
    assert key["public_key"] == doc["public_key"]
    inputs = _get(server, "risk", f"/v1/attestations/{body['epoch']}/inputs")
    assert {a["id"] for a in inputs["books"][0]["accounts"]} >= {own, other}

    ok = _verify(tmp_path, doc, proof=proof, inputs=inputs, key=key)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith("valid")
    assert "ok   recompute" in ok.stdout

    # tampered: a leaf, the root, an input digest, the signature -> exit 1 naming the check
    p2 = copy.deepcopy(proof)
    p2["leaf"]["maintenance_margin"] -= 1
    r1 = _verify(tmp_path, doc, proof=p2, key=key)
    assert r1.returncode == 1
    assert "FAIL inclusion" in r1.stdout
    for field, value, check in (("merkle_root", "00" * 32, "signature"),
                                ("market_digest", "11" * 32, "signature")):
        d2 = copy.deepcopy(doc)
        d2["attestation"][field] = value
        r2 = _verify(tmp_path, d2, key=key)
        assert r2.returncode == 1, r2.stdout
        assert f"FAIL {check}" in r2.stdout, r2.stdout
    d3 = copy.deepcopy(doc)
    d3["signature"] = ("0" if d3["signature"][0] != "0" else "1") + d3["signature"][1:]
    r3 = _verify(tmp_path, d3, key=key)
    assert r3.returncode == 1
    assert "INVALID: signature failed" in r3.stdout
    # inputs that are not the attested ones
    i2 = copy.deepcopy(inputs)
    i2["books"][0]["accounts"][0]["balances"]["BTC"] = "123"
    r4 = _verify(tmp_path, doc, inputs=i2, key=key)
    assert r4.returncode == 1
    assert "FAIL recompute" in r4.stdout
    # bad input: exit 2, one line naming the file
    (tmp_path / "bad.json").write_text("{not json")
    r5 = subprocess.run([sys.executable, "-m", "pmargin.cli", "verify",
                         str(tmp_path / "bad.json")], capture_output=True, text=True)
    assert r5.returncode == 2
    assert "ATTESTATION" in r5.stderr


def test_proofs_of_older_epochs_are_recomputed(server: Server, tmp_path: Path) -> None:
    own = open_account(server, "old", "1")
    r = server.post("operator", "/v1/market", market_json(minutes=400))
    assert r.status_code == 200
    first = _get(server, "risk", "/v1/attestations/latest")
    e0 = first["attestation"]["epoch"]
    # later writes and epochs: more than the 4 kept in memory
    server.post("operator", "/v1/fills", {"account": own, "instrument": OPTION,
                                          "quantity": "1", "price": "0.06",
                                          "price_currency": "BTC"})
    for k in range(5):
        assert server.post("operator", "/v1/market",
                           market_json(minutes=401 + k)).status_code == 200
    proof = _get(server, "risk", f"/v1/accounts/{own}/proof?epoch={e0}")
    assert proof["epoch"] == e0
    assert proof["merkle_root"] == first["attestation"]["merkle_root"]
    inputs = _get(server, "risk", f"/v1/attestations/{e0}/inputs")  # replayed to its seq
    mine = next(a for a in inputs["books"][0]["accounts"] if a["id"] == own)
    assert mine["positions"] == []  # the fill came after that epoch
    ok = _verify(tmp_path, first, proof=proof, inputs=inputs)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # unknown epoch and account: 404; epoch 0: 422
    with server.client("risk") as c:
        assert c.get("/v1/attestations/999999").status_code == 404
        assert c.get("/v1/attestations/0").status_code == 422
        assert c.get("/v1/accounts/nobody/proof").status_code == 404


def test_restart_continues_the_epochs_and_the_log_chain(server: Server) -> None:
    last = _get(server, "risk", "/v1/attestations/latest")["attestation"]
    server.stop()
    server.start()
    assert _get(server, "risk", "/v1/attestations/latest")["attestation"] == last
    r = server.post("operator", "/v1/market", market_json(minutes=600))
    assert r.status_code == 200
    now = _get(server, "risk", "/v1/attestations/latest")["attestation"]
    assert now["epoch"] == last["epoch"] + 1
    assert now["log_hash"] == _log_hash(server, now["seq"])
    assert httpx.get(f"{server.url}/readyz").status_code == 200
