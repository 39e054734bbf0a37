"""Item and poll-state writes on the hot path: batched ``INSERT … ON CONFLICT DO NOTHING``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Insert, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..domain import NewItem
from .models import Item, PollLog

_BATCH = 500


def dialect_insert(dialect: str, table: Any) -> Insert:
    """``INSERT`` with ``on_conflict_do_*`` for the dialect of that name (a bind's
    ``dialect.name``)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


@cache
def _insert_new(dialect: str) -> Insert:
    """The items insert of :func:`insert_items` for a dialect, built once (it and its cache
    key were built on every poll) and executed on the connection: the ORM's bulk insert
    path around it, with that, was a fifth of the insert's time."""
    items = Item.__table__
    return (
        dialect_insert(dialect, items)
        .on_conflict_do_nothing(index_elements=["source_id", "guid"])
        .returning(items.c.id, items.c.guid)
    )


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    item: NewItem


def outlet_key(publisher: str | None) -> str:
    """Who printed an item, for exact-duplicate keys: one wire headline printed by two
    outlets is two items (their duplicate cluster is where the copies meet)."""
    return " ".join((publisher or "").split()).casefold()


def known_keys(
    session: Session, source_id: int, items: Sequence[NewItem]
) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """The guids, canonical URLs and (outlet, content hash) pairs of ``items`` this source
    already has."""
    guids: set[str] = set()
    urls: set[str] = set()
    hashes: set[tuple[str, str]] = set()
    cols = (Item.guid, Item.canonical_url, Item.content_hash, Item.publisher, Item.source_id)
    conn = session.connection()
    for i in range(0, len(items), _BATCH):
        chunk = items[i : i + _BATCH]
        u = [it.canonical_url for it in chunk if it.canonical_url]
        # One indexed lookup per key. In one statement (source and (guid or url or hash))
        # SQLite walked every item of the source; the URL and hash indexes do not start
        # with the source, so those rows are matched to it here.
        for rows in (
            conn.execute(
                select(*cols).where(
                    Item.source_id == source_id, Item.guid.in_([it.guid for it in chunk])
                )
            ),
            conn.execute(select(*cols).where(Item.canonical_url.in_(u))) if u else (),
            conn.execute(
                select(*cols).where(Item.content_hash.in_([it.content_hash for it in chunk]))
            ),
        ):
            for guid, url, chash, publisher, source in rows:
                if source != source_id:
                    continue
                guids.add(guid)
                if url:
                    urls.add(url)
                hashes.add((outlet_key(publisher), chash))
    return guids, urls, hashes


def known_entries(session: Session, source_id: int, hashes: Sequence[str]) -> set[str]:
    """Which of these entry hashes (raw entry bytes) produced an item of this source."""
    known: set[str] = set()
    wanted = list(dict.fromkeys(hashes))
    for i in range(0, len(wanted), _BATCH):
        known.update(
            session.scalars(
                select(Item.entry_hash).where(
                    Item.source_id == source_id, Item.entry_hash.in_(wanted[i : i + _BATCH])
                )
            )
        )
    return known


def new_items(session: Session, source_id: int, items: Sequence[NewItem]) -> list[NewItem]:
    """Exact dedup before insert: drop items whose guid or canonical URL this source already
    stored, or whose content hash it stored from the same outlet (or that repeat one earlier
    in the same batch)."""
    guids, urls, hashes = known_keys(session, source_id, items)
    fresh = []
    for it in items:
        if it.guid in guids:
            continue
        # Comments are short and repeat ("Danke!"): only their guid identifies them.
        key = (outlet_key(it.publisher), it.content_hash)
        if it.kind == "article" and (
            key in hashes or (it.canonical_url and it.canonical_url in urls)
        ):
            continue
        fresh.append(it)
        guids.add(it.guid)
        hashes.add(key)
        if it.canonical_url:
            urls.add(it.canonical_url)
    return fresh


def insert_items(
    session: Session,
    *,
    source_id: int,
    feed_id: int | None,
    items: Sequence[NewItem],
    parents: Mapping[str, int] | None = None,
) -> list[Stored]:
    """Insert the items that are new for this source; returns those actually inserted.

    ``parents`` maps a comment's guid to its article's item id.
    """
    parents = parents or {}
    fresh = new_items(session, source_id, items)
    stored: list[Stored] = []
    for i in range(0, len(fresh), _BATCH):
        chunk = fresh[i : i + _BATCH]
        rows = [
            {
                "source_id": source_id,
                "feed_id": feed_id,
                "kind": it.kind,
                "parent_item_id": parents.get(it.guid),
                "guid": it.guid,
                "url": it.url,
                "canonical_url": it.canonical_url,
                "title": it.title,
                "publisher": it.publisher,
                "publisher_url": it.publisher_url,
                "author": it.author,
                "summary": it.summary,
                "text": it.text,
                "lang": it.lang,
                "published_at": it.published_at,
                "published_at_estimated": it.published_at_estimated,
                "fetched_at": it.fetched_at,
                "content_hash": it.content_hash,
                "comments_feed_url": it.comments_feed_url,
                "dedup_state": "pending",
                "entry_hash": it.entry_hash,
            }
            for it in chunk
        ]
        # one statement executed for many rows: SQLAlchemy batches them into multi-row
        # VALUES itself, with the statement compiled once (a VALUES list built per call was
        # compiled afresh every time, a fifth of a poll's storing time)
        stmt = _insert_new(session.get_bind().dialect.name)
        ids = {guid: id_ for id_, guid in session.connection().execute(stmt, rows)}
        stored.extend(Stored(ids[it.guid], it) for it in chunk if it.guid in ids)
    return stored


@dataclass(frozen=True, slots=True)
class Edit:
    """A stored item's new version; ``material`` when its title or content hash changed."""

    id: int
    item: NewItem
    material: bool


def edits_of(
    stored: Mapping[str, tuple[int, str, str, str | None]], items: Sequence[NewItem]
) -> list[Edit]:
    """Which items are new versions of stored ones (by guid; ``stored`` maps a guid to its id,
    title, content hash and entry hash). Whitespace or markup changes leave the content hash
    as it was: stored (so the entry is not parsed again), not material."""
    out: dict[str, Edit] = {}
    seen: set[str] = set()
    for it in items:
        old = stored.get(it.guid)
        if old is None or it.guid in seen:  # a guid twice in one document: the first counts
            continue
        seen.add(it.guid)
        id_, title, chash, ehash = old
        material = it.title != title or it.content_hash != chash
        if material or (it.entry_hash is not None and it.entry_hash != ehash):
            out[it.guid] = Edit(id_, it, material)
    return list(out.values())


def update_items(
    session: Session, *, source_id: int, items: Sequence[NewItem], now: datetime
) -> list[Edit]:
    """Store the new versions of this source's known entries (an edited headline, a
    correction), keeping the first-seen time. A material edit goes back to clustering
    (``dedup_state`` pending) and counts as an update; returns the edits stored."""
    stored: dict[str, tuple[int, str, str, str | None]] = {}
    guids = list(dict.fromkeys(it.guid for it in items))
    for i in range(0, len(guids), _BATCH):
        rows = session.execute(
            select(Item.guid, Item.id, Item.title, Item.content_hash, Item.entry_hash).where(
                Item.source_id == source_id, Item.guid.in_(guids[i : i + _BATCH])
            )
        )
        stored.update({g: (id_, t, h, e) for g, id_, t, h, e in rows})
    edits = edits_of(stored, items)
    for e in edits:
        it = e.item
        values: dict[str, Any] = {
            "url": it.url,
            "canonical_url": it.canonical_url,
            "title": it.title,
            "author": it.author,
            "summary": it.summary,
            "text": it.text,
            "content_hash": it.content_hash,
        }
        if it.entry_hash is not None:
            values["entry_hash"] = it.entry_hash
        if e.material:
            values |= {
                "dedup_state": "pending",
                "updated_at": now,
                "update_count": Item.update_count + 1,
            }
        session.execute(update(Item).where(Item.id == e.id).values(**values))
    return edits


def record_poll(
    db: Session | Connection,
    feed_id: int,
    *,
    started_at: datetime,
    duration_ms: int,
    result: str,
    http_status: int | None = None,
    items_seen: int = 0,
    items_new: int = 0,
    error: str | None = None,
    warning: str | None = None,
) -> None:
    """One poll_log row: through the ORM session (flushed with the feed's changes) or, on
    the Core path of a quiet poll, as one INSERT on the connection."""
    row = dict(
        feed_id=feed_id,
        started_at=started_at,
        duration_ms=duration_ms,
        result=result,
        http_status=http_status,
        items_seen=items_seen,
        items_new=items_new,
        error=error,
        warning=warning,
    )
    if isinstance(db, Session):
        db.add(PollLog(**row))
    else:
        db.execute(insert(PollLog.__table__).values(row))


def recent_item_times(
    session: Session | Connection, feed_id: int, limit: int = 10
) -> list[datetime]:
    return list(
        session.scalars(
            select(Item.published_at)
            .where(Item.feed_id == feed_id, Item.published_at_estimated.is_(False))
            .order_by(Item.published_at.desc())
            .limit(limit)
        )
    )
