"""Every route with every role: 401 without a key, 403 outside the role or the account.

The permission table below is the issue's specification, written independently of the app:
trader = its own account (reads, what-if, withdrawals); operator = accounts, fills, transfers,
market data; risk = reads everything; admin = keys. /v1/simulate (stateless) takes any key.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.service.conftest import OPTION, Server, market_json, open_account

pytestmark = pytest.mark.slow

ROLES = ("trader", "operator", "risk", "admin")

# (method, path template, body builder, roles allowed); {own}/{other} are account ids
ROUTES = [
    ("POST", "/v1/accounts", lambda own, other: {"id": f"n{uuid.uuid4().hex[:8]}",
                                                  "book": "BTC"}, {"operator"}),
    ("POST", "/v1/transfers", lambda own, other: {"account": own, "currency": "BTC",
                                                   "amount": "0.01", "direction": "deposit"},
     {"operator"}),
    ("POST", "/v1/fills", lambda own, other: {"account": own, "instrument": OPTION,
                                               "quantity": "0.1", "price": "0.06",
                                               "price_currency": "BTC"}, {"operator"}),
    ("POST", "/v1/fills/batch", lambda own, other: {"fills": [
        {"account": own, "instrument": OPTION, "quantity": "0.1", "price": "0.06",
         "price_currency": "BTC"}]}, {"operator"}),
    ("POST", "/v1/market", lambda own, other: market_json(minutes=1), {"operator"}),
    ("GET", "/v1/accounts/{own}", None, {"trader", "risk"}),
    ("GET", "/v1/accounts/{other}", None, {"risk"}),
    ("GET", "/v1/accounts/{own}/margin", None, {"trader", "risk"}),
    ("GET", "/v1/accounts/{other}/margin", None, {"risk"}),
    ("POST", "/v1/accounts/{own}/what-if", lambda own, other: {"fills": [
        {"instrument": OPTION, "quantity": "0.1", "price": "0.06", "price_currency": "BTC"}]},
     {"trader", "risk"}),
    ("POST", "/v1/accounts/{other}/what-if", lambda own, other: {"fills": [
        {"instrument": OPTION, "quantity": "0.1", "price": "0.06", "price_currency": "BTC"}]},
     {"risk"}),
    ("POST", "/v1/simulate", lambda own, other: {"portfolio": {
        "margin_currency": "BTC", "collateral": {"BTC": 1.0},
        "positions": [{"instrument": OPTION, "quantity": -1}]}, "models": ["deribit-pm"]},
     set(ROLES)),
    ("GET", "/v1/book", None, {"risk"}),
    ("GET", "/v1/book/accounts", None, {"risk"}),
    ("GET", "/v1/book/proximity", None, {"risk"}),
    ("GET", "/v1/accounts/{own}/events", None, {"trader", "risk"}),
    ("GET", "/v1/accounts/{other}/events", None, {"risk"}),
    ("GET", "/v1/instruments", None, set(ROLES)),
    ("GET", "/v1/models", None, set(ROLES)),
    ("GET", "/v1/me", None, set(ROLES)),
    ("GET", "/v1/events", None, {"risk"}),
    ("GET", "/v1/state", None, {"risk"}),
    ("POST", "/v1/keys", lambda own, other: {"role": "risk"}, {"admin"}),
    ("GET", "/v1/attestations/latest", None, set(ROLES)),
    ("GET", "/v1/attestations/public-key", None, set(ROLES)),
    ("GET", "/v1/attestations/{epoch}", None, set(ROLES)),
    ("GET", "/v1/attestations/{epoch}/inputs", None, {"risk"}),
    ("GET", "/v1/accounts/{own}/proof", None, {"trader", "risk"}),
    ("GET", "/v1/accounts/{other}/proof", None, {"risk"}),
    # allowed: 422 (the breaker is not tripped) is the answer of an allowed role here
    ("POST", "/v1/books/{book_id}/breaker/reset", None, {"risk"}),
]


def test_every_route_with_every_role(server: Server) -> None:
    own = open_account(server, "own")
    other = open_account(server, "other")
    with server.client("admin") as c:
        server.keys["trader"] = c.post("/v1/keys", json={"role": "trader",
                                                         "account": own}).json()["key"]
    # every route of the app is in the table (a new route needs its permissions stated)
    spec = httpx.get(f"{server.url}/openapi.json").json()
    listed = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    table = {(m, p.replace("{own}", "{account_id}").replace("{other}", "{account_id}"))
             for m, p, _, _ in ROUTES}
    assert listed - {("GET", "/healthz"), ("GET", "/readyz")} == table
    minute = 1
    for method, template, body, allowed in ROUTES:
        path = template.format(own=own, other=other, epoch=1, book_id="BTC")
        for role in (*ROLES, None):
            payload = body(own, other) if body else None
            if template == "/v1/market" and payload is not None:
                minute += 1
                payload = market_json(minutes=minute)
            headers = {"Idempotency-Key": uuid.uuid4().hex}
            if role is not None:
                headers["Authorization"] = f"Bearer {server.keys[role]}"
            r = httpx.request(method, f"{server.url}{path}", json=payload, headers=headers,
                              timeout=60)
            if role is None:
                assert r.status_code == 401, (method, path, r.text)
            elif role in allowed and "breaker" in path:
                assert r.status_code == 422, (method, path, role, r.text)
                assert r.json()["field"] == "book"
            elif role in allowed:
                assert r.status_code == 200, (method, path, role, r.text)
            else:
                assert r.status_code == 403, (method, path, role, r.text)
                # a refusal leaks nothing of the account
                assert own not in r.text
                assert other not in r.text
    # a trader may withdraw from its own account only
    for acct, want in ((own, 200), (other, 403)):
        r = httpx.post(f"{server.url}/v1/transfers", json={
            "account": acct, "currency": "BTC", "amount": "0.01", "direction": "withdrawal"},
            headers={"Authorization": f"Bearer {server.keys['trader']}",
                     "Idempotency-Key": uuid.uuid4().hex}, timeout=60)
        assert r.status_code == want, r.text
