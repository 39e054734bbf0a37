"""The array-backed story index answers exactly as a dict of buckets filled in order would."""

from __future__ import annotations

import random
from collections import Counter
from itertools import chain

import numpy as np
import pytest

from aggregator.dedup import bandindex
from aggregator.dedup.bandindex import BandIndex
from aggregator.dedup.engine import Engine, Settings, lsh_bands
from aggregator.errors import ConfigError

BANDS = 16


class DictIndex:
    """The reference: one bucket list per (band, value), items appended in order."""

    def __init__(self) -> None:
        self.table: dict[tuple[int, int], list[int]] = {}
        self.sigs: dict[int, np.ndarray] = {}

    def add(self, slot: int, sig: np.ndarray) -> None:
        self.sigs[slot] = sig
        for band, value in enumerate(sig[:BANDS].tolist()):
            self.table.setdefault((band, value), []).append(slot)

    def remove(self, slot: int) -> None:
        for band, value in enumerate(self.sigs.pop(slot)[:BANDS].tolist()):
            self.table[(band, value)].remove(slot)

    def query(self, sig: np.ndarray, limit: int | None = None) -> list[tuple[int, int]]:
        keys = [(band, value) for band, value in enumerate(sig[:BANDS].tolist())]
        buckets = (self.table.get(k, []) for k in keys)
        if limit is not None:  # each bucket's newest
            buckets = (b[len(b) - limit :] if len(b) > limit else b for b in buckets)
        found = Counter(chain.from_iterable(buckets))
        return list(found.items())


def _sig(rng: random.Random, alphabet: int) -> np.ndarray:
    # a small alphabet: many shared buckets, long runs of equal keys
    return np.array([rng.randrange(alphabet) for _ in range(BANDS)], dtype=np.uint64)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("alphabet", [6, 300])  # long runs (searched by directory), or few
def test_queries_match_a_dict_of_buckets_through_adds_removals_and_reuse(
    seed: int, alphabet: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bandindex, "LEVEL_MAX", (256, 64))  # merges often in a small test
    rng = random.Random(seed)
    ours, ref = BandIndex(BANDS), DictIndex()
    held: dict[int, np.ndarray] = {}
    free: list[int] = []
    next_slot = 0
    spread = 0  # queries answered while every level held entries
    searched: set[bool] = set()
    for _step in range(600):
        op = rng.random()
        if op < 0.45 or not held:
            batch = []  # one item, or a few at once (as a start-up adds them)
            for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 5)):
                if free and rng.random() < 0.7:
                    slot = free.pop()  # reused at once, as the engine does
                else:
                    slot, next_slot = next_slot, next_slot + 1
                batch.append((slot, _sig(rng, alphabet)))
            if len(batch) == 1:
                ours.add(*batch[0])
            else:
                ours.add_many(np.array([s for s, _ in batch]), np.stack([g for _, g in batch]))
            for slot, sig in batch:
                ref.add(slot, sig)
                held[slot] = sig
        elif op < 0.6:
            slot = rng.choice(sorted(held))
            ours.remove(slot)
            ref.remove(slot)
            del held[slot]
            free.append(slot)
        elif op < 0.7:  # re-indexed under a new signature (the same slot stays held)
            slot = rng.choice(sorted(held))
            ours.remove(slot)
            ref.remove(slot)
            held[slot] = _sig(rng, alphabet)
            ours.add(slot, held[slot])
            ref.add(slot, held[slot])
        else:
            query = _sig(rng, alphabet)
            for limit in (None, 1, 3, 8):  # stale entries among a bucket's newest too
                slots, counts = ours.query(query, limit)
                got = list(zip(slots.tolist(), counts.tolist(), strict=True))
                assert got == ref.query(query, limit)
            spread += all(len(keys) for keys, _ in ours._levels)
            searched.update(bool(made) for made in ours._dirs if made is not None)
    assert ours.slots() == set(held)
    assert spread > 0
    # long runs are searched through a directory; a level of mostly distinct keys directly
    assert (True in searched) == (alphabet == 6) and False in searched


def test_stale_entries_are_dropped_when_merged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bandindex, "LEVEL_MAX", (80, 20))
    index = BandIndex(BANDS)
    sig = np.arange(BANDS, dtype=np.uint64)
    for slot in range(4):
        index.add(slot, sig)
    index.query(sig)
    for slot in range(4):
        index.remove(slot)
    index.add(0, sig + np.uint64(1))
    index.add(1, sig + np.uint64(2))
    assert len(index) == 6 * BANDS
    index.query(sig)  # the small level outgrows its LEVEL_MAX: merged, stale entries dropped
    assert len(index) == 2 * BANDS
    assert index.query(sig)[0].tolist() == []
    assert index.query(sig + np.uint64(2))[0].tolist() == [1]


def test_bad_arguments_are_refused_with_a_message() -> None:
    index = BandIndex(BANDS)
    with pytest.raises(ValueError, match="needs 16"):
        index.add(0, np.zeros(4, dtype=np.uint64))
    with pytest.raises(ValueError, match="below 2\\*\\*32"):
        index.add(0, np.full(BANDS, 1 << 40, dtype=np.uint64))
    with pytest.raises(ValueError, match="slot"):
        index.add(-1, np.zeros(BANDS, dtype=np.uint64))
    with pytest.raises(ValueError, match="bands"):
        BandIndex(0)
    with pytest.raises(ValueError, match="one signature row per slot"):
        index.add_many(np.array([0, 1]), np.zeros((3, BANDS), dtype=np.uint64))
    with pytest.raises(ValueError, match="needs 16"):
        index.add_many(np.array([0]), np.zeros((1, 4), dtype=np.uint64))
    with pytest.raises(ValueError, match="below 2\\*\\*32"):
        index.add_many(np.array([0]), np.full((1, BANDS), 1 << 40, dtype=np.uint64))
    with pytest.raises(ValueError, match="slot"):
        index.add_many(np.array([2, -1]), np.zeros((2, BANDS), dtype=np.uint64))


# (bands, rows) of the duplicate index as the engine chose them through datasketch's private
# _optimal_param, before MinHashLSH's public b and r
@pytest.mark.parametrize(
    ("threshold", "num_perm", "bands"),
    [(0.3, 128, (37, 3)), (0.86, 16, (2, 8)), (0.98, 128, (2, 64))],
)
def test_duplicate_bands_are_the_ones_datasketch_chooses(
    threshold: float, num_perm: int, bands: tuple[int, int]
) -> None:
    settings = Settings(dup_lsh_threshold=threshold, num_perm=num_perm)
    assert lsh_bands(threshold, num_perm) == Engine(settings).dup_bands == bands


def test_a_threshold_that_leaves_one_band_names_the_keys() -> None:
    with pytest.raises(ConfigError, match=r"^dedup.dup_lsh_threshold 0.99 is too high for "):
        Engine(Settings(dup_lsh_threshold=0.99))
