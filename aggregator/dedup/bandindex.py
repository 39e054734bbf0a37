"""The LSH indexes (story and duplicate), held in sorted numpy arrays.

Story candidates use one MinHash row per band (one shared salient term proposes), so an item
has as many index entries as permutations (128); the duplicate index has fewer, wider bands
(each keyed by a 32-bit mix of its rows, see ``engine.band_values``). As Python dict entries
that was ~10 KB per held item and a dict operation per entry on every start-up; here an entry
is 16 bytes in two arrays, a start-up adds its items in one ``add_many`` and sorts once, and a
query is a few ``searchsorted`` calls.

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
bands each shares.
"""

from __future__ import annotations

import numpy as np

_LOW32 = np.int64(0xFFFFFFFF)
_EMPTY_KEYS = np.zeros(0, dtype=np.uint64)
_EMPTY_ENTRIES = np.zeros(0, dtype=np.int64)
_NONE = np.iinfo(np.int64).max
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
        # per slot, scratch for a query (see _first_order): first position, occurrences
        self._first = np.zeros(0, dtype=np.int64)
        self._count = np.zeros(0, dtype=np.int64)

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
        self._settle()
        keys = self._keys_of(sig)
        levels = [k for k, (held, _) in enumerate(self._levels) if len(held)]
        if not levels:
            return _EMPTY_ENTRIES, _EMPTY_ENTRIES
        # one pass over every level at once (a query is a few dozen calls on small arrays,
        # whose fixed cost is most of it): each band's newest entries, band by band
        entries = self._take_newest(
            [self._levels[k][1] for k in levels], *self._runs(levels, keys), limit
        )
        live = self._gen[entries & _LOW32] == entries >> 32
        if limit is not None and not live.all():  # stale entries may hide live holders
            return self._query_stale(keys, limit)
        return self._first_order((entries & _LOW32)[live])

    def _first_order(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The distinct slots in order of first occurrence, and how often each occurs (what
        ``np.unique`` with ``return_index`` and ``return_counts`` gives, in a quarter of the
        time: scattered into per-slot scratch arrays instead of sorted)."""
        n = len(slots)
        if not n:
            return _EMPTY_ENTRIES, _EMPTY_ENTRIES
        if len(self._first) < len(self._gen):
            self._first = np.full(len(self._gen), _NONE, dtype=np.int64)
            self._count = np.zeros(len(self._gen), dtype=np.int64)
        at = np.arange(n)
        np.minimum.at(self._first, slots, at)
        np.add.at(self._count, slots, 1)
        distinct = slots[self._first[slots] == at]  # in order: each where it first occurs
        counts = self._count[distinct]
        self._first[distinct] = _NONE
        self._count[distinct] = 0
        return distinct, counts

    def _runs(self, levels: list[int], keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each key's run ends in each of ``levels`` and how long it is: (levels,
        keys). A larger level of the story index is searched through its directory of
        distinct keys (a fifth of its entries: one search of those has fewer cache misses
        than two of every entry); the small level, which changes with every item, and
        levels whose keys are mostly distinct (the duplicate bands'), directly."""
        lo = np.empty((len(levels), len(keys)), dtype=np.int64)
        hi = np.empty_like(lo)
        for row, k in enumerate(levels):
            made = self._directory(k) if k < len(self._dirs) else False
            if made:
                distinct, starts = made
                at = np.searchsorted(distinct, keys)
                found = distinct[np.minimum(at, len(distinct) - 1)] == keys
                lo[row] = starts[at]
                hi[row] = np.where(found, starts[np.minimum(at + 1, len(distinct))], lo[row])
            else:
                held = self._levels[k][0]
                lo[row] = np.searchsorted(held, keys)
                hi[row] = np.searchsorted(held, keys + np.uint64(1))  # "right" of k
        return hi, hi - lo

    def _directory(self, level: int) -> tuple[np.ndarray, np.ndarray] | bool:
        """A larger level's distinct keys, and where each one's run of entries starts
        (with the level's length last); False where over half its keys are distinct (the
        directory would cost more memory than it saves searching)."""
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

    @staticmethod
    def _take_newest(
        held: list[np.ndarray], hi: np.ndarray, lens: np.ndarray, limit: int | None
    ) -> np.ndarray:
        """The entries of each key's runs (``limit``: its newest ``limit``, counted from the
        smallest level back), band by band, the larger (older) levels' before the smaller
        ones', each run in index order: what :meth:`_gather` lists, in a dozen calls."""
        if limit is not None:  # what the levels newer than each hold, then what is left
            newer = np.cumsum(lens[::-1], axis=0)[::-1] - lens
            lens = np.minimum(lens, np.maximum(limit - newer, 0))
        per_band = lens.sum(axis=0)
        # where each (level, band) run goes: after the band's earlier bands and levels
        dest = (np.cumsum(per_band) - per_band) + (np.cumsum(lens, axis=0) - lens)
        flat = lens.ravel()  # level by level, band by band
        total = int(flat.sum())
        within = np.arange(total) - np.repeat(np.cumsum(flat) - flat, flat)
        src = np.repeat((hi - lens).ravel(), flat) + within
        dest = np.repeat(dest.ravel(), flat) + within
        out = np.empty(total, dtype=np.int64)
        cut = np.cumsum(lens.sum(axis=1)).tolist()
        for entries, a, b in zip(held, [0, *cut], cut, strict=False):
            out[dest[a:b]] = entries[src[a:b]]
        return out

    def _query_stale(self, keys: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """``query`` with ``limit`` when stale entries were among a band's newest."""
        found = [
            (np.searchsorted(k, keys, side="left"), np.searchsorted(k, keys, side="right"), e)
            for k, e in self._levels
            if len(k)
        ]
        entries, band = self._gather(found, limit)  # each band's newest, stale included
        live = self._gen[entries & _LOW32] == entries >> 32
        short = np.bincount(band[live], minlength=len(keys)) < limit
        held = sum(hi - lo for lo, hi, _ in found)
        if np.any(short & (held > np.bincount(band, minlength=len(keys)))):
            entries, band = self._gather(found, None)  # stale ones hid live holders
        entries, band = _newest_live(self._gen, entries, band, limit)
        slots = entries & _LOW32
        return self._first_order(slots[self._gen[slots] == entries >> 32])

    @staticmethod
    def _gather(
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], limit: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The entries under each key (``limit``: its newest ``limit``, counted from the
        smallest level back), as a dict of buckets filled in order would list them: band by
        band, the larger (older) levels' entries before the smaller ones', with each one's
        band."""
        lens_of = [hi - lo for lo, hi, _ in found]
        if limit is not None:  # take from the newest level back until each band has enough
            left = np.full(len(lens_of[0]), limit, dtype=np.int64)
            for k in range(len(found) - 1, -1, -1):
                lens_of[k] = np.minimum(lens_of[k], left)
                left = left - lens_of[k]
        runs = []  # per level: the entries found (band by band) and how many per band
        for (_, hi, held_entries), lens in zip(found, lens_of, strict=True):
            lo = hi - lens  # the newest of each run
            offsets = np.cumsum(lens) - lens
            index = np.repeat(lo - offsets, lens) + np.arange(int(offsets[-1] + lens[-1]))
            runs.append((held_entries[index], lens, offsets))
        lens = sum(lens_of)
        n = int(lens.sum())
        starts = np.cumsum(lens) - lens  # where each band's entries begin
        entries = np.empty(n, dtype=np.int64)
        for got, band_lens, offsets in runs:
            entries[np.repeat(starts - offsets, band_lens) + np.arange(len(got))] = got
            starts = starts + band_lens  # the next level's entries follow in each band
        return entries, np.repeat(np.arange(len(lens)), lens)

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


def _newest_live(
    gen: np.ndarray, entries: np.ndarray, band: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Of entries listed band by band (oldest first in each), the live ones, at most the
    newest ``limit`` of each band."""
    live = gen[entries & _LOW32] == entries >> 32
    entries, band = entries[live], band[live]
    if not len(band):
        return entries, band
    per_band = np.bincount(band)
    after = np.cumsum(per_band)[band] - np.arange(len(band))  # this one and the later ones
    keep = after <= limit
    return entries[keep], band[keep]
