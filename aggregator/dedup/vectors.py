"""Term vectors for story and thread similarity: numpy arrays over a recycled vocabulary.

An item is compared with every LSH candidate in its window, hundreds on a busy day; one Python
dict walk per pair was the engine's whole cost. Here a placement gathers the candidates' arrays
once and scores them all in a few numpy calls. The scores are the same TF-IDF cosine and IDF
overlap as before (``1 + ln tf`` times ``ln((N + 1) / (df + 1)) + 1``), so explanations, which
score one pair through the same functions, agree with the decisions.

Term ids are recycled when no held item uses a term any more, so a daemon that runs for months
holds the vocabulary of its windows, not of its whole history.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np


@dataclass(frozen=True, slots=True)
class TermVector:
    """Sorted term ids and their ``1 + ln(count)`` weights, held as the two columns of one
    int64 array (the weights as their float64 bits): a comparison lays hundreds of vectors
    end to end, and one concatenation of them cost half as much as two."""

    pairs: np.ndarray  # shape (n, 2), int64: term id, weight bits

    @classmethod
    def of(cls, ids: np.ndarray, tfw: np.ndarray) -> TermVector:
        pairs = np.empty((len(ids), 2), dtype=np.int64)
        pairs[:, 0] = ids
        pairs[:, 1] = np.asarray(tfw, dtype=np.float64).view(np.int64)
        return cls(pairs)

    @property
    def ids(self) -> np.ndarray:
        return self.pairs[:, 0]

    @property
    def tfw(self) -> np.ndarray:
        return self.pairs[:, 1].view(np.float64)

    def __len__(self) -> int:
        return len(self.pairs)


EMPTY = TermVector(np.zeros((0, 2), dtype=np.int64))


class Vocabulary:
    """Term ids and document frequencies of the documents counted in (the held items)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._terms: list[str | None] = []
        self._df = np.zeros(1024, dtype=np.int64)
        self._log_df = np.zeros(1024, dtype=np.float64)  # ln(df + 1): idf without a log per use
        self._scratch = np.zeros(1024, dtype=np.float64)  # a query's weights, zero elsewhere
        self._free: list[int] = []
        self.n_docs = 0

    def __len__(self) -> int:
        return len(self._ids)

    def _id(self, term: str) -> int:
        tid = self._ids.get(term)
        if tid is None:
            if self._free:
                tid = self._free.pop()
                self._terms[tid] = term
            else:
                tid = len(self._terms)
                self._terms.append(term)
                self._reserve(len(self._terms))
            self._ids[term] = tid
        return tid

    def _reserve(self, n_ids: int) -> None:
        """Room for ``n_ids`` term ids in the per-id arrays, doubling them as needed."""
        size = len(self._df)
        while size < n_ids:
            size *= 2
        if size > len(self._df):
            for name in ("_df", "_log_df"):
                old = getattr(self, name)
                grown = np.zeros(size, dtype=old.dtype)
                grown[: len(old)] = old
                setattr(self, name, grown)
            self._scratch = np.zeros_like(self._log_df)

    def term_ids(self, terms: Collection[str]) -> np.ndarray:
        """The ids of terms, in their order (new terms are assigned ids, in that order; they
        stay reserved until a document holding them is counted in and out again)."""
        # one C-level lookup of every term; the few new ones then get ids (most items bring
        # one or two, and retrying all of them in Python on the first unknown one made this a
        # fifth slower)
        ids = np.fromiter(map(self._ids.get, terms, repeat(-1)), dtype=np.int64, count=len(terms))
        new = np.flatnonzero(ids < 0)
        if len(new):
            listed = list(terms)
            for k in new.tolist():
                ids[k] = self._id(listed[k])
        return ids

    def vector(self, counts: Mapping[str, int], ids: np.ndarray | None = None) -> TermVector:
        """The vector of a term count (``ids``: its terms' :meth:`term_ids`, when the caller
        has them already)."""
        if not counts:
            return EMPTY
        if ids is None:
            ids = self.term_ids(counts)
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        order = np.argsort(ids)
        return TermVector.of(ids[order], 1.0 + np.log(tf[order]))

    def count_in(self, vec: TermVector) -> None:
        self._df[vec.ids] += 1
        self._log_df[vec.ids] = np.log(self._df[vec.ids] + 1)
        self.n_docs += 1

    def count_in_many(self, vecs: Sequence[TermVector]) -> None:
        """``count_in`` for each vector, in one pass (a start-up counts in thousands)."""
        if not vecs:
            return
        ids = np.concatenate([v.ids for v in vecs])
        if len(ids):
            touched, n = np.unique(ids, return_counts=True)
            self._df[touched] += n
            self._log_df[touched] = np.log(self._df[touched] + 1)
        self.n_docs += len(vecs)

    def count_out(self, vec: TermVector) -> None:
        df = self._df
        df[vec.ids] -= 1
        self._log_df[vec.ids] = np.log(np.maximum(df[vec.ids], 0) + 1)
        self.n_docs -= 1
        for tid in vec.ids[df[vec.ids] <= 0].tolist():
            term = self._terms[tid]
            if term is not None:
                del self._ids[term]
                self._terms[tid] = None
                self._free.append(tid)
            df[tid] = 0

    def terms_of(self, vec: TermVector) -> list[str]:
        """The terms of a vector counted in (an item's terms are not kept once stored)."""
        return [t for t in map(self._terms.__getitem__, vec.ids.tolist()) if t is not None]

    def df(self, term: str) -> int:
        tid = self._ids.get(term)
        return 0 if tid is None else int(self._df[tid])

    def idf(self, ids: np.ndarray) -> np.ndarray:
        """``ln((N + 1) / (df + 1)) + 1`` of term ids."""
        return (math.log(self.n_docs + 1) + 1.0) - self._log_df[ids]

    def idf_of(self, terms: Iterable[str]) -> dict[str, float]:
        """IDF of named terms (for sorting and explaining; the same formula)."""
        terms = list(terms)
        ids = np.fromiter(map(self._ids.get, terms, repeat(-1)), dtype=np.int64, count=len(terms))
        log_df = np.where(ids >= 0, self._log_df[np.maximum(ids, 0)], 0.0)
        values = (math.log(self.n_docs + 1) + 1.0) - log_df
        return dict(zip(terms, values.tolist(), strict=True))

    # -- loading many stored items at once (a start-up)

    def vectors(
        self, terms: Sequence[str], counts: np.ndarray, bounds: np.ndarray
    ) -> tuple[list[TermVector], np.ndarray]:
        """:meth:`vector` of many term counts laid end to end (the ``k``-th's terms at
        ``bounds[k]:bounds[k + 1]``), with the ids one call each, in order, would give; and
        the ids in the terms' order. A start-up's per-term work in a few C-level passes."""
        n = len(terms)
        ids = np.fromiter(map(self._ids.get, terms, repeat(-1)), dtype=np.int64, count=n)
        new = np.flatnonzero(ids < 0).tolist()
        if new:
            self._add(list(dict.fromkeys(map(terms.__getitem__, new))))
            ids[new] = np.fromiter(
                map(self._ids.__getitem__, map(terms.__getitem__, new)), np.int64, len(new)
            )
        lens = np.diff(bounds)
        # each vector's terms sorted by id: one sort of (vector, id) keys
        order = np.argsort((np.repeat(np.arange(len(lens), dtype=np.int64), lens) << 32) | ids)
        pairs = np.empty((n, 2), dtype=np.int64)
        pairs[:, 0] = ids[order]
        pairs[:, 1] = (1.0 + np.log(np.asarray(counts, dtype=np.float64)[order])).view(np.int64)
        # views of one array: held as long as any of them (a chunk's items leave together)
        vecs = [
            TermVector(pairs[lo:hi]) if hi > lo else EMPTY
            for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        ]
        return vecs, ids

    def _add(self, terms: list[str]) -> None:
        """Ids for new terms, as :meth:`_id` for each in order gives them (recycled ones
        first), with the arrays grown once."""
        free = self._free
        reused = [free.pop() for _ in range(min(len(free), len(terms)))]
        for tid, term in zip(reused, terms, strict=False):
            self._terms[tid] = term
        start = len(self._terms)
        rest = terms[len(reused) :]
        self._terms += rest
        self._reserve(len(self._terms))
        self._ids.update(zip(terms, reused, strict=False))
        self._ids.update(zip(rest, range(start, start + len(rest)), strict=True))

    def names(self, ids: np.ndarray) -> list[str]:
        """The terms of ids in use (one string per term, shared by whoever holds it)."""
        return list(map(self._terms.__getitem__, ids.tolist()))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Similarities:
    """One query against many vectors: per other vector the TF-IDF cosine, the number and IDF
    mass of the shared terms and its own IDF mass (and the query's). Asked without
    ``overlap``, the three per-vector overlap arrays are empty."""

    cosine: np.ndarray
    shared: np.ndarray
    shared_idf: np.ndarray
    other_idf: np.ndarray
    query_idf: float


def similarities(
    vocab: Vocabulary, query: TermVector, others: Sequence[TermVector], *, overlap: bool = True
) -> Similarities:
    """``overlap=False``: the cosine only (what threads compare; the overlap figures are a
    third of the work and only headline comparisons read them)."""
    n = len(others)
    zeros = np.zeros(n, dtype=np.float64)
    qidf = vocab.idf(query.ids)
    query_idf = float(qidf.sum())
    if n == 0 or len(query) == 0:
        return _cosine_only(zeros, query_idf, overlap)
    arrays = [o.pairs for o in others]
    lens = np.fromiter(map(len, arrays), dtype=np.int64, count=n)
    total = int(lens.sum())
    if total == 0:
        return _cosine_only(zeros, query_idf, overlap)
    pairs = np.concatenate(arrays)
    ids, tfw = pairs[:, 0], pairs[:, 1].view(np.float64)
    idf = vocab.idf(ids)
    w = tfw * idf
    qw = query.tfw * qidf
    scratch = vocab._scratch  # the query's weights by term id: one gather finds shared terms
    scratch[query.ids] = qw
    qhit = scratch[ids]
    scratch[query.ids] = 0.0
    # reduceat over segment starts; empty segments are masked below (reduceat would
    # return the next element instead of 0)
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    safe = np.minimum(starts, total - 1)
    nonempty = lens > 0

    def seg(values: np.ndarray) -> np.ndarray:
        return np.where(nonempty, np.add.reduceat(values, safe), 0)

    dots = seg(w * qhit)
    norms = np.sqrt(seg(w * w))
    qnorm = float(np.sqrt((qw * qw).sum()))
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(norms > 0, dots / (norms * qnorm), 0.0) if qnorm else zeros
    if not overlap:
        return _cosine_only(cos, query_idf, overlap)
    hit = qhit > 0
    return Similarities(
        cosine=cos,
        shared=seg(hit.astype(np.int64)),
        shared_idf=seg(np.where(hit, idf, 0.0)),
        other_idf=seg(idf),
        query_idf=query_idf,
    )


def _cosine_only(cosine: np.ndarray, query_idf: float, overlap: bool) -> Similarities:
    """Cosines with no shared terms anywhere (zero overlap figures), or none asked for (empty
    ones)."""
    n = len(cosine) if overlap else 0
    return Similarities(cosine, np.zeros(n, np.int64), np.zeros(n), np.zeros(n), query_idf)
