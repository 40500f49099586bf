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
