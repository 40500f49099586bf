"""Deposit latency of a real server with and without stream clients, side by side in one run.

No stream client, then one reading risk client plus one stalled client (a raw socket that never
reads). Run from the repository root: ``.venv/bin/python benchmarks/stream_latency.py``
(docs/realtime.md). Prints one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.service.conftest import market_json
from tests.service.test_enforcement_server import start_server
from tests.service.test_stream import _stalled_client
from tests.service.venues import venue_file


def _deposits(op: httpx.Client, n: int) -> list[float]:
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        op.post("/v1/transfers", headers={"Idempotency-Key": uuid.uuid4().hex},
                json={"account": "t2", "currency": "BTC", "amount": "0.00000001",
                      "direction": "deposit"}).raise_for_status()
        lat.append(time.perf_counter() - t)
    return lat


def _q(x: list[float], p: float) -> float:
    return sorted(x)[int(p * (len(x) - 1))]


def main(n: int = 300) -> None:
    """Measure and print."""
    d = Path(tempfile.mkdtemp())
    venue = venue_file(d, queue_size=16, enabled=False, breaker_min_accounts=1000)
    s, _ = start_server(d, "sqlite", venue)
    try:
        s.post("operator", "/v1/market", market_json(80000.0, 0))
        s.post("operator", "/v1/accounts", {"id": "t2", "book": "BTC"})
        with s.client("operator") as op, s.client("risk") as c:
            _deposits(op, 30)  # warm-up
            alone = _deposits(op, n)
            stalled = _stalled_client(s)
            got: list[str] = []
            with connect(f"ws://127.0.0.1:{s.port}/v1/stream?key={s.keys['risk']}") as ws:
                stop = threading.Event()

                def read() -> None:
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            got.append(str(ws.recv(timeout=0.5)))

                th = threading.Thread(target=read)
                th.start()
                with_clients = _deposits(op, n)
                time.sleep(1.0)
                stop.set()
                th.join()
            stream = c.get("/v1/book").json()["stream"]
            stalled.close()
        print(json.dumps({
            "writes": n,
            "no_clients_ms": {"p50": 1e3 * _q(alone, .5), "p99": 1e3 * _q(alone, .99)},
            "reader_plus_stalled_ms": {"p50": 1e3 * _q(with_clients, .5),
                                       "p99": 1e3 * _q(with_clients, .99)},
            "ratio_p50": _q(with_clients, .5) / _q(alone, .5),
            "messages_received": len(got), "stream": stream}))
    finally:
        s.stop()


if __name__ == "__main__":
    main()
