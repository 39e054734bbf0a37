"""Queries shared by the CLI, the daemon and the outputs. Pure SQL in, plain data out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..config import SourceConfig
from .models import Cluster, ClusterMember, Feed, Item, PollLog, Source


def sync_sources(session: Session, sources: Sequence[SourceConfig], now: datetime) -> None:
    """Mirror config.yaml into ``sources``/``feeds``: add new, update changed, retire removed.

    Rows of sources removed from the config stay (their items do), marked ``in_config=False``.
    Sources added by ``opml import`` (``origin='opml'``) are left alone; a config source of
    the same name takes such a row over.
    """
    existing = {s.name: s for s in session.scalars(select(Source))}
    wanted = {s.name for s in sources}
    for cfg in sources:
        url = cfg.feed_url()
        row = existing.get(cfg.name)
        if row is None:
            row = Source(name=cfg.name, created_at=now, type=cfg.type, url=url)
            session.add(row)
        row.type, row.url, row.comments = cfg.type, url, cfg.comments
        row.priority, row.enabled, row.in_config = cfg.priority, cfg.enabled, True
        row.origin = "config"
        session.flush()
        main = session.scalar(select(Feed).where(Feed.source_id == row.id, Feed.kind == "main"))
        if main is None:
            session.add(
                Feed(
                    source_id=row.id,
                    url=url,
                    kind="main",
                    next_check_at=now,
                    created_at=now,
                    enabled=cfg.enabled,
                )
            )
        elif main.url != url and main.moved_from != url:  # not where a 301 moved it from
            main.url, main.etag, main.last_modified, main.body_hash = url, None, None, None
            main.moved_from, main.moved_at = None, None
            main.next_check_at, main.enabled, main.disabled_reason = now, cfg.enabled, None
        elif main.disabled_reason is None:
            main.enabled = cfg.enabled
    for name, row in existing.items():
        if name not in wanted and row.in_config and row.origin == "config":
            row.in_config = False
            session.execute(update(Feed).where(Feed.source_id == row.id).values(enabled=False))


def source_status(session: Session) -> list[dict[str, Any]]:
    """Per source: main feed poll state, item counts, comment feed count, last error."""
    counts = dict(
        session.execute(select(Item.source_id, func.count()).group_by(Item.source_id)).all()
    )
    comment_counts = dict(
        session.execute(
            select(Item.source_id, func.count())
            .where(Item.kind == "comment")
            .group_by(Item.source_id)
        ).all()
    )
    comment_feeds = dict(
        session.execute(
            select(Feed.source_id, func.count())
            .where(Feed.kind == "comments")
            .group_by(Feed.source_id)
        ).all()
    )
    feed_errors = dict(
        session.execute(
            select(Feed.source_id, func.count())
            .where(Feed.error_count > 0)
            .group_by(Feed.source_id)
        ).all()
    )
    out = []
    for src in session.scalars(select(Source).order_by(Source.name)):
        main = session.scalar(select(Feed).where(Feed.source_id == src.id, Feed.kind == "main"))
        out.append(
            {
                "source": src.name,
                "type": src.type,
                "url": src.url,
                "in_config": src.in_config,
                "origin": src.origin,
                "enabled": bool(main.enabled) if main else src.enabled,
                "disabled_reason": main.disabled_reason if main else None,
                "last_poll_at": _iso(main.last_polled_at) if main else None,
                "last_success_at": _iso(main.last_success_at) if main else None,
                "result": main.last_result if main else None,
                "next_check_at": _iso(main.next_check_at) if main else None,
                "error_count": main.error_count if main else 0,
                "last_error": main.last_error if main else None,
                "last_error_at": _iso(main.last_error_at) if main else None,
                "feed_url": main.url if main else None,
                "moved_from": main.moved_from if main else None,
                "moved_at": _iso(main.moved_at) if main else None,
                "items": counts.get(src.id, 0),
                "comments": comment_counts.get(src.id, 0),
                "comment_feeds": comment_feeds.get(src.id, 0),
                "comment_feeds_failing": feed_errors.get(src.id, 0)
                - int(bool(main and main.error_count)),
            }
        )
    return out


def recent_errors(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    rows = session.execute(
        select(PollLog, Feed.url, Source.name)
        .join(Feed, Feed.id == PollLog.feed_id)
        .join(Source, Source.id == Feed.source_id)
        .where(PollLog.error.is_not(None))
        .order_by(PollLog.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "at": _iso(log.started_at),
            "source": name,
            "feed": url,
            "result": log.result,
            "error": log.error,
        }
        for log, url, name in rows
    ]


def item_rows(session: Session, *, limit: int | None = None) -> Iterable[dict[str, Any]]:
    stmt = select(Item, Source.name).join(Source, Source.id == Item.source_id).order_by(Item.id)
    if limit:
        stmt = stmt.limit(limit)
    for item, source in session.execute(stmt):
        yield {
            "id": item.id,
            "source": source,
            "kind": item.kind,
            "guid": item.guid,
            "url": item.url,
            "canonical_url": item.canonical_url,
            "title": item.title,
            "publisher": item.publisher,
            "published_at": _iso(item.published_at),
            "published_at_estimated": item.published_at_estimated,
            "fetched_at": _iso(item.fetched_at),
            "lang": item.lang,
            "content_hash": item.content_hash,
            "article_id": item.parent_item_id,
        }


def cluster_rows(session: Session, *, level: str | None = None) -> list[dict[str, Any]]:
    stmt = select(Cluster).where(Cluster.merged_into_id.is_(None)).order_by(Cluster.id)
    if level:
        stmt = stmt.where(Cluster.level == level)
    clusters = list(session.scalars(stmt))
    members: dict[int, list[dict[str, Any]]] = {c.id: [] for c in clusters}
    if clusters:
        rows = session.execute(
            select(ClusterMember, Item.title)
            .join(Item, Item.id == ClusterMember.item_id)
            .where(ClusterMember.cluster_id.in_(list(members)))
            .order_by(ClusterMember.item_id)
        ).all()
        for m, title in rows:
            members[m.cluster_id].append(
                {
                    "item_id": m.item_id,
                    "title": title,
                    "method": m.method,
                    "matched_item_id": m.matched_item_id,
                    "score": m.score,
                    "estimated_score": m.estimated_score,
                }
            )
    return [
        {
            "id": c.id,
            "level": c.level,
            "size": len(members[c.id]),
            "updated_at": _iso(c.updated_at),
            "members": members[c.id],
        }
        for c in clusters
    ]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
