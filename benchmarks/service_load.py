"""Load driver of the margin service: a real ``pmargin serve`` process on 127.0.0.1.

Seeds a venue of ``--accounts`` generated accounts (the demo seeding of
``pmargin.service.server.seed_demo`` on the real Deribit snapshot, in this process, one
transaction), starts the server on it (it replays the log at start), and measures over HTTP:

* **fills**: fills accepted durably per second, ``--clients`` concurrent closed-loop clients
  posting one fill per request (each a database transaction committed before the 200);
* **fills (batch)**: the same through ``POST /v1/fills/batch`` (many fills, one transaction);
* **what-if**: latency at 50 concurrent clients, closed loop (each sends its next request as
  soon as the last returns) and open loop (each at a fixed rate);
* **market**: a ``POST /v1/market`` with a moved index (JSON market, ``mark_unit`` USD): time
  until it is accepted, and time from acceptance until a reader sees the re-margined accounts
  (its ``market_digest`` on ``GET /v1/accounts/{id}``);
* **mixed**: p50/p99 of every endpoint under a mixed load.

Bounded in time (``--seconds`` per phase) and count; loopback only. On PostgreSQL a scratch
database is created and dropped. ``python benchmarks/service_load.py --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("PMARGIN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MAX_REQUESTS = 200_000  # per phase, on top of the time bound

Op = Callable[[httpx.Client, random.Random], tuple[str, httpx.Response]]


# ---------------------------------------------------------------------- setup
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_create() -> tuple[str, str]:
    import sqlalchemy as sa

    name = f"pmargin_bench_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name


def _pg_drop(name: str) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def seed(db_url: str, venue: Path, accounts: int) -> dict[str, Any]:
    """Seed the venue in this process; return keys, account ids, instruments and the market."""
    from pmargin.service.server import open_service, seed_demo

    t0 = time.perf_counter()
    svc = open_service(db_url, venue)
    events = seed_demo(svc, accounts)
    seed_s = time.perf_counter() - t0
    st = svc.state
    bs = st.books["BTC"]
    mkt = st.market
    assert mkt is not None
    perp = "BTC-PERPETUAL"
    index = float(mkt.index_price("BTC"))
    # liquid options near the money to trade (priced in BTC per contract)
    opts = []
    for acct in bs.accounts[:400]:
        for name in bs.positions.get(acct, {}):
            if name.endswith(("-C", "-P")) and name not in opts:
                opts.append(name)
    opts = opts[:40]
    coin_marks = {n: float(mkt.mark_price(n)) / index for n in opts}
    keys = {r: svc.store.create_key(r, None) for r in ("operator", "risk", "admin")}
    trader_acct = bs.accounts[0]
    keys["trader"] = svc.store.create_key("trader", trader_acct)
    out = {"keys": keys, "accounts": list(bs.accounts), "perp": perp, "index": index,
           "options": coin_marks, "market": mkt.to_dict(), "events": events, "seed_s": seed_s,
           "trader_account": trader_acct,
           "positions": sum(len(r) for r in bs.positions.values())}
    svc.store.engine.dispose()
    return out


class Server:
    """A ``pmargin serve`` process."""

    def __init__(self, db_url: str, venue: Path, cwd: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "pmargin.cli", "serve", "--port", str(self.port),
               "--venue", str(venue)]
        env = {**os.environ, "PMARGIN_DATABASE_URL": db_url}
        t0 = time.perf_counter()
        # stderr to a file, never an unread pipe: the server logs every write, and a full
        # pipe (64 KB) blocks its writer thread mid-request
        self.log = cwd / "serve.log"
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                         stderr=err)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text(errors="replace")[-4000:])
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    self.start_s = time.perf_counter() - t0
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start in 300 s")

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ---------------------------------------------------------------------- load
class Recorder:
    """Latencies (seconds) and status counts per endpoint."""

    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.lock = threading.Lock()

    def add(self, name: str, dt: float, status: int) -> None:
        with self.lock:
            self.lat[name].append(dt)
            self.status[name][status] += 1

    def summary(self, wall: float) -> dict[str, Any]:
        out = {}
        for name in sorted(self.lat):
            xs = sorted(self.lat[name])
            out[name] = {"n": len(xs), "per_s": len(xs) / wall, "p50_ms": _pct(xs, 50) * 1e3,
                         "p99_ms": _pct(xs, 99) * 1e3, "max_ms": xs[-1] * 1e3,
                         "status": dict(sorted(self.status[name].items()))}
        return out


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))
    return xs[k]


WHAT_IF_RATE = 10.0
"""What-ifs per second of each of the 50 open-loop clients (500/s in all)."""


def run_clients(url: str, key: str, clients: int, seconds: float, op: Op,
                rate_per_client: float | None = None, seed: int = 0) -> tuple[Recorder, float]:
    """``clients`` threads, each with its own keep-alive connection, running ``op``.

    Closed loop by default (next request when the last returns); with ``rate_per_client`` each
    client sends at that fixed rate (open loop, latency measured from the scheduled send time so
    that queueing in the client counts too).
    """
    rec = Recorder()
    stop_at = time.perf_counter() + seconds
    budget = [MAX_REQUESTS]
    blk = threading.Lock()

    def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as c:
            nxt = time.perf_counter() + (rng.random() / rate_per_client if rate_per_client
                                         else 0)
            while True:
                with blk:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                if rate_per_client:
                    now = time.perf_counter()
                    if nxt > now:
                        time.sleep(nxt - now)
                    t0 = nxt
                    nxt += 1 / rate_per_client
                else:
                    t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                name, r = op(c, rng)
                rec.add(name, time.perf_counter() - t0, r.status_code)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(worker, range(clients)))
    return rec, time.perf_counter() - t0


class Ops:
    """The requests of the load (each returns its endpoint label and the response)."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.accounts: list[str] = info["accounts"]
        self.options: dict[str, float] = info["options"]
        self.opt_names = sorted(self.options)
        self.keys = info["keys"]

    def _idem(self) -> dict[str, str]:
        return {"Idempotency-Key": uuid.uuid4().hex}

    def fill_body(self, rng: random.Random, acct: str | None = None) -> dict[str, Any]:
        acct = acct or rng.choice(self.accounts)
        if rng.random() < 0.5:
            q = rng.choice([-1, 1]) * 0.1
            return {"account": acct, "instrument": self.info["perp"], "quantity": q,
                    "price": round(self.info["index"], 2), "price_currency": "USD",
                    "fee": "0.00000100"}
        name = rng.choice(self.opt_names)
        px = max(round(self.options[name], 4), 0.0001)
        return {"account": acct, "instrument": name, "quantity": rng.choice([-1, 1]) * 0.1,
                "price": px, "price_currency": "BTC", "fee": "0.00000100"}

    def fill(self, c: httpx.Client, rng: random.Random) -> tuple[str, httpx.Response]:
        return "POST /v1/fills", c.post("/v1/fills", json=self.fill_body(rng),
                                        headers=self._idem())

    def fill_batch(self, size: int) -> Op:
        def op(c: httpx.Client, rng: random.Random) -> tuple[str, httpx.Response]:
            body = {"fills": [self.fill_body(rng) for _ in range(size)]}
            return "POST /v1/fills/batch", c.post("/v1/fills/batch", json=body,
                                                  headers=self._idem())
        return op

    def what_if(self, c: httpx.Client, rng: random.Random) -> tuple[str, httpx.Response]:
        acct = rng.choice(self.accounts)
        b = self.fill_body(rng, acct)
        f = {k: b[k] for k in ("instrument", "quantity", "price", "price_currency")}
        return ("POST /v1/accounts/{id}/what-if",
                c.post(f"/v1/accounts/{acct}/what-if", json={"fills": [f]}))

    def mixed(self, c: httpx.Client, rng: random.Random) -> tuple[str, httpx.Response]:
        x = rng.random()
        acct = rng.choice(self.accounts)
        if x < 0.25:
            return self.fill(c, rng)
        if x < 0.45:
            return self.what_if(c, rng)
        if x < 0.62:  # without the distance search (cached per market and account row)
            return ("GET /v1/accounts/{id}?distance=false",
                    c.get(f"/v1/accounts/{acct}", params={"distance": "false"}))
        if x < 0.65:  # with it: mostly a first search (random account, markets moving)
            return "GET /v1/accounts/{id}", c.get(f"/v1/accounts/{acct}")
        if x < 0.70:
            return "GET /v1/accounts/{id}/margin", c.get(f"/v1/accounts/{acct}/margin")
        if x < 0.71:
            return ("GET /v1/accounts/{id}/margin?explain=true",
                    c.get(f"/v1/accounts/{acct}/margin", params={"explain": "true"}))
        if x < 0.78:
            d = "deposit" if rng.random() < 0.6 else "withdrawal"
            body = {"account": acct, "currency": "BTC", "amount": "0.001", "direction": d}
            return f"POST /v1/transfers ({d})", c.post("/v1/transfers", json=body,
                                                       headers=self._idem())
        if x < 0.83:
            after = rng.randrange(0, 100_000)
            return "GET /v1/events", c.get("/v1/events", params={"after": after, "limit": 100})
        if x < 0.86:
            return "GET /v1/book", c.get("/v1/book")
        if x < 0.862:  # an audit read: hashes the whole state (cached per seq)
            return "GET /v1/state", c.get("/v1/state")
        if x < 0.90:
            name = rng.choice(self.opt_names)
            pf = {"margin_currency": "BTC", "collateral": {"BTC": 1.0},
                  "positions": [{"instrument": name, "quantity": -1}]}
            return "POST /v1/simulate", c.post("/v1/simulate", json={
                "portfolio": pf, "models": ["deribit-pm"]})
        if x < 0.925:
            body = {"id": f"load-{uuid.uuid4().hex[:12]}", "book": "BTC"}
            return "POST /v1/accounts", c.post("/v1/accounts", json=body, headers=self._idem())
        return "GET /healthz", c.get("/healthz")


def market_body(base: dict[str, Any], move: float) -> dict[str, Any]:
    """The base market with the BTC index (and everything priced off it) moved by ``move``."""
    from pmargin.market.loaders import load_market_json

    return load_market_json(base).bumped({"BTC": move}).to_dict()


def measure_market(url: str, keys: dict[str, str], base: dict[str, Any], accounts: list[str],
                   rounds: int, with_load: Callable[[], None] | None = None) -> dict[str, Any]:
    """Post moved markets; time acceptance and visibility to a polling reader."""
    bodies = [market_body(base, m) for m in
              [0.01 * ((-1) ** k) * (1 + k % 3) for k in range(rounds)]]
    raws = [json.dumps(b).encode() for b in bodies]
    accept, visible, after_send = [], [], []
    polls: list[int] = []  # reads until the new market was seen (1: the first read after)
    reader_acct = accounts[len(accounts) // 2]
    with httpx.Client(base_url=url, timeout=120,
                      headers={"Authorization": f"Bearer {keys['operator']}"}) as op, \
            httpx.Client(base_url=url, timeout=120,
                         headers={"Authorization": f"Bearer {keys['risk']}"}) as rd:
        for raw in raws:
            seen: dict[str, float] = {}
            done = threading.Event()
            target: dict[str, str] = {}

            def poll(done: threading.Event = done, seen: dict[str, float] = seen,
                     target: dict[str, str] = target) -> None:
                while not done.is_set():
                    seen["polls"] = seen.get("polls", 0) + 1
                    r = rd.get(f"/v1/accounts/{reader_acct}", params={"distance": "false"})
                    d = r.json().get("market_digest")
                    if "digest" in target and d == target["digest"]:
                        seen["t"] = time.perf_counter()
                        return
                    time.sleep(0.001)

            before = rd.get(f"/v1/accounts/{reader_acct}",
                            params={"distance": "false"}).json()["market_digest"]
            t0 = time.perf_counter()
            r = op.post("/v1/market", content=raw, headers={
                "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex})
            t1 = time.perf_counter()
            assert r.status_code == 200, r.text
            # the digest the server stores: the digest of {"format": "json", "market": body}
            from pmargin.service.store import digest_of

            target["digest"] = digest_of({"format": "json", "market": json.loads(raw)})
            assert target["digest"] != before
            th = threading.Thread(target=poll)
            th.start()
            th.join(30)
            done.set()
            accept.append(t1 - t0)
            visible.append(seen.get("t", float("nan")) - t1)
            after_send.append(seen.get("t", float("nan")) - t0)
            polls.append(int(seen.get("polls", 0)))
    return {"rounds": rounds, "body_kb": round(len(raws[0]) / 1024),
            "instruments": len(base["instruments"]),
            "accept_ms": [round(x * 1e3, 1) for x in accept],
            "accept_median_ms": statistics.median(accept) * 1e3,
            "visible_after_accept_ms": [round(x * 1e3, 1) for x in visible],
            "visible_after_accept_max_ms": max(visible) * 1e3,
            "visible_after_send_median_ms": statistics.median(after_send) * 1e3,
            "reads_until_seen": polls}


def _reset_market(url: str, keys: dict[str, str], base: dict[str, Any]) -> None:
    with httpx.Client(base_url=url, timeout=120,
                      headers={"Authorization": f"Bearer {keys['operator']}"}) as c:
        r = c.post("/v1/market", json=base, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 200, r.text


def run_backend(backend: str, accounts: int, seconds: float, clients: int,
                batch: int, profile_dir: Path | None = None) -> dict[str, Any]:
    """Seed, start, load and stop one backend; return the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="pmargin-load-"))
    pg_name = None
    srv: Server | None = None
    try:
        venue_src = (ROOT / "src" / "pmargin" / "service" / "venue.toml").read_text()
        venue = tmp / "venue.toml"
        venue.write_text(venue_src.replace("accounts = 3000", f"accounts = {accounts}"))
        if backend == "sqlite":
            db_url = f"sqlite:///{tmp / 'bench.db'}"
        else:
            db_url, pg_name = _pg_create()
        print(f"[{backend}] seeding {accounts} accounts...", file=sys.stderr, flush=True)
        info = seed(db_url, venue, accounts)
        srv = Server(db_url, venue, tmp)
        print(f"[{backend}] server up in {srv.start_s:.1f} s", file=sys.stderr, flush=True)
        ops = Ops(info)
        keys = info["keys"]
        out: dict[str, Any] = {
            "backend": backend, "accounts": accounts, "positions": info["positions"],
            "seed_events": info["events"], "seed_s": round(info["seed_s"], 1),
            "server_start_s": round(srv.start_s, 1), "seconds_per_phase": seconds,
            "load_average_start": os.getloadavg()[0]}
        # warm-up: a few of every kind
        run_clients(srv.url, keys["operator"], 2, 1.0, ops.fill)
        run_clients(srv.url, keys["risk"], 2, 1.0, ops.what_if)

        def phase(name: str, key: str, n: int, op: Op, rate: float | None = None
                  ) -> dict[str, Any]:
            print(f"[{backend}] {name}...", file=sys.stderr, flush=True)
            la0 = os.getloadavg()[0]
            spy = _spy_start(srv.proc.pid, profile_dir, f"{backend}-{name}", seconds)  # type: ignore[union-attr]
            rec, wall = run_clients(srv.url, key, n, seconds, op, rate)  # type: ignore[union-attr]
            s = rec.summary(wall)
            out = {"clients": n, "wall_s": round(wall, 2), "rate_per_client": rate,
                   "load_average": round((la0 + os.getloadavg()[0]) / 2, 2), "endpoints": s}
            if spy is not None:
                out["server_profile"] = _spy_finish(*spy)
            return out

        out["fills"] = phase("fills", keys["operator"], clients, ops.fill)
        f = out["fills"]["endpoints"]["POST /v1/fills"]
        out["fills"]["accepted_per_s"] = f["status"].get(200, 0) / out["fills"]["wall_s"]
        if batch > 1:
            bp = phase(f"fills batch {batch}", keys["operator"], max(2, clients // 4),
                       ops.fill_batch(batch))
            e = bp["endpoints"].get("POST /v1/fills/batch", {})
            bp["batch"] = batch
            if e.get("status", {}).get(404):
                bp["note"] = "no batch endpoint in this server"
            else:
                bp["accepted_per_s"] = e.get("status", {}).get(200, 0) * batch / bp["wall_s"]
            out["fills_batch"] = bp
        out["what_if_closed"] = phase("what-if closed loop", keys["risk"], 50, ops.what_if)
        out["what_if_open"] = phase("what-if open loop", keys["risk"], 50, ops.what_if,
                                    rate=WHAT_IF_RATE)
        _reset_market(srv.url, keys, info["market"])
        print(f"[{backend}] market...", file=sys.stderr, flush=True)
        la0 = os.getloadavg()[0]
        out["market_idle"] = measure_market(srv.url, keys, info["market"], info["accounts"], 6)
        out["market_idle"]["load_average"] = round((la0 + os.getloadavg()[0]) / 2, 2)
        # market under load: the mixed load runs while markets are posted
        box: dict[str, Any] = {}

        def loaded() -> None:
            box["mixed"] = phase("mixed", keys["operator"], clients, mixed_op)

        risk_client_ops = Ops(info)

        def mixed_op(c: httpx.Client, rng: random.Random) -> tuple[str, httpx.Response]:
            # operator key for writes, risk key for reads (one header per request)
            name, r = risk_client_ops.mixed(_Keyed(c, keys), rng)
            return name, r

        th = threading.Thread(target=loaded)
        th.start()
        time.sleep(min(2.0, seconds / 4))
        out["market_loaded"] = measure_market(srv.url, keys, info["market"], info["accounts"],
                                              4)
        th.join()
        out["mixed"] = box["mixed"]
        out["server_rss_mb"] = round(srv.rss_mb())
        out["load_average_end"] = os.getloadavg()[0]
        return out
    finally:
        if srv is not None:
            srv.stop()
        if pg_name:
            _pg_drop(pg_name)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------- profile
BUCKETS = [  # innermost frame of a sample that matches, in this order of packages
    ("database", ("sqlalchemy/", "sqlite3/", "psycopg/", "psycopg_pool/")),
    ("margin engine (pmargin.models, engine, market, pricing)",
     ("pmargin/models/", "pmargin/engine/", "pmargin/market/", "pmargin/pricing/",
      "pmargin/book/", "pmargin/instruments.py", "pmargin/validation.py")),
    ("service code (pmargin.service)", ("pmargin/service/",)),
    ("HTTP, validation, JSON (uvicorn, starlette, fastapi, pydantic, json)",
     ("uvicorn/", "starlette/", "fastapi/", "pydantic/", "pydantic_core/", "anyio/", "h11/",
      "httptools/", "json/")),
]


def _spy_start(pid: int, profile_dir: Path | None, name: str, seconds: float
               ) -> tuple[subprocess.Popen[bytes], Path] | None:
    """Sample the server with py-spy (threads holding the GIL) while a phase runs."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if profile_dir is None or not Path(exe).exists():
        return None
    out = profile_dir / f"{name.replace(' ', '_')}.txt"
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", "200", "--gil", "--nonblocking", "--format", "raw",
                             "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, out


def _spy_finish(proc: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    """Share of GIL-holding samples by package group of their innermost known frame."""
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
    if not out.exists():
        return {"error": "py-spy wrote nothing (ptrace not allowed?)"}
    tot: dict[str, int] = defaultdict(int)
    leaf: dict[str, int] = defaultdict(int)
    n = 0
    for line in out.read_text().splitlines():
        stack, _, cnt = line.rpartition(" ")
        if not cnt.isdigit():
            continue
        k = int(cnt)
        n += k
        frames = stack.split(";")
        where = "other (stdlib, numpy/scipy called from elsewhere, threads)"
        for fr in reversed(frames):
            hit = next((b for b, pats in BUCKETS if any(p in fr for p in pats)), None)
            if hit is not None:
                where = hit
                break
        tot[where] += k
        leaf[frames[-1].strip()] += k
    top = sorted(leaf.items(), key=lambda kv: -kv[1])[:8]
    return {"samples": n, "share": {b: round(v / n, 3) for b, v in
                                    sorted(tot.items(), key=lambda kv: -kv[1])} if n else {},
            "top_frames": [[f, round(v / n, 3)] for f, v in top] if n else [],
            "file": str(out)}


class _Keyed:
    """A client wrapper choosing the key by the request: operator writes, risk reads."""

    WRITES = ("/v1/fills", "/v1/transfers", "/v1/accounts", "/v1/market")

    def __init__(self, c: httpx.Client, keys: dict[str, str]) -> None:
        self.c, self.keys = c, keys

    def _h(self, path: str, method: str, extra: dict[str, str] | None) -> dict[str, str]:
        role = "operator" if method == "POST" and path in self.WRITES else "risk"
        return {"Authorization": f"Bearer {self.keys[role]}", **(extra or {})}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.c.get(path, headers=self._h(path, "GET", kw.pop("headers", None)), **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.c.post(path, headers=self._h(path, "POST", kw.pop("headers", None)), **kw)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command line: run the backends and print one JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    ap.add_argument("--clients", type=int, default=16, help="concurrent writers")
    ap.add_argument("--batch", type=int, default=100, help="fills per batch request (1: none)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="sample the server with py-spy during each phase (raw stacks here; "
                    "py-spy is not a dependency: pip install py-spy)")
    a = ap.parse_args(argv)
    rows = []
    for b in a.backends.split(","):
        if b == "postgresql" and not _pg_ok():
            print(f"PostgreSQL not reachable at {PG_ADMIN}: skipped", file=sys.stderr)
            continue
        if a.profile:
            a.profile.mkdir(parents=True, exist_ok=True)
        r = run_backend(b, a.accounts, a.seconds, a.clients, a.batch, a.profile)
        print(json.dumps(r), flush=True)
        rows.append(r)
    return rows


def _pg_ok() -> bool:
    try:
        import sqlalchemy as sa

        with sa.create_engine(PG_ADMIN).connect() as c:
            c.execute(sa.text("select 1"))
        return True
    except Exception:
        return False


if __name__ == "__main__":
    main()
