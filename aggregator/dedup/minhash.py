"""MinHash signatures from 64-bit token hashes, in datasketch's form.

Hashing every shingle's string with SHA-1 (what datasketch does by default) was most of the
cost of an item's features. Here each *token* is hashed once (BLAKE2b, 64 bits, stable across
processes; a bounded cache, as news vocabulary repeats), a word shingle's hash is a mix of
its tokens' hashes computed over arrays, and a term's hash is its token hash. The MinHash is
datasketch's ``affine32`` scheme over the high 32 bits of each value's hash: its MurmurHash3
fmix32 pre-mix, its permutations ``(a, b)`` drawn from the seed, per permutation the least
``a * h + b`` mod 2**32 (uint32 arithmetic wraps, which is the modulo). So a signature is
what ``datasketch.MinHash(num_perm, seed, hashfunc=high32).update_batch(value_hashes)`` holds
(``tests/test_minhash.py``), and ``MinHash(hashvalues=..., scheme="affine32")`` takes it as
its own: stored (uint64 bytes) and indexed as before. Signatures stored before migration 0013
hashed each value's string with SHA-1; that migration re-signs them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from datasketch import MinHash

from .text import through_cache

SCHEME = "affine32"
EMPTY = np.uint32(0xFFFFFFFF)  # a permutation's value before any value is seen
CHUNK = 4096  # values permuted at once: bounds the (num_perm, CHUNK) intermediate
# Tokens whose hash is kept (~130 bytes each, so ~13 MiB full): the oldest half goes when it
# is full, so a daemon's memory stays flat while it meets new names all year.
TOKEN_CACHE = 100_000
SHINGLE = 3  # words per shingle

_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX = (np.uint64(30), np.uint64(0xBF58476D1CE4E5B9), np.uint64(27))
_MIX2 = (np.uint64(0x94D049BB133111EB), np.uint64(31))
_HIGH = np.uint64(32)

_token_hash: dict[str, int] = {}


def hash64(token: str) -> int:
    """A token's 64-bit hash: the first 8 bytes of its UTF-8 BLAKE2b, little-endian."""
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def token_hashes(toks: Sequence[str]) -> np.ndarray:
    """Each token's :func:`hash64` as uint64, through the bounded cache."""
    found = through_cache(_token_hash, toks, hash64, TOKEN_CACHE)
    return np.fromiter(found, dtype=np.uint64, count=len(found))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every output bit depends on every input bit."""
    s1, m1, s2 = _MIX
    m2, s3 = _MIX2
    x ^= x >> s1
    x *= m1
    x ^= x >> s2
    x *= m2
    x ^= x >> s3
    return x


def shingle_hashes(hashed: np.ndarray, k: int = SHINGLE) -> np.ndarray:
    """The hashes of the word ``k``-shingles of a text, from its tokens' hashes in order (one
    per window, repeats kept); a text of fewer than ``k`` tokens is one shingle of them all.
    Order-sensitive: each step mixes the hash so far, times an odd constant, plus the next
    token's."""
    n = len(hashed)
    if not n:
        return np.zeros(0, dtype=np.uint64)
    width = min(k, n)
    m = n - width + 1
    x = hashed[:m].copy()
    for j in range(1, width):
        x *= _GOLDEN
        x += hashed[j : j + m]
        _mix(x)
    return x


def text_shingles(toks: Sequence[str], k: int = SHINGLE) -> np.ndarray:
    """A text's distinct ``k``-shingles as sorted int64 hashes (what duplicate verification
    compares and the duplicate signature is made of)."""
    return _distinct(np.sort(shingle_hashes(token_hashes(toks), k).view(np.int64)))


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """A sorted array without repeats (``np.unique`` hashes first: ten times slower here)."""
    keep = np.empty(len(ordered), dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


@lru_cache(maxsize=4)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``(a, b)`` for ``num_perm`` and ``seed``, as read-only uint32 columns."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    cols = tuple(np.asarray(p, dtype=np.uint32).reshape(-1, 1) for p in (a, b))
    for col in cols:
        col.flags.writeable = False
    return cols  # type: ignore[return-value]


def high32(value: int | np.ndarray) -> int | np.ndarray:
    """The 32 bits of a 64-bit value hash that the MinHash reads (datasketch's ``hashfunc``)."""
    return value >> 32 if isinstance(value, int) else (value.view(np.uint64) >> _HIGH)


def premixed(hashes: np.ndarray) -> np.ndarray:
    """64-bit value hashes (uint64) as the permutations take them: the high half, fmix32 pre-mixed
    (datasketch's affine32 step before the permutations)."""
    h = (hashes >> _HIGH).astype(np.uint32)
    s1, m1, s2, m2 = _FMIX
    h ^= h >> s1
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s1
    return h


def permuted_min(premixed_groups: Sequence[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
    """One signature per group of pre-mixed 32-bit values (rows of a uint32 matrix): per
    permutation the least ``a * h + b`` mod 2**32; an empty group's is all ``EMPTY``."""
    a, b = permutations(num_perm, seed)
    out = np.full((len(premixed_groups), num_perm), EMPTY, dtype=np.uint32)
    for row, group in zip(out, premixed_groups, strict=True):
        for at in range(0, len(group), CHUNK):
            permuted = a * group[at : at + CHUNK]
            permuted += b
            np.minimum(row, permuted.min(axis=1), out=row)
    return out


def signatures(groups: Sequence[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
    """One signature per group of 64-bit value hashes (any integer dtype of 8 bytes; repeats
    and order do not matter), as the rows of a uint32 matrix."""
    if not groups:
        return np.full((0, num_perm), EMPTY, dtype=np.uint32)
    mixed = premixed(np.concatenate([np.asarray(g).view(np.uint64) for g in groups]))
    sizes = [len(g) for g in groups]
    if min(sizes) and len(mixed) <= CHUNK:
        # the usual call (an item's shingles and top terms): one product for all the groups,
        # then each group's minima (reduceat would give an empty group a neighbour's value)
        a, b = permutations(num_perm, seed)
        permuted = a * mixed
        permuted += b
        starts = np.cumsum([0, *sizes[:-1]])
        return np.ascontiguousarray(np.minimum.reduceat(permuted, starts, axis=1).T)
    parts, start = [], 0
    for g in groups:
        parts.append(mixed[start : start + len(g)])
        start += len(g)
    return permuted_min(parts, num_perm, seed)


def signature(values: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """One group's signature (see :func:`signatures`)."""
    return signatures([values], num_perm, seed)[0]
