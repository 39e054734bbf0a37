"""Who does what when several processes share one database: leases and the dedup epoch.

* A feed is polled by one worker at a time: :func:`claim_due_feeds` leases due feeds
  (``LEASE_S``), and the poll's final write frees them.
* A recorded digest run is sent by one worker: :func:`claim_digest_runs`.
* One daemon clusters at a time: the clustering lease on the epoch row
  (:func:`claim_clustering`), renewed each turn and given up on stop.
* Every writer of cluster state first locks the single ``dedup_epoch`` row (an UPDATE as the
  transaction's first statement: the write lock on SQLite, the row lock on PostgreSQL), so a
  manual correction and a clustering batch never interleave. A correction bumps the epoch; a
  :class:`~.dedup.service.DedupService` compares it at the start of each batch and reloads its
  engine when it changed, so stale memory never overwrites a correction.

A lease held by a process of this host that no longer exists is free at once: a restarted
daemon does not wait out a killed one's leases.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from .domain import FeedRef
from .errors import StoreError
from .store import Store
from .store.tables import dedup_epoch, digest_runs, feeds, sources

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

LEASE_S = 600.0  # a claimed feed is someone's for this long, even if its worker died
DIGEST_LEASE_S = 300.0  # a claimed digest run, likewise
EPOCH_ROW = 1


# ---------------------------------------------------------------- who holds a lease


def worker_id() -> str:
    """A process's lease owner: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def thread_owner_id() -> str:
    """A thread's lease owner: ``host:pid:thread`` (digest deliveries run on threads)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def owner_is_dead(owner: str) -> bool:
    """Whether a lease owner (``host:pid`` or ``host:pid:thread``) is a process of this host
    that no longer exists; another host's processes cannot be checked."""
    host, _, rest = owner.partition(":")
    pid = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process
        return False
    return False


# ---------------------------------------------------------------- feeds


@dataclass(frozen=True, slots=True)
class FeedJob(FeedRef):
    """A leased feed with what its conditional fetch and backoff need; read in a short
    transaction, then detached."""

    etag: str | None
    last_modified: str | None
    body_hash: str | None
    error_count: int


def claim_due_feeds(
    store: Store,
    *,
    now: datetime,
    owner: str,
    limit: int = 100,
    all_feeds: bool = False,
    exclude: Collection[int] = (),
) -> list[FeedJob]:
    """Lease the due feeds (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: workers never collide).

    A lease is free once it expires, and at once when it is ``owner``'s own (a round of this
    process that failed on the database; rounds never overlap) or held by a process on this
    host that no longer exists (killed): a restarted daemon does not wait out ``LEASE_S``.
    """
    with store.session() as s:
        free = [
            feeds.c.lease_until.is_(None),
            feeds.c.lease_until < now,
            feeds.c.lease_owner == owner,
        ]
        dead = _dead_feed_owners(s, now)
        if dead:
            free.append(feeds.c.lease_owner.in_(dead))
        stmt = (
            select(feeds.c.id)
            .join(sources, sources.c.id == feeds.c.source_id)
            .where(feeds.c.enabled.is_(True), sources.c.enabled.is_(True))
            .where(or_(*free))
            .order_by(feeds.c.next_check_at, feeds.c.id)
            .limit(limit)
        )
        if not all_feeds:
            stmt = stmt.where(feeds.c.next_check_at <= now)
        if exclude:
            stmt = stmt.where(feeds.c.id.not_in(list(exclude)))
        if store.dialect == "postgresql":
            stmt = stmt.with_for_update(of=feeds, skip_locked=True)
        ids = list(s.scalars(stmt))
        if not ids:
            return []
        s.execute(
            update(feeds)
            .where(feeds.c.id.in_(ids))
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=LEASE_S))
        )
        rows = s.execute(
            select(
                feeds.c.id.label("feed_id"),
                feeds.c.url,
                feeds.c.kind,
                feeds.c.etag,
                feeds.c.last_modified,
                feeds.c.body_hash,
                feeds.c.error_count,
                feeds.c.article_item_id,
                sources.c.id.label("source_id"),
                sources.c.name.label("source_name"),
                sources.c.type.label("source_type"),
            )
            .join(sources, sources.c.id == feeds.c.source_id)
            .where(feeds.c.id.in_(ids))
        ).all()
        jobs = {row.feed_id: FeedJob(**row._asdict()) for row in rows}
    return [jobs[i] for i in ids]


def release_feeds(store: Store, feed_ids: Collection[int]) -> None:
    """Give back leased feeds that were not polled (a round that stops)."""
    with store.session() as s:
        s.execute(
            update(feeds)
            .where(feeds.c.id.in_(list(feed_ids)))
            .values(lease_owner=None, lease_until=None)
        )


def _dead_feed_owners(s: Session, now: datetime) -> list[str]:
    """Owners of live feed leases whose process on this host has died."""
    owners = s.scalars(
        select(feeds.c.lease_owner)
        .where(feeds.c.lease_until >= now, feeds.c.lease_owner.is_not(None))
        .distinct()
    )
    return [owner for owner in owners if owner_is_dead(owner)]


# ---------------------------------------------------------------- digest runs


def claim_digest_runs(
    store: Store, now: datetime, owner: str, name: str | None, *, retry_now: bool = False
) -> list[int]:
    """Lease the due (``retry_now``: all) unsent runs. Each lease is one conditional UPDATE,
    so of two workers (threads or daemons, SQLite or PostgreSQL) exactly one wins a run."""
    with store.session() as s:
        stmt = select(digest_runs.c.id, digest_runs.c.lease_owner, digest_runs.c.lease_until).where(
            digest_runs.c.status == "pending"
        )
        if not retry_now:
            stmt = stmt.where(
                or_(digest_runs.c.next_attempt_at.is_(None), digest_runs.c.next_attempt_at <= now)
            )
        if name:
            stmt = stmt.where(digest_runs.c.digest_name == name)
        candidates = s.execute(stmt.order_by(digest_runs.c.id)).all()
    claimed = []
    for run_id, lease_owner, lease_until in candidates:
        free = lease_until is None or lease_until < now
        if not free and lease_owner and not owner_is_dead(lease_owner):
            continue
        with store.session() as s:
            cond = (
                or_(digest_runs.c.lease_until.is_(None), digest_runs.c.lease_until < now)
                if free
                else digest_runs.c.lease_owner == lease_owner
            )
            won = s.execute(
                update(digest_runs)
                .where(digest_runs.c.id == run_id, digest_runs.c.status == "pending", cond)
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=DIGEST_LEASE_S))
            ).rowcount
        if won == 1:
            claimed.append(run_id)
    return claimed


# ---------------------------------------------------------------- the epoch row


def lock_epoch(s: Session | Connection, now: datetime, *, bump: bool = False) -> int:
    """Lock the epoch row for the rest of ``s``'s transaction and return the epoch (plus one
    if ``bump``). Must be the transaction's first statement: on SQLite a transaction that
    read first cannot always take the write lock later."""
    values: dict = (
        {"epoch": dedup_epoch.c.epoch + 1, "updated_at": now}
        if bump
        else {"epoch": dedup_epoch.c.epoch}
    )
    done = s.execute(
        update(dedup_epoch)
        .where(dedup_epoch.c.id == EPOCH_ROW)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise StoreError("the dedup_epoch row is missing: run `aggregator db upgrade`")
    return read_epoch(s)


def try_lock_epoch(s: Session, now: datetime) -> int | None:
    """Like :func:`lock_epoch`, but None at once if another transaction holds the row
    (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so a daemon whose peer is clustering skips its
    turn: the peer places every pending item, this daemon's included. SQLite waits."""
    if s.get_bind().dialect.name != "postgresql":
        return lock_epoch(s, now)
    epoch = s.scalar(
        select(dedup_epoch.c.epoch)
        .where(dedup_epoch.c.id == EPOCH_ROW)
        .with_for_update(skip_locked=True)
    )
    return None if epoch is None else int(epoch)


def bump_epoch(s: Session, now: datetime) -> int:
    """Count a change of cluster state (the row is already locked by this transaction)."""
    return lock_epoch(s, now, bump=True)


def read_epoch(s: Session | Connection) -> int:
    epoch = s.scalar(select(dedup_epoch.c.epoch).where(dedup_epoch.c.id == EPOCH_ROW))
    if epoch is None:
        raise StoreError("the dedup_epoch row is missing: run `aggregator db upgrade`")
    return int(epoch)


# ---------------------------------------------------------------- the clustering lease


def claim_clustering(s: Session, worker: str, now: datetime, lease_s: float) -> bool:
    """Whether ``worker`` (a daemon) clusters this turn: yes while it holds the clustering
    lease (renewed here) or when nobody's is live (taken here); no while another daemon's is.
    The epoch row must be locked by ``s``'s transaction. Several daemons that took turns
    each reloaded their whole engine after every batch of the others; with one holder they
    only poll and store, and the holder places every pending item."""
    live = clustering_holder(s, now)
    if live is not None and live[0] != worker:
        return False
    s.execute(
        update(dedup_epoch)
        .where(dedup_epoch.c.id == EPOCH_ROW)
        .values(holder=worker, held_until=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return True


def release_clustering(s: Session, worker: str) -> None:
    """Give up the clustering lease if ``worker`` holds it (a daemon that stops), so another
    daemon takes over at its next turn instead of when the lease runs out."""
    s.execute(
        update(dedup_epoch)
        .where(dedup_epoch.c.id == EPOCH_ROW, dedup_epoch.c.holder == worker)
        .values(holder=None, held_until=None)
        .execution_options(synchronize_session=False)
    )


def clustering_holder(s: Session | Connection, now: datetime) -> tuple[str, datetime] | None:
    """The daemon whose clustering lease is live, and until when (for ``status``)."""
    row = s.execute(
        select(dedup_epoch.c.holder, dedup_epoch.c.held_until).where(dedup_epoch.c.id == EPOCH_ROW)
    ).one_or_none()
    if row is None or row.holder is None or row.held_until is None or row.held_until <= now:
        return None
    return row.holder, row.held_until


__all__ = [
    "DIGEST_LEASE_S",
    "LEASE_S",
    "FeedJob",
    "bump_epoch",
    "claim_clustering",
    "claim_digest_runs",
    "claim_due_feeds",
    "clustering_holder",
    "lock_epoch",
    "owner_is_dead",
    "read_epoch",
    "release_clustering",
    "release_feeds",
    "thread_owner_id",
    "try_lock_epoch",
    "worker_id",
]
