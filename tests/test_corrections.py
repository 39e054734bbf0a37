"""Manual corrections: ``split`` and ``merge``, and later automatic decisions respecting them.

Runs on SQLite and PostgreSQL. Clusters come from the labelled corpus stored as items and
clustered by the real service; new items are near copies of stored ones from another source,
so they match both sides of a split.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from corpus import load_corpus, partition
from helpers import cli
from sqlalchemy import select

from aggregator.coordination import lock_epoch, read_epoch
from aggregator.dedup.corrections import merge, split
from aggregator.dedup.engine import DedupItem, Engine, Evidence, Outcome, Rec
from aggregator.dedup.explain import explain, render_explanation
from aggregator.dedup.service import DedupService, _dedup_item
from aggregator.domain import LEVELS
from aggregator.errors import InputError
from aggregator.normaliser import content_hash
from aggregator.store import Store
from aggregator.store.models import Cluster, ClusterMember, Correction, DedupEpoch, Item, Source

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


# ---------------------------------------------------------------- helpers


def clustered(store: Store) -> DedupService:
    n = len(load_corpus(store, first=101))  # the part these checks pick their cases from
    service = DedupService(store)
    assert service.process_pending() == n
    return service


def memberships(store: Store) -> dict[tuple[int, str], int]:
    with store.sessions() as s:
        rows = s.execute(
            select(ClusterMember.item_id, ClusterMember.level, ClusterMember.cluster_id)
        )
        return {(i, lv): c for i, lv, c in rows}


def assert_consistent(store: Store) -> None:
    """Every item at every level; duplicate clusters inside one story, stories inside one
    thread; sizes match; no member in a merged-away cluster."""
    m = memberships(store)
    items = {i for i, _ in m}
    story_of_dup: dict[int, int] = {}
    thread_of_story: dict[int, int] = {}
    for i in items:
        assert all((i, lv) in m for lv in LEVELS), i
        dup, story, thread = (m[i, lv] for lv in LEVELS)
        assert story_of_dup.setdefault(dup, story) == story, (i, dup)
        assert thread_of_story.setdefault(story, thread) == thread, (i, story)
    counts: dict[int, int] = {}
    for c in m.values():
        counts[c] = counts.get(c, 0) + 1
    with store.sessions() as s:
        for c in s.scalars(select(Cluster)):
            if c.merged_into_id is not None:
                assert c.size == 0 and c.id not in counts, c.id
            elif c.id in counts:
                assert c.size == counts[c.id], (c.id, c.size, counts[c.id])


def snapshot(store: Store) -> tuple:
    with store.sessions() as s:
        return (
            sorted(memberships(store).items()),
            sorted(
                (c.id, c.level, c.size, c.merged_into_id, c.updated_at)
                for c in s.scalars(select(Cluster))
            ),
            sorted((c.id, c.active) for c in s.scalars(select(Correction))),
            s.scalar(select(DedupEpoch.epoch)),
        )


def pick_story(service: DedupService) -> tuple[int, int, int, int]:
    """(story, its duplicate cluster, x, x2): the newest story in memory with more than one
    duplicate cluster, one of them holding two full-text items x and x2."""
    eng = service.engine
    found = []
    for sid, members in eng.members["story"].items():
        dups: dict[int, list[int]] = {}
        for i in members:
            dups.setdefault(eng.cluster_of["duplicate"][i], []).append(i)
        if len(dups) < 2:
            continue
        for did, its in dups.items():
            full = sorted(i for i in its if eng.records[i].dup_sig is not None)
            if len(full) >= 2:
                newest = max(eng.records[i].item.published_at for i in members)
                found.append((newest, sid, did, full[0], full[1]))
    assert found
    _, sid, did, x, x2 = max(found)
    return sid, did, x, x2


def add_copy(store: Store, item_id: int, name: str = "Copy Desk", hours: float = 1) -> int:
    """A near copy of a stored item from another source, pending: its article text without
    the original site's chrome (as syndication passes it on), a new URL, one added line."""
    reader = DedupService(store)
    reader.load()
    rec = reader.engine.records[item_id]
    body = reader.engine._clean_body(rec.item) or rec.item.summary
    with store.session() as s:
        orig = s.get(Item, item_id)
        assert orig is not None
        src = s.scalar(select(Source).where(Source.name == name))
        if src is None:
            src = Source(name=name, type="rss", url=f"http://{len(name)}.invalid/", created_at=NOW)
            s.add(src)
            s.flush()
        text = body + "\n\nThis report was updated with minor corrections."
        copy = Item(
            source_id=src.id,
            kind="article",
            guid=f"copy-{item_id}-{name}",
            url=f"https://copy.invalid/{name}/{item_id}",
            canonical_url=f"https://copy.invalid/{name}/{item_id}",
            title=orig.title,
            publisher=name,
            summary=orig.summary,
            text=text,
            lang=orig.lang,
            published_at=orig.published_at + timedelta(hours=hours),
            fetched_at=NOW,
            content_hash=content_hash(orig.title, text),
        )
        s.add(copy)
        s.flush()
        return copy.id


def bridges(store: Store, new_id: int, x: int, y: int, level: str) -> bool:
    """Control: would placing the pending item ``new_id`` put x and y together at ``level``
    if there were no manual split? (An engine loaded from the database, constraints
    dropped, nothing written.)"""
    control = DedupService(store)
    control.load()
    control.engine.apart = []
    with store.sessions() as s:
        item, source = s.execute(
            select(Item, Source).join(Source, Source.id == Item.source_id).where(Item.id == new_id)
        ).one()
    control.engine.add(_dedup_item(item, source), text=item.text)
    return control.engine.cluster_of[level][x] == control.engine.cluster_of[level][y]


def engine_agrees_with_database(store: Store, service: DedupService) -> None:
    held = set(service.engine.records)
    for level in LEVELS:
        on_disk = {frozenset(g & held) for g in partition(store, level)} - {frozenset()}
        assert on_disk == {frozenset(m) for m in service.engine.members[level].values()}, level


# ---------------------------------------------------------------- split


def test_split_moves_the_item_with_its_copies(store: Store) -> None:
    service = clustered(store)
    sid, did, x, _ = pick_story(service)
    before = memberships(store)
    copies = {i for (i, lv), c in before.items() if lv == "duplicate" and c == did}
    story = {i for (i, lv), c in before.items() if lv == "story" and c == sid}
    epoch = snapshot(store)[3]
    with store.session() as s:
        r = split(s, sid, x, NOW)
    assert (r.level, r.item_id, r.from_cluster_id) == ("story", x, sid)
    assert set(r.moved) == copies and r.moved[0] == x and r.remaining == len(story - copies)
    after = memberships(store)
    for i in story:
        expected = r.new_cluster_id if i in copies else sid
        assert after[i, "story"] == expected
        # finer and coarser levels unchanged: same duplicate clusters, same thread
        assert after[i, "duplicate"] == before[i, "duplicate"]
        assert after[i, "thread"] == before[i, "thread"]
    assert {k: v for k, v in after.items() if k[0] not in story} == {
        k: v for k, v in before.items() if k[0] not in story
    }
    with store.sessions() as s:
        assert s.get(Cluster, sid).size == len(story - copies)
        new = s.get(Cluster, r.new_cluster_id)
        assert (new.level, new.size, new.merged_into_id) == ("story", len(copies), None)
        moved = s.scalars(
            select(ClusterMember).where(
                ClusterMember.level == "story", ClusterMember.item_id.in_(copies)
            )
        ).all()
        assert all(m.manual and m.method == "manual" and m.matched_item_id is None for m in moved)
        (c,) = s.scalars(select(Correction)).all()
        anchor = max(story - copies, key=lambda i: (s.get(Item, i).published_at, i))
        assert (c.kind, c.level, c.item_id, c.other_item_id, c.active) == (
            "split",
            "story",
            x,
            anchor,
            True,
        )
        assert (c.cluster_id, c.other_cluster_id) == (sid, r.new_cluster_id)
        assert s.scalar(select(DedupEpoch.epoch)) == epoch + 1
    assert r.anchor_item_id == anchor
    assert r.describe() == (
        f"split item {x} (with {len(copies) - 1} cop{'y' if len(copies) == 2 else 'ies'}) "
        f"from story {sid} into new story {r.new_cluster_id}; "
        "later automatic decisions keep them apart"
    )
    assert_consistent(store)


def test_split_at_thread_and_duplicate_level_keeps_nesting(store: Store) -> None:
    service = clustered(store)
    eng = service.engine
    # a thread of several stories: splitting one of its items takes its whole story along
    tid = next(
        t
        for t, m in eng.members["thread"].items()
        if len({eng.cluster_of["story"][i] for i in m}) > 1
    )
    x = min(eng.members["thread"][tid])
    story = eng.members["story"][eng.cluster_of["story"][x]]
    with store.session() as s:
        r = split(s, tid, x, NOW)
    assert set(r.moved) == story
    m = memberships(store)
    assert {i for (i, lv), c in m.items() if lv == "thread" and c == r.new_cluster_id} == story
    assert_consistent(store)
    # duplicate level: the item alone, still in its story
    _, did, x, x2 = pick_story(service)
    copies = eng.members["duplicate"][did]
    with store.session() as s:
        r = split(s, did, x, NOW)
    assert r.moved == (x,) and r.anchor_item_id in copies - {x}
    assert r.describe().startswith(f"split item {x} from duplicate {did} into new duplicate ")
    m2 = memberships(store)
    assert m2[x, "duplicate"] == r.new_cluster_id != m2[x2, "duplicate"]
    assert m2[x, "story"] == m2[x2, "story"]
    assert_consistent(store)


@pytest.mark.parametrize("level", ["duplicate", "story"])
def test_new_items_matching_both_sides_never_rejoin_them(store: Store, level: str) -> None:
    service = clustered(store)
    sid, did, x, _ = pick_story(service)
    with store.session() as s:
        r = split(s, sid if level == "story" else did, x, NOW)
    anchor = r.anchor_item_id
    new = add_copy(store, x)
    assert bridges(store, new, x, anchor, level)  # without the split it would join them
    restarted = DedupService(store)  # a restart: everything from the database
    assert restarted.process_pending() == 1
    m = memberships(store)
    assert m[x, level] != m[anchor, level]
    assert m[new, level] in (m[x, level], m[anchor, level])
    assert_consistent(store)
    engine_agrees_with_database(store, restarted)
    # a copy of the other side, another restart: still apart
    other = add_copy(store, anchor, name="Second Copy Desk")
    again = DedupService(store)
    assert again.process_pending() == 1
    m = memberships(store)
    assert m[x, level] != m[anchor, level]
    assert m[other, level] in (m[x, level], m[anchor, level])
    assert_consistent(store)
    engine_agrees_with_database(store, again)


def test_a_running_service_reloads_after_a_split(store: Store) -> None:
    daemon = clustered(store)  # loaded before the split, as a running daemon is
    engine_before = daemon.engine
    sid, _, x, _ = pick_story(daemon)
    with store.session() as s:
        r = split(s, sid, x, NOW)
    new = add_copy(store, x)
    assert daemon.process_pending() == 1
    assert daemon.engine is not engine_before  # noticed the epoch and reloaded first
    assert daemon.engine.apart == [("story", x, r.anchor_item_id)]
    m = memberships(store)
    assert m[x, "story"] == r.new_cluster_id != m[r.anchor_item_id, "story"]
    assert m[new, "story"] == r.new_cluster_id  # it followed its duplicate, x
    assert_consistent(store)
    engine_agrees_with_database(store, daemon)
    # its own writes do not make it reload; another process's do
    with store.sessions() as s:
        assert daemon.epoch == read_epoch(s)
    current = daemon.engine
    assert daemon.process_pending() == 0 and daemon.engine is current
    add_copy(store, r.anchor_item_id, name="Another Desk")
    assert DedupService(store).process_pending() == 1  # another process
    assert daemon.process_pending() == 0 and daemon.engine is not current
    engine_agrees_with_database(store, daemon)


def test_a_correction_waits_for_the_batch_in_flight(store: Store) -> None:
    service = clustered(store)
    sid, _, x, _ = pick_story(service)
    done = threading.Event()
    errors: list[BaseException] = []

    def correct() -> None:
        try:
            with store.session() as s:
                split(s, sid, x, NOW)
            done.set()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with store.session() as batch:
        lock_epoch(batch, NOW)  # what a clustering batch holds while it works
        worker = threading.Thread(target=correct)
        worker.start()
        assert not done.wait(1.0), "the split did not wait for the batch"
    worker.join(30)
    assert done.is_set() and not errors, errors


# ---------------------------------------------------------------- merge


def test_merge_unites_coarser_clusters_and_lifts_a_contradicting_split(store: Store) -> None:
    service = clustered(store)
    eng = service.engine
    sid, _, x, _ = pick_story(service)
    thread = eng.cluster_of["thread"][x]
    other = max(
        (s for s in eng.members["story"] if eng.thread_of_story[s] != thread),
        key=lambda s: max(eng.records[i].item.published_at for i in eng.members["story"][s]),
    )
    other_thread = eng.thread_of_story[other]
    with store.session() as s:
        cut = split(s, sid, x, NOW)
    with store.session() as s:
        r = merge(s, cut.new_cluster_id, sid, NOW)
    assert (r.level, r.survivor_id, r.absorbed_id) == ("story", sid, cut.new_cluster_id)
    assert r.also == ()  # the split kept them in one thread
    assert [c.correction_id for c in r.lifted] == [cut.correction_id]
    assert "lifted earlier split #" in r.describe()
    with store.session() as s:
        r2 = merge(s, other, sid, NOW)
    survivor, absorbed = min(other, sid), max(other, sid)
    assert (r2.survivor_id, r2.absorbed_id) == (survivor, absorbed)
    assert r2.also == (("thread", max(thread, other_thread), min(thread, other_thread)),)
    assert r2.describe().startswith(
        f"kept story {survivor} (the older of the two) and merged story {absorbed} into it "
        f"({r2.size} items; its page redirects); also merged thread "
    )
    m = memberships(store)
    together = {i for (i, lv), c in m.items() if lv == "story" and c == survivor}
    assert x in together and cut.anchor_item_id in together
    assert len(together) == r2.size
    with store.sessions() as s:
        assert s.get(Cluster, absorbed).merged_into_id == survivor
        assert s.get(Cluster, cut.new_cluster_id).merged_into_id == sid
        assert s.get(Cluster, max(thread, other_thread)).merged_into_id == min(thread, other_thread)
        kinds = [(c.kind, c.active) for c in s.scalars(select(Correction).order_by(Correction.id))]
        assert kinds == [("split", False), ("merge", True), ("merge", True)]
        moved = s.scalars(
            select(ClusterMember).where(
                ClusterMember.level == "story",
                ClusterMember.item_id.in_(eng.members["story"][absorbed]),
            )
        ).all()
        assert moved and all(mm.manual for mm in moved)
    assert_consistent(store)
    # a split cluster id given to split/merge later resolves to where it went
    with store.session() as s, pytest.raises(InputError, match="already one cluster"):
        merge(s, absorbed, survivor, NOW)
    # later automatic decisions keep them merged, also after restarts
    add_copy(store, x)
    add_copy(store, min(eng.members["story"][other]), name="Other Desk")
    restarted = DedupService(store)
    assert restarted.process_pending() == 2
    m = memberships(store)
    assert len({m[i, "story"] for i in together}) == 1
    assert_consistent(store)
    engine_agrees_with_database(store, restarted)
    assert restarted.engine.apart == []
    # an id merged away is resolved to the cluster it went into
    with store.session() as s:
        again = split(s, cut.new_cluster_id, x, NOW)
    assert again.from_cluster_id == survivor
    assert f"from story {survivor} (cluster {cut.new_cluster_id} was merged into it)" in (
        again.describe()
    )
    assert_consistent(store)


def test_merge_at_duplicate_level_merges_story_and_thread(store: Store) -> None:
    service = clustered(store)
    eng = service.engine
    _, _, a, _ = pick_story(service)
    b = min(i for i in eng.records if eng.cluster_of["thread"][i] != eng.cluster_of["thread"][a])
    da, db = eng.cluster_of["duplicate"][a], eng.cluster_of["duplicate"][b]
    with store.session() as s:
        r = merge(s, da, db, NOW)
    assert [lv for lv, _, _ in r.also] == ["story", "thread"]
    m = memberships(store)
    for level in LEVELS:
        assert m[a, level] == m[b, level]
    assert_consistent(store)


# ---------------------------------------------------------------- errors


def test_bad_corrections_are_clear_and_change_nothing(store: Store) -> None:
    service = clustered(store)
    sid, _, x, _ = pick_story(service)
    stored = memberships(store)  # the whole clusters (older members have left memory)
    groups: dict[str, dict[int, set[int]]] = {lv: {} for lv in LEVELS}
    for (i, lv), c in stored.items():
        groups[lv].setdefault(c, set()).add(i)
    other_story = next(s for s in groups["story"] if s != sid and x not in groups["story"][s])
    single = next(s for s, m in groups["story"].items() if len(m) == 1)
    (lone,) = groups["story"][single]
    whole = next(
        t
        for t, m in groups["thread"].items()
        if len(m) > 1 and len({stored[i, "story"] for i in m}) == 1
    )
    in_whole = min(groups["thread"][whole])
    thread_of_x = stored[x, "thread"]
    cases = [
        (lambda s: split(s, 999999, x, NOW), "no cluster with id 999999"),
        (
            lambda s: split(s, other_story, x, NOW),
            f"item {x} is not in story {other_story}: it is in story {sid}",
        ),
        (lambda s: split(s, sid, 999999, NOW), "there is no item with that id"),
        (
            lambda s: split(s, single, lone, NOW),
            f"nothing to split: item {lone} is all of story {single}",
        ),
        (
            lambda s: split(s, whole, in_whole, NOW),
            f"nothing to split: item {in_whole} with the rest of its story is all of thread {whole}",
        ),
        (lambda s: merge(s, sid, 999999, NOW), "no cluster with id 999999"),
        (lambda s: merge(s, sid, thread_of_x, NOW), "only clusters of one level can be merged"),
        (lambda s: merge(s, sid, sid, NOW), f"cannot merge story {sid} with itself"),
    ]
    for call, message in cases:
        before = snapshot(store)
        with pytest.raises(InputError) as err, store.session() as s:
            call(s)
        assert message in str(err.value)
        assert "\n" not in str(err.value)
        assert snapshot(store) == before, message


# ---------------------------------------------------------------- the engine alone


def build(engine: Engine, clusters: dict[str, dict[int, list[int]]]) -> None:
    for level, groups in clusters.items():
        for cid, items in groups.items():
            engine.members[level][cid] = set(items)
            for i in items:
                engine.cluster_of[level][i] = cid
    for story, items in clusters["story"].items():
        engine.thread_of_story[story] = engine.cluster_of["thread"][items[0]]


def keep_apart(e: Engine, *splits: tuple[str, int, int]) -> None:
    """Give the engine manual splits as the service does when it loads the engine's state."""
    e.finish_restore(next_cluster_id=e.next_cluster_id, apart=list(splits))


def test_can_merge_checks_the_constraint_level_and_every_coarser_one() -> None:
    e = Engine()
    build(
        e,
        {
            "duplicate": {10: [1], 11: [2], 12: [3], 13: [4], 14: [5]},
            "story": {20: [1, 2], 21: [3, 4], 22: [5]},
            "thread": {30: [1, 2, 3, 4], 31: [5]},
        },
    )
    assert e._can_merge("duplicate", 10, 12) and e._can_merge("story", 20, 22)  # no rules
    keep_apart(e, ("duplicate", 1, 2))
    assert not e._can_merge("duplicate", 10, 11)
    assert e._can_merge("duplicate", 10, 12)  # other clusters
    assert e._can_merge("story", 20, 21)  # a finer rule says nothing about stories
    e.apart = [("story", 1, 3)]
    assert not e._can_merge("story", 20, 21) and not e._can_merge("story", 21, 20)
    assert not e._can_merge("duplicate", 11, 13)  # would unite stories 20 and 21 (nesting)
    assert e._can_merge("duplicate", 10, 11)  # within story 20
    assert e._can_merge("thread", 30, 31)
    e.apart = [("thread", 2, 5)]
    assert not e._can_merge("thread", 30, 31)
    assert not e._can_merge("story", 21, 22)  # a story merge carries its threads along
    assert not e._can_merge("duplicate", 13, 14)
    assert e._can_merge("story", 20, 21)  # one thread already
    e.apart = [("story", 1, 99)]  # an item no longer in memory: nothing to keep
    assert e._can_merge("story", 20, 21)


def test_a_split_outlives_its_item_leaving_memory() -> None:
    """forget_before drops the split item first: a member of its cluster takes its place."""
    e = Engine()
    build(
        e,
        {
            "duplicate": {10: [1], 11: [2], 12: [3]},
            "story": {20: [1, 2], 21: [3]},
            "thread": {30: [1, 2], 31: [3]},
        },
    )
    for n, hours in ((1, 0), (2, 24 * 30), (3, 24 * 30)):
        at = NOW + timedelta(hours=hours)
        item = DedupItem(n, "s", "site", None, f"t{n}", "", None, None, at)
        e.records[n] = Rec(item=item, title_key="", publisher_key=None)
        e.hold(item)
    keep_apart(e, ("story", 1, 3))
    assert not e._can_merge("story", 20, 21)
    e.forget_before(NOW + timedelta(hours=1))  # item 1 leaves, item 2 stays in story 20
    assert 1 not in e.records and e.apart == [("story", 2, 3)]
    assert not e._can_merge("story", 20, 21)


def test_settle_keeps_an_item_where_it_is_when_the_merge_is_refused() -> None:
    e = Engine()
    build(
        e,
        {"duplicate": {10: [1], 11: [2]}, "story": {20: [1], 21: [2]}, "thread": {30: [1, 2]}},
    )
    keep_apart(e, ("story", 1, 2))
    item = DedupItem(1, "s", "site", None, "t", "", None, None, NOW)
    rec = Rec(item=item, title_key="t", publisher_key=None)
    out = Outcome(1)
    ev = e._settle("story", rec, [Evidence("story", None, "terms", 2, 0.9)], out)
    assert (ev.method, ev.cluster_id) == ("kept", 20)
    assert e.cluster_of["story"] == {1: 20, 2: 21} and out.merges == []


BODY_A = (
    "Die Stadtwerke von Kleinwasser haben am Dienstag ein neues Solarfeld am Rand des "
    "Gewerbegebiets in Betrieb genommen. Auf acht Hektar stehen nun mehr als zwanzigtausend "
    "Module, die rechnerisch den Strombedarf von dreitausend Haushalten decken. Der "
    "Bürgermeister sprach von einem wichtigen Schritt, Kritiker bemängeln die versiegelte "
    "Fläche und fordern Ausgleichspflanzungen entlang des Baches."
)
BODY_B = (
    "Im Tierpark von Obermühl ist ein seltenes Okapi zur Welt gekommen. Das Jungtier wog bei "
    "der Geburt knapp achtzehn Kilogramm und trinkt bereits regelmäßig bei der Mutter. Die "
    "Pfleger wollen das Gehege erst in einigen Wochen für Besucher öffnen, bis dahin zeigt "
    "eine Kamera im Eingangsbereich Bilder aus dem Stall. Ein Name wird per Abstimmung gesucht."
)


def text_item(n: int, source: str, title: str, text: str, hours: int) -> DedupItem:
    return DedupItem(
        id=n,
        source=source,
        feed_kind="site",
        publisher=source,
        title=title,
        summary="",
        lang="de",
        canonical_url=f"https://{source.lower()}.invalid/{n}",
        published_at=NOW + timedelta(hours=hours),
    )


@pytest.mark.parametrize("level", ["duplicate", "story"])
def test_engine_keeps_a_split_when_an_item_bridges_both_sides(level: str) -> None:
    """An item containing both texts is a duplicate of each: without the rule it would
    merge their clusters, with it it joins one side only."""

    def run(rule: bool) -> Engine:
        e = Engine()
        e.add(text_item(1, "Alpha", "Solarfeld in Kleinwasser", BODY_A, 0), text=BODY_A)
        e.add(text_item(2, "Beta", "Okapi in Obermühl geboren", BODY_B, 1), text=BODY_B)
        if rule:
            keep_apart(e, (level, 1, 2))
        both = f"{BODY_A}\n{BODY_B}"
        e.add(text_item(3, "Gamma", "Solarfeld und Okapi", both, 2), text=both)
        return e

    free = run(False)
    assert free.cluster_of["duplicate"][1] == free.cluster_of["duplicate"][2]
    kept = run(True)
    for lv in LEVELS[: LEVELS.index(level) + 1]:
        assert kept.cluster_of[lv][1] != kept.cluster_of[lv][2], lv
    assert kept.cluster_of["duplicate"][3] in (
        kept.cluster_of["duplicate"][1],
        kept.cluster_of["duplicate"][2],
    )


# ---------------------------------------------------------------- the command line


def test_cli_split_why_merge(store: Store, db_url: str) -> None:
    env = {"AGGREGATOR_DATABASE_URL": db_url}
    service = clustered(store)
    sid, did, x, _ = pick_story(service)
    copies = len(service.engine.members["duplicate"][did]) - 1
    code, out, err = cli(None, "split", str(sid), str(x), env=env)
    assert code == 0, err
    (line,) = out.splitlines()
    with store.sessions() as s:
        c = s.scalars(select(Correction)).one()
    new = c.other_cluster_id
    assert line == (
        f"split item {x} (with {copies} cop{'y' if copies == 1 else 'ies'}) from story {sid} "
        f"into new story {new}; later automatic decisions keep them apart"
    )
    code, out, _ = cli(None, "why", str(x), str(c.other_item_id), env=env)
    assert code == 0
    assert f"story: apart (clusters {new}, {sid})" in out
    assert f"kept apart by manual split #{c.id} (item {x} split from item {c.other_item_id}" in out
    code, out, _ = cli(None, "merge", str(sid), str(new), env=env)
    assert code == 0
    assert out.splitlines() == [
        f"kept story {sid} (the older of the two) and merged story {new} into it "
        f"({len(service.engine.members['story'][sid])} items; its page redirects); lifted earlier split #{c.id} (item {x} from item {c.other_item_id}, story); "
        "later automatic decisions keep them together"
    ]
    code, out, err = cli(None, "split", "999999", str(x), env=env)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == ["aggregator: error: no cluster with id 999999"]
    code, _, err = cli(None, "merge", str(sid), str(sid), env=env)
    assert code == 1
    assert err.strip() == (f"aggregator: error: cannot merge story {sid} with itself")


def test_why_reports_the_split_from_stored_data(store: Store) -> None:
    service = clustered(store)
    sid, _, x, _ = pick_story(service)
    with store.session() as s:
        r = split(s, sid, x, NOW)
    report = explain(DedupService(store), x, r.anchor_item_id)
    (info,) = report["levels"]["story"]["manual_splits"]
    assert (info["item"], info["other_item"]) == (x, r.anchor_item_id)
    assert report["levels"]["thread"]["manual_splits"] == []
    assert "kept apart by manual split" in render_explanation(report)
