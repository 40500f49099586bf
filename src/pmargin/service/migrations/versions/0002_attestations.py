"""Attestations: one signed Merkle root per epoch, and the engines' column layouts.

Revision ID: 0002_attestations
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_attestations"
down_revision = "0001"


def upgrade() -> None:
    """Create ``attestations`` and ``attestation_layouts``."""
    op.create_table(
        "attestations",
        sa.Column("epoch", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("market_digest", sa.String(64), nullable=False),
        sa.Column("merkle_root", sa.String(64), nullable=False),
        sa.Column("log_hash", sa.String(64), nullable=False),
        sa.Column("layout_digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
    )
    op.create_table(
        "attestation_layouts",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("payload", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("attestation_layouts")
    op.drop_table("attestations")
