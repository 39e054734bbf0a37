"""The engine against the database: decisions persisted, restarts reload, CLI explains.

Runs on SQLite and PostgreSQL. Items are imported from the labelled corpus converted to
stored items, so clustering quality here equals the engine's and the checks are about state.
"""

from __future__ import annotations

import gc
import json
import logging
import weakref
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from corpus import DATA, engine_state, load_corpus, partition
from helpers import cli, migrate
from sqlalchemy import bindparam, event, func, inspect, select

from aggregator.dedup.clusterfile import cluster_rows, read_items
from aggregator.dedup.engine import Engine, Settings
from aggregator.dedup.explain import explain, render_explanation
from aggregator.dedup.service import BATCH, DedupService
from aggregator.dedup.storedform import pack
from aggregator.normaliser import content_hash
from aggregator.store import Store, open_store, repo
from aggregator.store.models import (
    BoilerplateLine,
    Cluster,
    ClusterMember,
    DedupEpoch,
    Item,
    Signature,
    Source,
)


def test_decisions_are_persisted_and_match_the_engine(store: Store) -> None:
    n = len(load_corpus(store))
    service = DedupService(store)
    placed = service.process_pending()
    assert placed == n
    assert service.process_pending() == 0  # re-processing adds nothing
    held = set(service.engine.records)  # older items have left every window, and memory
    assert held
    for level in ("duplicate", "story", "thread"):
        engine_groups = {frozenset(m) for m in service.engine.members[level].values()}
        stored = {frozenset(g & held) for g in partition(store, level) if g & held}
        assert stored == engine_groups, level
    with store.session() as s:
        # every membership carries its evidence; merged clusters point to their survivor
        assert s.scalar(select(func.count()).select_from(ClusterMember)) == 3 * n
        bad = s.scalar(
            select(func.count())
            .select_from(ClusterMember)
            .join(Cluster, Cluster.id == ClusterMember.cluster_id)
            .where(Cluster.merged_into_id.is_not(None))
        )
        assert bad == 0
        minhash = s.scalars(select(ClusterMember).where(ClusterMember.method == "minhash")).all()
        assert minhash and all(m.matched_bands and m.score and m.estimated_score for m in minhash)
        assert s.scalar(select(func.count()).select_from(Signature)) > n
        assert s.scalar(select(func.count()).select_from(BoilerplateLine)) > 100


def test_restart_reloads_state_and_continues_identically(store: Store, tmp_path: Path) -> None:
    """Half the items, a restart (fresh service from the database), then the rest: the same
    clusters as one uninterrupted run."""
    ids = load_corpus(store)
    half = sorted(ids.values())[: len(ids) // 2]
    with store.session() as s:
        s.execute(Item.__table__.update().where(Item.id.not_in(half)).values(dedup_state="hold"))
    first = DedupService(store)
    first.process_pending()
    with store.session() as s:
        s.execute(
            Item.__table__.update().where(Item.dedup_state == "hold").values(dedup_state="pending")
        )
    second = DedupService(store)  # a restarted daemon
    second.process_pending()
    # The restarted engine loaded the items still inside a window (the corpus spans two
    # months; older ones stay on disk only), and holds them as the database records them.
    eng = second.engine
    horizon = eng.horizon()
    with store.session() as s:
        recent = set(s.scalars(select(Item.id).where(Item.published_at >= horizon)))
    held = set(eng.records)  # what was loaded, plus the second half placed after the restart
    assert recent <= held and 0 < len(recent) < len(ids)
    for level in ("duplicate", "story", "thread"):
        on_disk = {frozenset(g & held) for g in partition(store, level)} - {frozenset()}
        assert on_disk == {frozenset(m) for m in eng.members[level].values()}

    # And it decides like an uninterrupted run. (The halves were split by id, not by
    # published time, so the order of placement differs a little: allow a few clusters.)
    rows = read_items(DATA / "dev.jsonl")
    uninterrupted, _ = cluster_rows(rows, DATA / "dev.jsonl")
    for level in ("duplicate", "story", "thread"):
        groups: dict[str, set[int]] = {}
        for row in uninterrupted:
            groups.setdefault(row[level], set()).add(ids[row["id"]])
        expected = {frozenset(g) for g in groups.values()}
        got = partition(store, level)
        same = len(expected & got) / max(len(expected), len(got))
        assert same >= 0.9, (level, same)


def test_the_packed_features_load_the_state_the_json_ones_do(store: Store) -> None:
    """Start-ups read the packed form of the stored features (dedup.storedform); an item
    without one (stored before it, or features it cannot hold) is read from its JSON. Both
    make the same engine, down to term ids, and any mix of the two does too."""
    load_corpus(store)
    DedupService(store).process_pending()
    with store.session() as s:
        stories = s.scalars(select(Signature).where(Signature.level == "story")).all()
        assert stories and all(sig.packed == pack(sig.features) is not None for sig in stories)
        ids = sorted(sig.item_id for sig in stories)
    packed = DedupService(store)
    packed.load()
    assert len(packed.engine.records) > 50
    for unpacked in (set(ids[::3]), set(ids)):  # a mix (runs of each), then JSON only
        with store.session() as s:
            s.execute(
                Signature.__table__.update()
                .where(Signature.item_id.in_(unpacked))
                .values(packed=None)
            )
        from_json = DedupService(store)
        from_json.load()
        assert engine_state(from_json.engine) == engine_state(packed.engine)


def test_a_load_makes_its_items_findable_as_remembering_each_one_does(store: Store) -> None:
    """A start-up takes each chunk of stored items in at once (``Engine.take_in``): the same
    exact keys, anchors and slot languages as placing them one by one remembered."""
    load_corpus(store)
    DedupService(store).process_pending()
    loaded = DedupService(store)
    loaded.load()
    eng = loaded.engine
    assert len(eng.records) > 50
    want = engine_state(eng)
    eng.by_url, eng.by_hash = {}, {}
    eng.by_title, eng.by_publisher = defaultdict(list), defaultdict(list)
    eng.by_anchor = defaultdict(set)
    eng._slot_lang[:] = 0
    eng._lang_codes = {"": 0}
    for rec in eng.records.values():
        eng._remember_keys(rec)
    got = engine_state(eng)
    assert got["keys"] == want["keys"] and got["slots"] == want["slots"]


def test_a_packed_form_this_version_cannot_read_is_passed_over_for_the_json(
    store: Store,
) -> None:
    load_corpus(store, first=40)
    DedupService(store).process_pending()
    reference = DedupService(store)
    reference.load()
    with store.session() as s:
        s.execute(
            Signature.__table__.update()
            .where(Signature.level == "story")
            .values(packed=b"\xff a later format")
        )
    later = DedupService(store)
    later.load()
    assert engine_state(later.engine) == engine_state(reference.engine)


def test_the_migration_packs_the_features_of_every_stored_item(store: Store) -> None:
    """0012 adds the packed form and writes it for every item stored before it, from the
    JSON features, so the first start-up after the upgrade reads it too."""
    from alembic import command

    from aggregator.store import db as store_db

    load_corpus(store)
    DedupService(store).process_pending()
    before = DedupService(store)
    before.load()
    with store.session() as s:
        signed = [
            {"i": i, "lv": lv, "sig": sig}
            for i, lv, sig in s.execute(
                select(Signature.item_id, Signature.level, Signature.hashvalues)
            )
        ]
    cfg = store_db.alembic_config(store.engine.url.render_as_string(hide_password=False))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011")
    with store.engine.connect() as conn:
        assert "packed" not in {c["name"] for c in inspect(conn).get_columns("signatures")}
    store.engine.dispose()  # SQLAlchemy's cached statements name the dropped column
    store_db.upgrade(store.engine)
    with store.session() as s:
        rows = s.execute(select(Signature.level, Signature.features, Signature.packed)).all()
    stories = [r for r in rows if r.level == "story"]
    assert len(stories) > 100
    assert all(r.packed == pack(r.features) is not None for r in stories)
    assert all(r.packed is None for r in rows if r.level == "duplicate")
    with store.session() as s:  # 0013 re-signed them from the texts (its own test): put back
        s.execute(
            Signature.__table__.update()
            .where(Signature.item_id == bindparam("i"), Signature.level == bindparam("lv"))
            .values(hashvalues=bindparam("sig")),
            signed,
        )
    after = DedupService(store)
    after.load()
    assert engine_state(after.engine) == engine_state(before.engine)


def test_signatures_of_another_num_perm_are_set_aside_with_a_warning(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A changed ``dedup.num_perm`` makes the stored signatures incomparable: a restart says
    so in one line and keeps going (the items keep their clusters, new items cluster)."""
    ids = load_corpus(store)
    half = sorted(ids.values())[: len(ids) // 2]
    with store.session() as s:
        s.execute(Item.__table__.update().where(Item.id.not_in(half)).values(dedup_state="hold"))
    DedupService(store).process_pending()
    with store.session() as s:
        s.execute(
            Item.__table__.update().where(Item.dedup_state == "hold").values(dedup_state="pending")
        )
    restarted = DedupService(store, Settings(num_perm=64))
    with caplog.at_level(logging.WARNING, logger="aggregator"):
        restarted.load()
        held_old = list(restarted.engine.records.values())
        assert held_old and all(r.story_sig is None and r.dup_sig is None for r in held_old)
        assert restarted.process_pending() == len(ids) - len(half)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "another dedup.num_perm than 64" in warnings[0]
    with store.session() as s:
        placed = s.scalar(select(func.count()).select_from(ClusterMember))
    assert placed == 3 * len(ids)


def test_a_membership_left_on_a_merged_cluster_loads_into_the_survivor(store: Store) -> None:
    """A membership still naming a merged-away cluster (a left-over of a race) is read as
    the cluster it was merged into, along a chain of merges."""
    load_corpus(store)
    DedupService(store).process_pending()
    with store.session() as s:
        newest = s.scalar(select(Item.id).order_by(Item.published_at.desc(), Item.id.desc()))
        member = s.get(ClusterMember, (newest, "story"))
        assert member is not None
        live = member.cluster_id
        now = datetime.now(UTC)
        top = s.scalar(select(func.max(Cluster.id)))  # the engine numbers clusters itself
        first = Cluster(id=top + 1, level="story", created_at=now, updated_at=now, size=0)
        second = Cluster(id=top + 2, level="story", created_at=now, updated_at=now, size=0)
        s.add_all([first, second])
        s.flush()
        first.merged_into_id, second.merged_into_id = second.id, live  # first -> second -> live
        member.cluster_id = first.id
    service = DedupService(store)
    service.load()
    assert service.engine.cluster_of["story"][newest] == live
    assert newest in service.engine.members["story"][live]


def test_loading_holds_off_the_cyclic_collector_and_restores_it(store: Store) -> None:
    """A load makes many long-lived objects and no garbage: the collector must not walk them
    while it runs, and must be as it was afterwards (on, or off if the caller turned it off)."""
    load_corpus(store)
    DedupService(store).process_pending()
    started: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(note)
    try:
        service = DedupService(store)
        gc.collect()
        started.clear()
        service.load()
        assert len(service.engine.records) > 20
        # at most the one collection that runs as soon as it is back on
        assert len(started) <= 1 and gc.isenabled(), started
        gc.disable()
        try:
            DedupService(store).load()
            assert not gc.isenabled()
        finally:
            gc.enable()
        # the same amount of work with the collector on does start collections
        objects = [[i] for i in range(10 * gc.get_threshold()[0])]
        assert started and objects
    finally:
        gc.callbacks.remove(note)


def test_a_load_freezes_what_it_made_out_of_the_cyclic_collector(store: Store) -> None:
    """The held state is walked by no collection after the load (at 46k items held each
    walk took ~0.6 s); what is placed afterwards is, as usual."""
    load_corpus(store)
    DedupService(store).process_pending()
    service = DedupService(store)
    service.load()
    held = list(service.engine.records.values())
    assert len(held) > 20 and gc.get_freeze_count() > 20 * len(held)
    walked = {id(o) for o in gc.get_objects()}
    assert not any(id(rec) in walked or id(rec.vec) in walked for rec in held)
    assert id(service.engine.records) not in walked


def test_items_leaving_memory_leave_no_cyclic_garbage(store: Store) -> None:
    """What freezing a load's objects relies on: a frozen object that later became cyclic
    garbage would never be collected. Items placed, then all forgotten, free by reference
    counting alone."""
    load_corpus(store)
    service = DedupService(store)
    service.process_pending()
    gc.unfreeze()
    gc.collect()
    gc.disable()
    try:
        assert service.engine.forget_before(datetime(2100, 1, 1, tzinfo=UTC)) > 20
        assert not service.engine.records
        assert gc.collect() == 0
    finally:
        gc.enable()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_reload_lets_the_dropped_engine_be_collected(store: Store) -> None:
    """The engine a reload drops was frozen by its load; anything of it a cycle keeps is
    collected, not frozen again by the next load."""
    load_corpus(store)
    DedupService(store).process_pending()
    service = DedupService(store)
    probe = _Cycle()
    service.engine.probe = probe  # type: ignore[attr-defined]
    gone = weakref.ref(probe)
    del probe
    service.load()
    service.reload()
    assert gone() is None
    assert len(service.engine.records) > 20


def test_a_service_replaced_after_a_failure_is_collected(store: Store) -> None:
    """The daemon replaces its service after a clustering failure (a database outage): the
    one dropped, frozen by its load and in a cycle with its engine, is collected when the
    new one loads (it held ~900 MB at 1M items)."""
    load_corpus(store)
    DedupService(store).process_pending()
    first = DedupService(store)
    first.load()
    gone = weakref.ref(first)
    del first
    second = DedupService(store)
    second.load()
    assert gone() is None
    assert len(second.engine.records) > 20


def test_an_item_whose_placing_raises_is_set_aside_and_every_other_one_clustered(
    store: Store,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Placing one item raises part way through (after its duplicate level, as an input no
    check foresaw would): it is set aside, stated once in the log and in ``status``, and the
    rest cluster exactly as in a store that never held it. Before, the item stayed pending and
    every later clustering run failed on it."""
    ids = load_corpus(store)
    keys = sorted(ids, key=ids.__getitem__)
    bad_key = keys[len(keys) // 2]
    bad = ids[bad_key]
    place_story = Engine._place_story

    def failing(self, rec, out, dup):  # type: ignore[no-untyped-def]
        if rec.item.id == bad:
            raise ValueError("could not convert string to float: '192.168.0'")
        return place_story(self, rec, out, dup)

    monkeypatch.setattr(Engine, "_place_story", failing)
    service = DedupService(store)
    with caplog.at_level(logging.ERROR, logger="aggregator.dedup.service"):
        assert service.process_pending() == len(ids) - 1
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"item {bad} of " in line and "set aside" in line and "192.168.0" in line
    with store.session() as s:
        states = dict(s.execute(select(Item.id, Item.dedup_state)).all())
        (source,) = s.scalars(select(Source.name).join(Item).where(Item.id == bad))
    assert states.pop(bad) == "failed" and set(states.values()) == {"done"}
    with store.connect() as conn:
        aside = {r["source"]: r["set_aside"] for r in repo.source_status(conn)}
    assert aside[source] == 1 and sum(aside.values()) == 1
    table = cli(None, "status", env={"AGGREGATOR_DATABASE_URL": db_url})
    assert table.returncode == 0, table.stderr
    said = "items set aside, stored but not clustered (placing them raised an error, the log "
    assert f"{said}names each): {source} 1" in table.stdout
    assert service.process_pending() == 0  # not retried: it would fail every run again

    # the same clusters as a store that never held the item
    reference = open_store(migrate(f"sqlite:///{tmp_path / 'ref.sqlite'}"))
    try:
        ref_ids = load_corpus(reference)
        with reference.session() as s:
            s.execute(Item.__table__.delete().where(Item.id == ref_ids[bad_key]))
        DedupService(reference).process_pending()
        by_id, ref_by_id = {v: k for k, v in ids.items()}, {v: k for k, v in ref_ids.items()}
        for level in ("duplicate", "story", "thread"):
            got = {frozenset(map(by_id.__getitem__, g)) for g in partition(store, level)}
            want = {frozenset(map(ref_by_id.__getitem__, g)) for g in partition(reference, level)}
            assert got == want, level
    finally:
        reference.close()
    fresh = DedupService(store)
    fresh.load()
    for level in ("duplicate", "story", "thread"):  # the engine left is the database's
        assert {frozenset(m) for m in fresh.engine.members[level].values()} == {
            frozenset(m) for m in service.engine.members[level].values()
        }, level


def test_loading_reads_the_window_through_an_index_not_the_whole_history(
    sqlite_store: Store,
) -> None:
    """Every query a load makes over items finds its rows through an index (the window's
    clustered articles through ix_items_held), so start-up does not grow with the history.
    Checked on SQLite's plans without statistics, as a store grown by the daemon has none:
    the planner then took the one-value dedup_state index and read every item ever stored."""
    store, engine = sqlite_store, sqlite_store.engine
    load_corpus(store)
    DedupService(store).process_pending()
    queries: list[tuple[str, object]] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and " items" in statement:
            queries.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        DedupService(store).load()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert len(queries) >= 2  # the newest clustered item; the items, signatures, clusters
    with engine.connect() as conn:
        for statement, parameters in queries:
            plan = [
                row[-1]
                for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement,
                    parameters,  # type: ignore[arg-type]
                )
            ]
            on_items = [step for step in plan if step.split()[1:2] == ["items"]]
            assert on_items and all(
                "ix_items_held" in step or "PRIMARY KEY" in step for step in on_items
            ), (statement, plan)


def test_a_batch_writes_its_memberships_and_signatures_in_one_statement_each(
    store: Store,
) -> None:
    """Executed once for all of a batch's rows: the ORM's bulk insert grouped rows by the
    columns they left None and ran one INSERT per row, most of a poll's writing time."""
    n = len(load_corpus(store))
    inserts: Counter[str] = Counter()

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        for table in ("cluster_members", "signatures"):
            if statement.lstrip().startswith(f"INSERT INTO {table} "):
                inserts[table] += 1

    event.listen(store.engine, "before_cursor_execute", note)
    try:
        assert DedupService(store).process_pending() == n
    finally:
        event.remove(store.engine, "before_cursor_execute", note)
    batches = -(-n // BATCH)
    assert 0 < inserts["cluster_members"] <= batches
    assert 0 < inserts["signatures"] <= batches


def test_why_explains_with_stored_evidence(store: Store) -> None:
    ids = load_corpus(store)
    service = DedupService(store)
    service.process_pending()
    labels = {
        json.loads(line)["id"]: json.loads(line)
        for line in (DATA / "dev.labels.jsonl").read_text(encoding="utf-8").splitlines()
    }
    # a labelled duplicate pair and a pair from different threads
    groups: dict[str, list[str]] = {}
    for rid, lab in labels.items():
        groups.setdefault(lab["dup_group"], []).append(rid)
    a, b = next(g for g in groups.values() if len(g) >= 2)[:2]
    report = explain(service, ids[a], ids[b])
    dup = report["levels"]["duplicate"]
    assert dup["together"] is True
    # the one placed second joined by evidence naming an item of the same cluster
    joined = [r for r in dup["recorded"] if r["method"] != "new"]
    assert joined and joined[0]["method"] in ("url", "hash", "title", "minhash")
    cluster = service.engine.members["duplicate"][dup["clusters"][0]]
    assert joined[0]["matched_item"] in cluster
    far = next(r for r in labels if labels[r]["thread"] != labels[a]["thread"])
    apart = explain(service, ids[a], ids[far])
    assert apart["levels"]["thread"]["together"] is False
    text = render_explanation(apart)
    assert "thread: apart" in text and "threshold" in text


def test_a_reload_between_every_batch_changes_nothing(
    store: Store, tmp_path: Path, monkeypatch
) -> None:
    """What a restarted (or a second) daemon loads is the state a running one holds: clusters
    from small batches, each by a fresh service loaded from the database, equal those of one
    uninterrupted service. The fixtures span years, so items leave memory on the way."""
    from conftest import FEEDS

    from aggregator.config import Config
    from aggregator.dedup import service as service_mod
    from aggregator.importer import import_file
    from aggregator.store import open_store

    names = sorted(p.name for p in FEEDS.glob("*.xml"))
    reference = open_store(migrate(f"sqlite:///{tmp_path / 'ref.sqlite'}"))
    for target in (reference, store):
        for name in names:
            assert import_file(target, Config(), FEEDS / name).error is None
    try:
        DedupService(reference).process_pending()
        monkeypatch.setattr(service_mod, "BATCH", 25)
        batches = 0
        while DedupService(store).process_pending(limit=25):
            batches += 1
        assert batches > 10
        for level in ("duplicate", "story", "thread"):
            assert by_guid(store, level) == by_guid(reference, level), level
    finally:
        reference.close()


def by_guid(store: Store, level: str) -> set[frozenset[tuple[str, str]]]:
    groups: dict[int, set[tuple[str, str]]] = {}
    with store.session() as s:
        for cid, source, guid in s.execute(
            select(ClusterMember.cluster_id, Source.name, Item.guid)
            .join(Item, Item.id == ClusterMember.item_id)
            .join(Source, Source.id == Item.source_id)
            .where(ClusterMember.level == level)
        ):
            groups.setdefault(cid, set()).add((source, guid))
    return {frozenset(g) for g in groups.values()}


def test_one_daemon_clusters_while_its_lease_lives_the_others_neither_place_nor_load(
    store: Store,
) -> None:
    """Daemons that took turns reloaded their whole engine after each other's batches. The
    one holding the clustering lease places every pending item; another daemon's turn places
    nothing and loads nothing until that lease is released or runs out, then it takes over."""

    from aggregator.coordination import clustering_holder, release_clustering

    ids = sorted(load_corpus(store).values())
    n = len(ids) // 3
    batches = [ids[:n], ids[n : 2 * n], ids[2 * n : -2], ids[-2:-1], ids[-1:]]

    def stored(batch: list[int]) -> None:  # the items a poll just stored
        with store.session() as s:
            s.execute(
                Item.__table__.update().where(Item.id.in_(batch)).values(dedup_state="pending")
            )

    def holder() -> str | None:
        with store.session() as s:
            found = clustering_holder(s, datetime.now(UTC))
        return found[0] if found else None

    with store.session() as s:
        s.execute(Item.__table__.update().values(dedup_state="hold"))
    a, b = DedupService(store), DedupService(store)
    stored(batches[0])
    assert a.process_pending(wait=False, worker="a", lease_s=600) == len(batches[0])
    assert holder() == "a"

    stored(batches[1])
    assert b.process_pending(wait=False, worker="b", lease_s=600) == 0
    assert not b.loaded  # no engine in memory for a daemon that does not cluster
    assert a.process_pending(wait=False, worker="a", lease_s=600) == len(batches[1])

    stored(batches[2])  # a stops: it gives the lease up, b takes over at its next turn
    with store.session() as s:
        release_clustering(s, "b")  # only the holder's own release counts
    assert holder() == "a"
    with store.session() as s:
        release_clustering(s, "a")
    assert holder() is None
    assert b.process_pending(wait=False, worker="b", lease_s=600) == len(batches[2])
    assert b.loaded and holder() == "b"

    stored(batches[3])  # b dies: its lease runs out, and a's next turn takes over (reloading)
    with store.session() as s:  # the lease's ten minutes pass
        s.get_one(DedupEpoch, 1).held_until -= timedelta(hours=1)
    assert holder() is None
    assert a.process_pending(wait=False, worker="a", lease_s=600) == 1
    assert holder() == "a"
    stored(batches[4])  # b, loaded now, asks again: a's lease is live, so b leaves it to a
    assert b.process_pending(wait=False, worker="b", lease_s=600) == 0
    assert a.process_pending(wait=False, worker="a", lease_s=600) == 1
    with store.session() as s:
        assert s.scalar(select(func.count()).where(Item.dedup_state != "done")) == 0
    expected = DedupService(store)
    expected.load()
    for level in ("duplicate", "story", "thread"):  # a's engine caught up with b's batch
        assert {frozenset(m) for m in a.engine.members[level].values()} == {
            frozenset(m) for m in expected.engine.members[level].values()
        }


def test_after_a_restart_a_held_item_without_text_is_compared_by_its_summary(
    store: Store,
) -> None:
    """The load reads summaries only where the engine uses them: an item stored without text
    (only a description) still verifies as the original of a copy placed after a restart."""
    words = (
        "the harbour board approved a new breakwater after three winters of storm damage to the "
        "old quay and the fishing fleet will move to the north basin while the works go on "
        "through the spring and summer"
    )
    now = datetime.now(UTC)
    with store.session() as s:
        for n in (1, 2):
            s.add(
                Source(
                    name=f"site {n}", type="rss", url=f"http://example.invalid/{n}", created_at=now
                )
            )
        s.flush()
        ids = dict(s.execute(select(Source.name, Source.id)).all())
        s.add(
            Item(source_id=ids["site 1"], kind="article", guid="a", url="http://one.invalid/a",
                 canonical_url="http://one.invalid/a", title="Breakwater approved",
                 summary=words, text="", lang="en", published_at=now, fetched_at=now,
                 content_hash=content_hash("Breakwater approved", ""))
        )  # fmt: skip
    DedupService(store).process_pending()
    with store.session() as s:
        s.add(
            Item(source_id=ids["site 2"], kind="article", guid="b", url="http://two.invalid/b",
                 canonical_url="http://two.invalid/b", title="Breakwater approved",
                 summary="", text=words, lang="en", published_at=now, fetched_at=now,
                 content_hash=content_hash("Breakwater approved", words))
        )  # fmt: skip
    restarted = DedupService(store)
    restarted.process_pending()
    with store.session() as s:
        rows = s.execute(
            select(Item.guid, ClusterMember.cluster_id, ClusterMember.method)
            .join(ClusterMember, ClusterMember.item_id == Item.id)
            .where(ClusterMember.level == "duplicate")
            .order_by(Item.guid)
        ).all()
    assert rows[0].cluster_id == rows[1].cluster_id
    assert rows[1].method == "minhash"


def _labels_of(store: Store, level: str) -> dict[str, str]:
    with store.session() as s:
        return {
            str(item_id): str(cid)
            for item_id, cid in s.execute(
                select(ClusterMember.item_id, ClusterMember.cluster_id).where(
                    ClusterMember.level == level
                )
            )
        }


@pytest.mark.parametrize("order", ["newest_first", "interleaved"])
def test_items_arriving_late_meet_their_own_windows(store: Store, order: str) -> None:
    """The corpus (two months, wider than any window) stored and clustered in chunks that
    arrive out of publication order, each after the engine has moved past it: every item
    is still compared with the items of its own windows, read back from the store, so the
    clusters are those of one run in publication order."""
    from aggregator.dedup.evaluate import score

    ids = load_corpus(store)
    with store.session() as s:
        by_time = list(s.scalars(select(Item.id).order_by(Item.published_at, Item.id)))
        s.execute(Item.__table__.update().values(dedup_state="hold"))
    n = len(by_time)
    chunks = [by_time[k * n // 4 : (k + 1) * n // 4] for k in range(4)]
    arrival = (
        chunks[::-1] if order == "newest_first" else [chunks[3], chunks[0], chunks[2], chunks[1]]
    )
    service = DedupService(store)
    for chunk in arrival:
        with store.session() as s:
            s.execute(
                Item.__table__.update().where(Item.id.in_(chunk)).values(dedup_state="pending")
            )
        service.process_pending()
    rows = read_items(DATA / "dev.jsonl")
    in_order, _ = cluster_rows(rows, DATA / "dev.jsonl")
    for level in ("duplicate", "story", "thread"):
        expected = {str(ids[row["id"]]): row[level] for row in in_order}
        agreement = score(_labels_of(store, level), expected).bcubed_f1
        assert agreement >= 0.98, (level, agreement)


def test_an_edited_item_stored_anew_is_re_placed_after_a_restart(store: Store) -> None:
    """An item placed, then stored again edited (its row updated, pending again): a fresh
    service (the item out of memory) re-places it from its stored state, in its clusters;
    its memberships stay one per level, and processing again changes nothing."""
    ids = load_corpus(store, first=101)
    DedupService(store).process_pending()
    labels = {r["id"]: r for r in read_jsonl_rows(DATA / "dev.labels.jsonl")}
    # an item alone in its story, edited to carry the title of another story's item
    with store.session() as s:
        story_of = dict(
            s.execute(
                select(ClusterMember.item_id, ClusterMember.cluster_id).where(
                    ClusterMember.level == "story"
                )
            ).all()
        )
        by_id = {v: k for k, v in ids.items()}
        sizes: dict[int, int] = {}
        for cid in story_of.values():
            sizes[cid] = sizes.get(cid, 0) + 1
        lonely = next(i for i, c in sorted(story_of.items()) if sizes[c] == 1)
        target = next(
            i
            for i, c in sorted(story_of.items())
            if sizes[c] >= 3 and labels[by_id[i]]["story"] != labels[by_id[lonely]]["story"]
        )
        edited, model = s.get(Item, lonely), s.get(Item, target)
        assert edited is not None and model is not None
        edited.title, edited.text, edited.summary = model.title, model.text, model.summary
        edited.content_hash = content_hash(model.title, model.text)
        edited.published_at = model.published_at
        edited.dedup_state = "pending"
    service = DedupService(store)
    assert service.process_pending() == 1
    assert story_of_item(store, lonely) == story_of_item(store, target)
    with store.session() as s:
        rows = s.scalar(
            select(func.count()).select_from(ClusterMember).where(ClusterMember.item_id == lonely)
        )
    assert rows == 3
    before = partition(store, "story")
    with store.session() as s:
        s.execute(Item.__table__.update().where(Item.id == lonely).values(dedup_state="pending"))
    DedupService(store).process_pending()  # stored again unchanged: nothing moves
    assert partition(store, "story") == before
    # edited into words nothing else holds: it stays in its clusters (they only merge),
    # where an item placed as new would start a story of its own
    member = next(i for i, c in sorted(story_of.items()) if c == story_of[target] and i != target)
    with store.session() as s:
        item = s.get(Item, member)
        assert item is not None
        item.title, item.summary = "Zqxv wublor frenkatine", ""
        item.text = "Zqxv wublor frenkatine plimsor " * 12
        item.content_hash = content_hash(item.title, item.text)
        item.dedup_state = "pending"
    DedupService(store).process_pending()
    assert story_of_item(store, member) == story_of_item(store, target)


def read_jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def story_of_item(store: Store, item_id: int) -> int:
    with store.session() as s:
        return s.scalar(
            select(ClusterMember.cluster_id).where(
                ClusterMember.item_id == item_id, ClusterMember.level == "story"
            )
        )
