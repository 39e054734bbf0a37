"""``aggregator cluster-file``: the daemon's engine over a JSONL file.

Input: one JSON object per line with ``id``, ``source`` (the publisher's name), ``feed_kind``
(``site``, ``google_news`` or ``bing_news``), ``lang``, ``title``, ``summary``, ``text`` (a site
item's page as a scrape returns it, chrome included), ``url`` and ``published`` (ISO 8601); all
but ``id`` may be missing, other fields are ignored. Output: ``{"id", "duplicate", "story",
"thread"}`` for each input item, in input order; equal cluster ids mean one cluster.

Items are fed in ``published`` order (items without a date last, as if just fetched), into a
fresh engine: the throw-away store is the engine's own memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..domain import FEED_KINDS
from ..errors import InputError
from ..normaliser import content_hash
from ..urls import canonical_url
from .engine import DedupItem, Engine, Settings
from .evaluate import read_jsonl


def read_items(path: Path) -> list[dict[str, Any]]:
    """The input items; each line an object with an ``id`` (other fields may be missing)."""
    rows = read_jsonl(path)
    for n, row in enumerate(rows, 1):
        if "id" not in row:
            raise InputError(f"{path}: item {n} has no 'id'")
    return rows


def _parse_time(value: Any, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{where}: 'published' is not ISO 8601: {value!r}") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def to_items(rows: list[dict[str, Any]], path: Path) -> Iterator[tuple[DedupItem, str]]:
    """DedupItems (with their raw text) in the order the daemon would have seen them."""
    seen: set[str] = set()
    dated: list[tuple[datetime, int, dict[str, Any]]] = []
    undated: list[tuple[int, dict[str, Any]]] = []
    for n, row in enumerate(rows):
        rid = str(row["id"])
        if rid in seen:
            raise InputError(f"{path}: duplicate id {rid!r}")
        seen.add(rid)
        kind = row.get("feed_kind") or "site"
        if kind not in FEED_KINDS:
            raise InputError(f"{path}: item {rid!r}: unknown feed_kind {kind!r}")
        at = _parse_time(row.get("published"), f"{path}: item {rid!r}")
        if at is None:
            undated.append((n, row))
        else:
            dated.append((at, n, row))
    dated.sort(key=lambda t: (t[0], t[1]))
    latest = dated[-1][0] if dated else datetime.now(UTC)
    ordered = [(at, n, row) for at, n, row in dated] + [(latest, n, row) for n, row in undated]
    for at, n, row in ordered:
        text = str(row.get("text") or "")
        title = str(row.get("title") or "")
        url = row.get("url")
        yield (
            DedupItem(
                id=n,
                source=str(row.get("source") or ""),
                feed_kind=row.get("feed_kind") or "site",
                publisher=row.get("source"),
                title=title,
                summary=str(row.get("summary") or ""),
                lang=row.get("lang"),
                canonical_url=canonical_url(url) if isinstance(url, str) else None,
                published_at=at,
                content_hash=content_hash(title, text) if text.strip() else None,
            ),
            text,
        )


def cluster_rows(
    rows: list[dict[str, Any]], path: Path, settings: Settings | None = None
) -> tuple[list[dict[str, str]], Engine]:
    engine = Engine(settings)
    # Items leave the engine's memory once every window has closed on them, so each one's
    # clusters are noted as it is placed and followed through later merges.
    placed: dict[int, dict[str, int]] = {}
    merged: dict[tuple[str, int], int] = {}
    for item, text in to_items(rows, path):
        out = engine.add(item, text=text)
        for m in out.merges:
            merged[(m.level, m.from_id)] = m.into_id
        for item_id, level in out.evidence:
            placed.setdefault(item_id, {})[level] = engine.cluster_of[level][item_id]
        placed[item.id] = engine.clusters_of(item.id)

    def final(level: str, cid: int) -> int:
        while (level, cid) in merged:
            cid = merged[(level, cid)]
        return cid

    out_rows = []
    for n, row in enumerate(rows):
        c = {level: final(level, cid) for level, cid in placed[n].items()}
        out_rows.append(
            {
                "id": str(row["id"]),
                "duplicate": f"d{c['duplicate']}",
                "story": f"s{c['story']}",
                "thread": f"t{c['thread']}",
            }
        )
    return out_rows, engine


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
