"""The service process: database, migrations, replay, demo seeding, uvicorn."""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pmargin.service import tables as T
from pmargin.service.app import Service, create_app, market_from_payload
from pmargin.service.config import VenueConfig, load_venue
from pmargin.service.database import connect, database_url, migrate
from pmargin.service.state import Effect
from pmargin.service.store import Store, digest_of, now_iso

__all__ = ["create_key", "demo_keys", "open_service", "run", "seed_demo"]


def open_service(url: str | None = None, venue: str | Path | None = None,
                 books: str | None = None, peers: list[str] | None = None,
                 attest_key: str | Path | None = None) -> Service:
    """Connect, migrate, replay: the service as stored.

    Parameters
    ----------
    url : str, optional
        Database URL (default ``PMARGIN_DATABASE_URL`` or SQLite under ``./var/``).
    venue : str or Path, optional
        Venue TOML (default: the shipped one).
    books : str, optional
        Comma-separated ids of the books this instance serves (default: every book of the
        venue; see :mod:`pmargin.service.sharding`).
    peers : list of str, optional
        ``BOOK=URL`` of the instances serving other books (hints in 421 answers).
    attest_key : str or Path, optional
        Attestation signing key (default ``PMARGIN_ATTEST_KEY``, else ``[attest] key_path``
        of the venue); generated on first start.

    Returns
    -------
    Service
        Ready to serve.
    """
    from pmargin.service.sharding import Shard, parse_books, parse_peers

    cfg = load_venue(venue)
    ids = [b.id for b in cfg.books]
    shard = Shard(parse_books(books, ids), frozenset(ids), parse_peers(peers or (), ids))
    engine = connect(database_url(url))
    migrate(engine)
    store = Store(engine)
    for b in cfg.books:
        svc_model = __import__("pmargin.models", fromlist=["load_model"]).load_model(b.model)
        store.save_params(b.id, b.model, svc_model.digest,
                          svc_model.params.model_dump(mode="json"))
    svc = Service(cfg, store, shard)
    from pmargin.service.attestations import Attestor

    key = attest_key or os.environ.get(ATTEST_KEY_ENV) or cfg.attest.key_path
    svc.attestor = Attestor(engine, key, keep=cfg.attest.keep_epochs,
                            workers=cfg.attest.workers)
    return svc


ATTEST_KEY_ENV = "PMARGIN_ATTEST_KEY"


def _demo_market_payload() -> dict[str, Any]:
    """The latest real Deribit chain (stored as its gzipped CSV), else the generated market."""
    from pmargin.demo import demo_market, latest_snapshot

    snap = latest_snapshot()
    if snap is not None:
        import base64

        return {"format": "deribit-csv", "gzip_b64": base64.b64encode(snap.read_bytes()).decode()}
    return {"format": "json", "market": demo_market()[0].to_dict()}


def seed_demo(svc: Service, accounts: int | None = None,
              stored: dict[str, Any] | None = None) -> int:
    """Seed an empty venue with the real snapshot and a generated book (one transaction).

    ``stored``: another market to seed on (its stored form, e.g. a history market for a
    replay, ``pmargin.feeds``); default the latest real Deribit chain.

    Returns
    -------
    int
        Number of events written.
    """
    from pmargin.synthetic import chain_universe, generate_book

    cfg: VenueConfig = svc.cfg
    n = accounts or cfg.demo.accounts
    stored = stored if stored is not None else _demo_market_payload()
    mkt = market_from_payload(stored)
    digest = digest_of(stored)
    book_cfg = cfg.books[0]
    gen = generate_book(mkt, chain_universe(mkt, book_cfg.margin_currency), n,
                        seed=cfg.demo.seed, margin_currency=book_cfg.margin_currency)
    state = svc.state
    q_grid = cfg.money.quantity_quantum
    written = 0
    with svc.lock, svc.store.engine.begin() as c:
        def log(eff: Effect, kind: str, payload: dict[str, Any]) -> None:
            nonlocal written
            seq = int(c.execute(sa.insert(T.events).values(
                book=eff.book, kind=kind, idempotency_key=None,
                payload=json.dumps(payload, sort_keys=True), created_at=now_iso())
            ).inserted_primary_key[0])  # type: ignore[index]
            if eff.new_account is not None:
                c.execute(sa.insert(T.accounts).values(id=eff.new_account, book=eff.book,
                                                       created_seq=seq))
            if eff.postings:
                c.execute(sa.insert(T.ledger_entries), [
                    {"seq": seq, "account": a, "currency": ccy, "units": u}
                    for a, ccy, u in eff.postings])
            state.apply(eff, seq)
            svc.enforcer.observe(kind, eff.book, payload, seq)
            written += 1

        c.execute(sa.insert(T.market_snapshots).values(
            digest=digest, seq=1, valuation_time=mkt.valuation_time.isoformat(),
            payload=json.dumps(stored)))
        log(Effect("market", book_cfg.id, market=mkt, market_digest=digest), "market",
            {"digest": digest, "source": "seed", "time": mkt.valuation_time.isoformat()})
        pos = gen.positions.tocsr()
        ci = gen.collateral_currencies.index(book_cfg.margin_currency)
        for r, acct in enumerate(gen.account_ids):
            log(state.effect_account(acct, book_cfg.id), "account",
                {"id": acct, "book": book_cfg.id})
            bal = Decimal(repr(float(gen.collateral[r, ci]))).quantize(
                cfg.quantum(book_cfg.margin_currency))
            # the deposit covers the premiums paid below, so the seeded account keeps `bal`
            a, b = pos.indptr[r], pos.indptr[r + 1]
            fills = []
            premium = Decimal(0)
            for j, q in zip(pos.indices[a:b], pos.data[a:b], strict=True):
                inst = gen.instruments[int(j)]
                qd = Decimal(repr(float(q))).quantize(q_grid)
                if qd == 0:
                    continue
                if inst.is_option:
                    px = Decimal(repr(_coin_mark(mkt, inst.name))).quantize(Decimal("0.0001"))
                    px = max(px, Decimal("0.0001"))
                    premium += qd * px
                    fills.append((inst.name, qd, px, book_cfg.margin_currency))
                else:
                    px = Decimal(repr(round(float(_usd_mark(mkt, inst.name)), 2)))
                    fills.append((inst.name, qd, px, "USD"))
            dep = bal + max(premium, Decimal(0))
            dep = dep.quantize(cfg.quantum(book_cfg.margin_currency))
            if dep > 0:
                p = {"account": acct, "currency": book_cfg.margin_currency, "amount": str(dep)}
                log(state.effect_transfer(acct, book_cfg.margin_currency, dep, "deposit"),
                    "deposit", p)
            for name, qd, px, pc in fills:
                p = {"account": acct, "instrument": name, "quantity": str(qd),
                     "price": str(px), "price_currency": pc, "fee": "0"}
                log(state.effect_fill(acct, name, qd, px, pc, Decimal(0)), "fill", p)
        # derived tables in bulk
        c.execute(sa.delete(T.balances))
        rows = [{"account": a, "currency": ccy, "units": u}
                for (a, ccy), u in state.balances.items()]
        if rows:
            c.execute(sa.insert(T.balances), rows)
        c.execute(sa.delete(T.positions))
        prow = [{"account": a, "instrument": i, "quantity_units": u, "entry_notional": str(e)}
                for bs in state.books.values() for a, row in bs.positions.items()
                for i, (u, e) in row.items()]
        if prow:
            c.execute(sa.insert(T.positions), prow)
    # the seeded market is the feed's last accepted update (else the venue starts stale)
    from datetime import UTC, datetime

    svc.guard.restore({u: mkt.index_price(u) for u in mkt.underlyings}, datetime.now(UTC),
                      mkt.valuation_time, "seed", digest)
    return written


def _coin_mark(mkt: Any, name: str) -> float:
    return float(mkt.mark_price(name)) / float(mkt.index_price(name.split("-")[0]))


def _usd_mark(mkt: Any, name: str) -> float:
    return float(mkt.mark_price(name))


def run(host: str = "127.0.0.1", port: int = 8000, url: str | None = None,
        venue: str | Path | None = None, demo: bool = False, books: str | None = None,
        peers: list[str] | None = None, attest_key: str | Path | None = None) -> None:
    """Start the service (blocking) with uvicorn; Ctrl-C stops it cleanly.

    ``books`` (comma-separated ids) makes this instance serve only those books of the venue,
    ``peers`` (``BOOK=URL``) says where the others are served (sharding on one database).
    """
    import uvicorn

    from pmargin.service.observability import setup_json_logs
    from pmargin.service.sharding import book_locks

    t0 = time.perf_counter()
    _check_port(host, port)
    if books:  # a wrong id is refused before any database work
        from pmargin.service.sharding import parse_books

        parse_books(books, [b.id for b in load_venue(venue).books])
    setup_json_logs()
    svc = open_service(url, venue, books, peers, attest_key)
    _lock = book_locks(svc.store.engine, svc.shard.owned)  # held until the process ends
    if demo and svc.state.seq == 0:
        print(f"seeding the demo venue ({svc.cfg.demo.accounts} accounts)...", flush=True)
        seed_demo(svc)
    if demo:
        keys = demo_keys(svc, Path("var") / "demo-keys.json")
        print(json.dumps({"demo_keys": keys}, indent=2))
        print(f"API docs: http://{host}:{port}/docs\n"
              f"example: curl -H 'Authorization: Bearer {keys['risk']}' "
              f"http://{host}:{port}/v1/book")
    if svc.state.market is not None:  # build the engines now: the first request is then fast
        for b in svc.state.books:
            if svc.state.books[b].accounts:
                svc.state.engine(b)
        if svc.attestor is not None and svc.attestor.needs_start_epoch(svc):
            with svc.lock:  # the market in use has no attestation yet (seeded, or a crash)
                svc.attest()
    n = sum(len(b.accounts) for b in svc.state.books.values())
    print(f"pmargin service: {n} accounts, seq {svc.state.seq}, state "
          f"{svc.state.state_hash()[:16]}, ready in {time.perf_counter() - t0:.1f} s "
          f"on http://{host}:{port}", flush=True)
    uvicorn.run(create_app(svc), host=host, port=port, log_level="warning")


def create_key(role: str, account: str | None, url: str | None = None) -> str:
    """Create an API key directly in the database (the first admin key, say)."""
    from pmargin.errors import InvalidInput

    if role not in ("trader", "operator", "risk", "admin"):
        raise InvalidInput("role", role, "must be trader, operator, risk or admin")
    if (role == "trader") != (account is not None):
        raise InvalidInput("account", account, "a trader key needs an account; others none")
    db = database_url(url)
    parsed = sa.make_url(db)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise InvalidInput("--database-url", db, "no database there: start the service first "
                           "(pmargin serve) or pass the service's --database-url")
    engine = connect(db)
    migrate(engine)
    if account is not None:
        with engine.connect() as c:
            found = c.execute(sa.select(T.accounts.c.id).where(T.accounts.c.id == account)).first()
        if found is None:
            raise InvalidInput("--account", account, "no such account in this database")
    return Store(engine).create_key(role, account)


def demo_keys(svc: Service, path: Path) -> dict[str, str]:
    """Demo API keys: created once and kept in ``path`` (mode 600) for later starts.

    The database keeps only the keys' hashes; the file is the demo's convenience (a real venue
    creates keys with ``pmargin keys create`` and hands them out).
    """
    if path.is_file():
        keys = json.loads(path.read_text())
        if all(svc.store.key_info(k) for k in keys.values()):
            return dict(keys)
    keys = {r: svc.store.create_key(r, None) for r in ("operator", "risk", "admin")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keys, indent=2))
    path.chmod(0o600)
    return keys


def _check_port(host: str, port: int) -> None:
    """Refuse (before any work) an address that cannot be bound."""
    import socket

    from pmargin.errors import InvalidInput

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput("--host", host, f"cannot be resolved ({exc})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            raise InvalidInput("--port", port, f"cannot be bound on {host} "
                               f"({exc.strerror or exc})") from None
