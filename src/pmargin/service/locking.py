"""The service's locks: one writer lock per book, and a short view lock for memory.

* **Writer locks** (one re-entrant lock per book): a write holds the locks of the books it
  touches from its idempotency look-up to its apply, so that the checks and the state change
  are atomic per book (two withdrawals of one account can never both pass). Writes of
  different books run side by side; a market update (every book) takes every book's lock, in
  the order of the book ids, as does a batch of fills of several books.
* **View lock** (one re-entrant lock): held while the in-memory state is read or changed -- a
  write's effect build and margin check, its apply after the commit, and a reader's copy of
  what it answers. Never held across a database round trip of a single write, so a reader waits
  at most for an in-memory step of a write (microseconds for a fill; the re-margining of the
  book for a market update), never for a commit.

``Service.lock`` (every book's writer lock) is kept for code that needs the whole venue still.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

__all__ = ["BookLocks", "Locked"]


class Locked:
    """Several re-entrant locks taken in a fixed order (a context manager).

    Parameters
    ----------
    locks : iterable of threading.RLock
        The locks, already in the global order (sorted by book id).
    """

    def __init__(self, locks: Iterable[threading.RLock]) -> None:
        self.locks = list(locks)

    def acquire(self) -> bool:
        """Take every lock in order (blocking)."""
        for lk in self.locks:
            lk.acquire()
        return True

    def release(self) -> None:
        """Release in reverse order."""
        for lk in reversed(self.locks):
            lk.release()

    def __enter__(self) -> Locked:
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class BookLocks:
    """Writer lock of each book and the view lock.

    Parameters
    ----------
    books : iterable of str
        Book ids of the venue.
    """

    def __init__(self, books: Iterable[str]) -> None:
        self._locks = {b: threading.RLock() for b in sorted(books)}
        self.view = threading.RLock()

    def books(self, ids: Iterable[str] | None = None) -> Locked:
        """The writer locks of ``ids`` (every book when None), in book-id order.

        Parameters
        ----------
        ids : iterable of str, optional
            Books written; unknown ids are ignored (the write then fails its own validation).

        Returns
        -------
        Locked
            A context manager holding them.
        """
        if ids is None:
            return Locked(self._locks.values())
        want = set(ids)
        return Locked(lk for b, lk in self._locks.items() if b in want)

    def all(self) -> Locked:
        """Every book's writer lock."""
        return self.books(None)
