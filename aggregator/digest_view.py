"""What a digest shows, as plain frozen data: built by :mod:`.digest`, rendered by
:mod:`.render`. Nothing here touches the database or the network."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Outlet:
    """One source of a story: an outlet that covered it, with its own link."""

    name: str
    link: str | None  # http(s) only; None when only an aggregator redirect is known
    title: str
    is_new: bool  # joined since this digest last mailed the cluster
    published_at: datetime | None = None  # this outlet's own report
    published_at_estimated: bool = False  # the feed gave no date: the fetch time stands in
    is_updated: bool = False  # its article was edited (new headline or text) since then


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The older story of the same thread this one follows."""

    title: str
    link: str | None
    published_at: datetime


@dataclass(frozen=True, slots=True)
class Entry:
    cluster_id: int
    headline: str
    link: str | None
    publisher: str
    summary: str  # plain text, already shortened
    published_at: datetime  # first report of the story (a dated one, if any member has a date)
    outlets: tuple[Outlet, ...]  # the other outlets ("also covered by N outlets")
    new_comments: int  # comments on the site articles of this story since the last digest
    follow_up_to: FollowUp | None
    is_update: bool  # mailed before; only the outlets marked is_new are new
    published_at_estimated: bool = False  # no member has a date: fetch times stand in
    headline_at: datetime | None = None  # the headline's own report (None: published_at)
    headline_at_estimated: bool = False
    headline_updated: bool = False  # the headline's article was edited since the last mail


@dataclass(frozen=True, slots=True)
class DigestView:
    name: str
    subject: str
    period_start_at: datetime | None
    period_end_at: datetime
    timezone: str  # IANA name: times are shown in it
    entries: tuple[Entry, ...]
    unsubscribe: str | None = None  # URL or mailto: for List-Unsubscribe and the footer
    language: str = "en"  # of dates and month names: a key of render.DATE_NAMES
    more: int = 0  # stories that did not fit (max_entries): they lead the next run
    more_link: str | None = None  # the web page listing them, when http.base_url is set
