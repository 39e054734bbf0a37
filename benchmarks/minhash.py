"""Per-item cost of an item's MinHash signatures: datasketch's objects against ours.

    python benchmarks/minhash.py [--rounds 15]

Over the labelled corpora (tests/data, items with 20 tokens or more), each item's two
signatures as the engine makes them: its word 3-shingles and its first 30 distinct tokens
(as many values as its story terms). ``datasketch`` is what the engine did before
``aggregator/dedup/minhash.py``: a ``MinHash`` per signature from shared permutations, its
``update_batch`` of the encoded values. ``ours`` is :func:`~aggregator.dedup.minhash.signatures`;
``ours: hashing alone`` its SHA-1 part. The variants run interleaved round by round and
each prints its best round (CPU time), so load on the machine shifts them alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datasketch import MinHash  # noqa: E402

from aggregator.dedup.engine import SEED  # noqa: E402
from aggregator.dedup.minhash import signatures, value_hashes  # noqa: E402
from aggregator.dedup.text import shingles, tokens  # noqa: E402

NUM_PERM = 128


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)

    groups: list[tuple[set[str], list[str]]] = []
    for split in ("dev", "test"):
        for line in (REPO / "tests" / "data" / f"{split}.jsonl").read_text("utf-8").splitlines():
            row = json.loads(line)
            toks = tokens(f"{row['title']}\n{row.get('text') or row.get('summary') or ''}")
            if len(toks) >= 20:
                groups.append((shingles(toks), list(dict.fromkeys(toks))[:30]))
    template = MinHash(num_perm=NUM_PERM, seed=SEED)

    def datasketch_sig(values: set[str] | list[str]) -> np.ndarray:
        m = MinHash(NUM_PERM, seed=SEED, permutations=template.permutations, scheme=template.scheme)
        m.update_batch([v.encode() for v in values])
        return m.hashvalues.astype(np.uint32)

    variants: dict[str, Callable[[], object]] = {
        "datasketch": lambda: [(datasketch_sig(s), datasketch_sig(t)) for s, t in groups],
        "ours": lambda: [signatures([s, t], NUM_PERM, SEED) for s, t in groups],
        "ours: hashing alone": lambda: [value_hashes([*s, *t]) for s, t in groups],
    }
    for s, t in groups[:20]:
        assert np.array_equal(signatures([s, t], NUM_PERM, SEED)[0], datasketch_sig(s))
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(args.rounds):
        for name, fn in variants.items():
            started = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - started)
    shingled = sum(len(s) for s, _ in groups) / len(groups)
    print(f"{len(groups)} items, {shingled:.0f} shingles + up to 30 terms each, {NUM_PERM} perms")
    print(f"{'variant':22}  {'ms/item':>7}  {'us/value':>8}")
    values = sum(len(s) + len(t) for s, t in groups)
    for name, dt in best.items():
        print(f"{name:22}  {1000 * dt / len(groups):7.3f}  {1e6 * dt / values:8.3f}")
    print(f"ours / datasketch: {best['ours'] / best['datasketch']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
