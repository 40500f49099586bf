"""The HTTP API (FastAPI). Writes are serialised per book and persisted before they apply.

Roles: ``trader`` (its own account: reads, what-if, withdrawals), ``operator`` (accounts,
fills, transfers, market data), ``risk`` (reads everything), ``admin`` (keys). Every write takes
an ``Idempotency-Key`` header: a retry returns the first answer, the same key with another body
is a 409.
"""


import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, HTTPException, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from pmargin.errors import InvalidInput, PmarginError
from pmargin.feeds.base import SOURCE_PATTERN, MarketUpdate, check_source
from pmargin.feeds.guards import FeedStale, OracleGuard, load_guard_params
from pmargin.feeds.http import HttpFeed
from pmargin.liquidation.health import HEALTH_NAMES, classify
from pmargin.market import MarketSnapshot
from pmargin.service.config import VenueConfig
from pmargin.service.distance import DistanceCache
from pmargin.service.locking import BookLocks
from pmargin.service.money import parse_decimal
from pmargin.service.observability import Metrics
from pmargin.service.sharding import Shard, WrongInstance
from pmargin.service.state import Effect, UnknownAccount, VenueState
from pmargin.service.store import Store, digest_of

__all__ = ["Service", "create_app"]

log = logging.getLogger("pmargin.service")

ROLES = ("trader", "operator", "risk", "admin")
MAX_BODY = 8 * 1024 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Amount = Annotated[StrictStr | StrictFloat | StrictInt,
                   Field(description="decimal number or decimal string")]


class AccountIn(_Body):
    """A new account."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    book: str


class TransferIn(_Body):
    """A deposit or withdrawal, in the currency's own units."""

    account: str
    currency: str
    amount: Amount
    direction: Literal["deposit", "withdrawal"]


class FillIn(_Body):
    """A trade fill.

    ``price``: per contract in the settlement currency for options (coin for inverse options),
    USD per coin for futures and perpetuals; ``price_currency`` states it.
    """

    account: str
    instrument: str
    quantity: Amount
    price: Amount
    price_currency: str
    fee: Amount = "0"
    new_order: bool = True


class FillBatchIn(_Body):
    """Fills applied in order in one database transaction (one ``Idempotency-Key``)."""

    fills: list[FillIn] = Field(min_length=1, max_length=1000)


class WhatIfFill(_Body):
    """A hypothetical fill (same units as :class:`FillIn`)."""

    instrument: str
    quantity: Amount
    price: Amount
    price_currency: str


class WhatIfIn(_Body):
    """Hypothetical fills."""

    fills: list[WhatIfFill] = Field(min_length=1, max_length=500)


class SimulateIn(_Body):
    """A portfolio (the portfolio JSON of the CLI) margined under one or several models."""

    portfolio: dict[str, Any]
    models: list[str] = Field(min_length=1, max_length=12)
    explain: bool = Field(False, description="add each model's explanation (as the CLI's "
                          "`pmargin margin --json`: scenarios, worst scenario, positions)")


class ErrorOut(BaseModel):
    """Every refused request: what was wrong, naming the field and the value."""

    model_config = ConfigDict(extra="allow")

    error: str
    field: str
    value: Any = None
    reason: str


class DetailOut(BaseModel):
    """Authentication and authorisation failures (401, 403)."""

    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": DetailOut, "description": "missing or invalid API key"},
    403: {"model": DetailOut, "description": "the key's role or account does not allow it"},
    404: {"model": ErrorOut, "description": "no account with this id"},
    421: {"model": ErrorOut, "description": "the account's book is served by another instance "
          "(sharded venue; ``location`` names it when known)"},
    409: {"model": ErrorOut, "description": "idempotency key reused with another request"},
    422: {"model": ErrorOut, "description": "invalid input, or refused by a margin check"},
    503: {"model": ErrorOut, "description": "market feed stale: risk-increasing action frozen"},
}


class KeyIn(_Body):
    """A new API key."""

    role: Literal["trader", "operator", "risk", "admin"]
    account: str | None = None


def market_from_payload(payload: dict[str, Any]) -> MarketSnapshot:
    """Rebuild a market snapshot from its stored form (JSON market or gzipped Deribit CSV)."""
    from pmargin.attest.inputs import market_from_stored

    return market_from_stored(payload)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class Service:
    """The venue: state in memory, store in the database, a writer lock per book.

    ``locks.books(ids)`` serialises the writes of those books; ``locks.view`` guards the
    in-memory state for the short steps that read or change it (see
    :mod:`pmargin.service.locking`); ``lock`` is every book's writer lock.
    """

    def __init__(self, cfg: VenueConfig, store: Store, shard: Shard | None = None) -> None:
        ids = [b.id for b in cfg.books]
        self.shard = shard or Shard(frozenset(ids), frozenset(ids))
        # this instance's venue: the books it owns (all, unless sharded; pmargin.service.sharding)
        self.venue = cfg
        self.cfg = cfg.model_copy(update={"books": [b for b in cfg.books
                                                    if b.id in self.shard.owned]})
        self.store = store
        self.state = VenueState(self.cfg)
        self.locks = BookLocks(b.id for b in self.cfg.books)
        self.lock = self.locks.all()
        self.distances = DistanceCache()
        self.metrics = Metrics()
        self.attestor: Any = None  # service.attestations.Attestor, set by open_service
        self.accepted_at: float | None = None  # perf_counter() of the last market commit
        # market feeds (pmargin.feeds): POST /v1/market is the HTTP feed; every update goes
        # through the oracle guard (jump band, stale clock), restored from the log by replay
        self.http_feed = HttpFeed()
        self.guard = OracleGuard(load_guard_params())
        from pmargin.service.enforcement import Enforcer
        from pmargin.service.stream import StreamHub

        self.stream = StreamHub(self.cfg.stream.queue_size)
        self._last_book_publish = -1e18  # time.monotonic() of the last book message
        self._conflate_lock = threading.Lock()
        self._conflate_timer: threading.Timer | None = None
        self.enforcer = Enforcer(self)
        from pmargin.service.proximity import ProximityCurves

        self.proximity = ProximityCurves(self, self.cfg.proximity.refresh_seconds)
        self.epoch_hooks: list[Callable[[], None]] = []
        """Called (under the writer locks) after every market update's epoch summary is stored."""
        self.replay()

    def books_of(self, accounts: Iterable[str]) -> list[str] | None:
        """Books whose writer locks a write to ``accounts`` takes (None: all, unknown account).

        An unknown account takes every lock: it may be being created right now (its write
        then fails its own validation).
        """
        out = set()
        for a in accounts:
            b = self.state.account_book.get(a)
            if b is None:
                self.locate(a)  # 421 if another instance serves its book
                return None
            out.add(b)
        return sorted(out)

    def locate(self, account: str) -> None:
        """Raise :class:`WrongInstance` if ``account`` belongs to a book served elsewhere."""
        if account in self.state.account_book or not self.shard.sharded:
            return
        book = self.shard.foreign.get(account) or self.store.account_book(account)
        if book is not None:
            self.shard.foreign[account] = book
            self.shard.refuse(book)

    # ------------------------------------------------------------------ replay
    def effect_of(self, kind: str, book: str, p: dict[str, Any],
                  state: VenueState | None = None) -> Effect:
        """The effect of a logged event on ``state`` (default: the service's; as live)."""
        s = self.state if state is None else state
        if kind == "account":
            return s.effect_account(p["id"], p["book"])
        if kind in ("deposit", "withdrawal"):
            return s.effect_transfer(p["account"], p["currency"], Decimal(p["amount"]), kind)
        if kind == "fill":
            return s.effect_fill(p["account"], p["instrument"], Decimal(p["quantity"]),
                                 Decimal(p["price"]), p["price_currency"], Decimal(p["fee"]))
        if kind == "market":
            mkt = market_from_payload(self.store.market_payload(p["digest"]))
            return Effect("market", book, market=mkt, market_digest=p["digest"])
        from pmargin.service.enforcement import LOGGED_KINDS

        if kind in LOGGED_KINDS:
            return self.enforcer.effect_of(kind, book, p)
        raise ValueError(f"unknown event kind {kind}")

    def replay(self) -> None:
        """Rebuild the state from the event log (books owned here) and the feed guard's state.

        The guard gets back the last accepted market update (its prices, time and source).
        """
        last: tuple[dict[str, Any], str] | None = None
        for ev in self.store.events():
            p = json.loads(ev.payload)
            if ev.book not in self.shard.owned:
                if ev.kind == "account":
                    self.shard.foreign[p["id"]] = ev.book
                continue
            eff = self.effect_of(ev.kind, ev.book, p)
            self.state.apply(eff, int(ev.seq))
            self.enforcer.observe(ev.kind, ev.book, p, int(ev.seq))
            if ev.kind == "market":
                last = (p, str(ev.created_at))
        mkt = self.state.market
        if last is not None and mkt is not None:
            self.guard.restore({u: mkt.index_price(u) for u in mkt.underlyings},
                               datetime.fromisoformat(last[1]), mkt.valuation_time,
                               last[0].get("source"), last[0]["digest"])

    # ------------------------------------------------------------------ writes
    def write(self, api_key_id: str, key: str | None, kind: str, payload: dict[str, Any],
              build: Callable[[], Effect], check: Callable[[Effect], None] | None = None,
              market_row: dict[str, Any] | None = None,
              after: Callable[[dict[str, Any]], None] | None = None,
              books: Iterable[str] | None = None,
              extra: dict[str, Any] | None = None) -> JSONResponse:
        """Idempotent, serialised (per book), persisted-then-applied write.

        ``books``: the books the write touches (their writer locks are held throughout;
        None = every book). The effect is built and checked, and later applied, under the
        view lock; the commit between the two is not (readers never wait for the database).

        Idempotency keys are scoped by the API key that sent them: another client reusing the
        same header value neither sees nor replays this client's answer. ``after(response)``
        runs once the write is applied, still under the lock (not on a retry answered from the
        idempotency table). ``extra`` is added to the response (and stored with it). A
        :class:`~pmargin.feeds.guards.FeedStale` refusal (stale market) is not remembered: a
        retry once the feed is fresh is judged again.
        """
        if not key:
            raise InvalidInput("Idempotency-Key", key, "header is required on every write")
        if len(key) > 160:
            raise InvalidInput("Idempotency-Key", key[:20] + "...", "is longer than 160")
        key = f"{api_key_id}/{key}"
        digest = digest_of({"kind": kind, "payload": payload})
        for b in books or ():
            self.shard.refuse(b)
        with self.locks.books(books):
            seen = self.store.remembered(key)
            if seen is not None:
                return _remembered(seen, digest, key)
            refused: MarginRefused | None = None
            with self.locks.view:
                eff = build()
                if check is not None:
                    try:
                        check(eff)
                    except MarginRefused as exc:
                        refused = exc
            if refused is not None:
                body = refused.body()
                try:
                    self.store.remember_refusal(key, digest, 422, body)
                except sa.exc.IntegrityError:  # the same key, just used in another book
                    return self._raced(key, digest)
                return JSONResponse(body, 422)
            response: dict[str, Any] = {"accepted": True, "kind": kind, **(extra or {})}
            eff.check_balanced()  # before anything is written (apply checks it again)
            try:
                seq = self.store.commit(eff, payload, key, digest, response, market_row)
            except sa.exc.IntegrityError:
                return self._raced(key, digest)
            if kind == "market":
                self.accepted_at = time.perf_counter()
            with self.locks.view:
                self.state.apply(eff, seq)
            if kind == "market":
                # the margins are current: stream them now, not after the epoch's summary,
                # attestation and health events (seconds on a large book)
                self.publish(kind, eff, seq)
            log.info("write", extra={"event": "write", "kind": kind, "seq": seq,
                                     "book": eff.book})
            self.enforcer.observe(kind, eff.book, payload, seq)
            if after is not None:
                after(response)
            self.enforcer.after_write(kind, eff, seq)
            return JSONResponse(response, 200)

    def _raced(self, key: str, digest: str) -> JSONResponse:
        """Answer a write whose commit lost a race on its idempotency key (or account id).

        Two writes to different books (different writer locks) with the same key: the first
        commit wins, the second is answered as a retry of it (or a 409). An account id
        created at the same moment by another instance on the database: a 422.
        """
        seen = self.store.remembered(key)
        if seen is not None:
            return _remembered(seen, digest, key)
        raise InvalidInput("id", None, "was created concurrently by another request or "
                           "instance (account ids are unique across the venue)")

    def write_batch(self, api_key_id: str, key: str | None,
                    items: list[tuple[dict[str, Any], Callable[[], Effect],
                                      Callable[[Effect], None] | None]]) -> JSONResponse:
        """Fills in order, one transaction: same effects and checks as one request each.

        Every fill is first validated against the current state (a bad one refuses the whole
        batch with a 422 naming ``fills[i].field``, nothing changed). Then each fill is built
        against the state left by the earlier ones, checked (a margin refusal refuses that
        fill only, reported in ``results``) and applied in memory. The accepted fills are then
        written in bulk (:meth:`Store.write_fill_events`: the same rows as one by one) in one
        transaction; if that fails the in-memory state is rebuilt from the log.
        Event ``i`` of the batch carries the idempotency key ``<key>#<i>``.
        """
        if not key:
            raise InvalidInput("Idempotency-Key", key, "header is required on every write")
        if len(key) > 160:
            raise InvalidInput("Idempotency-Key", key[:20] + "...", "is longer than 160")
        key = f"{api_key_id}/{key}"  # scoped by the API key, as in write()
        digest = digest_of({"kind": "fill-batch", "payload": [p for p, _, _ in items]})
        # the batch is applied in memory fill by fill before its one commit: readers wait for
        # the whole batch (the view lock), so they never see a fill that is not committed
        with self.locks.books(self.books_of(str(p["account"]) for p, _, _ in items)), \
                self.locks.view:
            seen = self.store.remembered(key)
            if seen is not None:
                return _remembered(seen, digest, key)
            for i, (_, build, _) in enumerate(items):
                try:
                    build()
                except InvalidInput as exc:
                    raise InvalidInput(f"fills[{i}].{exc.field}", exc.value, exc.reason) from None
            results: list[dict[str, Any]] = []
            accepted: list[tuple[Effect, dict[str, Any], str]] = []
            try:
                for i, (p, build, check) in enumerate(items):
                    eff = build()
                    if check is not None:
                        try:
                            check(eff)
                        except (MarginRefused, FeedStale) as exc:
                            results.append({"index": i, **exc.body()})
                            continue
                    # applied now so that the next fill is built and checked after this one;
                    # the seq is set once the events are written (below)
                    self.state.apply(eff, self.state.seq)
                    accepted.append((eff, p, f"{key}#{i}"))
                    results.append({"index": i, "accepted": True})
                with self.store.engine.begin() as c:
                    seqs = self.store.write_fill_events(c, accepted)
                    it = iter(seqs)
                    for r in results:
                        if r["accepted"]:
                            r["seq"] = next(it)
                    last = seqs[-1] if seqs else None
                    response = {"accepted": len(seqs), "refused": len(results) - len(seqs),
                                "kind": "fill-batch", "seq": last, "results": results}
                    self.store.write_key(c, key, digest, 200, response, last)
                if last is not None:
                    self.state.seq = last
                    log.info("write", extra={"event": "write", "kind": "fill-batch",
                                             "seq": last, "first_seq": seqs[0],
                                             "fills": len(seqs)})
                    done = Effect("fill", accepted[0][0].book)
                    for e, _, _ in accepted:
                        done.postings += e.postings
                        done.positions.update(e.positions)
                    self.enforcer.after_write("fill", done, last)
            except BaseException:
                if accepted:
                    self.reload()
                raise
            return JSONResponse(response, 200)

    def reload(self) -> None:
        """Rebuild the in-memory state from the log (after a failed commit)."""
        self.state = VenueState(self.cfg)
        self.enforcer.reset()
        self.replay()

    def write_system(self, items: list[tuple[str, str, dict[str, Any], Effect, str]],
                     follow: Callable[[list[int]], list[tuple[str, str, dict[str, Any],
                                                             Effect, str]]] | None = None
                     ) -> list[int]:
        """Events the service writes itself (health, liquidation steps): one transaction.

        ``items`` are ``(kind, book, payload, effect, idempotency key)``; the keys are unique
        in the log, so an event can never be written twice. Same lock and same rows as
        :meth:`write`. The effects are applied in memory inside the transaction, then
        ``follow(seqs)`` may return more events (the health transitions the change caused),
        written in the same transaction: all of them or none are stored. If the commit fails
        the in-memory state is rebuilt from the log. Returns the sequence numbers.
        """
        with self.lock:
            for it in items:
                it[3].check_balanced()
            done: list[tuple[str, str, dict[str, Any], Effect, int]] = []
            try:
                # readers wait for the commit (as for a fill batch): they never see a step that
                # is not stored
                with self.locks.view, self.store.engine.begin() as c:
                    batch = items
                    while batch:
                        seqs = [self.store.write_event(c, eff, payload, key)
                                for _, _, payload, eff, key in batch]
                        for (kind, book, payload, eff, _), seq in zip(batch, seqs, strict=True):
                            self.state.apply(eff, seq)
                            self.enforcer.observe(kind, book, payload, seq)
                            done.append((kind, book, payload, eff, seq))
                        batch = follow(seqs) if follow is not None and batch is items else []
            except BaseException:
                if done:
                    self.reload()
                raise
            for kind, _, payload, eff, seq in done:
                self.publish(kind, eff, seq, payload)
            return [d[4] for d in done]

    def publish(self, kind: str, eff: Effect, seq: int,
                payload: dict[str, Any] | None = None) -> None:
        """Stream what an applied event changed (no I/O: queued per client)."""
        hub = self.stream
        if not hub.clients:
            return
        followed = hub.wants_accounts()
        if followed:
            if kind == "market":
                touched = [a for a in followed if a in self.state.account_book]
            else:
                touched = sorted({a for (a, _) in eff.positions} | {
                    a[5:] for a, _, _ in eff.postings if a.startswith("acct:")} & followed)
            for a in touched:
                try:
                    v = self.account_view(a)
                except PmarginError:
                    continue
                hub.publish_account(a, {"type": "margin", **{k: v[k] for k in (
                    "id", "book", "balances", "equity", "initial_margin",
                    "maintenance_margin", "health", "seq", "market_digest")}})
            if kind in ("health", "liquidation") and payload is not None:
                a = str(payload["account"])
                if a in followed:
                    hub.publish_account(a, {"type": kind, "seq": seq, **{
                        k: v for k, v in payload.items() if k != "plan"}})
        if hub.has_risk() and kind not in ("health",) and self.state.market is not None:
            from pmargin.service.enforcement import LOGGED_KINDS

            if kind in LOGGED_KINDS and self._book_conflated(kind):
                return
            self._publish_books(kind, seq)

    def _publish_books(self, cause: str, seq: int) -> None:
        """One ``book`` message per book with accounts to the risk clients (state now)."""
        self._last_book_publish = time.monotonic()
        for bid, bs in self.state.books.items():
            if bs.accounts:
                summ = self._book_summary(bid, largest=False)
                self.stream.publish_book({"type": "book", "seq": seq, "cause": cause,
                                          "published_at": time.time(),
                                          "market_digest": self.state.market_digest, **summ,
                                          **self.enforcer.book_section(bid)})

    def _book_conflated(self, kind: str) -> bool:
        """Whether a system event's book message waits (``[stream] book_interval_seconds``).

        The enforcer's steps can follow each other every few milliseconds in a crash, and each
        book message sums the whole book: within the interval after a book message, the message
        of a system event is not sent; a timer sends the state as it then is (the newest
        sequence number, ``cause: "conflated"``) when the interval ends. Outside writes (fills,
        transfers, markets) always send their own message at once.
        """
        wait = self.cfg.stream.book_interval_seconds - (
            time.monotonic() - self._last_book_publish)
        if wait <= 0:
            return False
        with self._conflate_lock:
            if self._conflate_timer is None:
                def fire() -> None:
                    with self._conflate_lock:
                        self._conflate_timer = None
                    with self.locks.view:  # the state as it is now, read consistently
                        if self.stream.has_risk() and self.state.market is not None:
                            self._publish_books("conflated", int(self.state.seq))

                self._conflate_timer = threading.Timer(wait, fire)
                self._conflate_timer.daemon = True
                self._conflate_timer.start()
        return True

    # ------------------------------------------------------------------ checks
    def check_market(self, mkt: MarketSnapshot, eff: Effect | None = None) -> None:
        """A new market must price every book as it stands (else it is refused, unsaved).

        Every instrument held must be listed, and each book's model must prepare on it. The
        preparation of each engine's book is kept in ``eff.prepared``: applying the market
        then recomputes without preparing again.
        """
        for bid, bs in self.state.books.items():
            # each instrument held once (with the first account holding it): the same first
            # refusal as a check of every position, without 100,000 name look-ups
            held: dict[str, str] = {}
            for acct, row in bs.positions.items():
                for name in row:
                    held.setdefault(name, acct)
            for name, acct in held.items():
                if not mkt.is_listed(name):
                    raise InvalidInput("market.instruments", name,
                                       f"is held (account {acct}, book {bid}) but the new "
                                       "market does not list it")
            if bs.accounts:
                try:
                    eng = self.state.engine(bid)
                    prep = bs.model.prepare(eng.book, mkt)
                    if eff is not None:
                        eff.prepared[bid] = (eng, eng.book.n_instruments, prep)
                except PmarginError:  # the engine may carry columns nobody holds any more
                    bs.model.prepare(self.state.held_book(bid), mkt)  # raises: refused

    def check_fill(self, account: str, eff: Effect) -> None:
        """A fill flagged as a new order must leave equity >= IM (risk-reducing passes)."""
        self._check(account, eff, allow_risk_reducing=True)

    def check_price(self, instrument: str, price: Decimal) -> None:
        """Refuse a fill price outside the venue's band around the mark in use (venue.toml)."""
        from pmargin.instruments import parse_instrument

        mkt = self._market()
        inst = parse_instrument(instrument)
        cfg = self.cfg.market
        mark_usd = mkt.mark_price(inst)
        px = float(price)
        if inst.is_option:
            assert inst.expiry is not None
            und = mkt.forward(inst.underlying, inst.expiry) if inst.is_inverse else 1.0
            mark = mark_usd / und if inst.is_inverse else mark_usd
            unit = 1.0 if inst.is_inverse else mkt.index_price(inst.underlying)
            band = cfg.option_price_band_rel * mark + cfg.option_price_band_abs * unit
        else:
            mark = mark_usd
            band = cfg.futures_price_band * mark
        if abs(px - mark) > band:
            raise InvalidInput("price", str(price),
                               f"is outside the band around the mark {mark:.6g} "
                               f"(+/- {band:.6g}; venue.toml [market])")

    def check_withdrawal(self, account: str, eff: Effect) -> None:
        """A withdrawal must leave equity >= IM."""
        self._check(account, eff, allow_risk_reducing=False)

    def hypothetical(self, account: str, eff: Effect
                     ) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
        """The account's engine row after ``eff`` (nothing applied)."""
        s = self.state
        bs = s.book_of(account)
        pos, coll = s._row(bs, account)
        qq = self.cfg.money.quantity_quantum
        from pmargin.instruments import parse_instrument
        from pmargin.service.money import from_units

        for (acct, inst), (units, entry) in eff.positions.items():
            if acct != account:
                continue
            if units == 0:
                pos.pop(inst, None)
            else:
                opt = parse_instrument(inst).is_option
                pos[inst] = (float(from_units(units, qq)), math.nan if opt else float(entry))
        delta: dict[str, int] = {}
        for ledger_acct, ccy, u in eff.postings:
            if ledger_acct == f"acct:{account}":
                delta[ccy] = delta.get(ccy, 0) + u
        for ccy, u in delta.items():
            if ccy not in coll:
                raise InvalidInput("currency", ccy, "is not a collateral currency of the book")
            coll[ccy] = float(s.balance(account, ccy) + from_units(u, self.cfg.quantum(ccy)))
        return pos, coll

    def _check(self, account: str, eff: Effect, allow_risk_reducing: bool) -> None:
        eng = self.state.engine(self.state.book_of(account).cfg.id)
        pos, coll = self.hypothetical(account, eff)
        v = eng.check_account(account, pos, coll, allow_risk_reducing)
        # a stale market freezes withdrawals and fills that raise IM (pmargin.feeds.guards)
        status = self.guard.status()
        if status.stale and (not allow_risk_reducing
                             or v.initial_margin > v.before_initial_margin):
            raise FeedStale(status, "a withdrawal" if not allow_risk_reducing
                            else "a new order that raises initial margin")
        if not v.passed:
            raise MarginRefused(v.initial_margin, v.equity, v.excess)

    # ------------------------------------------------------------------ reads
    def read_engine(self, book: str) -> Any:
        """A book's engine for a reader holding the view lock (built if it must be).

        Every change of an engine happens under the view lock (a writer's check and apply, a
        rebuild), so a reader holding it may build a missing engine without the writer lock.
        """
        with self.locks.view:
            return self.state.engine(book)

    def account_view(self, account: str, explain: bool = False,
                     distance: bool = True) -> dict[str, Any]:
        """Balances, positions, margins, health and distance to liquidation of one account.

        The account is copied under the view lock (a consistent committed state); the
        explanation and the distance are computed from that copy without any lock.
        """
        self.locate(account)
        with self.locks.view:
            out, row = self._account_copy(account)
            pf = self.portfolio(account) if explain else None
        if distance:
            out["distance_to_liquidation"] = self.distances.distance(*row)
        if pf is not None:
            from pmargin.reports.results import margin_json  # the CLI's --json, same schema

            model, market = row[0], row[1]
            out["explain"] = margin_json(model.margin(pf, market))
            if pf.positions:  # each position's Greeks (as `pmargin greeks --json`)
                from pmargin.reports.greeks import portfolio_greeks
                from pmargin.reports.results import greeks_json

                out["position_greeks"] = greeks_json(portfolio_greeks(pf, market), row[3])
        return out

    def _account_copy(self, account: str) -> tuple[dict[str, Any], tuple[Any, ...]]:
        s = self.state
        bs = s.book_of(account)
        mkt = self._market()
        eng = self.read_engine(bs.cfg.id)
        r = eng.row(account)
        res = eng.result
        im, mm, eq = (float(res.initial_margin[r]), float(res.maintenance_margin[r]),
                      float(res.equity[r]))
        from pmargin.service.money import from_units

        pos, coll = s._row(bs, account)
        row = (bs.model, mkt, s.market_digest or "", bs.cfg.margin_currency, account, pos, coll)
        qq = self.cfg.money.quantity_quantum
        out: dict[str, Any] = {
            "id": account, "book": bs.cfg.id, "margin_currency": bs.cfg.margin_currency,
            "balances": {c: str(s.balance(account, c)) for c in s._currencies(bs)},
            "positions": [{"instrument": i, "quantity": str(from_units(u, qq)),
                           "entry_notional_usd": str(e)}
                          for i, (u, e) in sorted(bs.positions.get(account, {}).items())],
            "equity": eq, "initial_margin": im, "maintenance_margin": mm,
            "margin_ratio": 0.0 if mm == 0 and eq >= 0 else (_finite(mm / eq) if eq > 0 else None),
            "margin_ratio_reason": None if (mm == 0 and eq >= 0) or eq > 0 else
            "equity is not positive: the ratio is unbounded",
            "health": health_label(eq, im, mm),
            "seq": s.seq, "market_digest": s.market_digest,
            "liquidation": self.enforcer.account_section(account),
            "market": self.guard.status().as_dict(),
        }
        return out, row

    def portfolio(self, account: str) -> Any:
        """The account as a :class:`pmargin.portfolio.Portfolio` (for explanations)."""
        from pmargin.portfolio import portfolio_from_dict
        from pmargin.service.money import from_units

        s = self.state
        bs = s.book_of(account)
        qq = self.cfg.money.quantity_quantum
        positions = []
        for name, (u, e) in sorted(bs.positions.get(account, {}).items()):
            q = from_units(u, qq)
            row: dict[str, Any] = {"instrument": name, "quantity": float(q)}
            if not name.endswith(("-C", "-P")) and e != 0:
                row["avg_price"] = float(e / q)
            positions.append(row)
        return portfolio_from_dict({
            "margin_currency": bs.cfg.margin_currency,
            "collateral": {c: float(s.balance(account, c)) for c in s._currencies(bs)},
            "positions": positions})

    def market(self) -> MarketSnapshot:
        """The market in use (:class:`InvalidInput` naming ``market`` if there is none)."""
        return self._market()

    def _market(self) -> MarketSnapshot:
        if self.state.market is None:
            raise InvalidInput("market", None, "no market yet: post one to /v1/market first")
        return self.state.market

    def save_epoch(self, _response: dict[str, Any]) -> None:
        """Store a margin summary of every built book for the market just applied.

        One row of ``margin_results`` per book (totals, accounts by health, largest
        requirements), in its own transaction after the market event: derived data, rebuilt
        by replay, so a crash between the two loses only the summary.
        """
        s = self.state
        by_health: dict[str, dict[str, int]] = {}
        for bid, bs in s.books.items():
            if bs.engine is None or bs.dirty or not bs.accounts or s.market_digest is None:
                continue
            summary = self._book_summary(bid)
            by_health[bid] = summary["by_health"]
            self.enforcer.epoch = self.store.save_margin(
                bid, s.seq, s.market_digest, bs.model.digest, summary)
        self.attest()
        self.metrics.epoch_done(by_health, self.accepted_at)
        for hook in self.epoch_hooks:
            hook()

    def attest(self) -> None:
        """Attest the current epoch (docs/attestations.md); a failure is logged, not raised.

        The market write is already committed and applied: a failed attestation leaves that
        epoch without one (counted in ``pmargin_attestation_failures_total``).
        """
        if self.attestor is None:
            return
        t0 = time.perf_counter()
        try:
            self.attestor.attest(self)
        except Exception:
            self.metrics.attestation_failures.inc()
            log.exception("attestation failed", extra={"event": "attestation_failed",
                                                       "seq": self.state.seq})
            return
        self.metrics.attestation_seconds.observe(time.perf_counter() - t0)

    def _book_summary(self, bid: str, largest: bool = True) -> dict[str, Any]:
        with self.locks.view:  # copies of the margin arrays (microseconds), then no lock
            accounts = list(self.state.books[bid].accounts)
            res = self.read_engine(bid).result
            eq, im, mm = (res.equity.copy(), res.initial_margin.copy(),
                          res.maintenance_margin.copy())
        # one vectorised pass of the health rule (the same rule as health_label)
        codes = classify(eq, im, mm)
        counts = np.bincount(codes, minlength=len(HEALTH_NAMES))
        top = np.argsort(-im)[:10] if largest else np.zeros(0, np.int64)
        return {
            "id": bid, "accounts": len(accounts),
            "by_health": {h: int(counts[k]) for k, h in enumerate(HEALTH_NAMES)},
            "total_initial_margin": float(im.sum()),
            "total_maintenance_margin": float(mm.sum()),
            "total_equity": float(eq.sum()),
            "largest": [{"account": accounts[i], "initial_margin": float(im[i])} for i in top]}

    def book_view(self) -> dict[str, Any]:
        """Accounts by health and totals of every book."""
        out: dict[str, Any] = {"seq": self.state.seq, "books": [],
                               "market": self.guard.status().as_dict()}
        for bid, bs in self.state.books.items():
            if not bs.accounts or self.state.market is None:
                out["books"].append({"id": bid, "accounts": len(bs.accounts)})
                continue
            out["books"].append(self._book_summary(bid))
            out.setdefault("enforcement", {})[bid] = self.enforcer.book_section(bid)
        out["stream"] = self.stream.stats()
        return out

    def state_view(self) -> dict[str, Any]:
        """Sequence number, state hash and ledger sums (copied under the view lock)."""
        with self.locks.view:
            snap = self.state.copy_for_hash()
        return {"seq": snap.seq, "state_hash": snap.state_hash(),
                "conservation": snap.conservation()}


def _remembered(seen: tuple[str, int, dict[str, Any]], digest: str, key: str) -> JSONResponse:
    """The stored answer of an idempotency key, or a 409 if the request differs."""
    if seen[0] != digest:
        return JSONResponse({"error": "idempotency_conflict", "field": "Idempotency-Key",
                             "value": key.split("/", 1)[1],
                             "reason": "used before with a different request"}, 409)
    return JSONResponse(seen[2], seen[1])


def health_label(eq: float, im: float, mm: float) -> str:
    """The one health rule (pmargin.liquidation.health) as a label."""
    from pmargin.liquidation.health import HealthState, classify_one

    return str(HealthState(classify_one(eq, im, mm)).name.lower())


class MarginRefused(PmarginError):
    """A write would leave equity below initial margin."""

    def __init__(self, im: float, eq: float, excess: float) -> None:
        super().__init__("equity would fall below initial margin")
        self.im, self.eq, self.excess = im, eq, excess

    def body(self) -> dict[str, Any]:
        """Response body."""
        return {"accepted": False, "error": "insufficient_margin", "field": "amount",
                "reason": "equity after the change would be below initial margin",
                "initial_margin_after": self.im, "equity_after": self.eq,
                "shortfall": -self.excess}


# ====================================================================== app
def create_app(service: Service) -> FastAPI:
    """Build the FastAPI application around a :class:`Service`."""
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.enforcer.start()  # resumes a liquidation a crash interrupted
        try:
            yield
        finally:
            service.enforcer.stop()

    app = FastAPI(title="pmargin service", version="1", lifespan=lifespan,
                  description="Margin service: accounts, fills, transfers, market, margins.")

    @app.exception_handler(InvalidInput)
    async def _bad(_: Request, exc: InvalidInput) -> JSONResponse:
        if isinstance(exc, WrongInstance):  # sharded venue: the book is served elsewhere
            return JSONResponse({"error": "wrong_instance", "field": exc.field,
                                 "value": exc.value, "reason": exc.reason,
                                 "location": exc.location}, 421)
        status = 404 if isinstance(exc, UnknownAccount) or getattr(exc, "not_found", False) \
            else 422
        return JSONResponse({"error": "not_found" if status == 404 else "invalid_input",
                             "field": exc.field, "value": _jsonable(exc.value),
                             "reason": exc.reason}, status)

    @app.exception_handler(FeedStale)
    async def _stale(_: Request, exc: FeedStale) -> JSONResponse:
        return JSONResponse(exc.body(), 503)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        # an unknown key explains the missing one beside it (qty for quantity): report it first
        err = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])
        field = ".".join(str(p) for p in err["loc"] if p != "body")
        reason = str(err["msg"])
        if err.get("type") == "extra_forbidden":
            from pmargin.validation import nearest

            known = [".".join(str(p) for p in e["loc"] if p != "body").rsplit(".", 1)[-1]
                     for e in errors if e.get("type") == "missing"]
            hint = nearest(str(err["loc"][-1]), known) if known else None
            reason = "unknown field" + (f"; did you mean '{hint}'?" if hint else "")
            value: Any = err["loc"][-1]
        elif err.get("type") == "json_invalid":
            field, value = "body", f"byte {err['loc'][-1]}"
            reason = f"is not valid JSON ({err.get('ctx', {}).get('error', 'malformed')})"
        else:
            value = err.get("input")
        return JSONResponse({"error": "invalid_input", "field": field,
                             "value": _jsonable(value), "reason": reason}, 422)

    async def auth(authorization: Annotated[str | None, Header()] = None
                   ) -> tuple[str, str | None, str]:
        # async: a known key is answered on the event loop (no thread hand-off); an unknown
        # one is looked up in the database on the thread pool
        key = (authorization or "").removeprefix("Bearer ").strip()
        info = service.store.known_key(key) if key else None
        if info is None and key:
            info = await run_in_threadpool(service.store.key_info, key)
        if info is None:
            raise HTTPException(401, "missing or invalid API key (Authorization: Bearer <key>)")
        return info

    Who = Annotated[tuple[str, str | None, str], Depends(auth)]
    IdemKey = Annotated[str | None, Header(alias="Idempotency-Key")]

    def need(who: tuple[str, str | None, str], *roles: str, account: str | None = None
             ) -> None:
        role, own = who[0], who[1]
        if role == "trader" and "trader" in roles:
            if account is None or account != own:
                raise HTTPException(403, "a trader key reads and acts on its own account only")
            return
        if role not in roles:
            raise HTTPException(403, f"role {role} may not do this")

    @app.post("/v1/accounts", responses=ERRORS)
    def create_account(body: AccountIn, who: Who, key: IdemKey = None) -> JSONResponse:
        need(who, "operator")
        p = body.model_dump()
        return service.write(who[2], key, "account", p,
                             lambda: service.state.effect_account(body.id, body.book),
                             books=[body.book])

    @app.post("/v1/transfers", responses=ERRORS)
    def transfer(body: TransferIn, who: Who, key: IdemKey = None) -> JSONResponse:
        if body.direction == "withdrawal":
            need(who, "operator", "trader", account=body.account)
        else:
            need(who, "operator")
        amount = parse_decimal(body.amount, "amount")
        p = {"account": body.account, "currency": body.currency, "amount": str(amount)}
        chk = ((lambda e: service.check_withdrawal(body.account, e))
               if body.direction == "withdrawal" else None)
        return service.write(who[2], key, body.direction, p, lambda: service.state.effect_transfer(
            body.account, body.currency, amount, body.direction), chk,
            books=service.books_of([body.account]))

    @app.post("/v1/fills", responses=ERRORS)
    def fill(body: FillIn, who: Who, key: IdemKey = None) -> JSONResponse:
        need(who, "operator")
        q = parse_decimal(body.quantity, "quantity")
        px = parse_decimal(body.price, "price")
        fee = parse_decimal(body.fee, "fee")
        p = {"account": body.account, "instrument": body.instrument, "quantity": str(q),
             "price": str(px), "price_currency": body.price_currency, "fee": str(fee)}
        chk = (lambda e: service.check_fill(body.account, e)) if body.new_order else None

        def build() -> Effect:
            eff = service.state.effect_fill(body.account, body.instrument, q, px,
                                            body.price_currency, fee)
            service.check_price(body.instrument, px)  # at the door only (not on replay)
            return eff

        return service.write(who[2], key, "fill", p, build, chk,
                             books=service.books_of([body.account]))

    @app.post("/v1/fills/batch", responses=ERRORS)
    def fill_batch(body: FillBatchIn, who: Who, key: IdemKey = None) -> JSONResponse:
        """Up to 1,000 fills in one transaction; each as if posted alone, in order."""
        need(who, "operator")
        items: list[tuple[dict[str, Any], Callable[[], Effect],
                          Callable[[Effect], None] | None]] = []
        for i, f in enumerate(body.fills):
            q = parse_decimal(f.quantity, f"fills[{i}].quantity")
            px = parse_decimal(f.price, f"fills[{i}].price")
            fee = parse_decimal(f.fee, f"fills[{i}].fee")
            p = {"account": f.account, "instrument": f.instrument, "quantity": str(q),
                 "price": str(px), "price_currency": f.price_currency, "fee": str(fee)}

            def build(f: FillIn = f, q: Decimal = q, px: Decimal = px,
                      fee: Decimal = fee) -> Effect:
                eff = service.state.effect_fill(f.account, f.instrument, q, px,
                                                f.price_currency, fee)
                service.check_price(f.instrument, px)  # at the door only, as for one fill
                return eff

            def check(e: Effect, a: str = f.account) -> None:
                service.check_fill(a, e)

            items.append((p, build, check if f.new_order else None))
        return service.write_batch(who[2], key, items)

    @app.post("/v1/market", responses={**ERRORS, 202: {
        "model": ErrorOut, "description": "held by the jump band (not applied): reason"}})
    async def market(request: Request, who: Who, key: IdemKey = None,
                     source: Annotated[str | None, Header(
                         alias="X-Feed-Source", pattern=SOURCE_PATTERN,
                         description="source id (default http:<API key id>)")] = None,
                     ) -> JSONResponse:
        need(who, "operator")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise InvalidInput("body", f"{len(raw)} bytes", f"is larger than {MAX_BODY}")
        src = check_source(source, "X-Feed-Source") if source else f"http:{who[2]}"
        # the HTTP feed: prices checked (NaN, zero, negative, crossed: 422), market parsed
        upd = service.http_feed.receive(raw, request.headers.get("content-type", ""), src)
        return _market(upd, key, who)

    def _market(upd: MarketUpdate, key: str | None,
                who: tuple[str, str | None, str]) -> JSONResponse:
        mkt, digest = upd.market, upd.digest
        cur = service.state.market
        if cur is not None and mkt.valuation_time < cur.valuation_time:
            raise InvalidInput("valuation_time", mkt.valuation_time.isoformat(),
                               f"is older than the market in use "
                               f"({cur.valuation_time.isoformat()})")
        book = service.cfg.books[0].id
        row = {"digest": digest, "valuation_time": mkt.valuation_time.isoformat(),
               "payload": json.dumps(upd.payload)}
        with service.lock:
            # the jump band (a retry of an accepted update is answered by write() as before)
            if not (key and service.store.remembered(f"{who[2]}/{key}")):
                decision = service.guard.decide(upd, f"{who[2]}/{key}" if key else None)
                if not decision.accept:
                    return JSONResponse(decision.body(upd), 202)

            def after(response: dict[str, Any]) -> None:
                service.guard.accepted(upd)
                service.save_epoch(response)

            return service.write(
                who[2], key, "market", {"digest": digest, "source": upd.source,
                                        "time": mkt.valuation_time.isoformat()},
                lambda: Effect("market", book, market=mkt, market_digest=digest),
                check=lambda e: service.check_market(mkt, e), market_row=row, after=after,
                extra={"source": upd.source, "digest": digest})

    @app.get("/v1/accounts/{account_id}", responses=ERRORS)
    def get_account(account_id: str, who: Who, distance: bool = True) -> dict[str, Any]:
        """The account, with its distance to liquidation unless ``distance=false``.

        ``distance_to_liquidation``: by underlying, the index move in % (down and up) that
        takes equity to maintenance margin (sticky-strike vols, the book's model); the search
        costs about 0.1-0.5 s the first time after the account or the market changed, then it
        is cached.
        """
        need(who, "risk", "trader", account=account_id)
        return service.account_view(account_id, distance=distance)

    @app.get("/v1/accounts/{account_id}/margin", responses=ERRORS)
    def account_margin(account_id: str, who: Who, explain: bool = False) -> dict[str, Any]:
        need(who, "risk", "trader", account=account_id)
        return service.account_view(account_id, explain=explain, distance=False)

    @app.post("/v1/simulate", responses=ERRORS)
    def simulate(body: SimulateIn, who: Who) -> dict[str, Any]:
        from pmargin.models import load_model
        from pmargin.portfolio import portfolio_from_dict

        # stateless (no account data): any valid key, which the auth dependency checked
        pf = portfolio_from_dict(body.portfolio)
        out: dict[str, Any] = {"market_digest": service.state.market_digest, "results": {}}
        from pmargin.models import list_models
        from pmargin.validation import nearest

        known = list_models()
        for i, name in enumerate(body.models):
            if name not in known:  # shipped models only: never a path on the server
                hint = nearest(name, known)
                raise InvalidInput(f"models[{i}]", name, "unknown model" + (
                    f"; did you mean '{hint}'?" if hint else f" (valid: {known})"))
            model = load_model(name)
            res = model.margin(pf, service._market())
            out["results"][name] = {
                "initial_margin": res.initial_margin, "maintenance_margin":
                res.maintenance_margin, "equity": res.equity, "health": res.health,
                "margin_currency": res.margin_currency,
                "components": {k: _finite(float(v)) for k, v in res.components.items()}}
            if body.explain:
                from pmargin.reports.results import margin_json

                out["results"][name]["explain"] = margin_json(res)
        return out

    def what_if_now(account_id: str, body: WhatIfIn, blocking: bool = True
                    ) -> dict[str, Any] | None:
        """The what-if under the view lock; None if ``blocking`` is off and the lock is busy."""
        if blocking:
            service.locate(account_id)
        if not service.locks.view.acquire(blocking=blocking):
            return None
        try:  # reads memory only: no writer lock (never waits for a commit)
            s = service.state
            total = Effect("fill", s.book_of(account_id).cfg.id)
            # apply fills one after the other on a scratch copy of the row
            for i, f in enumerate(body.fills):
                try:
                    e = s.effect_fill(account_id, f.instrument,
                                      parse_decimal(f.quantity, f"fills[{i}].quantity"),
                                      parse_decimal(f.price, f"fills[{i}].price"),
                                      f.price_currency, Decimal(0))
                except InvalidInput as exc:
                    raise InvalidInput(f"fills[{i}].{exc.field}", exc.value, exc.reason) from None
                total.positions.update(e.positions)
                total.postings += e.postings
            eng = s.engine(total.book)
            pos, coll = service.hypothetical(account_id, total)
            v = eng.check_account(account_id, pos, coll, True)
            status = service.guard.status()
        finally:
            service.locks.view.release()
        frozen = status.stale and v.initial_margin > v.before_initial_margin
        out = {"account": account_id, "approved": v.passed and not frozen,
               "initial_margin": v.initial_margin, "maintenance_margin": v.maintenance_margin,
               "equity": v.equity, "excess": v.excess,
               "before": {"initial_margin": v.before_initial_margin,
                          "equity": v.before_equity},
               "market": status.as_dict()}
        if frozen:
            out["reason"] = str(FeedStale(status, "a new order that raises initial margin"))
        return out

    @app.post("/v1/accounts/{account_id}/what-if", responses=ERRORS,
              response_model=dict[str, Any])
    async def what_if(account_id: str, body: WhatIfIn, who: Who) -> JSONResponse:
        # memory only, about 0.1-0.3 ms: done on the event loop when the view lock is free
        # (the thread-pool hand-off and the response model's re-encoding cost more than the
        # work); on the thread pool when a writer holds it (the loop never waits for a lock)
        need(who, "risk", "trader", account=account_id)
        out = (what_if_now(account_id, body, blocking=False)
               if account_id in service.state.account_book else None)
        if out is None:
            out = await run_in_threadpool(what_if_now, account_id, body)
        return JSONResponse(out)

    @app.get("/v1/book", responses=ERRORS)
    def book(who: Who) -> dict[str, Any]:
        need(who, "risk")
        return service.book_view()

    @app.get("/v1/events", responses=ERRORS)
    def events(who: Who, after: int = 0, limit: int = 100) -> dict[str, Any]:
        need(who, "risk")
        if after < 0:
            raise InvalidInput("after", after, "must not be negative")
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit", limit, "must lie in [1, 1000]")
        rows = [{"seq": int(e.seq), "book": e.book, "kind": e.kind,
                 "payload": json.loads(e.payload), "created_at": e.created_at}
                for e in service.store.events(after, limit)]
        return {"events": rows, "next_after": rows[-1]["seq"] if rows else after}

    @app.get("/v1/state", responses=ERRORS)
    def state(who: Who) -> dict[str, Any]:
        need(who, "risk")
        return service.state_view()

    @app.post("/v1/keys", responses=ERRORS)
    def keys(body: KeyIn, who: Who) -> dict[str, Any]:
        need(who, "admin")
        if body.role == "trader":
            if body.account is None:
                raise InvalidInput("account", None, "a trader key needs an account")
            if body.account not in service.state.account_book and (
                    not service.shard.sharded or service.store.account_book(body.account) is None):
                service.state.book_of(body.account)  # 404: no such account in the venue
        return {"key": service.store.create_key(body.role, body.account), "role": body.role,
                "account": body.account}

    @app.post("/v1/books/{book_id}/breaker/reset", responses=ERRORS)
    def reset_breaker(book_id: str, who: Who) -> dict[str, Any]:
        """Reset a tripped circuit breaker: automatic liquidation resumes (logged)."""
        need(who, "risk")
        return service.enforcer.reset_breaker(book_id, who[2])

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        from pmargin.service.stream import serve_stream

        await serve_stream(service, ws)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "seq": service.state.seq}

    from pmargin.service import attestations, observability

    attestations.register_routes(app, service, Who, need, ERRORS)
    observability.install(app, service)
    from pmargin.service.dashboard import add_web_routes
    from pmargin.service.views import add_view_routes

    add_view_routes(app, service, auth, need, ERRORS)
    add_web_routes(app)
    return app


def _jsonable(v: Any) -> Any:
    """A value safe to echo in an error body (non-finite numbers and objects as text)."""
    try:
        json.dumps(v, allow_nan=False)
        return v
    except (TypeError, ValueError):
        return str(v)


def load_path(p: str) -> Path:
    """Path helper for the server module."""
    return Path(p)
