"""Ingest: a feed document into the store, the same for a poll and for ``aggregator import``.

Known entries (their exact bytes already produced an item) are cut out before parsing; the
rest are normalised and stored under their feed and source, new items inserted and known
guids with new content stored as edits. A WordPress article feed's new articles register
their comment feeds, within caps.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from .config import Config, SourceConfig
from .domain import FeedRef, NewItem, ParsedFeed
from .fetcher import origin_of
from .normaliser import normalise_feed
from .parser import Entries, parse_feed, with_entry_hashes
from .store import Store
from .store.items import insert_items, known_entries, update_items
from .store.models import Feed, Item

log = logging.getLogger(__name__)

# Comment feed URLs come from feed content: one document must not make us poll (or flood)
# an unbounded number of URLs, nor pile them up on one host.
MAX_COMMENT_FEEDS_PER_DOCUMENT = 50
MAX_COMMENT_FEEDS_PER_HOST = 200  # live (enabled) comment feeds of one source on one host


def source_config(cfg: Config, name: str) -> SourceConfig | None:
    """The source's config.yaml entry; None for a source imported (OPML, files)."""
    return next((s for s in cfg.sources if s.name == name), None)


def known_entries_of(store: Store, source_id: int) -> Callable[[Sequence[str]], set[str]]:
    """Which entry hashes already produced an item of the source (a short read of its own)."""

    def known(hashes: Sequence[str]) -> set[str]:
        with store.session() as s:
            return known_entries(s, source_id, hashes)

    return known


def parse_new_entries(
    body: bytes,
    entries: Entries | None,
    known: Callable[[Sequence[str]], set[str]] | None,
    *,
    url: str,
    content_type: str | None = None,
) -> tuple[ParsedFeed, int]:
    """Parse a document without the entries whose exact bytes already produced an item
    (``known`` says which of the hashes did); returns the feed, its entries tagged with their
    hashes, and how many known entries were skipped. A re-poll of a feed that gained a few
    items parses those few: feedparser is most of the cost of a poll."""
    keep = None
    if entries is not None and known is not None:
        seen = known(entries.hashes)
        keep = [i for i, h in enumerate(entries.hashes) if h not in seen]
    doc = body if keep is None or entries is None else entries.document(body, keep)
    feed = parse_feed(doc, url=url, content_type=content_type)
    if entries is None:
        return feed, 0
    hashes = entries.hashes if keep is None else [entries.hashes[i] for i in keep]
    return with_entry_hashes(feed, hashes), len(entries.hashes) - len(hashes)


def ingest(
    s: Session, cfg: Config, feed_ref: FeedRef, feed: ParsedFeed, *, fetched_at: datetime
) -> tuple[int, int]:
    """Normalise and store one parsed document for a feed; returns (entries seen, new items).

    Shared by polling and ``import``. Registers comment feeds of new WordPress articles.
    """
    kind = "comment" if feed_ref.kind == "comments" or is_comment_feed(feed) else "article"
    items = normalise_feed(feed, source_type=feed_ref.source_type, fetched_at=fetched_at, kind=kind)
    if kind == "article" and feed_ref.source_type != "google_news":
        items = [it if it.publisher else replace(it, publisher=feed.title or None) for it in items]
    parents = _comment_parents(s, feed_ref, items) if kind == "comment" else None
    stored = insert_items(
        s, source_id=feed_ref.source_id, feed_id=feed_ref.feed_id, items=items, parents=parents
    )
    inserted = {st.item.guid for st in stored}
    edits = update_items(
        s,
        source_id=feed_ref.source_id,
        items=[it for it in items if it.guid not in inserted],
        now=fetched_at,
    )
    if any(e.material for e in edits):
        log.info(
            "%s: %d edited entries stored (%d to re-cluster)",
            feed_ref.source_name,
            len(edits),
            sum(e.material for e in edits),
        )
    if kind == "article" and feed_ref.source_type == "wordpress":
        src = source_config(cfg, feed_ref.source_name)
        if src is not None and src.comments:
            _register_comment_feeds(
                s, feed_ref, [(st.id, st.item) for st in stored], src, fetched_at
            )
    return len(items), len(stored)


def is_comment_feed(feed: ParsedFeed) -> bool:
    """A WordPress comment feed (per article or site-wide): every guid is ``…#comment-N``."""
    return bool(feed.entries) and all(e.guid and "#comment-" in e.guid for e in feed.entries)


def _comment_parents(s: Session, feed_ref: FeedRef, items: Sequence[NewItem]) -> dict[str, int]:
    """Link comments to their article: the comment feed's article, else by the guid
    prefix (``…/?p=2931#comment-381`` belongs to the article whose guid is ``…/?p=2931``)."""
    if feed_ref.article_item_id is not None:
        return {it.guid: feed_ref.article_item_id for it in items}
    prefixes = {it.guid: it.guid.split("#comment-", 1)[0] for it in items}
    rows = s.execute(
        select(Item.guid, Item.id).where(
            Item.source_id == feed_ref.source_id,
            Item.kind == "article",
            Item.guid.in_(set(prefixes.values())),
        )
    )
    by_guid = {guid: id_ for guid, id_ in rows}
    return {g: by_guid[p] for g, p in prefixes.items() if p in by_guid}


def _register_comment_feeds(
    s: Session,
    feed_ref: FeedRef,
    stored: Sequence[tuple[int, NewItem]],
    src: SourceConfig,
    now: datetime,
) -> None:
    oldest = now - timedelta(seconds=src.comments_max_age)
    candidates: dict[str, int] = {}  # url -> article item id, first item wins
    for item_id, it in stored:
        url = it.comments_feed_url or (it.url.rstrip("/") + "/feed/" if it.url else None)
        if not url or it.published_at < oldest or it.published_at_estimated:
            continue
        candidates.setdefault(url, item_id)
    if not candidates:
        return
    known = set(
        s.scalars(
            select(Feed.url).where(
                Feed.source_id == feed_ref.source_id, Feed.url.in_(list(candidates))
            )
        )
    )
    new_urls = [url for url in candidates if url not in known]
    if not new_urls:
        return
    live = s.scalars(
        select(Feed.url).where(
            Feed.source_id == feed_ref.source_id, Feed.kind == "comments", Feed.enabled.is_(True)
        )
    )
    admitted = admit_comment_feeds(
        new_urls,
        Counter(_host_of(u) for u in live),
        per_document=MAX_COMMENT_FEEDS_PER_DOCUMENT,
        per_host=MAX_COMMENT_FEEDS_PER_HOST,
    )
    for url in admitted:
        s.add(
            Feed(
                source_id=feed_ref.source_id,
                url=url,
                kind="comments",
                article_item_id=candidates[url],
                next_check_at=now,
                created_at=now,
            )
        )
    if len(admitted) < len(new_urls):
        log.warning(
            "%s: registered %d new comment feeds of %s, skipped %d over the caps "
            "(%d per document, %d live per host)",
            feed_ref.source_name,
            len(admitted),
            feed_ref.url,
            len(new_urls) - len(admitted),
            MAX_COMMENT_FEEDS_PER_DOCUMENT,
            MAX_COMMENT_FEEDS_PER_HOST,
        )


def admit_comment_feeds(
    urls: Sequence[str],
    live_per_host: Mapping[str, int],
    *,
    per_document: int = MAX_COMMENT_FEEDS_PER_DOCUMENT,
    per_host: int = MAX_COMMENT_FEEDS_PER_HOST,
) -> list[str]:
    """The new comment feed URLs to register, in order, within the per-document cap and
    the cap on live comment feeds per host (``live_per_host``: those already registered)."""
    admitted: list[str] = []
    counts = Counter(live_per_host)
    for url in urls:
        if len(admitted) >= per_document:
            break
        host = _host_of(url)
        if counts[host] >= per_host:
            continue
        counts[host] += 1
        admitted.append(url)
    return admitted


def _host_of(url: str) -> str:
    origin = origin_of(url)
    return origin[1] if origin else ""


__all__ = [
    "MAX_COMMENT_FEEDS_PER_DOCUMENT",
    "MAX_COMMENT_FEEDS_PER_HOST",
    "admit_comment_feeds",
    "ingest",
    "is_comment_feed",
    "known_entries_of",
    "parse_new_entries",
    "source_config",
]
