"""ParsedEntry -> NewItem: canonical URLs, plain text, language, content hash.

Pure functions, no I/O. Everything here runs once per item on the hot path, so
regexes are compiled at import time and the HTML-to-text converter is libxml2's HTML
parser (lxml): C, tolerant of broken markup, and linear on hostile markup.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lxml import etree
from w3lib.url import canonicalize_url

from aggregator.domain import NewItem, ParsedEntry, ParsedFeed

__all__ = [
    "canonical_url",
    "content_hash",
    "detect_language",
    "html_to_text",
    "is_google_news_link",
    "normalise_entry",
    "normalise_feed",
    "strip_controls",
    "strip_publisher_suffix",
    "strip_wordpress_trailer",
    "unwrap_bing",
]

# --------------------------------------------------------------------------- URLs

_GOOGLE_NEWS_HOSTS = frozenset({"news.google.com"})
# Redirect-only paths: the opaque id cannot be decoded offline (since 2024), so such a
# link is never the article's canonical URL.
_GOOGLE_NEWS_PATHS = ("/rss/articles/", "/__i/rss/rd/articles/", "/articles/", "/read/")

_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "hsa_", "at_", "ns_", "wt.", "_hs")
_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "igshid",
        "igsh",
        "twclid",
        "ttclid",
        "li_fat_id",
        "mkt_tok",
        "ocid",
        "cmpid",
        "cmp",
        "ncid",
        "icid",
        "smid",
        "ref",
        "ref_src",
        "ref_url",
        "referrer",
        "_ga",
        "_gl",
        "wt_mc",
        "wt_zmc",
        "wtmc",
        "xtor",
        "spm",
        "sr_share",
        "soc_src",
        "soc_trk",
        "s_cid",
        "guccounter",
        "guce_referrer",
        "guce_referrer_sig",
        "vero_id",
        "oly_enc_id",
        "oly_anon_id",
        "rss",
        "amp",
    }
)
# Hosts prefixes folded onto the bare domain. ``www.`` is folded too: a publisher's
# links appear both with and without it (sjrnews.com vs www.sjrnews.com in the Google
# fixture) and no news site serves different articles under the two names.
_HOST_PREFIXES = ("www.", "m.", "amp.", "mobile.")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_AMP_SEGMENT_RE = re.compile(r"/amp(?=/|$)", re.IGNORECASE)
_AMP_SUFFIX_RE = re.compile(r"\.amp(?=\.html?$|$)", re.IGNORECASE)


def is_google_news_link(url: str | None) -> bool:
    """True for news.google.com article redirect links (never an article's own URL)."""
    if not url:
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    return host in _GOOGLE_NEWS_HOSTS and parts.path.startswith(_GOOGLE_NEWS_PATHS)


def _is_bing_click(parts) -> bool:
    host = (parts.hostname or "").lower()
    return (host == "bing.com" or host.endswith(".bing.com")) and parts.path.lower().endswith(
        "/apiclick.aspx"
    )


def unwrap_bing(url: str) -> str:
    """Return the publisher URL inside a Bing ``apiclick.aspx?...&url=<target>`` link.

    Anything else (including a click link without a usable ``url``) is returned unchanged,
    so the caller can apply this to every link.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url
    if not _is_bing_click(parts):
        return url
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() == "url":
            target = value.strip()
            if target.lower().startswith(("http://", "https://")):
                return target
    return url


def _fold_host(host: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _HOST_PREFIXES:
            # keep at least "name.tld"
            if host.startswith(prefix) and host.count(".") >= 2:
                host = host[len(prefix) :]
                changed = True
    return host


def _is_tracking(key: str, value: str) -> bool:
    k = key.lower()
    if k in _TRACKING_PARAMS or k.startswith(_TRACKING_PREFIXES):
        return True
    return k == "outputtype" and value.lower() == "amp"


def canonical_url(url: str | None) -> str | None:
    """The URL two links to the same article have in common, or None if there is none.

    https over http, lower-case host without ``www.``/``m.``/``amp.``, default port and
    fragment dropped, tracking parameters removed, the rest sorted, AMP paths folded,
    Bing redirects unwrapped. Google News redirect links and non-http(s) strings (e.g.
    ``tag:`` guids) give None: they never identify the article page.
    """
    if not url:
        return None
    url = unwrap_bing(url.strip())
    if is_google_news_link(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = _fold_host(parts.hostname.lower().rstrip("."))
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    path = _AMP_SEGMENT_RE.sub("", parts.path)
    path = _AMP_SUFFIX_RE.sub("", path) or "/"
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k, v)
    ]
    rebuilt = urlunsplit(("https", netloc, path, urlencode(query), ""))
    # w3lib: percent-encoding normalisation, dot segments, query sorting.
    return canonicalize_url(rebuilt, keep_fragments=False)


# --------------------------------------------------------------------------- titles


def _squash(text: str) -> str:
    return " ".join(text.split())


# C0/C1 control characters. They never belong in stored text, and PostgreSQL refuses NUL
# in a text column outright (one NUL in a malformed feed used to abort the whole insert).
# The ones str.split() treats as whitespace become a space, the rest vanish; tab, newline
# and carriage return are left to the whitespace handling of each field.
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_MAP = {
    c: (" " if chr(c) in "\x0b\x0c\x1c\x1d\x1e\x1f\x85" else None)
    for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0))
}


def strip_controls(text: str) -> str:
    """``text`` without C0/C1 control characters (tab, newline and CR are kept)."""
    return text.translate(_CONTROL_MAP) if _CONTROL_RE.search(text) else text


def strip_publisher_suffix(title: str, publisher: str | None) -> str:
    """Remove one trailing ``" - Publisher"`` (Google News appends it), or a longer form of
    the publisher's name.

    Only the given publisher is stripped: headlines contain other " - " too, and the
    publisher name itself may contain " | " or " - ".
    """
    title = _squash(title)
    if not publisher:
        return title
    name = _squash(publisher).casefold()
    # Google sometimes names the publisher at more length than its <source> does
    # ("… - ACidade ON São Carlos" from "ACidade ON"): the suffix starts with the name
    cut = title.rfind(" - ")
    while cut > 0:
        if title[cut + 3 :].casefold().startswith(name):
            return title[:cut].rstrip()
        cut = title.rfind(" - ", 0, cut)
    return title


# --------------------------------------------------------------------------- HTML

_BLOCK_TAGS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tr",
        "ul",
    }
)
_CELL_TAGS = frozenset({"td", "th"})
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "head", "svg"})
# zero-width space, BOM, soft hyphen (a regex: str.translate looks up every character of a
# non-ASCII text in a dict, a tenth of a normalisation)
_INVISIBLE_RE = re.compile("[\u200b\ufeff\u00ad]")
_TAG_RE = re.compile(r"<[a-zA-Z/!?]")
# A tag cut off at the end (length caps cut descriptions anywhere): html.parser would emit
# it as text ("<di"), so a fragment of markup would be stored as if it were prose.
_CUT_TAG_RE = re.compile(r"<[a-zA-Z/!?][^<>]*$")


# Starts at a newline: a leading run of spaces would be rescanned from each of its
# positions (quadratic on a long run); spaces before the break are squashed later anyway.
_BLANK_LINE_RE = re.compile(r"\n\s*\n\s*")


def _source_breaks(text: str) -> str:
    """A blank line in the source is a paragraph break; a single newline is a space."""
    if "\n" not in text:
        return text
    paragraphs = _BLANK_LINE_RE.split(text.replace("\r\n", "\n"))
    return "\n".join(p.replace("\n", " ") for p in paragraphs)


def _tidy_lines(text: str) -> str:
    text = unicodedata.normalize("NFC", _INVISIBLE_RE.sub("", strip_controls(text)))
    lines = (_squash(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


# Lone surrogates cannot be encoded (not by lxml, not into a database) and lxml refuses
# the noncharacters U+FFFE/U+FFFF in text: all become U+FFFD.
_UNENCODABLE_RE = re.compile("[\ud800-\udfff\ufffe\uffff]")
# An explicit <head> is skipped; without one, libxml2 still files a leading <title> or
# <meta> under an implied head, and that text is kept as it always was.
_HEAD_TAG_RE = re.compile(r"<head[\s/>]", re.IGNORECASE)


def html_to_text(html: str | None) -> str:
    """Plain text of an HTML fragment: one line per block, entities decoded, NFC.

    script/style/noscript contents are dropped. Text that has no markup and no
    entities skips the parser entirely (titles, snippets). The parser is libxml2's (lxml):
    linear in the input, where html.parser took minutes on a megabyte of ``<!--``.
    """
    if not html:
        return ""
    if _UNENCODABLE_RE.search(html):
        html = _UNENCODABLE_RE.sub("\ufffd", html)
    if "&" not in html and not _TAG_RE.search(html):
        return _tidy_lines(_source_breaks(html))
    # as html.parser read it: CRLF a newline, a lone CR a space (HTML5 makes it a newline)
    html = strip_controls(_CUT_TAG_RE.sub("", html)).replace("\r\n", "\n").replace("\r", " ")
    try:
        text = _tree_text(html)
    except ValueError:  # lxml refusing a string: guarded against above, never seen
        text = None
    if text is None:
        text = _stripped_text(html)
    return _tidy_lines(_UNENCODABLE_RE.sub("\ufffd", text))  # "&#xFFFE;" decoded


def _tree_text(html: str) -> str | None:
    """Text of ``html`` parsed into a tree; None when libxml2 gave up part way (nesting
    deeper than it builds), so that nothing is lost silently."""
    parser = etree.HTMLParser(huge_tree=True, no_network=True)
    root = etree.fromstring(html, parser)
    if any(error.level == _FATAL for error in parser.error_log):
        return None
    if root is None:  # nothing but comments or whitespace
        return ""
    # HTML5 reads these elements' content as text, html.parser read it as markup; tags in
    # it are not prose
    for node in root.iter(*_RAW_TEXT_TAGS, *_RCDATA_TAGS):
        if node.text and ("<" in node.text or "&" in node.text):
            text = _markup_text(node.text)
            node.text = _xml_safe(unescape(text) if node.tag in _RAW_TEXT_TAGS else text)
    # Source newlines first, one text node at a time as html.parser's data chunks were
    # (a newline on each side of a tag is no blank line); every newline left after that,
    # and every one added for a block, is a line break.
    for node in _newline_texts()(root):
        owner = node.getparent()
        if node.is_tail:
            owner.tail = _source_breaks(owner.tail)
        else:
            owner.text = _source_breaks(owner.text)
    for node in root.iter(*_BLOCK_TAGS):
        node.text = "\n" + (node.text or "")
        node.tail = "\n" + (node.tail or "")
    for node in root.iter(*_CELL_TAGS):
        node.text = " " + (node.text or "")
    skipped = _SKIP_TAGS if _HEAD_TAG_RE.search(html) else _SKIP_TAGS - {"head"}
    etree.strip_elements(
        root, *skipped, etree.Comment, etree.ProcessingInstruction, with_tail=False
    )
    return etree.tostring(root, method="text", encoding=str)


_FATAL = etree.ErrorLevels.FATAL
_per_thread = threading.local()


def _newline_texts() -> etree.XPath:
    """The compiled query for text nodes holding a newline, one per thread (lxml's XPath
    objects are not to be shared between threads)."""
    query = getattr(_per_thread, "newline_texts", None)
    if query is None:
        query = _per_thread.newline_texts = etree.XPath("//text()[contains(., '\n')]")
    return query


_RAW_ELEMENT_RE = re.compile(
    r"<(script|style|noscript|template|svg)\b.*?(?:</\1\s*>|\Z)|<!--.*?(?:-->|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_BLOCK_TAG_RE = re.compile(
    r"</?(?:" + "|".join(sorted(_BLOCK_TAGS)) + r")(?![^\s/>])[^>]*>?", re.IGNORECASE
)
_ANY_TAG_RE = re.compile(r"</?[a-zA-Z][^>]*>?")


# content read as text (entities as written) and as escapable text (entities decoded)
_RAW_TEXT_TAGS = ("iframe", "noembed", "noframes", "plaintext", "xmp")
_RCDATA_TAGS = ("textarea", "title")


def _markup_text(html: str) -> str:
    """``html`` without skipped elements, comments and tags; each block tag a blank line
    (``_source_breaks`` makes it a line break). Each pattern either matches at most once
    from a position or runs to the end, so this is linear."""
    return _ANY_TAG_RE.sub("", _BLOCK_TAG_RE.sub("\n\n", _RAW_ELEMENT_RE.sub("", html)))


def _xml_safe(text: str) -> str:
    return _UNENCODABLE_RE.sub("\ufffd", strip_controls(text))


def _stripped_text(html: str) -> str:
    """The text of markup too deeply nested for a tree (entities decoded)."""
    return unescape(_source_breaks(_markup_text(html)))


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
    text = _WP_TRAILER_RE.sub("", text)
    return _TEASER_END_RE.sub("", text).rstrip()


# --------------------------------------------------------------------------- language

_WORD_RE = re.compile(r"[^\W\d_]+")
# Words frequent in one language and rare in the other. Ambiguous ones ("in", "an",
# "was", "will", "so", "de") are left out on purpose.
_DE_WORDS = frozenset(
    [
        "der",
        "die",
        "das",
        "und",
        "ist",
        "nicht",
        "mit",
        "sich",
        "auf",
        "für",
        "den",
        "dem",
        "des",
        "ein",
        "eine",
        "einen",
        "einem",
        "einer",
        "zu",
        "von",
        "im",
        "auch",
        "wird",
        "werden",
        "wurde",
        "sind",
        "nach",
        "bei",
        "aus",
        "noch",
        "wie",
        "über",
        "oder",
        "aber",
        "hat",
        "haben",
        "vor",
        "zum",
        "zur",
        "sie",
        "er",
        "wir",
        "ich",
        "dass",
        "nur",
        "durch",
        "kann",
        "beim",
        "seit",
        "bis",
        "gegen",
        "unter",
        "ohne",
        "mehr",
        "schon",
        "jetzt",
        "soll",
        "sein",
        "seine",
        "ihre",
        "wenn",
        "neue",
        "neuen",
    ]
)
_EN_WORDS = frozenset(
    [
        "the",
        "and",
        "of",
        "to",
        "is",
        "that",
        "for",
        "with",
        "on",
        "are",
        "it",
        "this",
        "by",
        "from",
        "at",
        "be",
        "have",
        "has",
        "as",
        "not",
        "were",
        "which",
        "their",
        "its",
        "been",
        "after",
        "who",
        "would",
        "said",
        "they",
        "about",
        "more",
        "than",
        "into",
        "over",
        "new",
        "what",
        "when",
        "how",
        "you",
        "your",
        "we",
        "our",
        "he",
        "she",
        "his",
        "her",
        "can",
        "could",
        "should",
        "there",
        "these",
        "those",
    ]
)
_LANG_SAMPLE_CHARS = 4000


def detect_language(text: str | None, hint: str | None = None) -> str | None:
    """ISO 639-1 code: the feed/entry hint if any ("de-DE" -> "de"), else de/en by stop
    words, else None (unsure beats wrong: the dedup stage falls back to no stemming)."""
    if hint:
        primary = hint.strip().replace("_", "-").split("-", 1)[0].lower()
        if 2 <= len(primary) <= 3 and primary.isalpha():
            return primary
    if not text:
        return None
    words = _WORD_RE.findall(text[:_LANG_SAMPLE_CHARS].lower())
    if not words:
        return None
    de = sum(1 for w in words if w in _DE_WORDS)
    en = sum(1 for w in words if w in _EN_WORDS)
    best, lang, other = (de, "de", en) if de >= en else (en, "en", de)
    if best >= 2 and best >= 3 * other and best >= 0.1 * len(words):
        return lang
    return None


# --------------------------------------------------------------------------- items


def content_hash(title: str, text: str) -> str:
    """sha256 hex of case-folded, whitespace-normalised title + text (exact-dup key)."""
    norm = _squash(unicodedata.normalize("NFC", f"{title}\n{text}").casefold())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _clean_title(title: str) -> str:
    title = strip_controls(title)
    if "&" in title or _TAG_RE.search(title):
        title = html_to_text(title)
    return _squash(title)


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
    """Apply the per-source-type rules (see DESIGN.md) to one parsed entry."""
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
