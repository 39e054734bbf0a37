"""A daemon that runs for a year: items.updated_at/update_count (edited entries),
feeds.moved_from (permanent redirects), pruned_totals (metrics counters that survive pruning)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD COLUMN, not a batch: on SQLite a batch would copy the whole items table.
def upgrade() -> None:
    op.add_column("items", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "items", sa.Column("update_count", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("feeds", sa.Column("moved_from", sa.Text(), nullable=True))
    op.add_column("feeds", sa.Column("moved_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "pruned_totals",
        sa.Column("metric", sa.String(length=60), nullable=False),
        sa.Column("label", sa.String(length=60), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("metric", "label", name=op.f("pk_pruned_totals")),
    )


def downgrade() -> None:
    op.drop_table("pruned_totals")
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("moved_at")
        batch_op.drop_column("moved_from")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("update_count")
        batch_op.drop_column("updated_at")
