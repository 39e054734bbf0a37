"""Per-entry cost of each stage a new item goes through, against the naive baseline's.

    python benchmarks/stages.py [--items 10000] [--feeds 50] [--seed 1] [--keep DIR]

On one workload (``workload.py``, generated as ``ingest.py`` does; ``--keep DIR`` reuses
``DIR/docs``), in one process, CPU time (``process_time``) per entry of:

* the naive baseline (``naive.py``'s pass: feedparser, one ``MinHash.update`` per token,
  in-memory ``MinHashLSH``, one ORM object per row; its wall time too) and its parse alone;
* ours, stage by stage, each over every document: ``parse_feed``, ``normalise_feed``, the
  import before clustering (``import_file``: parse, normalise, store; store = the rest, with
  the known-entry checks; a little low, as ``import_file`` skips the entries a document
  repeats from the one before, which the two stages before it count), then clustering
  (``DedupService.process_pending``, the new items, over the entries). Within clustering, the
  features (the engine's ``_features`` over every entry's item in a fresh engine, per item;
  its parts, over the raw text: tokens, terms with stemming, the shingles' hashes (mixed
  from the tokens'), MinHash of the shingles); placement = the rest.

Prints one table and the budgets the issue #7 targets leave per entry (6x the naive rate;
5,000 items/s), so what any stage costs can be read against them. Stages are timed
separately, so their sum is a little more than ``ingest.py``'s end-to-end figure would be.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import feedparser  # noqa: E402
import naive  # noqa: E402
import workload  # noqa: E402
from datasketch import MinHashLSH  # noqa: E402
from ingest import ensure_workload, write_config  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402


def cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.process_time()
    result = fn()
    return time.process_time() - started, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--feeds", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="work here (reuses a workload generated there)")
    args = ap.parse_args(argv)

    from aggregator.cli import main as cli_main
    from aggregator.config import load_config
    from aggregator.dedup.engine import SEED, DedupItem, Engine, Rec, publisher_key, title_key
    from aggregator.dedup.minhash import signature, text_shingles
    from aggregator.dedup.service import DedupService, feed_kind, settings_from
    from aggregator.dedup.text import term_counts, tokens
    from aggregator.importer import import_file
    from aggregator.normaliser import normalise_feed
    from aggregator.parser import detect_source_type, parse_feed
    from aggregator.store import open_store

    work = args.keep or Path(tempfile.mkdtemp(prefix="newsdedup-stages-"))
    work.mkdir(parents=True, exist_ok=True)
    params = workload.Params(items=args.items, feeds=args.feeds, seed=args.seed)
    ensure_workload(work / "docs", params, 0.0)
    paths = workload.document_paths(work / "docs")
    bodies = [p.read_bytes() for p in paths]
    rows: list[tuple[str, float, str]] = []

    # -- naive
    db = work / "stages-naive.sqlite"
    db.unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{db}")
    naive.Base.metadata.create_all(engine)
    with Session(engine) as session:
        dt, result = cpu(
            lambda: naive.run_pass(paths, session, MinHashLSH(threshold=0.5, num_perm=128))
        )
    entries = int(result["entries"])
    naive_ms = 1000 * dt / entries
    wall = f"wall {1000 * result['seconds'] / entries:.3f}, as naive.py reports it"
    rows.append(("naive: whole pass", naive_ms, f"feedparser + MinHash per token + ORM; {wall}"))
    dt, _ = cpu(lambda: [feedparser.parse(io.BytesIO(b)) for b in bodies])
    rows.append(("naive: feedparser.parse alone", 1000 * dt / entries, "default options"))

    # -- ours, parse and normalise alone
    base = [p.resolve().as_uri() for p in paths]
    dt, feeds = cpu(lambda: [parse_feed(b, url=u) for b, u in zip(bodies, base, strict=True)])
    rows.append(("parse_feed", 1000 * dt / entries, "feedparser, our options and fields"))
    now = datetime.now(UTC)
    dt, items = cpu(
        lambda: [
            (kind, it)
            for f in feeds
            for kind in (detect_source_type(f),)
            for it in normalise_feed(f, source_type=kind, fetched_at=now)
        ]
    )
    rows.append(("normalise_feed", 1000 * dt / entries, "HTML to text, URLs, language, hash"))
    parse_norm = rows[-2][1] + rows[-1][1]

    # -- ours, import before clustering, then clustering
    url = f"sqlite:///{work / 'stages-ours.sqlite'}"
    for suffix in ("", "-wal", "-shm"):
        Path(url[len("sqlite:///") :] + suffix).unlink(missing_ok=True)
    config = write_config(work / "stages", url)
    cli_main(["-q", "--config", str(config), "db", "upgrade"], out=io.StringIO())
    cfg = load_config(config)
    store = open_store(url)
    dt, _ = cpu(lambda: [import_file(store, cfg, p) for p in paths])
    rows.append(("store (import_file - parse - normalise)", 1000 * dt / entries - parse_norm, ""))
    service = DedupService(store, settings_from(cfg.dedup))
    dt, placed = cpu(service.process_pending)
    cluster_ms = 1000 * dt / entries
    store.close()

    # -- features alone, in a fresh engine, over the same items
    fresh = Engine(settings_from(cfg.dedup))
    recs = []
    for n, (source_type, it) in enumerate(items, start=1):
        kind = feed_kind(source_type)
        item = DedupItem(
            n, "s", kind, it.publisher, it.title, it.summary, it.lang,
            it.canonical_url, it.published_at,
        )  # fmt: skip
        fresh._texts[n] = it.text
        recs.append(Rec(item, title_key(it.title, it.publisher, kind), publisher_key(it.publisher)))
        fresh.records[n] = recs[-1]
    dt, _ = cpu(lambda: [fresh._features(r) for r in recs])
    features_ms = 1000 * dt / len(recs)
    texts = [fresh._texts[r.item.id] for r in recs]
    toks = [(tokens(r.title_key), tokens(t)) for r, t in zip(recs, texts, strict=True)]
    parts = [
        (
            "tokens",
            lambda: [(tokens(r.title_key), tokens(t)) for r, t in zip(recs, texts, strict=True)],
        ),
        (
            "terms (stemmed)",
            lambda: [
                term_counts(r.title_key, text, r.item.lang, lead_tokens=60, toks=t)
                for r, text, t in zip(recs, texts, toks, strict=True)
            ],
        ),
        ("shingle hashes", lambda: [text_shingles(a + b) for a, b in toks]),
    ]
    timed = [(name, 1000 * cpu(fn)[0] / len(recs)) for name, fn in parts]
    sh = [text_shingles(a + b) for a, b in toks]
    timed.append(
        (
            "MinHash of the shingles",
            1000
            * cpu(lambda: [signature(s, fresh.settings.num_perm, SEED) for s in sh])[0]
            / len(recs),
        )
    )
    parts_note = ", ".join(f"{n} {v:.3f}" for n, v in timed)
    rows.append(("clustering: features, per item", features_ms, parts_note))
    placement_ms = cluster_ms - features_ms * placed / entries
    rows.append((f"clustering: placement ({placed} new items)", placement_ms, "the rest"))

    ours_ms = sum(ms for _, ms, _ in rows[2:5]) + cluster_ms  # parse, normalise, store
    floor = parse_norm + features_ms
    print(f"{entries} entries in {len(paths)} documents, {placed} items clustered ({work})\n")
    print(f"{'stage':42}  {'ms/entry':>8}  notes")
    print(f"{'-' * 42}  {'-' * 8}  {'-' * 5}")
    for name, ms, note in rows:
        print(f"{name:42}  {ms:8.3f}  {note}")
    print(f"{'ours: sum of the stages':42}  {ours_ms:8.3f}  {1000 / ours_ms:,.0f} items/s")
    print()
    print(f"budget per entry at 6x the naive rate:   {naive_ms / 6:.3f} ms")
    print("budget per entry at 5,000 items/s:       0.200 ms")
    print(f"parse + normalise + features (no store, no placement): {floor:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
