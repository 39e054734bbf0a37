"""The labelled corpus (tests/data) stored as items, and the clusters the store holds: for the
tests that cluster real data in a database (test_dedup_store, test_corrections, ...)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from aggregator.dedup.clusterfile import read_items, to_items
from aggregator.normaliser import content_hash
from aggregator.store import Store
from aggregator.store.models import ClusterMember, Item, Source

DATA = Path(__file__).resolve().parent / "data"
TYPES = {"site": "rss", "google_news": "google_news", "bing_news": "bing_news"}


def load_corpus(store: Store, split: str = "dev", first: int | None = None) -> dict[str, int]:
    """Store the corpus items as the pipeline would (one source per publisher and kind);
    ``first``: only the items numbered up to it (``dev-001`` …), the corpus as some tests
    were written for (later parts add items after them)."""
    rows = read_items(DATA / f"{split}.jsonl")
    if first is not None:
        rows = [r for r in rows if int(str(r["id"]).rsplit("-", 1)[1]) <= first]
    now = datetime.now(UTC)
    ids: dict[str, int] = {}
    with store.session() as s:
        sources: dict[tuple[str, str], int] = {}
        for item, text in to_items(rows, DATA / f"{split}.jsonl"):
            row = rows[item.id]
            key = (item.source, item.feed_kind)
            if key not in sources:
                src = Source(
                    name=f"{item.source} ({item.feed_kind})",
                    type=TYPES[item.feed_kind],
                    url=f"http://example.invalid/{len(sources)}",
                    created_at=now,
                )
                s.add(src)
                s.flush()
                sources[key] = src.id
            stored = Item(
                source_id=sources[key],
                kind="article",
                guid=str(row["id"]),
                url=row.get("url"),
                canonical_url=item.canonical_url,
                title=item.title,
                publisher=item.publisher,
                summary=item.summary,
                text=text,
                lang=item.lang,
                published_at=item.published_at,
                fetched_at=now,
                content_hash=content_hash(item.title, text),
            )
            s.add(stored)
            s.flush()
            ids[str(row["id"])] = stored.id
    return ids


def partition(store: Store, level: str) -> set[frozenset[int]]:
    with store.session() as s:
        groups: dict[int, set[int]] = {}
        for item_id, cid in s.execute(
            select(ClusterMember.item_id, ClusterMember.cluster_id).where(
                ClusterMember.level == level
            )
        ):
            groups.setdefault(cid, set()).add(item_id)
    return {frozenset(g) for g in groups.values()}
