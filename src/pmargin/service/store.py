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

from pmargin.service import tables as T
from pmargin.service.state import Effect

__all__ = ["Store", "digest_of", "now_iso"]


def now_iso() -> str:
    """Current UTC time, ISO-8601."""
    return datetime.now(UTC).isoformat()


def digest_of(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class Store:
    """Reads and writes of the service's tables."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ idempotency
    def remembered(self, key: str) -> tuple[str, int, dict[str, Any]] | None:
        """The stored (request digest, status, response) of an idempotency key, if any."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(T.idempotency.c.request_digest, T.idempotency.c.status,
                                      T.idempotency.c.response)
                            .where(T.idempotency.c.key == key)).first()
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
            seq = int(c.execute(sa.insert(T.events).values(
                book=eff.book, kind=eff.kind, idempotency_key=key,
                payload=json.dumps(payload, sort_keys=True), created_at=now_iso())
            ).inserted_primary_key[0])  # type: ignore[index]
            if eff.new_account is not None:
                c.execute(sa.insert(T.accounts).values(id=eff.new_account, book=eff.book,
                                                       created_seq=seq))
            if eff.postings:
                c.execute(sa.insert(T.ledger_entries), [
                    {"seq": seq, "account": a, "currency": ccy, "units": u}
                    for a, ccy, u in eff.postings])
                for a, ccy, u in eff.postings:
                    self._add_balance(c, a, ccy, u)
            for (acct, inst), (units, entry) in eff.positions.items():
                c.execute(sa.delete(T.positions).where(T.positions.c.account == acct,
                                                       T.positions.c.instrument == inst))
                if units:
                    c.execute(sa.insert(T.positions).values(
                        account=acct, instrument=inst, quantity_units=units,
                        entry_notional=str(entry)))
            if market_row is not None:
                exists = c.execute(sa.select(T.market_snapshots.c.digest).where(
                    T.market_snapshots.c.digest == market_row["digest"])).first()
                if exists is None:
                    c.execute(sa.insert(T.market_snapshots).values(seq=seq, **market_row))
            response["seq"] = seq
            if key is not None:
                c.execute(sa.insert(T.idempotency).values(
                    key=key, request_digest=digest, status=200,
                    response=json.dumps(response), seq=seq))
        return seq

    @staticmethod
    def _add_balance(c: sa.Connection, account: str, ccy: str, units: int) -> None:
        upd = c.execute(sa.update(T.balances)
                        .where(T.balances.c.account == account, T.balances.c.currency == ccy)
                        .values(units=T.balances.c.units + units))
        if upd.rowcount == 0:
            c.execute(sa.insert(T.balances).values(account=account, currency=ccy, units=units))

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

    def key_info(self, key: str) -> tuple[str, str | None, str] | None:
        """(role, account, key id) of a key, or None."""
        h = hashlib.sha256(key.encode()).hexdigest()
        with self.engine.connect() as c:
            row = c.execute(sa.select(T.api_keys.c.role, T.api_keys.c.account, T.api_keys.c.id)
                            .where(T.api_keys.c.key_hash == h)).first()
        return None if row is None else (str(row[0]), row[1], str(row[2]))
