"""A source whose type changes in config.yaml: its stored items are re-normalised at sync."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import FEEDS
from sqlalchemy import select

from aggregator.config import Config
from aggregator.importer import import_file
from aggregator.store import repo
from aggregator.store.models import Item

GOOGLE = FEEDS / "google-news-en-us-search-1.xml"


def _cfg(type_: str) -> Config:
    return Config.model_validate(
        {
            "sources": [
                {"name": "gn", "type": type_, "url": "https://news.google.com/rss/x"},
                {"name": "fresh", "type": "google_news", "url": "https://news.google.com/rss/y"},
            ]
        }
    )


def _items(store, source: str) -> dict[str, tuple[str, str | None, str | None]]:  # noqa: ANN001
    with store.session() as s:
        sid = repo.get_source(s, source).id
        rows = s.scalars(select(Item).where(Item.source_id == sid))
        return {i.guid: (i.title, i.url, i.canonical_url) for i in rows}


def test_type_change_re_normalises_stored_items_as_a_fresh_import_would(
    store, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    with store.session() as s:
        repo.sync_sources(s, _cfg("rss").sources, now)
    for name in ("gn", "fresh"):
        out = import_file(store, _cfg("rss"), Path(GOOGLE), source_name=name)
        assert out.error is None and out.items_new > 5
    fresh = _items(store, "fresh")
    before = _items(store, "gn")
    common = sorted(set(before) & set(fresh))
    assert len(common) > 20
    # as an rss source, Google's " - Publisher" suffixes stay
    assert sum(before[g][0] != fresh[g][0] for g in common) > 5

    with caplog.at_level(logging.WARNING), store.session() as s:
        repo.sync_sources(s, _cfg("google_news").sources, now)
    after = _items(store, "gn")
    assert [after[g] for g in common] == [fresh[g] for g in common]
    assert "source gn: type changed rss -> google_news; re-normalised" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING), store.session() as s:
        repo.sync_sources(s, _cfg("google_news").sources, now)  # unchanged: nothing to do
    assert "type changed" not in caplog.text and _items(store, "gn") == after


def test_bing_unwrap_on_a_type_change() -> None:
    wrapped = (
        "https://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=1"
        "&url=https%3a%2f%2fexample.com%2fstory%3fid%3d7&c=1&mkt=en-us"
    )
    title, url, canon = repo.renormalise_title_url("bing_news", "T", wrapped, None)
    assert url == "https://example.com/story?id=7" and canon and "bing" not in canon
    assert repo.renormalise_title_url("rss", "T", wrapped, None)[1] == wrapped
