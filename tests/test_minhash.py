"""Signatures from 64-bit token hashes: stable across processes, exactly datasketch's
``affine32`` MinHash over those hashes (so stored and indexed in its form), and shingle
hashes that are a function of the shingle's tokens in order and nothing else."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.dedup import minhash
from aggregator.dedup.minhash import (
    EMPTY,
    hash64,
    high32,
    permuted_min,
    premixed,
    shingle_hashes,
    signature,
    signatures,
    text_shingles,
    token_hashes,
)
from aggregator.dedup.text import shingles, tokens

DATA = Path(__file__).resolve().parent / "data"
REPO = DATA.parents[1]

ALPHABET = "abcdefghijklmnopqrstuvwxyz äöüßéçñ ЖЯ 東京 🙂 0123456789 -'"
WORDS = st.text(alphabet="abcäöüß東🙂0", min_size=1, max_size=6)


def _datasketch(hashes: np.ndarray, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """datasketch's own MinHash over the same 64-bit value hashes, reading their high half."""
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=high32)
    m.update_batch([int(h) for h in np.asarray(hashes).view(np.uint64)])
    return m.hashvalues


def _token(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 25)))


def _hash_groups(rng: random.Random, n: int) -> list[np.ndarray]:
    sizes = [0, 1, 2, 3, 30, 500, minhash.CHUNK, minhash.CHUNK + 1, 2 * minhash.CHUNK + 7]
    sizes += [rng.randint(0, 800) for _ in range(n - len(sizes))]
    return [np.array([rng.getrandbits(64) for _ in range(size)], dtype=np.uint64) for size in sizes]


def test_a_token_hash_is_blake2b_and_the_same_in_every_process() -> None:
    """No PYTHONHASHSEED dependence: two interpreters with different hash seeds agree."""
    words = ["Bundestag", "straße", "東京", "🙂", "2026", "o'neill"]
    want = [
        int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little") for w in words
    ]
    assert [hash64(w) for w in words] == want == token_hashes(words).tolist()
    code = (
        "import json, sys; from aggregator.dedup.minhash import text_shingles, token_hashes;"
        "w = json.loads(sys.argv[1]);"
        "print(json.dumps([token_hashes(w).tolist(), text_shingles(w).tolist()]))"
    )
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        run = subprocess.run(
            [sys.executable, "-c", code, json.dumps(words)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outs.append(json.loads(run.stdout))
    assert outs[0] == outs[1]
    assert outs[0] == [token_hashes(words).tolist(), text_shingles(words).tolist()]


def test_pinned_values_do_not_drift() -> None:
    """Stored signatures are compared with new ones: these exact values must not change
    without a migration re-signing the store (as 0013 did)."""
    assert hash64("news") == 0xD17392DCD32E66AD
    assert text_shingles(["a", "b", "c", "d"]).tolist() == [
        -976813245208764660,
        3907617295943428891,
    ]
    assert signature(token_hashes(["news", "dedup"]), 4, 1).tolist() == [
        321391702,
        1472625732,
        1974156520,
        1303850130,
    ]


def test_the_token_cache_is_bounded_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minhash, "TOKEN_CACHE", 50)
    monkeypatch.setattr(minhash, "_token_hash", {})
    words = [f"w{i}" for i in range(500)]
    for start in range(0, 500, 7):
        got = token_hashes(words[start : start + 40]).tolist()
        assert got == [hash64(w) for w in words[start : start + 40]]
        assert len(minhash._token_hash) <= 50
    assert token_hashes([]).dtype == np.uint64 and len(token_hashes([])) == 0


@pytest.mark.parametrize(("num_perm", "seed"), [(128, 1), (16, 1), (256, 7), (100, 42)])
def test_our_permutations_equal_datasketchs_over_the_same_hashes(num_perm: int, seed: int) -> None:
    """The permutation step is datasketch's affine32 one, over the high half of our hashes."""
    groups = _hash_groups(random.Random(num_perm * seed), 30)
    ours = signatures(groups, num_perm, seed)
    assert ours.dtype == np.uint32 and ours.shape == (len(groups), num_perm)
    for group, sig in zip(groups, ours, strict=True):
        theirs = _datasketch(group, num_perm, seed)
        assert np.array_equal(sig, theirs), f"{len(group)} values"
        assert np.array_equal(signature(group.view(np.int64), num_perm, seed), theirs)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_every_chunk_of_a_group_counts(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Long groups are permuted a chunk at a time; small chunks put every value near a seam."""
    monkeypatch.setattr(minhash, "CHUNK", chunk)
    rng = random.Random(chunk)
    groups = [
        np.array([rng.getrandbits(64) for _ in range(rng.randint(0, 20))], dtype=np.uint64)
        for _ in range(100)
    ]
    for group, sig in zip(groups, signatures(groups, 32, 1), strict=True):
        assert np.array_equal(sig, _datasketch(group, 32, 1))


def test_empty_group_is_an_untouched_minhash() -> None:
    empty = np.zeros(0, dtype=np.uint64)
    assert np.array_equal(signature(empty, 128, 1), MinHash(num_perm=128, seed=1).hashvalues)
    assert np.array_equal(signature(empty, 64, 1), np.full(64, EMPTY, dtype=np.uint32))
    assert signatures([], 128, 1).shape == (0, 128)


def test_the_corpus_signatures_are_datasketchs_over_our_shingle_hashes() -> None:
    texts = [
        f"{row['title']}\n{row.get('text') or row.get('summary') or ''}"
        for row in map(json.loads, (DATA / "test.jsonl").read_text("utf-8").splitlines())
    ]
    groups = [text_shingles(tokens(t)) for t in texts]
    assert len(groups) > 100
    for group, sig in zip(groups, signatures(groups, 128, 1), strict=True):
        assert np.array_equal(sig, _datasketch(group))


def test_shingle_hashes_follow_the_shingle_strings() -> None:
    """One distinct hash per distinct shingle string over the corpus (no collisions), and
    equal strings (wherever they occur) get equal hashes: the sets compare as the strings'."""
    by_string: dict[str, int] = {}
    for row in map(json.loads, (DATA / "dev.jsonl").read_text("utf-8").splitlines()):
        toks = tokens(f"{row['title']}\n{row.get('text') or ''}")
        if len(toks) < 3:
            continue
        hashes = shingle_hashes(token_hashes(toks)).view(np.int64).tolist()
        strings = [" ".join(toks[i : i + 3]) for i in range(len(toks) - 2)]
        for s, h in zip(strings, hashes, strict=True):
            assert by_string.setdefault(s, h) == h
        assert len(text_shingles(toks)) == len(shingles(toks))
    assert len(by_string) > 10_000
    assert len(set(by_string.values())) == len(by_string)


def test_a_short_text_is_one_shingle_of_all_its_tokens() -> None:
    assert len(text_shingles(["one"])) == 1 and len(text_shingles(["one", "two"])) == 1
    assert len(text_shingles([])) == 0
    assert text_shingles(["one", "two"]).tolist() != text_shingles(["two", "one"]).tolist()
    assert text_shingles(["a", "b"]).tolist() != text_shingles(["a", "b", "c"]).tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(WORDS, max_size=40), st.lists(WORDS, max_size=40))
def test_shingle_sets_are_the_shingle_strings_sets(a: list[str], b: list[str]) -> None:
    """Property: two texts share a shingle hash exactly when they share the shingle, so
    containment over hashes is containment over strings; order and repeats aside, the
    signature is a function of the set."""
    ha, hb = text_shingles(a), text_shingles(b)
    assert len(ha) == len(shingles(a)) and len(hb) == len(shingles(b))
    assert len(np.intersect1d(ha, hb)) == len(shingles(a) & shingles(b))
    if len(ha):
        shuffled = np.random.default_rng(len(a)).permutation(np.concatenate([ha, ha]))
        assert np.array_equal(signature(shuffled, 32, 1), signature(ha, 32, 1))


def test_datasketch_takes_them_as_its_own() -> None:
    """Stored as datasketch keeps them: a MinHash (and LeanMinHash bytes) from our values
    is the one datasketch makes from the same hashes, and estimates as it does."""
    a = [f"w{i}" for i in range(300)]
    b = a[100:] + [f"x{i}" for i in range(100)]
    hashes = [text_shingles(v) for v in (a, b)]
    mine = [MinHash(hashvalues=signature(h, 128, 1), seed=1, scheme=minhash.SCHEME) for h in hashes]
    theirs = []
    for h in hashes:
        m = MinHash(num_perm=128, seed=1, hashfunc=high32)
        m.update_batch([int(x) for x in h.view(np.uint64)])
        theirs.append(m)
    assert mine[0].jaccard(mine[1]) == theirs[0].jaccard(theirs[1])
    assert abs(mine[0].jaccard(mine[1]) - 200 / 400) < 0.15
    # the stored form: uint64 bytes, read back into a MinHash
    stored = signature(hashes[0], 128, 1).astype(np.uint64).tobytes()
    back = MinHash(hashvalues=np.frombuffer(stored, np.uint64), seed=1, scheme=minhash.SCHEME)
    assert back == theirs[0]
    lean = [LeanMinHash(m) for m in (mine[0], theirs[0])]
    buffers = [bytearray(m.bytesize()) for m in lean]
    for m, buf in zip(lean, buffers, strict=True):
        m.serialize(buf)
    assert buffers[0] == buffers[1]
    assert LeanMinHash.deserialize(buffers[0]) == lean[1]


def test_permutations_are_datasketchs_and_read_only() -> None:
    a, b = minhash.permutations(128, 1)
    want = MinHash(num_perm=128, seed=1).permutations
    assert np.array_equal(a[:, 0], want[0]) and np.array_equal(b[:, 0], want[1])
    with pytest.raises(ValueError):
        a[0, 0] = 3


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 2**64 - 1), max_size=40), min_size=1, max_size=4),
    st.sampled_from([(16, 1), (128, 1), (100, 42)]),
)
def test_a_few_groups_at_once_equal_each_alone(groups: list[list[int]], perm: tuple) -> None:
    """An item's groups are permuted as one product when they fit in a chunk (and none is
    empty): each row equals the group's own signature, chunk by chunk."""
    arrays = [np.array(g, dtype=np.uint64) for g in groups]
    together = signatures(arrays, *perm)
    assert together.flags.c_contiguous and together.dtype == np.uint32
    for row, group in zip(together, arrays, strict=True):
        assert np.array_equal(row, permuted_min([premixed(group)], *perm)[0])
