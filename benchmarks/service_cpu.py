"""CPU time per request of the service app, in-process (ASGI, no sockets).

Process CPU time (``time.process_time``), not wall time: the figure a shared, loaded machine
distorts least. SQLite in a temporary folder, the small test market of
``tests/service/conftest.py``, 200 accounts with a short put; then 3,000 what-ifs, 600 single
fills and 1,000 account reads (``?distance=false`` when the server knows the option). Uvicorn's
HTTP parsing is not included. Prints one JSON line.

    python benchmarks/service_cpu.py [label]
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.service.conftest

from tests.service.conftest import OPTION, market_json

from pmargin.service.app import create_app
from pmargin.service.server import create_key, open_service


async def main(label: str) -> dict[str, object]:
    """Seed, then time each request kind; return the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="pmargin-cpu-"))
    url = f"sqlite:///{tmp / 'b.db'}"
    svc = open_service(url)
    keys = {r: create_key(r, None, url) for r in ("operator", "risk")}
    tr = httpx.ASGITransport(app=create_app(svc))
    op = httpx.AsyncClient(transport=tr, base_url="http://t",
                           headers={"Authorization": f"Bearer {keys['operator']}"})
    rk = httpx.AsyncClient(transport=tr, base_url="http://t",
                           headers={"Authorization": f"Bearer {keys['risk']}"})

    async def post(path: str, body: object) -> None:
        r = await op.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 200, r.text

    await post("/v1/market", market_json())
    accts = [f"a{i}" for i in range(200)]
    for a in accts:
        await post("/v1/accounts", {"id": a, "book": "BTC"})
        await post("/v1/transfers", {"account": a, "currency": "BTC", "amount": "5",
                                     "direction": "deposit"})
        await post("/v1/fills", {"account": a, "instrument": OPTION, "quantity": "-1",
                                 "price": "0.05", "price_currency": "BTC"})
    rng = random.Random(1)
    body = {"fills": [{"instrument": OPTION, "quantity": "-0.5", "price": "0.05",
                       "price_currency": "BTC"}]}

    def what_if() -> Awaitable[httpx.Response]:
        return rk.post(f"/v1/accounts/{rng.choice(accts)}/what-if", json=body)

    def fill() -> Awaitable[httpx.Response]:
        return op.post("/v1/fills", json={
            "account": rng.choice(accts), "instrument": OPTION, "quantity": "-0.01",
            "price": "0.05", "price_currency": "BTC"},
            headers={"Idempotency-Key": uuid.uuid4().hex})

    def read() -> Awaitable[httpx.Response]:
        return rk.get(f"/v1/accounts/{rng.choice(accts)}", params={"distance": "false"})

    for _ in range(200):  # warm
        await what_if()
    out: dict[str, object] = {"label": label,
                              "load_average": Path("/proc/loadavg").read_text().split()[:3]}
    kinds: list[tuple[str, int, Callable[[], Awaitable[httpx.Response]]]] = [
        ("what-if", 3000, what_if), ("fill", 600, fill), ("account read", 1000, read)]
    for name, n, fn in kinds:
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            r = await fn()
            assert r.status_code == 200, r.text
        out[name] = {"cpu_ms": round((time.process_time() - c0) / n * 1000, 3),
                     "wall_ms": round((time.perf_counter() - w0) / n * 1000, 3), "n": n}
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else ""))))
