"""signatures.packed: the story features in the form a start-up reads fast (issue 22),
written for every stored item here, from its JSON features.

Filled now rather than when an item is next loaded: a load then writes nothing, and the first
start-up after the upgrade is as fast as the next. Items whose features the form cannot hold
keep NULL and are read from their JSON, as before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from aggregator.dedup.storedform import pack

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000

_signatures = sa.table(
    "signatures",
    sa.column("item_id", sa.Integer),
    sa.column("level", sa.String),
    sa.column("features", sa.JSON),
    sa.column("packed", sa.LargeBinary),
)


# Plain ADD COLUMN, not a batch: on SQLite a batch would copy the whole table.
def upgrade() -> None:
    op.add_column("signatures", sa.Column("packed", sa.LargeBinary(), nullable=True))
    conn = op.get_bind()
    t = _signatures
    write = (
        sa.update(t)
        .where(t.c.item_id == sa.bindparam("id"), t.c.level == "story")
        .values(packed=sa.bindparam("blob"))
    )
    after = -1
    while True:  # by item id, a batch at a time: a store's features never all in memory
        rows = conn.execute(
            sa.select(t.c.item_id, t.c.features)
            .where(t.c.level == "story", t.c.item_id > after, t.c.features.is_not(None))
            .order_by(t.c.item_id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        after = rows[-1][0]
        values = [{"id": i, "blob": blob} for i, f in rows if (blob := pack(f)) is not None]
        if values:
            conn.execute(write, values)


def downgrade() -> None:
    with op.batch_alter_table("signatures", schema=None) as batch_op:
        batch_op.drop_column("packed")
