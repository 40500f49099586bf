"""A real service process on 127.0.0.1 for every test module, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.factories import VALUATION, expiry_code

PG_ADMIN = os.environ.get("PMARGIN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_pg_warned = False


def _pg_available() -> bool:
    try:
        with sa.create_engine(PG_ADMIN).connect() as c:
            c.execute(sa.text("select 1"))
        return True
    except Exception:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def market_json(index: float = 80000.0, minutes: int = 0) -> dict[str, Any]:
    """A small BTC market in the JSON format (marks in USD)."""
    code = expiry_code(30)
    inst: dict[str, Any] = {"BTC-PERPETUAL": {"mark_price": index}, f"BTC-{code}": {
        "mark_price": index * 1.004}}
    for k in (60000, 70000, 80000, 90000, 100000):
        for cp in "CP":
            inst[f"BTC-{code}-{k}-{cp}"] = {"mark_iv": 0.6, "underlying_price": index * 1.004}
    return {"valuation_time": (VALUATION + timedelta(minutes=minutes)).isoformat(),
            "market": {"mark_unit": "USD", "index": {"BTC": index}, "instruments": inst}}


OPTION = f"BTC-{expiry_code(30)}-80000-P"


@pytest.fixture(scope="session", autouse=True)
def _attest_key_outside_the_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Services opened in the test process keep their signing key in a temporary folder."""
    old = os.environ.get("PMARGIN_ATTEST_KEY")
    os.environ["PMARGIN_ATTEST_KEY"] = str(tmp_path_factory.mktemp("key") / "attest-key.pem")
    yield
    if old is None:
        os.environ.pop("PMARGIN_ATTEST_KEY", None)
    else:
        os.environ["PMARGIN_ATTEST_KEY"] = old


@dataclass
class Server:
    """A running `pmargin serve` process and an admin key."""

    url: str
    db_url: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    admin: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # more `pmargin serve` options
    attest_key: str = ""  # the server's signing key file (in the test's temporary folder)
    cwd: Path | None = None  # working folder of the process (default: the test's)
    start_timeout: float = 60.0  # seconds to wait for /healthz
    log: Path | None = None  # the server's stderr (JSON logs), written to a file

    def command(self) -> list[str]:
        """The `pmargin serve` command line."""
        return [sys.executable, "-m", "pmargin.cli", "serve", "--port", str(self.port),
                *self.args]

    def start(self) -> None:
        env = {**os.environ, "PMARGIN_DATABASE_URL": self.db_url}
        if self.attest_key:
            env["PMARGIN_ATTEST_KEY"] = self.attest_key
        # crash-sized moves apply at once unless a test brings its own guards (tests/feeds)
        env.setdefault("PMARGIN_FEED_GUARDS", str(Path(__file__).with_name("guards-wide.toml")))
        # stderr goes to a file, never to an unread pipe: the server logs every write (JSON
        # lines), and a full pipe (64 KB) would block its writer thread mid-request
        if self.log is None:
            fd, name = tempfile.mkstemp(prefix="pmargin-serve-", suffix=".log")
            os.close(fd)
            self.log = Path(name)
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(self.command(), env=env, cwd=self.cwd,
                                         stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text(errors="replace")[-4000:])
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start in {self.start_timeout:.0f} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.log is not None and not os.environ.get("PMARGIN_KEEP_SERVER_LOGS"):
            self.log.unlink(missing_ok=True)
            self.log = None

    def client(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.keys[role]}"})

    def post(self, role: str, path: str, body: Any, key: str | None = None) -> httpx.Response:
        with self.client(role) as c:
            return c.post(path, json=body,
                          headers={"Idempotency-Key": key or uuid.uuid4().hex})


def _db_url(backend: str, tmp: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'svc.db'}", None
    global _pg_warned
    if not _pg_available():
        if not _pg_warned:
            _pg_warned = True
            print(f"\nPostgreSQL not reachable at {PG_ADMIN}: service tests run on SQLite only")
        pytest.skip("PostgreSQL not reachable (PMARGIN_TEST_PG)")
    name = f"pmargin_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name


def _drop(name: str | None) -> None:
    if name is None:
        return
    eng = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("svc")
    from pmargin.service.server import create_key

    db_url, pg_name = _db_url(request.param, tmp_path)
    port = _free_port()
    srv = Server(f"http://127.0.0.1:{port}", db_url, port,
                 attest_key=str(tmp_path / "attest-key.pem"))
    from pmargin.service.database import connect, migrate

    migrate(connect(db_url))  # the database exists before the first key (keys create checks)
    srv.keys = {r: create_key(r, None, db_url) for r in ("admin", "operator", "risk")}
    srv.start()
    try:
        r = srv.post("operator", "/v1/market", market_json())
        assert r.status_code == 200, r.text
        yield srv
    finally:
        srv.stop()
        _drop(pg_name)


def open_account(srv: Server, acct: str, btc: str = "1") -> str:
    """Create a fresh account (unique id from ``acct``) and deposit ``btc``; return its id."""
    acct = f"{acct}-{uuid.uuid4().hex[:8]}"
    r = srv.post("operator", "/v1/accounts", {"id": acct, "book": "BTC"})
    assert r.status_code == 200, r.text
    r = srv.post("operator", "/v1/transfers", {"account": acct, "currency": "BTC",
                                               "amount": btc, "direction": "deposit"})
    assert r.status_code == 200, r.text
    return acct
