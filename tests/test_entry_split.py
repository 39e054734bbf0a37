"""Known entries are cut out of a document before parsing: the differential test that this
gives feedparser's own result for every entry kept, on every fixture, and that anything not
plainly well-formed RSS 2.0/Atom is parsed whole."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import FEEDS

from aggregator.parser import parse_feed, split_entries, with_entry_hashes

BASE = "https://example.org/feed/"
FIXTURES = sorted(
    p for p in FEEDS.rglob("*") if p.is_file() and p.suffix in (".xml", ".html", ".rss")
)


def feed_fields(feed):  # type: ignore[no-untyped-def]
    return replace(feed, entries=(), warning=None)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(FEEDS)))
def test_cut_documents_parse_to_the_same_entries(path) -> None:  # type: ignore[no-untyped-def]
    body = path.read_bytes()
    entries = split_entries(body)
    try:
        whole = parse_feed(body, url=BASE)
    except Exception:
        assert entries is None  # what feedparser refuses is never split
        return
    if entries is None:
        return  # parsed whole (not plainly well-formed RSS 2.0 / Atom)
    assert len(entries.spans) == len(whole.entries)
    assert len(set(entries.hashes)) == len(set(entries.spans))
    n = len(entries.spans)
    for keep in (list(range(0, n, 2)), list(range(1, n, 2)), [], [n - 1], list(range(n))):
        cut = parse_feed(entries.document(body, keep), url=BASE)
        assert cut.entries == tuple(whole.entries[i] for i in keep)
        assert feed_fields(cut) == feed_fields(whole)
        tagged = with_entry_hashes(cut, [entries.hashes[i] for i in keep])
        assert [e.entry_hash for e in tagged.entries] == [entries.hashes[i] for i in keep]


def test_every_ordinary_rss2_and_atom_fixture_is_split() -> None:
    """The fast path covers the common feeds (Google News, Bing, WordPress, Atom, RSS 2.0
    in ISO-8859-1), not a corner; only RSS 0.90/1.0 (RDF) is parsed whole."""
    ordinary = [p for p in FIXTURES if p.parent == FEEDS]
    whole = sorted(p.name for p in ordinary if split_entries(p.read_bytes()) is None)
    assert len(ordinary) >= 20
    assert all(name.startswith(("rss090-rdf", "rss10-rdf")) for name in whole), whole


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "x">]><rss><channel>'
        b"<item><title>&a;</title></item></channel></rss>",
        b"<rss><channel><item><title>open</title></channel></rss>",  # malformed
        b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
        b' xmlns="http://purl.org/rss/1.0/"><channel/><item><title>t</title></item></rdf:RDF>',
        "\ufeff<rss><channel><item><title>x</title></item></channel></rss>".encode("utf-16"),
        '<?xml version="1.0" encoding="shift_jis"?><rss><channel><item><title>\u65e5'
        "</title></item></channel></rss>".encode("shift_jis"),
        b"<rss><channel><title>no items</title></channel></rss>",
    ],
    ids=["doctype", "malformed", "rdf", "utf16", "multibyte-encoding", "no-entries"],
)
def test_what_is_parsed_whole(body: bytes) -> None:
    assert split_entries(body) is None


def test_nested_and_cdata_lookalikes_are_not_entries() -> None:
    body = (
        b"<rss><channel><title>t</title>"
        b"<item><title>a</title><description><![CDATA[<item>not one</item>]]></description>"
        b"<x:item xmlns:x='urn:x'><item>nested</item></x:item></item>"
        b'<item a="x>y"/>'
        b"</channel></rss>"
    )
    entries = split_entries(body)
    assert entries is not None
    assert [body[s:e] for s, e in entries.spans] == [
        body[body.index(b"<item>") : body.index(b'<item a="')],
        b'<item a="x>y"/>',
    ]
