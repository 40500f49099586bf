"""Database tables of the service (SQLAlchemy Core). The Alembic migrations create them.

Money is integer minor units (BIGINT); the event log is the source of truth and every other
table is derived from it inside the same transaction.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "accounts",
    "api_keys",
    "attestation_layouts",
    "attestations",
    "balances",
    "events",
    "idempotency",
    "ledger_entries",
    "margin_results",
    "market_snapshots",
    "metadata",
    "param_sets",
    "positions",
]

metadata = sa.MetaData()

# BIGINT keys that autoincrement on SQLite too (SQLite only autoincrements INTEGER PRIMARY KEY).
BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events", metadata,
    sa.Column("seq", BigID, primary_key=True, autoincrement=True),
    sa.Column("book", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)

idempotency = sa.Table(
    "idempotency", metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_digest", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("response", sa.Text(), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=True),
)

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("book", sa.String(32), nullable=False),
    sa.Column("created_seq", sa.BigInteger(), nullable=False),
)

ledger_entries = sa.Table(
    "ledger_entries", metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger(), nullable=False, index=True),
    sa.Column("account", sa.String(128), nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("units", sa.BigInteger(), nullable=False),
)

balances = sa.Table(
    "balances", metadata,
    sa.Column("account", sa.String(128), primary_key=True),
    sa.Column("currency", sa.String(16), primary_key=True),
    sa.Column("units", sa.BigInteger(), nullable=False),
)

positions = sa.Table(
    "positions", metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("instrument", sa.String(64), primary_key=True),
    sa.Column("quantity_units", sa.BigInteger(), nullable=False),
    sa.Column("entry_notional", sa.Text(), nullable=False),
)

market_snapshots = sa.Table(
    "market_snapshots", metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("valuation_time", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
)

param_sets = sa.Table(
    "param_sets", metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("book", sa.String(32), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
)

margin_results = sa.Table(
    "margin_results", metadata,
    sa.Column("epoch", BigID, primary_key=True, autoincrement=True),
    sa.Column("book", sa.String(32), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("market_digest", sa.String(64), nullable=False),
    sa.Column("params_digest", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("account", sa.String(64), nullable=True),
    sa.Column("created_at", sa.String(40), nullable=False),
)

attestations = sa.Table(
    "attestations", metadata,
    sa.Column("epoch", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("market_digest", sa.String(64), nullable=False),
    sa.Column("merkle_root", sa.String(64), nullable=False),
    sa.Column("log_hash", sa.String(64), nullable=False),
    sa.Column("layout_digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("document", sa.Text(), nullable=False),
)

attestation_layouts = sa.Table(
    "attestation_layouts", metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("payload", sa.Text(), nullable=False),
)
