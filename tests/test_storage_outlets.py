"""Every outlet's entry is stored: the exact-duplicate key of an entry includes who printed it.

A real Google News search feed (92 entries, one AP headline printed by 10 outlets) served by a
local HTTP server, polled into SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from conftest import FEEDS
from helpers import cli, make_config, poll, sync
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from aggregator.config import Config
from aggregator.dedup.service import DedupService
from aggregator.store import Store, open_store
from aggregator.store.models import ClusterMember, Item

BEARS_EARS = FEEDS / "google-news-en-us-search-1.xml"
AP_HEADLINE = (
    "Trump reduces size of 2 national monuments in Utah as Republicans reshape land management"
)


def config(url: str) -> Config:
    return make_config([{"name": "bears-ears", "type": "google_news", "url": url}])


def poll_new(store: Store, cfg: Config) -> int:
    outcomes = poll(store, cfg)
    assert [o.error for o in outcomes] == [None]
    return outcomes[0].items_new


def document_entries() -> list[tuple[str, str, str]]:
    """(publisher, title, guid) of every entry, read straight from the XML."""
    root = ET.fromstring(BEARS_EARS.read_bytes())
    out = []
    for item in root.iter("item"):
        publisher = (item.findtext("source") or "").strip()
        out.append((publisher, item.findtext("title") or "", item.findtext("guid") or ""))
    return out


def stored(store: Store) -> list[tuple[str, str, str]]:
    with store.session() as s:
        return [tuple(r) for r in s.execute(select(Item.publisher, Item.title, Item.guid))]


def test_every_outlet_of_a_wire_headline_is_stored_once(
    store: Store, httpserver: HTTPServer
) -> None:
    body = BEARS_EARS.read_bytes()
    httpserver.expect_request("/feed").respond_with_data(body, content_type="application/xml")
    cfg = config(httpserver.url_for("/feed"))
    sync(store, cfg)

    entries = document_entries()
    assert len(entries) == 92 and len({g for _, _, g in entries}) == 92
    # What is really distinct: an outlet's headline. Two entries repeat one of the same
    # outlet (San Juan Record under two ids, a KUTV timeline twice): one item each.
    distinct = {(p, t) for p, t, _ in entries}
    assert len(distinct) == 90
    assert poll_new(store, cfg) == len(distinct)
    items = stored(store)
    assert len(items) == len(distinct)
    assert {p for p, _, _ in items} == {p for p, _, _ in entries}
    assert len({(p, t) for p, t, _ in items}) == len(distinct)
    printers = {p for p, t, _ in items if t == AP_HEADLINE}
    assert len(printers) == 10 and {"AP News", "Boston Herald"} <= printers

    # Re-polls store nothing: the same bytes in a changed document (entries cut by their
    # bytes), then every entry changed but its guid kept (cut by guid).
    rebuilt = body.replace(b"Tue, 14 Jul 2026 04:08:56 GMT", b"Tue, 14 Jul 2026 05:00:00 GMT")
    assert rebuilt != body
    httpserver.clear()
    httpserver.expect_request("/feed").respond_with_data(rebuilt, content_type="application/xml")
    assert poll_new(store, cfg) == 0
    redated = re.sub(
        rb"<pubDate>[^<]*</pubDate>", b"<pubDate>Wed, 15 Jul 2026 09:00:00 GMT</pubDate>", body
    )
    httpserver.clear()
    httpserver.expect_request("/feed").respond_with_data(redated, content_type="application/xml")
    assert poll_new(store, cfg) == 0
    assert len(stored(store)) == len(distinct)

    # The copies meet in one duplicate cluster, not in storage.
    DedupService(store).process_pending()
    with store.session() as s:
        clusters = set(
            s.scalars(
                select(ClusterMember.cluster_id)
                .join(Item, Item.id == ClusterMember.item_id)
                .where(ClusterMember.level == "duplicate", Item.title == AP_HEADLINE)
            )
        )
    assert len(clusters) == 1


def test_a_new_outlet_with_a_known_headline_is_a_new_item(
    store: Store, httpserver: HTTPServer
) -> None:
    """A later document: the same headline under a new id from a new outlet is stored; under a
    new id from an outlet that already printed it, it is not."""
    template = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>q - Google News</title>'
        "<link>https://news.google.com/</link>{items}</channel></rss>"
    )
    item = (
        "<item><title>{title} - {pub}</title><link>https://news.google.com/rss/articles/{guid}</link>"
        '<guid isPermaLink="false">{guid}</guid><pubDate>Tue, 14 Jul 2026 00:00:00 GMT</pubDate>'
        '<source url="https://{host}">{pub}</source></item>'
    )
    first = template.format(
        items=item.format(title=AP_HEADLINE, pub="Boston Herald", guid="g1", host="bh.example")
    )
    later = template.format(
        items="".join(
            [
                item.format(title=AP_HEADLINE, pub="Boston Herald", guid="g1", host="bh.example"),
                item.format(title=AP_HEADLINE, pub="Boston Herald", guid="g2", host="bh.example"),
                item.format(title=AP_HEADLINE, pub="Yahoo Finance", guid="g3", host="yf.example"),
            ]
        )
    )
    httpserver.expect_request("/feed").respond_with_data(first, content_type="application/xml")
    cfg = config(httpserver.url_for("/feed"))
    sync(store, cfg)
    assert poll_new(store, cfg) == 1
    httpserver.clear()
    httpserver.expect_request("/feed").respond_with_data(later, content_type="application/xml")
    assert poll_new(store, cfg) == 1
    assert poll_new(store, cfg) == 0
    by_publisher: dict[str, list[str]] = defaultdict(list)
    for publisher, _, guid in stored(store):
        by_publisher[publisher].append(guid)
    assert dict(by_publisher) == {"Boston Herald": ["g1"], "Yahoo Finance": ["g3"]}
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 2


def test_poll_once_clusters_what_it_stored(
    db_url: str, httpserver: HTTPServer, tmp_path: Path
) -> None:
    """`poll --once` leaves no item pending: `clusters` (which only reads) shows them at once."""
    httpserver.expect_request("/feed").respond_with_data(
        BEARS_EARS.read_bytes(), content_type="application/xml"
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"database: {{url: '{db_url}'}}\n"
        "polling: {allow_private_addresses: true, total_timeout: 5s}\n"
        "sources:\n"
        f"  - {{name: bears-ears, type: google_news, url: '{httpserver.url_for('/feed')}'}}\n",
        encoding="utf-8",
    )

    def run(*args: str) -> str:
        done = cli(cfg, "-q", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("db", "upgrade")
    assert "92 entries, 90 new" in run("poll", "--once")
    clusters = [json.loads(line) for line in run("clusters", "--format", "jsonl").splitlines()]
    ap = [
        c
        for c in clusters
        if c["level"] == "duplicate" and any(m["title"] == AP_HEADLINE for m in c["members"])
    ]
    assert len(ap) == 1 and ap[0]["size"] == 10
    store = open_store(db_url)
    try:
        with store.session() as s:
            states = dict(
                s.execute(select(Item.dedup_state, func.count()).group_by(Item.dedup_state)).all()
            )
            placed = s.scalar(
                select(func.count(func.distinct(ClusterMember.item_id))).where(
                    ClusterMember.level == "story"
                )
            )
    finally:
        store.close()
    assert states == {"done": 90} and placed == 90
