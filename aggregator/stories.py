"""A cluster as a reader sees it: headline from the best source, the other outlets, comment
counts and the thread it continues. Shared by digests, exports and the web page."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from .digest_view import Entry, FollowUp, Outlet
from .store.models import Cluster, ClusterMember, Item, Source

SUMMARY_CHARS = 320
AGGREGATOR_TYPES = ("google_news", "bing_news")


@dataclass
class Member:
    item: Item
    source: Source
    joined_at: datetime


def load_members(
    s: Session, level: str, cluster_ids: Collection[int], *, until: datetime | None = None
) -> dict[int, list[Member]]:
    """The members of these clusters (those that joined by ``until``), with their sources."""
    members: dict[int, list[Member]] = defaultdict(list)
    for chunk in _chunks(sorted(cluster_ids), 500):
        stmt = (
            select(ClusterMember.cluster_id, ClusterMember.joined_at, Item, Source)
            .join(Item, Item.id == ClusterMember.item_id)
            .join(Source, Source.id == Item.source_id)
            .where(ClusterMember.level == level, ClusterMember.cluster_id.in_(chunk))
        )
        if until is not None:
            stmt = stmt.where(ClusterMember.joined_at <= until)
        for cid, joined_at, item, source in s.execute(stmt):
            members[cid].append(Member(item, source, joined_at))
    return members


def _chunks(seq: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def link_of(item: Item, source: Source) -> str | None:
    """The article's own URL; a Google News redirect only when nothing better is known."""
    if item.canonical_url:
        return item.canonical_url
    if source.type == "google_news":
        return None
    return item.url


def rank(m: Member) -> tuple[int, int, datetime]:
    full = 0 if m.source.type not in AGGREGATOR_TYPES else 1
    return (-m.source.priority, full, m.item.published_at)


def story_entry(
    s: Session,
    cid: int,
    group: list[Member],
    new_ids: set[int],
    is_update: bool,
    since: datetime | None,
    level: str,
    updated_ids: Collection[int] = (),
) -> Entry:
    group = sorted(group, key=rank)
    best = group[0]
    # the article's own URL, from any member that knows it; else the aggregator's link
    link = (
        link_of(best.item, best.source)
        or next((link_of(m.item, m.source) for m in group if link_of(m.item, m.source)), None)
        or best.item.url
    )
    publisher = best.item.publisher or best.source.name
    outlets: dict[str, Outlet] = {}
    for m in group[1:]:
        name = m.item.publisher or m.source.name
        if name == publisher:
            continue
        known = outlets.get(name)
        own = link_of(m.item, m.source) or m.item.url
        if known is None or (known.link is None and own):
            outlets[name] = Outlet(
                name=name,
                link=own,
                title=m.item.title,
                is_new=is_update and m.item.id in new_ids,
                is_updated=m.item.id in updated_ids,
            )
    article_ids = [m.item.id for m in group if m.source.type not in AGGREGATOR_TYPES]
    comments = 0
    if article_ids:
        stmt = select(func.count()).where(
            Item.kind == "comment", Item.parent_item_id.in_(article_ids)
        )
        if since is not None:
            stmt = stmt.where(Item.fetched_at > since)
        comments = s.scalar(stmt) or 0
    summary = " ".join((best.item.summary or "").split())
    if len(summary) > SUMMARY_CHARS:
        summary = summary[: SUMMARY_CHARS - 1].rsplit(" ", 1)[0] + " …"
    return Entry(
        cluster_id=cid,
        headline=best.item.title,
        link=link,
        publisher=publisher,
        summary=summary,
        published_at=min(m.item.published_at for m in group),
        outlets=tuple(sorted(outlets.values(), key=lambda o: o.name.casefold())),
        new_comments=comments,
        follow_up_to=follow_up(s, group, level) if level == "story" else None,
        is_update=is_update,
        headline_updated=best.item.id in updated_ids,
    )


def follow_up(s: Session, group: list[Member], level: str) -> FollowUp | None:
    """The latest earlier story of the same thread, if the story continues one."""
    ids = [m.item.id for m in group]
    thread = s.scalar(
        select(ClusterMember.cluster_id)
        .where(ClusterMember.level == "thread", ClusterMember.item_id.in_(ids))
        .limit(1)
    )
    if thread is None:
        return None
    first = min(m.item.published_at for m in group)
    row = s.execute(
        select(Item, Source)
        .join(
            ClusterMember, and_(ClusterMember.item_id == Item.id, ClusterMember.level == "thread")
        )
        .join(Source, Source.id == Item.source_id)
        .where(ClusterMember.cluster_id == thread, Item.id.not_in(ids), Item.published_at < first)
        .order_by(Source.type.in_(AGGREGATOR_TYPES), Item.published_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    item, source = row
    return FollowUp(title=item.title, link=link_of(item, source), published_at=item.published_at)


@dataclass(frozen=True, slots=True)
class Story:
    """A live cluster for listings and feeds: the digest's entry plus what feeds need."""

    entry: Entry
    level: str
    created_at: datetime
    updated_at: datetime  # the last time an item joined: feeds mark the entry updated
    size: int
    thread_id: int | None  # the story's thread, for thread links (level 'story' only)


def recent_stories(
    s: Session,
    *,
    level: str = "story",
    since_at: datetime | None = None,
    limit: int = 50,
    comments_since_at: datetime | None = None,
) -> list[Story]:
    """Live clusters changed since ``since_at``, most recently changed first."""
    stmt = (
        select(Cluster)
        .where(Cluster.level == level, Cluster.merged_into_id.is_(None), Cluster.size > 0)
        .order_by(Cluster.updated_at.desc(), Cluster.id.desc())
        .limit(limit)
    )
    if since_at is not None:
        stmt = stmt.where(Cluster.updated_at >= since_at)
    clusters = list(s.scalars(stmt))
    members = load_members(s, level, [c.id for c in clusters])
    threads = thread_of(s, [c.id for c in clusters]) if level == "story" else {}
    out = []
    for c in clusters:
        group = members.get(c.id)
        if not group:
            continue
        entry = story_entry(s, c.id, group, set(), False, comments_since_at, level)
        out.append(
            Story(
                entry=entry,
                level=level,
                created_at=c.created_at,
                updated_at=max(m.joined_at for m in group),
                size=len(group),
                thread_id=threads.get(c.id),
            )
        )
    return out


def thread_of(s: Session, story_ids: Collection[int]) -> dict[int, int]:
    """Each story cluster's thread cluster (one member's is every member's)."""
    if not story_ids:
        return {}
    story = ClusterMember.__table__.alias("story")
    thread = ClusterMember.__table__.alias("thread")
    rows = s.execute(
        select(story.c.cluster_id, thread.c.cluster_id)
        .join(thread, and_(thread.c.item_id == story.c.item_id, thread.c.level == "thread"))
        .where(story.c.level == "story", story.c.cluster_id.in_(list(story_ids)))
        .distinct()
    )
    return {sid: tid for sid, tid in rows}
