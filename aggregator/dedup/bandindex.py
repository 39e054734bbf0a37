"""The LSH indexes (story and duplicate), held in sorted numpy arrays.

Story candidates use one MinHash row per band (one shared salient term proposes), so an item
has as many index entries as permutations (128); the duplicate index has fewer, wider bands
(each keyed by a 32-bit mix of its rows, see ``engine.band_values``). As Python dict entries
that was ~10 KB per held item and a dict operation per entry on every start-up; here an entry
is 16 bytes in two arrays, a start-up adds its items in one ``add_many`` and sorts once, and a
query is a few binary searches.

A key is ``band << 32 | value`` (a value is below 2**32, as datasketch's are). An entry is
``generation << 32 | slot``: removing an item bumps its slot's generation, which makes its
entries stale at once (they are dropped at the next merge), so the slot can be reused right
away. New entries go to a pending list, then into the smallest of three sorted levels; a
level that outgrows its ``LEVEL_MAX`` is merged into the next larger one (the largest, the
main arrays, has no bound). An insert copies the small level, and the main arrays are copied
only when the middle level spills: with two levels, every ~500 items copied all of them
(6M entries at 46k held items), a tenth of a placement at that size. A larger level whose keys
repeat (the story bands') is searched through a directory of its distinct keys, made at its
first query after it changed.

Queries return what a dict of buckets filled in insertion order would: the slots sharing a
key, in order of first occurrence (band by band, older entries first), with the number of
bands each shares. A query is one loop compiled by numba (:func:`_query`): as a dozen numpy
calls over a few thousand entries, their fixed cost was most of it, and a fifth of a
placement. The compiled code is cached beside this file (see the README's dependencies).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_LOW32 = np.int64(0xFFFFFFFF)
_EMPTY_KEYS = np.zeros(0, dtype=np.uint64)
_EMPTY_ENTRIES = np.zeros(0, dtype=np.int64)
# Entries the middle and the small level hold before they are merged into the next larger
# level (the small one every ~64 items of 128 bands, the middle one every ~4,000).
LEVEL_MAX = (1 << 19, 1 << 13)


class BandIndex:
    def __init__(self, bands: int) -> None:
        if not 0 < bands <= 1 << 16:
            raise ValueError(f"bands must be in 1..65536, got {bands!r}")
        self.bands = bands
        self._band_hi = np.arange(bands, dtype=np.uint64) << np.uint64(32)
        # (keys, entries) per level, each sorted by key: the main arrays, then the middle and
        # the small level (older entries in the larger levels)
        self._levels = [(_EMPTY_KEYS, _EMPTY_ENTRIES) for _ in range(len(LEVEL_MAX) + 1)]
        # per larger level, made at its first query after it changed: its distinct keys and
        # where each one's run starts, or False where most keys are distinct (see _directory)
        self._dirs: list[tuple[np.ndarray, np.ndarray] | bool | None] = [None] * len(LEVEL_MAX)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # keys, entries
        self._gen = np.zeros(1024, dtype=np.int64)
        self._count = np.zeros(0, dtype=np.int64)  # per slot, a query's scratch (zero between)

    def __len__(self) -> int:
        """Entries held, stale ones included (until the next merge)."""
        pending = sum(len(k) for k, _ in self._pending)
        return sum(len(k) for k, _ in self._levels) + pending

    def _keys_of(self, sig: np.ndarray) -> np.ndarray:
        if len(sig) < self.bands:
            raise ValueError(f"signature has {len(sig)} values, the index needs {self.bands}")
        values = sig[: self.bands].astype(np.uint64)
        if values.max(initial=0) >> np.uint64(32):
            raise ValueError("signature values must be below 2**32")
        return self._band_hi | values

    def _make_room(self, low: int, high: int) -> None:
        """Check slots ``low``..``high`` and grow the generation array to hold them."""
        if low < 0 or high >= 1 << 31:
            bad = low if low < 0 else high
            raise ValueError(f"slot must be in 0..2**31-1, got {bad!r}")
        if high >= len(self._gen):
            grown = np.zeros(max(2 * len(self._gen), high + 1), dtype=np.int64)
            grown[: len(self._gen)] = self._gen
            self._gen = grown

    def _slot_gen(self, slot: int) -> int:
        self._make_room(slot, slot)
        return int(self._gen[slot])

    def add(self, slot: int, sig: np.ndarray) -> None:
        """Index ``sig`` under ``slot`` (sorted in lazily, before the next query)."""
        entry = (self._slot_gen(slot) << 32) | slot
        self._pending.append((self._keys_of(sig), np.full(self.bands, entry, dtype=np.int64)))

    def add_many(self, slots: np.ndarray, sigs: np.ndarray) -> None:
        """``add`` for each row of ``sigs`` under the slot at the same index, in order (one
        array operation for a start-up's thousands of items)."""
        slots = np.asarray(slots, dtype=np.int64)
        if sigs.ndim != 2 or len(sigs) != len(slots):
            raise ValueError(f"want one signature row per slot, got {sigs.shape} for {len(slots)}")
        if not len(slots):
            return
        if sigs.shape[1] < self.bands:
            raise ValueError(
                f"signatures have {sigs.shape[1]} values, the index needs {self.bands}"
            )
        values = sigs[:, : self.bands].astype(np.uint64)
        if values.max(initial=0) >> np.uint64(32):
            raise ValueError("signature values must be below 2**32")
        self._make_room(int(slots.min()), int(slots.max()))
        entries = (self._gen[slots] << 32) | slots
        self._pending.append(((self._band_hi | values).ravel(), np.repeat(entries, self.bands)))

    def remove(self, slot: int) -> None:
        """Forget every entry of ``slot``; the slot may be added again at once."""
        self._slot_gen(slot)
        self._gen[slot] += 1

    def query(self, sig: np.ndarray, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Slots sharing a band with ``sig`` in first-occurrence order, and how many bands
        each shares. With ``limit``, a band's value proposes only its ``limit`` newest live
        holders: a value that thousands of items hold (a common term) costs no more than a
        rare one, so what a query gathers does not grow with what is held."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit!r}")
        self._settle()
        keys = self._keys_of(sig)
        dirs = [self._directory(k) if k < len(self._dirs) else False for k in range(3)]
        if len(self._count) < len(self._gen):
            self._count = np.zeros(len(self._gen), dtype=np.int64)
        (k0, e0), (k1, e1), (k2, e2) = self._levels
        (d0, s0), (d1, s1), (d2, s2) = (made or (_EMPTY_KEYS, _EMPTY_ENTRIES) for made in dirs)
        return _query(
            keys, k0, e0, d0, s0, k1, e1, d1, s1, k2, e2, d2, s2,
            -1 if limit is None else limit, self._gen, self._count,
        )  # fmt: skip

    def _directory(self, level: int) -> tuple[np.ndarray, np.ndarray] | bool:
        """A larger level's distinct keys, and where each one's run of entries starts
        (with the level's length last); False where over half its keys are distinct (the
        directory would cost more memory than it saves searching: one search of a fifth of
        the entries has fewer cache misses than two of every one)."""
        made = self._dirs[level]
        if made is None:
            keys = self._levels[level][0]
            change = np.flatnonzero(keys[1:] != keys[:-1]) + 1
            if 2 * len(change) >= len(keys):
                made = False
            else:
                starts = np.concatenate(([0], change, [len(keys)]))
                made = (keys[starts[:-1]], starts)
            self._dirs[level] = made
        return made

    def _settle(self) -> None:
        """Sort pending entries into the small level; merge each level that outgrows its
        ``LEVEL_MAX`` into the next larger one (dropping stale entries of both)."""
        if not self._pending:
            return
        if len(self._pending) == 1 and len(self._pending[0][0]) == self.bands:
            # one signature's keys are sorted already (bands ascending)
            keys, entries = self._pending.pop()
        else:
            keys = np.concatenate([k for k, _ in self._pending])
            entries = np.concatenate([e for _, e in self._pending])
            self._pending = []
            order = np.argsort(keys, kind="stable")  # equal keys stay in insertion order
            keys, entries = keys[order], entries[order]
        levels = self._levels
        levels[-1] = _merged(*levels[-1], keys, entries)
        for k in range(len(levels) - 1, 0, -1):
            if len(levels[k][0]) <= LEVEL_MAX[k - 1]:
                break
            levels[k - 1] = _merged(*self._live(*levels[k - 1]), *self._live(*levels[k]))
            levels[k] = (_EMPTY_KEYS, _EMPTY_ENTRIES)
            self._dirs[k - 1] = None
            if k < len(self._dirs):
                self._dirs[k] = None

    def _live(self, keys: np.ndarray, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        live = self._gen[entries & _LOW32] == entries >> 32
        return keys[live], entries[live]

    def slots(self) -> set[int]:
        """The slots with live entries (for checks)."""
        self._settle()
        out: set[int] = set()
        for keys, entries in self._levels:
            out.update((self._live(keys, entries)[1] & _LOW32).tolist())
        return out


def _merged(
    keys: np.ndarray, entries: np.ndarray, new_keys: np.ndarray, new_entries: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``keys`` with sorted ``new_keys`` put after the equal ones already there."""
    if not len(keys):
        return new_keys, new_entries
    n = len(keys) + len(new_keys)
    at = np.searchsorted(keys, new_keys, side="right") + np.arange(len(new_keys))
    old = np.ones(n, dtype=bool)  # what np.insert does, without its wrapper's cost
    old[at] = False
    merged_keys, merged_entries = np.empty(n, dtype=keys.dtype), np.empty(n, dtype=entries.dtype)
    merged_keys[at], merged_entries[at] = new_keys, new_entries
    merged_keys[old], merged_entries[old] = keys, entries
    return merged_keys, merged_entries


# The compiled query works a level at a time over every band: numba counts references to an
# array each time one is bound or passed, and doing that per band and level (a helper call, a
# variable naming the level) made a query of empty levels 30 us instead of 2.


@njit(cache=True)
def _level_runs(
    held: np.ndarray, distinct: np.ndarray, starts: np.ndarray, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where each key's run of entries lies in a level: through its directory (``distinct``,
    ``starts``) where it has one, else by two binary searches of its keys."""
    bands = len(keys)
    first, end = np.zeros(bands, dtype=np.int64), np.zeros(bands, dtype=np.int64)
    searched = distinct if len(distinct) else held
    for b in range(bands):
        key, lo = keys[b], 0
        # the first key not below ``key``, then (searching the keys) the first above it
        for above in range(1 if len(distinct) else 2):
            hi = len(searched)
            while lo < hi:
                mid = (lo + hi) >> 1
                if searched[mid] < key or (above and searched[mid] == key):
                    lo = mid + 1
                else:
                    hi = mid
            if not above:
                first[b] = lo
        if len(distinct):
            if lo < len(distinct) and distinct[lo] == key:
                first[b], end[b] = starts[lo], starts[lo + 1]
            else:
                first[b] = 0
        else:
            end[b] = lo
    return first, end


@njit(cache=True)
def _newest(
    entries: np.ndarray, gen: np.ndarray, first: np.ndarray, end: np.ndarray, need: np.ndarray
) -> np.ndarray:
    """Per band, walk its run in a level back from the newest entry until ``need`` live ones
    are taken (-1: all of them), counting ``need`` down: where the taken part starts."""
    at = end.copy()
    for b in range(len(end)):
        left, lo, k = need[b], first[b], end[b]
        while k > lo and left != 0:  # -1 never reaches 0: every live entry
            k -= 1
            entry = entries[k]
            if gen[entry & 0xFFFFFFFF] == entry >> 32:
                left -= 1
        at[b], need[b] = k, left
    return at


@njit(cache=True)
def _put_live(
    entries: np.ndarray, gen: np.ndarray, at: np.ndarray, end: np.ndarray, out: np.ndarray,
    pos: np.ndarray,
) -> None:  # fmt: skip
    """Per band, the slots of the live entries of its taken part, in index order, into
    ``out`` from ``pos[b]`` on."""
    for b in range(len(end)):
        n = pos[b]
        for k in range(at[b], end[b]):
            entry = entries[k]
            slot = entry & 0xFFFFFFFF
            if gen[slot] == entry >> 32:
                out[n] = slot
                n += 1


@njit(cache=True)
def _query(
    keys, k0, e0, d0, s0, k1, e1, d1, s1, k2, e2, d2, s2, limit, gen, count
):  # type: ignore[no-untyped-def]  # fmt: skip
    """:meth:`BandIndex.query` over the three levels (main, middle, small): per band, the
    newest ``limit`` live entries of its key (all live ones if ``limit`` is -1), counted
    from the smallest level back, listed older levels first and each run in index order;
    then the distinct slots in order of first occurrence, with how often each occurs.
    ``count`` is per-slot scratch, all zero, left so."""
    need = np.full(len(keys), limit, dtype=np.int64)
    first2, end2 = _level_runs(k2, d2, s2, keys)
    at2 = _newest(e2, gen, first2, end2, need)
    live2 = limit - need
    first1, end1 = _level_runs(k1, d1, s1, keys)
    at1 = _newest(e1, gen, first1, end1, need)
    live1 = limit - need - live2
    first0, end0 = _level_runs(k0, d0, s0, keys)
    at0 = _newest(e0, gen, first0, end0, need)
    live0 = limit - need - live2 - live1
    per_band = live0 + live1 + live2
    pos0 = np.cumsum(per_band) - per_band  # band by band; in each, the older levels first
    slots = np.empty(per_band.sum(), dtype=np.int64)
    _put_live(e0, gen, at0, end0, slots, pos0)
    _put_live(e1, gen, at1, end1, slots, pos0 + live0)
    _put_live(e2, gen, at2, end2, slots, pos0 + live0 + live1)
    distinct = np.empty(len(slots), dtype=np.int64)
    m = 0
    for slot in slots:
        if count[slot] == 0:
            distinct[m] = slot
            m += 1
        count[slot] += 1
    counts = np.empty(m, dtype=np.int64)
    for j in range(m):
        counts[j] = count[distinct[j]]
        count[distinct[j]] = 0
    return distinct[:m], counts
