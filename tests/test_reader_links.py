"""What a reader clicks is the publisher's own URL: digest (text and HTML), the web pages, Atom
and JSON Feed link the stored URL as the feed gave it (a Bing click link unwrapped), never its
canonical form (https, no ``www.``, no query), which is only a key for matching and breaks
http-only and www-only sites. Both databases; documents imported through the pipeline."""

from __future__ import annotations

import email
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from email import policy
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select

from aggregator.config import Config
from aggregator.dedup.service import DedupService
from aggregator.digest import plan_run
from aggregator.importer import import_file
from aggregator.store import Store, repo
from aggregator.store.models import DigestRun, Item
from aggregator.web import WebApp, WebServer

OWN = "http://www.example.org/a?id=7"
BING_TARGET = "http://m.example.net/news/2?p=1"
BING_CLICK = (
    "https://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=abc"
    "&url=http%3a%2f%2fm.example.net%2fnews%2f2%3fp%3d1&c=123&mkt=en-us"
)
GOOGLE = "https://news.google.com/rss/articles/CBMiQWh0dHBzOi8vdmFsbGV5LmV4YW1wbGUvcmVzY3Vl?oc=5"
A = "{http://www.w3.org/2005/Atom}"


def rss(items: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>Coast Post</title><link>http://www.example.org/</link>{items}</channel></rss>"
    )


def item(title: str, link: str, guid: str, when: datetime, extra: str = "") -> str:
    return (
        f"<item><title>{title}</title><link>{link.replace('&', '&amp;')}</link>"
        f'<guid isPermaLink="false">{guid}</guid><pubDate>{format_datetime(when)}</pubDate>'
        f"<description>{title}. The council met on Tuesday evening and agreed.</description>"
        f"{extra}</item>"
    )


@pytest.fixture
def filled(store: Store, tmp_path: Path):
    cfg = Config.model_validate(
        {
            "sources": [
                {"name": "coast", "type": "rss", "url": "http://www.example.org/feed"},
                {"name": "gnews", "type": "google_news", "query": "rescue"},
            ],
            "digests": [{"name": "daily", "schedule": "0 7 * * *", "recipients": ["a@b.org"]}],
            "smtp": {"host": "127.0.0.1", "port": 1, "sender": "news@example.org"},
            "http": {"enabled": True, "port": 0, "base_url": "http://news.example.org"},
        }
    )
    with store.session() as s:
        repo.sync_sources(s, cfg.sources, datetime.now(UTC))
    now = datetime.now(UTC) - timedelta(hours=1)
    coast = tmp_path / "coast.xml"
    coast.write_text(
        rss(
            item("Lighthouse keepers vote to restore the northern beacon", OWN, "c1", now)
            + item("Harbour ferry timetable changes after the storm", BING_CLICK, "c2", now)
        ),
        encoding="utf-8",
    )
    gnews = tmp_path / "gnews.xml"
    gnews.write_text(
        rss(
            item(
                "Mountain rescue team opens a new station in the valley - Valley Times",
                GOOGLE,
                "CBMiQWh0",
                now,
                '<source url="https://valley.example">Valley Times</source>',
            )
        ),
        encoding="utf-8",
    )
    assert import_file(store, cfg, coast, source_name="coast").items_new == 2
    assert import_file(store, cfg, gnews, source_name="gnews").items_new == 1
    DedupService(store).process_pending()
    with store.session() as s:
        canon = dict(s.execute(select(Item.url, Item.canonical_url)).all())
    assert canon[OWN] == "https://example.org/a?id=7"  # the matching key differs from the link
    return store, cfg


class Links(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.hrefs += [v or "" for k, v in attrs if k == "href"]


def check(hrefs: list[str] | set[str], where: str) -> None:
    assert OWN in hrefs, where
    assert BING_TARGET in hrefs, where
    assert GOOGLE in hrefs, where
    assert not any("example.org/a" in h and h != OWN for h in hrefs), (where, hrefs)
    assert not any("apiclick" in h for h in hrefs), where


def test_digest_links_the_url_as_given(filled) -> None:
    store, cfg = filled
    run_id = plan_run(store, cfg, cfg.digests[0], period_end_at=datetime.now(UTC))
    with store.session() as s:
        raw = s.get_one(DigestRun, run_id).message
    msg = email.message_from_bytes(raw or b"", policy=policy.default)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    check(Links(html).hrefs, "digest html")
    lines = {line.strip() for line in text.splitlines()}
    assert {OWN, BING_TARGET, GOOGLE} <= lines, text
    assert "https://example.org/a?id=7" not in text and "apiclick" not in text


def test_web_pages_and_feeds_link_the_url_as_given(filled) -> None:
    store, cfg = filled
    server = WebServer(WebApp(store, cfg), "127.0.0.1", 0)
    server.start()
    try:

        def get(path: str) -> str:
            with urllib.request.urlopen(server.url + path, timeout=30) as resp:  # noqa: S310
                return resp.read().decode("utf-8")

        index = get("/")
        check(Links(index).hrefs, "index")
        cluster_pages = [h for h in Links(index).hrefs if h.startswith("/cluster/")]
        member_links = set()
        for page in cluster_pages:
            member_links.update(Links(get(page)).hrefs)
        check(member_links, "cluster pages")

        root = ET.fromstring(get("/feed.atom"))
        alternates = [
            link.get("href") or ""
            for link in root.iter(f"{A}link")
            if link.get("rel") == "alternate"
        ]
        check(alternates, "atom")
        feed = json.loads(get("/feed.json"))
        check([i.get("url", "") for i in feed["items"]], "json feed")
    finally:
        server.stop()


def test_canonical_form_is_linked_only_when_no_url_was_stored() -> None:
    from aggregator.store.models import Source
    from aggregator.stories import link_of

    rss_source, google = Source(type="rss"), Source(type="google_news")
    assert link_of(Item(url=OWN, canonical_url="https://example.org/a?id=7"), rss_source) == OWN
    assert link_of(Item(url=BING_CLICK, canonical_url=None), rss_source) == BING_TARGET
    assert link_of(Item(url=None, canonical_url="https://example.org/b"), rss_source) == (
        "https://example.org/b"
    )
    assert link_of(Item(url=GOOGLE, canonical_url=None), google) is None
    assert link_of(Item(url=GOOGLE, canonical_url=None), rss_source) is None
