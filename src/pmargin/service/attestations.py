"""The service's attestations: one signed Merkle root per epoch, proofs, exported inputs.

An epoch is one accepted market update (plus, at start, the state as replayed if its market has
no attestation yet): the margins the engine just recomputed for every account, the market in
use and the event-log position. :class:`Attestor` builds the leaves from the engines' results,
signs the root, stores the document (table ``attestations``) and the engines' column layouts
(``attestation_layouts``, content-addressed), and keeps the trees of the latest epochs in
memory for proofs. A proof of an older epoch recomputes that epoch from its exported inputs
(the third party's path) and checks the root against the stored one.

The routes (:func:`register_routes`): ``GET /v1/attestations/latest``,
``/v1/attestations/public-key``, ``/v1/attestations/{epoch}``,
``/v1/attestations/{epoch}/inputs`` (risk) and ``/v1/accounts/{id}/proof?epoch=`` (risk, the
account's trader). See docs/attestations.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pmargin.attest.epoch import (
    BookMargins,
    attestation_body,
    leaves_of,
    proof_document,
    recompute_leaves,
    sign_attestation,
    tree_of,
)
from pmargin.attest.inputs import INPUTS_FORMAT, LOG_GENESIS, engine_info, log_step
from pmargin.attest.leaves import LeafTable
from pmargin.attest.merkle import MerkleTree
from pmargin.attest.signing import load_or_create_key, public_key_hex
from pmargin.errors import InvalidInput
from pmargin.service import tables as T
from pmargin.service.money import from_units
from pmargin.service.state import VenueState
from pmargin.service.store import digest_of

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pmargin.service.app import Service

__all__ = ["Attestor", "register_routes"]

log = logging.getLogger("pmargin.service")


class UnknownEpoch(InvalidInput):
    """No attestation has this epoch (the API answers 404)."""

    not_found = True


class Attestor:
    """Signs and stores one attestation per epoch.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The service's database.
    key_path : str or Path
        Ed25519 signing key (PKCS#8 PEM), generated there on first start (mode 600).
    keep : int, optional
        Epochs whose leaves and tree stay in memory for proofs.
    workers : int, optional
        Processes hashing the tree of large epochs (:func:`pmargin.attest.merkle.build_tree`).
    """

    def __init__(self, engine: sa.Engine, key_path: str | Path, keep: int = 4,
                 workers: int = 1) -> None:
        self.db = engine
        self.key_path = Path(key_path)
        self.key = load_or_create_key(self.key_path)
        self.public_hex = public_key_hex(self.key)
        self.keep = keep
        self.workers = workers
        self._cache: OrderedDict[int, tuple[dict[str, Any], LeafTable, MerkleTree]] = \
            OrderedDict()
        with self.db.connect() as c:
            row = c.execute(sa.select(T.attestations.c.epoch, T.attestations.c.seq,
                                      T.attestations.c.log_hash)
                            .order_by(T.attestations.c.epoch.desc()).limit(1)).first()
        self.last_epoch = int(row[0]) if row else 0
        self._log = (int(row[1]), str(row[2])) if row else (0, LOG_GENESIS)
        self.last_seconds: float | None = None

    # ------------------------------------------------------------------ log chain
    def log_hash(self, store: Any, seq: int) -> str:
        """Hash of the event log up to ``seq`` (extends the chain kept since the last epoch)."""
        at, h = self._log
        if seq < at:
            raise ValueError(f"log position {seq} is before the last attested {at}")
        for ev in store.events(at):
            s = int(ev.seq)
            if s > seq:
                break
            h = log_step(h, s, ev.book, ev.kind, json.loads(ev.payload), ev.created_at)
            at = s
        self._log = (seq, h)
        return h

    # ------------------------------------------------------------------ attest
    def margins(self, svc: Service) -> tuple[list[BookMargins], dict[str, list[str]]]:
        """Every non-empty book's figures (engine row order) and instrument columns."""
        s = svc.state
        books: list[BookMargins] = []
        layout: dict[str, list[str]] = {}
        for bid, bs in s.books.items():
            if not bs.accounts:
                continue
            eng = s.engine(bid)
            eng._flush()  # merged rows (already merged right after a market update)
            if list(eng.book.account_ids) != bs.accounts:
                raise RuntimeError(f"book {bid}: engine rows differ from the accounts")
            if not eng.book.positions.has_sorted_indices:  # the inputs' rows are in column
                raise RuntimeError(f"book {bid}: engine rows are not in column order")
            res = eng.result
            books.append(BookMargins(bid, bs.cfg.margin_currency, bs.cfg.model, bs.model.digest,
                                     list(eng.book.account_ids), res.equity.copy(),
                                     res.initial_margin.copy(), res.maintenance_margin.copy()))
            layout[bid] = [i.name for i in eng.book.instruments]
        return books, layout

    def attest(self, svc: Service) -> dict[str, Any] | None:
        """Attest the current state (called under the service's lock); the document."""
        s = svc.state
        if s.market is None or s.market_digest is None:
            return None
        t0 = time.perf_counter()
        books, layout = self.margins(svc)
        leaves = leaves_of(books)
        tree = tree_of(leaves, self.workers)
        epoch = self.last_epoch + 1
        log_hash = self.log_hash(svc.store, s.seq)
        body = attestation_body(
            epoch=epoch, seq=s.seq, log_hash=log_hash, market_digest=s.market_digest,
            valuation_time=s.market.valuation_time.isoformat(), books=books, tree=tree,
            engine=engine_info(), created_at=datetime.now(UTC).isoformat(),
            public_hex=self.public_hex)
        doc = sign_attestation(self.key, body)
        layout_digest = digest_of(layout)
        with self.db.begin() as c:
            if c.execute(sa.select(T.attestation_layouts.c.digest).where(
                    T.attestation_layouts.c.digest == layout_digest)).first() is None:
                c.execute(sa.insert(T.attestation_layouts).values(
                    digest=layout_digest, payload=json.dumps(layout)))
            c.execute(sa.insert(T.attestations).values(
                epoch=epoch, seq=s.seq, market_digest=s.market_digest,
                merkle_root=body["merkle_root"], log_hash=log_hash,
                layout_digest=layout_digest, created_at=body["created_at"],
                document=json.dumps(doc, sort_keys=True)))
        self.last_epoch = epoch
        self._remember(epoch, doc, leaves, tree)
        self.last_seconds = time.perf_counter() - t0
        log.info("attestation", extra={"event": "attestation", "epoch": epoch, "seq": s.seq,
                                       "merkle_root": body["merkle_root"],
                                       "leaves": tree.count,
                                       "seconds": round(self.last_seconds, 6)})
        return doc

    def _remember(self, epoch: int, doc: dict[str, Any], leaves: LeafTable,
                  tree: MerkleTree) -> None:
        self._cache[epoch] = (doc, leaves, tree)
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)

    def needs_start_epoch(self, svc: Service) -> bool:
        """True when the market in use has no attestation yet (seeded, or a crash before it)."""
        if svc.state.market_digest is None:
            return False
        with self.db.connect() as c:
            row = c.execute(sa.select(T.attestations.c.market_digest, T.attestations.c.seq)
                            .order_by(T.attestations.c.epoch.desc()).limit(1)).first()
        return row is None or row[0] != svc.state.market_digest

    # ------------------------------------------------------------------ reads
    def _row(self, epoch: int | None) -> sa.Row[Any]:
        q = sa.select(T.attestations)
        q = (q.where(T.attestations.c.epoch == epoch) if epoch is not None
             else q.order_by(T.attestations.c.epoch.desc()).limit(1))
        with self.db.connect() as c:
            row = c.execute(q).first()
        if row is None:
            raise UnknownEpoch("epoch", epoch if epoch is not None else "latest",
                               "no attestation yet" if epoch is None else "no such epoch")
        return row

    def document(self, epoch: int | None) -> dict[str, Any]:
        """The signed document of ``epoch`` (the latest when None)."""
        return dict(json.loads(self._row(epoch).document))

    def inputs(self, svc: Service, epoch: int) -> dict[str, Any]:
        """What a third party needs to recompute ``epoch`` (the inputs document)."""
        row = self._row(epoch)
        with self.db.connect() as c:
            lay = c.execute(sa.select(T.attestation_layouts.c.payload).where(
                T.attestation_layouts.c.digest == row.layout_digest)).first()
        if lay is None:
            raise RuntimeError(f"layout {row.layout_digest} of epoch {epoch} is missing")
        layout: dict[str, list[str]] = json.loads(lay[0])
        doc = json.loads(row.document)["attestation"]
        with svc.lock:
            st = svc.state if svc.state.seq == int(row.seq) else None
            if st is not None:
                return self._inputs_doc(svc, st, epoch, int(row.seq), row.market_digest,
                                        layout, doc)
        st = state_at(svc, int(row.seq))  # a past epoch: replay the log up to its position
        return self._inputs_doc(svc, st, epoch, int(row.seq), row.market_digest, layout, doc)

    def _inputs_doc(self, svc: Service, st: VenueState, epoch: int, seq: int,
                    market_digest: str, layout: dict[str, list[str]],
                    body: dict[str, Any]) -> dict[str, Any]:
        qq = svc.cfg.money.quantity_quantum
        params = {b["id"]: b for b in body["books"]}
        books = []
        for bid, cols in layout.items():
            bs = st.books[bid]
            ccys = st._currencies(bs)
            accounts = []
            for a in bs.accounts:
                accounts.append({
                    "id": a,
                    "positions": [[name, str(from_units(u, qq)), str(e)]
                                  for name, (u, e) in sorted(bs.positions.get(a, {}).items())],
                    "balances": {c: str(st.balance(a, c)) for c in ccys}})
            books.append({"id": bid, "margin_currency": bs.cfg.margin_currency,
                          "model": bs.cfg.model, "params_digest": params[bid]["params_digest"],
                          "collateral_currencies": ccys, "instruments": cols,
                          "accounts": accounts})
        return {"format": INPUTS_FORMAT, "epoch": epoch, "seq": seq,
                "market_digest": market_digest, "market": svc.store.market_payload(market_digest),
                "books": books}

    def proof(self, svc: Service, account: str, epoch: int | None) -> dict[str, Any]:
        """Inclusion proof of ``account`` in ``epoch`` (the latest when None)."""
        e = int(self._row(epoch).epoch)
        hit = self._cache.get(e)
        if hit is None:
            doc = self.document(e)
            _, leaves = recompute_leaves(self.inputs(svc, e))
            tree = tree_of(leaves, self.workers)
            if tree.root.hex() != doc["attestation"]["merkle_root"]:
                raise RuntimeError(f"epoch {e}: the recomputed root differs from the attested "
                                   "one (determinism broken)")
            self._remember(e, doc, leaves, tree)
            self._cache.move_to_end(e, last=False)  # an old epoch: first to go
            hit = (doc, leaves, tree)
        doc, leaves, tree = hit
        return proof_document(doc, leaves, tree, account)


def state_at(svc: Service, seq: int) -> VenueState:
    """The venue's accounts, balances and positions after event ``seq`` (a replay, no margins)."""
    st = VenueState(svc.cfg)
    for ev in svc.store.events(0):
        if int(ev.seq) > seq:
            break
        st.apply(svc.effect_of(ev.kind, ev.book, json.loads(ev.payload), st), int(ev.seq))
    return st


def register_routes(app: FastAPI, svc: Service, who_dep: Any,
                    need: Callable[..., None], responses: dict[int | str, dict[str, Any]]
                    ) -> None:
    """Add the attestation routes to the app (``who_dep``: the app's key dependency)."""

    def attestor() -> Attestor:
        if svc.attestor is None:
            raise UnknownEpoch("epoch", None, "attestations are off in this service")
        a: Attestor = svc.attestor
        return a

    def keyed(fn: Callable[..., Any]) -> Callable[..., Any]:
        # annotations are strings here (postponed evaluation): give FastAPI the dependency
        fn.__annotations__["who"] = who_dep
        return fn

    def epoch_param(epoch: int) -> int:
        if epoch < 1:
            raise InvalidInput("epoch", epoch, "must be a positive integer")
        if epoch >= 2**63:  # beyond a BIGINT: certainly none (and not sent to the database)
            raise UnknownEpoch("epoch", epoch, "no such epoch")
        return epoch

    @app.get("/v1/attestations/latest", responses=responses)
    @keyed
    def attestation_latest(who: who_dep) -> dict[str, Any]:
        """The latest signed attestation (any key)."""
        return attestor().document(None)

    @app.get("/v1/attestations/public-key", responses=responses)
    @keyed
    def attestation_key(who: who_dep) -> dict[str, Any]:
        """The venue's Ed25519 public key (raw, hex) and its id (any key)."""
        from pmargin.attest.signing import key_id

        a = attestor()
        return {"public_key": a.public_hex, "key_id": key_id(a.public_hex),
                "algorithm": "ed25519"}

    @app.get("/v1/attestations/{epoch}", responses=responses)
    @keyed
    def attestation_epoch(epoch: int, who: who_dep) -> dict[str, Any]:
        """The signed attestation of one epoch (any key)."""
        return attestor().document(epoch_param(epoch))

    @app.get("/v1/attestations/{epoch}/inputs", responses=responses)
    @keyed
    def attestation_inputs(epoch: int, who: who_dep) -> dict[str, Any]:
        """Market, parameters and every account's positions and balances at the epoch (risk)."""
        need(who, "risk")
        return attestor().inputs(svc, epoch_param(epoch))

    @app.get("/v1/accounts/{account_id}/proof", responses=responses)
    @keyed
    def account_proof(account_id: str, who: who_dep, epoch: int | None = None
                      ) -> dict[str, Any]:
        """Inclusion proof of the account's leaf (risk, or the account's trader)."""
        need(who, "risk", "trader", account=account_id)
        svc.state.book_of(account_id)  # 404 for an unknown account
        return attestor().proof(svc, account_id, None if epoch is None else epoch_param(epoch))
