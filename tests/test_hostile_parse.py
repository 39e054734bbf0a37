"""Every hostile document either parses to a bounded ParsedFeed or raises ParseError:
never another exception, never more than a few seconds, never a local file's content."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import HOSTILE
from sqlalchemy import select

from aggregator import parser as parser_module
from aggregator.config import Config
from aggregator.errors import ParseError
from aggregator.importer import import_file
from aggregator.normaliser import normalise_feed
from aggregator.parser import MAX_TITLE_CHARS, parse_feed, repair_char_refs, split_entries
from aggregator.store.models import Item

BASE = "https://example.org/feed/"
PASSWD_MARKERS = ("root:x:0:0", "/bin/bash", "/usr/sbin/nologin")
# the scripts and handlers of the hostile files (feedparser-*-in-description, crazy-html)
SCRIPT_MARKERS = ("location.href", "onclick", "onload", "executeme", "am_i_javascript")
FETCHED_AT = datetime(2026, 1, 1, tzinfo=UTC)

# file -> ("error", message substring) | ("ok", entry count)
EXPECTED = {
    "defusedxml-billion-laughs.xml": ("error", "refused: entity expansion"),
    "defusedxml-quadratic-blowup.xml": ("error", "refused: entity expansion"),
    "defusedxml-xxe-external-entity.xml": ("error", "refused: external entity"),
    "laminas-xxe-in-atom-title.xml": ("error", "refused: external entity"),
    "feedparser-empty-document.xml": ("error", "not a feed: empty document"),
    "nodefeedparser-html-page-not-a-feed.html": ("error", "not a feed: looks like an HTML page"),
    "wordpress-de-article-html-instead-of-feed.html": ("error", "looks like an HTML page"),
    "derived-bing-news-huge-title.xml": ("ok", 3),
    "derived-google-news-truncated-mid-item.xml": ("ok", 3),
    "feedparser-bogus-encoding-declaration.xml": ("ok", 0),
    "feedparser-crazy-html-atom03.xml": ("ok", 1),
    "feedparser-internal-entity-in-doctype.xml": ("ok", 1),
    "feedparser-invalid-bytes-after-utf8-bom.xml": ("ok", 0),
    "feedparser-linenoise-bytes.xml": ("ok", 1),
    "feedparser-onclick-in-description.xml": ("ok", 1),
    "feedparser-script-in-description.xml": ("ok", 1),
    "feedparser-script-nested-cdata-content-encoded.xml": ("ok", 1),
    "feedparser-truncated-incomplete-cdata.xml": ("ok", 1),
    "feedparser-undeclared-koi8r-encoding.xml": ("ok", 1),
    "feedparser-undeclared-namespace-prefix.xml": ("ok", 0),
    "feedparser-unescaped-ampersands-in-link.xml": ("ok", 1),
    "feedparser-utf16le-with-bom.xml": ("ok", 0),
    "feedparser-xhtml-doctype-before-rss.xml": ("ok", 0),
    "google-news-ja-prettified-whitespace-padded.xml": ("ok", 30),
    "miniflux-invalid-encoding-name-in-prolog.xml": ("ok", 1),
    "miniflux-windows1252-bytes-declared-utf8.xml": ("ok", 0),
    "nodefeedparser-feedburner-duplicate-guids.xml": ("ok", 1),
    "nodefeedparser-unescaped-ampersand-one-bad-item.xml": ("ok", 3),
    "simplepie-whitespace-before-xml-declaration.xml": ("ok", 0),
}


def test_every_hostile_file_has_an_expectation():
    assert sorted(p.name for p in HOSTILE.iterdir()) == sorted(EXPECTED)


def _all_text(feed) -> str:
    parts = [feed.title, feed.link or "", feed.warning or ""]
    for e in feed.entries:
        parts += [e.title, e.summary_html, e.content_html, e.url or "", e.guid or ""]
    return "\n".join(parts)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_file(name):
    body = (HOSTILE / name).read_bytes()
    outcome, detail = EXPECTED[name]
    started = time.process_time()  # our CPU: load from other work cannot fail it
    try:
        feed = parse_feed(body, url=BASE)
    except ParseError as exc:
        elapsed = time.process_time() - started
        assert outcome == "error", f"unexpected ParseError: {exc}"
        assert detail in str(exc)
        assert "\n" not in str(exc)
    else:
        elapsed = time.process_time() - started
        assert outcome == "ok", f"expected ParseError, parsed {len(feed.entries)} entries"
        assert len(feed.entries) == detail
        text = _all_text(feed)
        assert not any(marker in text for marker in PASSWD_MARKERS)
        for entry in feed.entries:
            assert len(entry.title) <= MAX_TITLE_CHARS
        # Feed HTML is read only as text: what is stored holds no script or handler of it.
        for item in normalise_feed(feed, source_type="rss", fetched_at=FETCHED_AT):
            stored = "\n".join((item.title, item.summary, item.text)).lower()
            assert not any(code in stored for code in SCRIPT_MARKERS), stored
    assert elapsed < 5, f"{name} took {elapsed:.2f}s"


def test_internal_entity_is_still_expanded():
    feed = parse_feed(
        (HOSTILE / "feedparser-internal-entity-in-doctype.xml").read_bytes(), url=BASE
    )
    assert feed.entries[0].guid == "tag:example.com,2006-05-04:/blog/"


def test_xhtml_doctype_before_rss_is_tolerated():
    feed = parse_feed((HOSTILE / "feedparser-xhtml-doctype-before-rss.xml").read_bytes(), url=BASE)
    assert feed.title == "found"


def test_huge_title_is_truncated():
    feed = parse_feed((HOSTILE / "derived-bing-news-huge-title.xml").read_bytes(), url=BASE)
    title = feed.entries[0].title
    assert len(title) == MAX_TITLE_CHARS
    assert title.startswith("Künstliche Intelligenz & „Übermut“ – Künstliche")
    assert feed.entries[0].publisher == "Yahoo Finance"


def test_one_bad_item_among_good_ones():
    feed = parse_feed(
        (HOSTILE / "nodefeedparser-unescaped-ampersand-one-bad-item.xml").read_bytes(), url=BASE
    )
    assert [e.title for e in feed.entries] == ["Good Item", "Bad Item", "Item After Error"]
    assert feed.warning and "not well-formed" in feed.warning


def test_scripts_are_gone_from_descriptions():
    feed = parse_feed((HOSTILE / "feedparser-script-in-description.xml").read_bytes(), url=BASE)
    (item,) = normalise_feed(feed, source_type="rss", fetched_at=FETCHED_AT)
    assert item.summary == item.text == "safe description"


def _secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:TOPSECRET-XXE-MARKER")
    return secret


def _xxe_doc(secret: Path, where: str = "title") -> bytes:
    return (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE rss [ <!ENTITY xxe SYSTEM "file://{secret}"> ]>\n'
        '<rss version="2.0"><channel><title>t</title><item>'
        f"<{where}>&xxe;</{where}><link>https://example.com/a</link>"
        "</item></channel></rss>"
    ).encode()


def test_xxe_is_refused(tmp_path):
    with pytest.raises(ParseError, match="external entity"):
        parse_feed(_xxe_doc(_secret_file(tmp_path)), url=BASE)


def test_xxe_in_utf16_is_refused(tmp_path):
    body = _xxe_doc(_secret_file(tmp_path)).decode().replace('"1.0"?', '"1.0" encoding="utf-16"?')
    with pytest.raises(ParseError, match="external entity"):
        parse_feed(body.encode("utf-16"), url=BASE)


@pytest.mark.parametrize(
    "dtd",
    [
        '<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;',
        '<!ENTITY a "&#38;b;">',  # a char ref that becomes an entity reference
        '<!ENTITY a "x"> <!ENTITY b "&a;&a;">',
        '<!ENTITY a "' + "x" * 5000 + '">',
    ],
)
def test_dangerous_dtds_are_refused(dtd):
    body = f'<?xml version="1.0"?><!DOCTYPE rss [ {dtd} ]><rss version="2.0"><channel><title>t</title></channel></rss>'
    with pytest.raises(ParseError, match="refused"):
        parse_feed(body.encode(), url=BASE)


@pytest.mark.parametrize("where", ["title", "description"])
def test_xxe_does_not_leak_even_without_the_prescreen(tmp_path, monkeypatch, where):
    """Defence in depth: feedparser + expat must not resolve the entity on their own."""
    monkeypatch.setattr(parser_module, "_screen_dtd", lambda body: None)
    secret = _secret_file(tmp_path)
    try:
        feed = parse_feed(_xxe_doc(secret, where), url=BASE)
    except ParseError:
        return
    assert "TOPSECRET-XXE-MARKER" not in _all_text(feed)


def test_quadratic_blowup_without_prescreen_is_still_bounded(monkeypatch):
    monkeypatch.setattr(parser_module, "_screen_dtd", lambda body: None)
    body = (HOSTILE / "defusedxml-quadratic-blowup.xml").read_bytes()
    started = time.process_time()
    with pytest.raises(ParseError):
        parse_feed(body, url=BASE)
    assert time.process_time() - started < 5


# ---------------------------------------------------------------- bad character references

BAD_REFS = ["&#xD800;", "&#xDFFF;", "&#x110000;", "&#99999999999;", "&#xFFFE;", "&#1114112;"]


def _document_with_bad_ref(ref: str, *, atom: bool = False) -> bytes:
    """Five items; the third has ``ref`` in its title and its description."""
    entries = []
    for n in range(5):
        word = f"bad {ref} word" if n == 2 else "good"
        if atom:
            entries.append(
                f"<entry><id>urn:e{n}</id><title>{word} {n}</title>"
                f"<link href='https://example.org/{n}'/><updated>2026-01-0{n + 1}T00:00:00Z"
                f"</updated><summary>text {word} {n}</summary></entry>"
            )
        else:
            entries.append(
                f"<item><guid>urn:e{n}</guid><title>{word} {n}</title>"
                f"<link>https://example.org/{n}</link>"
                f"<description>text {word} {n}</description></item>"
            )
    if atom:
        return (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>Refs</title><id>urn:f</id>{''.join(entries)}</feed>"
        ).encode()
    return (
        '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel>'
        f"<title>Refs</title><link>https://example.org/</link>{''.join(entries)}"
        "</channel></rss>"
    ).encode("iso-8859-1")


@pytest.mark.parametrize("atom", [False, True], ids=["rss", "atom"])
@pytest.mark.parametrize("ref", BAD_REFS)
def test_a_bad_character_reference_costs_one_character_not_the_feed(ref, atom):
    """feedparser's fallback parser raised on these ("feed parser failed": no item at all)."""
    feed = parse_feed(_document_with_bad_ref(ref, atom=atom), url=BASE)
    assert feed.warning is None  # the document is well-formed once the reference is U+FFFD
    assert [e.title for e in feed.entries] == [
        "good 0",
        "good 1",
        "bad \ufffd word 2",
        "good 3",
        "good 4",
    ]
    assert "bad \ufffd word 2" in feed.entries[2].summary_html


def test_bad_references_are_rewritten_in_place():
    body = b"<a>&#xD800;&#x0000DFFF;&#99999999999;&#1114112;&#x10FFFF;&#8217;&#x41;&#1;</a>"
    repaired = repair_char_refs(body)
    assert len(repaired) == len(body)
    assert repaired == (
        b"<a>&#65533;&#000065533;&#00000065533;&#0065533;&#x10FFFF;&#8217;&#x41;&#1;</a>"
    )
    assert repair_char_refs("&#xD800;".encode("utf-16")) == "&#xD800;".encode("utf-16")


def test_bad_references_keep_the_entries_split_and_hashed():
    """The entry splitter reads the repaired bytes at the same offsets: entries are still cut
    out by hash, and the cut document parses to the items not yet known."""
    body = _document_with_bad_ref("&#x110000;")
    entries = split_entries(body)
    assert entries is not None and len(entries.hashes) == 5
    assert entries.document(body, [2]).count(b"<item>") == 1
    feed = parse_feed(entries.document(body, [2, 4]), url=BASE)
    assert [e.title for e in feed.entries] == ["bad \ufffd word 2", "good 4"]


@pytest.mark.parametrize("ref", ["&#xD800;", "&#99999999999;"])
def test_document_with_a_bad_reference_is_stored_item_by_item(store, tmp_path, ref):
    """Imported through the polling pipeline into the database: every good item is stored,
    the bad one with U+FFFD; a second import finds every entry known by its hash."""
    path = tmp_path / "refs.xml"
    path.write_bytes(_document_with_bad_ref(ref))
    first = import_file(store, Config(), path)
    assert first.error is None and first.items_new == 5
    with store.session() as s:
        rows = s.execute(select(Item.title, Item.text, Item.entry_hash).order_by(Item.guid)).all()
    assert [r.title for r in rows] == ["good 0", "good 1", "bad \ufffd word 2", "good 3", "good 4"]
    assert rows[2].text == "text bad \ufffd word 2"
    assert all(r.entry_hash for r in rows)
    again = import_file(store, Config(), path)
    assert again.error is None and again.items_new == 0 and again.items_seen == 5


def test_an_item_of_hostile_markup_costs_linear_time():
    """Parse and normalise a feed whose one item carries 256 KiB of nested "<div>" and 256 KiB
    of "<!--" (html.parser: about 30 s for the second alone): well under two seconds."""
    hostile = "<div>x" * 43690 + "<!--" * 65536
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>t</title>'
        "<item><title>x</title><guid>g</guid><content:encoded><![CDATA["
        + hostile
        + "]]></content:encoded></item></channel></rss>"
    ).encode()
    started = time.process_time()
    feed = parse_feed(body, url=BASE)
    (item,) = normalise_feed(feed, source_type="rss", fetched_at=FETCHED_AT)
    assert time.process_time() - started < 2.0
    assert item.text == "\n".join(["x"] * 43690)  # then one unclosed comment
