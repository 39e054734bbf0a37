"""SQLAlchemy 2 models: the schema of record. Alembic revisions in ``migrations/`` must match.

Times are stored as UTC and always come back timezone-aware (:class:`UTCDateTime`), on SQLite
as on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Source(Base):
    """A configured source (mirrors config.yaml; rows survive removal from the config)."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(Text)
    comments: Mapped[bool] = mapped_column(Boolean, default=False)
    in_config: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # distinct items the boilerplate model has learned from (see dedup.boilerplate)
    boilerplate_docs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # 'config': mirrors config.yaml (retired when removed there); 'opml': added by `opml import`
    origin: Mapped[str] = mapped_column(String(10), default="config", server_default="config")

    __table_args__ = (
        CheckConstraint(
            "type IN ('wordpress', 'google_news', 'bing_news', 'rss', 'atom')", name="type"
        ),
        CheckConstraint("origin IN ('config', 'opml')", name="origin"),
    )


class Feed(Base):
    """One polled URL with its poll state. A source has its main feed and comment feeds."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20))  # 'main' | 'comments'
    # The article a comment feed belongs to (no FK: items already reference feeds).
    article_item_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    etag: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_modified: Mapped[str | None] = mapped_column(Text, nullable=True)
    body_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_result: Mapped[str | None] = mapped_column(String(40), nullable=True)
    next_check_at: Mapped[datetime] = mapped_column(UTCDateTime)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retry_after_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    items_total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # the URL this feed was polled at before a permanent redirect (301/308) moved it
    moved_from: Mapped[str | None] = mapped_column(Text, nullable=True)
    moved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("source_id", "url"),
        Index("ix_feeds_due", "enabled", "next_check_at"),
        CheckConstraint("kind IN ('main', 'comments')", name="kind"),
    )


class PollLog(Base):
    """One row per poll attempt: what `status` and metrics report, and where errors land."""

    __tablename__ = "poll_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str] = mapped_column(String(40))  # ok | not_modified | unchanged | error kind
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    items_seen: Mapped[int] = mapped_column(Integer, default=0)
    items_new: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    warning: Mapped[str | None] = mapped_column(Text, nullable=True)


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    feed_id: Mapped[int | None] = mapped_column(
        ForeignKey("feeds.id", ondelete="SET NULL"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(10))  # 'article' | 'comment'
    parent_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("items.id", ondelete="SET NULL"), nullable=True, index=True
    )
    guid: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    canonical_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    title: Mapped[str] = mapped_column(Text, default="")
    publisher: Mapped[str | None] = mapped_column(Text, nullable=True)
    publisher_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    author: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    lang: Mapped[str | None] = mapped_column(String(16), nullable=True)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    content_hash: Mapped[str] = mapped_column(String(64))
    comments_feed_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    dedup_state: Mapped[str] = mapped_column(String(10), default="pending")  # pending | done
    # hash of the entry's raw bytes in the document it came from: a re-poll skips parsing it
    entry_hash: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # an edited entry (same guid, new content) replaces the stored version; fetched_at stays
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    update_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("source_id", "guid"),
        Index("ix_items_canonical_url", "canonical_url"),
        Index("ix_items_content_hash", "content_hash"),
        Index("ix_items_published_at", "published_at"),
        # pending items, and the clustered articles of a time window (the engine's start-up)
        Index("ix_items_held", "dedup_state", "kind", "published_at"),
        Index("ix_items_source_entry_hash", "source_id", "entry_hash"),
        CheckConstraint("kind IN ('article', 'comment')", name="kind"),
    )


class PrunedTotal(Base):
    """What pruned rows had counted towards a metrics counter, so counters never go back."""

    __tablename__ = "pruned_totals"

    metric: Mapped[str] = mapped_column(String(60), primary_key=True)
    label: Mapped[str] = mapped_column(String(120), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Signature(Base):
    """A MinHash signature per item and level, stored as bytes so restarts never recompute."""

    __tablename__ = "signatures"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    level: Mapped[str] = mapped_column(String(10), primary_key=True)
    num_perm: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer, default=1)
    hashvalues: Mapped[bytes] = mapped_column(LargeBinary)
    features: Mapped[Any] = mapped_column(JSON, nullable=True)  # weighted terms for verification
    # the story features again, in the form a start-up reads fast (dedup.storedform)
    packed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class Cluster(Base):
    __tablename__ = "clusters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    level: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    size: Mapped[int] = mapped_column(Integer, default=0)
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("clusters.id", ondelete="SET NULL"), nullable=True
    )

    __table_args__ = (
        Index("ix_clusters_level_updated", "level", "updated_at"),
        CheckConstraint("level IN ('duplicate', 'story', 'thread')", name="level"),
    )


class ClusterMember(Base):
    """An item's membership at one level, with the evidence that put it there."""

    __tablename__ = "cluster_members"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    level: Mapped[str] = mapped_column(String(10), primary_key=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    matched_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("items.id", ondelete="SET NULL"), nullable=True
    )
    method: Mapped[str] = mapped_column(String(20))  # new | guid | url | hash | minhash | manual
    score: Mapped[float | None] = mapped_column(Float, nullable=True)  # verified similarity
    estimated_score: Mapped[float | None] = mapped_column(Float, nullable=True)  # MinHash
    matched_bands: Mapped[Any] = mapped_column(JSON, nullable=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    manual: Mapped[bool] = mapped_column(Boolean, default=False)


class BoilerplateLine(Base):
    """Lines learned to recur across one source's items (site chrome), with counts."""

    __tablename__ = "boilerplate_lines"

    source_id: Mapped[int] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
    )
    line_hash: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DigestRun(Base):
    """A digest is a row first, an email second: recorded before sending, marked after."""

    __tablename__ = "digest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest_name: Mapped[str] = mapped_column(String(100), index=True)
    period_start_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    period_end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|sent|empty|failed
    message_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    message: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'empty', 'failed')", name="status"),
        # one run per digest and scheduled slot, however many daemons fire it
        UniqueConstraint("digest_name", "period_end_at"),
    )


class DigestEntry(Base):
    __tablename__ = "digest_entries"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("digest_runs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(10))
    item_ids: Mapped[Any] = mapped_column(JSON)
    new_item_ids: Mapped[Any] = mapped_column(JSON)
    # a story that did not fit (max_entries): not mailed by this run, it leads the next one
    deferred: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Correction(Base):
    """A manual split or merge (``aggregator split``/``merge``). An active split is a
    cannot-link between ``item_id`` and ``other_item_id`` at ``level`` that the engine keeps;
    a later merge that joins them deactivates it."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # split | merge
    level: Mapped[str] = mapped_column(String(10))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    other_item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    cluster_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    other_cluster_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("kind IN ('split', 'merge')", name="kind"),
        CheckConstraint("level IN ('duplicate', 'story', 'thread')", name="level"),
    )


class DedupEpoch(Base):
    """One row. Every writer of cluster state locks it first (serialising clustering across
    processes) and bumps ``epoch`` when it changed state behind the others' backs. ``holder``
    is the daemon that clusters until ``held_until`` (renewed at each of its turns): the
    other daemons leave their stored items to it instead of reloading to place them."""

    __tablename__ = "dedup_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    holder: Mapped[str | None] = mapped_column(String(100), nullable=True)
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
