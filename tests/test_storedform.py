"""The packed form of stored story features: what a start-up reads instead of the JSON."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from aggregator.dedup.storedform import pack, readable, unpack
from aggregator.dedup.vectors import Vocabulary

FULL = {
    "terms": {"berlin": 4, "senat": 3, "2026": 1, "straß": 2, "münch": 1},
    "lead": {"senat": 3, "berlin": 2, "münch": 1},
    "short": False,
    "body_len": 312,
    "lang": "de",
    "anchors": ["@berlin", "#2026", "lysenkov"],
}
EMPTY = {"terms": {}, "lead": {}, "short": True, "body_len": 0, "lang": "", "anchors": []}
ANCHORS_ONLY = {**EMPTY, "anchors": ["#58000"], "lang": None}


def as_features(got, k: int) -> dict[str, object]:
    """Item ``k`` of an unpacked run as the JSON dict it was packed from."""
    lo, hi = got.bounds[k], got.bounds[k + 1]
    a, b = got.lead_bounds[k], got.lead_bounds[k + 1]
    return {
        "terms": dict(zip(got.terms[lo:hi], got.counts[lo:hi].tolist(), strict=True)),
        "lead": {
            got.terms[i]: n
            for i, n in zip(got.lead_at[a:b].tolist(), got.lead_counts[a:b], strict=True)
        },
        "short": got.short[k],
        "body_len": got.body_len[k],
        "lang": got.lang[k],
        "anchors": got.anchors[k],
    }


def test_a_run_of_packed_features_unpacks_to_what_was_packed_in_order() -> None:
    one_term = {**EMPTY, "terms": {"x": 1}, "lead": {"x": 1}, "lang": "en"}
    runs = [FULL, EMPTY, ANCHORS_ONLY, one_term, FULL]
    blobs = [pack(f) for f in runs]
    assert all(b is not None and readable(b) for b in blobs)
    got = unpack(blobs)  # type: ignore[arg-type]
    assert got.bounds.tolist() == [0, 5, 5, 5, 6, 11]
    for k, features in enumerate(runs):
        want = {**features, "lang": features["lang"] or ""}
        back = as_features(got, k)
        assert back == want
        assert list(back["terms"]) == list(want["terms"])  # dict order kept: it orders ids
        assert list(back["lead"]) == list(want["lead"])


@pytest.mark.parametrize(
    "features",
    [
        None,
        {},
        {k: v for k, v in FULL.items() if k != "anchors"},  # another shape: left to the JSON
        {**FULL, "extra": 1},
        {**FULL, "lead": {"senat": 3, "elsewhere": 1}},  # a lead term not among the terms
        {**FULL, "terms": {"a\0b": 1}, "lead": {}},
        {**FULL, "anchors": ["a\0b"]},
        {**FULL, "terms": {"berlin": -1}, "lead": {}},
        {**FULL, "terms": {"berlin": 2**32}, "lead": {}},
        {**FULL, "terms": {"berlin": 1.0}, "lead": {}},
        {**FULL, "short": 1},
        {**FULL, "body_len": "3"},
        {**FULL, "lang": "x" * 300},
    ],
)
def test_features_the_form_cannot_hold_are_not_packed(features: object) -> None:
    assert pack(features) is None  # type: ignore[arg-type]


def test_only_this_format_is_readable() -> None:
    blob = pack(FULL)
    assert blob is not None and readable(blob)
    assert not readable(b"") and not readable(None) and not readable(b"\x02" + blob[1:])


def test_vectors_of_a_run_equal_one_vector_call_each_in_order() -> None:
    """Ids included: a start-up must assign new terms the ids placing them one by one
    would (they order the sums of the similarities)."""
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(60)]
    counts = [
        Counter(
            {
                str(w): int(n)
                for w, n in zip(rng.choice(words, k), rng.integers(1, 9, k), strict=True)
            }
        )
        for k in (5, 0, 17, 1, 30, 12)
    ]
    one, many = Vocabulary(), Vocabulary()
    for v in (one, many):  # known terms, and a recycled id
        v.count_in(v.vector({"w3": 1, "gone": 2, "w7": 1}))
        v.count_out(v.vector({"gone": 1}))
    expected = [one.vector(c) for c in counts]
    terms = [t for c in counts for t in c]
    flat = np.array([n for c in counts for n in c.values()], dtype=np.int64)
    bounds = np.cumsum([0, *map(len, counts)])
    got, ids = many.vectors(terms, flat, bounds)
    assert [g.pairs.tolist() for g in got] == [e.pairs.tolist() for e in expected]
    assert many.names(ids) == terms
    assert list(many._ids.items()) == list(one._ids.items())
    assert many._free == one._free
