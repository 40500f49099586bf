"""The account's distance to liquidation: the engine's search on the account as held."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from pmargin.engine.distance import liquidation_distance
from pmargin.market.loaders import load_market_json
from pmargin.models import load_model
from pmargin.portfolio import portfolio_from_dict
from pmargin.service.app import create_app
from pmargin.service.server import create_key, open_service
from tests.service.conftest import OPTION, market_json


def test_account_distance_is_the_search_on_the_held_account(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    svc = open_service(url)
    keys = {r: create_key(r, None, url) for r in ("operator", "risk")}
    c = TestClient(create_app(svc))
    op = {"Authorization": f"Bearer {keys['operator']}"}
    risk = {"Authorization": f"Bearer {keys['risk']}"}
    n = 0

    def post(path: str, body: object) -> None:
        nonlocal n
        n += 1
        r = c.post(path, json=body, headers={**op, "Idempotency-Key": f"k{n}"})
        assert r.status_code == 200, r.text

    post("/v1/market", market_json())
    post("/v1/accounts", {"id": "s", "book": "BTC"})
    post("/v1/transfers", {"account": "s", "currency": "BTC", "amount": "0.8",
                           "direction": "deposit"})
    post("/v1/fills", {"account": "s", "instrument": OPTION, "quantity": "-2",
                       "price": "0.05", "price_currency": "BTC", "fee": "0"})
    post("/v1/fills", {"account": "s", "instrument": "BTC-PERPETUAL", "quantity": "0.5",
                       "price": "80000", "price_currency": "USD", "fee": "0"})
    got = c.get("/v1/accounts/s", headers=risk).json()
    # independently: the account as a portfolio (premium 2 x 0.05 BTC received), the perpetual
    # entered at 80,000, searched on the full market the service was given
    market = load_market_json(market_json())
    pf = portfolio_from_dict({"margin_currency": "BTC", "collateral": {"BTC": 0.9},
                              "positions": [{"instrument": OPTION, "quantity": -2},
                                            {"instrument": "BTC-PERPETUAL", "quantity": 0.5,
                                             "avg_price": 80000.0}]})
    want = liquidation_distance(load_model("deribit-pm"), market, pf)
    assert got["distance_to_liquidation"] == {u: d.to_json() for u, d in want.items()}
    d = got["distance_to_liquidation"]["BTC"]
    assert d["down_pct"] is not None
    assert -99 < d["down_pct"] < 0
    # the explanation does not carry it; a changed account is searched again
    assert "distance_to_liquidation" not in c.get("/v1/accounts/s/margin", headers=risk).json()
    post("/v1/transfers", {"account": "s", "currency": "BTC", "amount": "0.5",
                           "direction": "deposit"})
    d2 = c.get("/v1/accounts/s", headers=risk).json()["distance_to_liquidation"]["BTC"]
    assert d2["down_pct"] < d["down_pct"]  # more collateral: liquidation further away
    # an account without positions has none
    post("/v1/accounts", {"id": "e", "book": "BTC"})
    assert c.get("/v1/accounts/e", headers=risk).json()["distance_to_liquidation"] == {}
