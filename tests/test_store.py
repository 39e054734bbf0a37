"""Schema management on SQLite and PostgreSQL: migrations match the models, old schemas refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, select, text

from aggregator.config import SourceConfig
from aggregator.domain import NewItem
from aggregator.errors import SchemaError, StoreError
from aggregator.store import db as store_db
from aggregator.store import repo
from aggregator.store.clusters import survivor, survivors
from aggregator.store.items import known_keys
from aggregator.store.models import Base, Cluster, Feed, Item, Source


def test_migrations_match_models(db_url: str) -> None:
    engine = store_db.make_engine(db_url)
    before, after = store_db.upgrade(engine)
    assert before is None and after == store_db.head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_upgrade_is_idempotent(db_url: str) -> None:
    engine = store_db.make_engine(db_url)
    store_db.upgrade(engine)
    assert store_db.upgrade(engine) == (store_db.head_revision(), store_db.head_revision())
    store_db.check_schema(engine)
    engine.dispose()


def test_empty_database_is_refused_with_the_fix(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        # an existing, non-empty SQLite file that is not ours must not be taken over
        engine = store_db.make_engine(db_url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE unrelated (x INTEGER)"))
    else:
        engine = store_db.make_engine(db_url)
    with pytest.raises(SchemaError, match="run `aggregator db upgrade`"):
        store_db.check_schema(engine)
    engine.dispose()


def test_out_of_date_schema_is_refused(db_url: str) -> None:
    engine = store_db.make_engine(db_url)
    store_db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'old0'"))
    with pytest.raises(SchemaError, match="revision old0.*run `aggregator db upgrade`"):
        store_db.check_schema(engine)
    engine.dispose()


def test_head_revision_is_alembics() -> None:
    script = ScriptDirectory.from_config(store_db.alembic_config("sqlite://"))
    assert store_db.head_revision() == script.get_current_head()


def test_head_revision_follows_down_revisions_not_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "env.py").write_text("")
    versions = tmp_path / "versions"
    versions.mkdir()
    for name, rev, down in [
        ("0001_z.py", "zz", "('bb', 'cc')"),
        ("0002_b.py", "bb", "'aa'"),
        ("0003_c.py", "cc", "'aa'"),
        ("0004_a.py", "aa", "None"),
    ]:
        (versions / name).write_text(
            f'"""x"""\n\nrevision: str = "{rev}"\ndown_revision: str | None = {down}\n'
        )
    (versions / "helpers.py").write_text("x = 1\n")
    monkeypatch.setattr(store_db, "MIGRATIONS_DIR", tmp_path)
    assert store_db.head_revision() == "zz"
    (versions / "0005_d.py").write_text('revision = "dd"\ndown_revision = "aa"\n')
    with pytest.raises(StoreError, match="2 heads"):
        store_db.head_revision()


def test_current_revision_is_what_alembic_reads(db_url: str) -> None:
    engine = store_db.make_engine(db_url)
    assert store_db.current_revision(engine) is None
    store_db.upgrade(engine)
    with engine.connect() as conn:
        recorded = MigrationContext.configure(conn).get_current_revision()
    assert store_db.current_revision(engine) == recorded == store_db.head_revision()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('other')"))
    with pytest.raises(SchemaError, match="records 2 schema revisions"):
        store_db.check_schema(engine)
    engine.dispose()


def test_new_sqlite_file_is_created_at_head(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "fresh.sqlite"
    path.parent.mkdir()
    store = store_db.open_store(f"sqlite:///{path}")
    assert store_db.current_revision(store.engine) == store_db.head_revision()
    store.close()
    assert path.stat().st_size > 0


def test_times_round_trip_as_utc(store: store_db.Store) -> None:
    berlin = timezone(timedelta(hours=1))
    at = datetime(2026, 3, 1, 10, 30, tzinfo=berlin)
    with store.session() as s:
        src = Source(name="s", type="rss", url="http://x/", created_at=at)
        s.add(src)
        s.flush()
        s.add(
            Item(
                source_id=src.id,
                kind="article",
                guid="g",
                title="t",
                summary="",
                text="",
                published_at=at,
                fetched_at=at,
                content_hash="0" * 64,
            )
        )
    with store.session() as s:
        item = s.scalars(select(Item)).one()
        assert item.published_at == at
        assert item.published_at.tzinfo is not None
        assert item.published_at.utcoffset() == timedelta(0)
        assert item.published_at.hour == 9


def test_naive_datetimes_are_rejected(store: store_db.Store) -> None:
    with pytest.raises(Exception, match="naive datetime"), store.session() as s:
        s.add(Source(name="s", type="rss", url="http://x/", created_at=datetime(2026, 1, 1)))


def test_sync_sources_adds_updates_and_retires(store: store_db.Store) -> None:
    now = datetime.now(UTC)
    a = SourceConfig(name="a", type="rss", url="http://a.example/feed")
    b = SourceConfig(name="b", type="google_news", query="KI", language="de", country="DE")
    with store.session() as s:
        repo.sync_sources(s, [a, b], now)
    with store.session() as s:
        feeds = {f.url: f for f in s.scalars(select(Feed))}
        assert set(feeds) == {"http://a.example/feed", b.feed_url()}
        assert "hl=de&gl=DE&ceid=DE:de" in b.feed_url()
    a2 = SourceConfig(name="a", type="rss", url="http://a.example/feed2")
    with store.session() as s:
        repo.sync_sources(s, [a2], now)
    with store.session() as s:
        rows = {r["source"]: r for r in repo.source_status(s)}
        assert rows["a"]["url"] == "http://a.example/feed2" and rows["a"]["in_config"]
        assert not rows["b"]["in_config"] and not rows["b"]["enabled"]
        assert len(s.scalars(select(Feed).where(Feed.kind == "main")).all()) == 2


def test_unique_guid_per_source(store: store_db.Store) -> None:
    now = datetime.now(UTC)
    with store.session() as s:
        src = Source(name="s", type="rss", url="http://x/", created_at=now)
        s.add(src)
        s.flush()
        sid = src.id
    kw = dict(
        kind="article",
        title="t",
        summary="",
        text="",
        published_at=now,
        fetched_at=now,
        content_hash="0" * 64,
    )
    with store.session() as s:
        s.add(Item(source_id=sid, guid="g", **kw))
    with pytest.raises(Exception, match="(?i)unique"), store.session() as s:
        s.add(Item(source_id=sid, guid="g", **kw))


def test_exact_dedup_finds_known_keys_through_indexes(sqlite_store: store_db.Store) -> None:
    """Each lookup of a poll's guids, URLs and hashes is an index search on its key: with
    ``source and (guid or url or hash)`` SQLite (no statistics, as the daemon's store) took
    the source's index and read every item the source ever stored, on every poll."""
    store, engine = sqlite_store, sqlite_store.engine
    now = datetime.now(UTC)
    with store.session() as s:
        src = Source(name="s", type="rss", url="http://x/", created_at=now)
        s.add(src)
        s.flush()
        sid = src.id
    item = NewItem(
        kind="article",
        guid="g",
        url="https://x.example/a",
        canonical_url="https://x.example/a",
        title="t",
        publisher=None,
        publisher_url=None,
        summary="",
        text="",
        lang="en",
        published_at=now,
        published_at_estimated=False,
        fetched_at=now,
        content_hash="0" * 64,
        author=None,
        comments_feed_url=None,
        entry_hash=None,
    )
    queries: list[tuple[str, object]] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and " items" in statement:
            queries.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        with store.session() as s:
            assert known_keys(s, sid, [item]) == (set(), set(), set())
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert queries
    with engine.connect() as conn:
        for statement, parameters in queries:
            plan = [
                row[-1]
                for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            ]
            assert all(
                "guid=?" in step or "canonical_url=?" in step or "content_hash=?" in step
                for step in plan
            ), (statement, plan)


def test_survivor_follows_the_merged_into_chain_and_stops_before_a_cycle() -> None:
    assert survivor(1, {}) == 1
    assert survivor(1, {1: 2, 2: 3, 4: 1}) == 3
    assert survivor(1, {1: 2, 2: 1}) == 2  # a damaged database must not hang a reader


def test_survivors_reads_each_chain_from_the_database(store: store_db.Store) -> None:
    now = datetime.now(UTC)
    with store.session() as s:
        s.add_all(
            Cluster(id=i, level="story", created_at=now, updated_at=now, size=0)
            for i in (1, 2, 3, 4)
        )
        s.flush()
        s.get_one(Cluster, 1).merged_into_id = 2
        s.get_one(Cluster, 2).merged_into_id = 3
        s.flush()
        assert survivors(s, [1, 2, 3, 4]) == {1: 3, 2: 3, 3: 3, 4: 4}
