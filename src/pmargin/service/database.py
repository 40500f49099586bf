"""Database connection and schema migration (Alembic, applied on start)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from pmargin.errors import InvalidInput

__all__ = ["DEFAULT_SQLITE", "connect", "database_url", "instance_lock", "migrate"]

DEFAULT_SQLITE = "sqlite:///var/pmargin.db"


def database_url(explicit: str | None = None) -> str:
    """Return the database URL: the argument, else ``PMARGIN_DATABASE_URL``, else SQLite."""
    return explicit or os.environ.get("PMARGIN_DATABASE_URL") or DEFAULT_SQLITE


def connect(url: str) -> sa.Engine:
    """Create an engine for ``url`` (SQLite file created under its folder, WAL journal).

    Parameters
    ----------
    url : str
        ``sqlite:///path`` or ``postgresql+psycopg://user@host/db``.

    Returns
    -------
    sqlalchemy.Engine
        The engine.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise InvalidInput("database_url", url, f"is not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    if parsed.get_backend_name() != "postgresql":
        raise InvalidInput("database_url", url, "only sqlite and postgresql are supported")
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    cfg = Config()
    cfg.set_main_option("script_location",
                        str(resources.files("pmargin.service") / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


_LOCK_ID = 0x706D617267696E  # "pmargin": the advisory lock key of one service per database


def instance_lock(engine: sa.Engine) -> Any:
    """Take the database's one-service lock, or refuse to start.

    One service process owns a database (its state lives in memory): a second one on the same
    database would drift from the first. SQLite: an exclusive ``flock`` on ``<db>.lock``;
    PostgreSQL: a session advisory lock held by a dedicated connection.

    Returns
    -------
    object
        The handle that holds the lock; keep a reference for the life of the process.

    Raises
    ------
    InvalidInput
        When another service holds the lock.
    """
    url = engine.url
    if url.get_backend_name() == "sqlite":
        import fcntl

        path = Path(f"{url.database}.lock")
        handle = path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise InvalidInput("database_url", str(url), "another pmargin service is running on "
                               "this database (one service per database)") from None
        return handle
    conn = engine.connect()
    got = conn.execute(sa.text("select pg_try_advisory_lock(:k)"), {"k": _LOCK_ID}).scalar()
    if not got:
        conn.close()
        raise InvalidInput("database_url", url.render_as_string(hide_password=True),
                           "another pmargin service is running on this database "
                           "(one service per database)")
    return conn
