"""Deduplicated feeds: one Atom entry / JSON Feed item per cluster, linking its best source.

Entry ids are stable for a cluster's whole life (``urn:uuid`` derived from the cluster's id,
level and creation time), and ``updated``/``date_modified`` move when the cluster grows, so
feed readers show a story once and mark it changed when a new outlet joins. Everything from
feeds is untrusted: text is cleaned of control characters, only http(s) URLs become links,
and the entry HTML comes from an autoescaped template (:mod:`.render`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode
from xml.etree import ElementTree as ET

from . import __version__
from .render import clean_text, render_template, safe_link
from .stories import Story

ATOM_NS = "http://www.w3.org/2005/Atom"
JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"
FORMATS = ("atom", "jsonfeed")
CONTENT_TYPES = {
    "atom": "application/atom+xml; charset=utf-8",
    "jsonfeed": "application/feed+json; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class FeedMeta:
    level: str
    generated_at: datetime
    title: str | None = None
    base_url: str | None = None  # the web listener's public URL: cluster pages, home link
    self_url: str | None = None  # where this document is served, if it is

    @property
    def feed_title(self) -> str:
        return self.title or f"newsdedup: {self.level} clusters"


def entry_id(story: Story) -> str:
    """Stable for the cluster's life; unique across installations in practice."""
    key = f"newsdedup:{story.level}:{story.entry.cluster_id}:{_rfc3339(story.created_at)}"
    return uuid.uuid5(uuid.NAMESPACE_URL, key).urn


PATHS = {"atom": "/feed.atom", "jsonfeed": "/feed.json"}


def served_url(
    base_url: str | None, fmt: str, level: str = "story", since: str | None = None
) -> str | None:
    """Where the web listener serves this feed (Atom ``rel="self"``, JSON Feed
    ``feed_url``): ``http.base_url`` plus the path and the query that select the same
    clusters; None without a base URL (both need an absolute URL)."""
    if not base_url or not safe_link(base_url):
        return None
    params = {k: v for k, v in (("level", level), ("since", since)) if v and v != "story"}
    query = "?" + urlencode(params) if params else ""
    return f"{base_url.rstrip('/')}{PATHS[fmt]}{query}"


def feed_id(meta: FeedMeta) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"newsdedup:feed:{meta.level}:{meta.base_url}").urn


def cluster_page(meta: FeedMeta, story: Story) -> str | None:
    return (
        f"{meta.base_url.rstrip('/')}/cluster/{story.entry.cluster_id}" if meta.base_url else None
    )


def render_export(fmt: str, stories: Sequence[Story], meta: FeedMeta) -> bytes:
    if fmt == "atom":
        return atom(stories, meta)
    if fmt == "jsonfeed":
        return json_feed(stories, meta)
    raise ValueError(f"unknown export format {fmt!r} (expected one of {', '.join(FORMATS)})")


def _rfc3339(at: datetime) -> str:
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(value: str | None) -> str:
    return str(clean_text(value or "")).strip()


def _content_html(story: Story, meta: FeedMeta) -> str:
    return render_template(
        "feed_entry.html.j2", story=story, page_url=cluster_page(meta, story)
    ).strip()


def _content_text(story: Story) -> str:
    e = story.entry
    lines = [_text(e.summary)] if e.summary else []
    lines.append(
        _text(e.publisher)
        + (f", covered by {len(e.outlets) + 1} outlets" if e.outlets else "")
        + "."
    )
    lines += [f"- {_text(o.name)}: {_text(o.title)}" for o in e.outlets]
    return "\n".join(lines)


# ---------------------------------------------------------------- Atom (RFC 4287)


def atom(stories: Sequence[Story], meta: FeedMeta) -> bytes:
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", feed_id(meta))
    sub(feed, "title", _text(meta.feed_title))
    updated = max((s.updated_at for s in stories), default=meta.generated_at)
    sub(feed, "updated", _rfc3339(updated))
    author = sub(feed, "author")
    sub(author, "name", "newsdedup")
    sub(feed, "generator", "newsdedup", version=__version__)
    if meta.self_url:
        sub(feed, "link", rel="self", type="application/atom+xml", href=meta.self_url)
    if meta.base_url and safe_link(meta.base_url):
        sub(feed, "link", rel="alternate", type="text/html", href=meta.base_url)
    for story in stories:
        e = story.entry
        entry = sub(feed, "entry")
        sub(entry, "id", entry_id(story))
        sub(entry, "title", _text(e.headline) or "(untitled)")
        sub(entry, "updated", _rfc3339(story.updated_at))
        sub(entry, "published", _rfc3339(e.published_at))
        link = safe_link(e.link)
        if link:
            sub(entry, "link", rel="alternate", type="text/html", href=link)
        page = cluster_page(meta, story)
        if page:
            sub(entry, "link", rel="related", type="text/html", href=page)
        author = sub(entry, "author")
        sub(author, "name", _text(e.publisher) or "unknown")
        for outlet in e.outlets:
            contributor = sub(entry, "contributor")
            sub(contributor, "name", _text(outlet.name) or "unknown")
        sub(entry, "category", term=story.level)
        if e.summary:
            sub(entry, "summary", _text(e.summary), type="text")
        sub(entry, "content", _content_html(story, meta), type="html")
    ET.indent(feed)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"


# ---------------------------------------------------------------- JSON Feed 1.1


def json_feed(stories: Sequence[Story], meta: FeedMeta) -> bytes:
    doc: dict[str, object] = {
        "version": JSONFEED_VERSION,
        "title": _text(meta.feed_title),
        "description": f"One item per {meta.level} cluster, with every outlet that covered it.",
    }
    if meta.base_url and safe_link(meta.base_url):
        doc["home_page_url"] = meta.base_url
    if meta.self_url:
        doc["feed_url"] = meta.self_url
    doc["authors"] = [{"name": "newsdedup"}]
    items = []
    for story in stories:
        e = story.entry
        item: dict[str, object] = {"id": entry_id(story)}
        link = safe_link(e.link)
        if link:
            item["url"] = link
        item["title"] = _text(e.headline) or "(untitled)"
        item["content_html"] = _content_html(story, meta)
        item["content_text"] = _content_text(story)
        if e.summary:
            item["summary"] = _text(e.summary)
        item["date_published"] = _rfc3339(e.published_at)
        item["date_modified"] = _rfc3339(story.updated_at)
        item["authors"] = [{"name": _text(e.publisher) or "unknown"}]
        item["tags"] = [story.level]
        item["_newsdedup"] = {
            "cluster_id": e.cluster_id,
            "level": story.level,
            "size": story.size,
            "thread_id": story.thread_id,
            "outlets": [
                {"name": _text(o.name), "title": _text(o.title), "url": safe_link(o.link)}
                for o in e.outlets
            ],
            "new_comments": e.new_comments,
        }
        items.append(item)
    doc["items"] = items
    return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
