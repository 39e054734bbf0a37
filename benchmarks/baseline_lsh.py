"""The "obvious version": datasketch MinHash LSH over the raw text, one level for all three.

This is the baseline the clustering engine is compared against (DESIGN.md, "Near-duplicate
clustering: why raw MinHash fails here"). It deliberately does what a first attempt would:

* text = title + summary + text, as given (site chrome included), lowercased and split on
  whitespace; shingles are word 3-grams (an item with 1-2 tokens has its whole token sequence as
  its one shingle; an item with no tokens stays a singleton and is never inserted);
* one ``datasketch.MinHash`` per item, ``update()`` called once per shingle;
* one ``datasketch.MinHashLSH`` at ``--threshold``; every candidate pair it returns is merged
  (union-find), with no verification of the actual similarity;
* the resulting cluster id is written for ``duplicate``, ``story`` and ``thread`` alike.

Input and output follow the ``cluster-file`` contract (DESIGN.md)::

    python benchmarks/baseline_lsh.py IN.jsonl -o OUT.jsonl [--threshold 0.5] [--num-perm 128]
    python benchmarks/baseline_lsh.py IN.jsonl --labels LABELS.jsonl    # print the eval table

With ``--labels`` the scores are printed (``-o`` is then optional). Timing goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasketch import MinHash, MinHashLSH

from aggregator.dedup.evaluate import evaluate, format_table, read_jsonl
from aggregator.errors import AggregatorError


def raw_text(row: dict[str, Any]) -> str:
    return " ".join(str(row.get(key) or "") for key in ("title", "summary", "text"))


def shingles(text: str, k: int = 3) -> set[str]:
    tokens = text.lower().split()
    if not tokens:
        return set()
    if len(tokens) < k:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + k]) for i in range(len(tokens) - k + 1)}


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # the smaller index stays root, so cluster ids are the first member's id
            self.parent[max(ra, rb)] = min(ra, rb)


def cluster(rows: Sequence[dict[str, Any]], threshold: float, num_perm: int) -> list[str]:
    """One cluster id per row: the id of the cluster's first member (input order)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sketches: dict[int, MinHash] = {}
    for index, row in enumerate(rows):
        sh = shingles(raw_text(row))
        if not sh:
            continue
        m = MinHash(num_perm=num_perm)
        for s in sh:
            m.update(s.encode("utf-8"))
        lsh.insert(index, m)
        sketches[index] = m

    uf = UnionFind(len(rows))
    for index, m in sketches.items():
        for other in lsh.query(m):
            uf.union(index, other)
    return [str(rows[uf.find(i)]["id"]) for i in range(len(rows))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="items, cluster-file input format (JSONL)")
    parser.add_argument("-o", "--output", type=Path, help="write cluster-file output here")
    parser.add_argument("--threshold", type=float, default=0.5, help="LSH Jaccard threshold")
    parser.add_argument("--num-perm", type=int, default=128, help="MinHash permutations")
    parser.add_argument("--labels", type=Path, help="score against these labels and print")
    args = parser.parse_args(argv)
    if args.output is None and args.labels is None:
        parser.error("give -o OUTPUT and/or --labels LABELS")

    try:
        rows = read_jsonl(args.input)
        seen: set[str] = set()
        for n, row in enumerate(rows, start=1):
            if "id" not in row:
                raise AggregatorError(f"{args.input} row {n}: no 'id'")
            if str(row["id"]) in seen:
                raise AggregatorError(f"{args.input} row {n}: duplicate id {row['id']!r}")
            seen.add(str(row["id"]))

        started = time.perf_counter()
        ids = cluster(rows, args.threshold, args.num_perm)
        elapsed = time.perf_counter() - started
        out = [
            {"id": row["id"], "duplicate": cid, "story": cid, "thread": cid}
            for row, cid in zip(rows, ids, strict=True)
        ]
        print(
            f"{len(rows)} items -> {len(set(ids))} clusters in {elapsed:.2f}s "
            f"(threshold {args.threshold}, num_perm {args.num_perm})",
            file=sys.stderr,
        )

        if args.output is not None:
            with args.output.open("w", encoding="utf-8") as fh:
                for obj in out:
                    fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        if args.labels is not None:
            results = evaluate(
                out,
                read_jsonl(args.labels),
                pred_name="baseline output",
                labels_name=str(args.labels),
            )
            print(format_table(results))
    except AggregatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
