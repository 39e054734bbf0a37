"""The schema of record as SQLAlchemy Core tables. Alembic revisions in ``migrations/`` must
match.

One definition, two uses: the ORM classes of :mod:`.models` map onto these tables, and the
commands that only read the store (``status``, ``items``, ``sources list``) query them
directly, so they never import ``sqlalchemy.orm`` nor build the mappers (about a third of
their start-up). Times are stored as UTC and always come back timezone-aware
(:class:`UTCDateTime`), on SQLite as on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is UTC in, UTC out, whatever the dialect does with time zones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

sources = Table(
    "sources",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), unique=True, nullable=False),
    Column("type", String(20), nullable=False),
    Column("url", Text, nullable=False),
    Column("comments", Boolean, default=False, nullable=False),
    Column("in_config", Boolean, default=True, nullable=False),
    Column("enabled", Boolean, default=True, nullable=False),
    Column("priority", Integer, default=0, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # distinct items the boilerplate model has learned from (see dedup.boilerplate)
    Column("boilerplate_docs", Integer, default=0, server_default="0", nullable=False),
    # 'config': mirrors config.yaml (retired when removed there); 'opml': added by `opml import`
    Column("origin", String(10), default="config", server_default="config", nullable=False),
    CheckConstraint(
        "type IN ('wordpress', 'google_news', 'bing_news', 'rss', 'atom')", name="type"
    ),
    CheckConstraint("origin IN ('config', 'opml')", name="origin"),
)


feeds = Table(
    "feeds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("kind", String(20), nullable=False),  # 'main' | 'comments'
    # The article a comment feed belongs to (no FK: items already reference feeds).
    Column("article_item_id", Integer, nullable=True),
    Column("enabled", Boolean, default=True, nullable=False),
    Column("disabled_reason", Text, nullable=True),
    Column("etag", Text, nullable=True),
    Column("last_modified", Text, nullable=True),
    Column("body_hash", String(64), nullable=True),
    Column("last_polled_at", UTCDateTime, nullable=True),
    Column("last_success_at", UTCDateTime, nullable=True),
    Column("last_result", String(40), nullable=True),
    Column("next_check_at", UTCDateTime, nullable=False),
    Column("error_count", Integer, default=0, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", UTCDateTime, nullable=True),
    Column("retry_after_until", UTCDateTime, nullable=True),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("items_total", Integer, default=0, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # the URL this feed was polled at before a permanent redirect (301/308) moved it
    Column("moved_from", Text, nullable=True),
    Column("moved_at", UTCDateTime, nullable=True),
    UniqueConstraint("source_id", "url"),
    Index("ix_feeds_due", "enabled", "next_check_at"),
    CheckConstraint("kind IN ('main', 'comments')", name="kind"),
)


poll_log = Table(
    "poll_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("feed_id", ForeignKey("feeds.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("duration_ms", Integer, default=0, nullable=False),
    Column("result", String(40), nullable=False),  # ok | not_modified | unchanged | error kind
    Column("http_status", Integer, nullable=True),
    Column("items_seen", Integer, default=0, nullable=False),
    Column("items_new", Integer, default=0, nullable=False),
    Column("error", Text, nullable=True),
    Column("warning", Text, nullable=True),
)


items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("feed_id", ForeignKey("feeds.id", ondelete="SET NULL"), nullable=True),
    Column("kind", String(10), nullable=False),  # 'article' | 'comment'
    Column(
        "parent_item_id", ForeignKey("items.id", ondelete="SET NULL"), nullable=True, index=True
    ),
    Column("guid", Text, nullable=False),
    Column("url", Text, nullable=True),
    Column("canonical_url", Text, nullable=True),
    Column("title", Text, default="", nullable=False),
    Column("publisher", Text, nullable=True),
    Column("publisher_url", Text, nullable=True),
    Column("author", Text, nullable=True),
    Column("summary", Text, default="", nullable=False),
    Column("text", Text, default="", nullable=False),
    Column("lang", String(16), nullable=True),
    Column("published_at", UTCDateTime, nullable=False),
    Column("published_at_estimated", Boolean, default=False, nullable=False),
    Column("fetched_at", UTCDateTime, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("comments_feed_url", Text, nullable=True),
    Column("dedup_state", String(10), default="pending", nullable=False),  # pending|done|failed
    # hash of the entry's raw bytes in the document it came from: a re-poll skips parsing it
    Column("entry_hash", String(32), nullable=True),
    # an edited entry (same guid, new content) replaces the stored version; fetched_at stays
    Column("updated_at", UTCDateTime, nullable=True),
    Column("update_count", Integer, default=0, server_default="0", nullable=False),
    UniqueConstraint("source_id", "guid"),
    Index("ix_items_canonical_url", "canonical_url"),
    Index("ix_items_content_hash", "content_hash"),
    Index("ix_items_published_at", "published_at"),
    # pending items, and the clustered articles of a time window (the engine's start-up)
    Index("ix_items_held", "dedup_state", "kind", "published_at"),
    Index("ix_items_source_entry_hash", "source_id", "entry_hash"),
    CheckConstraint("kind IN ('article', 'comment')", name="kind"),
)


pruned_totals = Table(
    "pruned_totals",
    metadata,
    Column("metric", String(60), primary_key=True),
    Column("label", String(120), primary_key=True),
    Column("value", BigInteger, default=0, server_default="0", nullable=False),
)


signatures = Table(
    "signatures",
    metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("level", String(10), primary_key=True),
    Column("num_perm", Integer, nullable=False),
    Column("seed", Integer, default=1, nullable=False),
    Column("hashvalues", LargeBinary, nullable=False),
    Column("features", JSON, nullable=True),  # weighted terms for verification
    # the story features again, in the form a start-up reads fast (dedup.storedform)
    Column("packed", LargeBinary, nullable=True),
)


clusters = Table(
    "clusters",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("level", String(10), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("size", Integer, default=0, nullable=False),
    Column("merged_into_id", ForeignKey("clusters.id", ondelete="SET NULL"), nullable=True),
    Index("ix_clusters_level_updated", "level", "updated_at"),
    CheckConstraint("level IN ('duplicate', 'story', 'thread')", name="level"),
)


cluster_members = Table(
    "cluster_members",
    metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("level", String(10), primary_key=True),
    Column("cluster_id", ForeignKey("clusters.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("matched_item_id", ForeignKey("items.id", ondelete="SET NULL"), nullable=True),
    Column("method", String(20), nullable=False),  # new | guid | url | hash | minhash | manual
    Column("score", Float, nullable=True),  # verified similarity
    Column("estimated_score", Float, nullable=True),  # MinHash
    Column("matched_bands", JSON, nullable=True),
    Column("joined_at", UTCDateTime, nullable=False),
    Column("manual", Boolean, default=False, nullable=False),
)


boilerplate_lines = Table(
    "boilerplate_lines",
    metadata,
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("line_hash", BigInteger, primary_key=True),
    Column("count", Integer, default=0, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
)


digest_runs = Table(
    "digest_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest_name", String(100), index=True, nullable=False),
    Column("period_start_at", UTCDateTime, nullable=True),
    Column("period_end_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("status", String(10), default="pending", nullable=False),  # pending|sent|empty|failed
    Column("message_id", Text, nullable=True),
    Column("subject", Text, nullable=True),
    Column("message", LargeBinary, nullable=True),
    Column("attempts", Integer, default=0, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    CheckConstraint("status IN ('pending', 'sent', 'empty', 'failed')", name="status"),
    # one run per digest and scheduled slot, however many daemons fire it
    UniqueConstraint("digest_name", "period_end_at"),
)


digest_entries = Table(
    "digest_entries",
    metadata,
    Column("run_id", ForeignKey("digest_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("cluster_id", ForeignKey("clusters.id", ondelete="CASCADE"), nullable=False),
    Column("level", String(10), nullable=False),
    Column("item_ids", JSON, nullable=False),
    Column("new_item_ids", JSON, nullable=False),
    # a story that did not fit (max_entries): not mailed by this run, it leads the next one
    Column("deferred", Boolean, default=False, server_default=false(), nullable=False),
)


corrections = Table(
    "corrections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(10), nullable=False),  # split | merge
    Column("level", String(10), nullable=False),
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("other_item_id", ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("cluster_id", Integer, nullable=True),
    Column("other_cluster_id", Integer, nullable=True),
    Column("active", Boolean, default=True, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("kind IN ('split', 'merge')", name="kind"),
    CheckConstraint("level IN ('duplicate', 'story', 'thread')", name="level"),
)


dedup_epoch = Table(
    "dedup_epoch",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("epoch", BigInteger, default=0, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("holder", String(100), nullable=True),
    Column("held_until", UTCDateTime, nullable=True),
)
