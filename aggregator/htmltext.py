"""HTML to plain text, and the control characters no stored text may hold.

Pure functions, used by the parser (titles and names in feeds), the normaliser (every
item's summary and text) and the dedup stage (bodies). Regexes are compiled at import time
and the converter is libxml2's HTML parser (lxml): C, tolerant of broken markup, and linear
on hostile markup.
"""

from __future__ import annotations

import re
import unicodedata
from html import unescape

from lxml import etree

__all__ = ["has_markup", "html_to_text", "squash", "strip_controls"]


def squash(text: str) -> str:
    """``text`` with every run of whitespace one space, and none at either end."""
    return " ".join(text.split())


# C0/C1 control characters. They never belong in stored text, and PostgreSQL refuses NUL
# in a text column outright (one NUL in a malformed feed would abort the whole insert).
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
# zero-width space, BOM, soft hyphen (a regex: str.translate would look up every character
# of a non-ASCII text in a dict)
_INVISIBLE_RE = re.compile("[\u200b\ufeff\u00ad]")
_TAG_RE = re.compile(r"<[a-zA-Z/!?]")


def has_markup(text: str) -> bool:
    """Whether ``text`` holds a tag or an entity (else it is plain text as it stands)."""
    return "&" in text or _TAG_RE.search(text) is not None


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


# Lone surrogates cannot be encoded (not by lxml, not into a database) and lxml refuses
# the noncharacters U+FFFE/U+FFFF in text: all become U+FFFD.
_UNENCODABLE_RE = re.compile("[\ud800-\udfff\ufffe\uffff]")
# Any character that one of _UNENCODABLE_RE, _CONTROL_RE and _INVISIBLE_RE finds: a search
# of a text costs about the same for one class as for another, and most texts hold none.
_ODD_RE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b\ufeff\ud800-\udfff\ufffe\uffff]"
)


def _tidy_lines(text: str) -> str:
    """``text`` encodable, without control and invisible characters, NFC, with each line
    squashed and no empty line."""
    if _ODD_RE.search(text):
        text = _INVISIBLE_RE.sub("", strip_controls(_UNENCODABLE_RE.sub("\ufffd", text)))
    lines = (squash(line) for line in unicodedata.normalize("NFC", text).split("\n"))
    return "\n".join(line for line in lines if line)


# An explicit <head> is skipped; without one, libxml2 still files a leading <title> or
# <meta> under an implied head, and that text is kept.
_HEAD_TAG_RE = re.compile(r"<head[\s/>]", re.IGNORECASE)


def html_to_text(html: str | None) -> str:
    """Plain text of an HTML fragment: one line per block, entities decoded, NFC.

    script/style/noscript contents are dropped. Text that has no markup and no
    entities skips the parser entirely (titles, snippets). The parser is libxml2's (lxml):
    linear in the input, even on a megabyte of ``<!--``.
    """
    if not html:
        return ""
    odd = _ODD_RE.search(html) is not None
    if odd:
        html = _UNENCODABLE_RE.sub("\ufffd", html)
    if not has_markup(html):
        return _tidy_lines(_source_breaks(html))
    html = _CUT_TAG_RE.sub("", html)
    if odd:
        html = strip_controls(html)
    # as html.parser read it: CRLF a newline, a lone CR a space (HTML5 makes it a newline)
    html = html.replace("\r\n", "\n").replace("\r", " ")
    try:
        text = _tree_text(html)
    except ValueError:  # lxml refusing a string: guarded against above, never seen
        text = None
    if text is None:
        text = _stripped_text(html)
    return _tidy_lines(text)  # _tidy_lines makes a decoded "&#xFFFE;" encodable


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
    # source newlines first; every newline left after that, and every one added for a
    # block, is a line break
    _source_newlines(root)
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


def _source_newlines(root: etree._Element) -> None:
    """:func:`_source_breaks` on each text node holding a newline, one at a time as
    html.parser's data chunks were (a newline on each side of a tag is no blank line).
    Walked, not queried: lxml turns an XPath's result of many text nodes into Python objects
    in quadratic time (8 minutes for a megabyte of ``">\n<!--"``)."""
    for node in root.iter():
        if node.text and isinstance(node.tag, str) and "\n" in node.text:  # a comment's
            node.text = _source_breaks(node.text)  # text is no text node: left as it is
        if node.tail and "\n" in node.tail:
            node.tail = _source_breaks(node.tail)


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
