"""MinHash signatures made with a few array operations, equal bit for bit to datasketch's.

datasketch's ``MinHash`` (its default scheme, ``affine32``) hashes each value to the first
four bytes of its SHA-1, read little-endian; pre-mixes that with MurmurHash3's 32-bit
finaliser; and keeps, per permutation ``(a, b)`` drawn from the seed, the least
``a * h + b`` mod 2**32 (uint32 arithmetic wraps, which is the modulo). The same steps over
arrays, without a ``MinHash`` object and a list per call, give the same values: signatures
stored or indexed before stay valid, and ``datasketch.MinHash(hashvalues=...,
scheme="affine32")`` takes these as its own. One SHA-1 per value is most of what is left.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from functools import lru_cache
from itertools import chain
from operator import methodcaller

import numpy as np
from datasketch import MinHash

SCHEME = "affine32"
EMPTY = np.uint32(0xFFFFFFFF)  # a permutation's value before any value is seen
CHUNK = 4096  # values permuted at once: bounds the (num_perm, CHUNK) intermediate

_digest = methodcaller("digest")
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))


@lru_cache(maxsize=4)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``(a, b)`` for ``num_perm`` and ``seed``, as read-only uint32 columns."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    cols = tuple(np.asarray(p, dtype=np.uint32).reshape(-1, 1) for p in (a, b))
    for col in cols:
        col.flags.writeable = False
    return cols  # type: ignore[return-value]


def value_hashes(values: Collection[str]) -> np.ndarray:
    """Each value's ``datasketch.hashfunc.sha1_hash32`` (of its UTF-8 bytes), pre-mixed."""
    digests = b"".join(map(_digest, map(hashlib.sha1, map(str.encode, values))))
    h = np.frombuffer(digests, dtype="<u4")[::5].astype(np.uint32)  # 20-byte digests
    s1, m1, s2, m2 = _FMIX
    h ^= h >> s1
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s1
    return h


def signatures(groups: Sequence[Collection[str]], num_perm: int, seed: int) -> np.ndarray:
    """One signature per group of values, as the rows of a uint32 matrix: what
    ``MinHash(num_perm, seed).update_batch`` of the group's UTF-8 values holds (an empty
    group's is all ``EMPTY``). The values of all groups are hashed in one pass."""
    a, b = permutations(num_perm, seed)
    hashed = value_hashes(list(chain.from_iterable(groups)))
    out = np.full((len(groups), num_perm), EMPTY, dtype=np.uint32)
    start = 0
    for row, group in zip(out, groups, strict=True):
        end = start + len(group)
        for at in range(start, end, CHUNK):
            permuted = a * hashed[at : min(at + CHUNK, end)]
            permuted += b
            np.minimum(row, permuted.min(axis=1), out=row)
        start = end
    return out


def signature(values: Collection[str], num_perm: int, seed: int) -> np.ndarray:
    """One group's signature (see :func:`signatures`)."""
    return signatures([values], num_perm, seed)[0]
