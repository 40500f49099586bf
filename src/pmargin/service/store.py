"""Persistence: one database transaction per accepted write (event, ledger, derived state).

The event log is the source of truth; ledger entries, balances, positions and accounts are
written in the same transaction, so a crash leaves either all of a write or none of it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pmargin.service import tables as T
from pmargin.service.state import Effect

__all__ = ["Store", "digest_of", "now_iso"]


def now_iso() -> str:
    """Current UTC time, ISO-8601."""
    return datetime.now(UTC).isoformat()


def digest_of(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


_INS_EVENT = sa.insert(T.events)
_INS_ACCOUNT = sa.insert(T.accounts)
_INS_LEDGER = sa.insert(T.ledger_entries)
_INS_POSITION = sa.insert(T.positions)
_INS_BALANCE = sa.insert(T.balances)
_DEL_POSITION = sa.delete(T.positions).where(
    T.positions.c.account == sa.bindparam("b_account"),
    T.positions.c.instrument == sa.bindparam("b_instrument"))
_UPD_BALANCE = sa.update(T.balances).where(
    T.balances.c.account == sa.bindparam("b_account"),
    T.balances.c.currency == sa.bindparam("b_currency"),
).values(units=T.balances.c.units + sa.bindparam("b_units"))

_SEL_KEY = sa.select(T.idempotency.c.request_digest, T.idempotency.c.status,
                     T.idempotency.c.response).where(
    T.idempotency.c.key == sa.bindparam("b_key"))
_SEL_API_KEY = sa.select(T.api_keys.c.role, T.api_keys.c.account, T.api_keys.c.id).where(
    T.api_keys.c.key_hash == sa.bindparam("b_hash"))


class Store:
    """Reads and writes of the service's tables."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._keys: dict[str, tuple[str, str | None, str]] = {}

    def account_book(self, account: str) -> str | None:
        """Book of a stored account (any instance's), or None."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(T.accounts.c.book).where(T.accounts.c.id == account)
                            ).first()
        return None if row is None else str(row[0])

    # ------------------------------------------------------------------ idempotency
    def remembered(self, key: str) -> tuple[str, int, dict[str, Any]] | None:
        """The stored (request digest, status, response) of an idempotency key, if any."""
        with self.engine.connect() as c:
            row = c.execute(_SEL_KEY, {"b_key": key}).first()
        if row is None:
            return None
        return str(row[0]), int(row[1]), json.loads(row[2])

    def remember_refusal(self, key: str, digest: str, status: int,
                         response: dict[str, Any]) -> None:
        """Store the answer to a refused write, so a retry gets the same answer."""
        with self.engine.begin() as c:
            c.execute(sa.insert(T.idempotency).values(
                key=key, request_digest=digest, status=status,
                response=json.dumps(response), seq=None))

    # ------------------------------------------------------------------ writes
    def commit(self, eff: Effect, payload: dict[str, Any], key: str | None, digest: str,
               response: dict[str, Any], market_row: dict[str, Any] | None = None) -> int:
        """Persist one accepted write; return its sequence number.

        ``response`` gets ``seq`` added and is stored for the idempotency key.
        """
        with self.engine.begin() as c:
            seq = self.write_event(c, eff, payload, key, market_row)
            response["seq"] = seq
            if key is not None:
                self.write_key(c, key, digest, 200, response, seq)
        return seq

    def write_key(self, c: sa.Connection, key: str, digest: str, status: int,
                  response: dict[str, Any], seq: int | None) -> None:
        """Store the answer of an idempotency key inside the caller's transaction."""
        c.execute(sa.insert(T.idempotency).values(
            key=key, request_digest=digest, status=status, response=json.dumps(response),
            seq=seq))

    def write_fill_events(self, c: sa.Connection, items: list[tuple[Effect, dict[str, Any], str]]
                          ) -> list[int]:
        """Write the events of a batch of fills and their derived rows in bulk; their seqs.

        The same rows as :meth:`write_event` called for each in order: one event row each (for
        its seq), then the ledger entries in one statement, the balance changes summed per
        (account, currency) in one upsert, and each touched position's final row. Inside
        the caller's transaction.
        """
        seqs = []
        for eff, payload, key in items:
            if eff.new_account is not None or eff.market is not None:
                raise ValueError("a batch holds fills only")
            seqs.append(int(c.execute(_INS_EVENT, {
                "book": eff.book, "kind": eff.kind, "idempotency_key": key,
                "payload": json.dumps(payload, sort_keys=True), "created_at": now_iso()}
            ).inserted_primary_key[0]))  # type: ignore[index]
        ledger = [{"seq": seq, "account": a, "currency": ccy, "units": u}
                  for seq, (eff, _, _) in zip(seqs, items, strict=True)
                  for a, ccy, u in eff.postings]
        if ledger:
            c.execute(_INS_LEDGER, ledger)
        delta: dict[tuple[str, str], int] = {}
        final: dict[tuple[str, str], tuple[int, Any]] = {}
        for eff, _, _ in items:
            for a, ccy, u in eff.postings:
                delta[(a, ccy)] = delta.get((a, ccy), 0) + u
            final.update(eff.positions)
        rows = [{"account": a, "currency": ccy, "units": u} for (a, ccy), u in delta.items()]
        if rows:
            ins = (pg_insert if c.dialect.name == "postgresql" else sqlite_insert)(T.balances)
            c.execute(ins.on_conflict_do_update(
                index_elements=[T.balances.c.account, T.balances.c.currency],
                set_={"units": T.balances.c.units + ins.excluded.units}), rows)
        if final:
            c.execute(_DEL_POSITION, [{"b_account": a, "b_instrument": i} for a, i in final])
            keep = [{"account": a, "instrument": i, "quantity_units": units,
                     "entry_notional": str(entry)}
                    for (a, i), (units, entry) in final.items() if units]
            if keep:
                c.execute(_INS_POSITION, keep)
        return seqs

    def write_event(self, c: sa.Connection, eff: Effect, payload: dict[str, Any],
                    key: str | None, market_row: dict[str, Any] | None = None) -> int:
        """Write one event and its derived rows inside the caller's transaction; its seq."""
        # statements built once (module level) with parameters: building a statement per
        # call cost about as much as executing it
        seq = int(c.execute(_INS_EVENT, {
            "book": eff.book, "kind": eff.kind, "idempotency_key": key,
            "payload": json.dumps(payload, sort_keys=True), "created_at": now_iso()}
        ).inserted_primary_key[0])  # type: ignore[index]
        if eff.new_account is not None:
            c.execute(_INS_ACCOUNT, {"id": eff.new_account, "book": eff.book,
                                     "created_seq": seq})
        if eff.postings:
            c.execute(_INS_LEDGER, [
                {"seq": seq, "account": a, "currency": ccy, "units": u}
                for a, ccy, u in eff.postings])
            for a, ccy, u in eff.postings:
                self._add_balance(c, a, ccy, u)
        for (acct, inst), (units, entry) in eff.positions.items():
            c.execute(_DEL_POSITION, {"b_account": acct, "b_instrument": inst})
            if units:
                c.execute(_INS_POSITION, {"account": acct, "instrument": inst,
                                          "quantity_units": units,
                                          "entry_notional": str(entry)})
        if market_row is not None:
            exists = c.execute(sa.select(T.market_snapshots.c.digest).where(
                T.market_snapshots.c.digest == market_row["digest"])).first()
            if exists is None:
                c.execute(sa.insert(T.market_snapshots).values(seq=seq, **market_row))
        return seq

    @staticmethod
    def _add_balance(c: sa.Connection, account: str, ccy: str, units: int) -> None:
        upd = c.execute(_UPD_BALANCE, {"b_account": account, "b_currency": ccy, "b_units": units})
        if upd.rowcount == 0:
            c.execute(_INS_BALANCE, {"account": account, "currency": ccy, "units": units})

    def save_params(self, book: str, name: str, digest: str, payload: dict[str, Any]) -> None:
        """Store a parameter set (versioned per book) if its digest is new."""
        with self.engine.begin() as c:
            if c.execute(sa.select(T.param_sets.c.digest)
                         .where(T.param_sets.c.digest == digest)).first():
                return
            n = c.execute(sa.select(sa.func.count()).select_from(T.param_sets)
                          .where(T.param_sets.c.book == book)).scalar_one()
            c.execute(sa.insert(T.param_sets).values(
                digest=digest, book=book, name=name, version=int(n) + 1,
                payload=json.dumps(payload, sort_keys=True, default=str)))

    def save_margin(self, book: str, seq: int, market_digest: str, params_digest: str,
                    payload: dict[str, Any]) -> int:
        """Store the margin results of one epoch; return the epoch number."""
        with self.engine.begin() as c:
            return int(c.execute(sa.insert(T.margin_results).values(
                book=book, seq=seq, market_digest=market_digest, params_digest=params_digest,
                payload=json.dumps(payload))).inserted_primary_key[0])  # type: ignore[index]

    # ------------------------------------------------------------------ reads
    def events(self, after: int = 0, limit: int | None = None) -> Iterator[sa.Row[Any]]:
        """Events with ``seq > after`` in order."""
        q = sa.select(T.events).where(T.events.c.seq > after).order_by(T.events.c.seq)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as c:
            yield from c.execute(q)

    def market_payload(self, digest: str) -> dict[str, Any]:
        """Stored market snapshot by digest."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(T.market_snapshots.c.payload)
                            .where(T.market_snapshots.c.digest == digest)).first()
        if row is None:
            raise LookupError(f"market snapshot {digest} is missing")
        return dict(json.loads(row[0]))

    def stored_balances(self) -> dict[tuple[str, str], int]:
        """Balances table (derived state written with each event)."""
        with self.engine.connect() as c:
            return {(r[0], r[1]): int(r[2]) for r in c.execute(sa.select(T.balances))}

    def ledger_sums(self) -> dict[str, int]:
        """Sum of all ledger entries per currency (0 when money is conserved)."""
        with self.engine.connect() as c:
            return {r[0]: int(r[1]) for r in c.execute(
                sa.select(T.ledger_entries.c.currency, sa.func.sum(T.ledger_entries.c.units))
                .group_by(T.ledger_entries.c.currency))}

    # ------------------------------------------------------------------ keys
    def create_key(self, role: str, account: str | None) -> str:
        """Create an API key; only its SHA-256 is stored. Return the key (shown once)."""
        kid = secrets.token_hex(8)
        key = f"pm_{kid}_{secrets.token_urlsafe(24)}"
        with self.engine.begin() as c:
            c.execute(sa.insert(T.api_keys).values(
                id=kid, key_hash=hashlib.sha256(key.encode()).hexdigest(), role=role,
                account=account, created_at=now_iso()))
        return key

    def known_key(self, key: str) -> tuple[str, str | None, str] | None:
        """(role, account, key id) of a key already found (memory only), or None."""
        return self._keys.get(hashlib.sha256(key.encode()).hexdigest())

    def key_info(self, key: str) -> tuple[str, str | None, str] | None:
        """(role, account, key id) of a key, or None.

        Keys found are remembered in memory (keys cannot be revoked yet, so a remembered key
        is never stale); unknown keys are looked up in the database every time, so a key
        created by ``pmargin keys create`` in another process works at once.
        """
        h = hashlib.sha256(key.encode()).hexdigest()
        hit = self._keys.get(h)
        if hit is not None:
            return hit
        with self.engine.connect() as c:
            row = c.execute(_SEL_API_KEY, {"b_hash": h}).first()
        if row is None:
            return None
        info = (str(row[0]), row[1], str(row[2]))
        self._keys[h] = info
        return info
