"""Real fixture feeds as ``cluster-file`` input, with the labels of ``tests/data/feeds/``.

The feeds stay in ../shared (their content belongs to the publishers); only labels keyed by
guid (or link) live here. Each document goes through the project's own pipeline, as
``aggregator import`` would store it: ``parse_feed`` with a ``file:`` base, the source type
from ``detect_source_type``, ``normalise_feed``. An item becomes one ``cluster-file`` row:

* ``id`` = ``FILE#GUID`` (the stored guid: the feed's guid, else the link);
* ``source`` = the publisher (Google/Bing ``<source>``), else the feed title, as the
  contract wants a publisher name; ``feed_kind`` from the detected source type;
* ``title``, ``summary``, ``text``, ``lang``, ``url`` as stored (a Google entry's text is its
  headline with the publisher suffix stripped, as the daemon keeps it);
* ``published`` only when the feed gave a date (an undated item is left undated, so
  ``cluster-file`` places it the way it places undated items, not at an invented time).

Usage::

    python tests/data/feed_corpus.py OUTDIR            # labelled feeds -> OUTDIR/IN.jsonl, LABELS.jsonl
    python tests/data/feed_corpus.py OUTDIR --all      # every non-hostile fixture in IN.jsonl
    python tests/data/feed_corpus.py --score           # cluster + score each labelled feed and all
    python tests/data/feed_corpus.py --list FILE.xml   # a numbered listing for labelling (stdout)
    python tests/data/feed_corpus.py --check           # every label matches one item and back
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LABEL_DIR = Path(__file__).resolve().parent / "feeds"
FETCHED_AT = datetime(2026, 12, 1, tzinfo=UTC)  # the "now" of undated items: never used below


def feeds_dir() -> Path:
    shared = Path(os.environ.get("NEWSDEDUP_SHARED", REPO.parent / "shared"))
    return shared / "fixtures" / "feeds"


@dataclass(frozen=True)
class FeedItem:
    """One stored item of a fixture document, with the keys a label may use."""

    file: str
    guid: str  # the stored guid (feed guid, else link, else content hash)
    link: str | None  # the entry's link as the feed gave it
    has_guid: bool
    row: dict[str, Any]  # the cluster-file input row


def read_feed(path: Path) -> list[FeedItem]:
    """Items of one fixture document, in document order (raises ``SourceError`` if bad)."""
    from aggregator.dedup.service import feed_kind
    from aggregator.normaliser import normalise_entry
    from aggregator.parser import detect_source_type, parse_feed

    feed = parse_feed(path.read_bytes(), url=path.resolve().as_uri())
    stype = detect_source_type(feed)
    kind = feed_kind(stype)
    out = []
    seen: set[str] = set()
    for entry in feed.entries:  # as normalise_feed: the first item of a guid wins
        it = normalise_entry(entry, feed=feed, source_type=stype, fetched_at=FETCHED_AT)
        if it.guid in seen:
            continue
        seen.add(it.guid)
        row: dict[str, Any] = {
            "id": f"{path.name}#{it.guid}",
            "source": it.publisher or feed.title or path.stem,
            "feed_kind": kind,
            "title": it.title,
            "summary": it.summary,
            "text": it.text,
            "url": it.url,
        }
        if it.lang:
            row["lang"] = it.lang
        if not it.published_at_estimated:
            row["published"] = it.published_at.isoformat()
        out.append(
            FeedItem(
                file=path.name,
                guid=it.guid,
                link=entry.url,
                has_guid=bool((entry.guid or "").strip()),
                row=row,
            )
        )
    return out


def fixture_files() -> list[Path]:
    """The non-hostile fixture documents, sorted by name."""
    return sorted(p for p in feeds_dir().iterdir() if p.suffix == ".xml")


def read_labels() -> dict[str, list[dict[str, Any]]]:
    """Label rows per fixture file name, from ``tests/data/feeds/*.labels.jsonl``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(LABEL_DIR.glob("*.labels.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if not ({"file", "dup_group", "story", "thread"} <= row.keys()):
                    raise ValueError(f"{path}:{n}: needs file, dup_group, story, thread")
                if ("guid" in row) == ("link" in row):
                    raise ValueError(f"{path}:{n}: needs exactly one of guid, link")
                out.setdefault(row["file"], []).append(row)
    return out


def labelled(file: str, labels: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(input rows, label rows) of one labelled file; every label must find exactly one item
    and every item must be labelled."""
    items = read_feed(feeds_dir() / file)
    by_key = {}
    for it in items:
        by_key[("guid", it.guid)] = it
        if it.link:
            by_key.setdefault(("link", it.link), it)
    rows, gold, seen = [], [], set()
    for lab in labels:
        key = ("guid", lab["guid"]) if "guid" in lab else ("link", lab["link"])
        it = by_key.get(key)
        if it is None:
            raise ValueError(f"{file}: label {key} matches no item")
        if it.row["id"] in seen:
            raise ValueError(f"{file}: two labels for {it.row['id']}")
        seen.add(it.row["id"])
        gold.append(
            {
                "id": it.row["id"],
                "dup_group": f"{file}/{lab['dup_group']}",
                "story": f"{file}/{lab['story']}",
                "thread": f"{file}/{lab['thread']}",
            }
        )
    missing = [it.row["id"] for it in items if it.row["id"] not in seen]
    if missing:
        raise ValueError(f"{file}: {len(missing)} items unlabelled, e.g. {missing[0]}")
    rows = [it.row for it in items]
    return rows, gold


def corpus(include_all: bool = False) -> tuple[list[dict], list[dict]]:
    """(IN rows, LABELS rows) of the labelled feeds (``include_all``: every fixture's items)."""
    labels = read_labels()
    rows, gold = [], []
    for file, labs in labels.items():
        r, g = labelled(file, labs)
        rows += r
        gold += g
    if include_all:
        from aggregator.errors import SourceError

        for path in fixture_files():
            if path.name in labels:
                continue
            try:
                rows += [it.row for it in read_feed(path)]
            except SourceError as exc:
                print(f"skipped {path.name}: {exc}", file=sys.stderr)
    return rows, gold


def _write(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def score_feeds() -> list[tuple[str, dict[str, Any]]]:
    """Cluster each labelled feed alone (and all of them together) as ``cluster-file`` does;
    returns (name, {level: Scores}) rows."""
    from aggregator.dedup.clusterfile import cluster_rows
    from aggregator.dedup.evaluate import evaluate

    labels = read_labels()
    parts = [(file, *labelled(file, labs)) for file, labs in labels.items()]
    every = (
        "all labelled feeds",
        [r for p in parts for r in p[1]],
        [g for p in parts for g in p[2]],
    )
    out = []
    for name, rows, gold in [*parts, every]:
        pred, _ = cluster_rows(rows, Path(name))
        out.append((name, evaluate(pred, gold)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("outdir", nargs="?", type=Path)
    ap.add_argument("--all", action="store_true", help="every non-hostile fixture in IN.jsonl")
    ap.add_argument("--score", action="store_true", help="cluster and score the labelled feeds")
    ap.add_argument("--list", metavar="FILE", help="numbered listing of one fixture feed")
    ap.add_argument("--check", action="store_true", help="validate the labels")
    args = ap.parse_args(argv)
    if args.list:
        for n, it in enumerate(read_feed(feeds_dir() / args.list)):
            r = it.row
            print(f"{n:3d} {r.get('published', '-'):25.25} {r['source'][:28]:28} {r['title']}")
        return 0
    if args.check:
        rows, gold = corpus()
        print(f"ok: {len(gold)} labelled items in {len(read_labels())} feeds")
        return 0
    if args.score:
        for name, res in score_feeds():
            cells = "  ".join(
                f"{lv} P {s.bcubed_precision:.3f} R {s.bcubed_recall:.3f} F1 {s.bcubed_f1:.3f}"
                for lv, s in res.items()
            )
            print(f"{name:45} n={res['story'].items:3d}  {cells}")
        return 0
    if args.outdir is None:
        ap.error("OUTDIR, --score, --list or --check is required")
    args.outdir.mkdir(parents=True, exist_ok=True)
    rows, gold = corpus(include_all=args.all)
    _write(args.outdir / "IN.jsonl", rows)
    _write(args.outdir / "LABELS.jsonl", gold)
    print(f"{len(rows)} items, {len(gold)} labelled -> {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
