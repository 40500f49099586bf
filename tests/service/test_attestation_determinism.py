"""Determinism of the attested path on a real-size book.

The demo book (3,000 accounts on the latest Deribit chain, so the book kernel runs its
multi-threaded path) is changed row by row through the API (the engine's incremental overlay),
then re-margined by a market update and attested. A second process with only the exported
inputs and a single Numba thread recomputes the root: it must be the same bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pmargin.service.app import create_app
from pmargin.service.server import open_service, seed_demo

pytestmark = [pytest.mark.slow, pytest.mark.data]


def test_root_recomputed_in_another_process(tmp_path: Path) -> None:
    from tests.conftest import shared_path

    shared_path("data", "deribit")  # skips without the real chains
    svc = open_service(f"sqlite:///{tmp_path / 'det.db'}", attest_key=tmp_path / "k.pem")
    seed_demo(svc, accounts=3000)
    op = svc.store.create_key("operator", None)
    risk = svc.store.create_key("risk", None)
    h = {"Authorization": f"Bearer {op}"}
    with TestClient(create_app(svc)) as client:
        bs = svc.state.books["BTC"]
        # incremental rows: deposits into accounts spread through the book
        for i in range(0, 3000, 150):
            acct = bs.accounts[i]
            r = client.post("/v1/transfers", headers={**h, "Idempotency-Key": uuid.uuid4().hex},
                            json={"account": acct, "currency": "BTC", "amount": "0.0123",
                                  "direction": "deposit"})
            assert r.status_code == 200, r.text
        moved = svc.state.market.bumped({"BTC": -0.04}).to_dict()  # type: ignore[union-attr]
        r = client.post("/v1/market", headers={**h, "Idempotency-Key": "down-4pct"},
                        json=json.loads(json.dumps(moved, default=str)))
        assert r.status_code == 200, r.text
        hr = {"Authorization": f"Bearer {risk}"}
        doc = client.get("/v1/attestations/latest", headers=hr).json()
        epoch = doc["attestation"]["epoch"]
        assert doc["attestation"]["leaves"]["count"] == 3000
        inputs = client.get(f"/v1/attestations/{epoch}/inputs", headers=hr).json()
    (tmp_path / "att.json").write_text(json.dumps(doc))
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "pmargin.cli", "verify", "att.json",
                          "--recompute", "--inputs", "inputs.json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok   recompute" in out.stdout
