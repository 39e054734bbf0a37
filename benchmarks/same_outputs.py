"""Write every output a refactor must not change, so two runs can be compared byte for byte.

    python benchmarks/same_outputs.py OUTDIR
    diff -r BEFORE_DIR AFTER_DIR          # empty: the refactor changed nothing observable

OUTDIR gets:

* ``dev.jsonl``, ``test.jsonl``: ``aggregator cluster-file`` on the labelled corpora
  (tests/data), with their ``aggregator eval`` scores in ``*.eval.txt``;
* ``feeds.jsonl``: ``cluster-file`` on every non-hostile fixture document as
  tests/data/feed_corpus.py turns it into items (parse, detect the source type, normalise);
* ``import.jsonl``: every fixture document (hostile/ included) imported file by file,
  alphabetically, into a fresh SQLite store with ``aggregator import``; then every stored
  item's columns (minus the fetch time and row ids) and its clusters per level, written as
  the set of the other members' keys, so row ids do not matter;
* ``signatures.jsonl``: each stored item's signature bytes and features per level, by key.

Fetch times (and the published times estimated from them) and file paths differ between
runs, so they are left out; everything else is
written in a fixed order.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.order import fixture_paths, import_in_order  # noqa: E402

ITEM_COLUMNS = (
    "kind",
    "guid",
    "url",
    "canonical_url",
    "title",
    "publisher",
    "publisher_url",
    "author",
    "summary",
    "text",
    "lang",
    "published_at",
    "published_at_estimated",
    "content_hash",
    "comments_feed_url",
    "dedup_state",
    "entry_hash",
    "update_count",
)


def _cli(*args: str) -> str:
    from aggregator.cli import main

    out = io.StringIO()
    with contextlib.redirect_stderr(io.StringIO()):
        rc = main(["-q", *args], out=out)
    if rc != 0:
        raise RuntimeError(f"aggregator {' '.join(args)} exited {rc}")
    return out.getvalue()


def corpora(out: Path) -> None:
    data = REPO / "tests" / "data"
    for split in ("dev", "test"):
        _cli("cluster-file", str(data / f"{split}.jsonl"), "-o", str(out / f"{split}.jsonl"))
        scores = _cli("eval", str(out / f"{split}.jsonl"), str(data / f"{split}.labels.jsonl"))
        (out / f"{split}.eval.txt").write_text(scores, encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, str(data / "feed_corpus.py"), tmp, "--all"],
            check=True,
            capture_output=True,
        )
        _cli("cluster-file", str(Path(tmp) / "IN.jsonl"), "-o", str(out / "feeds.jsonl"))


def imports(out: Path) -> None:
    from sqlalchemy import select

    from aggregator.store import open_store
    from aggregator.store.clusters import survivor
    from aggregator.store.models import Cluster, ClusterMember, Item, Signature, Source

    with tempfile.TemporaryDirectory() as tmp:
        run = import_in_order("alpha", fixture_paths(), Path(tmp))
        store = open_store(f"sqlite:///{Path(tmp) / 'alpha.sqlite'}")
        try:
            with store.session() as s:
                into = dict(s.execute(select(Cluster.id, Cluster.merged_into_id)).all())

                key_of = {}
                rows = {}
                for item, src in s.execute(select(Item, Source.url).join(Source)).all():
                    key = f"{src}#{item.guid}#{item.kind}"
                    key_of[item.id] = key
                    rows[key] = {c: _plain(getattr(item, c)) for c in ITEM_COLUMNS}
                    if item.published_at_estimated:  # the fetch time, different every run
                        rows[key]["published_at"] = "estimated"
                groups: dict[tuple[str, int], set[str]] = defaultdict(set)
                member_of: dict[tuple[str, str], tuple[str, int]] = {}
                for item_id, level, cid in s.execute(
                    select(ClusterMember.item_id, ClusterMember.level, ClusterMember.cluster_id)
                ).all():
                    g = (level, survivor(cid, into))
                    groups[g].add(key_of[item_id])
                    member_of[(key_of[item_id], level)] = g
                for (key, level), g in member_of.items():
                    rows[key][f"with_{level}"] = sorted(groups[g] - {key})
                sigs = []
                for item_id, level, hv, features in s.execute(
                    select(
                        Signature.item_id, Signature.level, Signature.hashvalues, Signature.features
                    )
                ).all():
                    sigs.append(
                        {
                            "key": key_of[item_id],
                            "level": level,
                            "sha256": hashlib.sha256(hv).hexdigest(),
                            "features": features,
                        }
                    )
        finally:
            store.close()
    with (out / "import.jsonl").open("w", encoding="utf-8") as f:
        f.write(json.dumps({"failed": sorted(run.failed)}) + "\n")
        for key in sorted(rows):
            f.write(
                json.dumps({"key": key, **rows[key]}, ensure_ascii=False, sort_keys=True) + "\n"
            )
    with (out / "signatures.jsonl").open("w", encoding="utf-8") as f:
        for row in sorted(sigs, key=lambda r: (r["key"], r["level"])):
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def _plain(value: object) -> object:
    return value.isoformat() if hasattr(value, "isoformat") else value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    args = ap.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    os.environ.pop("AGGREGATOR_DATABASE_URL", None)
    corpora(args.outdir)
    imports(args.outdir)
    print(f"wrote {', '.join(sorted(p.name for p in args.outdir.iterdir()))} to {args.outdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
