"""pruned_totals.label holds "status:digest name" for pruned digest runs (names are up to
100 characters), so it widens from 60 to 120.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pruned_totals", schema=None) as batch_op:
        batch_op.alter_column(
            "label", existing_type=sa.String(length=60), type_=sa.String(length=120)
        )


def downgrade() -> None:
    with op.batch_alter_table("pruned_totals", schema=None) as batch_op:
        batch_op.alter_column(
            "label", existing_type=sa.String(length=120), type_=sa.String(length=60)
        )
