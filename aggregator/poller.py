"""One feed refresh, start to end, in one straight line (after Miniflux's ``RefreshFeed``).

fetch → (304 or same body: stop) → parse → normalise → store new items (:mod:`.ingest`) + poll
state in one transaction → schedule the next check. Any failure is confined to its feed: recorded in
``feeds``/``poll_log`` (where ``status`` shows it), logged as one line, backed off.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from .config import Config
from .coordination import FeedJob, claim_due_feeds, release_feeds
from .domain import AGGREGATOR_SOURCE_TYPES
from .errors import FeedCrash, FetchError, SourceError, SourceGone, StoreError
from .fetcher import Fetcher, FetchResult, FetchSettings, PrivateAccess, origin_of, redact_url
from .ingest import ingest, known_entries_of, parse_new_entries, source_config
from .parser import split_entries
from .schedule import MAX_RETRY_AFTER_S, backoff_s, next_check_at
from .store import Store
from .store.items import recent_item_times, record_poll
from .store.models import Feed, Item
from .store.tables import feeds

log = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 500


@dataclass(frozen=True, slots=True)
class PollOutcome:
    feed_id: int
    source: str
    url: str
    result: str  # ok | not_modified | unchanged | <error kind>
    items_seen: int = 0
    items_new: int = 0
    error: str | None = None
    next_check_at: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def fetch_settings(cfg: Config) -> FetchSettings:
    p = cfg.polling
    kwargs = dict(
        timeout_s=p.connect_timeout,
        read_timeout_s=p.read_timeout,
        total_timeout_s=p.total_timeout,
        max_bytes=p.max_response_size,
        max_redirects=p.max_redirects,
        per_host_limit=p.per_host_limit,
    )
    if p.user_agent:
        kwargs["user_agent"] = p.user_agent
    return FetchSettings(**kwargs)


# ---------------------------------------------------------------- scheduling inputs


def _bounds(cfg: Config, job: FeedJob) -> tuple[float, float, float | None]:
    """(min, max, floor) seconds for this feed from the global and per-source settings."""
    p = cfg.polling
    src = source_config(cfg, job.source_name)
    min_s = (src.min_interval if src and src.min_interval else None) or p.min_interval
    max_s = (src.max_interval if src and src.max_interval else None) or p.max_interval
    floor = p.aggregator_min_interval if job.source_type in AGGREGATOR_SOURCE_TYPES else None
    if job.kind == "comments" and src is not None:
        floor = max(floor or 0.0, src.comments_interval)
    if floor is not None:
        floor = min(floor, max_s)
    return min(min_s, max_s), max_s, floor


def private_access(cfg: Config, job: FeedJob) -> PrivateAccess:
    """Which hops of this feed's fetch may connect to loopback/private addresses.

    Only with ``polling.allow_private_addresses``: a configured feed (config.yaml or OPML)
    on every hop; a comment feed, found in feed content, only while on the scheme, host
    and port of its source's configured feed URL; anything else never.
    """
    if not cfg.polling.allow_private_addresses:
        return "never"
    if job.kind != "comments":
        return "always"
    src = source_config(cfg, job.source_name)
    origin = origin_of(job.url)
    if src is not None and origin is not None and origin == origin_of(src.feed_url()):
        return "same_origin"
    return "never"


# ---------------------------------------------------------------- the refresh


def refresh_feed(
    store: Store, fetcher: Fetcher, cfg: Config, job: FeedJob, *, now: datetime | None = None
) -> PollOutcome:
    """Poll one feed. Whatever goes wrong with the feed, of any exception type, becomes its
    error row and backoff (:class:`FeedCrash` for the unforeseen); only a database outage
    (:class:`StoreError`) escapes, to stop the round."""
    started_at = now or datetime.now(UTC)
    t0 = time.monotonic()
    try:
        return _refresh(store, fetcher, cfg, job, started_at, t0)
    except StoreError:
        raise
    except DBAPIError as exc:
        if exc.connection_invalidated:  # the connection died: an outage, not this feed
            raise StoreError(f"database error: {_first_line(exc)}") from exc
        return _record_failure(store, cfg, job, feed_crash(exc), started_at, t0)
    except Exception as exc:  # noqa: BLE001 - containment: one feed never stops a round
        return _record_failure(store, cfg, job, feed_crash(exc), started_at, t0)


def feed_crash(exc: Exception) -> FeedCrash:
    """An unexpected exception as a one-line source error, chained to the original."""
    crash = FeedCrash(f"internal error: {type(exc).__name__}: {_first_line(exc)}")
    crash.__cause__ = exc
    return crash


def _first_line(exc: Exception) -> str:
    """The message's first line (SQLAlchemy appends the SQL and its parameters)."""
    orig = getattr(exc, "orig", None) if isinstance(exc, SQLAlchemyError) else None
    lines = str(orig or exc).strip().splitlines()
    return lines[0] if lines else "(no message)"


def _refresh(
    store: Store, fetcher: Fetcher, cfg: Config, job: FeedJob, started_at: datetime, t0: float
) -> PollOutcome:
    try:
        result = fetcher.fetch(
            job.url,
            etag=job.etag,
            last_modified=job.last_modified,
            private_addresses=private_access(cfg, job),
        )
    except SourceError as exc:
        return _record_failure(store, cfg, job, exc, started_at, t0)

    if result.not_modified:
        return _record_quiet(store, cfg, job, result, "not_modified", started_at, t0)
    body = result.body or b""
    body_hash = hashlib.sha256(body).hexdigest()
    if body_hash == job.body_hash:
        return _record_quiet(store, cfg, job, result, "unchanged", started_at, t0)
    try:
        feed, skipped = parse_new_entries(
            body,
            split_entries(body),
            known_entries_of(store, job.source_id),
            url=result.url,
            content_type=result.content_type,
        )
    except SourceError as exc:
        return _record_failure(store, cfg, job, exc, started_at, t0, http_status=result.status)

    with store.session() as s:
        seen, new = ingest(s, cfg, job, feed, fetched_at=result.fetched_at)
        seen += skipped
        nxt = _schedule(s, cfg, job, result, feed.ttl_s, started_at, error_count=0)
        db: Session | Connection = s
        if result.moved_to is None:
            # No move to follow: the poll state as one Core UPDATE and INSERT in the same
            # transaction, not the ORM's load of the row and its unit of work
            db = s.connection()
            _write_ok(
                db,
                job.feed_id,
                result=result,
                label="ok",
                now=started_at,
                next_at=nxt,
                body_hash=body_hash,
                items_total=feeds.c.items_total + new,
            )
        else:
            row = s.get_one(Feed, job.feed_id)
            _set_state(row, result=result, label="ok", now=started_at, next_at=nxt)
            row.body_hash = body_hash
            row.error_count, row.last_error = 0, None
            _follow_move(s, job, row, result, started_at)
            row.items_total += new
        record_poll(
            db,
            job.feed_id,
            started_at=started_at,
            duration_ms=_ms(t0),
            result="ok",
            http_status=result.status,
            items_seen=seen,
            items_new=new,
            warning=feed.warning,
        )
    if feed.warning:
        log.info(
            "%s: kept %d entries of a malformed feed: %s", job.source_name, seen, feed.warning[:200]
        )
    log.debug("%s %s: %d entries, %d new", job.source_name, job.url, seen, new)
    return PollOutcome(job.feed_id, job.source_name, job.url, "ok", seen, new, None, nxt)


def _schedule(
    s: Session | Connection,
    cfg: Config,
    job: FeedJob,
    result: FetchResult | None,
    ttl_s: int | None,
    now: datetime,
    *,
    error_count: int,
    retry_after_s: float | None = None,
) -> datetime:
    min_s, max_s, floor = _bounds(cfg, job)
    recent = recent_item_times(s, job.feed_id) if error_count == 0 else []
    return next_check_at(
        now=now,
        min_interval_s=min_s,
        max_interval_s=max_s,
        error_count=error_count,
        retry_after_s=retry_after_s
        if retry_after_s is not None
        else (result.retry_after_s if result else None),
        ttl_s=ttl_s,
        max_age_s=result.max_age_s if result else None,
        recent_item_times=recent,
        floor_s=floor,
        default_interval_s=cfg.polling.default_interval,
    )


def _set_state(
    row: Feed, *, result: FetchResult, label: str, now: datetime, next_at: datetime
) -> None:
    for key, value in _state(result=result, label=label, now=now, next_at=next_at).items():
        setattr(row, key, value)


def _write_ok(
    conn: Connection,
    feed_id: int,
    *,
    result: FetchResult,
    label: str,
    now: datetime,
    next_at: datetime,
    **columns: object,
) -> None:
    """A successful poll's feed columns (and ``columns``) as one Core UPDATE: no ORM load
    of the row and unit of work on the polls that need none."""
    state = _state(result=result, label=label, now=now, next_at=next_at)
    conn.execute(
        update(feeds)
        .where(feeds.c.id == feed_id)
        .values(**state, error_count=0, last_error=None, **columns)
    )


def _state(
    *, result: FetchResult, label: str, now: datetime, next_at: datetime
) -> dict[str, object]:
    """A successful poll's feed columns."""
    return {
        "last_polled_at": now,
        "last_success_at": now,
        "last_result": label,
        "next_check_at": next_at,
        "lease_owner": None,
        "lease_until": None,
        # Validators only move forward together with the items they vouch for.
        "etag": result.etag,
        "last_modified": result.last_modified,
    }


def _record_quiet(
    store: Store,
    cfg: Config,
    job: FeedJob,
    result: FetchResult,
    label: str,
    started_at: datetime,
    t0: float,
) -> PollOutcome:
    if result.moved_to is None and job.kind != "comments":
        # The common case (no move to follow, no comment feed to retire): two Core
        # statements, not the ORM's load of the row and its unit of work (as much time as
        # hashing a 1.5 MB body)
        with store.connect() as conn:
            nxt = _schedule(conn, cfg, job, result, None, started_at, error_count=0)
            _write_ok(conn, job.feed_id, result=result, label=label, now=started_at, next_at=nxt)
            record_poll(
                conn,
                job.feed_id,
                started_at=started_at,
                duration_ms=_ms(t0),
                result=label,
                http_status=result.status,
            )
        return PollOutcome(job.feed_id, job.source_name, job.url, label, next_check_at=nxt)
    with store.session() as s:
        row = s.get_one(Feed, job.feed_id)
        nxt = _schedule(s, cfg, job, result, None, started_at, error_count=0)
        _set_state(row, result=result, label=label, now=started_at, next_at=nxt)
        row.error_count, row.last_error = 0, None
        _follow_move(s, job, row, result, started_at)
        _retire_old_comment_feed(s, cfg, job, row, started_at)
        record_poll(
            s,
            row.id,
            started_at=started_at,
            duration_ms=_ms(t0),
            result=label,
            http_status=result.status,
        )
    return PollOutcome(job.feed_id, job.source_name, job.url, label, next_check_at=nxt)


def _follow_move(s: Session, job: FeedJob, row: Feed, result: FetchResult, now: datetime) -> None:
    """After a permanent redirect (301/308) poll the new URL from now on; ``moved_from``
    keeps the first URL (the configured one, which the config may still name)."""
    target = result.moved_to
    if target is None or target == row.url:
        return
    taken = s.scalar(
        select(Feed.id).where(
            Feed.source_id == row.source_id, Feed.url == target, Feed.id != row.id
        )
    )
    if taken is not None:
        log.warning(
            "%s: %s moved permanently to %s, which is already one of its feeds; not moved",
            job.source_name,
            redact_url(row.url),
            redact_url(target),
        )
        return
    log.warning(
        "%s: feed moved permanently (HTTP %d): %s -> %s; polling the new URL from now on",
        job.source_name,
        result.redirects[0][0],
        redact_url(row.url),
        redact_url(target),
    )
    row.moved_from = row.moved_from or row.url
    row.moved_at = now
    row.url = target


def _retire_old_comment_feed(
    s: Session, cfg: Config, job: FeedJob, row: Feed, now: datetime
) -> None:
    """Stop polling a comment feed once its article is older than ``comments_max_age``."""
    src = source_config(cfg, job.source_name)
    if job.kind != "comments" or src is None or job.article_item_id is None:
        return
    published = s.scalar(select(Item.published_at).where(Item.id == job.article_item_id))
    if published is not None and published < now - timedelta(seconds=src.comments_max_age):
        row.enabled, row.disabled_reason = False, "article older than comments_max_age"


def _record_failure(
    store: Store,
    cfg: Config,
    job: FeedJob,
    exc: SourceError,
    started_at: datetime,
    t0: float,
    http_status: int | None = None,
) -> PollOutcome:
    # stored and shown: no secret of a feed URL (userinfo, a token parameter) in it
    text = redact_url(" ".join(str(exc).split()))[:ERROR_TEXT_LIMIT] or type(exc).__name__
    retry_after = exc.retry_after_s if isinstance(exc, FetchError) else None
    status = getattr(exc, "status", http_status)
    honoured_s = min(retry_after, MAX_RETRY_AFTER_S) if retry_after and retry_after > 0 else None
    with store.session() as s:
        row = s.get_one(Feed, job.feed_id)
        errors = row.error_count + 1
        nxt = _schedule(
            s, cfg, job, None, None, started_at, error_count=errors, retry_after_s=retry_after
        )
        row.last_polled_at, row.last_result = started_at, exc.kind
        row.error_count, row.last_error, row.last_error_at = errors, text, started_at
        row.next_check_at = nxt
        row.retry_after_until = (
            started_at + timedelta(seconds=honoured_s) if honoured_s is not None else None
        )
        row.lease_owner, row.lease_until = None, None
        if isinstance(exc, SourceGone):
            row.enabled, row.disabled_reason = False, "410 Gone"
        record_poll(
            s,
            row.id,
            started_at=started_at,
            duration_ms=_ms(t0),
            result=exc.kind,
            http_status=status,
            error=text,
        )
    if isinstance(exc, FeedCrash):
        log.error(
            "%s %s: %s (attempt %d, next try %s)",
            job.source_name,
            redact_url(job.url),
            text,
            errors,
            nxt.strftime("%Y-%m-%d %H:%M:%SZ"),
        )
        log.debug("%s: traceback of the internal error", job.source_name, exc_info=exc.__cause__)
    else:
        log.warning(
            "%s: %s (attempt %d, next try %s)",
            job.source_name,
            text,
            errors,
            nxt.strftime("%Y-%m-%d %H:%M:%SZ"),
        )
    return PollOutcome(
        job.feed_id, job.source_name, job.url, exc.kind, error=text, next_check_at=nxt
    )


def _release_crashed(store: Store, cfg: Config, job: FeedJob, exc: Exception) -> PollOutcome:
    """Last resort when recording a feed's failure failed too: release its lease and push its
    next check back (by the plain backoff) so it is not claimed first at every tick."""
    crash = feed_crash(exc)
    text = str(crash)[:ERROR_TEXT_LIMIT]
    now = datetime.now(UTC)
    min_s, max_s, _ = _bounds(cfg, job)
    nxt = now + timedelta(seconds=backoff_s(job.error_count + 1, min_s, max_s))
    log.error("%s %s: %s (failure not recorded)", job.source_name, redact_url(job.url), text)
    log.debug("%s: traceback", job.source_name, exc_info=exc)
    values = dict(
        lease_owner=None,
        lease_until=None,
        next_check_at=nxt,
        last_polled_at=now,
        last_result=crash.kind,
        last_error=text,
        last_error_at=now,
        error_count=job.error_count + 1,
    )
    try:
        with store.session() as s:
            s.execute(update(Feed).where(Feed.id == job.feed_id).values(**values))
    except StoreError:
        raise
    except Exception as again:  # noqa: BLE001 - the lease is this owner's: free next round
        log.error("%s: cannot release the feed: %s", job.source_name, feed_crash(again))
    return PollOutcome(
        job.feed_id, job.source_name, job.url, crash.kind, error=text, next_check_at=nxt
    )


def _ms(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)


def poll_round(
    store: Store,
    cfg: Config,
    fetcher: Fetcher,
    *,
    owner: str,
    all_feeds: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    now: datetime | None = None,
) -> list[PollOutcome]:
    """Refresh the due feeds on a small worker pool, leasing them a few at a time.

    Leasing only as many feeds as there are free fetch slots lets several daemons on one
    database share a backlog instead of one of them taking it all. Each feed is refreshed at
    most once per round. ``should_stop`` is checked before each lease: on shutdown the
    running fetches finish and nothing more is taken.
    """
    if all_feeds:  # `poll --once --all`: everything, due or not, in one lease
        jobs = claim_due_feeds(
            store, now=now or datetime.now(UTC), owner=owner, limit=10_000, all_feeds=True
        )
    else:
        jobs = []
    slots = cfg.polling.workers
    outcomes: list[PollOutcome] = []
    skipped: list[int] = []
    seen: set[int] = set()
    with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="poll") as pool:
        running: dict[Future[PollOutcome], FeedJob] = {}
        while True:
            if not should_stop():
                if not all_feeds and len(running) < slots:
                    jobs += claim_due_feeds(
                        store,
                        now=now or datetime.now(UTC),
                        owner=owner,
                        limit=slots - len(running),
                        exclude=seen,
                    )
                while jobs and len(running) < slots:
                    job = jobs.pop(0)
                    seen.add(job.feed_id)
                    running[pool.submit(refresh_feed, store, fetcher, cfg, job)] = job
            else:
                skipped += [job.feed_id for job in jobs]
                jobs = []
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                try:
                    outcomes.append(future.result())
                except StoreError:
                    raise
                except Exception as exc:  # noqa: BLE001 - even recording the failure failed
                    outcomes.append(_release_crashed(store, cfg, job, exc))
    if skipped:  # stopping: leased but not started
        release_feeds(store, skipped)
    return outcomes


__all__ = [
    "PollOutcome",
    "fetch_settings",
    "poll_round",
    "private_access",
    "refresh_feed",
]
