"""Database connection and schema migration (Alembic, applied on start)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from pmargin.errors import InvalidInput

__all__ = ["DEFAULT_SQLITE", "connect", "database_url", "migrate"]
# the lock of one service per book is pmargin.service.sharding.book_locks

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
