"""Books sharded across service instances on one database.

A book is the unit of margin (margin never crosses books), so the books of a venue can be
served by several ``pmargin serve`` processes on one database, each owning some books
(``--books BTC``). An instance

* replays, holds and re-margins only the events of its books (the log, the ledger and the
  sequence are shared: ``events.seq`` is the database's, so sequence numbers of one instance
  have gaps where the others wrote);
* refuses writes and reads for an account or book it does not own with a 421 (Misdirected
  Request) naming the book and, if configured (``--peer ETH=http://host:port``), the instance
  that owns it;
* takes a lock per owned book at start (a PostgreSQL session advisory lock per book; on SQLite a
  ``flock`` of ``<db>.<book>.lock``), so two instances can never own one book.

Market data is per instance: each instance accepts ``POST /v1/market`` for its own books (the
event is logged under its first book) and replays only its own market events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pmargin.errors import InvalidInput

__all__ = ["Shard", "WrongInstance", "book_locks", "parse_books", "parse_peers"]


class WrongInstance(InvalidInput):
    """The book is served by another instance (the API answers 421 with a hint)."""

    def __init__(self, book: str, owned: Iterable[str], location: str | None) -> None:
        where = f"; send it to {location}" if location else " (see the venue's shard map)"
        super().__init__("book", book, f"is not served by this instance (it serves "
                         f"{sorted(owned)}){where}")
        self.location = location


@dataclass
class Shard:
    """The books this instance owns, and where the others are (hints only).

    Attributes
    ----------
    owned : frozenset of str
        Book ids served here.
    venue_books : frozenset of str
        Every book of the venue TOML.
    peers : dict of str to str
        Book id -> base URL of the instance that owns it (for the 421 hint).
    foreign : dict of str to str
        Account id -> book, for accounts of books served elsewhere (filled by replay and by
        look-ups of the ``accounts`` table).
    """

    owned: frozenset[str]
    venue_books: frozenset[str]
    peers: dict[str, str] = field(default_factory=dict)
    foreign: dict[str, str] = field(default_factory=dict)

    @property
    def sharded(self) -> bool:
        """Whether some books of the venue are served elsewhere."""
        return self.owned != self.venue_books

    def refuse(self, book: str) -> None:
        """Raise :class:`WrongInstance` for a venue book that is not owned here."""
        if book in self.venue_books and book not in self.owned:
            raise WrongInstance(book, self.owned, self.peers.get(book))


def parse_books(value: str | None, venue_books: list[str]) -> frozenset[str]:
    """The ``--books`` option: comma-separated book ids of the venue (None/empty = all).

    Raises
    ------
    InvalidInput
        Naming ``--books`` and the unknown id.
    """
    if not value:
        return frozenset(venue_books)
    ids = [b.strip() for b in value.split(",") if b.strip()]
    for b in ids:
        if b not in venue_books:
            raise InvalidInput("--books", b, f"is not a book of the venue ({venue_books})")
    if not ids:
        raise InvalidInput("--books", value, "names no book")
    return frozenset(ids)


def parse_peers(values: Iterable[str], venue_books: list[str]) -> dict[str, str]:
    """``--peer BOOK=URL`` options (where another instance serves a book)."""
    out: dict[str, str] = {}
    for v in values:
        book, sep, url = v.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise InvalidInput("--peer", v, "must be BOOK=http://host:port")
        if book not in venue_books:
            raise InvalidInput("--peer", book, f"is not a book of the venue ({venue_books})")
        out[book] = url.rstrip("/")
    return out


def _lock_key(book: str) -> int:
    """Signed 64-bit advisory lock key of one book."""
    return int.from_bytes(hashlib.sha256(f"pmargin-book:{book}".encode()).digest()[:8],
                          "big", signed=True)


def book_locks(engine: sa.Engine, owned: Iterable[str]) -> list[Any]:
    """Take the instance lock of every owned book, or refuse to start.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The database.
    owned : iterable of str
        Books this instance serves.

    Returns
    -------
    list
        Handles holding the locks; keep them for the life of the process.

    Raises
    ------
    InvalidInput
        Naming ``book`` when another instance holds a book's lock.
    """
    url = engine.url
    held: list[Any] = []
    for book in sorted(owned):
        if url.get_backend_name() == "sqlite":
            import fcntl

            handle = Path(f"{url.database}.{book}.lock").open("w")  # noqa: SIM115 (kept open)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                _release(held)
                raise InvalidInput("book", book, "another pmargin service on this database "
                                   "already serves this book") from None
            held.append(handle)
            continue
        conn = engine.connect()
        got = conn.execute(sa.text("select pg_try_advisory_lock(:k)"),
                           {"k": _lock_key(book)}).scalar()
        conn.commit()
        if not got:
            conn.close()
            _release(held)
            raise InvalidInput("book", book, "another pmargin service on this database "
                               "already serves this book")
        held.append(conn)
    return held


def _release(held: list[Any]) -> None:
    for h in held:
        h.close()
