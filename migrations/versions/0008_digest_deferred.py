"""digest_entries.deferred: the stories a full digest could not mail, so the next run
mails them first instead of losing them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("digest_entries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deferred", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("digest_entries", schema=None) as batch_op:
        batch_op.drop_column("deferred")
