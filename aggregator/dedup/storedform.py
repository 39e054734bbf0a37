"""The form a start-up reads an item's story features in: one binary value per item.

A start-up holds every item of the windows (50k and more) and read their features as JSON:
decoding each term dict, then looking its terms up one by one, was most of the load. The
packed form holds the same features with the terms as one NUL-separated string and the
counts as arrays, so a load splits strings in C and counts a whole chunk's terms into the
vocabulary at once (``Vocabulary.vectors``). The JSON stays the readable record (headline
choice, exports); this form is derived from it, written beside it, and a value this version
cannot read is ignored in favour of the JSON.

Layout (little-endian): a header (format, number of terms, of lead terms, of anchors, body
length in tokens, short flag, length of the language code), the language code, the terms'
counts (uint32), the lead's terms as indices into the terms (uint32) and their counts
(uint32), then the terms and the anchors as one NUL-separated UTF-8 string (terms are word
tokens and anchors folded names or numbers: neither holds a NUL, which :func:`pack` checks).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT = 1
_HEAD = struct.Struct("<BIIIIBB")
_U32 = np.dtype("<u4")
_MAX = 0xFFFFFFFF


def pack(features: Mapping[str, Any] | None) -> bytes | None:
    """The packed form of stored story features (``service._signature_rows``' dict), or None
    when they do not fit it (left to the JSON)."""
    if not isinstance(features, Mapping) or set(features) != {
        "terms",
        "lead",
        "short",
        "body_len",
        "lang",
        "anchors",
    }:
        return None
    terms, lead, anchors = features["terms"], features["lead"], features["anchors"]
    lang, body_len, short = features["lang"] or "", features["body_len"], features["short"]
    if not (
        isinstance(terms, Mapping)
        and isinstance(lead, Mapping)
        and isinstance(anchors, list | tuple)
        and isinstance(lang, str)
        and type(body_len) is int
        and 0 <= body_len <= _MAX
        and type(short) is bool
    ):
        return None
    words, leading = list(terms), list(lead)
    strings = [*words, *anchors]
    try:  # a non-string fails the join, a lead term not among the terms the lookup
        text = "\0".join(strings)
        # the lead's terms are the first of the terms as ``text.term_counts`` counts them
        lead_at = (
            range(len(leading))
            if words[: len(leading)] == leading
            else list(map(dict(zip(words, range(len(words)), strict=True)).__getitem__, lead))
        )
    except (TypeError, KeyError):
        return None
    if text.count("\0") != max(len(strings) - 1, 0) or "\0" in lang:
        return None  # a string held a NUL
    numbers = np.array([*terms.values(), *lead_at, *lead.values()])
    code = lang.encode()
    if (
        len(numbers)
        and (numbers.dtype.kind != "i" or numbers.min() < 0 or numbers.max() > _MAX)
        or len(code) > 255
    ):
        return None  # not counts (floats, flags, too large)
    return b"".join(
        (
            _HEAD.pack(FORMAT, len(words), len(lead), len(anchors), body_len, short, len(code)),
            code,
            numbers.astype(_U32).tobytes(),
            text.encode(),
        )
    )


@dataclass(frozen=True, slots=True)
class Unpacked:
    """The features of a run of items: their terms end to end (item ``k``'s at
    ``bounds[k]:bounds[k + 1]``, in stored order) with their counts; their lead terms end to
    end too (item ``k``'s at ``lead_bounds[k]:lead_bounds[k + 1]``), as indices into
    ``terms``, with their counts; and per item the rest as stored."""

    terms: list[str]
    counts: np.ndarray  # int64
    bounds: np.ndarray  # int64, one more than items
    lead_at: np.ndarray  # int64
    lead_counts: list[int]
    lead_bounds: list[int]  # one more than items
    short: list[bool]
    body_len: list[int]
    lang: list[str]
    anchors: list[list[str]]


def readable(blob: bytes | None) -> bool:
    """Whether :func:`unpack` reads this value (else the item's JSON is read)."""
    return bool(blob) and blob[0] == FORMAT and len(blob) >= _HEAD.size  # type: ignore[index]


def unpack(blobs: Sequence[bytes]) -> Unpacked:
    """Read packed values (each :func:`readable`): a header and a split each, the numbers
    of all of them in a few array operations."""
    terms: list[str] = []
    numbers = []  # each item's uint32 section: counts, lead indices, lead counts
    parts = []  # the lengths of those three parts, item after item
    short, body_len, lang, anchors = [], [], [], []
    head_size = _HEAD.size
    unpack_head = _HEAD.unpack_from
    for blob in blobs:
        _, n, n_lead, n_anchors, length, is_short, n_code = unpack_head(blob)
        at = head_size + n_code
        lang.append(blob[head_size:at].decode())
        numbers.append(np.frombuffer(blob, _U32, n + 2 * n_lead, at))
        parts += (n, n_lead, n_lead)
        strings = blob[at + 4 * (n + 2 * n_lead) :].decode().split("\0")
        terms += strings[:n]
        anchors.append(strings[n : n + n_anchors])
        short.append(bool(is_short))
        body_len.append(length)
    lens = np.array(parts, dtype=np.int64).reshape(-1, 3)
    part = np.repeat(np.tile(np.arange(3), len(lens)), lens.ravel())
    values = np.concatenate(numbers).astype(np.int64) if numbers else np.zeros(0, np.int64)
    bounds = np.concatenate(([0], np.cumsum(lens[:, 0])))
    lead_bounds = np.concatenate(([0], np.cumsum(lens[:, 1])))
    return Unpacked(
        terms=terms,
        counts=values[part == 0],
        bounds=bounds,
        # each item's indices count from its first term
        lead_at=values[part == 1] + np.repeat(bounds[:-1], lens[:, 1]),
        lead_counts=values[part == 2].tolist(),
        lead_bounds=lead_bounds.tolist(),
        short=short,
        body_len=body_len,
        lang=lang,
        anchors=anchors,
    )
