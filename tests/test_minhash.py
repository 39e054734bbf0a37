"""Our array MinHash equals datasketch's ``MinHash.update_batch`` value for value, so stored
signatures and band keys made either way agree."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash

from aggregator.dedup import minhash
from aggregator.dedup.minhash import EMPTY, signature, signatures
from aggregator.dedup.text import shingles, tokens
from aggregator.parser import parse_feed

DATA = Path(__file__).resolve().parent / "data"

ALPHABET = "abcdefghijklmnopqrstuvwxyz äöüßéçñ ЖЯ 東京 🙂 0123456789 -'"


def _datasketch(values, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed)
    m.update_batch([v.encode() for v in values])
    return m.hashvalues


def _token(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 25)))


def _groups(rng: random.Random, n: int) -> list[set[str]]:
    sizes = [0, 1, 2, 3, 30, 500, minhash.CHUNK, minhash.CHUNK + 1, 2 * minhash.CHUNK + 7]
    sizes += [rng.randint(0, 800) for _ in range(n - len(sizes))]
    return [{_token(rng) for _ in range(size)} for size in sizes]


@pytest.mark.parametrize(("num_perm", "seed"), [(128, 1), (16, 1), (256, 7), (100, 42)])
def test_equals_datasketch_over_random_sets(num_perm: int, seed: int) -> None:
    groups = _groups(random.Random(num_perm * seed), 40)
    ours = signatures(groups, num_perm, seed)
    assert ours.dtype == np.uint32 and ours.shape == (len(groups), num_perm)
    for group, sig in zip(groups, ours, strict=True):
        theirs = _datasketch(group, num_perm, seed)
        assert theirs.dtype == np.uint32
        assert np.array_equal(sig, theirs), f"{len(group)} values"
        assert np.array_equal(signature(group, num_perm, seed), theirs)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_every_chunk_of_a_group_counts(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Long groups are permuted a chunk at a time; small chunks put every value near a seam."""
    monkeypatch.setattr(minhash, "CHUNK", chunk)
    rng = random.Random(chunk)
    groups = [{_token(rng) for _ in range(rng.randint(0, 20))} for _ in range(200)]
    for group, sig in zip(groups, signatures(groups, 32, 1), strict=True):
        assert np.array_equal(sig, _datasketch(group, 32, 1))


def test_empty_group_is_an_untouched_minhash() -> None:
    assert np.array_equal(signature((), 128, 1), MinHash(num_perm=128, seed=1).hashvalues)
    assert np.array_equal(signature([], 64, 1), np.full(64, EMPTY, dtype=np.uint32))
    assert signatures([], 128, 1).shape == (0, 128)


def test_repeated_values_and_order_do_not_matter() -> None:
    values = ["a b c", "b c d", "ünï cödé", "a b c"]
    want = _datasketch(values)
    assert np.array_equal(signature(values, 128, 1), want)
    assert np.array_equal(signature(list(reversed(values)), 128, 1), want)
    assert np.array_equal(signature(set(values), 128, 1), want)


def test_equals_datasketch_over_corpus_and_fixture_shingles(feeds_dir: Path) -> None:
    texts = [
        f"{row['title']}\n{row.get('text') or row.get('summary') or ''}"
        for split in ("dev", "test")
        for row in map(json.loads, (DATA / f"{split}.jsonl").read_text("utf-8").splitlines())
    ]
    for path in sorted(feeds_dir.glob("*.xml")):
        feed = parse_feed(path.read_bytes(), url="https://example.org/feed/")
        texts += [f"{e.title}\n{e.summary_html}\n{e.content_html}" for e in feed.entries]
    groups = [shingles(tokens(t)) for t in texts]
    assert len(groups) > 500 and sum(map(len, groups)) > 100_000
    for group, sig in zip(groups, signatures(groups, 128, 1), strict=True):
        assert np.array_equal(sig, _datasketch(group))


def test_datasketch_takes_them_as_its_own() -> None:
    """Stored as datasketch keeps them: a MinHash (and LeanMinHash bytes) from our values
    estimates as the one datasketch made."""
    a = [f"w{i} w{i + 1} w{i + 2}" for i in range(300)]
    b = a[100:] + [f"x{i}" for i in range(100)]
    mine = [MinHash(hashvalues=signature(v, 128, 1), seed=1, scheme=minhash.SCHEME) for v in (a, b)]
    theirs = []
    for v in (a, b):
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([x.encode() for x in v])
        theirs.append(m)
    assert mine[0].jaccard(mine[1]) == theirs[0].jaccard(theirs[1])
    assert mine[0].jaccard(theirs[1]) == theirs[0].jaccard(theirs[1])
    lean = [LeanMinHash(m) for m in (mine[0], theirs[0])]
    buffers = [bytearray(m.bytesize()) for m in lean]
    for m, buf in zip(lean, buffers, strict=True):
        m.serialize(buf)
    assert buffers[0] == buffers[1]


def test_permutations_are_datasketchs_and_read_only() -> None:
    a, b = minhash.permutations(128, 1)
    want = MinHash(num_perm=128, seed=1).permutations
    assert np.array_equal(a[:, 0], want[0]) and np.array_equal(b[:, 0], want[1])
    with pytest.raises(ValueError):
        a[0, 0] = 3
