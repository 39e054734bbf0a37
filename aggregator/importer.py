"""``aggregator import``: saved feed documents through :mod:`.ingest`, as a poll stores them.

Without ``--source`` each document is filed under a source derived from the feed itself (its
self/alternate link and title), with the type detected from its content. Such sources are
recorded but never polled. Importing the same file twice adds nothing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select

from .config import Config
from .domain import FeedRef, ParsedFeed
from .errors import InputError, SourceError
from .ingest import ingest, known_entries_of, parse_new_entries
from .opml import derive_name
from .parser import detect_source_type, parse_feed, split_entries
from .store import Store
from .store.items import record_poll
from .store.models import Feed, Source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FileImportOutcome:
    path: str
    source: str | None
    items_seen: int = 0
    items_new: int = 0
    error: str | None = None
    warning: str | None = None


def import_file(
    store: Store,
    cfg: Config,
    path: Path,
    *,
    source_name: str | None = None,
    now: datetime | None = None,
) -> FileImportOutcome:
    """Import one document. A bad document is an outcome with ``error``, never an exception
    (other than a database failure)."""
    now = now or datetime.now(UTC)
    try:
        size = path.stat().st_size
        if size > cfg.polling.max_response_size:
            raise InputError(f"{path}: {size} bytes exceeds polling.max_response_size")
        body = path.read_bytes()
    except OSError as exc:
        return FileImportOutcome(
            str(path), source_name, error=f"cannot read {path}: {exc.strerror}"
        )
    except InputError as exc:
        return FileImportOutcome(str(path), source_name, error=str(exc))

    src_cfg = cfg.source(source_name) if source_name else None
    base = src_cfg.feed_url() if src_cfg else path.resolve().as_uri()
    entries = split_entries(body)
    try:
        # a file: URL as base lets the parser resolve links against the feed's own links
        source_id = _known_source(store, body, entries, src_cfg, path, base)
        feed, skipped = parse_new_entries(
            body,
            entries,
            known_entries_of(store, source_id) if source_id else None,
            url=base,
        )
    except SourceError as exc:
        return FileImportOutcome(str(path), source_name, error=f"{path}: {exc}")

    with store.session() as s:
        if src_cfg is not None:
            source = s.scalars(select(Source).where(Source.name == src_cfg.name)).one()
            stype = source.type
            feed_row = s.scalars(
                select(Feed).where(Feed.source_id == source.id, Feed.kind == "main")
            ).one()
        else:
            source, feed_row = _derived_source(s, feed, detect_source_type(feed), path, now)
            stype = source.type  # a known source's type, not one guessed from new entries
        feed_ref = FeedRef(
            feed_id=feed_row.id,
            url=feed_row.url,
            kind=feed_row.kind,
            source_id=source.id,
            source_name=source.name,
            source_type=stype,
            article_item_id=None,
        )
        seen, new = ingest(s, cfg, feed_ref, feed, fetched_at=now)
        seen += skipped
        feed_row.items_total += new
        record_poll(
            s,
            feed_row.id,
            started_at=now,
            duration_ms=0,
            result="imported",
            items_seen=seen,
            items_new=new,
            warning=feed.warning,
        )
        name = source.name
    return FileImportOutcome(str(path), name, seen, new, warning=feed.warning)


def _http(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme in ("http", "https")


def _derived_url(feed: ParsedFeed, path: Path) -> str:
    url = next((u for u in (feed.self_url, feed.link) if _http(u)), None)
    if url is None:
        digest = hashlib.sha256(path.resolve().as_uri().encode()).hexdigest()[:12]
        url = f"file:{path.name}#{digest}"
    return url


def _known_source(store: Store, body: bytes, entries, src_cfg, path: Path, base: str) -> int | None:  # type: ignore[no-untyped-def]
    """The id of the source this document would be filed under, if it exists already (then
    its known entries need no parsing). A derived source is found from the document's own
    links: parsed without its entries, that costs little."""
    if entries is None:
        return None
    with store.session() as s:
        if src_cfg is not None:
            return s.scalar(select(Source.id).where(Source.name == src_cfg.name))
        head = parse_feed(entries.document(body, ()), url=base)
        return s.scalar(select(Source.id).where(Source.url == _derived_url(head, path)))


def _derived_source(s, feed: ParsedFeed, stype: str, path: Path, now: datetime):  # type: ignore[no-untyped-def]
    url = _derived_url(feed, path)
    source = s.scalars(select(Source).where(Source.url == url)).first()
    if source is None:
        base = (derive_name(feed.title) or urlsplit(url).hostname or path.stem)[:150]
        name, n = base, 1
        while s.scalar(select(Source.id).where(Source.name == name)) is not None:
            n += 1
            name = f"{base} ({n})"
        source = Source(
            name=name,
            type=stype,
            url=url,
            comments=False,
            in_config=False,
            enabled=False,
            priority=0,
            created_at=now,
        )
        s.add(source)
        s.flush()
        s.add(
            Feed(
                source_id=source.id,
                url=url,
                kind="main",
                enabled=False,
                disabled_reason="imported",
                next_check_at=now,
                created_at=now,
            )
        )
        s.flush()
    feed_row = s.scalars(select(Feed).where(Feed.source_id == source.id, Feed.kind == "main")).one()
    return source, feed_row
