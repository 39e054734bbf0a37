"""html_to_text against hostile markup: the same text as the html.parser converter it
replaced on every real fragment, bounded time on pathological megabytes, never an exception;
and feed dates: never an exception, always UTC or nothing."""

from __future__ import annotations

import copy
import json
import re
import time
import unicodedata
from datetime import UTC
from xml.sax.saxutils import escape

import pytest
from conftest import FEEDS, REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from legacy_html import legacy_html_to_text
from lxml import etree

from aggregator import htmltext
from aggregator.errors import ParseError
from aggregator.htmltext import html_to_text
from aggregator.parser import parse_feed

# ---------------------------------------------------------------- differential

EDGE_CASES = [
    "<P CLASS=lead>Upper</P><BR/>x",
    "<a href='x>y' title=\"q\">link</a> tail",
    "<img src=a.jpg alt=x/>after",
    "<p>&amp;&lt;&gt;&#39;&quot; &notanentity; &amp x &copy y &ampz</p>",
    "<div><svg><text>no</text></svg>yes</div>",
    "<p>a</p >b",
    "</p>stray end",
    "<td>a<th>b",
    "<table><tr><td>1<td>2<tr><td>3</table>",
    "<p data-x=1 hidden>flag</p>\n\nnext para\nsame",
    "<!-- c --><p>x</p>",
    "a\n<!-- x -->\nc",
    "a\n<b>\nc</b>",
    "x&#10;&#10;y<b>z</b>",
    "a\r\rb<p>c\r\n\r\nd",
    "<p>a < b</p>",
    "<![CDATA[x]]>",
    "<script>x</script>",
    "<style>a</style  >b",
    "<p x='1'y='2'>z</p>",
    "</p class=x>",
    "<my-tag>z</my-tag>",
    "<title>t</title>hello",
    "<head><title>h</title></head><p>body",
    "<noscript>n</noscript><template>t</template>ok",
    "<p>a<p>b<li>one<li>two",
    "<textarea>a<b>c</b>&amp;lt;</textarea>",
    "<xmp>a<b>c</b>&amp;</xmp>",
    "<iframe>a<p>c</p>d</iframe>",
    "<noframes><script>s</script>n</noframes>",
    "<?php echo 1 ?>z<!doctype html>y",
    "<pre>a\n\nb</pre>",
    "<div>" * 3000 + "deep <b>text</b> &amp; more<p>para</p><script>x</script>tail",
    "unclosed <p>para <div>div",
]
# Fragments whose text differs from html.parser's, and why that is right.
KNOWN_DIFFERENCES = {
    # html.parser printed "<![CDATA[<script>]]>" (it gave up on the unterminated section
    # and emitted it as text); HTML5, like a browser, reads a bogus comment up to the first
    # ">" and shows "]]>".
    ("feedparser-script-nested-cdata-content-encoded.xml", "<![CDATA[<script></script>]]&gt;"): (
        "]]>"
    ),
}


def _fixture_fragments() -> list[tuple[str, str]]:
    """(where, html) for every HTML-bearing field of every fixture feed and corpus item."""
    fragments = []
    for path in sorted(p for p in FEEDS.rglob("*") if p.is_file() and p.name != "SOURCES.md"):
        try:
            feed = parse_feed(path.read_bytes(), url="https://example.org/feed/")
        except ParseError:
            continue
        fragments.append((path.name, feed.title))
        for entry in feed.entries:
            for html in (entry.title, entry.summary_html, entry.content_html, entry.publisher):
                if html:
                    fragments.append((path.name, html))
    for name in ("dev", "test"):
        with open(REPO / "tests" / "data" / f"{name}.jsonl", encoding="utf-8") as lines:
            for line in lines:
                item = json.loads(line)
                fragments += [(name, item[k]) for k in ("title", "summary", "text") if item.get(k)]
    return fragments


def test_same_text_as_html_parser_on_every_fixture_fragment():
    """Differential: the title, summary and content of every entry of every fixture feed
    (hostile ones too), every feed title, every corpus item's fields, and edge cases give
    html.parser's text, except the listed fragments, which give the listed text."""
    fragments = _fixture_fragments() + [("edge", html) for html in EDGE_CASES]
    differences = {}
    for where, html in fragments:
        new = html_to_text(html)
        if new != legacy_html_to_text(html):
            differences[(where, html)] = new
    assert differences == KNOWN_DIFFERENCES
    assert len(fragments) > 2000


# ---------------------------------------------------------------- pathological input

SIZE = 256 * 1024  # html.parser: ~5 s for this much "<!--", minutes for 1 MB


def _repeat(unit: str, size: int = SIZE) -> str:
    return (unit * (size // len(unit) + 1))[:size]


PATHOLOGICAL = {
    "comment_open": _repeat("<!--"),
    "cdata_open": _repeat("<![CDATA["),
    "declaration_storm": _repeat("<!"),
    "pi_storm": _repeat("<?"),
    "nested_div": _repeat("<div>"),
    "nested_div_text": _repeat("<div>x"),
    "nested_inline": _repeat("<p><b><i><u>x"),
    "misnested": _repeat("<b><i></b></i>x"),
    "unclosed_script": "<p>kept</p><script>" + _repeat("x<p>y</p>"),
    "unclosed_style": "<p>kept</p><style>" + _repeat("x<!--y"),
    "huge_attribute": '<p title="' + _repeat("x") + '">kept</p>',
    "unclosed_attribute": '<p title="' + _repeat("x"),
    "references": _repeat("&amp;"),
    "bad_references": _repeat("&#xD800;&#99999999999;&bogus;"),
    "nul_and_surrogates": _repeat("a\x00<p>\ud800b\udfff</p>"),
    "whitespace_run": "a\n" + _repeat(" ") + "b",
    # many text nodes holding a newline (an XPath over them took 27 s for this much)
    "comment_lines": _repeat(">\n<!--"),
    "element_lines": _repeat("<b>\n</b>"),
    "text_lines": _repeat("a\n<br>"),
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_input_costs_linear_time(name):
    html = PATHOLOGICAL[name]
    started = time.process_time()
    text = html_to_text(html)
    elapsed_s = time.process_time() - started
    assert isinstance(text, str)
    assert not re.search("[\ud800-\udfff\x00\ufffe\uffff]", text)
    assert elapsed_s < 1.0, f"{name}: {elapsed_s:.2f} s for {len(html)} characters"


def test_pathological_input_keeps_the_text_semantics():
    assert html_to_text(PATHOLOGICAL["unclosed_script"]) == "kept"
    assert html_to_text(PATHOLOGICAL["unclosed_style"]) == "kept"
    assert html_to_text(PATHOLOGICAL["huge_attribute"]) == "kept"
    assert html_to_text(PATHOLOGICAL["comment_open"]) == ""
    assert html_to_text(PATHOLOGICAL["references"]) == "&" * -(-SIZE // 5)  # "&amp" too
    # nested deeper than libxml2 builds: no text is lost
    assert html_to_text(PATHOLOGICAL["nested_div_text"]).count("x") == SIZE // 6
    assert html_to_text("a\ud800b<p>c\udfff</p>") == "a\ufffdb\nc\ufffd"
    assert html_to_text("<b>&#xD800;&#1114112;&#65534;\uffff</b>") == "\ufffd" * 4
    assert html_to_text(PATHOLOGICAL["whitespace_run"]) == "a b"


# ---------------------------------------------------------------- property-based

MARKUP = st.lists(
    st.sampled_from(
        ["<", ">", "/", "!", "?", "-", "[", "]", "&", "#", ";", "x", "=", '"', "'", " ", "\n"]
        + ["\r", "\x00", "\ud800", "\ufffe", "p", "div", "script", "style", "CDATA", "amp"]
        + ["<p>", "</p>", "<!--", "-->", "<![CDATA[", "]]>", "<script>", "</script>", "<br>"]
        + ["&#xD800;", "&#x110000;", "&#99999999999;", "&#12;", "<textarea>", "<xmp>", "é"]
    ),
    max_size=100,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), MARKUP))
def test_html_to_text_never_raises(html):
    text = html_to_text(html)
    assert isinstance(text, str)
    assert text == text.strip() and "\n\n" not in text
    assert not re.search("[\ud800-\udfff\x00\ufffe\uffff]", text)


def _source_newlines_by_xpath(root) -> None:  # type: ignore[no-untyped-def]
    """The newline step as it was, by an XPath query of the text nodes (the oracle of the
    test below; quadratic in lxml on many text nodes)."""
    for node in etree.XPath("//text()[contains(., '\n')]")(root):
        owner = node.getparent()
        if node.is_tail:
            owner.tail = htmltext._source_breaks(owner.tail)
        else:
            owner.text = htmltext._source_breaks(owner.text)


NEWLINE_MARKUP = st.lists(
    st.sampled_from(
        ["\n", "\n\n", " \n ", "x", "<p>", "</p>", "<b>", "</b>", "<br>", "<!--", "-->", "<!-->"]
        + ["<?x?>", "<script>", "</script>", "<textarea>", "<title>", "<td>", "&amp;", "<", ">"]
        + ["<![CDATA[", "]]>", "<head>", "<table>", "</div>", "&#10;", "\r\n"]
    ),
    max_size=80,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(NEWLINE_MARKUP, MARKUP))
def test_source_newlines_walk_the_text_nodes_the_xpath_found(html):
    parser = etree.HTMLParser(huge_tree=True, no_network=True)
    root = etree.fromstring(html, parser) if html else None
    if root is None:
        return
    assert _after(htmltext._source_newlines, root) == _after(_source_newlines_by_xpath, root)


def _after(step, root) -> str:  # type: ignore[no-untyped-def]
    """The tree after ``step`` on a copy, or the error it raised (a decoded control
    character lxml refuses to set: html_to_text then strips the markup instead)."""
    tree = copy.deepcopy(root)
    try:
        step(tree)
    except ValueError as exc:
        return f"ValueError: {exc}"
    return etree.tostring(tree, encoding=str)


def test_source_newlines_on_every_fixture_fragment_as_by_xpath():
    parser = etree.HTMLParser(huge_tree=True, no_network=True)
    seen = 0
    for _, html in _fixture_fragments():
        root = etree.fromstring(html, parser) if html.strip() else None
        if root is None:
            continue
        assert _after(htmltext._source_newlines, root) == _after(_source_newlines_by_xpath, root)
        seen += "\n" in etree.tostring(root, method="text", encoding=str)
    assert seen > 100


def _html_to_text_before(html: str) -> str:
    """html_to_text as it was before one search for odd characters replaced three (the
    oracle of the test below)."""
    if not html:
        return ""
    if htmltext._UNENCODABLE_RE.search(html):
        html = htmltext._UNENCODABLE_RE.sub("\ufffd", html)
    if not htmltext.has_markup(html):
        return _tidy_lines_before(htmltext._source_breaks(html))
    html = htmltext.strip_controls(htmltext._CUT_TAG_RE.sub("", html))
    html = html.replace("\r\n", "\n").replace("\r", " ")
    try:
        text = htmltext._tree_text(html)
    except ValueError:
        text = None
    if text is None:
        text = htmltext._stripped_text(html)
    return _tidy_lines_before(htmltext._UNENCODABLE_RE.sub("\ufffd", text))


def _tidy_lines_before(text: str) -> str:
    text = htmltext.strip_controls(text)
    text = unicodedata.normalize("NFC", htmltext._INVISIBLE_RE.sub("", text))
    lines = (htmltext.squash(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


# whitespace of every kind str.split() knows, the characters the tidying drops or replaces,
# and what NFC composes
ODD_TEXT = st.lists(
    st.sampled_from(
        ["a", "Wort", " ", "  ", "\n", "\n\n", " \n ", "\t", "\r", "\r\n", "\x0b", "\x0c"]
        + ["\x1c", "\x1f", "\x85", "\xa0", "\u2028", "\u3000", "\x00", "\x07", "\x9f"]
        + ["\u00ad", "\u200b", "\ufeff", "\ud800", "\udfff", "\ufffe", "\uffff", "e\u0301"]
        + ["<p>", "</p>", "<br>", "<b>", "<td>", "&amp;", "&#0;", "&#11;", "&#133;", "&#xAD;"]
        + ["&#xFFFE;", "&#x200B;", "&#8232;", "<script>", "<!--", "-->", "<di"]
    ),
    max_size=60,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.one_of(ODD_TEXT, MARKUP, st.text(max_size=200)))
def test_html_to_text_as_before_the_single_scans(html):
    assert html_to_text(html) == _html_to_text_before(html)


@settings(max_examples=25, deadline=None)
@given(MARKUP.filter(bool))
def test_html_to_text_is_linear_on_repeated_markup(unit):
    """Any unit repeated to 64 KiB costs a bounded time (html.parser: seconds for some)."""
    html = _repeat(unit, 64 * 1024)
    started = time.process_time()
    html_to_text(html)
    assert time.process_time() - started < 0.5


def _feed_with_date(value: str) -> bytes:
    clean = "".join(c for c in value if c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or c > "\ue000")
    clean = clean.replace("\uffff", "").replace("\ufffe", "")
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        f"<item><title>x</title><guid>g</guid><pubDate>{escape(clean)}</pubDate>"
        f"<dc:date xmlns:dc='http://purl.org/dc/elements/1.1/'>{escape(clean)}</dc:date>"
        "</item></channel></rss>"
    ).encode("utf-8", "surrogatepass")


DATE_ISH = st.lists(
    st.sampled_from(
        list("0123456789-:+TZ ,./") + ["Mon", "Dec", "GMT", "EST", "99999999", "-0000", "W"]
    ),
    max_size=20,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), DATE_ISH))
def test_feed_dates_are_utc_or_nothing(value):
    """Published dates (feedparser's date handlers, then the parser's range check) never
    raise, whatever the string: a UTC datetime or None."""
    feed = parse_feed(_feed_with_date(value), url="https://example.org/feed/")
    (entry,) = feed.entries
    for moment in (entry.published_at, entry.updated_at):
        assert moment is None or moment.tzinfo is UTC


def test_feed_dates_are_read():
    """The fuzz above could pass with every date unread: a good date is read as UTC."""
    feed = parse_feed(_feed_with_date("Mon, 07 Dec 2026 03:00:00 +0100"), url="https://e.org/")
    assert feed.entries[0].published_at.isoformat() == "2026-12-07T02:00:00+00:00"
