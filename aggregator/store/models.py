"""The ORM classes, mapped onto the Core tables of :mod:`.tables` (the schema of record).

The annotations here only type the attributes; every column, constraint and index is
defined once, in :mod:`.tables`. Commands that only read the store use those tables and
never import this module (nor ``sqlalchemy.orm``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped

from . import tables


class Base(DeclarativeBase):
    metadata = tables.metadata


class Source(Base):
    """A configured source (mirrors config.yaml; rows survive removal from the config)."""

    __table__ = tables.sources

    id: Mapped[int]
    name: Mapped[str]
    type: Mapped[str]
    url: Mapped[str]
    comments: Mapped[bool]
    in_config: Mapped[bool]
    enabled: Mapped[bool]
    priority: Mapped[int]
    created_at: Mapped[datetime]
    boilerplate_docs: Mapped[int]
    origin: Mapped[str]


class Feed(Base):
    """One polled URL with its poll state. A source has its main feed and comment feeds."""

    __table__ = tables.feeds

    id: Mapped[int]
    source_id: Mapped[int]
    url: Mapped[str]
    kind: Mapped[str]
    article_item_id: Mapped[int | None]
    enabled: Mapped[bool]
    disabled_reason: Mapped[str | None]
    etag: Mapped[str | None]
    last_modified: Mapped[str | None]
    body_hash: Mapped[str | None]
    last_polled_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_result: Mapped[str | None]
    next_check_at: Mapped[datetime]
    error_count: Mapped[int]
    last_error: Mapped[str | None]
    last_error_at: Mapped[datetime | None]
    retry_after_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None]
    lease_until: Mapped[datetime | None]
    items_total: Mapped[int]
    created_at: Mapped[datetime]
    moved_from: Mapped[str | None]
    moved_at: Mapped[datetime | None]


class PollLog(Base):
    """One row per poll attempt: what `status` and metrics report, and where errors land."""

    __table__ = tables.poll_log

    id: Mapped[int]
    feed_id: Mapped[int]
    started_at: Mapped[datetime]
    duration_ms: Mapped[int]
    result: Mapped[str]
    http_status: Mapped[int | None]
    items_seen: Mapped[int]
    items_new: Mapped[int]
    error: Mapped[str | None]
    warning: Mapped[str | None]


class Item(Base):
    __table__ = tables.items

    id: Mapped[int]
    source_id: Mapped[int]
    feed_id: Mapped[int | None]
    kind: Mapped[str]
    parent_item_id: Mapped[int | None]
    guid: Mapped[str]
    url: Mapped[str | None]
    canonical_url: Mapped[str | None]
    title: Mapped[str]
    publisher: Mapped[str | None]
    publisher_url: Mapped[str | None]
    author: Mapped[str | None]
    summary: Mapped[str]
    text: Mapped[str]
    lang: Mapped[str | None]
    published_at: Mapped[datetime]
    published_at_estimated: Mapped[bool]
    fetched_at: Mapped[datetime]
    content_hash: Mapped[str]
    comments_feed_url: Mapped[str | None]
    dedup_state: Mapped[str]
    entry_hash: Mapped[str | None]
    updated_at: Mapped[datetime | None]
    update_count: Mapped[int]


class PrunedTotal(Base):
    """What pruned rows had counted towards a metrics counter, so counters never go back."""

    __table__ = tables.pruned_totals

    metric: Mapped[str]
    label: Mapped[str]
    value: Mapped[int]


class Signature(Base):
    """A MinHash signature per item and level, stored as bytes so restarts never recompute."""

    __table__ = tables.signatures

    item_id: Mapped[int]
    level: Mapped[str]
    num_perm: Mapped[int]
    seed: Mapped[int]
    hashvalues: Mapped[bytes]
    features: Mapped[Any]
    packed: Mapped[bytes | None]


class Cluster(Base):
    __table__ = tables.clusters

    id: Mapped[int]
    level: Mapped[str]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    size: Mapped[int]
    merged_into_id: Mapped[int | None]


class ClusterMember(Base):
    """An item's membership at one level, with the evidence that put it there."""

    __table__ = tables.cluster_members

    item_id: Mapped[int]
    level: Mapped[str]
    cluster_id: Mapped[int]
    matched_item_id: Mapped[int | None]
    method: Mapped[str]
    score: Mapped[float | None]
    estimated_score: Mapped[float | None]
    matched_bands: Mapped[Any]
    joined_at: Mapped[datetime]
    manual: Mapped[bool]


class BoilerplateLine(Base):
    """Lines learned to recur across one source's items (site chrome), with counts."""

    __table__ = tables.boilerplate_lines

    source_id: Mapped[int]
    line_hash: Mapped[int]
    count: Mapped[int]
    last_seen_at: Mapped[datetime]


class DigestRun(Base):
    """A digest is a row first, an email second: recorded before sending, marked after."""

    __table__ = tables.digest_runs

    id: Mapped[int]
    digest_name: Mapped[str]
    period_start_at: Mapped[datetime | None]
    period_end_at: Mapped[datetime]
    created_at: Mapped[datetime]
    status: Mapped[str]
    message_id: Mapped[str | None]
    subject: Mapped[str | None]
    message: Mapped[bytes | None]
    attempts: Mapped[int]
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None]
    sent_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None]
    lease_until: Mapped[datetime | None]


class DigestEntry(Base):
    __table__ = tables.digest_entries

    run_id: Mapped[int]
    position: Mapped[int]
    cluster_id: Mapped[int]
    level: Mapped[str]
    item_ids: Mapped[Any]
    new_item_ids: Mapped[Any]
    deferred: Mapped[bool]


class Correction(Base):
    """A manual split or merge (``aggregator split``/``merge``). An active split is a
    cannot-link between ``item_id`` and ``other_item_id`` at ``level`` that the engine keeps;
    a later merge that joins them deactivates it."""

    __table__ = tables.corrections

    id: Mapped[int]
    kind: Mapped[str]
    level: Mapped[str]
    item_id: Mapped[int]
    other_item_id: Mapped[int]
    cluster_id: Mapped[int | None]
    other_cluster_id: Mapped[int | None]
    active: Mapped[bool]
    created_at: Mapped[datetime]


class DedupEpoch(Base):
    """One row. Every writer of cluster state locks it first (serialising clustering across
    processes) and bumps ``epoch`` when it changed state behind the others' backs. ``holder``
    is the daemon that clusters until ``held_until`` (renewed at each of its turns): the
    other daemons leave their stored items to it instead of reloading to place them."""

    __table__ = tables.dedup_epoch

    id: Mapped[int]
    epoch: Mapped[int]
    updated_at: Mapped[datetime]
    holder: Mapped[str | None]
    held_until: Mapped[datetime | None]
