"""The labelled corpus (tests/data) stored as items, and the clusters the store holds: for the
tests that cluster real data in a database (test_dedup_store, test_corrections, ...)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from aggregator.dedup.clusterfile import read_items, to_items
from aggregator.dedup.engine import Engine
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


def engine_state(eng: Engine) -> dict[str, object]:
    """Everything a loaded engine holds that placing reads, in comparable form (term ids
    and the order of dicts included: they decide the order of sums and of new ids)."""
    vocab = eng.vocab
    n_terms = len(vocab._terms)
    return {
        "records": [
            (
                item_id,
                rec.item,
                rec.title_key,
                rec.publisher_key,
                None if rec.dup_sig is None else (rec.dup_sig.dtype.str, rec.dup_sig.tolist()),
                None if rec.story_sig is None else rec.story_sig.tolist(),
                rec.vec.pairs.tolist(),
                list(rec.lead.items()),
                rec.short,
                rec.body_len,
                rec.lang,
                sorted(rec.anchors),
            )
            for item_id, rec in eng.records.items()
        ],
        "vocab": (
            list(vocab._ids.items()),
            vocab._terms,
            vocab._df[:n_terms].tolist(),
            vocab._log_df[:n_terms].tolist(),
            vocab.n_docs,
            vocab._free,
        ),
        "slots": (
            eng._slot_of,
            eng._slot_id.tolist(),
            eng._slot_lang.tolist(),
            eng._slot_ts.tolist(),
        ),
        "index": [
            (lv, [(k.tolist(), e.tolist()) for k, e in ix._levels], len(ix))
            for lv, ix in (("duplicate", eng.dup_index), ("story", eng.story_index))
            if ix._settle() is None
        ],
        "keys": (
            eng.by_url,
            eng.by_hash,
            dict(eng.by_title),
            dict(eng.by_publisher),
            {a: sorted(ids) for a, ids in eng.by_anchor.items()},
            dict(eng.by_source),
        ),
        "clusters": (eng.cluster_of, eng.members, eng.thread_of_story, eng.next_cluster_id),
        "time": (sorted(eng._by_time), eng.held_from, eng.newest_at),
        "boilerplate": eng.boilerplate.sources,
    }
