"""Seconds of CPU per pathological HTML item: html_to_text before (html.parser, frozen in
tests/legacy_html.py) and after (libxml2), and the whole parse of a feed carrying it.

    python benchmarks/html_worst.py [--size BYTES] [--before-timeout S] [--no-before]

Each "before" run is a child process stopped after --before-timeout seconds (some take
hours at 1 MB); a stopped run prints as "> S".
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from aggregator.htmltext import html_to_text  # noqa: E402
from aggregator.parser import parse_feed  # noqa: E402


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


CASES = {
    "repeated <!--": lambda n: _repeat("<!--", n),
    "repeated <![CDATA[": lambda n: _repeat("<![CDATA[", n),
    "<! storm": lambda n: _repeat("<!", n),
    "<? storm": lambda n: _repeat("<?", n),
    "</ storm": lambda n: _repeat("</", n),
    "nested <div> (no text)": lambda n: _repeat("<div>", n),
    "nested <div>x": lambda n: _repeat("<div>x", n),
    "nested <p><b><i><u>x": lambda n: _repeat("<p><b><i><u>x", n),
    "misnested <b><i></b></i>": lambda n: _repeat("<b><i></b></i>x", n),
    "unclosed <script>": lambda n: "<p>a</p><script>" + _repeat("x<p>y</p>", n),
    "unclosed <style>": lambda n: "<p>a</p><style>" + _repeat("x<!--y", n),
    "huge attribute": lambda n: '<p title="' + _repeat("x", n) + '">t</p>',
    "unclosed attribute": lambda n: '<p title="' + _repeat("x", n),
    "&amp; references": lambda n: _repeat("&amp;", n),
    "bad references": lambda n: _repeat("&#xD800;&#99999999999;&bogus;", n),
    "NUL and lone surrogates": lambda n: _repeat("a\x00<p>\ud800b\udfff</p>", n),
    "run of spaces": lambda n: "a\n" + _repeat(" ", n) + "b",
    "lines of empty comments": lambda n: _repeat(">\n<!--", n),
    "lines in elements": lambda n: _repeat("<b>\n</b>", n),
}


def _cpu_s(func, html: str) -> float:
    started = time.process_time()
    func(html)
    return time.process_time() - started


def _before(name: str, size: int, timeout_s: float) -> str:
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--legacy-one", name, "--size", str(size)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return f"> {timeout_s:.0f}"
    return f"{float(done.stdout):.3f}"


def _feed(html: str, *, cdata: bool) -> bytes:
    html = html.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    html = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in html)
    body = "<![CDATA[" + html.replace("]]>", "]]]]><![CDATA[>") + "]]>" if cdata else escape(html)
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>t</title>'
        f"<item><title>x</title><guid>g</guid><content:encoded>{body}</content:encoded></item>"
        "</channel></rss>"
    ).encode()


def _feed_s(html: str, *, cdata: bool) -> float:
    doc = _feed(html, cdata=cdata)
    started = time.process_time()
    (entry,) = parse_feed(doc, url="https://example.org/feed/").entries
    html_to_text(entry.content_html)
    return time.process_time() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1 << 20, help="characters per item")
    ap.add_argument("--before-timeout", type=float, default=30.0)
    ap.add_argument("--no-before", action="store_true")
    ap.add_argument("--legacy-one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.legacy_one:
        from legacy_html import legacy_html_to_text

        print(_cpu_s(legacy_html_to_text, CASES[args.legacy_one](args.size)))
        return
    print(f"CPU seconds per item of {args.size} characters")
    print(f"{'input':28} {'before':>8} {'after':>7} {'feed, escaped':>14} {'feed, CDATA':>12}")
    for name, make in CASES.items():
        html = make(args.size)
        before = "-" if args.no_before else _before(name, args.size, args.before_timeout)
        after = _cpu_s(html_to_text, html)
        escaped, cdata = _feed_s(html, cdata=False), _feed_s(html, cdata=True)
        print(f"{name:28} {before:>8} {after:7.3f} {escaped:14.3f} {cdata:12.3f}", flush=True)
    print("feed: parse_feed (feedparser) of a one-item document carrying it as content:encoded")
    print("(escaped as text, or in a CDATA section), plus html_to_text of the content")


if __name__ == "__main__":
    main()
