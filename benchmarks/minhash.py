"""Per-item cost of an item's MinHash signatures: datasketch's objects against ours.

    python benchmarks/minhash.py [--rounds 15]

Over the labelled corpora (tests/data, items with 20 tokens or more), each item's two
signatures as the engine makes them: its word 3-shingles and its first 30 distinct tokens
(as many values as its story terms). ``datasketch`` is what the engine did first: a
``MinHash`` per signature from shared permutations, its ``update_batch`` of the encoded
shingle strings (SHA-1 each). ``ours`` is what it does now, from the tokens: their 64-bit
hashes (a bounded cache, warm after the first round, as in a daemon), the shingle hashes
mixed from them, :func:`~aggregator.dedup.minhash.signatures` (datasketch's permutations
over the hashes' high half); ``ours: hashing alone`` the part before the permutations. The
variants run interleaved round by round and each prints its best round (CPU time), so load
on the machine shifts them alike.
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
from aggregator.dedup.minhash import (  # noqa: E402
    high32,
    signatures,
    text_shingles,
    token_hashes,
)
from aggregator.dedup.text import shingles, tokens  # noqa: E402

NUM_PERM = 128


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)

    groups: list[tuple[list[str], list[str]]] = []
    for split in ("dev", "test"):
        for line in (REPO / "tests" / "data" / f"{split}.jsonl").read_text("utf-8").splitlines():
            row = json.loads(line)
            toks = tokens(f"{row['title']}\n{row.get('text') or row.get('summary') or ''}")
            if len(toks) >= 20:
                groups.append((toks, list(dict.fromkeys(toks))[:30]))
    template = MinHash(num_perm=NUM_PERM, seed=SEED)

    def datasketch_sig(values: set[str] | list[str]) -> np.ndarray:
        m = MinHash(NUM_PERM, seed=SEED, permutations=template.permutations, scheme=template.scheme)
        m.update_batch([v.encode() for v in values])
        return m.hashvalues.astype(np.uint32)

    def ours(toks: list[str], terms: list[str]) -> np.ndarray:
        return signatures([text_shingles(toks), token_hashes(terms)], NUM_PERM, SEED)

    variants: dict[str, Callable[[], object]] = {
        "datasketch": lambda: [(datasketch_sig(shingles(s)), datasketch_sig(t)) for s, t in groups],
        "ours": lambda: [ours(s, t) for s, t in groups],
        "ours: hashing alone": lambda: [(text_shingles(s), token_hashes(t)) for s, t in groups],
    }
    for s, _ in groups[:20]:  # datasketch's own MinHash over our hashes is ours
        m = MinHash(NUM_PERM, seed=SEED, hashfunc=high32)
        m.update_batch(text_shingles(s).view(np.uint64).tolist())
        assert np.array_equal(signatures([text_shingles(s)], NUM_PERM, SEED)[0], m.hashvalues)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(args.rounds):
        for name, fn in variants.items():
            started = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - started)
    shingled = sum(len(shingles(s)) for s, _ in groups) / len(groups)
    print(f"{len(groups)} items, {shingled:.0f} shingles + up to 30 terms each, {NUM_PERM} perms")
    print(f"{'variant':22}  {'ms/item':>7}  {'us/value':>8}")
    values = sum(len(shingles(s)) + len(t) for s, t in groups)
    for name, dt in best.items():
        print(f"{name:22}  {1000 * dt / len(groups):7.3f}  {1e6 * dt / values:8.3f}")
    print(f"ours / datasketch: {best['ours'] / best['datasketch']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
