"""Automatic enforcement in a real server process: SIGKILL mid-liquidation, restart, resume.

The same script runs on two servers: one left alone (the reference), one killed (SIGKILL) once
a few liquidation steps are logged and restarted. After the restart the enforcer continues from
the last logged step: the killed server's log, once done, holds exactly the reference's
enforcement events (no step twice, none skipped, same postings).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.service.conftest import Server, _db_url, _drop, _free_port, market_json
from tests.service.venues import venue_file

pytestmark = pytest.mark.slow


@dataclass
class VenueServer(Server):
    """A `pmargin serve --venue FILE` process."""

    venue: Path | None = None
    demo: bool = False

    def __post_init__(self) -> None:
        self.start_timeout = 180.0
        self.cwd = self.venue.parent if self.venue is not None else None

    def command(self) -> list[str]:
        args = super().command()
        if self.venue is not None:
            args += ["--venue", str(self.venue)]
        if self.demo:
            args.append("--demo")
        return args


def start_server(tmp: Path, backend: str, venue: Path, demo: bool = False
                 ) -> tuple[VenueServer, str | None]:
    """A fresh database, keys, a running server with ``venue``."""
    from pmargin.service.database import connect, migrate
    from pmargin.service.server import create_key

    db_url, pg_name = _db_url(backend, tmp)
    port = _free_port()
    srv = VenueServer(f"http://127.0.0.1:{port}", db_url, port, venue=venue, demo=demo)
    migrate(connect(db_url))
    srv.keys = {r: create_key(r, None, db_url) for r in ("admin", "operator", "risk")}
    srv.start()
    return srv, pg_name


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def script(srv: Server) -> None:
    """Four short perpetual accounts, one long; BTC from 80,000 to 120,000."""
    def ok(path: str, body: Any) -> None:
        r = srv.post("operator", path, body, key=uuid.uuid5(
            uuid.NAMESPACE_URL, path + json.dumps(body, sort_keys=True)).hex)
        assert r.status_code == 200, r.text

    ok("/v1/market", market_json(80000.0, 0))
    for i, (dep, q) in enumerate([("0.15", "-1"), ("0.5", "-2"), ("0.12", "-1"),
                                  ("0.4", "-1")]):
        ok("/v1/accounts", {"id": f"s{i}", "book": "BTC"})
        ok("/v1/transfers", {"account": f"s{i}", "currency": "BTC", "amount": dep,
                             "direction": "deposit"})
        ok("/v1/fills", {"account": f"s{i}", "instrument": "BTC-PERPETUAL", "quantity": q,
                         "price": "80000", "price_currency": "USD", "new_order": False})
    ok("/v1/accounts", {"id": "w", "book": "BTC"})
    ok("/v1/transfers", {"account": "w", "currency": "BTC", "amount": "3",
                         "direction": "deposit"})
    ok("/v1/fills", {"account": "w", "instrument": "BTC-PERPETUAL", "quantity": "3",
                     "price": "80000", "price_currency": "USD", "new_order": False})
    ok("/v1/market", market_json(120000.0, 1))


def enforcement_events(srv: Server) -> list[dict[str, Any]]:
    eng = sa.create_engine(srv.db_url)
    try:
        with eng.connect() as c:
            rows = c.execute(sa.text(
                "select seq, kind, payload, idempotency_key from events where kind in "
                "('liquidation', 'health', 'breaker', 'fund') order by seq")).all()
    finally:
        eng.dispose()
    return [{"seq": int(r[0]), "kind": r[1], "key": r[3], **json.loads(r[2])} for r in rows]


def wait_done(srv: Server, timeout: float = 120) -> None:
    """Until no liquidation is in progress and nobody is left to liquidate."""
    deadline = time.monotonic() + timeout
    with srv.client("risk") as c:
        while time.monotonic() < deadline:
            b = c.get("/v1/book").json()["enforcement"]["BTC"]
            ends = [e for e in enforcement_events(srv) if e["kind"] == "liquidation"
                    and e["action"] == "end"]
            if b["liquidation_in_progress"] is None and len(ends) >= 4:
                return
            time.sleep(0.2)
    raise AssertionError("liquidations did not finish")


def _comparable(evs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    drop = {"seq", "cause_seq", "key"}
    return [(e["kind"], json.dumps({k: v for k, v in e.items() if k not in drop},
                                   sort_keys=True)) for e in evs]


def test_sigkill_mid_liquidation_resumes_exactly(tmp_path: Path, backend: str) -> None:
    venue = venue_file(tmp_path, step_delay_seconds=0.3, breaker_min_accounts=1000,
                       insurance_fund_seed="0.1")
    (tmp_path / "ref").mkdir()
    ref, ref_db = start_server(tmp_path / "ref", backend, venue)
    try:
        script(ref)
        wait_done(ref)
        want = enforcement_events(ref)
    finally:
        ref.stop()
        _drop(ref_db)
    (tmp_path / "kill").mkdir()
    srv, db = start_server(tmp_path / "kill", backend, venue)
    try:
        script(srv)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            liq = [e for e in enforcement_events(srv) if e["kind"] == "liquidation"]
            if len(liq) >= 4:
                break
            time.sleep(0.05)
        srv.kill()
        before = enforcement_events(srv)
        n_liq = sum(e["kind"] == "liquidation" for e in before)
        assert 4 <= n_liq < sum(e["kind"] == "liquidation" for e in want), \
            "the kill did not land mid-liquidation"
        srv.start()
        wait_done(srv)
        got = enforcement_events(srv)
    finally:
        srv.stop()
        _drop(db)
    assert got[:len(before)] == before  # what was logged stays as it was
    assert _comparable(got) == _comparable(want)
    steps: dict[str, list[int]] = {}
    for e in got:
        if e["kind"] == "liquidation":
            steps.setdefault(e["liquidation"], []).append(e["step"])
    assert len(steps) >= 4
    for lid, ks in steps.items():
        assert ks == list(range(len(ks))), lid  # each step once, none skipped
