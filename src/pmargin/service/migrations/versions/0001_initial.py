"""Initial schema: event log, idempotency, accounts, ledger, derived state, keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "events",
        sa.Column("seq", BigID, primary_key=True, autoincrement=True),
        sa.Column("book", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "idempotency",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("book", sa.String(32), nullable=False),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger(), nullable=False, index=True),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "balances",
        sa.Column("account", sa.String(128), primary_key=True),
        sa.Column("currency", sa.String(16), primary_key=True),
        sa.Column("units", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "positions",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("instrument", sa.String(64), primary_key=True),
        sa.Column("quantity_units", sa.BigInteger(), nullable=False),
        sa.Column("entry_notional", sa.Text(), nullable=False),
    )
    op.create_table(
        "market_snapshots",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("valuation_time", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
    )
    op.create_table(
        "param_sets",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("book", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
    )
    op.create_table(
        "margin_results",
        sa.Column("epoch", BigID, primary_key=True, autoincrement=True),
        sa.Column("book", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("market_digest", sa.String(64), nullable=False),
        sa.Column("params_digest", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("account", sa.String(64), nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    """Drop every table."""
    for name in ("api_keys", "margin_results", "param_sets", "market_snapshots", "positions",
                 "balances", "ledger_entries", "accounts", "idempotency", "events"):
        op.drop_table(name)
