"""one digest run per digest and scheduled slot

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("digest_runs", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_digest_runs_digest_name_period_end_at"), ["digest_name", "period_end_at"]
        )


def downgrade() -> None:
    with op.batch_alter_table("digest_runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_digest_runs_digest_name_period_end_at"), type_="unique")
