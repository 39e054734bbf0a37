"""Drop lsh_bands: the table was never read or written (the engine keeps its LSH index in
memory and reads a late item's windows back through stored signatures).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lsh_bands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lsh_bands_item_id"))
    op.drop_table("lsh_bands")


def downgrade() -> None:
    op.create_table(
        "lsh_bands",
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("band", sa.Integer(), nullable=False),
        sa.Column("hash", sa.BigInteger(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_lsh_bands_item_id_items"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("level", "band", "hash", "item_id", name=op.f("pk_lsh_bands")),
    )
    with op.batch_alter_table("lsh_bands", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lsh_bands_item_id"), ["item_id"], unique=False)
