"""Where a cluster merged away lives now: the end of its ``merged_into`` chain.

A merge (automatic or ``aggregator merge``) keeps the older cluster and points the other at
it; a reference kept elsewhere (an old link, a deferred digest entry, a membership written by
a process that had not seen the merge yet) follows the chain to the survivor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .models import Cluster

_CHUNK = 5000  # ids per IN (...) list


def merged_into(session: Session, cluster_ids: Iterable[int]) -> dict[int, int]:
    """``cluster -> cluster it was merged into`` for the named clusters merged away, and on
    along their chains: only what the chains need is read, never the history's every merge."""
    found: dict[int, int] = {}
    todo = sorted(set(cluster_ids))
    # one expanding parameter: a list of literals was coerced value by value (a load of
    # stored items names thousands of clusters)
    stmt = select(Cluster.id, Cluster.merged_into_id).where(
        Cluster.id.in_(bindparam("ids", expanding=True)), Cluster.merged_into_id.is_not(None)
    )
    while todo:
        targets: set[int] = set()
        for i in range(0, len(todo), _CHUNK):
            for cid, into in session.execute(stmt, {"ids": todo[i : i + _CHUNK]}):
                found[cid] = into
                targets.add(into)
        todo = sorted(targets - found.keys())
    return found


def survivor(cluster_id: int, merged_into: Mapping[int, int | None]) -> int:
    """The end of ``cluster_id``'s chain in ``merged_into`` (itself if it was never merged
    away). A cycle, which only a damaged database holds, ends before it repeats."""
    seen = {cluster_id}
    while (nxt := merged_into.get(cluster_id)) is not None and nxt not in seen:
        seen.add(nxt)
        cluster_id = nxt
    return cluster_id


def survivors(session: Session, cluster_ids: Iterable[int]) -> dict[int, int]:
    """Each named cluster's survivor, read from the database."""
    ids = list(cluster_ids)
    chains = merged_into(session, ids)
    return {cid: survivor(cid, chains) for cid in ids}


__all__ = ["merged_into", "survivor", "survivors"]
