"""POST /v1/fills/batch: the same result as the fills posted one by one, in one transaction."""

from __future__ import annotations

import uuid

import pytest

from tests.service.conftest import OPTION, Server, open_account

pytestmark = pytest.mark.slow

PERP = "BTC-PERPETUAL"


def _fills(acct: str) -> list[dict]:
    return [
        {"account": acct, "instrument": OPTION, "quantity": "-1", "price": "0.05",
         "price_currency": "BTC", "fee": "0.0001"},
        {"account": acct, "instrument": PERP, "quantity": "0.5", "price": "80000",
         "price_currency": "USD"},
        {"account": acct, "instrument": OPTION, "quantity": "0.4", "price": "0.045",
         "price_currency": "BTC"},
        {"account": acct, "instrument": PERP, "quantity": "-0.2", "price": "80500.5",
         "price_currency": "USD", "new_order": False},
    ]


def _view(srv: Server, acct: str) -> dict:
    with srv.client("risk") as c:
        v = c.get(f"/v1/accounts/{acct}").json()
    return {k: v[k] for k in ("balances", "positions", "equity", "initial_margin",
                              "maintenance_margin", "health")}


def _state(srv: Server) -> dict:
    with srv.client("risk") as c:
        return c.get("/v1/state").json()


def test_batch_equals_one_by_one_and_is_idempotent(server: Server) -> None:
    a, b = open_account(server, "ba"), open_account(server, "bb")
    key = f"batch-{uuid.uuid4().hex}"
    body = {"fills": _fills(a)}
    r = server.post("operator", "/v1/fills/batch", body, key=key)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 4
    assert out["refused"] == 0
    assert [x["seq"] for x in out["results"]] == sorted(x["seq"] for x in out["results"])
    for f in _fills(b):
        assert server.post("operator", "/v1/fills", f).status_code == 200
    va, vb = _view(server, a), _view(server, b)
    assert va == vb
    # the stored rows too: positions alike, balances = ledger sums (bulk writes of the batch)
    import sqlalchemy as sa

    eng = sa.create_engine(server.db_url)
    try:
        with eng.connect() as c:
            pos = {acct: sorted(tuple(r) for r in c.execute(sa.text(
                "select instrument, quantity_units, entry_notional from positions "
                "where account = :a"), {"a": acct})) for acct in (a, b)}
            bal = {(r[0], r[1]): int(r[2]) for r in c.execute(sa.text(
                "select account, currency, units from balances"))}
            led = {(r[0], r[1]): int(r[2]) for r in c.execute(sa.text(
                "select account, currency, sum(units) from ledger_entries "
                "group by account, currency"))}
    finally:
        eng.dispose()
    assert pos[a] == pos[b]
    assert pos[a]
    assert {k: v for k, v in bal.items() if v} == {k: v for k, v in led.items() if v}
    assert bal[(f"acct:{a}", "BTC")] == bal[(f"acct:{b}", "BTC")]
    # retry: same answer, nothing changed; same key with another body: 409
    before = _state(server)
    again = server.post("operator", "/v1/fills/batch", body, key=key)
    assert again.status_code == 200
    assert again.json() == out
    assert _state(server) == before
    clash = server.post("operator", "/v1/fills/batch", {"fills": _fills(a)[:2]}, key=key)
    assert clash.status_code == 409
    assert _state(server) == before
    assert all(v == 0 for v in before["conservation"].values())


def test_bad_fill_refuses_the_whole_batch(server: Server) -> None:
    a = open_account(server, "bc")
    fills = _fills(a)
    fills[2] = {**fills[2], "instrument": "BTC-25SEP26-85001-C"}
    before = _state(server)
    r = server.post("operator", "/v1/fills/batch", {"fills": fills})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "fills[2].instrument"
    assert _state(server) == before
    r = server.post("operator", "/v1/fills/batch", {"fills": []})
    assert r.status_code == 422
    assert _state(server) == before


def test_margin_refusal_refuses_that_fill_only(server: Server) -> None:
    a = open_account(server, "bd", "0.1")
    fills = [
        {"account": a, "instrument": OPTION, "quantity": "-0.1", "price": "0.05",
         "price_currency": "BTC"},
        {"account": a, "instrument": OPTION, "quantity": "-500", "price": "0.05",
         "price_currency": "BTC"},
        {"account": a, "instrument": OPTION, "quantity": "0.05", "price": "0.05",
         "price_currency": "BTC"},
    ]
    r = server.post("operator", "/v1/fills/batch", {"fills": fills})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["accepted"] for x in res] == [True, False, True]
    assert res[1]["error"] == "insufficient_margin"
    pos = _view(server, a)["positions"]
    assert [(p["instrument"], p["quantity"]) for p in pos] == [(OPTION, "-0.05")]


def test_market_update_stores_a_margin_summary_per_epoch(server: Server) -> None:
    import json

    import sqlalchemy as sa

    from tests.service.conftest import market_json

    open_account(server, "be")
    r = server.post("operator", "/v1/market", market_json(index=81000.0, minutes=5))
    assert r.status_code == 200, r.text
    seq = r.json()["seq"]
    with server.client("risk") as c:
        book = c.get("/v1/book").json()["books"][0]
    eng = sa.create_engine(server.db_url)
    try:
        with eng.connect() as c:
            row = c.execute(sa.text("select book, seq, payload from margin_results "
                                    "where seq = :s"), {"s": seq}).one()
    finally:
        eng.dispose()
    assert row[0] == "BTC"
    assert json.loads(row[2]) == book  # nothing else was written since the market


def test_batch_roles(server: Server) -> None:
    a = open_account(server, "bf")
    body = {"fills": _fills(a)[:1]}
    for role in ("risk", "admin"):
        r = server.post(role, "/v1/fills/batch", body)
        assert r.status_code == 403, (role, r.text)
    with server.client("admin") as c:
        tk = c.post("/v1/keys", json={"role": "trader", "account": a}).json()["key"]
    server.keys["trader-bf"] = tk
    assert server.post("trader-bf", "/v1/fills/batch", body).status_code == 403
    import httpx

    assert httpx.post(f"{server.url}/v1/fills/batch", json=body).status_code == 401
