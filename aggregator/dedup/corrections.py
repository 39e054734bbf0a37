"""Manual corrections (``aggregator split`` and ``merge``).

Each bumps the dedup epoch (see :mod:`..coordination`), so every clustering process reloads
its engine before its next batch and stale memory never overwrites a correction.

A split is also stored as a cannot-link (an active split :class:`Correction`) that the engine
keeps on every later merge. A merge needs no such rule: the engine never splits, so the
merged memberships simply stay. A merge that joins the two items of an earlier split lifts
that split (the newer decision wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..coordination import lock_epoch
from ..domain import LEVELS
from ..errors import InputError, StoreError
from ..store.clusters import survivors
from ..store.models import Cluster, ClusterMember, Correction, Item

# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class SplitResult:
    level: str
    item_id: int
    moved: tuple[int, ...]  # the item and what moved with it (its copies, its story)
    from_cluster_id: int
    new_cluster_id: int
    anchor_item_id: int  # the item kept apart from ``item_id`` from now on
    remaining: int  # members left in the original cluster
    correction_id: int
    requested_cluster_id: int | None = None  # when given an id merged away since

    def describe(self) -> str:
        others = len(self.moved) - 1
        one, many = {
            "story": ("copy", "copies"),
            "thread": ("other item of its story", "other items of its story"),
        }.get(self.level, ("item", "items"))
        extra = f" (with {others} {one if others == 1 else many})" if others else ""
        was = _was(self.requested_cluster_id, self.from_cluster_id)
        return (
            f"split item {self.item_id}{extra} from {self.level} {self.from_cluster_id}{was} "
            f"into new {self.level} {self.new_cluster_id}; later automatic decisions keep them "
            "apart"
        )


@dataclass(frozen=True, slots=True)
class LiftedSplit:
    correction_id: int
    level: str
    item_id: int
    other_item_id: int


@dataclass(frozen=True, slots=True)
class MergeResult:
    level: str
    survivor_id: int
    absorbed_id: int
    size: int  # members of the survivor at ``level``
    also: tuple[tuple[str, int, int], ...]  # coarser merges: (level, absorbed, survivor)
    lifted: tuple[LiftedSplit, ...]
    correction_id: int

    def describe(self) -> str:
        # the survivor is named first: `merge A B` may keep B (the older id always survives)
        text = (
            f"kept {self.level} {self.survivor_id} (the older of the two) and merged "
            f"{self.level} {self.absorbed_id} into it ({self.size} items; its page redirects)"
        )
        if self.also:
            text += "; also merged " + ", ".join(
                f"{lv} {frm} into {lv} {into}" for lv, frm, into in self.also
            )
        if self.lifted:
            text += "; lifted earlier split " + ", ".join(
                f"#{c.correction_id} (item {c.item_id} from item {c.other_item_id}, {c.level})"
                for c in self.lifted
            )
        return text + "; later automatic decisions keep them together"


# ---------------------------------------------------------------- split


def split(s: Session, cluster_id: int, item_id: int, now: datetime) -> SplitResult:
    """Move ``item_id`` out of ``cluster_id`` into a new cluster of the same level, with the
    members of its next finer cluster (so every duplicate cluster stays inside one story and
    every story inside one thread), and keep it apart from what stays from now on. Coarser
    levels are left as they are: a story split off is still on the same topic."""
    lock_epoch(s, now, bump=True)
    cluster = _live(s, cluster_id)
    level = cluster.level
    where = _named(cluster_id, cluster)
    current = _cluster_of(s, item_id, level)
    if current != cluster.id:
        raise InputError(
            f"item {item_id} is not in {where}{_elsewhere(s, item_id, level, current)}"
        )
    members = _members(s, level, cluster.id)
    rank = LEVELS.index(level)
    if rank == 0:
        group = {item_id}
    else:
        finer = LEVELS[rank - 1]
        inner = _cluster_of(s, item_id, finer)
        group = (set(_members(s, finer, inner)) if inner else {item_id}) & set(members)
        group.add(item_id)
    if group >= set(members):
        with_what = {"story": " with its copies", "thread": " with the rest of its story"}
        detail = with_what.get(level, "") if len(group) > 1 else ""
        raise InputError(f"nothing to split: item {item_id}{detail} is all of {where}")
    new = Cluster(
        id=_next_cluster_id(s),
        level=level,
        created_at=now,
        updated_at=now,
        size=len(group),
    )
    s.add(new)
    s.flush()
    s.execute(
        update(ClusterMember)
        .where(ClusterMember.level == level, ClusterMember.item_id.in_(sorted(group)))
        .values(
            cluster_id=new.id,
            method="manual",
            manual=True,
            matched_item_id=None,
            score=None,
            estimated_score=None,
            matched_bands=None,
            joined_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    remaining = len(members) - len(group)
    s.execute(
        update(Cluster)
        .where(Cluster.id == cluster.id)
        .values(size=remaining, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    # The newest item left behind: the engine forgets items oldest first, so this side of
    # the cannot-link stays in memory longest.
    anchor = s.scalar(
        select(Item.id)
        .join(ClusterMember, ClusterMember.item_id == Item.id)
        .where(ClusterMember.level == level, ClusterMember.cluster_id == cluster.id)
        .order_by(Item.published_at.desc(), Item.id.desc())
        .limit(1)
    )
    assert anchor is not None
    correction = Correction(
        kind="split",
        level=level,
        item_id=item_id,
        other_item_id=anchor,
        cluster_id=cluster.id,
        other_cluster_id=new.id,
        active=True,
        created_at=now,
    )
    s.add(correction)
    s.flush()
    return SplitResult(
        level=level,
        item_id=item_id,
        moved=(item_id, *sorted(group - {item_id})),
        from_cluster_id=cluster.id,
        new_cluster_id=new.id,
        anchor_item_id=anchor,
        remaining=remaining,
        correction_id=correction.id,
        requested_cluster_id=cluster_id,
    )


# ---------------------------------------------------------------- merge


def merge(s: Session, a: int, b: int, now: datetime) -> MergeResult:
    """Merge clusters ``a`` and ``b`` (one level) and, to keep nesting, the coarser clusters
    they lie in. The older id survives, as in the engine. Active splits whose two items end
    up together are lifted."""
    lock_epoch(s, now, bump=True)
    ca, cb = _live(s, a), _live(s, b)
    if ca.level != cb.level:
        raise InputError(
            f"cluster {a} is a {ca.level} cluster and {b} a {cb.level} cluster: "
            "only clusters of one level can be merged"
        )
    level = ca.level
    if a == b:
        raise InputError(f"cannot merge {level} {a} with itself")
    if ca.id == cb.id:
        raise InputError(f"{level} {a} and {level} {b} are already one cluster ({ca.id})")
    rep_a, rep_b = _representative(s, ca), _representative(s, cb)
    merges: list[tuple[str, int, int]] = []
    for lv in LEVELS[LEVELS.index(level) :]:
        ma, mb = _cluster_of(s, rep_a, lv), _cluster_of(s, rep_b, lv)
        if ma is None or mb is None or ma == mb:
            continue
        into, frm = min(ma, mb), max(ma, mb)
        values: dict = {"cluster_id": into}
        if lv == level:
            values["manual"] = True  # the evidence stays: it is why each joined its side
        s.execute(
            update(ClusterMember)
            .where(ClusterMember.level == lv, ClusterMember.cluster_id == frm)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        s.execute(
            update(Cluster)
            .where(Cluster.id == frm)
            .values(merged_into_id=into, size=0, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        s.execute(
            update(Cluster)
            .where(Cluster.id == into)
            .values(size=len(_members(s, lv, into)), updated_at=now)
            .execution_options(synchronize_session=False)
        )
        merges.append((lv, frm, into))
    _, absorbed, survivor = merges[0]
    correction = Correction(
        kind="merge",
        level=level,
        item_id=rep_a,
        other_item_id=rep_b,
        cluster_id=survivor,
        other_cluster_id=absorbed,
        active=True,
        created_at=now,
    )
    s.add(correction)
    lifted = []
    for c in s.scalars(
        select(Correction)
        .where(Correction.kind == "split", Correction.active.is_(True))
        .order_by(Correction.id)
    ):
        x, y = _cluster_of(s, c.item_id, c.level), _cluster_of(s, c.other_item_id, c.level)
        if x is not None and x == y:
            c.active = False
            lifted.append(LiftedSplit(c.id, c.level, c.item_id, c.other_item_id))
    s.flush()
    return MergeResult(
        level=level,
        survivor_id=survivor,
        absorbed_id=absorbed,
        size=len(_members(s, level, survivor)),
        also=tuple(merges[1:]),
        lifted=tuple(lifted),
        correction_id=correction.id,
    )


# ---------------------------------------------------------------- helpers


def _live(s: Session, cluster_id: int) -> Cluster:
    """The cluster, or the one it was merged into (transitively)."""
    cluster = s.get(Cluster, cluster_id)
    if cluster is None:
        raise InputError(f"no cluster with id {cluster_id}")
    if cluster.merged_into_id is None:
        return cluster
    end = s.get_one(Cluster, survivors(s, [cluster_id])[cluster_id])
    if end.merged_into_id is not None:  # the chain runs in a circle
        raise StoreError(f"cluster {cluster_id}: broken merged_into chain at {end.id}")
    return end


def _was(requested: int | None, live: int) -> str:
    return f" (cluster {requested} was merged into it)" if requested not in (None, live) else ""


def _named(requested: int, cluster: Cluster) -> str:
    return f"{cluster.level} {cluster.id}{_was(requested, cluster.id)}"


def _elsewhere(s: Session, item_id: int, level: str, current: int | None) -> str:
    if current is not None:
        return f": it is in {level} {current}"
    state = s.scalar(select(Item.dedup_state).where(Item.id == item_id))
    if state is None:
        return ": there is no item with that id"
    return ": it is not clustered (yet)"


def _cluster_of(s: Session, item_id: int, level: str) -> int | None:
    """From the database, never the session's identity map (updates here bypass it)."""
    return s.scalar(
        select(ClusterMember.cluster_id).where(
            ClusterMember.item_id == item_id, ClusterMember.level == level
        )
    )


def _members(s: Session, level: str, cluster_id: int) -> list[int]:
    return list(
        s.scalars(
            select(ClusterMember.item_id).where(
                ClusterMember.level == level, ClusterMember.cluster_id == cluster_id
            )
        )
    )


def _representative(s: Session, cluster: Cluster) -> int:
    rep = s.scalar(
        select(func.min(ClusterMember.item_id)).where(
            ClusterMember.level == cluster.level, ClusterMember.cluster_id == cluster.id
        )
    )
    if rep is None:
        raise InputError(f"{cluster.level} {cluster.id} has no members")
    return int(rep)


def _next_cluster_id(s: Session) -> int:
    """Explicit ids, as the engine assigns them (a PostgreSQL sequence never saw those)."""
    return int(s.scalar(select(func.max(Cluster.id))) or 0) + 1
