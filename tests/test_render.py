"""Rendering a digest: HTML and text parts, the MIME message, and hostile feed content.

All sample stories and outlets below are invented for these tests.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from email import policy
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO

from aggregator.digest_view import DigestView, Entry, FollowUp, Outlet
from aggregator.render import build_message, render_digest, safe_link

CHROMIUM = Path("/usr/bin/chromium")

END = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 07:00 in Berlin


def _entries() -> tuple[Entry, ...]:
    return (
        Entry(
            cluster_id=11,
            headline="Stadtrat von Lindenau beschließt autofreie Innenstadt ab Frühjahr",
            link="https://lindenauer-bote.example/politik/autofreie-innenstadt?ref=rss&x=1",
            publisher="Lindenauer Bote",
            summary=(
                "Nach monatelanger Debatte hat der Stadtrat mit knapper Mehrheit entschieden: "
                "Ab März dürfen in der Altstadt nur noch Lieferverkehr, Busse und Räder fahren. "
                "Händler fürchten Umsatzeinbußen, der Fahrradclub spricht von einem Durchbruch."
            ),
            published_at=END - timedelta(hours=3, minutes=12),
            outlets=(
                Outlet(
                    name="Kurier am Fluss",
                    link="https://kurier-am-fluss.example/a/123",
                    title="Autofreie Altstadt: Lindenau macht ernst",
                    is_new=False,
                ),
                Outlet(
                    name="Radio Südwelle",
                    link="https://suedwelle.example/news/lindenau",
                    title="Lindenau sperrt Innenstadt für Autos",
                    is_new=True,
                ),
                Outlet(
                    name="Tageblatt Nord",
                    link=None,
                    title="Innenstadt ohne Autos",
                    is_new=False,
                ),
            ),
            new_comments=7,
            follow_up_to=FollowUp(
                title="Lindenau streitet über Verkehrsberuhigung",
                link="https://lindenauer-bote.example/politik/streit-verkehr",
                published_at=END - timedelta(days=9),
            ),
            is_update=True,
        ),
        Entry(
            cluster_id=12,
            headline="Harbourton ferry service resumes after week-long strike",
            link="https://harbourton-gazette.example/ferry-resumes",
            publisher="Harbourton Gazette",
            summary="The first boat left at dawn; the union and the operator agreed on a 4% raise.",
            published_at=END - timedelta(hours=1),
            outlets=(
                Outlet(
                    name="Coastline Daily",
                    link="http://coastline-daily.example/ferry",
                    title="Ferries are back",
                    is_new=False,
                ),
            ),
            new_comments=1,
            follow_up_to=None,
            is_update=False,
        ),
        Entry(
            cluster_id=13,
            headline="Sternwarte Obersee entdeckt ungewöhnlich hellen Kometen",
            link=None,
            publisher="Wissenschaft kompakt",
            summary="",
            published_at=END - timedelta(minutes=30),
            outlets=(),
            new_comments=0,
            follow_up_to=None,
            is_update=False,
        ),
    )


def _view(**changes) -> DigestView:
    base = {
        "name": "morgen",
        "subject": "Nachrichten für Jürgen: 3 Geschichten – 23.11.2026",
        "period_start_at": END - timedelta(days=1),
        "period_end_at": END,
        "timezone": "Europe/Berlin",
        "entries": _entries(),
        "unsubscribe": "https://news.example/unsubscribe?d=morgen",
        "language": "de",
    }
    base.update(changes)
    return DigestView(**base)


def _message(view: DigestView | None = None, **overrides) -> bytes:
    view = view or _view()
    subject, html, text = render_digest(view)
    kwargs = {
        "subject": subject,
        "html": html,
        "text": text,
        "sender": "Nachrichtenübersicht Größe <digest@news.example>",
        "recipients": ["jürgen@example.org".replace("ü", "ue"), "anna@example.org"],
        "message_id": "<digest.morgen.42.1795417200@news.example>",
        "date": END,
        "list_unsubscribe": "https://news.example/unsubscribe?d=morgen",
    }
    kwargs.update(overrides)
    return build_message(view, **kwargs)


class _Collector(HTMLParser):
    """Every start tag with its attributes, and all text content."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Collector:
    p = _Collector()
    p.feed(html)
    p.close()
    return p


def _urls(html: str) -> list[str]:
    return [
        value or ""
        for _tag, attrs in _parse(html).tags
        for name, value in attrs.items()
        if name in ("href", "src", "action", "formaction", "background", "poster", "srcset")
    ]


# ---------------------------------------------------------------- safe_link


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/a?b=1&c=2",
        "http://example.org",
        "HTTPS://Example.org/x#frag",
        "https://example.org/o'brien-wins",
        "https://münchen.example/straße",
    ],
)
def test_safe_link_accepts_http_and_https(url):
    assert safe_link(url) == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "mailto:someone@example.org",
        "ftp://example.org/file",
        "//example.org/protocol-relative",
        "/relative/path",
        "https://",
        "https://user:pw@evil.example/",
        'https://example.org/" onmouseover="alert(1)',
        "https://example.org/<x>",
        "https://exa mple.org/",
        "https://example.org/\\evil",
        "https://[::1/",
    ],
)
def test_safe_link_rejects_everything_else(url):
    assert safe_link(url) is None


# ---------------------------------------------------------------- HTML / text content


def test_all_entries_and_outlets_appear_in_both_parts():
    subject, html, text = render_digest(_view())
    assert subject == "Nachrichten für Jürgen: 3 Geschichten – 23.11.2026"
    visible = " ".join(" ".join(_parse(html).text).split())
    for e in _entries():
        assert e.headline in visible
        assert e.headline in " ".join(text.split())
        assert e.publisher in visible and e.publisher in text
        for o in e.outlets:
            assert o.name in visible and o.name in text
    assert "Also covered by 3 outlets:" in visible
    assert "Also covered by 1 outlet:" in visible
    assert "Also covered by 3 outlets:" in text
    assert "Also covered by 1 outlet:" in text
    assert "7 new comments" in visible and "7 new comments" in text
    assert "1 new comment" in visible and "1 new comments" not in visible
    assert "0 new comment" not in visible and "0 new comment" not in text
    # times in the digest's zone: 06:00 UTC - 3h12 = 02:48 UTC = 03:48 in Berlin
    assert "23. Nov. 2026, 03:48" in visible and "23. Nov. 2026, 03:48" in text
    assert "So. 22. Nov. 2026, 07:00 – Mo. 23. Nov. 2026, 07:00 (Europe/Berlin)" in visible
    assert "So. 22. Nov. 2026, 07:00 – Mo. 23. Nov. 2026, 07:00 (Europe/Berlin)" in text


def test_headline_outlets_and_follow_up_are_linked():
    _, html, _ = render_digest(_view())
    p = _parse(html)
    links = [a.get("href") for tag, a in p.tags if tag == "a"]
    assert "https://lindenauer-bote.example/politik/autofreie-innenstadt?ref=rss&x=1" in links
    assert "https://kurier-am-fluss.example/a/123" in links
    assert "https://suedwelle.example/news/lindenau" in links
    assert "http://coastline-daily.example/ferry" in links
    assert "https://lindenauer-bote.example/politik/streit-verkehr" in links  # follow-up
    assert "https://news.example/unsubscribe?d=morgen" in links
    # the raw HTML escapes & inside attributes
    assert (
        'href="https://lindenauer-bote.example/politik/autofreie-innenstadt?ref=rss&amp;x=1"'
        in (html)
    )
    assert "Follow-up to:" in html
    assert "Lindenau streitet über Verkehrsberuhigung" in html


def test_new_outlets_are_marked():
    _, html, text = render_digest(_view())
    assert html.count("(new)</strong>") == 1
    # the marker follows Radio Südwelle, the only outlet with is_new
    i = html.index("Radio Südwelle")
    assert html.index("(new)") > i
    assert html.index("(new)") < html.index("Tageblatt Nord")
    assert "- Radio Südwelle (new)" in text
    assert "- Kurier am Fluss (new)" not in text and "- Kurier am Fluss\n" in text


def test_update_badge_only_for_updates():
    _, html, text = render_digest(_view())
    assert html.count(">Update</span>") == 1
    assert text.count("[Update]") == 1
    assert "[Update] Stadtrat von Lindenau" in text
    _, html2, text2 = render_digest(_view(entries=_entries()[1:]))
    assert ">Update</span>" not in html2 and "[Update]" not in text2


def test_follow_up_in_text_part():
    _, _, text = render_digest(_view())
    flat = " ".join(text.split())
    assert "Follow-up to: Lindenau streitet über Verkehrsberuhigung (14. Nov. 2026, 07:00)" in flat
    assert "\n      https://lindenauer-bote.example/politik/streit-verkehr\n" in text


def test_text_part_is_wrapped_with_urls_on_their_own_line():
    _, _, text = render_digest(_view())
    assert "&amp;" not in text and "&#" not in text  # not HTML-escaped
    for line in text.splitlines():
        if "://" not in line:
            assert len(line) <= 78, line
    url_lines = [line.strip() for line in text.splitlines() if "://" in line]
    assert url_lines, "expected URL lines"
    for line in url_lines:
        assert " " not in line, f"URL not on its own line: {line!r}"
    assert "https://lindenauer-bote.example/politik/autofreie-innenstadt?ref=rss&x=1" in url_lines
    assert "https://kurier-am-fluss.example/a/123" in url_lines
    assert "Unsubscribe:\nhttps://news.example/unsubscribe?d=morgen\n" in text
    assert "\n-- \n" in text


def test_nothing_new_render():
    view = _view(entries=(), subject="newsdedup morgen: 0 stories", period_start_at=None)
    subject, html, text = render_digest(view)
    assert subject == "newsdedup morgen: 0 stories"
    assert "Nothing new in this period." in html
    assert "Nothing new in this period." in text
    assert "until Mo. 23. Nov. 2026, 07:00 (Europe/Berlin)" in text
    assert "<a " in html  # only the unsubscribe link
    assert [u for u in _urls(html)] == ["https://news.example/unsubscribe?d=morgen"]


def test_html_is_email_safe_document():
    _, html, _ = render_digest(_view())
    p = _parse(html)
    tags = [t for t, _ in p.tags]
    assert html.startswith("<!DOCTYPE html>")
    assert tags.count("style") == 1
    style_block = html[html.index("<style>") : html.index("</style>")]
    assert "@media (prefers-color-scheme: dark)" in style_block
    assert ("meta", {"name": "color-scheme", "content": "light dark"}) in p.tags
    assert any(t == "meta" and a.get("charset") == "utf-8" for t, a in p.tags)
    for forbidden in ("img", "script", "iframe", "link", "object", "embed", "form", "svg"):
        assert forbidden not in tags
    assert "max-width:640px" in html
    assert "table" in tags
    # no external resources of any kind
    assert "url(" not in html and "@import" not in html
    for url in _urls(html):
        assert url.startswith(("https://", "http://"))
    # every card with a background also sets a dark text colour (no white-on-white)
    for _tag, attrs in p.tags:
        style = attrs.get("style") or ""
        if "background-color:#ffffff" in style:
            assert "color:#1d1f23" in style


def test_render_is_deterministic():
    assert render_digest(_view()) == render_digest(_view())
    assert _message() == _message()


def test_unicode_and_hostile_characters_are_cleaned():
    hostile = Entry(
        cluster_id=99,
        headline="Evil\u202eexe.txt headline\x00\x1b[31m with\r\ncontrols",
        link="https://example.org/ok",
        publisher="Pub\ud800lisher",
        summary="line one\nline two\ttabbed",
        published_at=datetime(2026, 11, 23, 5, 0),  # naive: taken as UTC
        outlets=(),
        new_comments=0,
        follow_up_to=None,
        is_update=False,
    )
    subject, html, text = render_digest(_view(entries=(hostile,), subject="Ärger\r\nBcc: x@evil"))
    assert "\r" not in subject and "\n" not in subject
    for part in (html, text):
        for bad in ("\u202e", "\x00", "\x1b", "\ud800"):
            assert bad not in part
    assert "23. Nov. 2026, 06:00" in text  # naive 05:00 treated as UTC, shown in Berlin
    raw = _message(_view(entries=(hostile,)), subject=subject)
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert "Bcc" not in parsed
    assert parsed["Subject"] == "Ärger Bcc: x@evil"


# ---------------------------------------------------------------- untrusted content / XSS


def _hostile_view() -> DigestView:
    entry = Entry(
        cluster_id=1,
        headline="<script>alert(1)</script> Breaking",
        link="javascript:alert(1)",
        publisher='Evil" onmouseover="alert(2)',
        summary='Look <img src=x onerror=alert(3)> here " onmouseover="alert(4)',
        published_at=END,
        outlets=(
            Outlet(
                name="<b onclick=alert(5)>Bold</b>",
                link="data:text/html;base64,PHNjcmlwdD5hbGVydCg2KTwvc2NyaXB0Pg==",
                title='"><script>alert(7)</script>',
                is_new=True,
            ),
            Outlet(
                name="Quoted",
                link='https://ok.example/" onmouseover="alert(8)',
                title="t",
                is_new=False,
            ),
            Outlet(
                name="Fine", link="https://fine.example/x", title='" onmouseover="', is_new=False
            ),
        ),
        new_comments=0,
        follow_up_to=FollowUp(
            title="</a><a href=javascript:alert(9)>x",
            link="  javascript:alert(10)",
            published_at=END,
        ),
        is_update=False,
    )
    return _view(
        entries=(entry,),
        subject="<script>alert(0)</script>",
        name="x",
        unsubscribe="javascript:alert(11)",
    )


def test_hostile_content_never_becomes_live_markup():
    _, html, _ = render_digest(_hostile_view())
    p = _parse(html)
    tags = [t for t, _ in p.tags]
    for forbidden in ("script", "img", "b", "iframe"):
        assert forbidden not in tags
    for _tag, attrs in p.tags:
        for name in attrs:
            assert not name.startswith("on"), f"event handler attribute {name!r}"
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "javascript:" not in " ".join(_urls(html)).lower()
    assert "data:" not in " ".join(_urls(html)).lower()
    # the only links left are the harmless ones
    assert _urls(html) == ["https://fine.example/x"]
    # the text is still shown, escaped
    visible = "".join(p.text)
    assert "<script>alert(1)</script> Breaking" in visible
    assert "<img src=x onerror=alert(3)>" in visible
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(3)&gt;" in html
    assert "Evil&#34; onmouseover=&#34;alert(2)" in html


def test_hostile_content_text_part_has_no_unsafe_urls():
    _, _, text = render_digest(_hostile_view())
    assert "javascript:alert(10)" not in text and "javascript:alert(11)" not in text
    assert "Unsubscribe" not in text  # not an http(s)/mailto URI: no footer line
    assert "Follow-up to: </a><a href=javascript:alert(9)>x" in text  # a title, shown as text
    assert "data:text" not in text
    assert "https://ok.example/" not in text  # a link with a quote is dropped entirely
    assert "https://fine.example/x" in text
    assert "<script>alert(1)</script> Breaking" in text  # plain text: shown verbatim


def test_only_http_links_in_full_message_html():
    raw = _message(_hostile_view(), list_unsubscribe="javascript:alert(1)")
    parsed = email.message_from_bytes(raw, policy=policy.default)
    html = parsed.get_body(("html",)).get_content()
    assert all(u.startswith(("http://", "https://")) for u in _urls(html))
    assert "List-Unsubscribe" not in parsed  # not an http(s)/mailto URI: left out


# ---------------------------------------------------------------- the MIME message


def test_message_structure_and_charsets():
    raw = _message()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    raw.decode("ascii")  # 7-bit clean: quoted-printable bodies, RFC 2047 headers
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    subject, html, text = render_digest(_view())
    assert parts[0].get_content().replace("\r\n", "\n") == text
    assert parts[1].get_content().replace("\r\n", "\n") == html
    assert msg["MIME-Version"] == "1.0"


def test_headers_german_subject_and_display_name_round_trip():
    raw = _message()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in head.lower()  # RFC 2047 encoded words
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Nachrichten für Jürgen: 3 Geschichten – 23.11.2026"
    assert msg["From"].addresses[0].display_name == "Nachrichtenübersicht Größe"
    assert msg["From"].addresses[0].addr_spec == "digest@news.example"
    assert [a.addr_spec for a in msg["To"].addresses] == [
        "juergen@example.org",
        "anna@example.org",
    ]
    assert msg["Message-ID"] == "<digest.morgen.42.1795417200@news.example>"
    assert b"Message-ID: <digest.morgen.42.1795417200@news.example>\r\n" in head
    assert msg["Date"].datetime == END
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Unsubscribe"] == "<https://news.example/unsubscribe?d=morgen>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_list_unsubscribe_variants():
    msg = email.message_from_bytes(_message(list_unsubscribe=None), policy=policy.default)
    assert "List-Unsubscribe" not in msg and "List-Unsubscribe-Post" not in msg
    msg = email.message_from_bytes(
        _message(list_unsubscribe="mailto:leave@news.example?subject=unsubscribe"),
        policy=policy.default,
    )
    assert msg["List-Unsubscribe"] == "<mailto:leave@news.example?subject=unsubscribe>"
    assert "List-Unsubscribe-Post" not in msg
    msg = email.message_from_bytes(
        _message(list_unsubscribe="http://news.example/u"), policy=policy.default
    )
    assert msg["List-Unsubscribe"] == "<http://news.example/u>"
    assert "List-Unsubscribe-Post" not in msg  # RFC 8058 one-click needs https


def test_message_bytes_are_deterministic_and_input_sensitive():
    a, b = _message(), _message()
    assert a == b
    assert _message(message_id="<other@news.example>") != a
    assert _message(date=END + timedelta(seconds=1)) != a
    # the boundary is content-derived, not random
    boundary = email.message_from_bytes(a, policy=policy.default).get_boundary()
    assert boundary.startswith("=_newsdedup_")


def test_empty_digest_message_builds():
    view = _view(entries=(), subject="newsdedup morgen: 0 stories")
    raw = _message(view)
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert "Nothing new" in msg.get_body(("plain",)).get_content()


# ---------------------------------------------------------------- a real browser


def test_html_renders_in_headless_chromium(tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("NEWSDEDUP_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{CHROMIUM} is missing but NEWSDEDUP_REQUIRE_CHROMIUM=1")
        pytest.skip(
            f"{CHROMIUM} not installed (apt-get install chromium); set "
            "NEWSDEDUP_REQUIRE_CHROMIUM=1 to make this a failure"
        )
    _, html, _ = render_digest(_view())
    page = tmp_path / "digest.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "digest.png"
    profile = tmp_path / "profile"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        "--window-size=800,1200",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert shot.exists(), (
        f"chromium wrote no screenshot (exit {proc.returncode}): "
        f"{proc.stderr.decode(errors='replace')[-2000:]}"
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5 * 1024
    out = REPO / "artifacts"
    out.mkdir(exist_ok=True)
    shutil.copyfile(shot, out / "digest.png")
