"""Feed bytes -> ParsedFeed. feedparser is the parser of record, behind ``parse_feed``.

What this layer adds on top of feedparser:

* a DTD pre-screen: external entities, parameter entities, nested or oversized entity
  values are refused before any XML parser sees them (feedparser drops most of them
  itself, but expat still spends ~1 s per 100 KB on a quadratic blowup before giving up);
* character references to surrogates, U+FFFE/U+FFFF or past U+10FFFF become U+FFFD before
  parsing (one of them made feedparser lose every item of the document);
* the body is handed over as a stream, never as ``bytes``: feedparser ``open()``s a
  bytes argument as a *file name* first, so a response body of ``/etc/passwd`` would be
  read from disk;
* "no version detected" is an error (an HTML page is not an empty feed);
* bounded output: entry count and field sizes are capped so a hostile document costs
  bounded memory downstream;
* absolute links/guids, UTC dates, publisher from Google ``<source>`` / Bing
  ``News:Source`` whatever the namespace prefix.

And what it leaves out: feedparser's HTML sanitiser and link rewriting inside HTML. Entry
HTML is passed on as sent; nothing shows it, the normaliser only extracts its text.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urljoin
from xml.parsers import expat

import feedparser

from aggregator.domain import ParsedEntry, ParsedFeed
from aggregator.errors import ParseError
from aggregator.htmltext import html_to_text, strip_controls
from aggregator.urls import is_google_news_link

__all__ = [
    "MAX_BYTES",
    "MAX_ENTRIES",
    "Entries",
    "detect_source_type",
    "parse_feed",
    "repair_char_refs",
    "split_entries",
    "with_entry_hashes",
]

MAX_BYTES = 20 * 1024 * 1024
MAX_ENTRIES = 5000
MAX_TITLE_CHARS = 1000
MAX_SUMMARY_CHARS = 100_000
MAX_CONTENT_CHARS = 1_000_000
MAX_URL_CHARS = 4096
MAX_SHORT_CHARS = 300  # author, publisher, tags, generator, language
MAX_TAGS = 50
MIN_YEAR = 1990

# --------------------------------------------------------------------------- pre-screen

_ROOT_RE = re.compile(rb"<[A-Za-z_]")
_DOCTYPE_RE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_SUBSET_START_RE = re.compile(rb"[^\[>]*\[")
_SUBSET_END_RE = re.compile(rb"\]\s*>")
_ENTITY_RE = re.compile(
    rb"""<!ENTITY\s+(%\s+)?([^\s>]+)\s+(SYSTEM|PUBLIC|"[^"]*"|'[^']*')""", re.IGNORECASE
)
# entity or parameter-entity references, and char refs to "&"/"%" that become references
_ENTITY_REF_RE = re.compile(rb"[&%][A-Za-z_:][\w.:-]*;|&#0*3[78];|&#[xX]0*2[56];")
_MAX_ENTITY_VALUE = 1024
_MAX_ENTITIES = 64
_PROLOG_SCAN = 1024 * 1024


def _decode_head(head: bytes) -> bytes:
    """UTF-16/32 documents hide ``<!ENTITY`` from a byte scan: re-encode them as UTF-8."""
    if b"\x00" not in head[:4]:
        return head
    for bom, codec in ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be")):
        if head.startswith(bom):
            return head.decode(codec, errors="ignore").encode("utf-8")
    codec = "utf-16-be" if head[:1] == b"\x00" or head[:2] == b"\xfe\xff" else "utf-16-le"
    return head.decode(codec, errors="ignore").encode("utf-8")


def _prolog(body: bytes) -> bytes:
    """The DOCTYPE declaration up to the root element (b"" if there is no DOCTYPE)."""
    head = _decode_head(body[:_PROLOG_SCAN])
    doctype = _DOCTYPE_RE.search(head)
    if doctype is None:
        return b""
    end = doctype.end()
    subset = _SUBSET_START_RE.match(head, end)
    if subset:
        close = _SUBSET_END_RE.search(head, subset.end())
        end = close.end() if close else len(head)
    root = _ROOT_RE.search(head, end)
    return head[doctype.start() : root.start() if root else len(head)]


def _screen_dtd(body: bytes) -> None:
    """Refuse DTDs that could read files, hit the network or amplify entities."""
    prolog = _prolog(body)
    if b"ENTITY" not in prolog.upper():
        return
    count = 0
    for match in _ENTITY_RE.finditer(prolog):
        count += 1
        is_param, _name, value = match.groups()
        if value.upper() in (b"SYSTEM", b"PUBLIC"):
            raise ParseError("refused: external entity in DOCTYPE")
        if is_param:
            raise ParseError("refused: parameter entity in DOCTYPE")
        inner = value[1:-1]
        if len(inner) > _MAX_ENTITY_VALUE or _ENTITY_REF_RE.search(inner):
            raise ParseError("refused: entity expansion (nested or oversized entity)")
    if count > _MAX_ENTITIES or count < prolog.upper().count(b"<!ENTITY"):
        # more declarations than we could check: be conservative
        raise ParseError("refused: entity expansion (unparseable entity declarations)")


# --------------------------------------------------------------------------- char refs

# Numeric references that may name a surrogate, a noncharacter or no character at all:
# four or more significant hex digits, five or more decimal ones (possessive: a long run of
# digits is read once, not backtracked through).
_LONG_CHAR_REF_RE = re.compile(rb"&#(?:[xX]0*+([0-9a-fA-F]{4,}+)|0*+([0-9]{5,}+));")
_WIDE_ENCODING = re.compile(rb"^(?:\xff\xfe|\xfe\xff|\x00|.\x00)", re.DOTALL)


def _unencodable(code: int) -> bool:
    return 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF) or code > 0x10FFFF


def _replacement_ref(match: re.Match[bytes]) -> bytes:
    hex_digits, dec_digits = match.groups()
    digits = hex_digits or dec_digits
    ref = match.group(0)
    if len(digits) <= 7 and not _unencodable(int(digits, 16 if hex_digits else 10)):
        return ref
    # U+FFFD in exactly as many bytes (decimal, zero-padded), so entry offsets still hold
    return b"&#" + b"65533".rjust(len(ref) - 3, b"0") + b";"


def repair_char_refs(body: bytes) -> bytes:
    """``body`` with every numeric character reference to a surrogate, U+FFFE/U+FFFF or a
    code point past U+10FFFF (or too long for any) rewritten as U+FFFD, byte for byte the
    same length. One such reference made expat reject the document and feedparser's
    fallback parser crash on it, losing every item. Only ASCII-compatible bytes are
    rewritten (UTF-16/32 and ISO-2022 are left alone); control-character references
    (``&#1;``, too short to rewrite in place) are left to feedparser, which drops them."""
    if b"&#" not in body or _WIDE_ENCODING.match(body) or b"\x1b" in body:
        return body
    return _LONG_CHAR_REF_RE.sub(_replacement_ref, body)


# --------------------------------------------------------------------------- helpers

_HTML_RE = re.compile(rb"<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.IGNORECASE)
_IGNORED_BOZO = frozenset({"NonXMLContentType"})  # about the HTTP header, not the document


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(strip_controls(str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _why_not_a_feed(body: bytes, result) -> str:
    if _HTML_RE.search(body[:4096]):
        return "not a feed: looks like an HTML page"
    if b"<" not in body[:65536] and b"<\x00" not in body[:65536]:
        return "not a feed: no XML markup"
    exc = result.get("bozo_exception")
    if not _ROOT_RE.search(body) or (exc is not None and "no element found" in str(exc)):
        return "not a feed: empty document"
    detail = f" ({_one_line(exc, 150)})" if exc is not None else ""
    return f"not a feed: no RSS, Atom or RDF root element{detail}"


def _text(value: object, limit: int) -> str:
    if not isinstance(value, str):
        return ""
    # controls are stripped here, at the boundary: a NUL must never reach the database
    return strip_controls(value if len(value) <= limit else value[:limit])


def _feed_title(value: object) -> str:
    """The feed's title is its items' publisher name: markup in it becomes text, as in
    item titles (``<title>Feed &lt;b onmouseover=…&gt;</title>`` -> ``Feed``)."""
    title = " ".join(_text(value, MAX_TITLE_CHARS * 2).split())
    if "&" in title or "<" in title:
        title = " ".join(html_to_text(title).split())
    return title[:MAX_TITLE_CHARS]


def _short(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = " ".join(strip_controls(value).split())
    return value[:MAX_SHORT_CHARS] or None


def _absolute(value: object, base: str) -> str | None:
    if not isinstance(value, str):
        return None
    value = strip_controls(value).strip()
    if not value or len(value) > MAX_URL_CHARS:
        return None
    try:
        return urljoin(base, value)
    except ValueError:
        return None


def _guid(value: object, base: str) -> str | None:
    """Guids are opaque, except root-relative ones from static WordPress exports."""
    if not isinstance(value, str):
        return None
    value = strip_controls(value).strip()
    if not value or len(value) > MAX_URL_CHARS:
        return None
    if value.startswith(("/", "?", "./", "../")):
        return _absolute(value, base)
    return value


def _utc(struct: object, max_year: int) -> datetime | None:
    """feedparser's UTC struct_time -> aware datetime; absurd years count as missing."""
    if not isinstance(struct, time.struct_time):
        return None
    if not MIN_YEAR <= struct.tm_year <= max_year:
        return None
    try:
        return datetime(*struct[:5], min(struct.tm_sec, 59), tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def _link(entry) -> str | None:
    link = entry.get("link")
    if isinstance(link, str) and link.strip():
        return link
    for candidate in entry.get("links") or ():
        if candidate.get("rel", "alternate") == "alternate" and candidate.get("href"):
            return candidate["href"]
    return None


def _content(entry) -> str:
    contents = entry.get("content") or ()
    for item in contents:
        if "html" in (item.get("type") or "") and item.get("value"):
            return item["value"]
    for item in contents:
        if item.get("value"):
            return item["value"]
    return ""


# Namespaced keys feedparser builds from prefixes it does not know: "<prefix>_source".
_STANDARD_PREFIXES = frozenset({"dc", "dcterms", "media", "itunes", "content", "atom", "rdf"})


def _publisher_keys(namespaces: dict[str, str]) -> tuple[str, ...]:
    """Entry keys that may hold Bing's News:Source, best first."""
    bing = [f"{p.lower()}_source" for p, uri in namespaces.items() if p and "bing.com" in uri]
    return tuple(dict.fromkeys([*bing, "news_source"]))


def _publisher(entry, keys: tuple[str, ...]) -> tuple[str | None, str | None]:
    source = entry.get("source")
    if isinstance(source, dict) and source.get("title"):
        href = source.get("href") or next(
            (link.get("href") for link in source.get("links") or () if link.get("href")), None
        )
        return _short(source["title"]), href if isinstance(href, str) else None
    for key in keys:
        if isinstance(entry.get(key), str) and entry[key].strip():
            return _short(entry[key]), None
    for key, value in entry.items():
        if (
            key.endswith("_source")
            and key.split("_", 1)[0] not in _STANDARD_PREFIXES
            and isinstance(value, str)
            and value.strip()
        ):
            return _short(value), None
    return None, None


def _tags(entry) -> tuple[str, ...]:
    terms = (_short(tag.get("term")) for tag in (entry.get("tags") or ())[:MAX_TAGS])
    return tuple(dict.fromkeys(t for t in terms if t))


def _ttl_s(value: object) -> int | None:
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes * 60 if 0 < minutes <= 525_600 else None  # at most a year


def _entry(raw, *, base: str, keys: tuple[str, ...], max_year: int) -> ParsedEntry:
    published = _utc(dict.get(raw, "published_parsed"), max_year)
    # dict.get: FeedParserDict would silently (and with a warning) fall back to published.
    updated = _utc(dict.get(raw, "updated_parsed"), max_year)
    publisher, publisher_url = _publisher(raw, keys)
    return ParsedEntry(
        guid=_guid(raw.get("id"), base),
        url=_absolute(_link(raw), base),
        title=" ".join(_text(raw.get("title"), MAX_TITLE_CHARS * 2).split())[:MAX_TITLE_CHARS],
        summary_html=_text(raw.get("summary"), MAX_SUMMARY_CHARS),
        content_html=_text(_content(raw), MAX_CONTENT_CHARS),
        author=_short(raw.get("author")),
        published_at=published or updated,
        updated_at=updated,
        comments_feed_url=_absolute(raw.get("wfw_commentrss"), base),
        publisher=publisher,
        publisher_url=_absolute(publisher_url, base) if publisher_url else None,
        language=_short(raw.get("language")),
        tags=_tags(raw),
    )


# --------------------------------------------------------------------------- API


def parse_feed(
    body: bytes,
    *,
    url: str,
    content_type: str | None = None,
    max_entries: int = MAX_ENTRIES,
    max_bytes: int = MAX_BYTES,
) -> ParsedFeed:
    """Parse one feed document fetched from ``url`` (or read from a file: any non-http
    ``url`` makes the feed's own absolute self/alternate link the base for relative links).

    Raises ParseError for documents that are not feeds (HTML pages, empty or garbage
    documents) and for refused DTDs. Recoverable problems (bozo feeds with a version,
    capped entry counts) keep what was read and set ``warning``.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(f"parse_feed wants bytes, got {type(body).__name__}")
    body = bytes(body)
    if len(body) > max_bytes:
        raise ParseError(f"refused: document too large ({len(body)} bytes > {max_bytes})")
    if not body.strip():
        raise ParseError("not a feed: empty document")
    _screen_dtd(body)
    body = repair_char_refs(body)

    # Relative links resolve against where the document came from. A local file (CLI
    # import) has no usable base: fall back to the feed's own absolute self/alt link.
    web_base = url if url.lower().startswith(("http://", "https://")) else ""
    headers = {"content-type": content_type or "application/xml"}
    if web_base:
        headers["content-location"] = web_base
    try:
        result = feedparser.parse(
            io.BytesIO(body),
            response_headers=headers,
            # Feed HTML is only ever read as text (``html_to_text``, which drops scripts and
            # styles itself); rewriting it first (sanitising, absolutising links inside it)
            # was half of the parse time and changed no item of a real feed.
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # feedparser promises not to raise; a bug is still a bad doc
        raise ParseError(f"feed parser failed: {type(exc).__name__}: {_one_line(exc)}") from exc

    version = result.get("version") or ""
    if not version:
        raise ParseError(_why_not_a_feed(body, result))

    warnings: list[str] = []
    exc = result.get("bozo_exception") if result.get("bozo") else None
    if exc is not None and type(exc).__name__ not in _IGNORED_BOZO:
        warnings.append(f"{type(exc).__name__}: {_one_line(exc)}")

    raw_entries = result.get("entries") or []
    if len(raw_entries) > max_entries:
        warnings.append(f"{len(raw_entries)} entries, kept the first {max_entries}")
        raw_entries = raw_entries[:max_entries]

    meta = result.get("feed") or {}
    self_url = next(
        (
            link.get("href")
            for link in meta.get("links") or ()
            if link.get("rel") == "self" and link.get("href")
        ),
        None,
    )
    base = web_base or next(
        (
            candidate.strip()
            for candidate in (self_url, meta.get("link"))
            if isinstance(candidate, str)
            and candidate.strip().lower().startswith(("http://", "https://"))
        ),
        "",
    )

    namespaces: dict[str, str] = dict(result.get("namespaces") or {})
    keys = _publisher_keys(namespaces)
    max_year = datetime.now(UTC).year + 1
    entries = tuple(_entry(e, base=base, keys=keys, max_year=max_year) for e in raw_entries)

    return ParsedFeed(
        version=version,
        title=_feed_title(meta.get("title")),
        link=_absolute(meta.get("link"), base),
        self_url=_absolute(self_url, base),
        language=_short(meta.get("language")),
        ttl_s=_ttl_s(meta.get("ttl")),
        generator=_short(meta.get("generator")),
        entries=entries,
        warning="; ".join(warnings) or None,
        namespaces=tuple(dict.fromkeys(uri for uri in namespaces.values() if uri)),
    )


@dataclass(frozen=True, slots=True)
class Entries:
    """Where each entry of a well-formed RSS 2.0 or Atom document lies, and a hash of its
    bytes. An entry whose exact bytes already produced an item needs no parsing: cutting
    the known ones out leaves a smaller document of the same feed (channel elements and
    namespace declarations stay) for feedparser, which stays the parser of every entry kept."""

    spans: tuple[tuple[int, int], ...]
    hashes: tuple[str, ...]

    def document(self, body: bytes, keep: Sequence[int]) -> bytes:
        """``body`` with every entry cut out except those at the indexes in ``keep``."""
        kept = set(keep)
        parts, at = [], 0
        for n, (start, end) in enumerate(self.spans):
            parts.append(body[at:start])
            if n in kept:
                parts.append(body[start:end])
            at = end
        parts.append(body[at:])
        return b"".join(parts)


_ENTRY_PARENTS = {("rss", "channel"): "item", ("feed",): "entry"}
_NOT_SPLIT = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # offsets below assume bytes = units


def split_entries(body: bytes) -> Entries | None:
    """The entries of a plainly well-formed RSS 2.0 (``rss/channel/item``) or Atom
    (``feed/entry``) document; None for anything else (a DOCTYPE, UTF-16, an encoding expat
    does not know, malformed XML, another format), which is then parsed whole."""
    if body.startswith(_NOT_SPLIT) or b"<!DOCTYPE" in body.upper():
        return None
    parser = expat.ParserCreate()
    stack: list[str] = []
    spans: list[tuple[int, int]] = []
    start = -1

    def on_start(name: str, _attrs: object) -> None:
        nonlocal start
        if len(stack) <= 2 and _ENTRY_PARENTS.get(tuple(stack)) == name:
            start = parser.CurrentByteIndex
        stack.append(name)

    def on_end(name: str) -> None:
        nonlocal start
        stack.pop()
        if start >= 0 and len(stack) <= 2 and _ENTRY_PARENTS.get(tuple(stack)) == name:
            # at the end tag's "<", or (an empty element) just past it
            at = parser.CurrentByteIndex
            closing = re.match(rb"</" + name.encode() + rb"\s*>", body[at : at + 64])
            end = at + closing.end() if closing else at
            spans.append((start, end))
            start = -1

    parser.StartElementHandler = on_start
    parser.EndElementHandler = on_end
    try:
        parser.Parse(repair_char_refs(body), True)  # the same offsets
    except (expat.ExpatError, ValueError, LookupError):
        return None
    if not spans or any(e <= s for s, e in spans):
        return None
    hashes = tuple(hashlib.blake2b(body[s:e], digest_size=16).hexdigest() for s, e in spans)
    return Entries(tuple(spans), hashes)


def with_entry_hashes(feed: ParsedFeed, hashes: Sequence[str]) -> ParsedFeed:
    """Tag the parsed entries with the hashes of the spans they came from (in order); left
    untagged when the counts differ (a capped or oddly parsed document)."""
    if len(feed.entries) != len(hashes):
        return feed
    entries = tuple(replace(e, entry_hash=h) for e, h in zip(feed.entries, hashes, strict=True))
    return replace(feed, entries=entries)


_WP_GUID_RE = re.compile(r"[?&]p=\d+(?:#|$)")


def detect_source_type(feed: ParsedFeed) -> str:
    """Which per-source rules apply: google_news, bing_news, wordpress, atom or rss."""
    sample = feed.entries[:50]
    if any(is_google_news_link(e.url) for e in sample):
        return "google_news"
    if any("bing.com/news" in ns.lower() for ns in feed.namespaces) or any(
        e.url and "/apiclick.aspx" in e.url.lower() and "bing.com" in e.url.lower() for e in sample
    ):
        return "bing_news"
    if (
        any(e.comments_feed_url for e in sample)
        or any(e.guid and _WP_GUID_RE.search(e.guid) for e in sample)
        or "wordpress.org" in (feed.generator or "").lower()
    ):
        return "wordpress"
    if feed.version.startswith("atom"):
        return "atom"
    return "rss"
