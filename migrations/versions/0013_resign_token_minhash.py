"""Every stored MinHash signature re-signed for the token-hash scheme (issue 22).

Signatures stored before hashed each value's string with SHA-1 (datasketch's default); this
version hashes each token once and mixes shingle hashes from them
(``aggregator/dedup/minhash.py``), so old and new signatures would never agree. Rewritten
here a batch of items at a time, from what is stored:

* duplicate: the shingles of the item's stored text, cleaned with its source's stored
  boilerplate lines (what the engine verifies a held item with, ``Engine.dup_shingles``). An
  item left without shingles loses the signature (it proposes no duplicates).
* story: the item's top terms. They are not stored, but the old signature names them among
  the stored terms: a term whose permuted hash is a permutation's minimum is one of them, and
  any other term is below the signature somewhere in nearly every case. A top term that is no
  permutation's minimum (~1% at 30 terms and 128 permutations) is taken from the terms never
  below the signature, the most counted first, up to ``story_top_terms`` (the default: this
  runs without the config).

The packed features (0012) hold no signature and stay. Downgrading re-signs the same way back
to SHA-1. The old scheme is copied here; the new one is the current code's (a later change of
it must copy these functions here).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from operator import methodcaller
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

from aggregator.dedup import minhash
from aggregator.dedup.engine import DedupItem, Engine, Settings, title_key
from aggregator.dedup.text import tokens
from aggregator.domain import AGGREGATOR_SOURCE_TYPES

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000

_signatures = sa.table(
    "signatures",
    sa.column("item_id", sa.Integer),
    sa.column("level", sa.String),
    sa.column("num_perm", sa.Integer),
    sa.column("seed", sa.Integer),
    sa.column("hashvalues", sa.LargeBinary),
    sa.column("features", sa.JSON),
)
_items = sa.table(
    "items",
    sa.column("id", sa.Integer),
    sa.column("source_id", sa.Integer),
    sa.column("publisher", sa.String),
    sa.column("title", sa.String),
    sa.column("summary", sa.String),
    sa.column("text", sa.String),
    sa.column("lang", sa.String),
    sa.column("canonical_url", sa.String),
)
_sources = sa.table(
    "sources",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("type", sa.String),
    sa.column("boilerplate_docs", sa.Integer),
)
_lines = sa.table(
    "boilerplate_lines",
    sa.column("source_id", sa.Integer),
    sa.column("line_hash", sa.BigInteger),
    sa.column("count", sa.Integer),
)

# -- the SHA-1 scheme of 0001-0012 (datasketch's MinHash over each value's UTF-8 bytes)

_digest = methodcaller("digest")
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))


def _word_shingles(toks: list[str], k: int = 3) -> set[str]:
    """The word k-shingles as strings, as 0001-0012 hashed them (frozen here)."""
    if len(toks) < k:
        return {" ".join(toks)} if toks else set()
    return {" ".join(toks[i : i + k]) for i in range(len(toks) - k + 1)}


def _sha1_premixed(values: Sequence[str]) -> np.ndarray:
    """Each value's ``datasketch.hashfunc.sha1_hash32``, fmix32 pre-mixed (affine32)."""
    digests = b"".join(map(_digest, map(hashlib.sha1, map(str.encode, values))))
    h = np.frombuffer(digests, dtype="<u4")[::5].astype(np.uint32)  # 20-byte digests
    s1, m1, s2, m2 = _FMIX
    h ^= h >> s1
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s1
    return h


def _token_premixed(values: Sequence[str]) -> np.ndarray:
    return minhash.premixed(minhash.token_hashes(values))


def _dup_values_sha1(toks: list[str]) -> np.ndarray:
    return _sha1_premixed(sorted(_word_shingles(toks)))


def _dup_values_token(toks: list[str]) -> np.ndarray:
    return minhash.premixed(minhash.text_shingles(toks).view(np.uint64))


# -- re-signing


def top_terms(
    terms: dict[str, int], sig: np.ndarray, seed: int, premix: Callable[[Sequence[str]], np.ndarray]
) -> list[str]:
    """The stored terms the signature ``sig`` was made of (``premix``: its scheme's hashing),
    as far as it tells (see the module's docstring)."""
    words = list(terms)
    if not words:
        return []
    a, b = minhash.permutations(len(sig), seed)
    permuted = a * premix(words)
    permuted += b
    col = sig.astype(np.uint32).reshape(-1, 1)
    named = (permuted == col).any(axis=0)
    top = [w for w, hit in zip(words, named.tolist(), strict=True) if hit]
    want = min(Settings().story_top_terms, len(words))
    if len(top) < want:
        never_below = (permuted >= col).all(axis=0) & ~named
        rest = [w for w, ok in zip(words, never_below.tolist(), strict=True) if ok]
        top += sorted(rest, key=lambda w: (-terms[w], w))[: want - len(top)]
    return top


def _resign(
    conn: sa.Connection,
    premix_from: Callable[[Sequence[str]], np.ndarray],
    premix_to: Callable[[Sequence[str]], np.ndarray],
    dup_values: Callable[[list[str]], np.ndarray],
) -> None:
    engine = Engine()  # its boilerplate cleaning, with every source's stored lines
    held: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for source_id, line_hash, count in conn.execute(
        sa.select(_lines.c.source_id, _lines.c.line_hash, _lines.c.count)
    ):
        held[source_id].append((line_hash, count))
    for sid, name, docs in conn.execute(
        sa.select(_sources.c.id, _sources.c.name, _sources.c.boilerplate_docs)
    ):
        engine.boilerplate.load(name, held.pop(sid, ()), docs or 0)
    t, i, s = _signatures, _items, _sources
    write = (
        sa.update(t)
        .where(t.c.item_id == sa.bindparam("id"), t.c.level == sa.bindparam("lv"))
        .values(hashvalues=sa.bindparam("sig"))
    )
    drop = sa.delete(t).where(t.c.item_id == sa.bindparam("id"), t.c.level == sa.bindparam("lv"))
    after = -1
    while True:  # by item id, a batch of items at a time: never the whole store in memory
        ids = conn.scalars(
            sa.select(t.c.item_id)
            .distinct()
            .where(t.c.item_id > after)
            .order_by(t.c.item_id)
            .limit(BATCH)
        ).all()
        if not ids:
            return
        after = ids[-1]
        rows = conn.execute(
            sa.select(
                t.c.item_id,
                t.c.level,
                t.c.num_perm,
                t.c.seed,
                t.c.hashvalues,
                t.c.features,
                i.c.publisher,
                i.c.title,
                i.c.summary,
                i.c.text,
                i.c.lang,
                i.c.canonical_url,
                s.c.name,
                s.c.type,
            )
            .join(i, i.c.id == t.c.item_id)
            .join(s, s.c.id == i.c.source_id)
            .where(t.c.item_id.in_(ids))
            .order_by(t.c.item_id, t.c.level)
        ).all()
        groups, targets, gone = [], [], []
        for row in rows:
            old = np.frombuffer(row.hashvalues, dtype=np.uint64)
            if row.level == "duplicate":
                values = dup_values(_dup_tokens(engine, row))
            elif row.level == "story" and isinstance(row.features, dict):
                terms = row.features.get("terms") or {}
                values = premix_to(top_terms(terms, old, row.seed, premix_from))
            else:
                continue  # not a level this version signs
            if len(values):
                groups.append((row.num_perm, row.seed, values))
                targets.append((row.item_id, row.level))
            else:
                gone.append({"id": row.item_id, "lv": row.level})
        values_of = [
            {"id": item_id, "lv": level, "sig": sig.astype(np.uint64).tobytes()}
            for (item_id, level), sig in zip(targets, _signed(groups), strict=True)
        ]
        if values_of:
            conn.execute(write, values_of)
        if gone:
            conn.execute(drop, gone)


def _dup_tokens(engine: Engine, row: Any) -> list[str]:
    kind = row.type if row.type in AGGREGATOR_SOURCE_TYPES else "site"
    item = DedupItem(
        id=row.item_id,
        source=row.name,
        feed_kind=kind,
        publisher=row.publisher,
        title=row.title,
        summary=row.summary if kind == "bing_news" or not row.text else "",
        lang=row.lang,
        canonical_url=row.canonical_url,
        published_at=None,  # type: ignore[arg-type]  # cleaning reads no time
    )
    engine._texts = {row.item_id: row.text or ""}
    body = engine._clean_body(item)
    return tokens(f"{title_key(item.title, item.publisher, kind)}\n{body}")


def _signed(groups: list[tuple[int, int, np.ndarray]]) -> list[np.ndarray]:
    """Each group's signature (pre-mixed values): datasketch's affine32 permutations."""
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for k, (num_perm, seed, _) in enumerate(groups):
        by_shape[(num_perm, seed)].append(k)
    out: list[np.ndarray] = [np.zeros(0)] * len(groups)
    for (num_perm, seed), ks in by_shape.items():
        sigs = minhash.permuted_min([groups[k][2] for k in ks], num_perm, seed)
        for k, sig in zip(ks, sigs, strict=True):
            out[k] = sig
    return out


def upgrade() -> None:
    _resign(op.get_bind(), _sha1_premixed, _token_premixed, _dup_values_token)


def downgrade() -> None:
    _resign(op.get_bind(), _token_premixed, _sha1_premixed, _dup_values_sha1)

