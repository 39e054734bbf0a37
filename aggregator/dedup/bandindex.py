"""The story LSH index: one band per permutation, held in sorted numpy arrays.

Story candidates use one MinHash row per band (one shared salient term proposes), so an item
has as many index entries as permutations (128). As Python dict entries that was ~10 KB per
held item and a dict operation per entry on every start-up; here an entry is 16 bytes in two
arrays, a start-up sorts them once, and a query is a few ``searchsorted`` calls.

A key is ``band << 32 | value`` (datasketch's MinHash values are below 2**32). An entry is
``generation << 32 | slot``: removing an item bumps its slot's generation, which makes its
entries stale at once (they are dropped at the next merge), so the slot can be reused right
away. New entries go to a pending list, then into a small sorted level, which is merged into
the main arrays when it grows past a quarter of them: an insert costs a copy of the small
level, not of the whole index.

Queries return what a dict of buckets filled in insertion order would: the slots sharing a
key, in order of first occurrence (band by band, older entries first), with the number of
bands each shares.
"""

from __future__ import annotations

import numpy as np

_LOW32 = np.int64(0xFFFFFFFF)
_EMPTY_KEYS = np.zeros(0, dtype=np.uint64)
_EMPTY_ENTRIES = np.zeros(0, dtype=np.int64)
LEVEL0_MIN = 1 << 16  # entries: the small level may hold at least this many before a merge


class BandIndex:
    def __init__(self, bands: int) -> None:
        if not 0 < bands <= 1 << 16:
            raise ValueError(f"bands must be in 1..65536, got {bands!r}")
        self.bands = bands
        self._band_hi = np.arange(bands, dtype=np.uint64) << np.uint64(32)
        self._keys, self._entries = _EMPTY_KEYS, _EMPTY_ENTRIES  # main, sorted by key
        self._keys0, self._entries0 = _EMPTY_KEYS, _EMPTY_ENTRIES  # small level, sorted
        self._pending: list[tuple[np.ndarray, int]] = []
        self._gen = np.zeros(1024, dtype=np.int64)

    def __len__(self) -> int:
        """Entries held, stale ones included (until the next merge)."""
        pending = sum(len(k) for k, _ in self._pending)
        return len(self._keys) + len(self._keys0) + pending

    def _keys_of(self, sig: np.ndarray) -> np.ndarray:
        if len(sig) < self.bands:
            raise ValueError(f"signature has {len(sig)} values, the index needs {self.bands}")
        values = sig[: self.bands].astype(np.uint64)
        if values.max(initial=0) >> np.uint64(32):
            raise ValueError("signature values must be below 2**32")
        return self._band_hi | values

    def _slot_gen(self, slot: int) -> int:
        if slot < 0 or slot >= 1 << 31:
            raise ValueError(f"slot must be in 0..2**31-1, got {slot!r}")
        if slot >= len(self._gen):
            grown = np.zeros(max(2 * len(self._gen), slot + 1), dtype=np.int64)
            grown[: len(self._gen)] = self._gen
            self._gen = grown
        return int(self._gen[slot])

    def add(self, slot: int, sig: np.ndarray) -> None:
        """Index ``sig`` under ``slot`` (sorted in lazily, before the next query)."""
        entry = (self._slot_gen(slot) << 32) | slot
        self._pending.append((self._keys_of(sig), entry))

    def remove(self, slot: int) -> None:
        """Forget every entry of ``slot``; the slot may be added again at once."""
        self._slot_gen(slot)
        self._gen[slot] += 1

    def query(self, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slots sharing a band with ``sig`` in first-occurrence order, and how many bands
        each shares."""
        self._settle()
        keys = self._keys_of(sig)
        found, bands = [], []
        for held_keys, held_entries in ((self._keys, self._entries), (self._keys0, self._entries0)):
            lo = np.searchsorted(held_keys, keys, side="left")
            hi = np.searchsorted(held_keys, keys, side="right")
            lens = hi - lo
            total = int(lens.sum())
            if not total:
                continue
            starts = np.repeat(lo - (np.cumsum(lens) - lens), lens)
            found.append(held_entries[starts + np.arange(total)])
            bands.append(np.repeat(np.arange(self.bands), lens))
        if not found:
            return _EMPTY_ENTRIES, _EMPTY_ENTRIES
        entries = np.concatenate(found)
        if len(found) > 1:  # band by band; within a band the main (older) entries first
            entries = entries[np.argsort(np.concatenate(bands), kind="stable")]
        slots = entries & _LOW32
        entries = entries[self._gen[slots] == entries >> 32]  # drop stale entries
        slots = entries & _LOW32
        uniq, first, counts = np.unique(slots, return_index=True, return_counts=True)
        order = np.argsort(first, kind="stable")
        return uniq[order], counts[order]

    def _settle(self) -> None:
        """Sort pending entries into the small level; merge that into the main arrays once
        it outgrows a quarter of them (dropping stale entries)."""
        if not self._pending:
            return
        keys = np.concatenate([k for k, _ in self._pending])
        entries = np.repeat(
            np.fromiter((e for _, e in self._pending), dtype=np.int64, count=len(self._pending)),
            [len(k) for k, _ in self._pending],
        )
        self._pending = []
        order = np.argsort(keys, kind="stable")  # equal keys stay in insertion order
        self._keys0, self._entries0 = _merged(
            self._keys0, self._entries0, keys[order], entries[order]
        )
        if len(self._keys0) > max(LEVEL0_MIN, len(self._keys) // 4):
            live = self._gen[self._entries0 & _LOW32] == self._entries0 >> 32
            keys0, entries0 = self._keys0[live], self._entries0[live]
            live = self._gen[self._entries & _LOW32] == self._entries >> 32
            self._keys, self._entries = _merged(
                self._keys[live], self._entries[live], keys0, entries0
            )
            self._keys0, self._entries0 = _EMPTY_KEYS, _EMPTY_ENTRIES

    def slots(self) -> set[int]:
        """The slots with live entries (for checks)."""
        self._settle()
        out: set[int] = set()
        for entries in (self._entries, self._entries0):
            live = entries[self._gen[entries & _LOW32] == entries >> 32]
            out.update((live & _LOW32).tolist())
        return out


def _merged(
    keys: np.ndarray, entries: np.ndarray, new_keys: np.ndarray, new_entries: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``keys`` with sorted ``new_keys`` put after the equal ones already there."""
    if not len(keys):
        return new_keys, new_entries
    at = np.searchsorted(keys, new_keys, side="right")
    return np.insert(keys, at, new_keys), np.insert(entries, at, new_entries)
