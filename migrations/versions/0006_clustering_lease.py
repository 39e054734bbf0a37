"""dedup_epoch.holder/held_until: which daemon clusters, so the others do not reload for it

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dedup_epoch", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("held_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dedup_epoch", schema=None) as batch_op:
        batch_op.drop_column("held_until")
        batch_op.drop_column("holder")
