"""Sources as OPML: read a subscription list into ``sources``/``feeds``, write them back out.

OPML is how feed readers exchange subscription lists, so the file is foreign input: it is
screened like a feed (no DOCTYPE, hence no entities: defusedxml refuses them), only http(s) feeds are taken, and each
feed is typed from its URL so Google News, Bing News and WordPress feeds get their own rules.
Our own exports carry the exact type in a namespaced ``newsdedup:type`` attribute, which
wins over the guess, so export -> import is lossless for name, URL and type.

Imported sources get ``origin='opml'``: ``repo.sync_sources`` leaves them alone, and a
config source of the same name takes the row over.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qs, urlsplit, urlunsplit

import defusedxml.ElementTree as defused
from defusedxml import DefusedXmlException
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .domain import SOURCE_TYPES
from .errors import InputError
from .store.models import Feed, Source

__all__ = [
    "NS",
    "TYPES",
    "ImportOutcome",
    "ImportReport",
    "OpmlDocument",
    "OpmlFeed",
    "SkippedOutline",
    "detect_type",
    "export_sources",
    "import_feeds",
    "read_opml",
    "render_opml",
]

NS = "urn:newsdedup:opml"  # our attributes' namespace; OPML 2.0 wants extensions namespaced
TYPES = SOURCE_TYPES
MAX_BYTES = 10 * 1024 * 1024  # a subscription list, not a data dump
_NAME_MAX = 200  # Source.name
_SUFFIX_ROOM = 10  # room for "-N" when a name is taken
_WP_FEED_PATHS = ("/feed", "/feed/rss2", "/feed/rss", "/feed/rdf", "/feed/atom")
_WP_FEED_QUERY = {"rss2", "rss", "rdf", "atom", "comments-rss2"}
_WS_RE = re.compile(r"\s")

ET.register_namespace("newsdedup", NS)


@dataclass(frozen=True)
class OpmlFeed:
    """One feed outline, typed; also the shape ``export_sources`` hands to ``render_opml``."""

    name: str
    url: str
    type: str
    html_url: str | None = None


@dataclass(frozen=True)
class SkippedOutline:
    """An outline with an ``xmlUrl`` we will not poll, and why (reported, never silent)."""

    name: str
    url: str
    reason: str


@dataclass(frozen=True)
class OpmlDocument:
    title: str | None
    feeds: tuple[OpmlFeed, ...]
    skipped: tuple[SkippedOutline, ...]


@dataclass(frozen=True)
class ImportOutcome:
    """What became of one feed: ``added`` under ``name``, or ``present`` as source ``name``."""

    feed: OpmlFeed
    action: str  # 'added' | 'present'
    name: str

    @property
    def renamed(self) -> bool:
        return self.action == "added" and self.name != self.feed.name


@dataclass(frozen=True)
class ImportReport:
    outcomes: tuple[ImportOutcome, ...]

    @property
    def added(self) -> list[ImportOutcome]:
        return [o for o in self.outcomes if o.action == "added"]

    @property
    def present(self) -> list[ImportOutcome]:
        return [o for o in self.outcomes if o.action == "present"]

    @property
    def renamed(self) -> list[ImportOutcome]:
        return [o for o in self.outcomes if o.renamed]


# ---------------------------------------------------------------- typing


def detect_type(url: str, opml_type_attr: str | None = None) -> str:
    """The config type whose rules fit this feed URL (the OPML ``type`` only tells atom)."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:  # e.g. a broken IPv6 literal: nothing to go on
        return "atom" if (opml_type_attr or "").strip().lower() == "atom" else "rss"
    path = parts.path.lower()
    query = {k.lower(): {v.lower() for v in vs} for k, vs in parse_qs(parts.query).items()}
    if host == "news.google.com" and (path == "/rss" or path.startswith("/rss/")):
        return "google_news"
    if (
        (host == "bing.com" or host.endswith(".bing.com"))
        and path.rstrip("/") == "/news/search"
        and "rss" in query.get("format", set())
    ):
        return "bing_news"
    if path.rstrip("/").endswith(_WP_FEED_PATHS) or query.get("feed", set()) & _WP_FEED_QUERY:
        return "wordpress"
    if (opml_type_attr or "").strip().lower() == "atom" or "atom" in path:
        return "atom"
    return "rss"


# ---------------------------------------------------------------- reading


def read_opml(data: bytes) -> OpmlDocument:
    """Parse and screen an OPML document: its feeds, nested category outlines included, in
    document order, and the outlines skipped. Raises :class:`InputError` with one line.

    Any DOCTYPE is refused (defusedxml's ``forbid_dtd``): OPML has no DTD, and a DTD's
    entities could read files or expand without bound. expat stops at the declaration's
    start, so nothing in it is ever expanded."""
    if len(data) > MAX_BYTES:
        raise InputError(f"too large for an OPML file ({len(data)} bytes, limit {MAX_BYTES})")
    try:
        root = defused.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        raise InputError(
            "refused: the file has a DOCTYPE (OPML has no DTD; entity declarations are not "
            "accepted)"
        ) from None
    except ET.ParseError as exc:
        raise InputError(f"not an OPML file: invalid XML ({exc})") from exc
    if root.tag != "opml":
        raise InputError(f"not an OPML file: the root element is <{root.tag}>, not <opml>")
    body = root.find("body")
    if body is None:
        raise InputError("not an OPML file: no <body> element")
    head_title = root.findtext("head/title")
    feeds: list[OpmlFeed] = []
    skipped: list[SkippedOutline] = []
    for outline in body.iter("outline"):  # iterative: deep category nesting costs no stack
        raw_url = _attr(outline, "xmlUrl")
        if raw_url is None:
            continue  # a category (or a plain link): its children are visited anyway
        url = raw_url.strip()
        name = derive_name(outline.get("title")) or derive_name(outline.get("text"))
        reason = _url_problem(url)
        if reason:
            skipped.append(SkippedOutline(name or url, url, reason))
            continue
        exact = (outline.get(f"{{{NS}}}type") or "").strip()
        html_url = (_attr(outline, "htmlUrl") or "").strip() or None
        feeds.append(
            OpmlFeed(
                name=name or urlsplit(url).hostname or url,
                url=url,
                type=exact if exact in TYPES else detect_type(url, outline.get("type")),
                html_url=html_url if html_url and not _url_problem(html_url) else None,
            )
        )
    return OpmlDocument(_clean(head_title) or None, tuple(feeds), tuple(skipped))


def _attr(el: ET.Element, name: str) -> str | None:
    """Attribute by name, case-insensitively (``xmlurl`` is common in hand-made lists)."""
    value = el.get(name)
    if value is not None:
        return value
    lower = name.lower()
    return next((v for k, v in el.attrib.items() if k.lower() == lower), None)


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


_SEPARATORS = "|-–—:·•»«/\\,;~*"


def derive_name(text: str | None) -> str:
    """A source name from a feed's or outline's title: whitespace collapsed and separators
    left at either end dropped ("San Juan Record |" -> "San Juan Record"); may be empty."""
    return _clean(text).strip(_SEPARATORS + " ")


def _url_problem(url: str) -> str | None:
    if not url:
        return "empty xmlUrl"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return f"not an http(s) URL (scheme {parts.scheme or 'missing'!r})"
    if not host or _WS_RE.search(url):
        return "not a valid URL"
    return None


# ---------------------------------------------------------------- writing


def render_opml(
    sources: Iterable[OpmlFeed], *, title: str = "newsdedup sources", now: datetime | None = None
) -> bytes:
    """An OPML 2.0 document (UTF-8). ``type="rss"`` is what readers expect of a feed outline;
    ``newsdedup:type`` keeps our exact type for the way back."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(
        (now or datetime.now(UTC)).astimezone(UTC), True
    )
    body = ET.SubElement(root, "body")
    for src in sources:
        attrs = {"type": "rss", "text": src.name, "title": src.name, "xmlUrl": src.url}
        if src.html_url:
            attrs["htmlUrl"] = src.html_url
        attrs[f"{{{NS}}}type"] = src.type
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# ---------------------------------------------------------------- the store


def export_sources(session: Session) -> list[OpmlFeed]:
    """Every enabled source still wanted: config sources in the config, and OPML imports.

    Sources retired from the config and the disabled ones ``aggregator import`` derives from
    files are left out: they are not subscriptions. ``htmlUrl`` is only known for WordPress,
    whose site is its feed URL without the feed suffix.
    """
    rows = session.scalars(
        select(Source)
        .where(Source.enabled.is_(True), or_(Source.in_config.is_(True), Source.origin == "opml"))
        .order_by(Source.name)
    )
    return [OpmlFeed(s.name, s.url, s.type, _site_url(s.url, s.type)) for s in rows]


def import_feeds(session: Session, feeds: Sequence[OpmlFeed], now: datetime) -> ImportReport:
    """Add each feed as an enabled ``origin='opml'`` source with its main feed, due now.

    A feed whose URL a source already has (as its URL or its main feed's) is reported as
    present and left alone, so importing twice adds nothing. A taken name with a different
    URL gets the first free ``-2``, ``-3``... suffix.
    """
    names_by_id = dict(session.execute(select(Source.id, Source.name)).all())
    by_url: dict[str, str] = {}
    for url, name in session.execute(select(Source.url, Source.name)):
        by_url[_url_key(url)] = name
    for url, source_id in session.execute(
        select(Feed.url, Feed.source_id).where(Feed.kind == "main")
    ):
        by_url.setdefault(_url_key(url), names_by_id[source_id])
    taken = set(names_by_id.values())
    outcomes: list[ImportOutcome] = []
    for feed in feeds:
        key = _url_key(feed.url)
        if key in by_url:
            outcomes.append(ImportOutcome(feed, "present", by_url[key]))
            continue
        name = _free_name(feed.name, taken)
        source = Source(
            name=name,
            type=feed.type,
            url=feed.url,
            comments=False,
            in_config=False,
            enabled=True,
            priority=0,
            created_at=now,
            origin="opml",
        )
        session.add(source)
        session.flush()
        session.add(
            Feed(
                source_id=source.id,
                url=feed.url,
                kind="main",
                next_check_at=now,
                created_at=now,
                enabled=True,
            )
        )
        taken.add(name)
        by_url[key] = name
        outcomes.append(ImportOutcome(feed, "added", name))
    session.flush()
    return ImportReport(tuple(outcomes))


def _url_key(url: str) -> str:
    """Scheme and host are case-insensitive and a fragment is never sent: compare without."""
    try:
        p = urlsplit(url.strip())
        return urlunsplit((p.scheme.lower(), p.netloc.lower(), p.path, p.query, ""))
    except ValueError:
        return url.strip()


def _free_name(base: str, taken: set[str]) -> str:
    base = base[:_NAME_MAX]
    if base not in taken:
        return base
    base = base[: _NAME_MAX - _SUFFIX_ROOM]
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _site_url(url: str, type_: str) -> str | None:
    if type_ != "wordpress":
        return None
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for suffix in sorted(_WP_FEED_PATHS + ("/comments/feed",), key=len, reverse=True):
        if path.lower().endswith(suffix):
            site = path[: -len(suffix)] + "/"
            return urlunsplit((parts.scheme, parts.netloc, site, "", ""))
    return None
