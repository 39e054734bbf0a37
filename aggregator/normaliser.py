"""ParsedEntry -> NewItem: the per-source-type rules, titles, content hash, published time.

Pure functions, no I/O; URLs, text and language come from :mod:`.urls`, :mod:`.htmltext`
and :mod:`.language`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime, timedelta

from aggregator.domain import NewItem, ParsedEntry, ParsedFeed
from aggregator.htmltext import has_markup, html_to_text, squash, strip_controls
from aggregator.language import detect_language
from aggregator.urls import canonical_url, unwrap_bing

__all__ = [
    "content_hash",
    "names_publisher",
    "normalise_entry",
    "normalise_feed",
    "strip_publisher_suffix",
    "strip_wordpress_trailer",
]

# --------------------------------------------------------------------------- titles


def strip_publisher_suffix(title: str, publisher: str | None) -> str:
    """Remove one trailing ``" - Publisher"`` (Google News appends it), or a longer form of
    the publisher's name.

    Only the given publisher is stripped: headlines contain other " - " too, and the
    publisher name itself may contain " | " or " - ".
    """
    title = squash(title)
    if not publisher:
        return title
    name = squash(publisher).casefold()
    if not name:
        return title
    # Google sometimes names the publisher at more length than its <source> does
    # ("… - ACidade ON São Carlos" from "ACidade ON"): the suffix starts with the name
    cut = title.rfind(" - ")
    while cut > 0:
        if names_publisher(title[cut + 3 :], name):
            return title[:cut].rstrip()
        cut = title.rfind(" - ", 0, cut)
    return title


def names_publisher(suffix: str, name: str) -> bool:
    """Whether a title's suffix is the publisher's (case-folded) name, or starts with it as
    whole words ("ACidade ON São Carlos" for "acidade on"; not "Apple shares" for "ap")."""
    suffix = suffix.casefold()
    return suffix.startswith(name) and not suffix[len(name) : len(name) + 1].isalnum()


# WordPress appends "The post X appeared first on Y." (or the German variant) to feed
# descriptions and often shortens the teaser to "... […]".
_WP_TRAILER_RE = re.compile(
    r"(?:\n|^)(?:The post .{1,600}? appeared first on .{1,300}?|"
    r"Der Beitrag .{1,600}? erschien zuerst auf .{1,300}?)\.?\s*$",
    re.DOTALL,
)
_TEASER_END_RE = re.compile(r"\s*\[(?:…|\.\.\.|&hellip;|&#8230;)\]\s*$")


def strip_wordpress_trailer(text: str) -> str:
    """Drop WordPress's "appeared first on" line and a trailing "[…]" teaser marker."""
    # each pattern only where its words are (a search of every line start of the text
    # for nothing cost a fifth of normalising an entry)
    if "appeared first on" in text or "erschien zuerst auf" in text:
        text = _WP_TRAILER_RE.sub("", text)
    text = text.rstrip()
    return _TEASER_END_RE.sub("", text).rstrip() if text.endswith("]") else text


# --------------------------------------------------------------------------- items


def content_hash(title: str, text: str) -> str:
    """sha256 hex of case-folded, whitespace-normalised title + text (exact-dup key)."""
    norm = squash(unicodedata.normalize("NFC", f"{title}\n{text}").casefold())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _clean_title(title: str) -> str:
    title = strip_controls(title)
    if has_markup(title):
        title = html_to_text(title)
    return squash(title)


def _first_paragraph(text: str, limit: int = 500) -> str:
    para = text.split("\n", 1)[0]
    if len(para) <= limit:
        return para
    cut = para[:limit].rsplit(" ", 1)[0]
    return cut + " …"


# How far after the fetch a published time may lie before it is taken for a wrong clock.
FUTURE_SKEW = timedelta(minutes=10)


def normalise_entry(
    entry: ParsedEntry,
    *,
    feed: ParsedFeed,
    source_type: str,
    fetched_at: datetime,
    kind: str = "article",
) -> NewItem:
    """One parsed entry as an item, by its source's type.

    A Google News entry is its headline without the publisher suffix (its description only
    repeats headline and publisher, its link is a redirect: no summary, no canonical URL); a
    Bing News link is unwrapped to the publisher's; every entry's text is its HTML's,
    without WordPress's trailer. Its language is the entry's or feed's, else detected.
    """
    fetched_at = _as_utc(fetched_at)
    # A publisher name is a title too: markup in it is text-ified, not stored.
    publisher = (_clean_title(entry.publisher) or None) if entry.publisher else None
    publisher_url = entry.publisher_url
    url = entry.url
    title = _clean_title(entry.title)

    if source_type == "google_news":
        # The description only repeats title and publisher: no summary, text = title.
        title = strip_publisher_suffix(title, publisher)
        canon = None
        summary = ""
        text = title
    else:
        if source_type == "bing_news" and url:
            url = unwrap_bing(url)
        canon = canonical_url(url)
        summary = strip_wordpress_trailer(html_to_text(entry.summary_html))
        text = (
            strip_wordpress_trailer(html_to_text(entry.content_html)) if entry.content_html else ""
        )
        if not text:
            text = summary
        elif not summary:
            summary = _first_paragraph(text)

    digest = content_hash(title, text)
    guid = (entry.guid or "").strip() or url or f"sha256:{digest}"

    published_at = entry.published_at or entry.updated_at
    published_at = None if published_at is None else _as_utc(published_at)
    # Undated, or dated after the fetch (a wrong clock, a local time labelled UTC): stamped
    # with the fetch time and marked estimated. A date in the future would hold every window
    # of its items open on nothing and sort above the real news.
    estimated = published_at is None or published_at > fetched_at + FUTURE_SKEW
    if estimated:
        published_at = fetched_at

    lang = detect_language(f"{title}\n{text}", entry.language or feed.language)

    return NewItem(
        kind=kind,
        guid=guid,
        url=url,
        canonical_url=canon,
        title=title,
        publisher=publisher,
        publisher_url=publisher_url,
        summary=summary,
        text=text,
        lang=lang,
        published_at=published_at,
        published_at_estimated=estimated,
        fetched_at=fetched_at,
        content_hash=digest,
        author=entry.author,
        comments_feed_url=entry.comments_feed_url,
        entry_hash=entry.entry_hash,
    )


def normalise_feed(
    feed: ParsedFeed,
    *,
    source_type: str,
    fetched_at: datetime,
    kind: str = "article",
) -> list[NewItem]:
    """Normalise every entry; within one document the first item of a guid wins."""
    seen: set[str] = set()
    items: list[NewItem] = []
    for entry in feed.entries:
        item = normalise_entry(
            entry, feed=feed, source_type=source_type, fetched_at=fetched_at, kind=kind
        )
        if item.guid in seen:
            continue
        seen.add(item.guid)
        items.append(item)
    return items
