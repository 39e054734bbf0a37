"""Digests: a row first, an email second.

``plan_run`` selects the clusters new or grown since the digest's last successful run, and in
one transaction records the run, its entries and the fully rendered message (with a
deterministic Message-ID). A full digest (``max_entries``) says how many stories did not fit
and records them as deferred entries: the next run mails them first, so none is lost.
``deliver_pending`` leases recorded runs, sends their stored bytes and marks them sent once
the SMTP server accepted them. So an SMTP outage only delays (retries
back off), a crash between send and mark resends the very same message, and two daemons on one
PostgreSQL never both send a run (one row per digest and slot; runs leased with
``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .config import Config, DigestConfig
from .coordination import claim_digest_runs, thread_owner_id
from .digest_view import DigestView, Entry
from .errors import DeliveryError
from .store import Store, repo
from .store.clusters import survivors
from .store.models import ClusterMember, DigestEntry, DigestRun, Item
from .stories import Member, load_members, load_terms, story_entry

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12


@dataclass(frozen=True, slots=True)
class Delivery:
    run_id: int
    digest: str
    result: str  # sent | retry | failed
    error: str | None = None


# ---------------------------------------------------------------- schedule


def trigger(digest: DigestConfig) -> CronTrigger:
    return CronTrigger.from_crontab(digest.schedule, timezone=digest.timezone)


def last_slot(digest: DigestConfig, now: datetime) -> datetime | None:
    """The most recent scheduled time at or before ``now`` (within five weeks)."""
    trig = trigger(digest)
    t = trig.get_next_fire_time(None, now - timedelta(days=35))
    last = None
    while t is not None and t <= now:
        last = t
        t = trig.get_next_fire_time(t, t + timedelta(seconds=1))
    return last.astimezone(UTC) if last else None


# ---------------------------------------------------------------- selection


def _last_success(s: Session, name: str) -> datetime | None:
    return s.scalar(
        select(DigestRun.period_end_at)
        .where(DigestRun.digest_name == name, DigestRun.status.in_(("sent", "empty")))
        .order_by(DigestRun.period_end_at.desc())
        .limit(1)
    )


def _matches(digest: DigestConfig, members: list[Member]) -> bool:
    if digest.sources and not any(m.source.name in digest.sources for m in members):
        return False
    if digest.keywords:
        words = [k.casefold() for k in digest.keywords]
        text = " ".join(f"{m.item.title} {m.item.summary}" for m in members).casefold()
        return any(w in text for w in words)
    return True


@dataclass(frozen=True, slots=True)
class Planned:
    """One story of a run as recorded: mailed, or deferred to the next run."""

    cluster_id: int
    item_ids: list[int]
    new_item_ids: list[int]  # members this digest has not mailed before
    deferred: bool = False


def order_key(entry: Entry, carried: bool) -> tuple[bool, int, bool, float]:
    """Which stories a full digest mails: those deferred by the last run first, then the most
    widely covered; among equals a dated story before one whose members all lack a date (their
    fetch time would make them the newest), then the newest."""
    return (
        not carried,
        -(len(entry.outlets) + 1),
        entry.published_at_estimated,
        -entry.published_at.timestamp(),
    )


def build_view(
    s: Session,
    cfg: Config,
    digest: DigestConfig,
    *,
    period_start_at: datetime | None,
    period_end_at: datetime,
) -> tuple[DigestView, list[Planned]]:
    """The digest's content for a period, and its stories to record (the mailed ones in
    order, then those deferred because the digest is full)."""
    repo.check_digest_sources(s, digest)
    level = digest.level
    changed = select(ClusterMember.cluster_id).where(
        ClusterMember.level == level, ClusterMember.joined_at <= period_end_at
    )
    if period_start_at is not None:
        changed = changed.where(ClusterMember.joined_at > period_start_at)
    carried = set(_carried(s, digest.name))
    cluster_ids = set(s.scalars(changed.distinct())) | carried
    cluster_ids |= edited_clusters(s, level, period_start_at, period_end_at)
    if not cluster_ids:
        return _view(cfg, digest, period_start_at, period_end_at, [], 0), []

    members = load_members(s, level, cluster_ids, until=period_end_at)
    mailed = _mailed_items(s, digest.name, cluster_ids)
    terms = load_terms(s, [m.item.id for group in members.values() for m in group])

    ranked: list[tuple[tuple[bool, int, bool, float], Entry, Planned]] = []
    for cid, group in members.items():
        if not _matches(digest, group):
            continue
        was_mailed = mailed.get(cid, set())
        new_ids = {m.item.id for m in group} - was_mailed
        # an edit of what was mailed before is news too
        edited = {m.item.id for m in group if _edited(m.item.updated_at, period_start_at)}
        updated = edited & was_mailed
        if not new_ids and not updated:
            continue
        entry = story_entry(
            s, cid, group, new_ids, bool(was_mailed), period_start_at, level, terms, updated
        )
        planned = Planned(cid, sorted(m.item.id for m in group), sorted(new_ids))
        ranked.append((order_key(entry, cid in carried), entry, planned))
    ranked.sort(key=lambda r: (r[0], r[1].cluster_id))
    shown, rest = ranked[: digest.max_entries], ranked[digest.max_entries :]
    view = _view(cfg, digest, period_start_at, period_end_at, [r[1] for r in shown], len(rest))
    deferred = [
        Planned(r[2].cluster_id, r[2].item_ids, r[2].new_item_ids, deferred=True) for r in rest
    ]
    return view, [r[2] for r in shown] + deferred


def _carried(s: Session, name: str) -> list[int]:
    """The stories the digest's last successful run deferred (merged ones by their survivor)."""
    last = s.scalar(
        select(DigestRun.id)
        .where(DigestRun.digest_name == name, DigestRun.status.in_(("sent", "empty")))
        .order_by(DigestRun.period_end_at.desc())
        .limit(1)
    )
    if last is None:
        return []
    ids = list(
        s.scalars(
            select(DigestEntry.cluster_id)
            .where(DigestEntry.run_id == last, DigestEntry.deferred.is_(True))
            .order_by(DigestEntry.position)
        )
    )
    if not ids:
        return []
    survivor = survivors(s, ids)
    return list(dict.fromkeys(survivor[cid] for cid in ids))


def _edited(updated_at: datetime | None, since: datetime | None) -> bool:
    return updated_at is not None and since is not None and updated_at > since


def edited_clusters(s: Session, level: str, since: datetime | None, until: datetime) -> set[int]:
    """Clusters with a member edited (a material update) in the period."""
    if since is None:
        return set()
    stmt = (
        select(ClusterMember.cluster_id)
        .join(Item, Item.id == ClusterMember.item_id)
        .where(
            ClusterMember.level == level,
            Item.updated_at > since,
            Item.updated_at <= until,
            ClusterMember.joined_at <= until,
        )
    )
    return set(s.scalars(stmt.distinct()))


def _mailed_items(s: Session, name: str, cluster_ids: set[int]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = defaultdict(set)
    rows = s.execute(
        select(DigestEntry.cluster_id, DigestEntry.item_ids)
        .join(DigestRun, DigestRun.id == DigestEntry.run_id)
        .where(
            DigestRun.digest_name == name,
            DigestRun.status == "sent",
            DigestEntry.deferred.is_(False),
            DigestEntry.cluster_id.in_(cluster_ids),
        )
    )
    for cid, item_ids in rows:
        out[cid].update(item_ids or ())
    return out


def more_link(
    cfg: Config, digest: DigestConfig, start: datetime | None, end: datetime
) -> str | None:
    """The web page's list of recent stories, reaching back over this period (and a day more,
    as the mail is read later), when ``http.base_url`` says where the pages are."""
    base = cfg.http.base_url
    if not base:
        return None
    hours = math.ceil((end - start).total_seconds() / 3600) + 24 if start else 0
    since = f"&since={hours}h" if hours > 48 else ""
    return f"{base}/?level={digest.level}{since}"


def _view(
    cfg: Config,
    digest: DigestConfig,
    start: datetime | None,
    end: datetime,
    entries: list[Entry],
    more: int,
) -> DigestView:
    from .render import format_date

    n = len(entries)
    count = f"{n} of {n + more}" if more else f"{n}"
    subject = (
        digest.subject
        or f"newsdedup {digest.name}: {count} "
        + ("story" if n + more == 1 else "stories")
        + f" – {format_date(end, digest.timezone, digest.language)}"
    )
    return DigestView(
        name=digest.name,
        subject=subject,
        period_start_at=start,
        period_end_at=end,
        timezone=digest.timezone,
        entries=tuple(entries),
        unsubscribe=digest.list_unsubscribe,
        language=digest.language,
        more=more,
        more_link=more_link(cfg, digest, start, end) if more else None,
    )


# ---------------------------------------------------------------- recording


def message_id(run_id: int, digest: DigestConfig, period_end_at: datetime, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "newsdedup.invalid"
    return f"<digest.{digest.name}.{run_id}.{int(period_end_at.timestamp())}@{domain}>"


def plan_run(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    *,
    period_end_at: datetime,
    now: datetime | None = None,
) -> int:
    """Record the run for this slot (idempotent) with its rendered message; returns its id."""
    from .render import build_message, render_digest

    now = now or datetime.now(UTC)
    try:
        with store.session() as s:
            existing = s.scalar(
                select(DigestRun.id).where(
                    DigestRun.digest_name == digest.name, DigestRun.period_end_at == period_end_at
                )
            )
            if existing is not None:
                return existing
            # An unsent run goes first: a newer run now would mail the same stories again,
            # in a second, different message. The next slot after it covers the gap.
            pending = s.scalar(
                select(DigestRun.id).where(
                    DigestRun.digest_name == digest.name, DigestRun.status == "pending"
                )
            )
            if pending is not None:
                log.info("digest %s: run %d is still unsent; it goes first", digest.name, pending)
                return pending
            start = _last_success(s, digest.name)
            view, entries = build_view(
                s, cfg, digest, period_start_at=start, period_end_at=period_end_at
            )
            empty = not entries and not digest.send_empty
            run = DigestRun(
                digest_name=digest.name,
                period_start_at=start,
                period_end_at=period_end_at,
                created_at=now,
                status="empty" if empty else "pending",
                attempts=0,
                next_attempt_at=None,
            )
            s.add(run)
            s.flush()
            for pos, planned in enumerate(entries):
                s.add(
                    DigestEntry(
                        run_id=run.id,
                        position=pos,
                        cluster_id=planned.cluster_id,
                        level=digest.level,
                        item_ids=planned.item_ids,
                        new_item_ids=planned.new_item_ids,
                        deferred=planned.deferred,
                    )
                )
            if not empty:
                subject, html, text = render_digest(view)
                mid = message_id(run.id, digest, period_end_at, cfg.smtp.sender)
                run.subject, run.message_id = subject, mid
                run.message = build_message(
                    view,
                    subject=subject,
                    html=html,
                    text=text,
                    sender=cfg.smtp.sender,
                    recipients=list(digest.recipients),
                    message_id=mid,
                    date=period_end_at,
                    list_unsubscribe=digest.list_unsubscribe,
                )
            run_id = run.id
        deferred = sum(e.deferred for e in entries)
        log.info(
            "digest %s: recorded run %d with %d entries%s%s",
            digest.name,
            run_id,
            sum(not e.deferred for e in entries),
            f" ({deferred} more deferred to the next run: digest full)" if deferred else "",
            " (nothing new: not sent)" if empty else "",
        )
        return run_id
    except IntegrityError:  # another daemon recorded this slot first
        with store.session() as s:
            return s.scalars(
                select(DigestRun.id).where(
                    DigestRun.digest_name == digest.name, DigestRun.period_end_at == period_end_at
                )
            ).one()


# ---------------------------------------------------------------- delivery


def deliver_pending(
    store: Store,
    cfg: Config,
    *,
    name: str | None = None,
    now: datetime | None = None,
    owner: str | None = None,
    retry_now: bool = False,
) -> list[Delivery]:
    """Send every recorded, unsent run that is due; mark each sent once accepted.
    ``retry_now`` (``digest send --now``): runs waiting for their retry slot go now too."""
    from .mailer import send_message

    now = now or datetime.now(UTC)
    owner = owner or thread_owner_id()
    results = []
    for run_id in claim_digest_runs(store, now, owner, name, retry_now=retry_now):
        with store.session() as s:
            run = s.get_one(DigestRun, run_id)
            message, digest_name = run.message, run.digest_name
        try:
            digest = cfg.digest(digest_name)
            recipients = list(digest.recipients)
            send_message(
                cfg.smtp,
                sender=parseaddr(cfg.smtp.sender)[1] or cfg.smtp.sender,
                recipients=recipients,
                message=message or b"",
            )
        except DeliveryError as exc:
            results.append(_failed(store, run_id, digest_name, exc, now))
            continue
        except Exception as exc:  # noqa: BLE001 - a config change removed the digest, etc.
            results.append(
                _failed(store, run_id, digest_name, DeliveryError(str(exc), retryable=False), now)
            )
            continue
        with store.session() as s:
            run = s.get_one(DigestRun, run_id)
            run.status, run.sent_at = "sent", datetime.now(UTC)
            run.attempts += 1
            run.last_error, run.lease_owner, run.lease_until = None, None, None
        log.info("digest %s: run %d sent to %d recipients", digest_name, run_id, len(recipients))
        results.append(Delivery(run_id, digest_name, "sent"))
    return results


def _failed(store: Store, run_id: int, name: str, exc: DeliveryError, now: datetime) -> Delivery:
    with store.session() as s:
        run = s.get_one(DigestRun, run_id)
        run.attempts += 1
        run.last_error = " ".join(str(exc).split())[:500]
        run.lease_owner, run.lease_until = None, None
        if exc.retryable and run.attempts < MAX_ATTEMPTS:
            wait_s = min(60.0 * 2 ** (run.attempts - 1), 3600.0)
            run.next_attempt_at = now + timedelta(seconds=wait_s)
            result = "retry"
        else:
            run.status = "failed"
            result = "failed"
        attempts, nxt = run.attempts, run.next_attempt_at
    if result == "retry":
        log.warning(
            "digest %s: run %d not sent (attempt %d), retry at %s: %s",
            name,
            run_id,
            attempts,
            nxt.strftime("%H:%M:%SZ") if nxt else "-",
            exc,
        )
    else:
        log.error(
            "digest %s: run %d failed for good after %d attempts: %s", name, run_id, attempts, exc
        )
    return Delivery(run_id, name, result, str(exc))


def run_digest(store: Store, cfg: Config, name: str, *, period_end_at: datetime) -> list[Delivery]:
    """What the scheduler (and ``digest send``) does: record the slot, then deliver."""
    plan_run(store, cfg, cfg.digest(name), period_end_at=period_end_at)
    return deliver_pending(store, cfg, name=name)


def waiting_runs(store: Store, name: str) -> list[tuple[int, datetime | None, str | None]]:
    """The unsent runs of a digest: (run id, next attempt, last error)."""
    with store.session() as s:
        rows = s.execute(
            select(DigestRun.id, DigestRun.next_attempt_at, DigestRun.last_error)
            .where(DigestRun.digest_name == name, DigestRun.status == "pending")
            .order_by(DigestRun.id)
        )
        return [(id_, at, error) for id_, at, error in rows]


__all__ = ["deliver_pending", "last_slot", "plan_run", "run_digest", "trigger"]
