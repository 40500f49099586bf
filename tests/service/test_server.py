"""The service process: one per database, a port it cannot bind, keys for real accounts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.service.conftest import Server, _free_port

pytestmark = pytest.mark.slow


def serve(server: Server, port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PMARGIN_DATABASE_URL": server.db_url}
    return subprocess.run([sys.executable, "-m", "pmargin.cli", "serve", "--port", str(port)],
                          env=env, capture_output=True, text=True, timeout=120)


def test_a_second_service_on_the_same_database_is_refused(server: Server) -> None:
    out = serve(server, _free_port())
    assert out.returncode == 2, out.stderr
    errors = [ln for ln in out.stderr.splitlines() if not ln.startswith("warning: ")]
    assert len(errors) == 1  # one line (a core install adds a one-line Numba warning)
    assert "another pmargin service" in errors[0]


def test_a_port_in_use_is_refused_before_anything_else(server: Server) -> None:
    out = serve(server, server.port)
    assert out.returncode == 2, out.stderr
    assert "--port" in out.stderr


def test_keys_create_checks_the_account_and_the_database(server: Server, tmp_path) -> None:
    env = {**os.environ, "PMARGIN_DATABASE_URL": server.db_url}
    out = subprocess.run([sys.executable, "-m", "pmargin.cli", "keys", "create", "--role",
                          "trader", "--account", "nope"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert "--account" in out.stderr
    out = subprocess.run([sys.executable, "-m", "pmargin.cli", "keys", "create", "--role",
                          "admin", "--database-url", f"sqlite:///{tmp_path / 'none.db'}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert not (tmp_path / "none.db").exists()


def test_the_demo_seed_is_its_log(tmp_path) -> None:
    """seed_demo writes in bulk: a replay of what it wrote is the state it built, sums to zero."""
    import sqlalchemy as sa

    from pmargin.service import tables as T
    from pmargin.service.app import Service
    from pmargin.service.server import open_service, seed_demo

    svc = open_service(f"sqlite:///{tmp_path / 'seed.db'}")
    written = seed_demo(svc, 40)
    with svc.store.engine.connect() as c:
        seqs = [int(r[0]) for r in c.execute(sa.select(T.events.c.seq).order_by(T.events.c.seq))]
        kinds = [r[0] for r in c.execute(sa.select(T.events.c.kind).order_by(T.events.c.seq))]
        n_accounts = c.execute(sa.select(sa.func.count()).select_from(T.accounts)).scalar_one()
        created = {r[0]: int(r[1]) for r in c.execute(
            sa.select(T.accounts.c.id, T.accounts.c.created_seq))}
        sums = dict(c.execute(sa.select(T.ledger_entries.c.currency,
                                        sa.func.sum(T.ledger_entries.c.units))
                              .group_by(T.ledger_entries.c.currency)).all())
        ledger_seqs = {int(r[0]) for r in c.execute(sa.select(T.ledger_entries.c.seq))}
    assert seqs == list(range(1, written + 1))
    assert kinds.count("account") == n_accounts == 40
    assert kinds[0] == "market"
    assert all(kinds[s - 1] == "account" for s in created.values())
    assert all(kinds[s - 1] in ("deposit", "fill") for s in ledger_seqs)
    assert sums
    assert all(v == 0 for v in sums.values())
    replayed = Service(svc.cfg, svc.store)
    assert replayed.state.seq == svc.state.seq == written
    assert replayed.state.state_hash() == svc.state.state_hash()
