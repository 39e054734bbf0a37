"""A cluster as a reader sees it: a headline from a member that represents the story, the
other outlets with their own times, comment counts and the thread it continues. Shared by
digests, exports and the web page, so all of them head a story the same way."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from .digest_view import Entry, FollowUp, Outlet
from .domain import AGGREGATOR_SOURCE_TYPES
from .store.models import Cluster, ClusterMember, Item, Signature, Source
from .urls import is_google_news_link, unwrap_bing

SUMMARY_CHARS = 320
# A summary at least this long that ends without punctuation was cut by its feed (a short one
# may be a phrase, such as "Watch the video").
UNMARKED_CUT_CHARS = 100
# Members whose centrality is within this of the best one represent the story equally well;
# among them the source priority decides.
REPRESENTATIVE_MARGIN = 0.05


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
    """The article's URL as its publisher gave it (a Bing click link unwrapped). The canonical
    form is a matching key, not an address (an http-only or www-only site breaks under it):
    it is linked only when no URL was stored. A Google News redirect is not the article's own
    URL: None, so a caller uses it only when nothing better is known."""
    if source.type == "google_news" or is_google_news_link(item.url):
        return None
    return unwrap_bing(item.url) if item.url else item.canonical_url


def rank(m: Member) -> tuple[int, int, bool, datetime]:
    """Among equals: higher source priority, a site's own feed before an aggregator's, a
    dated report before one stamped with its fetch time, then the earliest."""
    full = 0 if m.source.type not in AGGREGATOR_SOURCE_TYPES else 1
    return (-m.source.priority, full, m.item.published_at_estimated, m.item.published_at)


# ---------------------------------------------------------------- headline choice

Terms = Mapping[str, float]


def load_terms(s: Session, item_ids: Collection[int]) -> dict[int, Terms]:
    """Each item's title-and-lead terms as the dedup engine stored them (what it sums into a
    story's centroid). Items clustered without terms (no content words) are missing."""
    out: dict[int, Terms] = {}
    for chunk in _chunks(sorted(item_ids), 500):
        rows = s.execute(
            select(Signature.item_id, Signature.features).where(
                Signature.level == "story", Signature.item_id.in_(chunk)
            )
        )
        for item_id, features in rows:
            lead = (features or {}).get("lead") or {}
            if lead:
                out[item_id] = lead
    return out


def centrality(terms: Mapping[int, Terms]) -> dict[int, float]:
    """How well each member stands for its story: the cosine of its terms and the summed
    terms of all the *other* members (so a report that only shares the story's link, such
    as a press release about something else, scores low however big it is)."""
    total: dict[str, float] = defaultdict(float)
    for vec in terms.values():
        for t, w in vec.items():
            total[t] += w
    total_sq = sum(w * w for w in total.values())
    out = {}
    for item_id, vec in terms.items():
        # v·(T-v) / (|v| |T-v|), with |T-v|² = |T|² - 2 v·T + |v|²: no copy of T per member
        dot_total = sum(w * total[t] for t, w in vec.items())
        own_sq = sum(w * w for w in vec.values())
        rest_sq = total_sq - 2 * dot_total + own_sq
        dot = dot_total - own_sq
        denominator = math.sqrt(own_sq * rest_sq) if own_sq > 0 and rest_sq > 1e-9 else 0.0
        out[item_id] = max(0.0, dot / denominator) if denominator else 0.0
    return out


def headline_member(group: list[Member], terms: Mapping[int, Terms]) -> Member:
    """The member that heads the story: one of the *representative* members (centrality
    within ``REPRESENTATIVE_MARGIN`` of the best). Among those the source priority decides,
    then a site's own feed before an aggregator's, one whose article URL is known, a dated
    one, the more central, the earliest. Members without stored terms score 0; when no
    member has any, all are representative."""
    scores = centrality({m.item.id: terms[m.item.id] for m in group if m.item.id in terms})
    best = max(scores.values(), default=0.0)
    representative = [
        m for m in group if scores.get(m.item.id, 0.0) >= best - REPRESENTATIVE_MARGIN
    ]
    return min(
        representative,
        key=lambda m: (
            -m.source.priority,
            m.source.type in AGGREGATOR_SOURCE_TYPES,
            link_of(m.item, m.source) is None,
            m.item.published_at_estimated,
            -scores.get(m.item.id, 0.0),
            m.item.published_at,
            m.item.id,
        ),
    )


# ---------------------------------------------------------------- summary

_CUT_MARK = re.compile(r"(?:\s*(?:\[\s*(?:…|\.\.\.)\s*\]|…|\.{2,})|[\s,;:–-]+\.)\s*$")
_SENTENCE_END = re.compile(r"[.!?…][\"'”»)]*\s+(?=\S)")
_WHOLE = re.compile(r"[.!?…][\"'”»)]*$")
_LEAD_SEPARATORS = " \t-–—:|·,."


def _fold(text: str) -> str:
    return re.sub(r"\W+", " ", text.casefold()).strip()


def drop_title(summary: str, title: str) -> str:
    """The summary without a leading repeat of the headline (feeds often start with it)."""
    want = _fold(title)
    if not want:
        return summary
    words = summary.split(" ")
    for n in range(1, len(words) + 1):
        got = _fold(" ".join(words[:n]))
        if got == want:
            return " ".join(words[n:]).lstrip(_LEAD_SEPARATORS)
        if not want.startswith(got):
            break
    return summary


def clean_summary(summary: str, title: str, limit: int = SUMMARY_CHARS) -> str:
    """A summary that reads whole: no leading repeat of the title; a text that was cut (too
    long here, or cut by the feed: "...", "[…]", a dangling dot, or a long text ending
    without punctuation) ends at its last sentence when that keeps at least half of it, else
    at a word boundary with "…"."""
    text = drop_title(" ".join((summary or "").split()), title)
    marked = _CUT_MARK.search(text)
    if marked:
        text = text[: marked.start()].rstrip()
    # a long text that stops without closing punctuation was cut by the feed, unmarked
    cut = marked is not None or (len(text) >= UNMARKED_CUT_CHARS and not _WHOLE.search(text))
    if len(text) > limit:
        cut, text = True, text[: limit + 1]
        if not text[-1].isspace():  # the last word runs past the limit: drop it
            text = text.rsplit(" ", 1)[0] if " " in text else text[:limit]
        text = text.rstrip()
    if not text or not cut:
        return text
    if _WHOLE.search(text):
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] >= len(text) / 2:
        return text[: ends[-1]].rstrip()
    return text.rstrip(_LEAD_SEPARATORS) + "…"


def story_entry(
    s: Session,
    cid: int,
    group: list[Member],
    new_ids: set[int],
    is_update: bool,
    since: datetime | None,
    level: str,
    terms: Mapping[int, Terms] | None = None,
    updated_ids: Collection[int] = (),
) -> Entry:
    """The story as readers see it. ``terms``: the members' stored terms, when the caller
    loaded them for many stories at once (else read here)."""
    if terms is None:
        terms = load_terms(s, [m.item.id for m in group])
    best = headline_member(group, terms)
    group = sorted(group, key=rank)
    # the headline's own article: its URL, else its aggregator's link (another member's
    # article would be another report, not the one the headline names)
    link = link_of(best.item, best.source) or best.item.url
    publisher = best.item.publisher or best.source.name
    # one line per outlet name: an edit of any of its articles marks it
    edited = {m.item.publisher or m.source.name for m in group if m.item.id in updated_ids}
    outlets: dict[str, Outlet] = {}
    for m in group:
        name = m.item.publisher or m.source.name
        if m is best or name == publisher:
            continue
        known = outlets.get(name)
        own = link_of(m.item, m.source) or m.item.url
        if known is None or (known.link is None and own):
            outlets[name] = Outlet(
                name=name,
                link=own,
                title=m.item.title,
                is_new=is_update and m.item.id in new_ids,
                published_at=m.item.published_at,
                published_at_estimated=m.item.published_at_estimated,
                is_updated=name in edited,
            )
    article_ids = [m.item.id for m in group if m.source.type not in AGGREGATOR_SOURCE_TYPES]
    comments = 0
    if article_ids:
        stmt = select(func.count()).where(
            Item.kind == "comment", Item.parent_item_id.in_(article_ids)
        )
        if since is not None:
            stmt = stmt.where(Item.fetched_at > since)
        comments = s.scalar(stmt) or 0
    dated = [m.item.published_at for m in group if not m.item.published_at_estimated]
    return Entry(
        cluster_id=cid,
        headline=best.item.title,
        link=link,
        publisher=publisher,
        summary=clean_summary(best.item.summary, best.item.title),
        published_at=min(dated) if dated else min(m.item.published_at for m in group),
        published_at_estimated=not dated,
        headline_at=best.item.published_at,
        headline_at_estimated=best.item.published_at_estimated,
        outlets=tuple(sorted(outlets.values(), key=lambda o: o.name.casefold())),
        new_comments=comments,
        follow_up_to=follow_up(s, group, level) if level == "story" else None,
        is_update=is_update,
        headline_updated=publisher in edited,
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
        .order_by(Source.type.in_(AGGREGATOR_SOURCE_TYPES), Item.published_at.desc())
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
    offset: int = 0,
) -> list[Story]:
    """Live clusters changed since ``since_at``, most recently changed first (``offset``
    of them skipped: the web pages' paging)."""
    stmt = (
        select(Cluster)
        .where(Cluster.level == level, Cluster.merged_into_id.is_(None), Cluster.size > 0)
        .order_by(Cluster.updated_at.desc(), Cluster.id.desc())
        .offset(offset)
        .limit(limit)
    )
    if since_at is not None:
        stmt = stmt.where(Cluster.updated_at >= since_at)
    clusters = list(s.scalars(stmt))
    members = load_members(s, level, [c.id for c in clusters])
    terms = load_terms(s, [m.item.id for group in members.values() for m in group])
    threads = thread_of(s, [c.id for c in clusters]) if level == "story" else {}
    out = []
    for c in clusters:
        group = members.get(c.id)
        if not group:
            continue
        entry = story_entry(s, c.id, group, set(), False, comments_since_at, level, terms)
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
