"""The engine against the database: load its state, place pending items, persist decisions.

Stored per item: MinHash signatures (bytes) and salient terms (as JSON, and packed: the form
a start-up reads, see :mod:`.storedform`), so a restart reloads them instead of recomputing;
per membership the cluster, the matched item, the method, the verified and estimated
similarity and the matching LSH bands (what ``why`` explains); per source the learned
boilerplate line counts. Comments are never clustered.

Several processes may cluster (the daemon, ``import``, ``why``) and ``split``/``merge`` correct
by hand, so each batch locks the dedup epoch row first and reloads the engine when the epoch
moved since this service last loaded or wrote (see :mod:`..coordination`).

Long because loading, placing and persisting share one transaction per batch and the
engine's restore interface; splitting them would split that transaction.
"""

from __future__ import annotations

import gc
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import (
    JSON,
    Connection,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.dml import Delete, Insert, Update

from ..config import DedupConfig
from ..coordination import (
    bump_epoch,
    claim_clustering,
    clustering_holder,
    lock_epoch,
    read_epoch,
    try_lock_epoch,
)
from ..domain import AGGREGATOR_SOURCE_TYPES, LEVELS
from ..errors import StoreError
from ..store import Store
from ..store.clusters import merged_into, survivor
from ..store.items import dialect_insert
from ..store.models import (
    BoilerplateLine,
    Cluster,
    ClusterMember,
    Correction,
    Item,
    Signature,
    Source,
)
from . import storedform
from .engine import (
    NO_TERMS,
    SEED,
    DedupItem,
    Engine,
    Evidence,
    Merge,
    Outcome,
    Rec,
    Settings,
)

log = logging.getLogger(__name__)

BATCH = 200
T = TypeVar("T")


def settings_from(cfg: DedupConfig) -> Settings:
    """The engine's settings from the config's ``dedup`` section: the same names, windows
    (durations in the file) in seconds."""
    values = cfg.model_dump()
    for window in ("duplicate_window", "story_window", "thread_window", "wire_window"):
        values[f"{window}_s"] = values.pop(window)
    return Settings(**values)


def feed_kind(source_type: str) -> str:
    return source_type if source_type in AGGREGATOR_SOURCE_TYPES else "site"


@dataclass(frozen=True, slots=True)
class _SourceRow:
    name: str
    type: str


# what loading needs of an item: not its text (fetched when needed), only whether it has one,
# and its summary only where the engine reads it (see ``_dedup_item``; reading every one was
# a twentieth of a start-up); to be selected joined with Source
_ITEM_COLUMNS = (
    Item.id,
    Item.publisher,
    Item.title,
    case((or_(Item.text == "", Source.type == "bing_news"), Item.summary), else_="").label(
        "summary"
    ),
    Item.lang,
    Item.canonical_url,
    Item.published_at,
    Item.content_hash,
    (Item.text != "").label("text"),  # not length(): that reads every text whole
)


# what placing a pending item reads of it (see ``_dedup_item``), joined with Source
_PENDING_COLUMNS = (
    Item.id,
    Item.kind,
    Item.publisher,
    Item.title,
    Item.summary,
    Item.text,
    Item.lang,
    Item.canonical_url,
    Item.published_at,
    Item.content_hash,
    Source.name.label("source_name"),
    Source.type.label("source_type"),
)
_MARK_DONE = (
    update(Item.__table__).where(Item.id == bindparam("item_id")).values(dedup_state="done")
)


@dataclass(frozen=True, slots=True)
class _Writes:
    """A batch's write statements for one dialect, built once: building an upsert and its
    cache key afresh took a quarter of a millisecond a statement on every poll."""

    members: Insert
    signatures: Insert
    lines: Insert
    drop_lines: Delete
    move_members: Update


_MEMBER_UPDATES = (
    "cluster_id",
    "matched_item_id",
    "method",
    "score",
    "estimated_score",
    "matched_bands",
    "joined_at",
    "manual",
)


@cache
def _writes(dialect: str) -> _Writes:
    members = dialect_insert(dialect, ClusterMember.__table__)
    signatures = dialect_insert(dialect, Signature.__table__)
    lines = dialect_insert(dialect, BoilerplateLine.__table__)
    return _Writes(
        members=members.on_conflict_do_update(
            index_elements=["item_id", "level"],
            set_={k: members.excluded[k] for k in _MEMBER_UPDATES},
        ),
        signatures=signatures.on_conflict_do_update(
            index_elements=["item_id", "level"],
            set_={
                k: signatures.excluded[k]
                for k in ("num_perm", "seed", "hashvalues", "features", "packed")
            },
        ),
        lines=lines.on_conflict_do_update(
            index_elements=["source_id", "line_hash"],
            set_={"count": lines.excluded.count, "last_seen_at": lines.excluded.last_seen_at},
        ),
        drop_lines=delete(BoilerplateLine.__table__).where(
            BoilerplateLine.source_id == bindparam("sid"),
            BoilerplateLine.line_hash == bindparam("key"),
        ),
        move_members=update(ClusterMember.__table__)
        .where(
            ClusterMember.level == bindparam("lv"),
            ClusterMember.cluster_id == bindparam("frm"),
        )
        .values(cluster_id=bindparam("into")),
    )


def _json_unless_packed(sig: Any) -> Any:
    """A signature row's JSON features where it has no packed form (those are not read)."""
    return type_coerce(case((sig.packed.is_(None), sig.features), else_=null()), JSON).label(
        "features"
    )


def _dedup_item(item: Item, source: Source | _SourceRow) -> DedupItem:
    kind = feed_kind(source.type)
    return DedupItem(
        id=item.id,
        source=source.name,
        feed_kind=kind,
        publisher=item.publisher,
        title=item.title,
        # the engine reads a summary only where there is no text (or from Bing): a feed that
        # puts whole articles in its descriptions would otherwise be held twice
        summary=item.summary if kind == "bing_news" or not item.text else "",
        lang=item.lang,
        canonical_url=item.canonical_url,
        published_at=item.published_at,
        content_hash=item.content_hash if item.text else None,
    )


_N_ITEM = len(_ITEM_COLUMNS)


def _held_items(rows: Sequence[Any]) -> list[DedupItem]:
    """:func:`_dedup_item` of each loaded row (``_ITEM_COLUMNS``, then its source's name and
    type), read by position and without a source object per row: a start-up makes tens of
    thousands."""
    items = []
    for row in rows:
        (
            item_id,
            publisher,
            title,
            summary,
            lang,
            canonical_url,
            published_at,
            content_hash,
            has_text,
            source,
            source_type,
        ) = row[: _N_ITEM + 2]
        kind = feed_kind(source_type)
        items.append(
            DedupItem(
                id=item_id,
                source=source,
                feed_kind=kind,
                publisher=publisher,
                title=title,
                # as in _dedup_item (the query already blanks the others' summaries)
                summary=summary if kind == "bing_news" or not has_text else "",
                lang=lang,
                canonical_url=canonical_url,
                published_at=published_at,
                content_hash=content_hash if has_text else None,
            )
        )
    return items


class DedupService:
    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self.store = store
        self.engine = Engine(settings, texts_of=self._texts_of, load_range=self._load_range)
        self.loaded = False
        self.epoch: int | None = None  # the epoch the engine's state corresponds to
        self._pending = _Pending()
        self._first_unsaved = 0  # cluster ids from here on were made by this engine
        self._other_width = 0  # stored signatures of another num_perm met while loading

    def _texts_of(self, item_ids: Sequence[int]) -> dict[int, str]:
        with self.store.sessions() as s:
            return {
                item_id: text or ""
                for chunk in _chunks(item_ids, 500)
                for item_id, text in s.execute(select(Item.id, Item.text).where(Item.id.in_(chunk)))
            }

    # ------------------------------------------------------------ loading

    def reload(self) -> None:
        """Drop the in-memory state and load it again from the database."""
        self.engine = Engine(
            self.engine.settings, texts_of=self._texts_of, load_range=self._load_range
        )
        self.loaded = False
        self.load()

    def load(self) -> None:
        """Rebuild the engine from stored signatures, terms, memberships, boilerplate and
        active manual splits.

        What the load made lives on and leaves no cyclic garbage as items leave memory (see
        the tests), so it is frozen out of the cyclic collector, which would otherwise walk
        those millions of objects at its next collections (~0.6 s each at 46k items held)
        and again at every full one after. What an earlier load froze is unfrozen and
        collected first: the engine a reload drops, or a whole service the daemon replaced
        after a failure (service and engine refer to each other), would otherwise stay."""
        if gc.get_freeze_count():
            gc.unfreeze()
            gc.collect()
        with _gc_paused():
            self._load()
            gc.freeze()

    def _load(self) -> None:
        eng = self.engine
        with self.store.sessions() as s:
            # First: a change committed while loading then leaves the epoch behind, and the
            # next batch reloads again rather than trusting a mixed state.
            epoch = read_epoch(s)
            apart = [
                (level, x, y)
                for level, x, y in s.execute(
                    select(Correction.level, Correction.item_id, Correction.other_item_id)
                    .where(Correction.kind == "split", Correction.active.is_(True))
                    .order_by(Correction.id)
                )
            ]
            # every source's lines in one plain query (hundreds of thousands of rows)
            lines: dict[int, list[tuple[int, int]]] = defaultdict(list)
            for source_id, line_hash, count in (
                s.connection()
                .execute(
                    select(
                        BoilerplateLine.source_id, BoilerplateLine.line_hash, BoilerplateLine.count
                    ).order_by(BoilerplateLine.source_id, BoilerplateLine.line_hash)
                )
                .all()  # one fetch (iterating fetches a row at a time)
            ):
                lines[source_id].append((line_hash, count))
            for src in s.scalars(select(Source)):
                eng.boilerplate.load(src.name, lines.get(src.id, ()), src.boilerplate_docs)
            newest = s.scalar(  # the last entry of ix_items_held's (done, article) part
                select(Item.published_at)
                .where(Item.dedup_state == "done", Item.kind == "article")
                .order_by(Item.published_at.desc())
                .limit(1)
            )
            horizon = eng.begin_restore(newest)
            # Only what is within reach of the windows: older items stay on disk, so the
            # start-up cost follows the window, not the history.
            held = [Item.dedup_state == "done", Item.kind == "article"]
            if horizon is not None:
                held.append(Item.published_at >= horizon)
            # plain rows through the connection: the ORM's row handling was a tenth of a load
            rows_of = s.connection().execute
            # each item with its signatures and clusters, in one query read a chunk at a time
            # (a fetch of signatures per chunk named 2,000 ids to compile, and decoded terms
            # all at once were a transient peak of half the engine's size)
            dup, story = aliased(Signature), aliased(Signature)
            # per level the membership and its cluster: where the cluster was merged into
            joined = {level: (aliased(ClusterMember), aliased(Cluster)) for level in LEVELS}
            stmt = select(
                *_ITEM_COLUMNS,
                Source.name,
                Source.type,
                dup.hashvalues.label("dup_sig"),
                story.hashvalues.label("story_sig"),
                story.packed,
                _json_unless_packed(story),
                *(c for m, cl in joined.values() for c in (m.cluster_id, cl.merged_into_id)),
            ).join(Source, Source.id == Item.source_id)
            stmt = stmt.outerjoin(dup, and_(dup.item_id == Item.id, dup.level == "duplicate"))
            stmt = stmt.outerjoin(story, and_(story.item_id == Item.id, story.level == "story"))
            for level, (m, cl) in joined.items():
                stmt = stmt.outerjoin(m, and_(m.item_id == Item.id, m.level == level))
                stmt = stmt.outerjoin(cl, cl.id == m.cluster_id)
            stmt = (
                stmt.where(*held)
                .order_by(Item.published_at, Item.id)
                .execution_options(yield_per=2000)
            )
            at = len(stmt.selected_columns) - 2 * len(LEVELS)  # where the clusters are in a row
            # a row's values by position: by name, each cost ten times as much (a Row raises
            # and catches an AttributeError inside), a twentieth of a load
            col = {key: k for k, key in enumerate(stmt.selected_columns.keys())}
            sigs_of = itemgetter(col["dup_sig"], col["story_sig"], col["packed"], col["features"])
            members: list[tuple[int, str, int]] = []
            chains: dict[int, int] = {}  # the first step of each merged cluster's chain
            self._other_width = 0
            for chunk in rows_of(stmt).partitions():
                for row in chunk:
                    clusters = row[at:]
                    for k, level in enumerate(LEVELS):
                        cid = clusters[2 * k]
                        if cid is not None:
                            members.append((row[0], level, cid))
                            if clusters[2 * k + 1] is not None:
                                chains[cid] = clusters[2 * k + 1]
                dup_sigs, story_sigs, packed, features = zip(*map(sigs_of, chunk), strict=True)
                eng.take_in(
                    self._load_records(
                        s,
                        _held_items(chunk),
                        dup_sigs,
                        story_sigs,
                        list(zip(packed, features, strict=True)),
                    )
                )
            split_items = {x for _, x, _ in apart} | {y for _, _, y in apart}
            if split_items:  # where the items of manual splits are, in memory or not
                split = s.execute(
                    select(
                        ClusterMember.item_id, ClusterMember.level, ClusterMember.cluster_id
                    ).where(ClusterMember.item_id.in_(split_items))
                ).all()
                members += split
                chains.update(merged_into(s, {cluster_id for _, _, cluster_id in split}))
            chains.update(merged_into(s, set(chains.values())))  # chains of more than one step
            if self._other_width:
                log.warning(
                    "%d stored signatures were made with another dedup.num_perm than %d: "
                    "their items keep their clusters but propose no matches",
                    self._other_width,
                    eng.settings.num_perm,
                )
        stored_cluster = {
            (item_id, level): survivor(cluster_id, chains) if cluster_id in chains else cluster_id
            for item_id, level, cluster_id in members
        }
        eng.restore((item_id, level, cid) for (item_id, level), cid in stored_cluster.items())
        with self.store.sessions() as s:
            top = s.scalar(select(func.max(Cluster.id))) or 0
        eng.finish_restore(
            next_cluster_id=top + 1,
            apart=[
                (
                    level,
                    _stand_in(eng, stored_cluster, x, level),
                    _stand_in(eng, stored_cluster, y, level),
                )
                for level, x, y in apart
            ],
        )
        self._first_unsaved = eng.next_cluster_id
        self._pending = _Pending()
        self.epoch = epoch
        self.loaded = True
        log.debug("dedup state loaded: %d items, %d clusters", len(eng.records), top)

    def load_items(self, ids: Iterable[int]) -> None:
        """Bring stored items that have left every window back into memory, with the rest of
        their stories (for centroids), so ``why`` can explain any two clustered items."""
        with _gc_paused():
            self._load_items(ids)

    def _load_items(self, ids: Iterable[int], *, pending_too: bool = False) -> None:
        """``pending_too``: the items asked for may be pending (edited, to be re-placed);
        the rest of their stories are read only as placed."""
        eng = self.engine
        ids = list(ids)
        asked = sorted(set(ids)) if pending_too else []
        with self.store.sessions() as s:
            wanted = {i for i in ids if i not in eng.records}
            stories = select(ClusterMember.cluster_id).where(
                ClusterMember.level == "story", ClusterMember.item_id.in_(wanted)
            )
            wanted |= set(
                s.scalars(
                    select(ClusterMember.item_id).where(
                        ClusterMember.level == "story", ClusterMember.cluster_id.in_(stories)
                    )
                )
            )
            wanted -= set(eng.records)
            if not wanted:
                return
            sigs = {
                (sig.item_id, sig.level): sig
                for sig in s.execute(
                    select(
                        Signature.item_id,
                        Signature.level,
                        Signature.hashvalues,
                        Signature.packed,
                        _json_unless_packed(Signature),
                    ).where(Signature.item_id.in_(wanted))
                )
            }
            rows = s.execute(
                select(Item, Source)
                .join(Source, Source.id == Item.source_id)
                .where(
                    Item.id.in_(wanted),
                    or_(Item.dedup_state == "done", Item.id.in_(asked)),
                    Item.kind == "article",
                )
            ).all()
            items = [_dedup_item(item, src) for item, src in rows]
            dups = [sigs.get((item.id, "duplicate")) for item in items]
            stories = [sigs.get((item.id, "story")) for item in items]
            eng.take_in(
                self._load_records(
                    s,
                    items,
                    [None if sig is None else sig.hashvalues for sig in dups],
                    [None if sig is None else sig.hashvalues for sig in stories],
                    [
                        (None, None) if sig is None else (sig.packed, sig.features)
                        for sig in stories
                    ],
                )
            )
            stored = s.execute(
                select(ClusterMember.item_id, ClusterMember.level, ClusterMember.cluster_id).where(
                    ClusterMember.item_id.in_(wanted)
                )
            ).all()
            chains = merged_into(s, {cluster_id for _, _, cluster_id in stored})
        # merges this engine made that are not written yet move stored members too
        chains.update((m.from_id, m.into_id) for m in self._pending.merges)
        eng.restore(
            (item_id, level, survivor(cluster_id, chains)) for item_id, level, cluster_id in stored
        )

    def _load_range(self, published_from: datetime, published_to: datetime) -> None:
        """The engine's way back to placed items that left memory (see
        ``Engine._reach_back``): those published in ``[published_from, published_to)``."""
        with self.store.sessions() as s:
            ids = s.scalars(
                select(Item.id).where(
                    Item.dedup_state == "done",
                    Item.kind == "article",
                    Item.published_at >= published_from,
                    Item.published_at < published_to,
                )
            ).all()
        if ids:
            log.debug(
                "reading back %d items published %s to %s", len(ids), published_from, published_to
            )
            for chunk in _chunks(ids, 2000):
                self.load_items(chunk)

    def _held_signatures(self, stored: Sequence[bytes | None]) -> list[np.ndarray | None]:
        """Stored signatures as the engine holds them (uint32), all at once; None for those
        made with another num_perm (counted): they cannot be compared with those made now."""
        width = self.engine.settings.num_perm
        out: list[np.ndarray | None] = [None] * len(stored)
        fit = [(k, b) for k, b in enumerate(stored) if b is not None and len(b) == 8 * width]
        self._other_width += sum(b is not None for b in stored) - len(fit)
        if fit:
            sigs = np.frombuffer(b"".join(b for _, b in fit), dtype=np.uint64)
            sigs = sigs.reshape(len(fit), width)
            wide = (sigs.max(axis=1) >> np.uint64(32)) != 0
            self._other_width += int(wide.sum())
            # rows of one array (views): a chunk's items leave memory together
            for (k, _), row, too_wide in zip(
                fit, sigs.astype(np.uint32), wide.tolist(), strict=True
            ):
                if not too_wide:
                    out[k] = row
        return out

    def _load_records(
        self,
        s: Session,
        items: Sequence[DedupItem],
        dup_sigs: Sequence[bytes | None],
        story_sigs: Sequence[bytes | None],
        features: Sequence[tuple[bytes | None, Any]],
    ) -> list[Rec]:
        """Stored items' records, held (their terms are counted in by ``Engine.take_in``):
        each with its stored signatures and, where it has a story signature, its story
        features as (packed, JSON unless packed)."""
        held = self._held_signatures([*dup_sigs, *story_sigs])
        return self.engine.hold_stored_many(
            items,
            held[: len(items)],
            held[len(items) :],
            self._stored_features(s, items, story_sigs, features),
        )

    @staticmethod
    def _stored_features(
        s: Session,
        items: Sequence[DedupItem],
        story_sigs: Sequence[bytes | None],
        stored: Sequence[tuple[bytes | None, Any]],
    ) -> list[bytes | dict[str, Any] | None]:
        """Each item's story features: the packed form where this version reads it, else
        the JSON (read now for a packed value it does not: another version's); None
        without a story signature."""
        out: list[bytes | dict[str, Any] | None] = []
        unread = {}
        for k, (item, sig, (packed, features)) in enumerate(
            zip(items, story_sigs, stored, strict=True)
        ):
            if sig is None:
                out.append(None)
            elif packed is not None and storedform.readable(packed):
                out.append(packed)
            else:
                out.append(features or {})
                if packed is not None:
                    unread[item.id] = k
        if unread:
            for item_id, features in s.execute(
                select(Signature.item_id, Signature.features).where(
                    Signature.level == "story", Signature.item_id.in_(unread)
                )
            ):
                out[unread[item_id]] = features or {}
        return out

    # ------------------------------------------------------------ processing

    def has_pending(self) -> bool:
        with self.store.session() as s:
            pending = select(Item.id).where(Item.dedup_state == "pending").limit(1)
            return s.scalar(pending) is not None

    def _clustered_by_another(self, worker: str) -> bool:
        with self.store.sessions() as s:
            holder = clustering_holder(s, datetime.now(UTC))
        return holder is not None and holder[0] != worker

    def process_pending(
        self,
        *,
        limit: int | None = None,
        wait: bool = True,
        worker: str | None = None,
        lease_s: float = 300.0,
    ) -> int:
        """Place every pending item (in published order); returns how many were placed.
        ``wait=False``: return 0 at once when another process is clustering (PostgreSQL).
        ``worker`` (a daemon): place only while holding the clustering lease, taken for
        ``lease_s`` when no other daemon's is live (see ``coordination.claim_clustering``)."""
        if not self.loaded:
            if worker is not None and self._clustered_by_another(worker):
                return 0  # a daemon that does not cluster never loads the engine
            self.load()  # outside the epoch lock: on SQLite it would hold up every writer
        done = 0
        while limit is None or done < limit:
            try:
                placed = self._place_batch(wait, worker, lease_s)
            except _SetAside as bad:
                self._set_aside(bad)
                continue  # the batch rolled back: the next one reloads and goes on without it
            if placed is None:
                break
            done += placed
            if placed < BATCH:
                break  # that was every pending item: no second transaction to find none
        return done

    def _place_batch(self, wait: bool, worker: str | None, lease_s: float) -> int | None:
        """Place and store one batch of pending items in one transaction: how many, or None
        when there are none or another process places them."""
        with self.store.session() as s:
            now = datetime.now(UTC)
            # Wait for any other writer of cluster state, then make sure the engine is
            # not older than the database (a correction, another process's batch). The
            # reload reads through other connections: PostgreSQL's row lock does not
            # block readers, nor does SQLite's write lock in WAL mode.
            epoch = lock_epoch(s, now) if wait else try_lock_epoch(s, now)
            if epoch is None:
                return None  # a peer is placing the pending items
            if worker is not None and not claim_clustering(s, worker, now, lease_s):
                return None  # another daemon clusters: it places these items too
            if epoch != self.epoch:
                log.info(
                    "cluster state changed elsewhere (epoch %s -> %d): reloading",
                    self.epoch,
                    epoch,
                )
                self.reload()
            # Until this batch commits the engine may be ahead of the database: should it
            # fail, the next call reloads.
            self.epoch = None
            # plain rows of what placing reads, not ORM objects of every column
            conn = s.connection()
            rows = conn.execute(
                select(*_PENDING_COLUMNS)
                .join(Source, Source.id == Item.source_id)
                .where(Item.dedup_state == "pending")
                .order_by(Item.published_at, Item.id)
                .limit(BATCH)
            ).all()
            if not rows:
                self.epoch = epoch
                return None
            updated = self._hold_updated(conn, [row.id for row in rows])
            placed = False
            for row in rows:
                if row.kind == "article":
                    place = self.engine.update if row.id in updated else self.engine.add
                    try:
                        item = _dedup_item(row, _SourceRow(row.source_name, row.source_type))
                        self._persist(place(item, text=row.text))
                    except (StoreError, SQLAlchemyError, MemoryError):
                        raise  # the database or the machine, not the item
                    except Exception as exc:  # noqa: BLE001 - contained: see _set_aside
                        raise _SetAside(row.id, row.source_name, exc) from exc
                    placed = True
            conn.execute(_MARK_DONE, [{"item_id": row.id} for row in rows])
            self._flush(s, now)
            self._persist_boilerplate(s)
            if placed:  # other services reload before their next batch; this one is current
                epoch = bump_epoch(s, now)
        self.epoch = epoch
        self.engine.drop_texts()
        return len(rows)

    def _set_aside(self, bad: _SetAside) -> None:
        """An item whose placing raised is taken out of the queue (``dedup_state`` failed),
        so that it cannot stop the clustering of every item after it; it stays stored, and
        ``status`` counts it. The engine, part way through it, is dropped: the next batch
        reloads (``self.epoch`` is None)."""
        log.error(
            "item %d of %s could not be clustered and is set aside: %s: %s",
            bad.item_id,
            bad.source,
            type(bad.cause).__name__,
            bad.cause,
        )
        with self.store.session() as s:
            s.execute(
                update(Item)
                .where(Item.id == bad.item_id, Item.dedup_state == "pending")
                .values(dedup_state="failed")
            )

    def _hold_updated(self, conn: Connection, ids: Sequence[int]) -> set[int]:
        """Pending items that were placed before and left memory (edited articles stored
        anew): brought back with their stored features, so the engine re-places them in
        their clusters instead of placing them as new. Returns their ids. Asked on the
        batch's connection: a session of its own cost as much as the query."""
        cold = [i for i in ids if i not in self.engine.records]
        if not cold:
            return set()
        placed = set(
            conn.scalars(
                select(ClusterMember.item_id).where(
                    ClusterMember.item_id.in_(cold), ClusterMember.level == "duplicate"
                )
            )
        )
        if placed:
            with _gc_paused():
                self._load_items(placed, pending_too=True)
        return placed & set(self.engine.records)

    def _persist(self, out: Outcome) -> None:
        """Note what an outcome changed; :meth:`_flush` writes a batch's worth at once."""
        p, records = self._pending, self.engine.records
        for item_id in (out.item_id, *out.reindexed):  # now: the item may be forgotten by flush
            rec = records[item_id]
            for row in _signature_rows(rec):
                p.signatures[(item_id, row["level"])] = row
            rec.terms = NO_TERMS  # stored now; the engine works from the vector
        p.merges.extend(out.merges)
        p.evidence.update(out.evidence)

    def _flush(self, s: Session, now: datetime) -> None:
        """Write a batch's decisions in a few multi-row statements, in dependency order:
        new clusters, merges (which move stored members), memberships, sizes, signatures.
        Memberships carry the engine's final cluster for the batch, so a cluster merged away
        later in the same batch is never pointed at."""
        eng, p = self.engine, self._pending
        writes = _writes(s.get_bind().dialect.name)
        levels: dict[int, str] = {}
        members = []
        moved = {(m.level, m.from_id): m.into_id for m in p.merges}
        for (item_id, level), ev in p.evidence.items():
            cid = eng.cluster_of[level].get(item_id)
            if cid is None:  # placed, then forgotten within the batch: follow the merges
                cid = ev.cluster_id
                assert cid is not None  # recorded evidence names its cluster
                while (level, cid) in moved:
                    cid = moved[(level, cid)]
            levels[cid] = level
            members.append(
                dict(
                    item_id=item_id,
                    level=level,
                    cluster_id=cid,
                    matched_item_id=ev.matched_item_id,
                    method=ev.method,
                    score=ev.score,
                    estimated_score=ev.estimated_score,
                    matched_bands=list(ev.bands) or None,
                    joined_at=now,
                    manual=False,
                )
            )
        for m in p.merges:
            levels.setdefault(m.from_id, m.level)
            levels.setdefault(m.into_id, m.level)
        # ids below _first_unsaved are in the database (or were never used by any row)
        fresh = [
            dict(id=cid, level=lv, created_at=now, updated_at=now, size=0)
            for cid, lv in sorted(levels.items())
            if cid >= self._first_unsaved
        ]
        # Core statements on the tables, each executed once for all its rows: the ORM's bulk
        # insert groups rows by the keys they set (it leaves out None values), so memberships
        # and signatures went one statement per row, half of a poll's writing time
        conn = s.connection()
        if fresh:
            conn.execute(insert(Cluster.__table__), fresh)
        if p.merges:  # each statement once for all merges, in their order (they chain)
            params = [dict(lv=m.level, frm=m.from_id, into=m.into_id) for m in p.merges]
            conn.execute(writes.move_members, params)
            conn.execute(
                update(Cluster.__table__)
                .where(Cluster.id == bindparam("frm"))
                .values(merged_into_id=bindparam("into"), size=0, updated_at=now),
                params,
            )
        if members:
            conn.execute(writes.members, members)
        if levels:  # counted in the database: members that left memory count too
            counted = (
                select(func.count()).where(ClusterMember.cluster_id == Cluster.id).scalar_subquery()
            )
            for chunk in _chunks(sorted(levels), 500):
                conn.execute(
                    update(Cluster.__table__)
                    .where(Cluster.id.in_(chunk), Cluster.merged_into_id.is_(None))
                    .values(size=counted, updated_at=now)
                )
        signatures = [p.signatures[key] for key in sorted(p.signatures)]
        if signatures:
            conn.execute(writes.signatures, signatures)
        self._first_unsaved = eng.next_cluster_id
        self._pending = _Pending()

    def _persist_boilerplate(self, s: Session) -> None:
        model = self.engine.boilerplate
        dirty, dropped = model.dirty, model.dropped
        if not dirty and not dropped:
            return
        conn = s.connection()  # Core, as in _flush: the ORM's bulk path handled each row
        writes = _writes(s.get_bind().dialect.name)
        ids = dict(conn.execute(select(Source.name, Source.id)).all())
        gone = [
            dict(sid=ids[source], key=k) for source, keys in dropped.items() for k in sorted(keys)
        ]
        if gone:
            conn.execute(writes.drop_lines, gone)
        dropped.clear()
        now = datetime.now(UTC)
        rows = []
        for source, keys in dirty.items():
            model = self.engine.boilerplate.sources[source]
            sid = ids[source]
            conn.execute(
                update(Source.__table__).where(Source.id == sid).values(boilerplate_docs=model.docs)
            )
            rows += [
                dict(source_id=sid, line_hash=k, count=model.counts[k], last_seen_at=now)
                for k in sorted(keys)
            ]
        if rows:  # one statement, executed for many rows (a VALUES list per chunk was
            # compiled afresh every time: most of a batch's database time)
            conn.execute(writes.lines, rows)
        dirty.clear()


def _signature_rows(rec: Rec) -> list[dict[str, Any]]:
    """The stored form of an item's signatures: bytes, plus the story terms that verify."""
    rows = []
    for level, sig, feats in (
        ("duplicate", rec.dup_sig, None),
        (
            "story",
            rec.story_sig,
            {
                "terms": dict(rec.terms),
                "lead": dict(rec.lead),
                "short": rec.short,
                "body_len": rec.body_len,
                "lang": rec.lang,
                "anchors": sorted(rec.anchors),
            },
        ),
    ):
        if sig is not None:
            rows.append(
                dict(
                    item_id=rec.item.id,
                    level=level,
                    num_perm=len(sig),
                    seed=SEED,
                    hashvalues=sig.astype(np.uint64).tobytes(),
                    features=feats,
                    packed=storedform.pack(feats),
                )
            )
    return rows


class _SetAside(Exception):
    """Placing one item raised (see ``DedupService._set_aside``)."""

    def __init__(self, item_id: int, source: str, cause: Exception) -> None:
        super().__init__(f"item {item_id} of {source}: {cause!r}")
        self.item_id, self.source, self.cause = item_id, source, cause


@dataclass
class _Pending:
    """A batch's decisions not yet written."""

    signatures: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    merges: list[Merge] = field(default_factory=list)
    evidence: dict[tuple[int, str], Evidence] = field(default_factory=dict)


def _stand_in(eng: Engine, stored: dict[tuple[int, str], int], item_id: int, level: str) -> int:
    """The item if it is in memory, else a member of its cluster that is: a split keeps two
    clusters apart, and any member speaks for its cluster."""
    if item_id in eng.records:
        return item_id
    cid = stored.get((item_id, level))
    present = eng.members[level].get(cid) if cid is not None else None
    return min(present) if present else item_id


def _chunks(seq: Sequence[T], n: int) -> Iterable[Sequence[T]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Loading makes hundreds of thousands of objects that all live on; the cyclic collector
    walked them again and again as they aged (a third of a load) and found nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
