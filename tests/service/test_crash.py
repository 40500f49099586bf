"""SIGKILL in a burst of writes, restart: every 2xx is there once, nothing half-applied."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa

from tests.service.conftest import OPTION, Server, open_account

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kill_after", [5, 40])
def test_sigkill_mid_burst(server: Server, kill_after: int) -> None:
    accts = [open_account(server, a, "3") for a in ("k1", "k2")]
    ok: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(w: int) -> None:
        i = 0
        with httpx.Client(base_url=server.url, timeout=5, headers={
                "Authorization": f"Bearer {server.keys['operator']}"}) as c:
            while not stop.is_set():
                key = f"{accts[0]}-b{w}-{i}"
                i += 1
                body = ({"account": accts[w % 2], "currency": "BTC", "amount": "0.001",
                         "direction": "deposit"} if i % 2 else
                        {"account": accts[w % 2], "instrument": OPTION, "quantity": "0.1",
                         "price": "0.06", "price_currency": "BTC"})
                path = "/v1/transfers" if i % 2 else "/v1/fills"
                try:
                    r = c.post(path, json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    with lock:
                        ok.append(key)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(ok) < kill_after and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    stop.set()
    for t in threads:
        t.join()
    assert ok, "the burst wrote nothing before the kill"
    server.start()
    eng = sa.create_engine(server.db_url)
    with eng.connect() as c:
        # stored keys are scoped by the API key that sent them: "<api key id>/<header>"
        keys = [r[0].split("/", 1)[1] for r in c.execute(sa.text(
            "select idempotency_key from events where idempotency_key is not null"))]
        sums = dict(c.execute(sa.text(
            "select currency, sum(units) from ledger_entries group by currency")).all())
        orphans = c.execute(sa.text(
            "select count(*) from ledger_entries l left join events e on e.seq = l.seq "
            "where e.seq is null")).scalar_one()
    eng.dispose()
    assert len(keys) == len(set(keys))
    assert set(ok) <= set(keys)  # every acknowledged write is there, once
    assert all(int(v) == 0 for v in sums.values())
    assert orphans == 0
    with server.client("risk") as c:
        live = c.get("/v1/state").json()
    # a clean replay of the log (another process) reaches the same state
    from pmargin.service.server import open_service

    replay = open_service(server.db_url)
    assert replay.state.state_hash() == live["state_hash"]
    acct = json.loads(json.dumps(replay.account_view(accts[0])))
    with server.client("risk") as c:
        served = c.get(f"/v1/accounts/{accts[0]}").json()
    assert served["equity"] == acct["equity"]
    assert served["initial_margin"] == acct["initial_margin"]
    assert Decimal(served["balances"]["BTC"]) == Decimal(acct["balances"]["BTC"])
