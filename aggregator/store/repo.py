"""Queries shared by the CLI, the daemon and the outputs. Pure SQL in, plain data out."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..config import DigestConfig, SourceConfig
from ..coordination import lock_epoch
from ..errors import ConfigError, InputError
from .models import Cluster, ClusterMember, DigestRun, Feed, Item, PollLog, Source

log = logging.getLogger(__name__)

DISABLED_BY_HAND = "disabled with `aggregator sources disable`"


def sync_sources(session: Session, sources: Sequence[SourceConfig], now: datetime) -> None:
    """Mirror config.yaml into ``sources``/``feeds``: add new, update changed, retire removed.

    Rows of sources removed from the config stay (their items do), marked ``in_config=False``.
    Sources added by ``opml import`` (``origin='opml'``) are left alone; a config source of
    the same name takes such a row over. A source whose type changed has its stored items'
    type-dependent fields re-derived (:func:`renormalise_items`), so old and new items agree.
    """
    existing = {s.name: s for s in session.scalars(select(Source))}
    wanted = {s.name for s in sources}
    for cfg in sources:
        url = cfg.feed_url()
        row = existing.get(cfg.name)
        if row is None:
            row = Source(name=cfg.name, created_at=now, type=cfg.type, url=url)
            session.add(row)
        elif row.type != cfg.type:
            changed = renormalise_items(session, row.id, cfg.type)
            log.warning(
                "source %s: type changed %s -> %s; re-normalised %d of its stored items "
                "(titles, URLs); their clusters are kept",
                row.name,
                row.type,
                cfg.type,
                changed,
            )
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
        if main is not None and main.disabled_reason == DISABLED_BY_HAND:
            row.enabled = False  # `sources disable` outlasts restarts until `sources enable`
    for name, row in existing.items():
        if name not in wanted and row.in_config and row.origin == "config":
            row.in_config = False
            session.execute(update(Feed).where(Feed.source_id == row.id).values(enabled=False))


def renormalise_title_url(
    source_type: str, title: str, url: str | None, publisher: str | None
) -> tuple[str, str | None, str | None]:
    """The type-dependent parts of :func:`~aggregator.normaliser.normalise_entry` for a
    stored item: (title, url, canonical_url). A suffix stripped earlier cannot come back."""
    # here, not at the top: every command reads the store, few re-normalise (lxml, w3lib)
    from ..normaliser import strip_publisher_suffix
    from ..urls import canonical_url, unwrap_bing

    if source_type == "google_news":
        return strip_publisher_suffix(title, publisher), url, None
    if source_type == "bing_news" and url:
        url = unwrap_bing(url)
    return title, url, canonical_url(url)


def renormalise_items(session: Session, source_id: int, source_type: str) -> int:
    """Re-derive title, URL and canonical URL of a source's stored articles for its new
    type; returns how many changed."""
    from ..normaliser import content_hash

    changed = 0
    for item in session.scalars(
        select(Item).where(Item.source_id == source_id, Item.kind == "article")
    ):
        title, url, canon = renormalise_title_url(source_type, item.title, item.url, item.publisher)
        if (title, url, canon) == (item.title, item.url, item.canonical_url):
            continue
        if title != item.title:
            item.content_hash = content_hash(
                title, title if source_type == "google_news" else item.text
            )
        item.title, item.url, item.canonical_url = title, url, canon
        changed += 1
    session.flush()
    return changed


# ---------------------------------------------------------------- `aggregator sources`


def get_source(session: Session, name: str) -> Source:
    row = session.scalar(select(Source).where(Source.name == name))
    if row is None:
        names = list(session.scalars(select(Source.name).order_by(Source.name).limit(6)))
        known = ", ".join(names[:5]) + (", …" if len(names) > 5 else "") or "none"
        raise InputError(f"no source named {name!r} in the database (known: {known})")
    return row


def set_source_enabled(
    session: Session, name: str, enabled: bool, configured: SourceConfig | None
) -> bool:
    """Enable or disable a source and all its feeds; returns whether anything changed. A
    config source disabled in config.yaml cannot be enabled here (the next start would undo
    it)."""
    row = get_source(session, name)
    if enabled and configured is not None and not configured.enabled:
        raise InputError(
            f"source {name!r} is disabled in config.yaml (enabled: false): "
            "set enabled: true there instead"
        )
    main = session.scalar(select(Feed).where(Feed.source_id == row.id, Feed.kind == "main"))
    was = bool(main.enabled) if main is not None else row.enabled
    row.enabled = enabled
    if enabled:
        session.execute(
            update(Feed)
            .where(Feed.source_id == row.id, Feed.kind == "main")
            .values(enabled=True, disabled_reason=None, error_count=0)
        )
        session.execute(
            update(Feed)
            .where(Feed.source_id == row.id, Feed.disabled_reason == DISABLED_BY_HAND)
            .values(enabled=True, disabled_reason=None)
        )
    else:
        session.execute(
            update(Feed)
            .where(Feed.source_id == row.id, Feed.enabled.is_(True))
            .values(enabled=False, disabled_reason=DISABLED_BY_HAND)
        )
    session.flush()
    return was != enabled


@dataclass(frozen=True, slots=True)
class Removal:
    name: str
    feeds: int
    articles: int
    comments: int
    clusters_emptied: int


def plan_removal(session: Session, name: str) -> Removal:
    """What :func:`remove_source` would delete."""
    row = get_source(session, name)
    counts = dict(
        session.execute(
            select(Item.kind, func.count()).where(Item.source_id == row.id).group_by(Item.kind)
        ).all()
    )
    feeds = session.scalar(select(func.count()).select_from(Feed).where(Feed.source_id == row.id))
    return Removal(
        name, int(feeds or 0), int(counts.get("article", 0)), int(counts.get("comment", 0)), 0
    )


def remove_source(session: Session, name: str, now: datetime) -> Removal:
    """Delete a source with its feeds, items, their signatures and cluster memberships;
    clusters left empty go too, the others' sizes are recounted. The dedup epoch is bumped,
    so every running daemon reloads its engine without these items. A source that is in
    config.yaml is refused (the next start would add it back)."""
    lock_epoch(session, now, bump=True)
    row = get_source(session, name)
    if row.in_config and row.origin == "config":
        raise InputError(
            f"source {name!r} is in config.yaml: remove it there (it would come back at the "
            "next start); its stored items stay until you then run "
            f"`aggregator sources remove {name}`"
        )
    plan = plan_removal(session, name)
    item_ids = select(Item.id).where(Item.source_id == row.id).scalar_subquery()
    touched = set(
        session.scalars(
            select(ClusterMember.cluster_id).where(ClusterMember.item_id.in_(item_ids)).distinct()
        )
    )
    session.execute(
        update(Item)
        .where(Item.parent_item_id.in_(item_ids))
        .values(parent_item_id=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(Item).where(Item.source_id == row.id))
    session.execute(delete(Feed).where(Feed.source_id == row.id))
    session.execute(delete(Source).where(Source.id == row.id))
    emptied = 0
    for cluster_id in sorted(touched):
        size = session.scalar(
            select(func.count())
            .select_from(ClusterMember)
            .where(ClusterMember.cluster_id == cluster_id)
        )
        if size:
            session.execute(
                update(Cluster).where(Cluster.id == cluster_id).values(size=size, updated_at=now)
            )
        else:  # with the clusters merged into it, which have no members of their own
            gone, frontier = {cluster_id}, {cluster_id}
            while frontier:
                frontier = (
                    set(
                        session.scalars(
                            select(Cluster.id).where(Cluster.merged_into_id.in_(frontier))
                        )
                    )
                    - gone
                )
                gone |= frontier
            session.execute(delete(Cluster).where(Cluster.id.in_(gone)))
            emptied += 1
    session.flush()
    return Removal(plan.name, plan.feeds, plan.articles, plan.comments, emptied)


def check_digest_sources(session: Session, digest: DigestConfig) -> None:
    """Every source a digest names exists, from config.yaml or an OPML import; a name that
    is in neither is a config error, not a silently empty digest."""
    if not digest.sources:
        return
    known = set(session.scalars(select(Source.name).where(Source.name.in_(digest.sources))))
    missing = [name for name in digest.sources if name not in known]
    if missing:
        raise ConfigError(
            f"digest {digest.name!r} names unknown source{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}: not in config.yaml nor imported "
            "(`aggregator sources list` shows the sources)"
        )


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


def digest_status(session: Session) -> list[dict[str, object]]:
    """The 20 newest digest runs, newest first."""
    rows = session.scalars(select(DigestRun).order_by(DigestRun.id.desc()).limit(20))
    return [
        {
            "digest": r.digest_name,
            "run": r.id,
            "status": r.status,
            "period_end_at": r.period_end_at.isoformat(),
            "attempts": r.attempts,
            "last_error": r.last_error,
            "sent_at": r.sent_at.isoformat() if r.sent_at else None,
        }
        for r in rows
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


def list_clusters(session: Session, *, level: str | None = None) -> list[dict[str, Any]]:
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
