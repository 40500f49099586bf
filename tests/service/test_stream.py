"""The WebSocket stream of a real server: roles, keys, and a stalled client dropped.

A stalled client is a real TCP peer that stops reading after the upgrade (a raw socket with a
4 KB receive buffer): what the server sent it piles up, its queue fills, and it is dropped with
close code 4008 while a normal client keeps receiving every update and the write path keeps its
latency.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import statistics
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.service.conftest import Server, _drop, market_json
from tests.service.test_enforcement_server import start_server
from tests.service.venues import venue_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("stream")
    venue = venue_file(tmp, queue_size=16, enabled=False, breaker_min_accounts=1000)
    s, db = start_server(tmp, "sqlite", venue)
    try:
        for body in (market_json(80000.0, 0),):
            assert s.post("operator", "/v1/market", body).status_code == 200
        for a, dep in (("t1", "0.2"), ("t2", "5")):
            assert s.post("operator", "/v1/accounts", {"id": a, "book": "BTC"}).is_success
            assert s.post("operator", "/v1/transfers", {
                "account": a, "currency": "BTC", "amount": dep,
                "direction": "deposit"}).is_success
        assert s.post("operator", "/v1/fills", {
            "account": "t1", "instrument": "BTC-PERPETUAL", "quantity": "-1",
            "price": "80000", "price_currency": "USD", "new_order": False}).is_success
        with s.client("admin") as c:
            s.keys["trader"] = c.post("/v1/keys", json={"role": "trader",
                                                        "account": "t1"}).json()["key"]
        yield s
    finally:
        s.stop()
        _drop(db)


def ws_url(s: Server, query: str = "") -> str:
    return f"ws://127.0.0.1:{s.port}/v1/stream" + (f"?{query}" if query else "")


def deposit(s: Server, account: str, amount: str = "0.001") -> float:
    t = time.perf_counter()
    r = s.post("operator", "/v1/transfers", {"account": account, "currency": "BTC",
                                             "amount": amount, "direction": "deposit"})
    assert r.status_code == 200, r.text
    return time.perf_counter() - t


def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=timeout)))


def test_trader_key_in_query_gets_its_own_account_only(srv: Server) -> None:
    with connect(ws_url(srv, f"key={srv.keys['trader']}")) as ws:
        hello = recv(ws)
        assert hello["type"] == "hello"
        assert hello["role"] == "trader"
        assert hello["accounts"] == ["t1"]
        deposit(srv, "t2")  # not t1's: nothing for this client
        deposit(srv, "t1")
        m = recv(ws)
        assert m["type"] == "margin"
        assert m["id"] == "t1"
        assert m["balances"]["BTC"] == "0.201"
        # BTC +40 %: t1 (short 1, 0.201 BTC) loses 1 - 8/11.2 = 0.2857 BTC: bankrupt
        assert srv.post("operator", "/v1/market", market_json(112000.0, 1)).is_success
        got = [recv(ws) for _ in range(2)]
        kinds = {g["type"] for g in got}
        assert kinds == {"margin", "health"}
        h = next(g for g in got if g["type"] == "health")
        assert (h["account"], h["from"], h["to"]) == ("t1", "healthy", "bankrupt")
        assert all(g.get("account", g.get("id")) == "t1" for g in got)


def test_risk_key_in_first_message_and_in_header(srv: Server) -> None:
    with connect(ws_url(srv)) as ws:
        ws.send(json.dumps({"key": srv.keys["risk"]}))
        assert recv(ws)["role"] == "risk"
        deposit(srv, "t2")
        m = recv(ws)
        assert m["type"] == "book"
        assert m["id"] == "BTC"
        assert m["accounts"] == 2
        assert set(m["by_health"]) == {"healthy", "margin_call", "liquidation", "bankrupt"}
        assert {"total_initial_margin", "total_maintenance_margin", "insurance_fund",
                "liquidation_in_progress", "breaker"} <= set(m)
    with connect(ws_url(srv), additional_headers={
            "Authorization": f"Bearer {srv.keys['risk']}"}) as ws:
        assert recv(ws)["role"] == "risk"


@pytest.mark.parametrize(("query", "code"), [("key=pm_nope", 4401), ("", 4401),
                                             ("operator", 4403)])
def test_refused_keys_are_closed_with_a_reason(srv: Server, query: str, code: int) -> None:
    if query == "operator":
        query = f"key={srv.keys['operator']}"
    with connect(ws_url(srv, query)) as ws:
        if not query:
            ws.send(json.dumps({"nokey": 1}))
        with pytest.raises(ConnectionClosed) as exc:
            ws.recv(timeout=10)
    assert exc.value.rcvd is not None
    assert exc.value.rcvd.code == code
    assert exc.value.rcvd.reason


def _stalled_client(s: Server) -> socket.socket:
    """A WebSocket client (raw socket, 4 KB receive buffer) that never reads after the upgrade."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", s.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/stream?key={s.keys['risk']} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _close_frame(sock: socket.socket) -> tuple[int, str]:
    """Read server frames (unmasked) until the close frame; its code and reason."""
    sock.settimeout(30)
    buf = b""

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection ended without a close frame")
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    while True:
        b0, b1 = need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", need(8))[0]
        data = need(n)
        if b0 & 0x0F == 0x8:
            return struct.unpack("!H", data[:2])[0], data[2:].decode()


def test_stalled_client_dropped_normal_one_served_writer_unslowed(srv: Server) -> None:
    stalled = _stalled_client(srv)
    with connect(ws_url(srv, f"key={srv.keys['risk']}")) as normal:
        assert recv(normal)["type"] == "hello"
        seen: list[int] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                try:
                    m = json.loads(normal.recv(timeout=0.5))
                except TimeoutError:
                    continue
                if m["type"] == "book":
                    seen.append(int(m["seq"]))

        reader = threading.Thread(target=read)
        reader.start()
        lat: list[float] = []
        try:
            with srv.client("risk") as c, srv.client("operator") as op:
                for i in range(2000):
                    t = time.perf_counter()
                    r = op.post("/v1/transfers", headers={"Idempotency-Key": uuid.uuid4().hex},
                                json={"account": "t2", "currency": "BTC", "amount": "0.00000001",
                                      "direction": "deposit"})
                    lat.append(time.perf_counter() - t)
                    assert r.status_code == 200, r.text
                    if i % 25 == 24 and c.get("/v1/book").json()["stream"]["dropped_total"]:
                        break
                for _ in range(50):  # as many writes again after the drop
                    t = time.perf_counter()
                    op.post("/v1/transfers", headers={"Idempotency-Key": uuid.uuid4().hex},
                            json={"account": "t2", "currency": "BTC", "amount": "0.00000001",
                                  "direction": "deposit"}).raise_for_status()
                    lat.append(time.perf_counter() - t)
                st = c.get("/v1/book").json()
            assert st["stream"]["dropped_total"] == 1, st["stream"]
            assert st["stream"]["risk"] == 1  # the normal client is still there, the stalled gone
            deadline = time.monotonic() + 10
            while (not seen or seen[-1] < int(st["seq"])) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            reader.join()
        n = len(lat)
        assert n >= 100
        # the normal client got an update for every write, in order, none lost
        assert seen == sorted(seen)
        assert len(set(seen)) == len(seen)
        assert seen[-1] == int(st["seq"])
        assert len(seen) >= n
        # the write path did not slow down while the stalled client filled up and was dropped
        first, last = statistics.median(lat[:50]), statistics.median(lat[-50:])
        assert last <= 2 * first + 0.01, (first, last)
        # the stalled client, reading again, finds the close frame with the reason
        code, reason = _close_frame(stalled)
        assert code == 4008, reason
        assert reason.startswith("slow client"), reason
        stalled.close()
