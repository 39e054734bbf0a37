"""Bounded growth: prune old poll_log rows and items nothing needs any more, in batches.

Each batch is its own short transaction, so polling (one writer at a time on SQLite) waits
at most one batch. What pruned rows counted towards a metrics counter is added to
``pruned_totals`` in the same transaction, so counters never go backwards.

An item is kept while anything may still show or need it: it is pending clustering, was
fetched or updated within ``retention.items``, belongs to a cluster (at any level) that
changed within that time, or is in a cluster of a digest run not sent yet.

A sent digest run keeps its rendered message (what a crash between send and mark would
resend) for ``retention.digests``; the run row itself goes once that time has passed and no
stored cluster is named by its entries (they go with their clusters), except each digest's
latest sent run, whose deferred stories lead the next one.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, aliased

from .config import RetentionConfig
from .metrics import DURATION_BUCKETS_S
from .store import Store
from .store.items import dialect_insert
from .store.models import (
    Cluster,
    ClusterMember,
    DigestEntry,
    DigestRun,
    Item,
    PollLog,
    PrunedTotal,
)

log = logging.getLogger(__name__)

UNSENT = ("pending", "failed")
DONE = ("sent", "empty")


@dataclass(frozen=True, slots=True)
class ItemFacts:
    """What the keep/prune decision reads about one stored item."""

    id: int
    dedup_state: str
    fetched_at: datetime
    updated_at: datetime | None
    newest_cluster_at: datetime | None  # latest change of any cluster it is a member of
    cluster_ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class Pruned:
    poll_log: int = 0
    items: int = 0
    clusters: int = 0
    digest_runs: int = 0

    def __bool__(self) -> bool:
        return bool(self.poll_log or self.items or self.clusters or self.digest_runs)


def prunable(facts: ItemFacts, cutoff: datetime, held_clusters: frozenset[int]) -> bool:
    """Whether an item may go: clustered, quiet since ``cutoff`` itself and in every cluster
    it belongs to, and in no cluster an unsent digest will show."""
    if facts.dedup_state != "done":
        return False
    last = max(facts.fetched_at, facts.updated_at or facts.fetched_at)
    if last >= cutoff:
        return False
    if facts.newest_cluster_at is not None and facts.newest_cluster_at >= cutoff:
        return False
    return not (facts.cluster_ids & held_clusters)


def poll_totals(rows: Iterable[tuple[str, int]]) -> Counter[tuple[str, str]]:
    """The counter contributions of poll_log rows (result, duration_ms) as they are summed
    by ``metrics``: polls by result, and the duration histogram of network polls."""
    out: Counter[tuple[str, str]] = Counter()
    thresholds_ms = [round(b * 1000) for b in DURATION_BUCKETS_S]
    for result, duration_ms in rows:
        out[("polls", result)] += 1
        if result == "imported":
            continue
        out[("poll_duration", "count")] += 1
        out[("poll_duration", "sum_ms")] += duration_ms
        for t in thresholds_ms:
            if duration_ms <= t:
                out[("poll_duration", f"le_{t}")] += 1
    return out


def add_totals(s: Session, totals: Mapping[tuple[str, str], int]) -> None:
    if not totals:
        return
    stmt = dialect_insert(s.get_bind().dialect.name, PrunedTotal)
    stmt = stmt.on_conflict_do_update(
        index_elements=["metric", "label"], set_={"value": PrunedTotal.value + stmt.excluded.value}
    )
    s.execute(stmt, [{"metric": m, "label": lb, "value": v} for (m, lb), v in totals.items()])


def pruned_totals(s: Session) -> dict[tuple[str, str], int]:
    return {(m, lb): int(v) for m, lb, v in s.execute(select(PrunedTotal.__table__))}


def prune_poll_log(s: Session, cutoff: datetime, batch: int) -> int:
    """One batch of poll_log rows older than ``cutoff``, folded into the totals first."""
    rows = s.execute(
        select(PollLog.id, PollLog.result, PollLog.duration_ms)
        .where(PollLog.started_at < cutoff)
        .order_by(PollLog.id)
        .limit(batch)
    ).all()
    if not rows:
        return 0
    add_totals(s, poll_totals((r, d) for _, r, d in rows))
    s.execute(delete(PollLog).where(PollLog.id.in_([i for i, _, _ in rows])))
    return len(rows)


def held_clusters(s: Session) -> frozenset[int]:
    """Clusters that a digest run not sent yet will show (its entries name them)."""
    return frozenset(
        s.scalars(
            select(DigestEntry.cluster_id)
            .join(DigestRun, DigestRun.id == DigestEntry.run_id)
            .where(DigestRun.status.in_(UNSENT))
        )
    )


def item_facts(s: Session, after_id: int, cutoff: datetime, batch: int) -> list[ItemFacts]:
    """The next ``batch`` items by id after ``after_id`` fetched before ``cutoff``."""
    rows = s.execute(
        select(Item.id, Item.dedup_state, Item.fetched_at, Item.updated_at)
        .where(Item.id > after_id, Item.fetched_at < cutoff)
        .order_by(Item.id)
        .limit(batch)
    ).all()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    clusters: dict[int, list[tuple[int, datetime]]] = {i: [] for i in ids}
    for item_id, cid, changed_at in s.execute(
        select(ClusterMember.item_id, Cluster.id, Cluster.updated_at)
        .join(Cluster, Cluster.id == ClusterMember.cluster_id)
        .where(ClusterMember.item_id.in_(ids))
    ):
        clusters[item_id].append((cid, changed_at))
    return [
        ItemFacts(
            id=i,
            dedup_state=state,
            fetched_at=fetched,
            updated_at=updated,
            newest_cluster_at=max((c[1] for c in clusters[i]), default=None),
            cluster_ids=frozenset(c[0] for c in clusters[i]),
        )
        for i, state, fetched, updated in rows
    ]


def prune_items(s: Session, ids: list[int]) -> int:
    """Delete these items (their signatures, bands and memberships go with them), counting
    them and their memberships into the totals first."""
    if not ids:
        return 0
    totals: Counter[tuple[str, str]] = Counter()
    for kind, n in s.execute(
        select(Item.kind, func.count()).where(Item.id.in_(ids)).group_by(Item.kind)
    ):
        totals[("items", kind)] += int(n)
    for level, n in s.execute(
        select(ClusterMember.level, func.count())
        .where(ClusterMember.item_id.in_(ids), ClusterMember.method != "new")
        .group_by(ClusterMember.level)
    ):
        totals[("duplicates", level)] += int(n)
    add_totals(s, totals)
    s.execute(delete(ClusterMember).where(ClusterMember.item_id.in_(ids)))
    s.execute(delete(Item).where(Item.id.in_(ids)))
    return len(ids)


def prune_clusters(s: Session, cutoff: datetime, held: frozenset[int], batch: int) -> int:
    """One batch of clusters left without members (pruned, or merged away) and unchanged
    since ``cutoff``; their sent digest entries go with them."""
    has_member = select(ClusterMember.item_id).where(ClusterMember.cluster_id == Cluster.id)
    ids = [
        cid
        for cid in s.scalars(
            select(Cluster.id)
            .where(Cluster.updated_at < cutoff, ~has_member.exists())
            .order_by(Cluster.id)
            .limit(batch)
        )
        if cid not in held
    ]
    if not ids:
        return 0
    s.execute(update(Cluster).where(Cluster.merged_into_id.in_(ids)).values(merged_into_id=None))
    s.execute(delete(Cluster).where(Cluster.id.in_(ids)))
    return len(ids)


def digest_run_label(digest: str, status: str) -> str:
    """The ``pruned_totals`` label of a digest run counter: status first (it has no colon)."""
    return f"{status}:{digest}"


def prune_digest_runs(s: Session, cutoff: datetime, batch: int) -> tuple[int, int]:
    """One batch of sent digest runs created before ``cutoff``: their messages are dropped,
    and the runs whose entries are all gone (with their clusters) are deleted, counted into
    the totals first. Each digest's latest sent run stays. Returns (messages dropped, runs
    deleted)."""
    old = (DigestRun.status.in_(DONE), DigestRun.created_at < cutoff)
    messages = list(
        s.scalars(select(DigestRun.id).where(*old, DigestRun.message.is_not(None)).limit(batch))
    )
    if messages:
        s.execute(update(DigestRun).where(DigestRun.id.in_(messages)).values(message=None))
    later = aliased(DigestRun)
    newer = select(later.id).where(
        later.digest_name == DigestRun.digest_name,
        later.status.in_(DONE),
        later.period_end_at > DigestRun.period_end_at,
    )
    has_entry = select(DigestEntry.run_id).where(DigestEntry.run_id == DigestRun.id)
    rows = s.execute(
        select(DigestRun.id, DigestRun.digest_name, DigestRun.status)
        .where(*old, ~has_entry.exists(), newer.exists())
        .order_by(DigestRun.id)
        .limit(batch)
    ).all()
    if rows:
        add_totals(s, Counter(("digest_runs", digest_run_label(n, st)) for _, n, st in rows))
        s.execute(delete(DigestRun).where(DigestRun.id.in_([r[0] for r in rows])))
    return len(messages), len(rows)


def run_retention(
    store: Store,
    settings: RetentionConfig,
    now: datetime,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> Pruned:
    """Prune in batches (one short transaction each) until done, stopped, or out of time."""
    deadline = time.monotonic() + settings.max_run_time
    out = Pruned()
    if settings.poll_log is not None:
        cutoff = now - timedelta(seconds=settings.poll_log)
        n = 0
        while not should_stop() and time.monotonic() < deadline:
            with store.session() as s:
                done = prune_poll_log(s, cutoff, settings.batch)
            n += done
            if done < settings.batch:
                break
        out = Pruned(poll_log=n)
    if settings.items is not None:
        cutoff = now - timedelta(seconds=settings.items)
        after, items, clusters = 0, 0, 0
        with store.session() as s:
            held = held_clusters(s)
        while not should_stop() and time.monotonic() < deadline:
            with store.session() as s:
                facts = item_facts(s, after, cutoff, settings.batch)
                if not facts:
                    break
                after = facts[-1].id
                items += prune_items(s, [f.id for f in facts if prunable(f, cutoff, held)])
        while not should_stop() and time.monotonic() < deadline:
            with store.session() as s:
                done = prune_clusters(s, cutoff, held, settings.batch)
            clusters += done
            if done < settings.batch:
                break
        out = Pruned(out.poll_log, items, clusters)
    if settings.digests is not None:
        cutoff = now - timedelta(seconds=settings.digests)
        runs = 0
        while not should_stop() and time.monotonic() < deadline:
            with store.session() as s:
                cleared, deleted = prune_digest_runs(s, cutoff, settings.batch)
            runs += deleted
            if max(cleared, deleted) < settings.batch:
                break
        out = Pruned(out.poll_log, out.items, out.clusters, runs)
    return out


def optimize(store: Store) -> None:
    """SQLite's ``PRAGMA optimize``: refresh the planner's statistics where they went stale."""
    if store.dialect == "sqlite":
        # ANALYZE reads, then writes sqlite_stat1; a writer committing in between makes a
        # plain PRAGMA fail at once ("database is locked") instead of waiting. Taking the
        # write lock first lets busy_timeout wait for it.
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                conn.exec_driver_sql("PRAGMA optimize")
            finally:
                conn.exec_driver_sql("COMMIT")


def vacuum(store: Store) -> None:
    """Give the free pages of pruned rows back: ``VACUUM`` (SQLite) or ``VACUUM ANALYZE``."""
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM" if store.dialect == "sqlite" else "VACUUM ANALYZE")
