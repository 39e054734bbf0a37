"""Does clustering depend on the order documents arrive in? (issue 20)

    python benchmarks/order.py [--shuffles 3] [--seed 1] [--batch] [--files A.xml B.xml ...]
    python benchmarks/order.py --corpus [--shuffles 5]

Default: every fixture document of ../shared/fixtures/feeds (hostile/ included; those that
fail to import are reported and skipped, as the CLI skips them) is imported into a fresh
SQLite store once per order — alphabetical, reverse, and ``--shuffles`` seeded shuffles —
each file by its own ``aggregator import FILE`` (in-process, through ``cli.main``: store,
then cluster what is pending, as the command does). ``--batch``: one ``aggregator import``
of all files in the order instead (stored one by one, clustered once at the end).

The partitions of each level are then compared between orders by item identity (the
source's URL + the item's guid): BCubed F1 (``aggregator eval``'s ``score``, one order as
prediction, the other as gold) and the adjusted Rand index, for every pair of orders. Also
printed per order: the largest story holding items of the Bears Ears search feed
(``google-news-en-us-search-1.xml``), its size, and how many of the items labelled as the
signing story (tests/data/feeds/) it holds, of those stored (a source's items with the same
content hash are dropped before insert: Google entries whose headline is the same wire
headline are stored once); and BCubed F1 against the labels of the stored labelled items.

``--corpus``: the same question for ``cluster-file`` (no store): the input lines of
tests/data/dev.jsonl and of the labelled real feeds (tests/data/feed_corpus.py) shuffled,
as given, then with every ``published`` set to one instant (all tied), then with every
``published`` removed (all undated); each variant's partitions compared with the first.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aggregator.dedup.evaluate import score  # noqa: E402
from aggregator.domain import LEVELS  # noqa: E402
from tests.data.feed_corpus import LABEL_DIR, feeds_dir  # noqa: E402

BEARS_EARS = "google-news-en-us-search-1.xml"
SIGNING = "shrink-signed"

Partition = dict[str, dict[str, str]]  # level -> item key -> cluster id


@dataclass(frozen=True)
class Run:
    name: str
    files: tuple[str, ...]
    partition: Partition
    failed: tuple[str, ...]
    seconds: float
    source_of: Mapping[str, str]  # file name -> source URL


def fixture_paths(names: Sequence[str] | None = None) -> list[Path]:
    root = feeds_dir()
    if names:
        return [root / n if (root / n).exists() else root / "hostile" / n for n in names]
    return sorted(
        p
        for p in [*root.iterdir(), *(root / "hostile").iterdir()]
        if p.is_file() and p.suffix in (".xml", ".html")
    )


def orders(paths: Sequence[Path], shuffles: int, seed: int) -> list[tuple[str, list[Path]]]:
    """Alphabetical (by file name), reverse, and seeded shuffles."""
    alpha = sorted(paths, key=lambda p: p.name)
    out = [("alphabetical", alpha), ("reverse", alpha[::-1])]
    for k in range(shuffles):
        shuffled = list(alpha)
        random.Random(seed + k).shuffle(shuffled)
        out.append((f"shuffle-{seed + k}", shuffled))
    return out


def _cli(config: Path, db_url: str, *args: str) -> int:
    from aggregator.cli import main

    os.environ["AGGREGATOR_DATABASE_URL"] = db_url
    with contextlib.redirect_stderr(io.StringIO()):
        rc = main(["-q", "--config", str(config), *args], out=io.StringIO())
    logging.getLogger().handlers.clear()
    return rc


def import_in_order(
    name: str,
    paths: Sequence[Path],
    workdir: Path,
    *,
    batch: bool = False,
    config: Path | None = None,
) -> Run:
    """Import ``paths`` in this order into a fresh SQLite store with ``aggregator import``
    and read back every item's clusters."""
    config = config or REPO / "config.yaml"
    db = workdir / f"{name}.sqlite"
    db.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    saved = os.environ.get("AGGREGATOR_DATABASE_URL")
    t0 = time.perf_counter()
    try:
        if _cli(config, url, "db", "upgrade") != 0:
            raise RuntimeError("db upgrade failed")
        failed = []
        if batch:
            _cli(config, url, "import", *map(str, paths))
        else:
            for p in paths:
                if _cli(config, url, "import", str(p)) != 0:
                    failed.append(p.name)
        seconds = time.perf_counter() - t0
        partition, source_of = read_partition(url, paths)
    finally:
        if saved is None:
            os.environ.pop("AGGREGATOR_DATABASE_URL", None)
        else:
            os.environ["AGGREGATOR_DATABASE_URL"] = saved
    if batch:
        failed = [p.name for p in paths if p.name not in source_of]
    return Run(name, tuple(p.name for p in paths), partition, tuple(failed), seconds, source_of)


def read_partition(db_url: str, paths: Sequence[Path]) -> tuple[Partition, dict[str, str]]:
    """Every clustered item's cluster per level, keyed ``SOURCE_URL#GUID`` (the same in every
    order), with merged clusters followed to their survivor; and each file's source URL."""
    from sqlalchemy import select

    from aggregator.store import open_store
    from aggregator.store.clusters import survivor
    from aggregator.store.models import Cluster, ClusterMember, Feed, Item, PollLog, Source

    store = open_store(db_url)
    try:
        with store.session() as s:
            into = dict(s.execute(select(Cluster.id, Cluster.merged_into_id)).all())

            rows = s.execute(
                select(Source.url, Item.guid, ClusterMember.level, ClusterMember.cluster_id)
                .join(Item, Item.id == ClusterMember.item_id)
                .join(Source, Source.id == Item.source_id)
            ).all()
            partition: Partition = {lv: {} for lv in LEVELS}
            for src, guid, level, cid in rows:
                partition[level][f"{src}#{guid}"] = str(survivor(cid, into))
            # which source each file went to: derived sources are never polled, so their one
            # poll_log row per import names the file only through its order; match by URL
            urls = [u for (u,) in s.execute(select(Source.url).join(Feed).join(PollLog)).all()]
    finally:
        store.close()
    return partition, _sources_of(paths, set(urls))


def _sources_of(paths: Sequence[Path], urls: set[str]) -> dict[str, str]:
    """The source URL ``aggregator import`` derives for each file (the same function)."""
    from aggregator.errors import SourceError
    from aggregator.importer import _derived_url
    from aggregator.parser import parse_feed

    out = {}
    for p in paths:
        try:
            url = _derived_url(parse_feed(p.read_bytes(), url=p.resolve().as_uri()), p)
        except SourceError:
            continue
        if url in urls:
            out[p.name] = url
    return out


def ari(a: Mapping[str, str], b: Mapping[str, str]) -> float:
    """Adjusted Rand index of two partitions of the same keys (1.0 = identical)."""
    keys = list(a)
    n = len(keys)
    if n < 2:
        return 1.0

    def c2(x: int) -> float:
        return x * (x - 1) / 2

    joint = Counter((a[k], b[k]) for k in keys)
    sa = sum(c2(v) for v in Counter(a.values()).values())
    sb = sum(c2(v) for v in Counter(b.values()).values())
    index = sum(c2(v) for v in joint.values())
    expected = sa * sb / c2(n)
    top = (sa + sb) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


@dataclass(frozen=True)
class Agreement:
    bcubed_f1: float
    ari: float
    items: int
    only_one: int  # items clustered in one run and absent from the other


def agreement(a: Mapping[str, str], b: Mapping[str, str]) -> Agreement:
    common = {k for k in a if k in b}
    pa = {k: a[k] for k in common}
    pb = {k: b[k] for k in common}
    return Agreement(score(pa, pb).bcubed_f1, ari(pa, pb), len(common), len(set(a) ^ set(b)))


def signing_keys(source_url: str) -> set[str]:
    """Keys of the items labelled as the Bears Ears signing story."""
    path = LABEL_DIR / (BEARS_EARS.removesuffix(".xml") + ".labels.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return {f"{source_url}#{r['guid']}" for r in rows if r["story"] == SIGNING}


def bears_ears_story(run: Run) -> tuple[int, int, int, int]:
    """(size of the largest story holding a Bears Ears item, Bears Ears items in it, labelled
    signing items in it, signing items stored); zeros when the feed was not imported."""
    src = run.source_of.get(BEARS_EARS)
    if src is None:
        return 0, 0, 0, 0
    stories = run.partition["story"]
    mine = [k for k in stories if k.startswith(f"{src}#")]
    if not mine:
        return 0, 0, 0, 0
    counts = Counter(stories[k] for k in mine)
    best, in_best = counts.most_common(1)[0]
    size = sum(1 for cid in stories.values() if cid == best)
    signing = signing_keys(src)
    return (
        size,
        in_best,
        sum(1 for k in signing if stories.get(k) == best),
        len(signing & set(stories)),
    )


def gold_of(run: Run) -> dict[str, dict[str, str]]:
    """The labels of tests/data/feeds/ for the labelled files this run imported, keyed as the
    run's partition is (level -> key -> gold cluster)."""
    from aggregator.dedup.evaluate import LABEL_KEYS
    from tests.data.feed_corpus import labelled, read_labels

    gold: dict[str, dict[str, str]] = {lv: {} for lv in LEVELS}
    for file, labs in read_labels().items():
        src = run.source_of.get(file)
        if src is None:
            continue
        _, rows = labelled(file, labs)
        for g in rows:
            key = f"{src}#{g['id'].split('#', 1)[1]}"
            for lv in LEVELS:
                gold[lv][key] = g[LABEL_KEYS[lv]]
    return gold


def report_runs(runs: Sequence[Run]) -> None:
    print(
        f"{'order':15} {'time s':>7} {'failed':>6}  {'clusters d/s/t':16} "
        "Bears Ears story: size, its items, signing items/stored   vs labels: dup / story B3 F1"
    )
    for r in runs:
        counts = "/".join(str(len(set(r.partition[lv].values()))) for lv in LEVELS)
        size, mine, signing, kept = bears_ears_story(r)
        gold = gold_of(r)
        stored = {k for k in gold["story"] if k in r.partition["story"]}
        vs = " / ".join(
            f"{score({k: r.partition[lv][k] for k in stored}, {k: gold[lv][k] for k in stored}).bcubed_f1:.3f}"
            for lv in ("duplicate", "story")
        )
        vs += f"  ({len(stored)} of {len(gold['story'])} labelled items stored)"
        print(
            f"{r.name:15} {r.seconds:7.1f} {len(r.failed):6d}  {counts:16} "
            f"{size:4d} {mine:4d} {signing:4d}/{kept:<4d}{'':15}{vs}"
        )
    print()
    print("pairwise agreement between orders (BCubed F1 / adjusted Rand), items compared")
    for level in LEVELS:
        cells = []
        worst = 1.0
        for a, b in combinations(runs, 2):
            ag = agreement(a.partition[level], b.partition[level])
            worst = min(worst, ag.bcubed_f1)
            cells.append(
                f"  {a.name} vs {b.name}: {ag.bcubed_f1:.3f} / {ag.ari:.3f} (n={ag.items}, differing membership {ag.only_one})"
            )
        print(f"{level}: worst BCubed F1 {worst:.3f}")
        print("\n".join(cells))


def corpus_variants(rows: list[dict], shuffles: int, seed: int) -> list[tuple[str, list[dict]]]:
    """Shuffled copies of ``rows``: as given, all ``published`` tied, all undated."""
    tied = [{**r, "published": "2026-01-01T00:00:00+00:00"} for r in rows]
    undated = [{k: v for k, v in r.items() if k != "published"} for r in rows]
    out = []
    for label, base in (("as given", rows), ("all tied", tied), ("all undated", undated)):
        for k in range(shuffles):
            shuffled = list(base)
            random.Random(seed + k).shuffle(shuffled)
            out.append((f"{label} shuffle-{seed + k}", shuffled))
    return out


def cluster_file_partition(rows: list[dict]) -> Partition:
    from aggregator.dedup.clusterfile import cluster_rows

    pred, _ = cluster_rows(rows, Path("<shuffled>"))
    return {lv: {p["id"]: p[lv] for p in pred} for lv in LEVELS}


def report_corpus(name: str, rows: list[dict], shuffles: int, seed: int) -> None:
    print(f"== cluster-file on {name} ({len(rows)} items), each variant vs its first shuffle")
    variants = corpus_variants(rows, shuffles, seed)
    firsts: dict[str, Partition] = {}
    for vname, vrows in variants:
        label = vname.rsplit(" ", 1)[0]
        part = cluster_file_partition(vrows)
        ref = firsts.setdefault(label, part)
        cells = "  ".join(
            f"{lv} {agreement(part[lv], ref[lv]).bcubed_f1:.3f}/{agreement(part[lv], ref[lv]).ari:.3f}"
            for lv in LEVELS
        )
        stories = Counter(part["story"].values())
        print(f"  {vname:28} {cells}   largest story {max(stories.values())}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shuffles", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", action="store_true", help="one import call of all files per order")
    ap.add_argument("--files", nargs="*", help="fixture file names (default: all)")
    ap.add_argument("--corpus", action="store_true", help="cluster-file with shuffled input lines")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)

    if args.corpus:
        from aggregator.dedup.evaluate import read_jsonl
        from tests.data.feed_corpus import corpus

        report_corpus(
            "tests/data/dev.jsonl",
            read_jsonl(REPO / "tests/data/dev.jsonl"),
            args.shuffles,
            args.seed,
        )
        report_corpus("labelled real feeds", corpus()[0], args.shuffles, args.seed)
        return 0

    paths = fixture_paths(args.files)
    with tempfile.TemporaryDirectory(prefix="order-") as tmp:
        runs = [
            import_in_order(name, ps, Path(tmp), batch=args.batch)
            for name, ps in orders(paths, args.shuffles, args.seed)
        ]
    if runs[0].failed:
        print(f"not imported (every order): {', '.join(sorted(runs[0].failed))}\n")
    report_runs(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
