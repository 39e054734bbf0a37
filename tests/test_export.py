"""Deduplicated feeds (``aggregator export``): a store filled from the fixture feeds on both
databases, exported as Atom and JSON Feed, and checked the way a feed reader would see them:
feedparser without bozo errors, the RFC 4287 rules that can be checked mechanically, JSON
Feed 1.1's required fields, one entry per cluster, stable ids that survive a cluster growing."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import feedparser
import pytest
from conftest import FEEDS
from helpers import cli, fill
from sqlalchemy import func, select

from aggregator.export import FeedMeta, atom, json_feed
from aggregator.store import Store, open_store
from aggregator.store.models import Cluster, ClusterMember
from aggregator.stories import recent_stories

A = "{http://www.w3.org/2005/Atom}"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
BEARS_EARS = "google-news-en-us-search-1.xml"  # a Google News search on one ongoing story
SUWA = "wordpress-en-suwa-org-podcast.xml"  # the publisher at the centre of that story
OTHERS = ["bing-news-en-us-search-2.xml", "atom-en-h-online.xml"]


def stories(store: Store, level: str = "story", limit: int = 1000):
    with store.session() as s:
        return recent_stories(s, level=level, limit=limit)


def live_clusters(store: Store, level: str) -> int:
    with store.session() as s:
        return s.scalar(
            select(func.count())
            .select_from(Cluster)
            .where(Cluster.level == level, Cluster.merged_into_id.is_(None), Cluster.size > 0)
        )


def clustered_earlier(store: Store, by: timedelta) -> None:
    """As if what is stored had been clustered ``by`` ago: time passes without a wait."""
    with store.session() as s:
        for cluster in s.scalars(select(Cluster)):
            cluster.created_at -= by
            cluster.updated_at -= by
        for member in s.scalars(select(ClusterMember)):
            member.joined_at -= by


def meta(level: str = "story", **kw) -> FeedMeta:
    return FeedMeta(level=level, generated_at=datetime.now(UTC), **kw)


def check_atom(doc: bytes) -> ET.Element:
    """RFC 4287 rules a program can check, plus feedparser's verdict."""
    parsed = feedparser.parse(doc)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    root = ET.fromstring(doc)
    assert root.tag == f"{A}feed"

    def one(el: ET.Element, tag: str) -> ET.Element:
        found = el.findall(f"{A}{tag}")
        assert len(found) == 1, (tag, len(found))
        return found[0]

    for tag in ("id", "title", "updated"):
        one(root, tag)
    assert RFC3339.match(one(root, "updated").text or "")
    feed_has_author = bool(root.findall(f"{A}author"))
    ids = []
    for entry in root.findall(f"{A}entry"):
        ident = one(entry, "id").text or ""
        assert re.match(r"^[a-z][a-z0-9+.-]*:\S+$", ident), ident  # an absolute IRI
        ids.append(ident)
        assert (one(entry, "title").text or "").strip()
        assert RFC3339.match(one(entry, "updated").text or "")
        for published in entry.findall(f"{A}published"):
            assert RFC3339.match(published.text or "")
        assert feed_has_author or entry.findall(f"{A}author")
        alternates = Counter(
            (link.get("type"), link.get("hreflang"))
            for link in entry.findall(f"{A}link")
            if link.get("rel", "alternate") == "alternate"
        )
        assert all(n == 1 for n in alternates.values())  # at most one per type and language
        for link in entry.findall(f"{A}link"):
            assert link.get("href", "").startswith(("http://", "https://"))
        content = entry.findall(f"{A}content")
        assert content or alternates  # an entry without content must link its alternate
        for c in content:
            assert c.get("type") in ("text", "html", "xhtml")
    assert len(ids) == len(set(ids))
    return root


def check_jsonfeed(doc: bytes) -> dict:
    """JSON Feed 1.1: required keys and types, dates in RFC 3339, unique ids."""
    data = json.loads(doc)
    assert data["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(data["title"], str) and data["title"]
    assert isinstance(data["items"], list)
    for key in ("home_page_url", "feed_url"):
        if key in data:
            assert data[key].startswith(("http://", "https://"))
    ids = []
    for item in data["items"]:
        assert isinstance(item["id"], str) and item["id"]
        ids.append(item["id"])
        assert isinstance(item.get("content_html"), str) or isinstance(
            item.get("content_text"), str
        )
        for key in ("date_published", "date_modified"):
            if key in item:
                assert RFC3339.match(item[key]), item[key]
        if "url" in item:
            assert item["url"].startswith(("http://", "https://"))
        for author in item.get("authors", []):
            assert isinstance(author["name"], str)
        for key in item:
            assert key in JSONFEED_ITEM_KEYS or key.startswith("_"), key
    assert len(ids) == len(set(ids))
    return data


JSONFEED_ITEM_KEYS = {
    "id",
    "url",
    "external_url",
    "title",
    "content_html",
    "content_text",
    "summary",
    "image",
    "banner_image",
    "date_published",
    "date_modified",
    "authors",
    "tags",
    "language",
    "attachments",
}


def test_atom_one_entry_per_story_valid_and_linking_the_best_source(store: Store) -> None:
    fill(store, [BEARS_EARS, SUWA, *OTHERS])
    found = stories(store)
    assert len(found) == live_clusters(store, "story") > 50
    doc = atom(found, meta(base_url="http://127.0.0.1:8080"))
    root = check_atom(doc)
    entries = root.findall(f"{A}entry")
    assert len(entries) == len(found)
    # the widest-covered story: headlined by a report at its centre (stories.headline_member),
    # linked to that report, the others as contributors
    big = max(found, key=lambda st: len(st.entry.outlets))
    assert len(big.entry.outlets) >= 10
    assert "Bears Ears" in big.entry.headline
    (entry,) = [e for e in entries if e.find(f"{A}title").text == big.entry.headline]
    assert entry.find(f"{A}author/{A}name").text == big.entry.publisher
    assert entry.find(f"{A}link[@rel='alternate']").get("href") == big.entry.link
    contributors = {c.text for c in entry.findall(f"{A}contributor/{A}name")}
    assert contributors == {o.name for o in big.entry.outlets}
    content = entry.find(f"{A}content").text
    assert f"covered by {len(big.entry.outlets) + 1} outlets" in content
    related = entry.find(f"{A}link[@rel='related']").get("href")
    assert related == f"http://127.0.0.1:8080/cluster/{big.entry.cluster_id}"
    # feedparser sees the same entries
    parsed = feedparser.parse(doc)
    assert [e.title for e in parsed.entries] == [st.entry.headline for st in found]


def test_jsonfeed_valid_with_the_same_entries(store: Store) -> None:
    fill(store, [BEARS_EARS, *OTHERS])
    found = stories(store)
    data = check_jsonfeed(json_feed(found, meta()))
    assert [i["title"] for i in data["items"]] == [st.entry.headline for st in found]
    entries = ET.fromstring(atom(found, meta())).findall(f"{A}entry")
    assert [i["id"] for i in data["items"]] == [e.find(f"{A}id").text for e in entries]
    extra = {i["_newsdedup"]["cluster_id"]: i["_newsdedup"] for i in data["items"]}
    assert set(extra) == {st.entry.cluster_id for st in found}
    assert all(x["level"] == "story" and x["size"] >= 1 for x in extra.values())


def test_entry_id_is_stable_and_updated_moves_when_the_cluster_grows(store: Store) -> None:
    fill(store, [BEARS_EARS])
    clustered_earlier(store, timedelta(hours=1))  # updated has one-second resolution
    before = {e["id"]: e for e in check_jsonfeed(json_feed(stories(store), meta()))["items"]}
    fill(store, [SUWA])
    after = {e["id"]: e for e in check_jsonfeed(json_feed(stories(store), meta()))["items"]}
    grown = [
        i
        for i in after
        if i in before and after[i]["_newsdedup"]["size"] > before[i]["_newsdedup"]["size"]
    ]
    assert grown, "importing the publisher's own feed should grow its Google News stories"
    for ident in grown:
        assert after[ident]["date_modified"] > before[ident]["date_modified"]
        assert after[ident]["date_published"] <= before[ident]["date_published"]
    # the grown story now leads with the publisher's own article
    assert any(after[i]["authors"][0]["name"] == "Southern Utah Wilderness Alliance" for i in grown)
    # untouched stories keep their id and their date
    same = [i for i in before if i in after and i not in grown]
    assert same and all(after[i]["date_modified"] == before[i]["date_modified"] for i in same)


@pytest.mark.parametrize("level", ["duplicate", "thread"])
def test_other_levels_export_one_entry_per_cluster(store: Store, level: str) -> None:
    fill(store, [BEARS_EARS, SUWA])
    found = stories(store, level)
    assert len(found) == live_clusters(store, level)
    root = check_atom(atom(found, meta(level)))
    assert {c.get("term") for c in root.iter(f"{A}category")} == {level}
    check_jsonfeed(json_feed(found, meta(level)))


def test_empty_store_exports_valid_empty_feeds(store: Store) -> None:
    root = check_atom(atom([], meta()))
    assert root.findall(f"{A}entry") == []
    assert check_jsonfeed(json_feed([], meta()))["items"] == []


# ---------------------------------------------------------------- the command


def test_export_command(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "database: {url: 'sqlite:///db.sqlite'}\nhttp: {base_url: 'https://news.example.org/'}\n"
    )
    code, _, _ = cli(config, "import", str(FEEDS / BEARS_EARS))
    assert code == 0
    code, out, _ = cli(config, "export", "--format", "atom")
    assert code == 0
    root = check_atom(out.encode())
    alternate = root.find(f"{A}link[@rel='alternate']")
    assert alternate.get("href") == "https://news.example.org"
    n = len(root.findall(f"{A}entry"))
    assert n > 10

    target = tmp_path / "out" / "stories.json"
    target.parent.mkdir()
    code, out, err = cli(
        config, "export", "--format", "jsonfeed", "--limit", "5", "-o", str(target)
    )
    assert code == 0 and out == "" and "5 story clusters" in err
    assert len(check_jsonfeed(target.read_bytes())["items"]) == 5
    assert list(target.parent.iterdir()) == [target]  # no temporary file left behind

    # everything was clustered just now: a short --since keeps it, a since in the past drops it
    code, out, _ = cli(config, "export", "--format", "atom", "--since", "1h")
    assert len(check_atom(out.encode()).findall(f"{A}entry")) == n
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        clustered_earlier(store, timedelta(minutes=1))
    finally:
        store.close()
    code, out, _ = cli(config, "export", "--format", "atom", "--since", "1s")
    assert check_atom(out.encode()).findall(f"{A}entry") == []

    code, _, err = cli(config, "export", "--format", "atom", "--since", "soon")
    assert code != 0 and "--since" in err and err.count("\n") == 1
