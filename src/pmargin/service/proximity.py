"""The liquidation-proximity curve of each book, computed in the background for the dashboard.

``GET /v1/book/proximity`` (risk) answers with the share of a book's accounts and of its open
interest that would be under maintenance margin after each index move of the stress auditor's
curve (``analytics/audit.toml`` ``[curve]``: every underlying moved by the same relative amount,
implied vols sticky to strike; -60 % to +60 % in 2 % steps by default). It is the curve of
``pmargin audit`` (:func:`pmargin.analytics.audit.proximity_curve`, one rule), run on a copy of the
book as the service holds it.

A curve costs one market preparation and one book recompute per move (seconds at 100,000
accounts), so it is never computed on the request path:

* the first request for a book starts a computation in a background thread and answers
  ``status: "computing"`` with no curve;
* a later request answers the latest finished curve, stamped with the event sequence number and
  market digest it was computed on; when the service has moved on since (``status:
  "outdated"``), a new computation starts unless one is running or the last one started less than
  ``refresh_seconds`` ago (``[proximity]`` of the venue TOML), so an open dashboard costs at most
  one curve per ``refresh_seconds``;
* a computation that fails is reported (``status: "failed"`` with the reason) and retried only
  when the state has moved on.

The copy of the book is taken under the view lock (array copies, no Python loop over accounts);
the curve is computed without any lock, on its own engine, so writes and the service's own
re-margining are never blocked by it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pmargin.analytics.audit import (
    CurveParams,
    book_exposure,
    curve_markets,
    load_audit_params,
    proximity_curve,
)
from pmargin.engine.book_engine import BookEngine
from pmargin.errors import InvalidInput

__all__ = ["ProximityCurves"]

log = logging.getLogger("pmargin.service")


@dataclass
class _BookCurve:
    """What is known of one book's curve."""

    curve: dict[str, Any] | None = None
    stamp: tuple[int, str] | None = None  # (seq, market digest) of ``curve``
    running: bool = False
    started: float = -1e18  # time.monotonic() of the last start
    failed: dict[str, Any] | None = None  # {stamp, reason} of the last failure
    lock: threading.Lock = field(default_factory=threading.Lock)


class ProximityCurves:
    """Background liquidation-proximity curves of a venue's books.

    Parameters
    ----------
    service : pmargin.service.app.Service
        The running service (its state, view lock and book models).
    refresh_seconds : float
        Least time between two computations of one book's curve, seconds.
    curve : CurveParams, optional
        The index moves (default: ``[curve]`` of the shipped ``audit.toml``).
    """

    def __init__(self, service: Any, refresh_seconds: float,
                 curve: CurveParams | None = None) -> None:
        self.svc = service
        self.refresh_seconds = float(refresh_seconds)
        self.params = curve if curve is not None else load_audit_params().curve
        self._books: dict[str, _BookCurve] = {}
        self._guard = threading.Lock()
        self.threads: list[threading.Thread] = []

    def _slot(self, book: str) -> _BookCurve:
        with self._guard:
            return self._books.setdefault(book, _BookCurve())

    def get(self, book: str | None) -> dict[str, Any]:
        """The book's latest curve and its status; starts a computation when one is due.

        Parameters
        ----------
        book : str or None
            Book id (default: the first book of the venue).

        Returns
        -------
        dict
            ``book``, ``status`` (``"current"``, ``"outdated"``, ``"computing"``, ``"failed"``
            or ``"unavailable"``), ``reason`` (why there is no current curve, else null),
            ``computing`` (a computation is running), ``seq`` and ``market_digest`` of the
            service now, ``refresh_seconds``, ``method`` and ``curve`` (null or: ``seq``,
            ``market_digest``, ``valuation_time``, ``computed_at``, ``seconds``, ``model``,
            ``active_accounts``, ``open_interest_usd``, ``moves`` (relative index moves),
            ``accounts_under_mm``, ``share_accounts``, ``share_open_interest`` (fractions)).
        """
        svc = self.svc
        s = svc.state
        bid = book if book is not None else svc.cfg.books[0].id
        if bid not in s.books:
            raise InvalidInput("book", bid, f"unknown book (valid: {sorted(s.books)})")
        slot = self._slot(bid)
        with svc.locks.view:
            seq, digest = int(s.seq), s.market_digest
            has_market = s.market is not None
            n_accounts = len(s.books[bid].accounts)
        out: dict[str, Any] = {
            "book": bid, "seq": seq, "market_digest": digest,
            "refresh_seconds": self.refresh_seconds, "method": (
                "share of active accounts and of open interest (gross notional before the move, "
                "USD) under maintenance margin after every underlying of the book moves by the "
                "same relative amount, implied vols sticky to strike (the curve of "
                "`pmargin audit`, analytics/audit.toml [curve])")}
        if not has_market or n_accounts == 0:
            with slot.lock:
                out.update(status="unavailable", computing=False, curve=None,
                           reason="no market yet" if not has_market else "the book has no accounts")
            return out
        now_stamp = (seq, str(digest))
        with slot.lock:
            due = (not slot.running and slot.stamp != now_stamp
                   and (slot.failed is None or slot.failed["stamp"] != now_stamp)
                   and (slot.curve is None
                        or time.monotonic() - slot.started >= self.refresh_seconds))
            if due:
                slot.running = True
                slot.started = time.monotonic()
            running = slot.running
            curve, stamp, failed = slot.curve, slot.stamp, slot.failed
        if due:
            self._start(bid, slot, now_stamp)
        if curve is not None and stamp == now_stamp:
            status, reason = "current", None
        elif failed is not None and failed["stamp"] == now_stamp and not running:
            status, reason = "failed", failed["reason"]
        elif curve is not None:
            status = "outdated"
            reason = (f"computed at seq {stamp[0] if stamp else '?'}; the service is at seq "
                      f"{seq}" + ("; a new curve is being computed" if running else
                                  f"; the next one starts within {self.refresh_seconds:g} s "
                                  "of a request"))
        else:
            status, reason = "computing", "the first curve of this book is being computed"
        out.update(status=status, reason=reason, computing=running, curve=curve)
        return out

    def _start(self, book: str, slot: _BookCurve, stamp: tuple[int, str]) -> None:
        t = threading.Thread(target=self._compute, args=(book, slot, stamp),
                             name=f"proximity-{book}", daemon=True)
        self.threads = [x for x in self.threads if x.is_alive()] + [t]
        t.start()

    def _compute(self, book: str, slot: _BookCurve, stamp: tuple[int, str]) -> None:
        svc = self.svc
        s = svc.state
        _lower_priority()
        try:
            # the view lock only: every engine change happens under it (Service.read_engine)
            with svc.locks.view:
                engine = s.engine(book)
                copy = engine.book_copy()
                market, model = engine.market, engine.model
                stamp = (int(s.seq), str(s.market_digest))
            t0 = time.perf_counter()
            own = BookEngine(model, copy, market)
            exposure = book_exposure(copy, market, own.result)
            moves = self.params.moves()
            pc, _ = proximity_curve(own, curve_markets(market, moves), moves, exposure)
            curve = {
                "seq": stamp[0], "market_digest": stamp[1],
                "valuation_time": market.valuation_time.isoformat(),
                "computed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "seconds": round(time.perf_counter() - t0, 3), "model": pc.model,
                "active_accounts": int(exposure.active.sum()),
                "open_interest_usd": float(exposure.gross_notional_usd[exposure.active].sum()),
                "moves": [float(x) for x in pc.moves],
                "accounts_under_mm": [int(x) for x in pc.accounts_under_mm],
                "share_accounts": [float(x) for x in pc.share_accounts],
                "share_open_interest": [float(x) for x in pc.share_open_interest]}
            with slot.lock:
                slot.curve, slot.stamp, slot.failed = curve, stamp, None
        except Exception as exc:  # reported on the route; the service keeps running
            log.exception("proximity curve of book %s failed", book)
            with slot.lock:
                slot.failed = {"stamp": stamp, "reason": f"{type(exc).__name__}: {exc}"}
        finally:
            with slot.lock:
                slot.running = False


BACKGROUND_NICE = 10
"""Niceness added to a curve's thread: the curve is background analytics, and the live path
(writes, reads, the stream) gets the CPU first."""


def _lower_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: ``setpriority`` on the thread id).

    Elsewhere, or where it is refused, the thread keeps the process's priority (the curve is
    then computed as before, only not yielding the CPU).
    """
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid)
                       + BACKGROUND_NICE)
    except (AttributeError, OSError):  # no setpriority here, or not allowed
        pass
