"""html_to_text as it was on html.parser (Python 3.11), frozen as the oracle of
test_html_fuzz's differential test and the "before" of benchmarks/html_worst.py. Quadratic
on some input; never used by the aggregator."""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

from aggregator.htmltext import strip_controls

_BLOCK_TAGS = frozenset(
    [
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
    ]
)
_CELL_TAGS = frozenset({"td", "th"})
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "head", "svg"})
_INVISIBLE_RE = re.compile("[\u200b\ufeff\u00ad]")
_TAG_RE = re.compile(r"<[a-zA-Z/!?]")
_CUT_TAG_RE = re.compile(r"<[a-zA-Z/!?][^<>]*$")
_BLANK_LINE_RE = re.compile(r"[ \t\r\f\v]*\n\s*\n\s*")


class _LegacyExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):  # noqa: ARG002
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag in _CELL_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in _SKIP_TAGS:
            if self.skip:
                self.skip -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(_legacy_breaks(data))


def _legacy_breaks(text: str) -> str:
    if "\n" not in text:
        return text
    paragraphs = _BLANK_LINE_RE.split(text.replace("\r\n", "\n"))
    return "\n".join(p.replace("\n", " ") for p in paragraphs)


def _legacy_tidy(text: str) -> str:
    text = unicodedata.normalize("NFC", _INVISIBLE_RE.sub("", strip_controls(text)))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def legacy_html_to_text(html: str | None) -> str:
    """The html.parser converter (its regex fast path read markup exactly as this does)."""
    if not html:
        return ""
    if "&" not in html and not _TAG_RE.search(html):
        return _legacy_tidy(_legacy_breaks(html))
    parser = _LegacyExtractor()
    parser.feed(_CUT_TAG_RE.sub("", html))
    parser.close()
    return _legacy_tidy("".join(parser.parts))
