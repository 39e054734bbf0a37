"""The clustering engine: places each item, on arrival, at three levels.

``duplicate``  the same article: exact keys (canonical URL, content hash, publisher + title),
               else MinHash LSH over word shingles of the boilerplate-free text proposes and
               exact shingle containment decides.
``story``      the same event: LSH over the item's salient terms proposes candidates within
               ``story_window``; an IDF-weighted similarity decides. A duplicate's story is its
               original's story.
``thread``     one ongoing topic: links *stories* whose term centroids are similar within
               ``thread_window`` (and each matches the other's thread as a whole, so threads
               do not chain); never items directly.

Nesting holds by construction: joining a duplicate cluster joins its story, joining a story
joins its thread. Clusters only ever merge; a manual split (made in the database, see
:mod:`.corrections`) reaches the engine when its state is loaded, as a cannot-link in
``apart`` (:meth:`Engine.finish_restore`) that refuses the merges that would undo it. Every decision returns :class:`Evidence` (method, matched item, verified
and estimated similarity, matching LSH bands) so it can be stored and explained. The engine is
pure in-memory logic; :mod:`.service` loads and persists its state.

Long on purpose: the three levels share one held state (records, band indexes, vocabulary,
clusters, anchors) and every placement reads all of it; the pure parts it builds on live
beside it (text, anchors, vectors, bandindex, minhash, boilerplate).
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import chain, repeat
from sys import intern
from types import MappingProxyType
from typing import Any

import numpy as np
from datasketch import MinHashLSH

from ..domain import AGGREGATOR_SOURCE_TYPES, LEVELS
from ..errors import ConfigError
from ..htmltext import html_to_text
from ..language import detect_language
from ..normaliser import names_publisher
from .anchors import anchors, is_lexical
from .bandindex import BandIndex
from .boilerplate import BoilerplateModel, line_keys, split_lines
from .minhash import signatures, text_shingles, token_hashes
from .storedform import unpack
from .text import content_terms, fold, term_counts, tokens
from .vectors import EMPTY, TermVector, Vocabulary, similarities

SEED = 1
WARMUP_DOCS = 6  # a source's first items are re-indexed as its boilerplate is learned
SHINGLE_BUCKETS = 4096  # bits of the bitmap that bounds two items' shared shingles


@dataclass(frozen=True, slots=True)
class Settings:
    """Every figure the engine decides by; each is a key of the config's ``dedup`` section
    (windows without the ``_s``), documented in the README."""

    num_perm: int = 128
    duplicate_threshold: float = 0.6
    story_threshold: float = 0.3
    thread_threshold: float = 0.18
    story_window_s: float = 2 * 86400.0
    thread_window_s: float = 21 * 86400.0
    duplicate_window_s: float = 14 * 86400.0
    dup_lsh_threshold: float = 0.3
    short_terms: int = 25  # fewer distinct terms than this: a title/snippet-only item
    story_short_threshold: float = 0.5
    story_top_terms: int = 30
    lead_tokens: int = 60  # threads compare stories by their titles and leads
    max_candidates: int = 50  # story/thread candidates verified per item (most bands shared)
    story_postings: int = 32  # a story band's value proposes at most its newest holders
    dup_postings: int = 32  # ... and a duplicate band's value (copies of one text)
    wire_title_terms: int = 5  # an identical headline this long from another outlet: a copy
    wire_window_s: float = 86400.0  # ... printed within this time of the other
    story_bridges: int = 2  # headlines matching two stories that merge them against centroids
    cross_anchors: int = 3  # anchors two reports in two languages share to be one story
    cross_postings: int = 200  # an anchor held by more items than this proposes none of them
    cross_weight: float = 2.0  # the shared anchors' specificity (Engine.anchor_weight)

    def __post_init__(self) -> None:
        for name in (
            "duplicate_threshold",
            "story_threshold",
            "thread_threshold",
            "dup_lsh_threshold",
            "story_short_threshold",
        ):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {v!r}")
        if self.num_perm < 16:
            raise ValueError(f"num_perm must be >= 16, got {self.num_perm}")
        for name in ("short_terms", "story_top_terms", "lead_tokens", "max_candidates",
                     "story_postings", "dup_postings", "wire_title_terms", "story_bridges",
                     "cross_anchors", "cross_postings"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class DedupItem:
    """What the engine needs of an item."""

    id: int
    source: str
    feed_kind: str  # site | google_news | bing_news
    publisher: str | None
    title: str
    summary: str
    lang: str | None
    canonical_url: str | None
    published_at: datetime
    content_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why an item is where it is at one level; also a candidate match before the item is
    placed, whose ``cluster_id`` is None (the cluster is chosen among the matches)."""

    level: str
    cluster_id: int | None
    method: str  # new | url | hash | title | minhash | terms | story | centroid
    matched_item_id: int | None = None
    score: float | None = None
    estimated_score: float | None = None
    bands: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Merge:
    level: str
    from_id: int
    into_id: int


NO_TERMS: Mapping[str, int] = MappingProxyType({})


@dataclass(slots=True)
class Rec:
    item: DedupItem
    title_key: str
    publisher_key: str | None
    dup_sig: np.ndarray | None = None
    story_sig: np.ndarray | None = None
    # shared empty default (dataclasses refuse it as a plain default: it is unhashable)
    terms: Mapping[str, int] = field(default_factory=lambda: NO_TERMS)  # dropped once stored
    lead: Mapping[str, int] = field(default_factory=lambda: NO_TERMS)  # title + lead
    vec: TermVector = EMPTY  # ``terms`` over the engine's vocabulary
    ts: float = field(init=False)  # published_at as a POSIX timestamp (window checks)

    def __post_init__(self) -> None:
        self.ts = self.item.published_at.timestamp()

    short: bool = True
    body_len: int = 0
    lang: str = ""  # de | en, given or guessed
    anchors: frozenset[str] = frozenset()  # what survives translation (see .anchors)


@dataclass(frozen=True, slots=True)
class _Candidates:
    """An item's story candidates in first order: item ids, publish times (POSIX) and the
    number of story bands each shares with it."""

    item_id: int
    ids: np.ndarray
    ts: np.ndarray
    shared: np.ndarray


@dataclass
class Outcome:
    """What placing one item changed: new or changed memberships (of this item, and of
    earlier items of its source re-indexed on the way) and cluster merges."""

    item_id: int
    evidence: dict[tuple[int, str], Evidence] = field(default_factory=dict)
    merges: list[Merge] = field(default_factory=list)
    reindexed: list[int] = field(default_factory=list)


_SUFFIX_RE = re.compile(r"\s+[-–—|]\s+[^-–—|]{2,80}$")
_PUNCT_RE = re.compile(r"[^\w]+", re.UNICODE)


_MIX = np.uint64(0x9E3779B97F4A7C15)
_FMIX = np.uint64(0xFF51AFD7ED558CCD)


def band_values(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One value below 2**32 per band (of one signature, or of each row of a matrix), as the
    band index keys them: the row itself when a band has one, else a 64-bit mix of its rows
    (its high half). A collision of two mixes only proposes a candidate, which the bands
    compared on the signatures then turn down (:meth:`Engine.matched_bands`)."""
    v = sigs[..., : bands * rows].astype(np.uint64).reshape(*sigs.shape[:-1], bands, rows)
    if rows == 1:
        return v[..., 0]
    h = np.zeros(v.shape[:-1], dtype=np.uint64)
    for j in range(rows):
        h = (h ^ v[..., j]) * _MIX
        h ^= h >> np.uint64(29)
        h *= _FMIX
    return h >> np.uint64(32)


_DIGIT_RE = re.compile(r"\d")


def number_lines(text: str, title: str) -> dict[tuple[int, int], str]:
    """The lines of a page that hold a number, by their key with the digits (and the page's
    title) masked (:func:`.boilerplate.line_keys`)."""
    lines = [line for line in split_lines(text) if _DIGIT_RE.search(line)]
    seen: Counter[int] = Counter()
    out: dict[tuple[int, int], str] = {}
    for key, line in zip(line_keys(lines, title), lines, strict=True):
        out[(key, seen[key])] = fold(line)  # "Ziehung 1: …", "Ziehung 2: …" stay two lines
        seen[key] += 1
    return out


def _containment(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the smaller of two sorted unique arrays found in the other."""
    if not len(a) or not len(b):
        return 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    at = np.searchsorted(large, small)  # a hit is an equal value there
    return int(np.count_nonzero(large[np.minimum(at, len(large) - 1)] == small)) / len(small)


def top_k_first(counts: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest counts in their own order, the first found winning among
    equal counts (what a stable sort would keep); by one partition, not a sort (3x faster on
    the thousands of candidates a busy window proposes)."""
    if len(counts) <= k:
        return np.arange(len(counts))
    kth = np.partition(counts, len(counts) - k)[len(counts) - k]  # the k-th largest
    keep = counts > kth
    keep[np.flatnonzero(counts == kth)[: k - int(np.count_nonzero(keep))]] = True
    return np.flatnonzero(keep)


def _gaps(lo: datetime, hi: datetime, spans: Iterable[tuple[datetime, datetime]]):
    """The parts of ``[lo, hi)`` that none of ``spans`` covers, in order."""
    for span_lo, span_hi in sorted(spans):
        if span_hi <= lo or span_lo >= hi:
            continue
        if span_lo > lo:
            yield lo, span_lo
        lo = max(lo, span_hi)
        if lo >= hi:
            return
    if lo < hi:
        yield lo, hi


def _fingerprint(item: DedupItem) -> tuple[object, ...]:
    """What makes an item's placement: a change in any of these re-places it."""
    return (item.title, item.summary, item.content_hash, item.canonical_url, item.publisher)


def _plain(text: str | None) -> str:
    if not text:
        return ""
    return html_to_text(text) if "<" in text or "&" in text else text


def _truncation_of(full: str, short: str, raw_short_title: str) -> bool:
    """Google shortens long titles to "… squeeze ...": the full title starts with the rest."""
    raw = raw_short_title.rstrip()
    if not (raw.endswith("...") or raw.endswith("…") or " ... " in raw or "… " in raw):
        return False
    words = short.split()
    if len(words) < 4:
        return False
    return full.startswith(" ".join(words))


def _opening(rec: Rec) -> tuple[str, str] | None:
    """Publisher and first three title words: a title Google shortened ("… squeeze ...",
    four words at least) shares them with the full one, and a big site's items are not all
    walked for each shortened title."""
    if not rec.publisher_key:
        return None
    return rec.publisher_key, " ".join(rec.title_key.split(" ", 3)[:3])


@lru_cache(maxsize=8192)  # a few hundred publishers name every item held: once each
def publisher_key(name: str | None) -> str | None:
    if not name:
        return None
    key = _PUNCT_RE.sub(" ", fold(name)).strip()
    key = re.sub(r"^www ", "", key)
    return key or None


def bare_title(title: str, publisher: str | None, feed_kind: str) -> str:
    """The title; for Google/Bing entries without the ``" - Publisher"`` suffix."""
    t = title.strip()
    if feed_kind in AGGREGATOR_SOURCE_TYPES and publisher:
        name = publisher.strip().casefold()
        for sep in (" - ", " – ", " | ") if name else ():
            cut = t.rfind(sep)  # the suffix may name the publisher at more length
            while cut > 0:
                if names_publisher(t[cut + len(sep) :], name):
                    return t[:cut]
                cut = t.rfind(sep, 0, cut)
    return t


def title_key(title: str, publisher: str | None, feed_kind: str) -> str:
    """Normalised title (see :func:`bare_title`)."""
    return " ".join(tokens(bare_title(title, publisher, feed_kind)))


def _stored_rec(
    item: DedupItem,
    dup_sig: np.ndarray | None,
    story_sig: np.ndarray | None,
    lead: Mapping[str, int] = NO_TERMS,
    vec: TermVector = EMPTY,
    short: bool = True,
    body_len: int = 0,
    lang: str = "",
    anchors: frozenset[str] = frozenset(),
) -> Rec:
    """The record of a stored item, with its story features where it has them (one
    constructor call: a start-up makes tens of thousands)."""
    return Rec(
        item,
        title_key(item.title, item.publisher, item.feed_kind),
        publisher_key(item.publisher),
        dup_sig,
        story_sig,
        NO_TERMS,
        lead,
        vec,
        short,
        body_len,
        lang,
        anchors,
    )


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) as datasketch's MinHashLSH chooses them for ``threshold``: the pair with
    the least mean of false-positive and false-negative probability. MinHashLSH refuses a
    threshold so high that one band would be best (0.99 and up at 128 permutations)."""
    try:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    except ValueError as exc:
        raise ConfigError(
            f"dedup.dup_lsh_threshold {threshold:g} is too high for dedup.num_perm {num_perm}: "
            f"datasketch's LSH refuses it ({exc})"
        ) from None
    return lsh.b, lsh.r


class Engine:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        texts_of: Callable[[Sequence[int]], dict[int, str]] | None = None,
        load_range: Callable[[datetime, datetime], None] | None = None,
    ) -> None:
        self.settings = s = settings or Settings()
        # Brings the stored items published in [from, to) back into memory (see
        # :meth:`_reach_back`); None for an engine that is its own store (``cluster-file``).
        self._load_range = load_range
        self.boilerplate = BoilerplateModel()
        self.records: dict[int, Rec] = {}
        self.by_source: dict[str, list[int]] = defaultdict(list)
        self._texts_of = texts_of  # stored texts, read when a held item's shingles are needed
        self._texts: dict[int, str] = {}
        # exact keys
        self.by_url: dict[str, int] = {}
        self.by_hash: dict[str, int] = {}
        self.by_title: dict[str, list[int]] = defaultdict(list)
        # (publisher, first three title words) -> items: where a shortened title looks
        self.by_publisher: dict[tuple[str, str], list[int]] = defaultdict(list)
        # anchor -> the slots of the held items naming it (what proposes reports in another
        # language: slots, so their languages and times are one gather)
        self.by_anchor: dict[str, set[int]] = defaultdict(set)
        self.dup_bands = lsh_bands(s.dup_lsh_threshold, s.num_perm)
        # Story candidates: one band per permutation, so one shared salient term proposes
        # (independent rewrites share few terms; verification decides).
        self.story_bands = (s.num_perm, 1)
        self.dup_index = BandIndex(self.dup_bands[0])  # of slots (see :meth:`hold`)
        self.story_index = BandIndex(self.story_bands[0])
        # clusters: item -> cluster per level, cluster -> members
        self.cluster_of: dict[str, dict[int, int]] = {lv: {} for lv in LEVELS}
        self.members: dict[str, dict[int, set[int]]] = {lv: {} for lv in LEVELS}
        self.thread_of_story: dict[int, int] = {}
        self.next_cluster_id = 1
        # term ids and document frequencies (for IDF) of the held items
        self.vocab = Vocabulary()
        self._shingle_cache: dict[int, np.ndarray] = {}
        # item -> (its shingles, their bitmap, shingles in a taken bucket): see _shingle_bits
        self._shingle_bits_cache: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        self._centroids: dict[int, Counter[str]] = {}
        self._centroid_vecs: dict[int, TermVector] = {}
        self._cands: _Candidates | None = None  # of the item being placed
        # items whose text the one being placed shares but not its numbers (see is_template_pair)
        self._template_of: set[int] = set()
        # Held items by slot (small recycled ints): the story index holds slots, so an
        # item's thousands of story candidates are cut by window in one array gather
        # instead of one record lookup each.
        self._slot_of: dict[int, int] = {}
        self._slot_id = np.full(1024, -1, dtype=np.int64)
        self._slot_ts = np.zeros(1024, dtype=np.float64)
        self._slot_lang = np.zeros(1024, dtype=np.int16)  # a code of Rec.lang (0: unknown)
        # What verifies a duplicate candidate, by slot (see _dup_same and dup_alike):
        # the banded part of its duplicate signature, its shingles' bitmap, how many
        # shingles it has (-1: bitmap not made yet, made when first a candidate) and how
        # many share a bucket; ~1 KB per slot, so a candidate set is checked by a few
        # gathers instead of a few Python steps each.
        self._slot_dup = np.zeros((1024, self.dup_bands[0] * self.dup_bands[1]), dtype=np.uint32)
        self._slot_bits = np.zeros((1024, SHINGLE_BUCKETS // 64), dtype=np.uint64)
        self._slot_shingles = np.full(1024, -1, dtype=np.int64)
        self._slot_excess = np.zeros(1024, dtype=np.int64)
        self._lang_codes: dict[str, int] = {"": 0}
        self._free_slots: list[int] = []
        self.newest_at: datetime | None = None
        # Every placed item published at or after this is held (None: every placed item),
        # and so is every one in the spans read back below it for items that came late.
        self.held_from: datetime | None = None
        self._read_back: list[tuple[datetime, datetime]] = []
        self._by_time: list[tuple[datetime, int]] = []  # (published_at, id) of held items
        # Manual splits (level, item, other item): cannot-links that no merge may undo.
        self.apart: list[tuple[str, int, int]] = []

    # ------------------------------------------------------------ features

    def _clean_body(self, item: DedupItem) -> str:
        if item.feed_kind == "google_news":
            return ""  # its description only repeats the title and the publisher
        if item.feed_kind == "bing_news":
            return _plain(item.summary)
        return self.boilerplate.clean(item.source, item.title, self._page_text(item))

    def _page_text(self, item: DedupItem) -> str:
        return self.raw_text(item.id) or _plain(item.summary)

    def raw_text(self, item_id: int) -> str:
        if item_id in self._texts:
            return self._texts[item_id]
        if self._texts_of is not None:
            return self._texts_of([item_id]).get(item_id, "")
        return ""

    def _read_texts(self, item_ids: Iterable[int], *, pages: bool = False) -> None:
        """Read, at once, the texts of the items whose shingles are not at hand (``pages``:
        of all of them, whose raw pages are wanted): after a start-up a new item's duplicate
        candidates are all cold, and one read each was half of its placement. They are kept
        until :meth:`drop_texts`."""
        if self._texts_of is None:
            return
        cold = [
            i for i in item_ids if i not in self._texts and (pages or i not in self._shingle_cache)
        ]
        if cold:
            found = self._texts_of(cold)
            self._texts.update((i, found.get(i, "")) for i in cold)

    def drop_texts(self) -> None:
        """Forget the texts given to :meth:`add` or read for verification (a batch's worth)."""
        self._texts.clear()

    def dup_shingles(self, item_id: int) -> np.ndarray:
        """The item's word 3-shingles as sorted unique 64-bit hashes (an array: a set of
        Python ints would take ~14 KB per held item, most of the engine's memory)."""
        cached = self._shingle_cache.get(item_id)
        if cached is None:
            rec = self.records[item_id]
            body = self._clean_body(rec.item)
            cached = text_shingles(tokens(f"{rec.title_key}\n{body}"))
            self._shingle_cache[item_id] = cached
        return cached

    def _features(self, rec: Rec) -> None:
        item = rec.item
        body = self._clean_body(item)
        # tokenised once for shingles and terms: no token spans the title's end
        title_toks, body_toks = tokens(rec.title_key), tokens(body)
        rec.body_len = len(body_toks)
        self._shingle_cache.pop(item.id, None)
        self._shingle_bits_cache.pop(item.id, None)
        shingled = (
            None  # sorted unique hashes: verification compares them, the signature reads them
        )
        if item.feed_kind not in AGGREGATOR_SOURCE_TYPES and rec.body_len >= 20:
            shingled = self._shingle_cache[item.id] = text_shingles(title_toks + body_toks)
        title = rec.title_key
        rec.terms, rec.lead = term_counts(
            title,
            body,
            item.lang,
            lead_tokens=self.settings.lead_tokens,
            toks=(title_toks, body_toks),
        )
        rec.short = len(rec.terms) < self.settings.short_terms
        bare = bare_title(item.title, item.publisher, item.feed_kind)
        # only a language known or clearly detected: two reports are in two languages only
        # when both are sure (a guess between German and English splits Portuguese in two)
        rec.lang = item.lang or detect_language(f"{bare}\n{body}") or ""
        rec.anchors = anchors(bare, body, rec.lang)
        ids = self.vocab.term_ids(rec.terms)  # the scores' IDF and the vector read them
        top = self._top_terms(rec.terms, ids)
        # both signatures at once; held as uint32 (half the memory), stored as uint64 bytes,
        # and loaded ones are converted back, so band keys agree after a restart
        groups = [g for g in (shingled, token_hashes(top)) if g is not None and len(g)]
        sigs = iter(signatures(groups, self.settings.num_perm, SEED))
        rec.dup_sig = next(sigs) if shingled is not None and len(shingled) else None
        rec.story_sig = next(sigs) if top else None
        rec.vec = self.vocab.vector(rec.terms, ids)

    def _top_terms(self, terms: Counter[str], ids: np.ndarray) -> list[str]:
        """The ``story_top_terms`` terms of the highest count x IDF (ties: the first in
        alphabetical order), in no particular order: the story signature's set. ``ids``: the
        terms' ids, in their order."""
        n = self.settings.story_top_terms
        if len(terms) <= n:
            return list(terms)
        words = list(terms)
        idf = self.vocab.idf(ids)
        scores = np.fromiter(terms.values(), dtype=np.float64, count=len(words)) * idf
        cut = np.partition(scores, len(words) - n)[len(words) - n]  # the n-th highest
        above = np.flatnonzero(scores > cut).tolist()
        tied = sorted(words[k] for k in np.flatnonzero(scores == cut).tolist())
        return [words[k] for k in above] + tied[: n - len(above)]

    def count_in(self, rec: Rec) -> None:
        """Count a held item's terms (its vector, made by :meth:`_features` or at load)
        into the document frequencies."""
        self.vocab.count_in(rec.vec)

    @staticmethod
    def _uncount_lead(total: Counter[str], lead: Mapping[str, int]) -> None:
        for term, n in lead.items():
            left = total[term] - n
            if left > 0:
                total[term] = left
            else:
                del total[term]

    def idf(self, term: str) -> float:
        return self.vocab.idf_of((term,))[term]

    # ------------------------------------------------------------ LSH

    def _band_values(self, sig: np.ndarray, level: str) -> np.ndarray:
        b, r = self.dup_bands if level == "duplicate" else self.story_bands
        return band_values(sig, b, r)

    def _index_of(self, level: str) -> BandIndex:
        return self.dup_index if level == "duplicate" else self.story_index

    def _index(self, item_id: int, sig: np.ndarray | None, level: str) -> None:
        """Both LSH indexes hold the item's slot under each band's value."""
        if sig is not None:
            slot = self._slot_of[item_id]
            self._index_of(level).add(slot, self._band_values(sig, level))
            if level == "duplicate":
                self._dup_rows(np.array([slot]), sig[None, :])
                made = self._shingle_bits_cache.pop(item_id, None)  # by dup_alike, as a query
                if made is not None and made[0] is self._shingle_cache.get(item_id):
                    self._slot_bits[slot], self._slot_excess[slot] = made[1], made[2]
                    self._slot_shingles[slot] = len(made[0])

    def _dup_rows(self, slots: np.ndarray, sigs: np.ndarray) -> None:
        """The slots' duplicate signatures (what their bands are compared on); their
        bitmaps are made anew when next a candidate (the features may have changed)."""
        self._slot_dup[slots] = sigs[:, : self._slot_dup.shape[1]]
        self._slot_shingles[slots] = -1

    def _unindex(self, item_id: int, sig: np.ndarray | None, level: str) -> None:
        if sig is not None:
            slot = self._slot_of[item_id]
            self._index_of(level).remove(slot)
            if level == "duplicate":
                self._slot_shingles[slot] = -1

    def _dup_proposed(self, rec: Rec) -> np.ndarray:
        """The slots of the items sharing a duplicate band's value (a 32-bit mix of its rows)
        with ``rec``, in first order. Most share a band by chance, more the more is held; a
        band's value proposes at most its ``dup_postings`` newest holders (copies of one text,
        whose cluster the newest stand for), so there are never more than
        ``bands * dup_postings`` candidates."""
        values = self._band_values(rec.dup_sig, "duplicate")
        slots, _ = self.dup_index.query(values, self.settings.dup_postings)
        return slots[self._slot_id[slots] != rec.item.id]

    def _dup_same(self, rec: Rec, slots: np.ndarray) -> np.ndarray:
        """Which duplicate bands each of ``slots`` shares with ``rec`` (a row of flags each),
        compared on the signatures: the index only knows the bands' mixes, which may collide.
        One gather of the slots' signature rows."""
        bands, rows = self.dup_bands
        same = (self._slot_dup[slots] == rec.dup_sig[: bands * rows]).reshape(-1, bands, rows)
        return same.all(axis=2)

    def matched_bands(self, a: np.ndarray | None, b: np.ndarray | None, level: str) -> list[int]:
        if a is None or b is None:
            return []
        bands, rows = self.dup_bands if level == "duplicate" else self.story_bands
        n = bands * rows
        return np.flatnonzero((a[:n] == b[:n]).reshape(bands, rows).all(axis=1)).tolist()

    @staticmethod
    def estimate(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
        if a is None or b is None:
            return None
        return float(np.count_nonzero(a == b)) / len(a)

    # ------------------------------------------------------------ similarities

    def dup_similarity(self, a: int, b: int) -> float:
        """Shingle containment of the smaller text in the larger (robust to leftover chrome
        on one side), but only for texts long enough to mean something."""
        sa, sb = self.dup_shingles(a), self.dup_shingles(b)
        if min(len(sa), len(sb)) < 15:
            return 0.0
        return _containment(sa, sb)

    def _shingle_bits(self, item_id: int, shingled: np.ndarray) -> tuple[np.ndarray, int]:
        """The item's shingles as a bitmap of ``SHINGLE_BUCKETS`` buckets (by the hashes' low
        bits) and how many shingles share a bucket with another (cached with the shingles
        they were made of): what bounds two items' shared shingles without comparing them."""
        cached = self._shingle_bits_cache.get(item_id)
        if cached is not None and cached[0] is shingled:
            return cached[1], cached[2]
        marks = np.zeros(SHINGLE_BUCKETS, dtype=bool)
        marks[shingled & (SHINGLE_BUCKETS - 1)] = True
        bits = np.packbits(marks).view(np.uint64)
        excess = len(shingled) - int(np.count_nonzero(marks))
        self._shingle_bits_cache[item_id] = (shingled, bits, excess)
        return bits, excess

    def dup_alike(self, item_id: int, others: Sequence[int]) -> list[float | None]:
        """:meth:`dup_similarity` of one item with each of ``others`` where it reaches
        ``duplicate_threshold`` (None where it does not); see :meth:`_alike`."""
        sa = self.dup_shingles(item_id)
        if not others or len(sa) < 15:
            return [None] * len(others)  # a similarity of 0.0 reaches no threshold
        arrays = [self.dup_shingles(o) for o in others]
        made = [self._shingle_bits(o, arr) for o, arr in zip(others, arrays, strict=True)]
        lens = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
        bits = np.concatenate([b for b, _ in made]).reshape(len(made), -1)
        excess = np.array([e for _, e in made], dtype=np.int64)
        return self._alike(item_id, sa, bits, lens, excess, arrays.__getitem__)

    def _dup_alike_slots(self, item_id: int, slots: np.ndarray) -> list[float | None]:
        """:meth:`dup_alike` of held items by their slots, from the slots' bitmaps (made
        here for those that have none yet: once per item while it is indexed)."""
        sa = self.dup_shingles(item_id)
        if not len(slots) or len(sa) < 15:
            return [None] * len(slots)
        cold = slots[self._slot_shingles[slots] < 0].tolist()
        if cold:
            self._read_texts(self._slot_id[cold].tolist())
            for slot in cold:
                other = int(self._slot_id[slot])
                shingled = self.dup_shingles(other)
                self._slot_bits[slot], self._slot_excess[slot] = self._shingle_bits(other, shingled)
                self._slot_shingles[slot] = len(shingled)
                self._shingle_bits_cache.pop(other, None)  # held by slot now
        ids = self._slot_id[slots]
        return self._alike(
            item_id,
            sa,
            self._slot_bits[slots],
            self._slot_shingles[slots],
            self._slot_excess[slots],
            lambda k: self.dup_shingles(int(ids[k])),
        )

    def _alike(
        self,
        item_id: int,
        sa: np.ndarray,
        bits: np.ndarray,
        lens: np.ndarray,
        excess: np.ndarray,
        shingles_of: Callable[[int], np.ndarray],
    ) -> list[float | None]:
        """Containment of ``sa`` (the item's shingles) in each other where it reaches the
        threshold, the others given by their bitmaps, shingle counts and crowded shingles.
        The duplicate candidates grow with what is held (most share a band by chance), so
        each is first bounded from the two bitmaps: the shared buckets plus the fewer
        shingles either puts in a bucket already taken can only exceed the shared shingles.
        Only those whose bound reaches the threshold are compared, all at once."""
        threshold = self.settings.duplicate_threshold
        out: list[float | None] = [None] * len(lens)
        bits_a, excess_a = self._shingle_bits(item_id, sa)
        small = np.minimum(lens, len(sa))
        bound = np.bitwise_count(bits & bits_a).sum(axis=1, dtype=np.int64)
        bound += np.minimum(excess, excess_a)
        with np.errstate(divide="ignore", invalid="ignore"):
            maybe = np.flatnonzero((small >= 15) & (bound / small >= threshold)).tolist()
        if not maybe:
            return out
        chosen = [shingles_of(k) for k in maybe]
        sizes = [len(a) for a in chosen]
        every = np.concatenate(chosen)
        hit = sa[np.minimum(np.searchsorted(sa, every), len(sa) - 1)] == every
        ends = np.cumsum(sizes)
        found = np.concatenate(([0], np.cumsum(hit)))  # hits before each position
        shared = (found[ends] - found[ends - sizes]).tolist()  # both sorted, unique: |A & B|
        for k, n_shared, size in zip(maybe, shared, sizes, strict=True):
            score = n_shared / min(len(sa), size)
            if score >= threshold:
                out[k] = score
        return out

    def is_template_pair(self, a: Rec, b: Rec) -> bool:
        """Two pages of one template (the lottery draws of two days, a weekly price table):
        of the lines with numbers they share (digits masked), more differ in their numbers
        than agree, the site's own chrome (a copyright year) not counted. A copy of an
        article keeps its numbers where they stood. The raw pages are compared: once the
        template's lines recur they are chrome too, and cleaning would hide them."""
        na = number_lines(self._page_text(a.item), a.item.title)
        nb = number_lines(self._page_text(b.item), b.item.title)
        shared = na.keys() & nb.keys()
        differ = sum(na[k] != nb[k] for k in shared)
        chrome = self.boilerplate.is_boilerplate
        agree = sum(na[k] == nb[k] and not chrome(a.item.source, k[0]) for k in shared)
        return differ >= 2 and differ > agree

    def story_scores(self, rec: Rec, others: Sequence[Rec]) -> list[tuple[float, float]]:
        """(score, threshold) of ``rec`` against each of ``others``: TF-IDF cosine for two full
        texts, else the IDF mass of the shared terms over the shorter one's (a headline or a
        snippet shares its few words with the article it stands for). At least two shared
        terms: one common word is no evidence."""
        s = self.settings
        vecs = [o.vec for o in others]
        if not rec.short and not any(o.short for o in others):  # two full texts: cosine
            cos = similarities(self.vocab, rec.vec, vecs, overlap=False).cosine
            return [(c, s.story_threshold) for c in cos.tolist()]
        sc = similarities(self.vocab, rec.vec, vecs)
        out = []
        for k, other in enumerate(others):
            if not rec.short and not other.short:
                out.append((float(sc.cosine[k]), s.story_threshold))
                continue
            total = sc.query_idf if len(rec.vec) <= len(other.vec) else sc.other_idf[k]
            shared = float(sc.shared_idf[k]) / total if total and sc.shared[k] >= 2 else 0.0
            out.append((shared, s.story_short_threshold))
        return out

    def story_similarity(self, a: Rec, b: Rec) -> tuple[float, float]:
        return self.story_scores(a, [b])[0]

    def centroid_vec(self, cid: int, level: str = "story") -> TermVector:
        vec = self._centroid_vecs.get(cid)
        if vec is None:
            vec = self._centroid_vecs[cid] = self.vocab.vector(self.centroid(cid, level))
        return vec

    def centroid_similarity(self, story_a: int, story_b: int) -> float:
        """Cosine of two stories' centroids: what links threads, and what two stories an
        item matches must also share before they merge (else one bridging item chains
        events together)."""
        a, b = self.centroid_vec(story_a), self.centroid_vec(story_b)
        return float(similarities(self.vocab, a, [b], overlap=False).cosine[0])

    def story_thread_similarity(self, story_id: int, thread_id: int) -> float:
        """Cosine of a story's centroid and a whole thread's. Two threads join only when the
        linking stories match each other *and* each other's thread as a whole, so a thread
        cannot grow by chaining loosely related stories one onto the next (single-link
        chaining made a few giant threads of a large synthetic workload)."""
        a, b = self.centroid_vec(story_id), self.centroid_vec(thread_id, "thread")
        return float(similarities(self.vocab, a, [b], overlap=False).cosine[0])

    def centroid(self, cid: int, level: str = "story") -> Counter[str]:
        """A story's (or thread's) topic: the summed title-and-lead terms of its members
        (cached, and kept up to date as members join, merge in or leave: a big cluster is
        not summed again for every new member). Cluster ids are unique across levels."""
        total = self._centroids.get(cid)
        if total is None:
            total = Counter()
            for member in self.members[level].get(cid, ()):
                total.update(self.records[member].lead)
            self._centroids[cid] = total
            self._centroid_vecs.pop(cid, None)
        return total

    # ------------------------------------------------------------ clusters

    def _new_cluster(self, level: str, item_id: int) -> int:
        cid = self.next_cluster_id
        self.next_cluster_id += 1
        self.members[level][cid] = {item_id}
        self.cluster_of[level][item_id] = cid
        return cid

    # ------------------------------------------------------------ restoring stored state
    # A service restores an engine in this order: begin_restore, hold_stored (each held
    # item) and take_in (a chunk of them), restore (their memberships), finish_restore.

    def begin_restore(self, newest_at: datetime | None) -> datetime | None:
        """Start from the newest placed item's time; returns the horizon from which the
        stored items are to be held (every window of a new item reaches back to it)."""
        self.newest_at = newest_at
        self.held_from = self.horizon()
        return self.held_from

    def hold_stored(
        self,
        item: DedupItem,
        *,
        dup_sig: np.ndarray | None,
        story_sig: np.ndarray | None,
        features: Mapping[str, Any] | None,
    ) -> Rec:
        """Hold a stored item with its stored signatures and story features (what
        ``service._signature_rows`` wrote); its terms are counted in by :meth:`take_in`."""
        if features is None:
            rec = _stored_rec(item, dup_sig, story_sig)
        else:
            # the terms go straight into the vocabulary (one string per term there); the
            # lead terms, summed into centroids, are interned: one string per term too
            lead: Mapping[str, int] = features.get("lead", {})
            rec = _stored_rec(
                item,
                dup_sig,
                story_sig,
                lead=dict(zip(map(intern, lead), lead.values(), strict=True)),
                vec=self.vocab.vector(features.get("terms", {})),
                short=bool(features.get("short", True)),
                body_len=int(features.get("body_len", 0)),
                lang=str(features.get("lang") or item.lang or ""),
                anchors=frozenset(map(intern, features.get("anchors", ()))),
            )
        self._held(rec)
        return rec

    def _held(self, rec: Rec) -> None:
        item = rec.item
        self.records[item.id] = rec
        self.hold(item)
        self.by_source[item.source].append(item.id)

    def _held_many(self, recs: Sequence[Rec]) -> None:
        """:meth:`_held` for each in order; new slots of a start-up's items given at once
        (the same slots and grown arrays as one by one)."""
        ids = [rec.item.id for rec in recs]
        fresh = set(ids)
        if self._free_slots or len(fresh) < len(ids) or not self._slot_of.keys().isdisjoint(fresh):
            for rec in recs:
                self._held(rec)
            return
        self.records.update(zip(ids, recs, strict=True))
        by_time, by_source = self._by_time, self.by_source
        for rec in recs:
            heapq.heappush(by_time, (rec.item.published_at, rec.item.id))
            by_source[rec.item.source].append(rec.item.id)
        start = len(self._slot_of)
        end = start + len(ids)
        while len(self._slot_id) < end:  # every per-slot array, as one by one grows them
            self._grow_slots()
        self._slot_of.update(zip(ids, range(start, end), strict=True))
        self._slot_id[start:end] = ids
        self._slot_ts[start:end] = [rec.ts for rec in recs]

    def hold_stored_many(
        self,
        items: Sequence[DedupItem],
        dup_sigs: Sequence[np.ndarray | None],
        story_sigs: Sequence[np.ndarray | None],
        features: Sequence[bytes | Mapping[str, Any] | None],
    ) -> list[Rec]:
        """:meth:`hold_stored` for each item in order, features given either as stored JSON
        or packed (:mod:`.storedform`): runs of packed ones are read a run at a time, into
        the same state (vocabulary ids included) as one by one."""
        recs: list[Rec] = []
        k = 0
        while k < len(items):
            end = k
            while end < len(items) and isinstance(features[end], bytes):
                end += 1
            if end > k:
                recs += self._hold_packed(
                    items[k:end], dup_sigs[k:end], story_sigs[k:end], features[k:end]
                )
                k = end
            else:
                one = features[k]
                assert not isinstance(one, bytes)
                recs.append(
                    self.hold_stored(
                        items[k], dup_sig=dup_sigs[k], story_sig=story_sigs[k], features=one
                    )
                )
                k += 1
        return recs

    def _hold_packed(
        self,
        items: Sequence[DedupItem],
        dup_sigs: Sequence[np.ndarray | None],
        story_sigs: Sequence[np.ndarray | None],
        blobs: Sequence[Any],
    ) -> list[Rec]:
        """Hold a run of items from their packed features: one pass through the vocabulary
        for the run's terms, then each record."""
        got = unpack(blobs)
        vecs, ids = self.vocab.vectors(got.terms, got.counts, got.bounds)
        # the lead terms as the vocabulary's strings: one string per term, as interning made it
        lead_names = self.vocab.names(ids[got.lead_at])
        lead_counts, lead_bounds = got.lead_counts, got.lead_bounds
        recs = [
            _stored_rec(
                item,
                dup_sig,
                story_sig,
                dict(zip(lead_names[lo:hi], lead_counts[lo:hi], strict=True)),
                vec,
                short,
                body_len,
                lang or item.lang or "",
                frozenset(map(intern, item_anchors)),
            )
            for item, dup_sig, story_sig, vec, lo, hi, short, body_len, lang, item_anchors in zip(
                items,
                dup_sigs,
                story_sigs,
                vecs,
                lead_bounds[:-1],
                lead_bounds[1:],
                got.short,
                got.body_len,
                got.lang,
                got.anchors,
                strict=True,
            )
        ]
        self._held_many(recs)
        return recs

    def finish_restore(self, *, next_cluster_id: int, apart: list[tuple[str, int, int]]) -> None:
        """The first free cluster id, and the active manual splits (each named by members
        held, where they can be)."""
        self.next_cluster_id = next_cluster_id
        self.apart = apart

    def restore(self, memberships: Iterable[tuple[int, str, int]]) -> None:
        """Stored memberships ``(item, level, cluster)`` of held items: their clusters, and
        the thread each of their stories lies in. Items not held are passed over."""
        stories = []
        for item_id, level, cid in memberships:
            if item_id not in self.records:
                continue
            self.cluster_of[level][item_id] = cid
            self.members[level].setdefault(cid, set()).add(item_id)
            self._centroids.pop(cid, None)  # a cached centroid lacks the new member
            self._centroid_vecs.pop(cid, None)
            if level == "story":
                stories.append(item_id)
        for item_id in stories:
            thread = self.cluster_of["thread"].get(item_id)
            if thread is not None:
                self.thread_of_story[self.cluster_of["story"][item_id]] = thread

    def _join(self, level: str, item_id: int, cid: int) -> None:
        self.members[level][cid].add(item_id)
        self.cluster_of[level][item_id] = cid
        if cid in self._centroids:
            self._centroids[cid].update(self.records[item_id].lead)
            self._centroid_vecs.pop(cid, None)

    def _coarser(self, level: str, cid: int, coarse: str) -> int | None:
        """The ``coarse`` cluster a ``level`` cluster lies in (nesting: any member tells);
        None while none of its members is placed at that level yet."""
        if coarse == level:
            return cid
        for member in self.members[level].get(cid, ()):
            found = self.cluster_of[coarse].get(member)
            if found is not None:
                return found
        return None

    def _can_merge(self, level: str, a: int, b: int) -> bool:
        """Whether merging ``level`` clusters a and b keeps every manual split. Merging at a
        finer level unites the coarser clusters too (nesting), so a split at this level or
        any coarser one whose two items sit in the two clusters being united forbids it."""
        if a == b or not self.apart:
            return True
        rank = LEVELS.index(level)
        for c_level, x, y in self.apart:
            if LEVELS.index(c_level) < rank:
                continue
            cx, cy = self.cluster_of[c_level].get(x), self.cluster_of[c_level].get(y)
            if cx is None or cy is None or cx == cy:
                continue  # forgotten, not placed yet, or already together (nothing to keep)
            ca, cb = self._coarser(level, a, c_level), self._coarser(level, b, c_level)
            if ca is not None and cb is not None and ca != cb and {cx, cy} == {ca, cb}:
                return False
        return True

    def _bridged(self, a: int, b: int, item_id: int) -> bool:
        """Whether stories a and b, whose centroids disagree, have ``story_bridges`` headlines
        (or snippets) matching both: ``item_id`` (being placed) and members of one that match
        a member of the other. One headline between two stories may be a bridge (shared by
        two events); several are one event told two ways (the AP's wording and the local
        papers'). Full texts do not count: their stories' centroids speak for them. Derived
        from the held items alone, so a restarted engine decides alike."""
        need = self.settings.story_bridges - 1
        if not self.records[item_id].short:
            return False  # full texts' centroids speak for their stories
        if need <= 0:
            return True
        members = self.members["story"]
        cap = self.settings.max_candidates  # a busy story is not walked whole per headline
        for mine, theirs in ((a, b), (b, a)):
            others = [self.records[m] for m in sorted(members.get(theirs, ())) if m in self.records]
            if not others:
                continue
            for m in sorted(members.get(mine, ()))[:cap]:
                rec = self.records.get(m)
                if m == item_id or rec is None or not rec.short:
                    continue
                if any(sc >= th for sc, th in self.story_scores(rec, others)):
                    need -= 1
                    if need <= 0:
                        return True
        return False

    def _merge(self, level: str, a: int, b: int, out: Outcome) -> int:
        """Merge clusters a and b (the older id survives); returns the survivor."""
        if a == b:
            return a
        into, frm = min(a, b), max(a, b)
        if level != "duplicate":
            kept, gone = self._centroids.pop(into, None), self._centroids.pop(frm, None)
            self._centroid_vecs.pop(into, None)
            self._centroid_vecs.pop(frm, None)
            if kept is not None and gone is not None:
                kept.update(gone)
                self._centroids[into] = kept
        moved = self.members[level].pop(frm)
        for m in moved:
            self.cluster_of[level][m] = into
        self.members[level][into] |= moved
        out.merges.append(Merge(level, frm, into))
        if level == "story":
            ta, tb = self.thread_of_story.pop(frm, None), self.thread_of_story.get(into)
            if ta is not None and tb is not None and ta != tb:
                tb = self._merge("thread", ta, tb, out)
            self.thread_of_story[into] = tb if tb is not None else ta  # type: ignore[assignment]
        if level == "thread":  # the merged thread's stories are those of its members
            story_of, thread_of = self.cluster_of["story"], self.thread_of_story
            for story in {story_of[m] for m in moved if m in story_of}:
                if thread_of.get(story) == frm:
                    thread_of[story] = into
        return into

    # ------------------------------------------------------------ placement

    def add(self, item: DedupItem, *, text: str | None = None) -> Outcome:
        """Place a new item. Re-adding a known item changes nothing; adding a held item
        whose title or text changed (an edited article) re-places it."""
        held = self.records.get(item.id)
        if held is not None:
            if _fingerprint(held.item) == _fingerprint(item):
                return Outcome(item.id)
            return self._update(held, item, text)
        # Before placing, so this item's state stays whole: memory follows the windows of
        # the item being placed, whenever it arrives (an old one brings its neighbours back).
        self.forget_before(self.horizon(item.published_at))
        self._reach_back(item.published_at)
        if text is not None:
            self._texts[item.id] = text
        out = Outcome(item.id)
        rec = Rec(
            item=item,
            title_key=title_key(item.title, item.publisher, item.feed_kind),
            publisher_key=publisher_key(item.publisher),
        )
        self.records[item.id] = rec
        self.hold(item)
        if item.feed_kind not in AGGREGATOR_SOURCE_TYPES:
            crossed = self.boilerplate.observe(item.source, item.title, self.raw_text(item.id))
            if crossed:
                self._reindex_source(item.source, out)
        self.by_source[item.source].append(item.id)
        self._features(rec)
        self.count_in(rec)
        self._place(rec, out)
        if self.newest_at is None or item.published_at > self.newest_at:
            self.newest_at = item.published_at
        return out

    def update(self, item: DedupItem, *, text: str | None = None) -> Outcome:
        """Re-place a held item as changed (one loaded from the store whose stored features
        are of an earlier version), whatever its fields say."""
        return self._update(self.records[item.id], item, text)

    def _update(self, rec: Rec, item: DedupItem, text: str | None) -> Outcome:
        """Re-place an edited item: its features made anew, it stays in its clusters (they
        only merge) and joins whatever its new text matches. It keeps its place in time
        (the first published time): the windows it was placed in stay its own."""
        out = Outcome(item.id)
        self.forget_before(self.horizon(rec.item.published_at))  # as add() does
        self._reach_back(rec.item.published_at)
        self._drop_keys(rec)
        self.vocab.count_out(rec.vec)
        for level in ("story", "thread"):  # its old lead is summed into these centroids
            cid = self.cluster_of[level].get(item.id)
            self._centroids.pop(cid, None)  # type: ignore[arg-type]
            self._centroid_vecs.pop(cid, None)  # type: ignore[arg-type]
        rec.item = replace(item, published_at=rec.item.published_at)
        rec.title_key = title_key(item.title, item.publisher, item.feed_kind)
        rec.publisher_key = publisher_key(item.publisher)
        if text is not None:
            self._texts[item.id] = text
        self._features(rec)
        self.count_in(rec)
        self._place(rec, out)
        return out

    def hold(self, item: DedupItem) -> None:
        """Remember when the item leaves every window (see :meth:`forget_before`), and give
        it a slot."""
        heapq.heappush(self._by_time, (item.published_at, item.id))
        slot = self._slot_of.get(item.id)
        if slot is None:
            if self._free_slots:
                slot = self._free_slots.pop()
            else:
                slot = len(self._slot_of)
                if slot >= len(self._slot_id):
                    self._grow_slots()
            self._slot_of[item.id] = slot
        self._slot_id[slot] = item.id
        self._slot_ts[slot] = item.published_at.timestamp()

    def _grow_slots(self) -> None:
        """Double the per-slot arrays (the new slots unused, their bitmaps not made)."""

        def doubled(a: np.ndarray, fill: int) -> np.ndarray:
            return np.concatenate([a, np.full_like(a, fill)])

        self._slot_id = doubled(self._slot_id, -1)
        self._slot_ts = doubled(self._slot_ts, 0)
        self._slot_lang = doubled(self._slot_lang, 0)
        self._slot_dup = doubled(self._slot_dup, 0)
        self._slot_bits = doubled(self._slot_bits, 0)
        self._slot_shingles = doubled(self._slot_shingles, -1)
        self._slot_excess = doubled(self._slot_excess, 0)

    def _release(self, item_id: int) -> None:
        slot = self._slot_of.pop(item_id, None)
        if slot is not None:
            self._slot_id[slot] = -1
            self._slot_shingles[slot] = -1
            self._free_slots.append(slot)

    def reach(self) -> timedelta:
        """How far apart two items can be and still meet at some level (every window, with
        a 10% margin)."""
        s = self.settings
        return timedelta(
            seconds=1.1 * max(s.duplicate_window_s, s.story_window_s, s.thread_window_s)
        )

    def horizon(self, at: datetime | None = None) -> datetime | None:
        """Items published before this are out of reach of every window of an item published
        at ``at`` or later, and of the newest item's. Measured from the earlier of the two:
        an item dated next year must not close the windows of today's news."""
        ref = self.newest_at if at is None or (self.newest_at and self.newest_at < at) else at
        return None if ref is None else ref - self.reach()

    def _reach_back(self, at: datetime) -> None:
        """Make sure every placed item within reach of ``at`` is held: an item that arrives
        late (a search feed's three-week-old entry, a new source's history) is compared with
        the items of its own windows, read back from the store if they left memory. Only
        its windows are read (never the history between them and what is held), and a span
        read once is not read again while it is held."""
        if self._load_range is None or self.held_from is None:
            return
        reach = self.reach()
        for lo, hi in _gaps(at - reach, min(at + reach, self.held_from), self._read_back):
            self._load_range(lo, hi)
            self._read_back.append((lo, hi))

    def forget_before(self, horizon: datetime | None) -> int:
        """Drop items older than ``horizon`` from memory (they stay in the database), so a
        long-running engine holds one retention window, not its whole history."""
        if horizon is None:
            return 0
        if self.held_from is None or horizon > self.held_from:
            self.held_from = horizon
        # spans read back below the horizon are gone with their items
        self._read_back = [(lo, hi) for lo, hi in self._read_back if hi > horizon]
        old = []
        by_time = self._by_time  # a heap: the check costs nothing while nobody is due
        while by_time and by_time[0][0] < horizon:
            _, item_id = heapq.heappop(by_time)
            if item_id in self.records:
                old.append(item_id)
        if not old:
            return 0
        self._restate_apart(set(old))
        for item_id in old:
            rec = self.records.pop(item_id)
            item = rec.item
            # term statistics cover what is held, as after a restart (and stay bounded)
            self.vocab.count_out(rec.vec)
            self._drop_keys(rec)
            ids = self.by_source.get(item.source)
            if ids and item_id in ids:
                ids.remove(item_id)
                if not ids:
                    del self.by_source[item.source]
            self._texts.pop(item_id, None)
            self._release(item_id)
            for level in LEVELS:
                cid = self.cluster_of[level].pop(item_id, None)
                members = self.members[level].get(cid) if cid is not None else None
                if members is None:
                    continue
                members.discard(item_id)
                if cid in self._centroids:
                    self._uncount_lead(self._centroids[cid], rec.lead)  # type: ignore[index]
                    self._centroid_vecs.pop(cid, None)  # type: ignore[arg-type]
                if not members:
                    del self.members[level][cid]  # type: ignore[arg-type]
                    self._centroids.pop(cid, None)  # type: ignore[arg-type]
                    self._centroid_vecs.pop(cid, None)  # type: ignore[arg-type]
                    if level == "story":
                        self.thread_of_story.pop(cid, None)  # type: ignore[arg-type]
        return len(old)

    def _drop_keys(self, rec: Rec) -> None:
        """Make an item unfindable (what :meth:`remember` did undone): it leaves memory, or
        it changed and is found anew by its new features."""
        item_id, item = rec.item.id, rec.item
        self._unindex(item_id, rec.dup_sig, "duplicate")
        self._unindex(item_id, rec.story_sig, "story")
        for index, key in ((self.by_title, rec.title_key), (self.by_publisher, _opening(rec))):
            ids = index.get(key)  # type: ignore[call-overload]
            if ids and item_id in ids:
                ids.remove(item_id)
                if not ids:
                    del index[key]  # type: ignore[arg-type]
        self._forget_anchors(rec)
        if item.canonical_url and self.by_url.get(item.canonical_url) == item_id:
            del self.by_url[item.canonical_url]
        if item.content_hash and self.by_hash.get(item.content_hash) == item_id:
            del self.by_hash[item.content_hash]
        self._shingle_cache.pop(item_id, None)
        self._shingle_bits_cache.pop(item_id, None)

    def _forget_anchors(self, rec: Rec) -> None:
        slot = self._slot_of[rec.item.id]  # released only after this
        for anchor in rec.anchors:
            slots = self.by_anchor.get(anchor)
            if slots is not None:
                slots.discard(slot)
                if not slots:
                    del self.by_anchor[anchor]

    def _restate_apart(self, leaving: set[int]) -> None:
        """Manual splits name items; when one leaves memory, a member of its cluster that
        stays speaks for it (the split keeps clusters apart, not single items)."""
        if not self.apart or not leaving:
            return
        restated = []
        for level, x, y in self.apart:
            pair = []
            for item in (x, y):
                if item in leaving:
                    cid = self.cluster_of[level].get(item)
                    staying = self.members[level].get(cid, set()) - leaving if cid else set()
                    item = min(staying) if staying else item
                pair.append(item)
            restated.append((level, pair[0], pair[1]))
        self.apart = restated

    def _reindex_source(self, source: str, out: Outcome) -> None:
        """The source's chrome model changed while it is young: recompute its earlier items'
        features and let them find the clusters their chrome hid (clusters only merge)."""
        ids = self.by_source.get(source, [])
        if len(ids) >= WARMUP_DOCS:
            return
        for item_id in ids:
            rec = self.records[item_id]
            self._unindex(item_id, rec.dup_sig, "duplicate")
            self._unindex(item_id, rec.story_sig, "story")
            self._forget_anchors(rec)
            self.vocab.count_out(rec.vec)  # document frequencies follow the new terms,
            self._features(rec)  # as a restart would count them from the stored ones
            self.count_in(rec)
            for level in ("story", "thread"):
                cid = self.cluster_of[level].get(item_id)
                if cid is not None:
                    self._centroids.pop(cid, None)
                    self._centroid_vecs.pop(cid, None)
            self._place(rec, out)
            out.reindexed.append(item_id)

    def _place(self, rec: Rec, out: Outcome) -> None:
        self._cands = None  # the LSH index does not change until this item is indexed
        self._template_of = set()
        dup = self._place_duplicate(rec, out)
        story = self._place_story(rec, out, dup)
        self._place_thread(rec, out, story)
        self._cands = None
        self.remember(rec)

    def remember(self, rec: Rec) -> None:
        """Make a placed item findable: LSH bands and exact keys."""
        self._index(rec.item.id, rec.dup_sig, "duplicate")
        self._index(rec.item.id, rec.story_sig, "story")
        self._remember_keys(rec)

    def take_in(self, recs: Sequence[Rec]) -> None:
        """Hold stored items (held by :meth:`hold`, in their order): count their terms in and
        make them findable, as placing them did, with one array operation per LSH index."""
        self.vocab.count_in_many([rec.vec for rec in recs])
        slots = list(map(self._slot_of.__getitem__, [rec.item.id for rec in recs]))
        for level, sigs in (
            ("duplicate", [rec.dup_sig for rec in recs]),
            ("story", [rec.story_sig for rec in recs]),
        ):
            some = [k for k, sig in enumerate(sigs) if sig is not None]
            if some:
                some_slots = np.array([slots[k] for k in some], dtype=np.int64)
                some_sigs = np.stack([sigs[k] for k in some])
                self._index_of(level).add_many(some_slots, self._band_values(some_sigs, level))
                if level == "duplicate":
                    self._dup_rows(some_slots, some_sigs)
        # every (anchor, item) of the chunk in one C-level pass, in the order one by one
        # adds them (a start-up's items hold dozens of anchors each)
        deque(
            map(
                set.add,
                map(self.by_anchor.__getitem__, chain.from_iterable(r.anchors for r in recs)),
                chain.from_iterable(
                    repeat(slot, len(r.anchors)) for r, slot in zip(recs, slots, strict=True)
                ),
            ),
            maxlen=0,
        )
        # the rest of _remember_keys, a chunk at a time
        lang_code = self._lang_code
        self._slot_lang[slots] = [lang_code(rec.lang) for rec in recs]
        by_url, by_hash, by_title = self.by_url, self.by_hash, self.by_title
        for rec in recs:
            item = rec.item
            if item.canonical_url:
                by_url.setdefault(item.canonical_url, item.id)
            if item.content_hash:
                by_hash.setdefault(item.content_hash, item.id)
            if rec.title_key and item.id not in (same := by_title[rec.title_key]):
                same.append(item.id)
                if rec.publisher_key:
                    self.by_publisher[_opening(rec)].append(item.id)  # type: ignore[index]

    def _lang_code(self, lang: str) -> int:
        return self._lang_codes.setdefault(lang, len(self._lang_codes))

    def _remember_keys(self, rec: Rec, *, anchors: bool = True) -> None:
        item = rec.item
        slot = self._slot_of[item.id]
        self._slot_lang[slot] = self._lang_code(rec.lang)
        if anchors:
            for anchor in rec.anchors:
                self.by_anchor[anchor].add(slot)
        if item.canonical_url:
            self.by_url.setdefault(item.canonical_url, item.id)
        if item.content_hash:
            self.by_hash.setdefault(item.content_hash, item.id)
        if rec.title_key and item.id not in self.by_title[rec.title_key]:
            self.by_title[rec.title_key].append(item.id)
            if rec.publisher_key:
                self.by_publisher[_opening(rec)].append(item.id)  # type: ignore[index]

    @staticmethod
    def _within(a: Rec, b: Rec, window_s: float) -> bool:
        return abs(a.ts - b.ts) <= window_s

    # -- duplicate

    def _place_duplicate(self, rec: Rec, out: Outcome) -> Evidence:
        item = rec.item
        matches: list[Evidence] = []
        exact = self._exact_duplicate(rec)
        if exact is not None:
            matches.append(exact)
        if rec.dup_sig is not None:
            # the texts' bitmaps first: they rule out nearly every candidate, whose signature
            # rows then need not be read (at 100k held, a megabyte of scattered reads)
            slots = self._dup_proposed(rec)
            slots = slots[np.abs(self._slot_ts[slots] - rec.ts) <= self.settings.duplicate_window_s]
            scores = self._dup_alike_slots(item.id, slots)
            keep = [k for k, sc in enumerate(scores) if sc is not None]
            same = self._dup_same(rec, slots[keep])  # a band's mix may collide: none shared
            alike = []
            for k, shared in zip(keep, same, strict=True):
                if shared.any():
                    orec = self.records[int(self._slot_id[slots[k]])]
                    alike.append((orec, np.flatnonzero(shared).tolist(), scores[k]))
            # the template check reads the pages themselves: at once, not one query each
            self._read_texts((orec.item.id for orec, _, _ in alike), pages=True)
            for orec, bands, score in alike:
                other = orec.item.id
                if self.is_template_pair(rec, orec):
                    self._template_of.add(other)
                else:
                    matches.append(
                        Evidence(
                            "duplicate",
                            None,
                            "minhash",
                            other,
                            round(score, 4),
                            self.estimate(rec.dup_sig, orec.dup_sig),
                            tuple(bands),
                        )
                    )
        return self._settle("duplicate", rec, matches, out)

    def _exact_duplicate(self, rec: Rec) -> Evidence | None:
        item = rec.item
        other = self.by_url.get(item.canonical_url) if item.canonical_url else None
        if other is not None and other != item.id:
            return Evidence("duplicate", None, "url", other, 1.0)
        other = self.by_hash.get(item.content_hash) if item.content_hash else None
        if other is not None and other != item.id:
            return Evidence("duplicate", None, "hash", other, 1.0)
        if not rec.title_key or len(rec.title_key.split()) < 4:
            return None
        same_title = [o for o in self.by_title.get(rec.title_key, ()) if o != item.id]
        if rec.publisher_key:
            same_title += [
                o
                for o in self.by_publisher.get(_opening(rec), ())  # type: ignore[arg-type]
                if o != item.id
                and _truncation_of(self.records[o].title_key, rec.title_key, item.title)
            ]
        for other in same_title:
            orec = self.records[other]
            if not self._within(rec, orec, self.settings.story_window_s):
                continue
            aggregator = (
                item.feed_kind in AGGREGATOR_SOURCE_TYPES
                or orec.item.feed_kind in AGGREGATOR_SOURCE_TYPES
            )
            same_pub = rec.publisher_key is not None and rec.publisher_key == orec.publisher_key
            # An aggregator entry is the article of the same publisher and title; so is one
            # whose headline, long enough to be no stock phrase, another outlet printed word
            # for word (a wire story: 13 papers print the AP's headline). Two full texts with
            # one title are the same article only if the texts agree too.
            if (aggregator and same_pub) or (
                (rec.dup_sig is None or orec.dup_sig is None)
                and not self.is_stock(rec)
                and self._within(rec, orec, self.settings.wire_window_s)
            ):
                return Evidence("duplicate", None, "title", other, 1.0)
        return None

    def _settle(self, level: str, rec: Rec, matches: list[Evidence], out: Outcome) -> Evidence:
        """Join the best match's cluster and merge the others' into it."""
        item_id = rec.item.id
        current = self.cluster_of[level].get(item_id)
        if not matches:
            if current is None:
                cid = self._new_cluster(level, item_id)
                ev = Evidence(level, cid, "new")
                out.evidence[(item_id, level)] = ev
                return ev
            return Evidence(level, current, "kept")
        # a report in the other language joins the cluster of its own language's match
        matches.sort(key=lambda e: (e.method == "anchors", -(e.score or 0.0)))
        best = matches[0]
        target = self.cluster_of[level][best.matched_item_id]  # type: ignore[index]
        for ev in matches[1:]:
            other_cluster = self.cluster_of[level][ev.matched_item_id]  # type: ignore[index]
            if (
                level == "story"
                and ev.method != "anchors"  # two languages' centroids never agree
                and other_cluster != target
                and self.centroid_similarity(target, other_cluster) < self.settings.story_threshold
                and not self._bridged(target, other_cluster, item_id)
            ):
                continue  # one item matching two stories does not make them one event
            if self._can_merge(level, target, other_cluster):
                target = self._merge(level, target, other_cluster, out)
        if current is not None:  # a re-placed item's cluster may have been merged just now
            current = self.cluster_of[level][item_id]
        if current is None:
            self._join(level, item_id, target)
        elif current != target and self._can_merge(level, current, target):
            target = self._merge(level, current, target, out)
        else:
            return Evidence(level, current, "kept")
        ev = Evidence(
            level,
            target,
            best.method,
            best.matched_item_id,
            best.score,
            best.estimated_score,
            best.bands,
        )
        out.evidence[(item_id, level)] = ev
        return ev

    # -- story

    def _place_story(self, rec: Rec, out: Outcome, dup: Evidence) -> Evidence:
        item_id = rec.item.id
        matches: list[Evidence] = []
        if dup.method not in ("new", "kept") and dup.matched_item_id is not None:
            matches.append(Evidence("story", None, "duplicate", dup.matched_item_id, 1.0))
        else:
            # co-members of the duplicate cluster keep the story together
            for other in self.members["duplicate"].get(self.cluster_of["duplicate"][item_id], ()):
                if other != item_id and other in self.cluster_of["story"]:
                    matches.append(Evidence("story", None, "duplicate", other, 1.0))
                    break
        for orec, shared in self._across(rec):
            fewer = min(len(rec.anchors), len(orec.anchors))
            matches.append(
                Evidence("story", None, "anchors", orec.item.id, round(len(shared) / fewer, 4))
            )
        near = list(map(self.records.__getitem__, self._near(rec, self.settings.story_window_s)))
        if self._template_of:  # another page of its template reports another event
            near = [orec for orec in near if orec.item.id not in self._template_of]
        if self.is_stock(rec):  # "Police appeal for witnesses" is no event of its own
            near = [orec for orec in near if orec.title_key != rec.title_key]
        for orec, (score, threshold) in zip(near, self.story_scores(rec, near), strict=True):
            if score >= threshold:
                matches.append(
                    Evidence(
                        "story",
                        None,
                        "terms",
                        orec.item.id,
                        round(score, 4),
                        self.estimate(rec.story_sig, orec.story_sig),
                        tuple(self.matched_bands(rec.story_sig, orec.story_sig, "story")),
                    )
                )
        return self._settle("story", rec, matches[:1] + self._distinct(matches[1:], "story"), out)

    def is_stock(self, rec: Rec) -> bool:
        """A headline too short to name one event ("Live updates", "Polizei sucht Zeugen"):
        the same words over two reports say nothing about their being one story."""
        return (
            len(content_terms(rec.title_key.split(), rec.item.lang))
            < self.settings.wire_title_terms
        )

    def anchors_agree(self, shared: frozenset[str]) -> bool:
        """Whether two reports in two languages sharing these anchors report one event."""
        s = self.settings
        return (
            len(shared) >= s.cross_anchors
            and sum(not is_lexical(a) for a in shared) >= 2
            and self.anchor_weight(shared) >= s.cross_weight
        )

    def anchor_weight(self, shared: Iterable[str]) -> float:
        """How specific shared anchors are: each counts ln(N/df)/ln(N) over the held items
        (1 for a name only these two reports hold, 0 for one every report holds), so a
        name in every other story (a head of state, a capital) weighs little."""
        n = len(self.records) + 1
        log_n = np.log(n)
        return float(sum(np.log(n / (len(self.by_anchor.get(a, ())) + 1)) for a in shared) / log_n)

    def _across(self, rec: Rec) -> list[tuple[Rec, frozenset[str]]]:
        """Reports in the other language within the story window that share at least
        ``cross_anchors`` anchors with ``rec``, two of them more than a country or a city's
        exonym (a name, a figure). Proposed by the anchors few items hold; of those in
        another known language and the window that could share enough, the
        ``max_candidates`` sharing the most such anchors are verified (cut over arrays)."""
        s = self.settings
        if len(rec.anchors) < s.cross_anchors or not rec.lang:
            return []
        postings, common = [], 0  # anchors too common to propose can still be shared
        for anchor in rec.anchors:
            slots = self.by_anchor.get(anchor)
            if slots and len(slots) <= s.cross_postings:
                postings.append(slots)
            elif slots:
                common += 1
        if not postings:
            return []
        every = np.fromiter(chain.from_iterable(postings), dtype=np.int64)
        slots, rare = np.unique(every, return_counts=True)
        lang = self._slot_lang[slots]
        keep = (
            (rare + common >= s.cross_anchors)
            & (slots != self._slot_of.get(rec.item.id, -1))
            & (lang != 0)
            & (lang != self._lang_code(rec.lang))
            & (np.abs(self._slot_ts[slots] - rec.ts) <= s.story_window_s)
        )
        ids, rare = self._slot_id[slots[keep]], rare[keep]
        order = np.argsort(ids)  # in id order: the first found wins among equal counts
        ids, rare = ids[order], rare[order]
        ids = ids[top_k_first(rare, s.max_candidates)].tolist()
        found = []
        for other in ids:
            orec = self.records[other]
            shared = rec.anchors & orec.anchors
            if self.anchors_agree(shared):
                found.append((orec, shared))
        return found

    def _distinct(self, matches: list[Evidence], level: str) -> list[Evidence]:
        """Extra matches used for merging: only the best one per other cluster, and only
        strong ones (merging is permanent)."""
        best: dict[int, Evidence] = {}
        for ev in matches:
            cid = self.cluster_of[level].get(ev.matched_item_id)  # type: ignore[arg-type]
            if cid is None:
                continue
            if cid not in best or (ev.score or 0) > (best[cid].score or 0):
                best[cid] = ev
        return list(best.values())

    def _story_candidates(self, rec: Rec) -> _Candidates:
        """Items sharing a story band with ``rec``, in band order, with how many bands they
        share and their publish times (arrays gathered by slot); computed once per
        placement."""
        if self._cands is not None and self._cands.item_id == rec.item.id:
            return self._cands
        if rec.story_sig is None:
            slots = shared = np.zeros(0, dtype=np.int64)
        else:
            slots, shared = self.story_index.query(rec.story_sig, self.settings.story_postings)
            own = self._slot_of.get(rec.item.id)
            if own is not None:
                other = slots != own
                slots, shared = slots[other], shared[other]
        self._cands = cands = _Candidates(
            rec.item.id, self._slot_id[slots], self._slot_ts[slots], shared
        )
        return cands

    def _near(self, rec: Rec, window_s: float) -> list[int]:
        """The ids of the story candidates within ``window_s`` of ``rec``, at most ``max_candidates``
        of them: those sharing the most story bands (the MinHash estimate of how many salient
        terms they share), in their first order. A busy window proposes thousands through one
        common term each, and the reports of one event share many; the cut is made over
        arrays, as one Python step per candidate was most of a placement's cost."""
        cands = self._story_candidates(rec)
        keep = np.abs(cands.ts - rec.ts) <= window_s
        ids = cands.ids[keep]
        k = self.settings.max_candidates
        if len(ids) > k:
            ids = ids[top_k_first(cands.shared[keep], k)]
        return ids.tolist()

    # -- thread

    def _place_thread(self, rec: Rec, out: Outcome, story: Evidence) -> None:
        item_id = rec.item.id
        story_id = self.cluster_of["story"][item_id]
        thread = self.thread_of_story.get(story_id)
        if thread is None:
            thread = self._new_cluster("thread", item_id)
            self.thread_of_story[story_id] = thread
            first = Evidence("thread", thread, "new")
        else:
            if item_id not in self.cluster_of["thread"]:
                self._join("thread", item_id, thread)
            first = Evidence("thread", thread, "story", story.matched_item_id, story.score)
        # Link this story to other stories on the same topic (by centroid similarity). The
        # scores do not change while threads merge below, so they are computed at once.
        centroid = self.centroid_vec(story_id)
        best: Evidence | None = None
        seen_stories = {story_id}
        near: list[tuple[int, int]] = []  # (item, its story)
        story_of, thread_of = self.cluster_of["story"], self.thread_of_story
        ids = self._near(rec, self.settings.thread_window_s)
        for other, other_story in zip(ids, map(story_of.get, ids), strict=True):
            if other_story is None or other_story in seen_stories:
                continue
            seen_stories.add(other_story)
            if thread_of.get(other_story) != thread:  # in this thread already: stays so
                near.append((other, other_story))
        cached, vec_of = self._centroid_vecs, self.centroid_vec
        vecs = [cached[o] if o in cached else vec_of(o) for _, o in near]
        scores = similarities(self.vocab, centroid, vecs, overlap=False).cosine
        # only a story close enough can link (the rest would change nothing: skipped at once)
        for k in np.flatnonzero(scores >= self.settings.thread_threshold).tolist():
            (other, other_story), other_centroid, score = near[k], vecs[k], float(scores[k])
            orec = self.records[other]
            if self.thread_of_story.get(other_story) == self.thread_of_story[story_id]:
                continue
            # Two headline-only stories share little beyond the words of the search that
            # found them: too thin to call one topic.
            if max(len(centroid), len(other_centroid)) < self.settings.short_terms:
                continue
            mine, theirs = self.thread_of_story[story_id], self.thread_of_story[other_story]
            if (
                self.story_thread_similarity(story_id, theirs) >= self.settings.thread_threshold
                and self.story_thread_similarity(other_story, mine)
                >= self.settings.thread_threshold
                and self._can_merge("thread", mine, theirs)
            ):
                thread = self._merge("thread", mine, theirs, out)
                ev = Evidence(
                    "thread",
                    thread,
                    "centroid",
                    other,
                    round(score, 4),
                    self.estimate(rec.story_sig, orec.story_sig),
                    tuple(self.matched_bands(rec.story_sig, orec.story_sig, "story")),
                )
                if best is None or (ev.score or 0) > (best.score or 0):
                    best = ev
        final = self.thread_of_story[story_id]
        if item_id not in self.cluster_of["thread"]:
            self._join("thread", item_id, final)
        chosen = best or first
        out.evidence[(item_id, "thread")] = Evidence(
            "thread",
            self.cluster_of["thread"][item_id],
            chosen.method,
            chosen.matched_item_id,
            chosen.score,
            chosen.estimated_score,
            chosen.bands,
        )

    # ------------------------------------------------------------ queries

    def clusters_of(self, item_id: int) -> dict[str, int]:
        return {lv: self.cluster_of[lv][item_id] for lv in LEVELS}
