"""Writes are serialised per book; reads never wait for a write's database commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pmargin.service import state as state_mod
from pmargin.service.app import Service, create_app
from pmargin.service.server import create_key, open_service
from pmargin.service.store import Store
from tests.service.conftest import market_json

VENUE = (Path(__file__).parents[2] / "src/pmargin/service/venue.toml").read_text()


def two_book_venue(tmp: Path) -> Path:
    """The shipped venue with two BTC books, A and B."""
    head, _, tail = VENUE.partition("[[books]]")
    rest = tail[tail.index("[money]"):]
    books = "".join(f'[[books]]\nid = "{b}"\nmargin_currency = "BTC"\nmodel = "deribit-pm"\n'
                    f'collateral_currencies = ["BTC"]\n\n' for b in ("A", "B"))
    p = tmp / "venue.toml"
    p.write_text(head + books + rest)
    return p


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[tuple[Service, TestClient, dict[str, str]]]:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    svc = open_service(url, two_book_venue(tmp_path))
    keys = {r: create_key(r, None, url) for r in ("operator", "risk")}
    client = TestClient(create_app(svc))
    h = {"Authorization": f"Bearer {keys['operator']}"}
    n = 0

    def post(path: str, body: Any) -> None:
        nonlocal n
        n += 1
        r = client.post(path, json=body, headers={**h, "Idempotency-Key": f"k{n}"})
        assert r.status_code == 200, r.text

    post("/v1/market", market_json())
    for a, b in (("a1", "A"), ("a2", "A"), ("b1", "B")):
        post("/v1/accounts", {"id": a, "book": b})
        post("/v1/transfers", {"account": a, "currency": "BTC", "amount": "1",
                               "direction": "deposit"})
        # warm: the first read builds the book's engine
        assert client.get(f"/v1/accounts/{a}", headers={
            "Authorization": f"Bearer {keys['risk']}"}).status_code == 200
    yield svc, client, keys
    client.close()


def deposit(client: TestClient, keys: dict[str, str], account: str, key: str) -> float:
    t0 = time.perf_counter()
    r = client.post("/v1/transfers", json={"account": account, "currency": "BTC",
                                           "amount": "0.5", "direction": "deposit"},
                    headers={"Authorization": f"Bearer {keys['operator']}",
                             "Idempotency-Key": key})
    assert r.status_code == 200, r.text
    return time.perf_counter() - t0


def slow_commits_of(monkeypatch: pytest.MonkeyPatch, book: str, seconds: float,
                    started: threading.Event) -> None:
    orig = Store.commit

    def slow(self: Store, eff: Any, *a: Any, **k: Any) -> int:
        if eff.book == book:
            started.set()
            time.sleep(seconds)
        return orig(self, eff, *a, **k)

    monkeypatch.setattr(Store, "commit", slow)


def test_a_slow_commit_blocks_its_book_only(venue: Any, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    _svc, client, keys = venue
    started = threading.Event()
    slow_commits_of(monkeypatch, "A", 1.0, started)
    t = threading.Thread(target=deposit, args=(client, keys, "a1", "slow"))
    t.start()
    assert started.wait(10)
    # another book: not behind A's writer lock
    assert deposit(client, keys, "b1", "fast") < 0.6
    # a reader of A during A's commit: answers at once, with the committed state (1 BTC)
    t0 = time.perf_counter()
    r = client.get("/v1/accounts/a1", headers={"Authorization": f"Bearer {keys['risk']}"})
    assert time.perf_counter() - t0 < 0.6
    assert r.json()["balances"]["BTC"] == "1"
    # the same book: waits for the slow write (check and change atomic per book)
    slow_commits_of(monkeypatch, "none", 0.0, threading.Event())
    assert deposit(client, keys, "a2", "after") > 0.3
    t.join()
    r = client.get("/v1/accounts/a1", headers={"Authorization": f"Bearer {keys['risk']}"})
    assert r.json()["balances"]["BTC"] == "1.5"


def test_a_slow_read_does_not_block_writes(venue: Any, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    svc, client, keys = venue
    orig = state_mod.HashView.state_hash
    started = threading.Event()

    def slow(self: state_mod.HashView) -> str:
        started.set()
        time.sleep(1.0)
        return orig(self)

    monkeypatch.setattr(state_mod.HashView, "state_hash", slow)
    out: dict[str, Any] = {}

    def read() -> None:
        out["state"] = client.get("/v1/state", headers={
            "Authorization": f"Bearer {keys['risk']}"}).json()

    t = threading.Thread(target=read)
    t.start()
    assert started.wait(10)
    assert deposit(client, keys, "a1", "during-read") < 0.6
    t.join()
    # the read answered the state as copied before the deposit (a consistent view)
    assert out["state"]["seq"] < svc.state.seq
    monkeypatch.setattr(state_mod.HashView, "state_hash", orig)
    assert client.get("/v1/state", headers={"Authorization": f"Bearer {keys['risk']}"}
                      ).json()["state_hash"] == svc.state._state_hash()


def test_state_hash_of_a_copy_equals_the_state(venue: Any) -> None:
    svc, _, _ = venue
    view = svc.state.copy_for_hash()
    assert view.state_hash() == svc.state._state_hash()
    assert view.conservation() == svc.state.conservation() == {"BTC": 0}
