"""Clustering must not depend on the order feeds are imported (issue 20).

The same fixture documents are imported into fresh SQLite stores in three orders, each file
as ``aggregator import FILE`` does (store it, then cluster what is pending), and the story
partitions are compared by item identity (source URL + guid). benchmarks/order.py measures
the same over every fixture and more orders.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest
from conftest import REPO
from helpers import migrate
from sqlalchemy import select

from aggregator.config import load_config
from aggregator.dedup.evaluate import score
from aggregator.dedup.service import DedupService, settings_from
from aggregator.importer import import_file
from aggregator.store import db as store_db
from aggregator.store.models import ClusterMember, Item, Source

BEARS_EARS = "google-news-en-us-search-1.xml"
# the Bears Ears search (July 2026), a newer Bing feed (September 2026), an undated feed
# (stamped with the import time), an old Atom feed (2009) and Google top stories of 2019
DOCS = (
    BEARS_EARS,
    "bing-news-en-us-search-3.xml",
    "rss090-rdf-de-heise.xml",
    "atom-en-h-online.xml",
    "google-news-en-us-topstories-2019.xml",
)
ORDERS = {
    "alphabetical": sorted(DOCS),
    "reverse": sorted(DOCS, reverse=True),
    "bears-ears-first": list(DOCS),
}


def _signing_guids() -> set[str]:
    path = REPO / "tests/data/feeds" / BEARS_EARS.replace(".xml", ".labels.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return {r["guid"] for r in rows if r["story"] == "shrink-signed"}


def _stories_after_import(feeds_dir: Path, names: list[str], db: Path) -> dict[str, str]:
    """Import ``names`` in order, clustering after each file; item key -> story cluster."""
    cfg = load_config(REPO / "config.yaml", env={})
    store = store_db.Store(store_db.make_engine(migrate(f"sqlite:///{db}")))
    try:
        for name in names:
            outcome = import_file(store, cfg, feeds_dir / name)
            assert outcome.error is None, outcome.error
            DedupService(store, settings_from(cfg.dedup)).process_pending()
        with store.session() as s:
            rows = s.execute(
                select(Source.url, Item.guid, ClusterMember.cluster_id)
                .join(Item, Item.id == ClusterMember.item_id)
                .join(Source, Source.id == Item.source_id)
                .where(ClusterMember.level == "story")
            ).all()
    finally:
        store.close()
    return {f"{url}#{guid}": str(cid) for url, guid, cid in rows}


@pytest.fixture(scope="module")
def partitions(feeds_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("order")
    return {
        name: _stories_after_import(feeds_dir, names, tmp / f"{name}.sqlite")
        for name, names in ORDERS.items()
    }


def test_story_partitions_agree_between_import_orders(partitions: dict[str, dict]) -> None:
    for (a, pa), (b, pb) in combinations(partitions.items(), 2):
        assert pa.keys() == pb.keys(), f"{a} and {b} stored different items"
        f1 = score(pa, pb).bcubed_f1
        assert f1 >= 0.98, f"story partitions of {a} and {b} agree only to BCubed F1 {f1:.3f}"


def test_bears_ears_signing_is_one_story_in_every_order(partitions: dict[str, dict]) -> None:
    signing = _signing_guids()
    for name, stories in partitions.items():
        held = Counter(cid for key, cid in stories.items() if key.rsplit("#", 1)[1] in signing)
        assert held, f"{name}: no signing item stored"
        _, largest = held.most_common(1)[0]
        assert largest >= 30, f"{name}: the signing's largest story holds {largest} of its items"
