"""items (dedup_state, kind, published_at) index: the engine's start-up reads its window of
clustered articles through it instead of every clustered item of the whole history

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain index operations, not a batch: on SQLite a batch would copy the whole items table.
def upgrade() -> None:
    op.create_index("ix_items_held", "items", ["dedup_state", "kind", "published_at"])
    op.drop_index("ix_items_dedup_state", table_name="items")  # the new index's first column


def downgrade() -> None:
    op.create_index("ix_items_dedup_state", "items", ["dedup_state"])
    op.drop_index("ix_items_held", table_name="items")
