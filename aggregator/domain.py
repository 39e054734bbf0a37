"""Domain types passed between stages, and the vocabulary every stage spells the same way.

Frozen: a stage never edits what it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, get_args

SourceType = Literal["wordpress", "google_news", "bing_news", "rss", "atom"]
SOURCE_TYPES: tuple[str, ...] = get_args(SourceType)
# News search engines' feeds: every entry is another publisher's article, seen through them.
AGGREGATOR_SOURCE_TYPES: tuple[str, ...] = ("google_news", "bing_news")
# Where the clustering engine sees an item come from: a site of its own, or an aggregator.
FEED_KINDS: tuple[str, ...] = ("site", *AGGREGATOR_SOURCE_TYPES)
ITEM_KINDS: tuple[str, ...] = ("article", "comment")
Level = Literal["duplicate", "story", "thread"]
LEVELS: tuple[str, ...] = get_args(Level)  # finest first


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One feed entry as the parser read it: links absolute, dates UTC, HTML as the feed sent
    it (not sanitised: it is untrusted and only ever read as text, through ``html_to_text``)."""

    guid: str | None
    url: str | None
    title: str
    summary_html: str
    content_html: str
    author: str | None = None
    published_at: datetime | None = None
    updated_at: datetime | None = None
    comments_feed_url: str | None = None  # wfw:commentRss
    publisher: str | None = None  # Google <source>, Bing News:Source
    publisher_url: str | None = None
    language: str | None = None
    tags: tuple[str, ...] = ()
    entry_hash: str | None = None  # of the entry's raw bytes (see parser.split_entries)


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed document. ``warning`` is set for bozo feeds whose entries were kept."""

    version: str  # feedparser's version string, e.g. "rss20", "atom10", "rss090"
    title: str
    link: str | None
    self_url: str | None
    language: str | None
    ttl_s: int | None
    generator: str | None
    entries: tuple[ParsedEntry, ...]
    warning: str | None = None
    namespaces: tuple[str, ...] = field(default=())  # declared namespace URIs


@dataclass(frozen=True, slots=True)
class NewItem:
    """A normalised item ready to store. ``guid`` is never empty (falls back to URL/hash)."""

    kind: str  # "article" | "comment"
    guid: str
    url: str | None
    canonical_url: str | None
    title: str
    publisher: str | None
    publisher_url: str | None
    summary: str  # plain text
    text: str  # plain text of the fullest body available
    lang: str | None
    published_at: datetime
    published_at_estimated: bool  # True when the feed gave no date and fetch time was used
    fetched_at: datetime
    content_hash: str  # hex sha256 of normalised title + text
    author: str | None = None
    comments_feed_url: str | None = None
    entry_hash: str | None = None


@dataclass(frozen=True, slots=True)
class FeedRef:
    """The stored feed a document came from, and its source: what ingest files items under."""

    feed_id: int
    url: str
    kind: str  # "main" | "comments"
    source_id: int
    source_name: str
    source_type: str
    article_item_id: int | None  # a comment feed's article
