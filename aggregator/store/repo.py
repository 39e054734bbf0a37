"""Queries shared by the CLI, the daemon and the outputs. Pure SQL in, plain data out.

Written against the Core tables (:mod:`.tables`), so each takes a Core ``Connection``
(:meth:`Store.connect`, the read commands: no ORM imported) or an ORM ``Session`` alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, delete, func, insert, select, update

from ..coordination import lock_epoch
from ..errors import ConfigError, InputError
from .tables import cluster_members as CM
from .tables import clusters as C
from .tables import digest_runs as D
from .tables import feeds as F
from .tables import items as I
from .tables import poll_log as P
from .tables import sources as S

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from ..config import DigestConfig, SourceConfig

    Db = Connection | Session

log = logging.getLogger(__name__)

DISABLED_BY_HAND = "disabled with `aggregator sources disable`"


def sync_sources(session: Db, sources: Sequence[SourceConfig], now: datetime) -> None:
    """Mirror config.yaml into ``sources``/``feeds``: add new, update changed, retire removed.

    Rows of sources removed from the config stay (their items do), marked ``in_config=False``.
    Sources added by ``opml import`` (``origin='opml'``) are left alone; a config source of
    the same name takes such a row over. A source whose type changed has its stored items'
    type-dependent fields re-derived (:func:`renormalise_items`), so old and new items agree.
    A row is written only where a value changed: a config in step writes nothing.
    """
    existing = {s.name: s for s in session.execute(select(S))}
    wanted = {s.name for s in sources}
    for cfg in sources:
        url = cfg.feed_url()
        row = existing.get(cfg.name)
        values: dict[str, Any] = {
            "type": cfg.type,
            "url": url,
            "comments": cfg.comments,
            "priority": cfg.priority,
            "enabled": cfg.enabled,
            "in_config": True,
            "origin": "config",
        }
        main: Row[Any] | None = None
        if row is None:
            source_id = session.execute(
                insert(S).values(name=cfg.name, created_at=now, **values)
            ).inserted_primary_key[0]
        else:
            source_id = row.id
            main = session.execute(
                select(F).where(F.c.source_id == source_id, F.c.kind == "main")
            ).first()
        if row is not None and row.type != cfg.type:
            changed = renormalise_items(session, row.id, cfg.type)
            log.warning(
                "source %s: type changed %s -> %s; re-normalised %d of its stored items "
                "(titles, URLs); their clusters are kept",
                row.name,
                row.type,
                cfg.type,
                changed,
            )
        feed: dict[str, Any] = {}
        if main is None:
            session.execute(
                insert(F).values(
                    source_id=source_id,
                    url=url,
                    kind="main",
                    next_check_at=now,
                    created_at=now,
                    enabled=cfg.enabled,
                )
            )
        elif main.url != url and main.moved_from != url:  # not where a 301 moved it from
            feed = {"url": url, "etag": None, "last_modified": None, "body_hash": None}
            feed |= {"moved_from": None, "moved_at": None}
            feed |= {"next_check_at": now, "enabled": cfg.enabled, "disabled_reason": None}
        elif main.disabled_reason is None:
            feed = {"enabled": cfg.enabled}
        if main is not None and feed.get("disabled_reason", main.disabled_reason) == (
            DISABLED_BY_HAND
        ):
            values["enabled"] = False  # `sources disable` outlasts restarts until `enable`
        if row is not None:
            _update_changed(session, S, row, values)
        if main is not None:
            _update_changed(session, F, main, feed)
    for name, row in existing.items():
        if name not in wanted and row.in_config and row.origin == "config":
            session.execute(update(S).where(S.c.id == row.id).values(in_config=False))
            session.execute(update(F).where(F.c.source_id == row.id).values(enabled=False))


def _update_changed(session: Db, table: Any, row: Row[Any], values: dict[str, Any]) -> None:
    """Write the values that differ from ``row``'s (as the ORM would: none, no UPDATE)."""
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if changed:
        session.execute(update(table).where(table.c.id == row.id).values(**changed))


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


def renormalise_items(session: Db, source_id: int, source_type: str) -> int:
    """Re-derive title, URL and canonical URL of a source's stored articles for its new
    type; returns how many changed."""
    from ..normaliser import content_hash

    changed = 0
    rows = session.execute(
        select(I.c.id, I.c.title, I.c.url, I.c.canonical_url, I.c.publisher, I.c.text)
        .where(I.c.source_id == source_id, I.c.kind == "article")
        .order_by(I.c.id)
    ).all()
    for item in rows:
        title, url, canon = renormalise_title_url(source_type, item.title, item.url, item.publisher)
        if (title, url, canon) == (item.title, item.url, item.canonical_url):
            continue
        values: dict[str, Any] = {"title": title, "url": url, "canonical_url": canon}
        if title != item.title:
            values["content_hash"] = content_hash(
                title, title if source_type == "google_news" else item.text
            )
        session.execute(update(I).where(I.c.id == item.id).values(**values))
        changed += 1
    return changed


# ---------------------------------------------------------------- `aggregator sources`


def get_source(session: Db, name: str) -> Row[Any]:
    row = session.execute(select(S).where(S.c.name == name)).first()
    if row is None:
        names = list(session.scalars(select(S.c.name).order_by(S.c.name).limit(6)))
        known = ", ".join(names[:5]) + (", …" if len(names) > 5 else "") or "none"
        raise InputError(f"no source named {name!r} in the database (known: {known})")
    return row


def set_source_enabled(
    session: Db, name: str, enabled: bool, configured: SourceConfig | None
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
    main = session.execute(select(F).where(F.c.source_id == row.id, F.c.kind == "main")).first()
    was = bool(main.enabled) if main is not None else row.enabled
    _update_changed(session, S, row, {"enabled": enabled})
    if enabled:
        session.execute(
            update(F)
            .where(F.c.source_id == row.id, F.c.kind == "main")
            .values(enabled=True, disabled_reason=None, error_count=0)
        )
        session.execute(
            update(F)
            .where(F.c.source_id == row.id, F.c.disabled_reason == DISABLED_BY_HAND)
            .values(enabled=True, disabled_reason=None)
        )
    else:
        session.execute(
            update(F)
            .where(F.c.source_id == row.id, F.c.enabled.is_(True))
            .values(enabled=False, disabled_reason=DISABLED_BY_HAND)
        )
    return was != enabled


@dataclass(frozen=True, slots=True)
class Removal:
    name: str
    feeds: int
    articles: int
    comments: int
    clusters_emptied: int


def plan_removal(session: Db, name: str) -> Removal:
    """What :func:`remove_source` would delete."""
    row = get_source(session, name)
    counts = dict(
        session.execute(
            select(I.c.kind, func.count()).where(I.c.source_id == row.id).group_by(I.c.kind)
        ).all()
    )
    feeds = session.scalar(select(func.count()).select_from(F).where(F.c.source_id == row.id))
    return Removal(
        name, int(feeds or 0), int(counts.get("article", 0)), int(counts.get("comment", 0)), 0
    )


def remove_source(session: Db, name: str, now: datetime) -> Removal:
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
    item_ids = select(I.c.id).where(I.c.source_id == row.id).scalar_subquery()
    touched = set(
        session.scalars(select(CM.c.cluster_id).where(CM.c.item_id.in_(item_ids)).distinct())
    )
    session.execute(update(I).where(I.c.parent_item_id.in_(item_ids)).values(parent_item_id=None))
    session.execute(delete(I).where(I.c.source_id == row.id))
    session.execute(delete(F).where(F.c.source_id == row.id))
    session.execute(delete(S).where(S.c.id == row.id))
    emptied = 0
    for cluster_id in sorted(touched):
        size = session.scalar(
            select(func.count()).select_from(CM).where(CM.c.cluster_id == cluster_id)
        )
        if size:
            session.execute(update(C).where(C.c.id == cluster_id).values(size=size, updated_at=now))
        else:  # with the clusters merged into it, which have no members of their own
            gone, frontier = {cluster_id}, {cluster_id}
            while frontier:
                frontier = (
                    set(session.scalars(select(C.c.id).where(C.c.merged_into_id.in_(frontier))))
                    - gone
                )
                gone |= frontier
            session.execute(delete(C).where(C.c.id.in_(gone)))
            emptied += 1
    return Removal(plan.name, plan.feeds, plan.articles, plan.comments, emptied)


def check_digest_sources(session: Db, digest: DigestConfig) -> None:
    """Every source a digest names exists, from config.yaml or an OPML import; a name that
    is in neither is a config error, not a silently empty digest."""
    if not digest.sources:
        return
    known = set(session.scalars(select(S.c.name).where(S.c.name.in_(digest.sources))))
    missing = [name for name in digest.sources if name not in known]
    if missing:
        raise ConfigError(
            f"digest {digest.name!r} names unknown source{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}: not in config.yaml nor imported "
            "(`aggregator sources list` shows the sources)"
        )


def source_status(session: Db) -> list[dict[str, Any]]:
    """Per source: main feed poll state, item counts, comment feed count, last error."""
    counts = dict(
        session.execute(select(I.c.source_id, func.count()).group_by(I.c.source_id)).all()
    )
    comment_counts = dict(
        session.execute(
            select(I.c.source_id, func.count()).where(I.c.kind == "comment").group_by(I.c.source_id)
        ).all()
    )
    set_aside = dict(  # items whose placing raised (dedup.service._set_aside)
        session.execute(
            select(I.c.source_id, func.count())
            .where(I.c.dedup_state == "failed")
            .group_by(I.c.source_id)
        ).all()
    )
    comment_feeds = dict(
        session.execute(
            select(F.c.source_id, func.count())
            .where(F.c.kind == "comments")
            .group_by(F.c.source_id)
        ).all()
    )
    feed_errors = dict(
        session.execute(
            select(F.c.source_id, func.count()).where(F.c.error_count > 0).group_by(F.c.source_id)
        ).all()
    )
    mains: dict[int, Any] = {}
    for feed in session.execute(select(F).where(F.c.kind == "main").order_by(F.c.id)).all():
        mains.setdefault(feed.source_id, feed)  # one query for all sources, not one each
    out = []
    for src in session.execute(select(S).order_by(S.c.name)).all():
        main = mains.get(src.id)
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
                "set_aside": set_aside.get(src.id, 0),
                "comment_feeds": comment_feeds.get(src.id, 0),
                "comment_feeds_failing": feed_errors.get(src.id, 0)
                - int(bool(main and main.error_count)),
            }
        )
    return out


def recent_errors(session: Db, limit: int = 20) -> list[dict[str, Any]]:
    rows = session.execute(
        select(P.c.started_at, P.c.result, P.c.error, F.c.url, S.c.name)
        .join(F, F.c.id == P.c.feed_id)
        .join(S, S.c.id == F.c.source_id)
        .where(P.c.error.is_not(None))
        .order_by(P.c.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "at": _iso(started_at),
            "source": name,
            "feed": url,
            "result": result,
            "error": error,
        }
        for started_at, result, error, url, name in rows
    ]


def digest_status(session: Db) -> list[dict[str, object]]:
    """The 20 newest digest runs, newest first."""
    rows = session.execute(select(D).order_by(D.c.id.desc()).limit(20)).all()
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


def item_rows(session: Db, *, limit: int | None = None) -> Iterable[dict[str, Any]]:
    stmt = select(I, S.c.name.label("source")).join(S, S.c.id == I.c.source_id).order_by(I.c.id)
    if limit:
        stmt = stmt.limit(limit)
    for item in session.execute(stmt):
        yield {
            "id": item.id,
            "source": item.source,
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


def list_clusters(session: Db, *, level: str | None = None) -> list[dict[str, Any]]:
    stmt = select(C).where(C.c.merged_into_id.is_(None)).order_by(C.c.id)
    if level:
        stmt = stmt.where(C.c.level == level)
    clusters = session.execute(stmt).all()
    members: dict[int, list[dict[str, Any]]] = {c.id: [] for c in clusters}
    if clusters:
        rows = session.execute(
            select(CM, I.c.title)
            .join(I, I.c.id == CM.c.item_id)
            .where(CM.c.cluster_id.in_(list(members)))
            .order_by(CM.c.item_id)
        ).all()
        for m in rows:
            members[m.cluster_id].append(
                {
                    "item_id": m.item_id,
                    "title": m.title,
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
