"""Read views of the service for the dashboard: paged accounts, instruments, models, history.

Routes (added to the app by :func:`add_view_routes`, roles as in ``docs/service.md``):

* ``GET /v1/book/accounts`` (risk): every account of a book with equity, IM, MM, margin ratio,
  excess over MM and health, sorted and paged on the server (100,000 accounts sort in
  milliseconds with numpy, so the browser receives one page only);
* ``GET /v1/book/proximity`` (risk): the book's liquidation-proximity curve
  (:mod:`pmargin.service.proximity`: computed in the background, stamped with its state);
* ``GET /v1/instruments`` (every role): the instruments of the market in use, searchable;
* ``GET /v1/me`` (every role): the key's role and, for a trader, its account;
* ``GET /v1/models`` (every role): the model names ``POST /v1/simulate`` accepts;
* ``GET /v1/accounts/{id}/events`` (risk, trader own): the account's events from the log and
  the health transitions seen at market updates since the service started.
"""


import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query

from pmargin.errors import InvalidInput
from pmargin.liquidation.health import HEALTH_NAMES, classify
from pmargin.service import tables as T

__all__ = ["SORT_KEYS", "HealthLog", "account_events", "add_view_routes", "book_accounts",
           "instrument_rows"]

SORT_KEYS = ("initial_margin", "maintenance_margin", "equity", "margin_ratio",
             "excess_over_mm", "account")
"""Columns ``GET /v1/book/accounts`` sorts by."""

MAX_PAGE_SIZE = 200
HEALTH_HISTORY = 100
"""Health transitions kept per account (the most recent)."""


class HealthLog:
    """Health transitions of every account, recorded at each market update (in memory).

    The first market update after start is the baseline (no transition recorded); after that,
    each account whose health state differs from the previous update gets an entry
    ``(seq, unix time, from, to)``. Kept since the service started: not rebuilt by replay.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[list[str], np.ndarray[Any, np.dtype[np.int64]]]] = {}
        self._log: dict[str, deque[dict[str, Any]]] = {}
        self._mu = threading.Lock()

    def record(self, book: str, seq: int, accounts: list[str],
               codes: np.ndarray[Any, np.dtype[Any]]) -> None:
        """Compare the health codes of a book (one per account, in ``accounts`` order).

        Parameters
        ----------
        book : str
            Book id.
        seq : int
            Sequence number of the market update.
        accounts : list of str
            Account ids, length n.
        codes : numpy.ndarray
            Health codes (indices of ``HEALTH_NAMES``), shape (n,).
        """
        codes = np.asarray(codes, dtype=np.int64).copy()
        now = time.time()
        with self._mu:
            prev = self._last.get(book)
            self._last[book] = (list(accounts), codes)
            if prev is None:
                return
            _old_ids, old = prev
            k = min(len(old), len(codes))  # accounts are appended, never removed
            changed = np.flatnonzero(old[:k] != codes[:k])
            for i in changed:
                acct = accounts[i]
                self._log.setdefault(acct, deque(maxlen=HEALTH_HISTORY)).append(
                    {"seq": seq, "time": now, "from": HEALTH_NAMES[int(old[i])],
                     "to": HEALTH_NAMES[int(codes[i])]})

    def of(self, account: str) -> list[dict[str, Any]]:
        """Transitions of one account, oldest first."""
        with self._mu:
            return list(self._log.get(account, ()))


def _ratio(eq: np.ndarray[Any, np.dtype[np.float64]], mm: np.ndarray[Any, np.dtype[np.float64]]
           ) -> np.ndarray[Any, np.dtype[np.float64]]:
    """MM / equity, the service's margin ratio (0 when MM is 0; inf when equity <= 0 < MM)."""
    out = np.zeros_like(eq)
    pos = eq > 0
    out[pos] = mm[pos] / eq[pos]
    out[~pos & (mm > 0)] = math.inf
    return out


def book_accounts(service: Any, book: str | None, sort: str, order: str, page: int, size: int,
                  health: list[str] | None = None, cache: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """One page of a book's accounts, sorted on the server.

    Parameters
    ----------
    service : pmargin.service.app.Service
        The venue (read under its lock by the caller).
    book : str or None
        Book id (default: the first book of the venue).
    sort : str
        One of :data:`SORT_KEYS`.
    order : {"asc", "desc"}
        Sort direction (ties keep the engine's account order).
    page : int
        Page number from 1.
    size : int
        Rows per page, 1 to :data:`MAX_PAGE_SIZE`.
    health : list of str, optional
        Keep only accounts in these health states.
    cache : dict, optional
        Kept by the caller between calls: the health codes, ratios, totals and sort orders of
        the latest state (sequence number and engine result), reused until either changes.

    Returns
    -------
    dict
        ``book``, ``seq``, ``total`` (rows after the filter), ``page``, ``size``, ``pages``,
        ``sort``, ``order``, ``market`` (digest, valuation time), ``summary`` (accounts,
        totals, and accounts and equity per health state, over the whole book) and ``rows``:
        ``account``,
        ``equity``, ``initial_margin``, ``maintenance_margin`` (margin currency),
        ``margin_ratio`` (MM / equity, ``null`` when unbounded), ``excess_over_mm``
        (equity - MM: the cushion before liquidation), ``health``.
    """
    s = service.state
    bid = book if book is not None else service.cfg.books[0].id
    if bid not in s.books:
        raise InvalidInput("book", bid, f"unknown book (valid: {sorted(s.books)})")
    if sort not in SORT_KEYS:
        raise InvalidInput("sort", sort, f"must be one of {list(SORT_KEYS)}")
    if order not in ("asc", "desc"):
        raise InvalidInput("order", order, "must be asc or desc")
    if page < 1:
        raise InvalidInput("page", page, "must be at least 1")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidInput("size", size, f"must lie in [1, {MAX_PAGE_SIZE}]")
    for h in health or ():
        if h not in HEALTH_NAMES:
            raise InvalidInput("health", h, f"must be one of {list(HEALTH_NAMES)}")
    bs = s.books[bid]
    out: dict[str, Any] = {
        "book": bid, "margin_currency": bs.cfg.margin_currency, "seq": s.seq, "page": page,
        "size": size, "sort": sort, "order": order,
        "market": None if s.market is None else {
            "digest": s.market_digest, "valuation_time": s.market.valuation_time.isoformat()},
        "total": 0, "pages": 0, "rows": []}
    if not bs.accounts or s.market is None:
        return out
    res = s.engine(bid).result
    # the arrays and orders of one state are computed once: the overview asks for two tables
    # (and every open page asks again) after each update; reads run under the view lock
    stamp = (bid, s.seq, id(res), len(bs.accounts))
    if cache is None or cache.get("stamp") != stamp:
        eq = np.asarray(res.equity, dtype=float)
        im = np.asarray(res.initial_margin, dtype=float)
        mm = np.asarray(res.maintenance_margin, dtype=float)
        codes = classify(eq, im, mm)
        counts = np.bincount(codes, minlength=len(HEALTH_NAMES))
        eq_by = np.bincount(codes, weights=eq, minlength=len(HEALTH_NAMES))
        base: dict[str, Any] = {"stamp": stamp, "eq": eq, "im": im, "mm": mm, "codes": codes,
                "ratio": _ratio(eq, mm), "orders": {}, "summary": {
                    "accounts": len(eq), "total_equity": float(eq.sum()),
                    "total_initial_margin": float(im.sum()),
                    "total_maintenance_margin": float(mm.sum()),
                    "by_health": {h: {"accounts": int(counts[k]), "equity": float(eq_by[k])}
                                  for k, h in enumerate(HEALTH_NAMES)}}}
        if cache is not None:
            cache.clear()
            cache.update(base)
    else:
        base = cache
    eq, im, mm, codes, ratio = base["eq"], base["im"], base["mm"], base["codes"], base["ratio"]
    out["summary"] = base["summary"]
    okey = (sort, order, tuple(sorted(set(health or ()))))
    ordered = base["orders"].get(okey)
    if ordered is None:
        idx = np.arange(len(eq))
        if health:
            keep = np.isin(codes, [HEALTH_NAMES.index(h) for h in health])
            idx = idx[keep]
        if sort == "account":
            names = np.asarray(bs.accounts, dtype=object)[idx]
            ordered = idx[np.argsort(names, kind="stable")]
            if order == "desc":
                ordered = ordered[::-1]
        else:
            key = {"initial_margin": im, "maintenance_margin": mm, "equity": eq,
                   "margin_ratio": ratio, "excess_over_mm": eq - mm}[sort][idx]
            ordered = idx[np.argsort(-key if order == "desc" else key, kind="stable")]
        base["orders"][okey] = ordered
    total = len(ordered)
    take = ordered[(page - 1) * size: page * size]
    out.update(total=total, pages=(total + size - 1) // size, rows=[{
        "account": bs.accounts[i], "equity": float(eq[i]), "initial_margin": float(im[i]),
        "maintenance_margin": float(mm[i]),
        "margin_ratio": float(ratio[i]) if math.isfinite(ratio[i]) else None,
        "excess_over_mm": float(eq[i] - mm[i]), "health": HEALTH_NAMES[int(codes[i])]}
        for i in take])
    return out


def instrument_rows(market: Any) -> list[dict[str, Any]]:
    """The instruments of a market with the fields the calculator searches on.

    Parameters
    ----------
    market : pmargin.market.MarketSnapshot
        The market in use.

    Returns
    -------
    list of dict
        Sorted by underlying, expiry, kind, strike and right: ``name``, ``kind``,
        ``underlying``, ``expiry`` (ISO-8601 UTC or ``null``), ``strike``
        (USD or ``null``), ``right`` (``call``/``put`` or ``null``), ``inverse`` (bool),
        ``mark_usd`` (mark price in USD per contract, ``null`` if it cannot be priced),
        ``price_currency`` and ``mark_price`` (the mark in the unit a fill's ``price`` uses:
        coin for inverse options, USD otherwise).
    """
    from pmargin.instruments import parse_instrument

    rows = []
    for name in market.instrument_names:
        try:
            inst = parse_instrument(name)
        except InvalidInput:
            continue
        try:
            mark = float(market.mark_price(inst))
        except Exception:  # an instrument the market cannot price is listed without a mark
            mark = math.nan
        px, ccy = mark, "USD"
        if inst.is_option and inst.is_inverse and math.isfinite(mark):
            px, ccy = mark / market.forward(inst.underlying, inst.expiry), inst.underlying
        elif inst.is_option:
            ccy = inst.quote  # linear options: premium in the quote stablecoin
        rows.append({
            "name": name, "kind": str(inst.kind.value), "underlying": inst.underlying,
            "expiry": None if inst.expiry is None else inst.expiry.isoformat(),
            "strike": inst.strike,
            "right": None if inst.right is None else str(inst.right.value),
            "inverse": bool(inst.is_inverse),
            "mark_usd": mark if math.isfinite(mark) else None,
            "price_currency": ccy,
            "mark_price": px if math.isfinite(px) else None})
    rows.sort(key=lambda r: (r["underlying"], r["expiry"] or "", r["kind"], r["strike"] or 0.0,
                             r["right"] or ""))
    return rows


def account_events(service: Any, account: str, after: int, limit: int) -> list[dict[str, Any]]:
    """The account's events from the log, in order, with their ledger postings.

    The log is filtered in SQL on the quoted account id in the payload (an index-free scan of
    ``events``), then exactly on the payload's ``account`` (or ``id`` for an account opening).

    Parameters
    ----------
    service : pmargin.service.app.Service
        The venue.
    account : str
        Account id (must exist).
    after : int
        Only events with ``seq > after``.
    limit : int
        At most this many events.

    Returns
    -------
    list of dict
        ``seq``, ``kind``, ``payload``, ``created_at`` and ``postings`` (ledger ``account``,
        ``currency``, ``units`` in the currency's quantum).
    """
    service.state.book_of(account)  # 404 for an unknown account
    esc = account.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f'%"{esc}"%'
    out: list[dict[str, Any]] = []
    ev = T.events
    with service.store.engine.connect() as c:
        q = (sa.select(ev).where(ev.c.seq > after, ev.c.payload.like(pattern, escape="\\"))
             .order_by(ev.c.seq))
        for e in c.execute(q):
            p = json.loads(e.payload)
            who = p.get("id") if e.kind == "account" else p.get("account")
            if who != account and account not in (p.get("accounts") or ()):
                continue
            out.append({"seq": int(e.seq), "kind": e.kind, "payload": p,
                        "created_at": e.created_at, "postings": []})
            if len(out) >= limit:
                break
        if out:
            le = T.ledger_entries
            by_seq = {r["seq"]: r for r in out}
            rows = c.execute(sa.select(le.c.seq, le.c.account, le.c.currency, le.c.units)
                             .where(le.c.seq.in_(list(by_seq))).order_by(le.c.id))
            for r in rows:
                by_seq[int(r.seq)]["postings"].append(
                    {"account": r.account, "currency": r.currency, "units": int(r.units)})
    return out


def add_view_routes(app: FastAPI, service: Any, auth: Callable[..., Any],
                    need: Callable[..., None], errors: dict[int | str, dict[str, Any]]) -> None:
    """Add the dashboard's read routes to the app (roles checked by ``need``)."""
    from pmargin.models import list_models

    Who = Annotated[tuple[str, str | None, str], Depends(auth)]
    health_log = HealthLog()

    def record_health() -> None:
        s = service.state
        for bid, bs in s.books.items():
            if bs.engine is None or not bs.accounts or s.market is None:
                continue
            res = bs.engine.result
            health_log.record(bid, s.seq, bs.accounts,
                              classify(res.equity, res.initial_margin, res.maintenance_margin))

    service.epoch_hooks.append(record_health)
    cache: dict[str, Any] = {}
    book_cache: dict[str, Any] = {}

    @app.get("/v1/book/accounts", responses=errors)
    def book_accounts_route(
            who: Who, book: str | None = None,
            sort: Literal["initial_margin", "maintenance_margin", "equity", "margin_ratio",
                          "excess_over_mm", "account"] = "initial_margin",
            order: Literal["asc", "desc"] = "desc", page: Annotated[int, Query(ge=1)] = 1,
            size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 25,
            health: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
        """A book's accounts, sorted and paged on the server (risk)."""
        need(who, "risk")
        # the view lock only (a copy of in-memory arrays): a page never waits for a write's
        # database work, such as a market epoch's health events and attestation
        with service.locks.view:
            return book_accounts(service, book, sort, order, page, size, health, book_cache)

    @app.get("/v1/book/proximity", responses=errors)
    def book_proximity(who: Who, book: str | None = None) -> dict[str, Any]:
        """A book's liquidation-proximity curve, computed in the background (risk)."""
        need(who, "risk")
        return dict(service.proximity.get(book))

    @app.get("/v1/instruments", responses=errors)
    def instruments(who: Who, q: str = "",
                    limit: Annotated[int, Query(ge=1, le=5000)] = 5000) -> dict[str, Any]:
        """Instruments of the market in use; ``q``: words that must all appear (any role)."""
        with service.locks.view:
            mkt, digest = service.state.market, service.state.market_digest
        if mkt is None:
            raise InvalidInput("market", None, "no market yet: post one to /v1/market first")
        if cache.get("digest") != digest:
            cache.update(digest=digest, rows=instrument_rows(mkt))
        words = q.upper().split()
        rows = [r for r in cache["rows"] if all(w in r["name"] for w in words)]
        return {"market_digest": digest, "valuation_time": mkt.valuation_time.isoformat(),
                "index": {u: mkt.index_price(u) for u in mkt.underlyings},
                "total": len(rows), "instruments": rows[:limit]}

    @app.get("/v1/me", responses=errors)
    def me(who: Who) -> dict[str, Any]:
        """The key's role and (trader) account, so that a page knows what it may show."""
        return {"role": who[0], "account": who[1]}

    @app.get("/v1/models", responses=errors)
    def models(who: Who) -> dict[str, Any]:
        """Model names accepted by ``POST /v1/simulate`` (any role)."""
        return {"models": list_models()}

    @app.get("/v1/accounts/{account_id}/events", responses=errors)
    def events_of(account_id: str, who: Who, after: Annotated[int, Query(ge=0)] = 0,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
        """The account's events with ledger postings, and its health transitions."""
        need(who, "risk", "trader", account=account_id)
        rows = account_events(service, account_id, after, limit)
        return {"account": account_id, "events": rows,
                "next_after": rows[-1]["seq"] if rows else after,
                "health_history": health_log.of(account_id)}
