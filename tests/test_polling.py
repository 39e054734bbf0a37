"""The polling pipeline against a real local HTTP server serving the fixture feeds.

Runs on SQLite and PostgreSQL (the ``store`` fixture). Each test builds its own config.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import FEEDS, HOSTILE
from helpers import make_config, poll, sync
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from werkzeug import Request, Response

from aggregator.parser import parse_feed
from aggregator.store import Store, repo
from aggregator.store.models import Feed, Item, PollLog

TYPES = {
    "google-news": "google_news",
    "bing-news": "bing_news",
    "wordpress": "wordpress",
    "atom": "atom",
}


def fixture_type(path: Path) -> str:
    return next((t for prefix, t in TYPES.items() if path.name.startswith(prefix)), "rss")


def item_count(store: Store, **where: object) -> int:
    with store.session() as s:
        stmt = select(func.count()).select_from(Item)
        for key, value in where.items():
            stmt = stmt.where(getattr(Item, key) == value)
        return s.scalar(stmt) or 0


GOOD_FIXTURES = sorted(FEEDS.glob("*.xml"))


def test_every_fixture_feed_polls_and_repolling_stores_nothing(
    store: Store, httpserver: HTTPServer
) -> None:
    sources = []
    for path in GOOD_FIXTURES:
        httpserver.expect_request(f"/{path.name}").respond_with_data(
            path.read_bytes(), content_type="application/xml"
        )
        sources.append(
            {
                "name": path.stem,
                "type": fixture_type(path),
                "url": httpserver.url_for(f"/{path.name}"),
            }
        )
    cfg = make_config(sources)
    sync(store, cfg)
    outcomes = poll(store, cfg)
    assert len(outcomes) == len(GOOD_FIXTURES)
    bad = [(o.source, o.error) for o in outcomes if o.failed]
    assert bad == []
    by_source = {o.source: o for o in outcomes}
    for path in GOOD_FIXTURES:
        o = by_source[path.stem]
        entries = len(parse_feed(path.read_bytes(), url="http://x/").entries)
        assert o.items_seen == entries, path.name
        assert 0 < o.items_new <= entries, path.name
    total = item_count(store)
    assert total == sum(o.items_new for o in outcomes)

    # Second round: same bodies -> short-circuited before parsing, nothing stored.
    again = poll(store, cfg)
    assert {o.result for o in again} == {"unchanged"}
    assert item_count(store) == total
    with store.session() as s:  # the quiet poll's state and log row, written without the ORM
        feeds = s.scalars(select(Feed)).all()
        assert {(f.last_result, f.lease_owner, f.error_count) for f in feeds} == {
            ("unchanged", None, 0)
        }
        assert all(f.next_check_at > f.last_polled_at for f in feeds)
        logged = s.execute(select(PollLog.result, func.count()).group_by(PollLog.result)).all()
        assert dict(logged) == {"ok": len(feeds), "unchanged": len(feeds)}


def test_conditional_get_gets_304_and_stores_nothing(store: Store, httpserver: HTTPServer) -> None:
    body = (FEEDS / "golem-de-rss2-iso-8859-1.xml").read_bytes()
    seen_headers: list[dict[str, str]] = []

    def handler(request: Request) -> Response:
        seen_headers.append(dict(request.headers))
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(status=304, headers={"ETag": '"v1"'})
        return Response(
            body,
            content_type="application/rss+xml",
            headers={"ETag": '"v1"', "Last-Modified": "Mon, 02 Jan 2017 10:00:00 GMT"},
        )

    httpserver.expect_request("/golem").respond_with_handler(handler)
    cfg = make_config([{"name": "golem", "type": "rss", "url": httpserver.url_for("/golem")}])
    sync(store, cfg)
    first = poll(store, cfg)
    assert first[0].result == "ok" and first[0].items_new == 40
    second = poll(store, cfg)
    assert second[0].result == "not_modified"
    assert seen_headers[1]["If-None-Match"] == '"v1"'
    assert seen_headers[1]["If-Modified-Since"] == "Mon, 02 Jan 2017 10:00:00 GMT"
    assert "newsdedup/" in seen_headers[0]["User-Agent"]
    assert item_count(store) == 40
    with store.session() as s:
        results = [r for (r,) in s.execute(select(PollLog.result).order_by(PollLog.id))]
    assert results == ["ok", "not_modified"]


def test_retry_after_and_backoff_are_recorded(store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/limited").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "3600"}
    )
    httpserver.expect_request("/broken").respond_with_data("oops", status=500)
    cfg = make_config(
        [
            {"name": "limited", "type": "google_news", "url": httpserver.url_for("/limited")},
            {"name": "broken", "type": "rss", "url": httpserver.url_for("/broken")},
        ],
        min_interval="1h",
    )
    sync(store, cfg)
    before = datetime.now(UTC)
    poll(store, cfg)
    with store.session() as s:
        feeds = {f.url.rsplit("/", 1)[1]: f for f in s.scalars(select(Feed))}
        limited, broken = feeds["limited"], feeds["broken"]
        assert limited.error_count == 1 and "429" in (limited.last_error or "")
        assert limited.next_check_at >= before + timedelta(seconds=3600)
        first_gap = broken.next_check_at - before
        assert broken.error_count == 1 and "500" in (broken.last_error or "")
    poll(store, cfg)
    with store.session() as s:
        broken = s.scalars(select(Feed).where(Feed.url.endswith("/broken"))).one()
        assert broken.error_count == 2
        assert broken.next_check_at - datetime.now(UTC) > first_gap  # exponential backoff
        status = {r["source"]: r for r in repo.source_status(s)}
    assert status["broken"]["result"] == "http" and "500" in status["broken"]["last_error"]


def test_gone_disables_the_feed(store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/gone").respond_with_data("", status=410)
    cfg = make_config([{"name": "gone", "type": "rss", "url": httpserver.url_for("/gone")}])
    sync(store, cfg)
    assert poll(store, cfg)[0].result == "gone"
    assert poll(store, cfg) == []  # never polled again
    with store.session() as s:
        row = repo.source_status(s)[0]
    assert row["enabled"] is False and row["disabled_reason"] == "410 Gone"


def test_hostile_feeds_each_fail_alone(store: Store, httpserver: HTTPServer) -> None:
    good = FEEDS / "atom-en-h-online.xml"
    sources = [{"name": "good", "type": "atom", "url": httpserver.url_for("/good")}]
    httpserver.expect_request("/good").respond_with_data(good.read_bytes())
    hostile = sorted(HOSTILE.iterdir())
    for path in hostile:
        httpserver.expect_request(f"/h/{path.name}").respond_with_data(path.read_bytes())
        sources.append(
            {"name": path.name, "type": "rss", "url": httpserver.url_for(f"/h/{path.name}")}
        )
    cfg = make_config(sources)
    sync(store, cfg)
    started = time.monotonic()
    outcomes = {o.source: o for o in poll(store, cfg)}
    assert time.monotonic() - started < 60
    assert outcomes["good"].result == "ok" and outcomes["good"].items_new == 60
    for path in hostile:
        o = outcomes[path.name]
        assert o.result in ("ok", "parse"), (path.name, o)
    with store.session() as s:
        logged = {
            url.rsplit("/", 1)[1]: (result, error, warning)
            for url, result, error, warning in s.execute(
                select(Feed.url, PollLog.result, PollLog.error, PollLog.warning).join(
                    PollLog, PollLog.feed_id == Feed.id
                )
            )
        }
    for name in (
        "defusedxml-xxe-external-entity.xml",
        "defusedxml-billion-laughs.xml",
        "nodefeedparser-html-page-not-a-feed.html",
        "feedparser-empty-document.xml",
    ):
        result, error, _ = logged[name]
        assert result == "parse" and error, name
    # the partial feed keeps its good entries and records the warning
    result, _, warning = logged["nodefeedparser-unescaped-ampersand-one-bad-item.xml"]
    assert result == "ok" and warning
    with store.session() as s:
        passwd = s.scalar(select(func.count()).select_from(Item).where(Item.text.contains("root:")))
    assert passwd == 0


class RawServer:
    """A loopback TCP server that misbehaves at the HTTP level: each connection gets its own
    thread running ``respond(conn)``; ``close()`` stops it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.recv(4096)
            self.respond(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def respond(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


class TrickleServer(RawServer):
    """Sends headers, then one byte every 0.3 s, forever (until stopped)."""

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n\r\n<rss")
        while not self.stop.is_set():
            conn.sendall(b" ")
            time.sleep(0.3)


def test_trickling_server_times_out_and_others_go_on(store: Store, httpserver: HTTPServer) -> None:
    trickle = TrickleServer()
    try:
        httpserver.expect_request("/ok").respond_with_data(
            (FEEDS / "rss10-rdf-en-slashdot.xml").read_bytes()
        )
        cfg = make_config(
            [
                {"name": "trickle", "type": "rss", "url": f"http://127.0.0.1:{trickle.port}/feed"},
                {"name": "ok", "type": "rss", "url": httpserver.url_for("/ok")},
            ],
            total_timeout="2s",
        )
        sync(store, cfg)
        started = time.monotonic()
        outcomes = {o.source: o for o in poll(store, cfg)}
        assert time.monotonic() - started < 10
    finally:
        trickle.close()
    assert outcomes["trickle"].result == "timeout"
    assert outcomes["ok"].result == "ok" and outcomes["ok"].items_new == 15


def test_size_cap_is_recorded(store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/big").respond_with_data(b"<rss>" + b" " * 200_000)
    cfg = make_config(
        [{"name": "big", "type": "rss", "url": httpserver.url_for("/big")}],
        max_response_size="100kB",
    )
    sync(store, cfg)
    o = poll(store, cfg)[0]
    assert o.result == "too_large" and o.error


# Our own small WordPress site: one article with a comment feed (text written for this test).
WP_FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:wfw="http://wellformedweb.org/CommentAPI/">
<channel><title>Testblog</title><link>{base}/</link><language>de-DE</language>
<item><title>Neue Brücke über die Lahn eröffnet</title><link>{base}/neue-bruecke/</link>
<guid isPermaLink="false">{base}/?p=101</guid><pubDate>{date}</pubDate>
<description><![CDATA[Die Stadt hat die Brücke freigegeben [&#8230;]]]></description>
<content:encoded><![CDATA[<p>Nach zwei Jahren Bauzeit ist die neue Fußgängerbrücke offen.</p>]]></content:encoded>
<wfw:commentRss>{base}/neue-bruecke/feed/</wfw:commentRss></item>
</channel></rss>"""

WP_COMMENTS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Kommentare zu: Neue Brücke über die Lahn eröffnet</title>
<link>{base}/neue-bruecke/</link>
<item><title>Von: Anna</title><link>{base}/neue-bruecke/#comment-1</link>
<guid isPermaLink="false">{base}/?p=101#comment-1</guid><pubDate>{date}</pubDate>
<description>Endlich!</description></item>
<item><title>Von: Ben</title><link>{base}/neue-bruecke/#comment-2</link>
<guid isPermaLink="false">{base}/?p=101#comment-2</guid><pubDate>{date}</pubDate>
<description>Endlich!</description></item>
</channel></rss>"""


def test_wordpress_comment_feeds_are_found_polled_and_linked(
    store: Store, httpserver: HTTPServer
) -> None:
    base = httpserver.url_for("").rstrip("/")
    date = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    httpserver.expect_request("/feed/").respond_with_data(WP_FEED.format(base=base, date=date))
    httpserver.expect_request("/neue-bruecke/feed/").respond_with_data(
        WP_COMMENTS.format(base=base, date=date)
    )
    cfg = make_config(
        [
            {
                "name": "blog",
                "type": "wordpress",
                "url": f"{base}/feed/",
                "comments": True,
                "comments_interval": "1s",
            }
        ]
    )
    sync(store, cfg)
    first = poll(store, cfg)
    assert [o.items_new for o in first] == [1]
    with store.session() as s:
        comment_feed = s.scalars(select(Feed).where(Feed.kind == "comments")).one()
        article = s.scalars(select(Item)).one()
        assert comment_feed.url == f"{base}/neue-bruecke/feed/"
        assert comment_feed.article_item_id == article.id
    second = {o.url: o for o in poll(store, cfg)}
    assert second[f"{base}/neue-bruecke/feed/"].items_new == 2  # same text, different guids
    with store.session() as s:
        comments = s.scalars(select(Item).where(Item.kind == "comment")).all()
        assert {c.parent_item_id for c in comments} == {article.id}
        status = repo.source_status(s)[0]
    assert status["items"] == 3 and status["comments"] == 2 and status["comment_feeds"] == 1


def test_old_articles_get_no_comment_feeds(store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed/").respond_with_data(
        (FEEDS / "wordpress-de-global-offensive-news-relative-urls.xml").read_bytes()
    )
    cfg = make_config(
        [
            {
                "name": "go",
                "type": "wordpress",
                "url": httpserver.url_for("/feed/"),
                "comments": True,
                "comments_max_age": "7d",
            }
        ]
    )
    sync(store, cfg)
    assert poll(store, cfg)[0].items_new == 10
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Feed).where(Feed.kind == "comments")) == 0
        # relative links were resolved against the feed URL
        urls = s.scalars(select(Item.url)).all()
    assert all(u.startswith(httpserver.url_for("/")) for u in urls)


def test_due_feeds_only(store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a").respond_with_data(
        (FEEDS / "rss10-rdf-en-slashdot.xml").read_bytes()
    )
    cfg = make_config(
        [{"name": "a", "type": "rss", "url": httpserver.url_for("/a")}], min_interval="10m"
    )
    sync(store, cfg)
    assert len(poll(store, cfg, all_feeds=False)) == 1
    assert poll(store, cfg, all_feeds=False) == []  # not due again for >= 10 minutes
    with store.session() as s:
        nxt = s.scalars(select(Feed.next_check_at)).one()
    assert nxt >= datetime.now(UTC) + timedelta(minutes=9)


@pytest.mark.parametrize("path", GOOD_FIXTURES[:3], ids=lambda p: p.name)
def test_fetch_failure_does_not_advance_validators(
    store: Store, httpserver: HTTPServer, path: Path
) -> None:
    """A failed poll leaves ETag/body hash as they were, so nothing is skipped later."""
    httpserver.expect_ordered_request("/f").respond_with_data(
        path.read_bytes(), headers={"ETag": '"a"'}
    )
    httpserver.expect_ordered_request("/f").respond_with_data("nope", status=503)
    cfg = make_config([{"name": "f", "type": fixture_type(path), "url": httpserver.url_for("/f")}])
    sync(store, cfg)
    poll(store, cfg)
    with store.session() as s:
        before = s.scalars(select(Feed)).one()
        etag, body_hash = before.etag, before.body_hash
    assert poll(store, cfg)[0].result == "http"
    with store.session() as s:
        after = s.scalars(select(Feed)).one()
        assert (after.etag, after.body_hash) == (etag, body_hash)


class ResettingServer(RawServer):
    """Sends half a header, then resets the connection (RST, via SO_LINGER 0)."""

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_connection_reset_fails_alone(store: Store, httpserver: HTTPServer) -> None:
    reset = ResettingServer()
    try:
        httpserver.expect_request("/ok").respond_with_data(
            (FEEDS / "rss10-rdf-en-slashdot.xml").read_bytes()
        )
        cfg = make_config(
            [
                {"name": "reset", "type": "rss", "url": f"http://127.0.0.1:{reset.port}/feed"},
                {"name": "ok", "type": "rss", "url": httpserver.url_for("/ok")},
            ]
        )
        sync(store, cfg)
        outcomes = {o.source: o for o in poll(store, cfg)}
    finally:
        reset.close()
    assert outcomes["reset"].result == "fetch" and outcomes["reset"].error
    assert outcomes["ok"].result == "ok" and outcomes["ok"].items_new == 15


@pytest.mark.parametrize("content_type", ["text/html", "text/plain", "application/octet-stream"])
def test_wrong_content_type_still_parses_a_real_feed(
    store: Store, httpserver: HTTPServer, content_type: str
) -> None:
    httpserver.expect_request("/feed").respond_with_data(
        (FEEDS / "atom-en-h-online.xml").read_bytes(), content_type=content_type
    )
    cfg = make_config([{"name": "f", "type": "atom", "url": httpserver.url_for("/feed")}])
    sync(store, cfg)
    o = poll(store, cfg)[0]
    assert o.result == "ok" and o.items_new == 60


def test_known_entries_are_not_parsed_again_and_the_result_is_the_same(
    store: Store, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Differential: every splittable fixture served first without its last two entries,
    then whole. Polled with known entries cut out before parsing (A) and parsed whole (B),
    the stored items are the same, and A's second poll parsed only the two new entries."""
    from aggregator import ingest, poller
    from aggregator.parser import split_entries

    days: dict[str, list[bytes]] = {}
    for path in GOOD_FIXTURES:
        body = path.read_bytes()
        entries = split_entries(body)
        if entries is None or len(entries.spans) < 4:
            continue
        days[path.name] = [entries.document(body, range(len(entries.spans) - 2)), body]
    assert len(days) >= 12
    day = {"n": 0}
    for name in days:
        httpserver.expect_request(f"/{name}").respond_with_handler(
            lambda req, name=name: Response(days[name][day["n"]], content_type="application/xml")
        )

    parsed: list[int] = []
    real_parse = ingest.parse_feed

    def counting_parse(doc: bytes, **kw: object):  # type: ignore[no-untyped-def]
        feed = real_parse(doc, **kw)  # type: ignore[arg-type]
        parsed.append(len(feed.entries))
        return feed

    monkeypatch.setattr(ingest, "parse_feed", counting_parse)

    def run(prefix: str) -> dict[str, list[tuple]]:
        cfg = make_config(
            [
                {
                    "name": f"{prefix}{name}",
                    "type": fixture_type(FEEDS / name),
                    "url": httpserver.url_for(f"/{name}"),
                }
                for name in days
            ]
        )
        sync(store, cfg)
        seen = []
        for n in (0, 1):
            day["n"] = n
            parsed.clear()
            outcomes = poll(store, cfg)
            assert not [o.error for o in outcomes if o.failed]
            seen.append(
                (
                    sorted(o.items_seen for o in outcomes),
                    sum(parsed),
                    sum(o.items_seen - o.items_new for o in outcomes),  # stored no item
                )
            )
        with store.session() as s:
            rows = s.execute(
                select(Item, Feed.url).join(Feed, Feed.id == Item.feed_id).order_by(Item.id)
            ).all()
        items: dict[str, list[tuple]] = {}
        for item, url in rows:
            items.setdefault(url, []).append(
                (
                    item.guid,
                    item.url,
                    item.canonical_url,
                    item.title,
                    item.publisher,
                    item.summary,
                    item.text,
                    item.lang,
                    None if item.published_at_estimated else item.published_at,
                    item.content_hash,
                    item.kind,
                )
            )
        return items, seen

    fast, fast_seen = run("A-")
    # day 2 parsed only the two new entries per feed, and those of day 1 that stored no item
    # (exact duplicates of another entry): an entry is known by the item it produced
    assert fast_seen[1][1] == 2 * len(days) + fast_seen[0][2]
    assert fast_seen[1][1] < fast_seen[0][1] / 2
    with store.session() as s:
        assert s.scalar(select(func.count()).where(Item.entry_hash.is_(None))) == 0
        s.execute(Item.__table__.delete())  # B starts from an empty store too
    monkeypatch.setattr(poller, "split_entries", lambda body: None)
    whole, whole_seen = run("B-")
    assert whole_seen[1][1] > fast_seen[1][1]  # B parsed every entry again
    assert [s[0] for s in whole_seen] == [s[0] for s in fast_seen]  # same items_seen
    assert whole == fast
