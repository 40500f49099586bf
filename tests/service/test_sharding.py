"""Two service instances on one database, each serving its own book of the venue."""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from pmargin.service.app import Service
from pmargin.service.config import load_venue
from pmargin.service.database import connect, migrate
from pmargin.service.server import create_key
from pmargin.service.sharding import Shard
from pmargin.service.store import Store
from tests.service.conftest import OPTION, Server, _db_url, _drop, _free_port, market_json
from tests.service.test_locking import two_book_venue


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_instances_share_one_database(backend: str, tmp_path: Path) -> None:
    db_url, pg_name = _db_url(backend, tmp_path)
    venue = two_book_venue(tmp_path)
    pa, pb = _free_port(), _free_port()
    ua, ub = f"http://127.0.0.1:{pa}", f"http://127.0.0.1:{pb}"
    migrate(connect(db_url))
    keys = {r: create_key(r, None, db_url) for r in ("admin", "operator", "risk")}
    a = Server(ua, db_url, pa, keys=keys,
               args=["--venue", str(venue), "--books", "A", "--peer", f"B={ub}"])
    b = Server(ub, db_url, pb, keys=dict(keys),
               args=["--venue", str(venue), "--books", "B", "--peer", f"A={ua}"])
    try:
        a.start()
        b.start()
        # a third instance for book A is refused at start
        third = subprocess.run(
            [sys.executable, "-m", "pmargin.cli", "serve", "--port", str(_free_port()),
             "--venue", str(venue), "--books", "A"],
            env={**__import__("os").environ, "PMARGIN_DATABASE_URL": db_url},
            capture_output=True, timeout=120)
        assert third.returncode == 2, third.stderr
        assert b"already serves this book" in third.stderr
        for srv in (a, b):  # each instance takes its own market
            assert srv.post("operator", "/v1/market", market_json()).status_code == 200
        accts = {"A": [], "B": []}
        for srv, book in ((a, "A"), (b, "B")):
            for i in range(3):
                acct = f"{book}{i}-{uuid.uuid4().hex[:6]}"
                r = srv.post("operator", "/v1/accounts", {"id": acct, "book": book})
                assert r.status_code == 200, r.text
                accts[book].append(acct)
        # the wrong instance refuses with 421 and says where to go; nothing is written
        r = a.post("operator", "/v1/accounts", {"id": "x-in-b", "book": "B"})
        assert r.status_code == 421, r.text
        assert r.json()["location"] == ub
        assert r.json()["value"] == "B"
        r = a.post("operator", "/v1/transfers", {"account": accts["B"][0], "currency": "BTC",
                                                 "amount": "1", "direction": "deposit"})
        assert r.status_code == 421, r.text
        assert r.json()["location"] == ub
        with a.client("risk") as c:
            r = c.get(f"/v1/accounts/{accts['B'][0]}")
            assert r.status_code == 421
            assert "not served by this instance" in r.json()["reason"]
            # an account created on B after A started is found in the database
            r2 = b.post("operator", "/v1/accounts", {"id": "late-b", "book": "B"})
            assert r2.status_code == 200
            assert c.get("/v1/accounts/late-b").status_code == 421

        def burst(job: tuple[Server, str, int]) -> int:
            srv, acct, i = job
            if i % 3 == 0:
                body = {"account": acct, "currency": "BTC", "amount": "0.5",
                        "direction": "deposit"}
                return srv.post("operator", "/v1/transfers", body).status_code
            if i % 3 == 1:
                return srv.post("operator", "/v1/fills", {
                    "account": acct, "instrument": OPTION, "quantity": "-0.1",
                    "price": "0.05", "price_currency": "BTC"}).status_code
            return srv.post("operator", "/v1/transfers", {
                "account": acct, "currency": "BTC", "amount": "0.01",
                "direction": "withdrawal"}).status_code

        jobs = [(srv, acct, i) for i in range(6) for srv, book in ((a, "A"), (b, "B"))
                for acct in accts[book]]
        with ThreadPoolExecutor(8) as ex:
            codes = list(ex.map(burst, jobs))
        assert set(codes) <= {200, 422}
        assert codes.count(200) > len(codes) // 2
        # the ledger of the shared database conserves every currency
        engine = connect(db_url)
        store = Store(engine)
        assert all(v == 0 for v in store.ledger_sums().values())
        cfg = load_venue(venue)
        ids = frozenset(["A", "B"])
        for srv, own in ((a, "A"), (b, "B")):
            with srv.client("risk") as c:
                live = c.get("/v1/state").json()
                assert all(v == 0 for v in live["conservation"].values())
                one = c.get(f"/v1/accounts/{accts[own][0]}").json()
            # a clean replay of that instance's books equals its live state
            replay = Service(cfg, Store(engine), Shard(frozenset([own]), ids))
            assert replay.state.state_hash() == live["state_hash"]
            again = replay.account_view(accts[own][0], distance=False)
            assert again["balances"] == one["balances"]
            assert again["equity"] == pytest.approx(one["equity"], rel=1e-12)
            assert again["initial_margin"] == pytest.approx(one["initial_margin"], rel=1e-12)
        # the sequence is the database's: the two instances' events interleave
        with engine.connect() as conn:
            books = [r[0] for r in conn.execute(sa.text("select book from events order by seq"))]
        assert set(books) == {"A", "B"}
    finally:
        a.stop()
        b.stop()
        _drop(pg_name)
