"""The service over HTTP: idempotency, bad input, checks at the door, roles, conservation."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

from tests.service.conftest import OPTION, Server, market_json, open_account

pytestmark = pytest.mark.slow


def state(srv: Server) -> dict:
    with srv.client("risk") as c:
        return c.get("/v1/state").json()


def test_idempotent_retry_and_conflict(server: Server) -> None:
    a1 = open_account(server, "a1")
    body = {"account": a1, "currency": "BTC", "amount": "0.25", "direction": "deposit"}
    first = server.post("operator", "/v1/transfers", body, key=f"dep-{a1}")
    before = state(server)
    again = server.post("operator", "/v1/transfers", body, key=f"dep-{a1}")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert state(server) == before  # nothing changed
    clash = server.post("operator", "/v1/transfers", {**body, "amount": "0.5"}, key=f"dep-{a1}")
    assert clash.status_code == 409
    assert clash.json()["field"] == "Idempotency-Key"
    with server.client("risk") as c:
        acct = c.get(f"/v1/accounts/{a1}").json()
    assert Decimal(acct["balances"]["BTC"]) == Decimal("1.25")


@pytest.mark.parametrize(("body", "field"), [
    ({"account": "ACCT", "currency": "BTC", "amount": "-1", "direction": "deposit"}, "amount"),
    ({"account": "ACCT", "currency": "BTC", "amount": "NaN", "direction": "deposit"}, "amount"),
    ({"account": "ACCT", "currency": "BTC", "amount": "1e400", "direction": "deposit"}, "amount"),
    ({"account": "ACCT", "currency": "BTC", "amount": "0.000000001", "direction": "deposit"},
     "amount"),
    ({"account": "ACCT", "currency": "DOGE", "amount": "1", "direction": "deposit"}, "currency"),
    ({"account": "ACCT", "currency": "BTC", "amount": "1", "direction": "sideways"}, "direction"),
    ({"account": "ACCT", "currency": "BTC", "amount": True, "direction": "deposit"}, "amount"),
    ({"account": "ACCT", "currency": "BTC", "amount": "1", "direction": "deposit", "x": 1}, "x"),
    ({"account": "ACCT", "currency": "BTC", "amount": "5", "direction": "withdrawal"}, "amount"),
])
def test_bad_transfer_is_422_naming_field_and_changes_nothing(server: Server, body: dict,
                                                              field: str) -> None:
    a1 = open_account(server, "a1")
    body = {k: (a1 if v == "ACCT" else v) for k, v in body.items()}
    before = state(server)
    r = server.post("operator", "/v1/transfers", body)
    assert r.status_code == 422, r.text
    assert field in r.json()["field"]
    assert state(server) == before


@pytest.mark.parametrize(("patch", "field"), [
    ({"instrument": "BTC-25SEP26-85001-C"}, "instrument"),
    ({"instrument": "garbage"}, "instrument"),
    ({"price_currency": "USD"}, "price_currency"),
    ({"quantity": "0"}, "quantity"),
    ({"price": "-0.01"}, "price"),
    ({"fee": "-1"}, "fee"),
])
def test_bad_fill_is_422(server: Server, patch: dict, field: str) -> None:
    a1 = open_account(server, "a1")
    before = state(server)
    body = {"account": a1, "instrument": OPTION, "quantity": "-1", "price": "0.05",
            "price_currency": "BTC", **patch}
    r = server.post("operator", "/v1/fills", body)
    assert r.status_code == 422, r.text
    assert field in r.json()["field"]
    assert state(server) == before


def test_malformed_json_and_missing_key(server: Server) -> None:
    with server.client("operator") as c:
        r = c.post("/v1/transfers", content=b"{not json", headers={
            "Idempotency-Key": "k", "Content-Type": "application/json"})
        assert r.status_code == 422
        r = c.post("/v1/accounts", json={"id": "zz", "book": "BTC"})
        assert r.status_code == 422
        assert r.json()["field"] == "Idempotency-Key"


def test_option_fill_moves_premium_and_conserves(server: Server) -> None:
    a1 = open_account(server, "a1", "2")
    r = server.post("operator", "/v1/fills", {
        "account": a1, "instrument": OPTION, "quantity": "1", "price": "0.05",
        "price_currency": "BTC", "fee": "0.0003"})
    assert r.status_code == 200, r.text
    with server.client("risk") as c:
        acct = c.get(f"/v1/accounts/{a1}").json()
    assert Decimal(acct["balances"]["BTC"]) == Decimal("2") - Decimal("0.05") - Decimal("0.0003")
    assert acct["positions"][0]["instrument"] == OPTION
    assert all(v == 0 for v in state(server)["conservation"].values())


def test_concurrent_withdrawals_never_breach_im(server: Server) -> None:
    w = open_account(server, "w", "1")
    # a short put needs IM; then many withdrawals race for the excess
    r = server.post("operator", "/v1/fills", {
        "account": w, "instrument": OPTION, "quantity": "-3", "price": "0.05",
        "price_currency": "BTC"})
    assert r.status_code == 200, r.text
    with server.client("risk") as c:
        a = c.get(f"/v1/accounts/{w}").json()
    excess = a["equity"] - a["initial_margin"]
    assert excess > 0
    amount = Decimal(str(round(excess / 4, 8)))

    def withdraw(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60, headers={
                "Authorization": f"Bearer {server.keys['operator']}"}) as c:
            return c.post("/v1/transfers", json={
                "account": w, "currency": "BTC", "amount": str(amount),
                "direction": "withdrawal"}, headers={"Idempotency-Key": f"{w}-{i}"}).status_code

    with ThreadPoolExecutor(16) as ex:
        codes = list(ex.map(withdraw, range(16)))
    assert set(codes) <= {200, 422}
    assert 1 <= codes.count(200) <= 4
    with server.client("risk") as c:
        a = c.get(f"/v1/accounts/{w}").json()
    assert a["equity"] >= a["initial_margin"]
    assert all(v == 0 for v in state(server)["conservation"].values())


def test_roles(server: Server) -> None:
    t1 = open_account(server, "t1")
    t2 = open_account(server, "t2")
    with server.client("admin") as c:
        tk = c.post("/v1/keys", json={"role": "trader", "account": t1}).json()["key"]
    server.keys["trader"] = tk
    anon = httpx.Client(base_url=server.url)
    assert anon.get(f"/v1/accounts/{t1}").status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert anon.get(f"/v1/accounts/{t1}", headers=bad).status_code == 401
    with server.client("trader") as c:
        assert c.get(f"/v1/accounts/{t1}").status_code == 200
        assert c.get(f"/v1/accounts/{t2}").status_code == 403
        assert c.get("/v1/book").status_code == 403
        assert c.get("/v1/events").status_code == 403
        r = c.post("/v1/fills", json={"account": t1, "instrument": OPTION, "quantity": "1",
                                      "price": "0.05", "price_currency": "BTC"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 403
        r = c.post("/v1/transfers", json={"account": t2, "currency": "BTC", "amount": "0.1",
                                          "direction": "withdrawal"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 403
        r = c.post("/v1/transfers", json={"account": t1, "currency": "BTC", "amount": "0.1",
                                          "direction": "withdrawal"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 200
    with server.client("operator") as c:
        assert c.post("/v1/keys", json={"role": "admin"}).status_code == 403
        assert c.get("/v1/book").status_code == 403
    with server.client("risk") as c:
        assert c.get("/v1/book").status_code == 200
        assert c.get("/v1/events").status_code == 200
        r = c.post("/v1/accounts", json={"id": "x", "book": "BTC"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 403


def test_margin_explain_and_simulate(server: Server) -> None:
    a1 = open_account(server, "ex", "2")
    r = server.post("operator", "/v1/fills", {
        "account": a1, "instrument": OPTION, "quantity": "-1", "price": "0.05",
        "price_currency": "BTC"})
    assert r.status_code == 200, r.text
    with server.client("risk") as c:
        m = c.get(f"/v1/accounts/{a1}/margin", params={"explain": "true"}).json()
        plain = c.get(f"/v1/accounts/{a1}").json()
        # the explanation is the library's margin() of the same account: same numbers
        assert m["explain"]["initial_margin"] == pytest.approx(plain["initial_margin"], rel=1e-12)
        assert m["explain"]["worst_scenario"] is not None
        # the explanation is the CLI's `margin --json`: the same published schema
        import json
        from pathlib import Path

        import jsonschema

        schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas"
                             / "margin.schema.json").read_text())
        jsonschema.validate(m["explain"], schema)
        body = {"portfolio": {"margin_currency": "BTC", "collateral": {"BTC": 1.0},
                              "positions": [{"instrument": OPTION, "quantity": -1}]},
                "models": ["deribit-pm", "deribit-sm"]}
        sim = c.post("/v1/simulate", json=body).json()
        assert set(sim["results"]) == {"deribit-pm", "deribit-sm"}
        assert sim["results"]["deribit-sm"]["initial_margin"] > 0
        bad = c.post("/v1/simulate", json={**body, "models": ["deribit-pmm"]})
        assert bad.status_code == 422
        assert bad.json()["field"] == "models[0]"
        bad = c.post("/v1/simulate", json={**body, "portfolio": {
            "margin_currency": "BTC", "collateral": {}, "positions": [
                {"instrument": OPTION, "qty": -1}]}})
        assert bad.status_code == 422
        assert "qty" in bad.json()["field"]


def test_unknown_account_is_404_and_changes_nothing(server: Server) -> None:
    before = state(server)
    r = server.post("operator", "/v1/transfers", {"account": "nope", "currency": "BTC",
                                                  "amount": "1", "direction": "deposit"})
    assert r.status_code == 404
    assert r.json()["field"] == "account"
    with server.client("risk") as c:
        assert c.get("/v1/accounts/nope").status_code == 404
    assert state(server) == before


@pytest.mark.parametrize("body", [
    b'{"account": "x", "currency": "BTC", "amount": NaN, "direction": "deposit"}',
    b'{"account": "x", "currency": "BTC", "amount": Infinity, "direction": "deposit"}',
    b'{"account": "x", "currency": "BTC", "amount": 1e999, "direction": "deposit"}',
])
def test_non_finite_json_numbers_are_422_not_500(server: Server, body: bytes) -> None:
    a = open_account(server, "nf")
    with server.client("operator") as c:
        r = c.post("/v1/transfers", content=body.replace(b'"x"', f'"{a}"'.encode()),
                   headers={"Idempotency-Key": uuid.uuid4().hex,
                            "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "amount"


def test_fill_price_outside_the_band_is_refused(server: Server) -> None:
    a = open_account(server, "band", "2")
    before = state(server)
    r = server.post("operator", "/v1/fills", {
        "account": a, "instrument": OPTION, "quantity": "-1", "price": "1000",
        "price_currency": "BTC"})
    assert r.status_code == 422
    assert r.json()["field"] == "price"
    r = server.post("operator", "/v1/fills", {
        "account": a, "instrument": "BTC-PERPETUAL", "quantity": "1", "price": "1",
        "price_currency": "USD"})
    assert r.status_code == 422
    assert state(server) == before


def test_simulate_takes_model_names_only(server: Server) -> None:
    with server.client("risk") as c:
        r = c.post("/v1/simulate", json={"portfolio": {"margin_currency": "BTC"},
                                         "models": ["/etc/passwd"]})
    assert r.status_code == 422
    assert r.json()["field"] == "models[0]"
    assert "root" not in r.text


def test_idempotency_keys_are_per_api_key(server: Server) -> None:
    a = open_account(server, "idk")
    with server.client("admin") as c:
        other_operator = c.post("/v1/keys", json={"role": "operator"}).json()["key"]
    body = {"account": a, "currency": "BTC", "amount": "0.5", "direction": "deposit"}
    first = server.post("operator", "/v1/transfers", body, key="shared-key")
    assert first.status_code == 200
    with httpx.Client(base_url=server.url, headers={
            "Authorization": f"Bearer {other_operator}"}) as c:
        second = c.post("/v1/transfers", json=body, headers={"Idempotency-Key": "shared-key"})
    assert second.status_code == 200
    assert second.json()["seq"] != first.json()["seq"]  # a new write, not the other's answer


def test_a_rejected_market_changes_nothing(server: Server) -> None:
    a = open_account(server, "mk", "2")
    r = server.post("operator", "/v1/fills", {
        "account": a, "instrument": OPTION, "quantity": "-1", "price": "0.06",
        "price_currency": "BTC"})
    assert r.status_code == 200, r.text
    before = state(server)
    bad = market_json(minutes=30)
    del bad["market"]["instruments"][OPTION]  # a market that does not list a held option
    r = server.post("operator", "/v1/market", bad)
    assert r.status_code == 422, r.text
    assert state(server) == before
    good = market_json(index=79000.0, minutes=31)
    assert server.post("operator", "/v1/market", good).status_code == 200


def test_misspelt_field_is_named_with_a_hint(server: Server) -> None:
    a = open_account(server, "typo")
    r = server.post("operator", "/v1/fills", {
        "account": a, "instrument": OPTION, "qty": "-1", "price": "0.06",
        "price_currency": "BTC"})
    assert r.status_code == 422
    body = r.json()
    assert body["field"] == "qty"
    assert "quantity" in body["reason"]
    with server.client("operator") as c:
        r = c.post("/v1/transfers", content=b'{"account": 1,', headers={
            "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["field"] == "body"
