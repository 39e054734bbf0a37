"""items.entry_hash: the hash of an entry's raw bytes, so known entries are not parsed again

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entry_hash", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_items_source_entry_hash", ["source_id", "entry_hash"])


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index("ix_items_source_entry_hash")
        batch_op.drop_column("entry_hash")
