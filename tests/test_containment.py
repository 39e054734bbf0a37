"""One bad feed never stops the rest (issue 19, points 1 and 7).

Absurd caching headers from a real local HTTP server, a failure injected into one feed's fetch,
parse, normalise or store stage, and a database recreated under a running daemon: each time the
other feeds are polled, stored and clustered, and the bad feed gets an error row, a released
lease and a next check in the future. Runs on SQLite and PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import email.utils
import io
import json
import logging
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import FEEDS
from helpers import make_config, sync
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from sqlalchemy import func, inspect, select, text

from aggregator import ingest, poller
from aggregator.cli import main
from aggregator.config import Config
from aggregator.daemon import Daemon
from aggregator.fetcher import (
    MAX_HEADER_DELAY_S,
    Fetcher,
    parse_cache_control_max_age,
    parse_retry_after,
)
from aggregator.parser import parse_feed
from aggregator.poller import fetch_settings, poll_round
from aggregator.schedule import MAX_RETRY_AFTER_S
from aggregator.store import Store
from aggregator.store import db as store_db
from aggregator.store.models import Feed, Item, PollLog, Source

NOW_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MIN_S, MAX_S = 60.0, 3600.0
BOUNDS = {"min_interval": f"{MIN_S:.0f}s", "max_interval": f"{MAX_S:.0f}s", "workers": 2}
GOOD = ["rss10-rdf-en-slashdot.xml", "rss090-rdf-de-heise.xml", "atom-de-heise-developer.xml"]
BAD = "atom-en-h-online.xml"
DIGITS_400 = "9" * 400

# --------------------------------------------------------------------- the header parsers

ABSURD_RETRY_AFTER = [
    (DIGITS_400, MAX_HEADER_DELAY_S),
    ("300000000000", MAX_HEADER_DELAY_S),
    ("1" + "0" * 5000, MAX_HEADER_DELAY_S),
    ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_HEADER_DELAY_S),
    ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),  # read as 2001 (RFC 2822 year rules): the past
    ("-5", None),
    ("-1e400", None),
    ("NaN", None),
    ("nan", None),
    ("inf", None),
    ("Infinity", None),
    ("1e400", None),
    ("0x10", None),
    ("١٢٣", None),  # Arabic-Indic digits: not delta-seconds
    ("Wed, 01 May 2024 12:00:00 +9999", None),  # offset beyond a day
]


@pytest.mark.parametrize(("value", "expected"), ABSURD_RETRY_AFTER)
def test_absurd_retry_after_is_clamped_or_ignored(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, NOW_AT) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"max-age={DIGITS_400}", MAX_HEADER_DELAY_S),
        ("max-age=300000000000", MAX_HEADER_DELAY_S),
        ("max-age=NaN", None),
        ("max-age=inf", None),
        ("max-age=-5", None),
        ("max-age=1e400", None),
        (f'public, max-age="{DIGITS_400}"', MAX_HEADER_DELAY_S),
    ],
)
def test_absurd_max_age_is_clamped_or_ignored(value: str, expected: float | None) -> None:
    assert parse_cache_control_max_age(value) == expected


def _header_text() -> st.SearchStrategy[str]:
    """Arbitrary text plus the shapes that reach the number and date code paths."""
    dates = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: email.utils.format_datetime(d.replace(tzinfo=UTC), usegmt=True)
    )
    numbers = st.from_regex(r"-?[0-9]{1,500}(\.[0-9]{1,50})?", fullmatch=True)
    return st.one_of(
        st.text(max_size=200),
        st.text(alphabet="0123456789.-+eE ,=\"'infaNFIty", max_size=60),
        numbers,
        dates,
        st.builds(lambda n, pre: f"{pre}max-age={n}", numbers, st.sampled_from(["", "public, "])),
    )


@settings(max_examples=250, deadline=None)
@given(value=st.none() | _header_text())
def test_parse_retry_after_never_raises_and_is_bounded(value: str | None) -> None:
    got = parse_retry_after(value, NOW_AT)
    assert got is None or (math.isfinite(got) and 0.0 <= got <= MAX_HEADER_DELAY_S)
    if got is not None:
        timedelta(seconds=got)  # fits


@settings(max_examples=250, deadline=None)
@given(value=st.none() | _header_text())
def test_parse_max_age_never_raises_and_is_bounded(value: str | None) -> None:
    got = parse_cache_control_max_age(value)
    assert got is None or (math.isfinite(got) and 0.0 <= got <= MAX_HEADER_DELAY_S)


# --------------------------------------------------------------------- helpers


def serve_fixture(httpserver: HTTPServer, path: str, name: str) -> str:
    httpserver.expect_request(path).respond_with_data(
        (FEEDS / name).read_bytes(), content_type="application/xml"
    )
    return httpserver.url_for(path)


def feeds_by_source(store: Store) -> dict[str, Feed]:
    with store.session() as s:
        rows = s.execute(select(Source.name, Feed).join(Feed, Feed.source_id == Source.id)).all()
    return {name: feed for name, feed in rows}


def items_of(store: Store, source: str) -> tuple[int, int]:
    """(items stored, items clustered) of one source."""
    with store.session() as s:
        base = select(func.count()).select_from(Item).join(Source).where(Source.name == source)
        return (
            s.scalar(base) or 0,
            s.scalar(base.where(Item.dedup_state == "done")) or 0,
        )


def write_cli_config(tmp_path: Path, db_url: str, cfg: Config) -> Path:
    path = tmp_path / "config.yaml"
    data = {
        "database": {"url": db_url},
        "polling": {
            "min_interval": f"{MIN_S:.0f}s",
            "max_interval": f"{MAX_S:.0f}s",
            "allow_private_addresses": True,
        },
        "sources": [{"name": s.name, "type": s.type, "url": s.url} for s in cfg.sources],
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# --------------------------------------------------------------------- absurd headers


ABSURD_RESPONSES = [
    ("ra-digits-503", 503, {"Retry-After": DIGITS_400}),
    ("ra-digits-429", 429, {"Retry-After": DIGITS_400}),
    ("ra-digits-200", 200, {"Retry-After": DIGITS_400}),
    ("ra-300g-503", 503, {"Retry-After": "300000000000"}),
    ("ra-300g-200", 200, {"Retry-After": "300000000000"}),
    ("max-age-digits-200", 200, {"Cache-Control": f"max-age={DIGITS_400}"}),
    ("ra-year-9999-503", 503, {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}),
    ("ra-negative-429", 429, {"Retry-After": "-5"}),
    ("ra-nan-503", 503, {"Retry-After": "NaN"}),
    ("ra-inf-200", 200, {"Retry-After": "inf", "Cache-Control": "max-age=inf"}),
]


def serve_absurd(httpserver: HTTPServer) -> list[dict]:
    body = (FEEDS / BAD).read_bytes()
    sources = []
    for name, status, headers in ABSURD_RESPONSES:
        httpserver.expect_request(f"/{name}").respond_with_data(
            body if status == 200 else b"busy",
            status=status,
            headers=headers,
            content_type="application/xml",
        )
        sources.append({"name": name, "type": "atom", "url": httpserver.url_for(f"/{name}")})
    for i, fixture in enumerate(GOOD):
        sources.append(
            {
                "name": f"good-{i}",
                "type": "rss",
                "url": serve_fixture(httpserver, f"/g{i}", fixture),
            }
        )
    return sources


def test_absurd_headers_never_stop_a_round(store: Store, httpserver: HTTPServer) -> None:
    cfg = make_config(serve_absurd(httpserver), **BOUNDS)
    sync(store, cfg)
    started_at = datetime.now(UTC)
    with Fetcher(fetch_settings(cfg)) as fetcher:
        outcomes = poll_round(store, cfg, fetcher, owner="test")  # due feeds, as the daemon
    assert len(outcomes) == len(cfg.sources)
    feeds = feeds_by_source(store)
    for name, status, headers in ABSURD_RESPONSES:
        feed = feeds[name]
        assert feed.last_polled_at is not None, name
        assert feed.lease_owner is None and feed.lease_until is None, name
        assert feed.last_result == ("ok" if status == 200 else "http"), (name, feed.last_error)
        wait_s = (feed.next_check_at - started_at).total_seconds()
        asks = "Retry-After" in headers and parse_retry_after(headers["Retry-After"], started_at)
        high_s = max(MAX_S, MAX_RETRY_AFTER_S) if asks else MAX_S
        assert MIN_S - 1 <= wait_s <= high_s + 60, (name, wait_s)
        if feed.retry_after_until is not None:
            assert feed.retry_after_until <= started_at + timedelta(seconds=MAX_RETRY_AFTER_S + 60)
    assert feeds["max-age-digits-200"].next_check_at <= started_at + timedelta(seconds=MAX_S + 60)
    for i in range(len(GOOD)):
        assert items_of(store, f"good-{i}")[0] > 0


def test_poll_once_with_absurd_headers_exits_normally(
    tmp_path: Path, httpserver: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config(serve_absurd(httpserver), **BOUNDS)
    config = write_cli_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", cfg)
    out = io.StringIO()
    code = main(["--config", str(config), "poll", "--once"], out=out)
    err = capsys.readouterr().err
    assert "unexpected" not in err
    failed = sum(1 for _, status, _ in ABSURD_RESPONSES if status != 200)
    assert f"{failed} of {len(cfg.sources)} feeds failed" in err  # the documented partial exit
    assert code == 1
    lines = out.getvalue().splitlines()
    assert len(lines) == len(cfg.sources)
    assert {line.split("\t")[0] for line in lines} == {s.name for s in cfg.sources}

    # a round of only successful (if absurd) responses exits 0
    ok_only = make_config([s.model_dump() for s in cfg.sources if "200" in s.name], **BOUNDS)
    config = write_cli_config(tmp_path, f"sqlite:///{tmp_path / 'ok.sqlite'}", ok_only)
    assert main(["--config", str(config), "poll", "--once"], out=io.StringIO()) == 0


# --------------------------------------------------------------------- injected failures

STAGES = ["fetch", "parse", "normalise", "store"]


def inject(monkeypatch: pytest.MonkeyPatch, stage: str, fetcher: Fetcher, bad_url: str) -> None:
    """Make one stage raise for the bad feed only; the other feeds go through untouched."""
    bad_title = parse_feed((FEEDS / BAD).read_bytes(), url=bad_url).title
    if stage == "fetch":
        real_fetch = fetcher.fetch

        def fetch(url: str, **kw):
            if url == bad_url:
                raise RuntimeError("injected fetch failure")
            return real_fetch(url, **kw)

        monkeypatch.setattr(fetcher, "fetch", fetch)
    elif stage == "parse":
        real_parse = ingest.parse_feed

        def parse(body: bytes, *, url: str, **kw):
            if url == bad_url:
                raise ValueError("injected parse failure")
            return real_parse(body, url=url, **kw)

        monkeypatch.setattr(ingest, "parse_feed", parse)
    elif stage == "normalise":
        real_normalise = ingest.normalise_feed

        def normalise(feed, **kw):
            if feed.title == bad_title:
                raise RuntimeError("injected normalise failure")
            return real_normalise(feed, **kw)

        monkeypatch.setattr(ingest, "normalise_feed", normalise)
    else:
        real_insert = ingest.insert_items

        def insert(s, *, source_id: int, feed_id: int, **kw):
            if s.get(Feed, feed_id).url == bad_url:
                raise KeyError("injected store failure")
            return real_insert(s, source_id=source_id, feed_id=feed_id, **kw)

        monkeypatch.setattr(ingest, "insert_items", insert)


@pytest.mark.parametrize("stage", STAGES)
def test_a_failure_in_one_feed_leaves_the_others_polled_stored_and_clustered(
    store: Store,
    db_url: str,
    tmp_path: Path,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    stage: str,
) -> None:
    # the bad feed is first in claim order: before, it stopped every round at its turn
    bad_url = serve_fixture(httpserver, "/bad", BAD)
    sources = [{"name": "bad", "type": "atom", "url": bad_url}]
    sources += [
        {"name": f"good-{i}", "type": "rss", "url": serve_fixture(httpserver, f"/g{i}", f)}
        for i, f in enumerate(GOOD)
    ]
    cfg = make_config(sources, **BOUNDS)
    sync(store, cfg)
    with Fetcher(fetch_settings(cfg)) as fetcher:
        inject(monkeypatch, stage, fetcher, bad_url)
        daemon = Daemon(store, cfg, fetcher=fetcher)
        started_at = datetime.now(UTC)
        with caplog.at_level(logging.INFO):
            daemon.poll_tick()
    assert daemon.rounds == 1

    for i in range(len(GOOD)):
        stored, clustered = items_of(store, f"good-{i}")
        assert stored > 0 and clustered == stored, (f"good-{i}", stored, clustered)

    bad = feeds_by_source(store)["bad"]
    assert bad.last_result == "internal"
    assert bad.last_error.startswith("internal error: ") and "injected" in bad.last_error
    assert bad.error_count == 1
    assert bad.next_check_at > started_at + timedelta(seconds=MIN_S - 1)
    assert bad.lease_owner is None and bad.lease_until is None
    assert bad.etag is None and bad.body_hash is None  # nothing vouches for unstored items
    assert items_of(store, "bad") == (0, 0)
    with store.session() as s:
        logged = s.scalars(select(PollLog).where(PollLog.feed_id == bad.id)).all()
    assert [(p.result, p.error) for p in logged] == [("internal", bad.last_error)]

    crash_lines = [r for r in caplog.records if "injected" in r.getMessage()]
    assert len(crash_lines) == 1, [r.getMessage() for r in caplog.records]
    assert crash_lines[0].levelno == logging.ERROR and crash_lines[0].exc_info is None
    assert "bad" in crash_lines[0].getMessage() and "/bad" in crash_lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.INFO)

    # `status` shows it
    config = write_cli_config(tmp_path, db_url, cfg)
    out = io.StringIO()
    assert main(["--config", str(config), "status", "--json"], out=out) == 0
    row = next(s for s in json.loads(out.getvalue())["sources"] if s["source"] == "bad")
    assert row["result"] == "internal" and row["error_count"] == 1
    assert "injected" in row["last_error"]
    assert datetime.fromisoformat(row["next_check_at"]) > started_at


def test_the_last_resort_releases_a_feed_whose_failure_cannot_be_recorded(
    store: Store, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_url = serve_fixture(httpserver, "/bad", BAD)
    good_url = serve_fixture(httpserver, "/good", GOOD[0])
    cfg = make_config(
        [
            {"name": "bad", "type": "atom", "url": bad_url},
            {"name": "good", "type": "rss", "url": good_url},
        ],
        **BOUNDS,
    )
    sync(store, cfg)
    real_schedule = poller._schedule

    def schedule(s, cfg, job, *args, **kw):
        if job.url == bad_url:
            raise OverflowError("injected scheduling failure")
        return real_schedule(s, cfg, job, *args, **kw)

    monkeypatch.setattr(poller, "_schedule", schedule)  # breaks success and failure records
    started_at = datetime.now(UTC)
    with Fetcher(fetch_settings(cfg)) as fetcher:
        outcomes = poll_round(store, cfg, fetcher, owner="test")
    assert sorted(o.result for o in outcomes) == ["internal", "ok"]
    bad = feeds_by_source(store)["bad"]
    assert bad.lease_owner is None and bad.last_result == "internal"
    assert "injected scheduling failure" in bad.last_error
    assert bad.next_check_at > started_at
    assert items_of(store, "good")[0] > 0


def test_what_a_failed_round_stored_is_still_clustered(
    store: Store, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aggregator import daemon as daemon_module

    cfg = make_config(
        [{"name": "good", "type": "rss", "url": serve_fixture(httpserver, "/g", GOOD[0])}], **BOUNDS
    )
    sync(store, cfg)
    real_round = daemon_module.poll_round

    def failing_round(*args, **kw):
        real_round(*args, **kw)
        raise RuntimeError("injected round failure after storing")

    monkeypatch.setattr(daemon_module, "poll_round", failing_round)
    with Fetcher(fetch_settings(cfg)) as fetcher:
        Daemon(store, cfg, fetcher=fetcher).poll_tick()
    stored, clustered = items_of(store, "good")
    assert stored > 0 and clustered == stored


# --------------------------------------------------------------------- recreated database


def recreate(store: Store) -> None:
    """What `dropdb; createdb; aggregator db upgrade` leaves behind: an empty, upgraded schema."""
    engine = store.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("PRAGMA foreign_keys = OFF"))
        for table in inspect(conn).get_table_names():
            cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
            conn.execute(text(f'DROP TABLE "{table}"{cascade}'))
    store_db.upgrade(engine)


def test_a_recreated_database_is_polled_again(store: Store, httpserver: HTTPServer) -> None:
    cfg = make_config(
        [
            {"name": f"good-{i}", "type": "rss", "url": serve_fixture(httpserver, f"/g{i}", f)}
            for i, f in enumerate(GOOD)
        ],
        **BOUNDS,
    )
    sync(store, cfg)
    with Fetcher(fetch_settings(cfg)) as fetcher:
        daemon = Daemon(store, cfg, fetcher=fetcher)
        daemon.poll_tick()
        before = {f"good-{i}": items_of(store, f"good-{i}") for i in range(len(GOOD))}
        assert all(stored > 0 for stored, _ in before.values())

        recreate(store)
        assert feeds_by_source(store) == {}
        daemon.poll_tick()
    after = {f"good-{i}": items_of(store, f"good-{i}") for i in range(len(GOOD))}
    assert after == before  # everything polled, stored and clustered again
    assert all(f.last_result == "ok" for f in feeds_by_source(store).values())


@pytest.mark.postgres
def test_a_dropped_and_recreated_postgres_database_is_polled_again(
    pg_database: str, httpserver: HTTPServer
) -> None:
    """The real thing: `dropdb` (killing the daemon's connections), `createdb`, `db upgrade`."""
    from conftest import PG_ADMIN_URL, drop_database
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"{make_url(pg_database).database}_recreated"
    url = make_url(pg_database).set(database=name).render_as_string(hide_password=False)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def drop() -> None:
        drop_database(admin, name)

    def create() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        upgrader = store_db.make_engine(url)
        store_db.upgrade(upgrader)
        upgrader.dispose()

    cfg = make_config(
        [{"name": "good", "type": "rss", "url": serve_fixture(httpserver, "/g", GOOD[0])}], **BOUNDS
    )
    create()
    store = Store(store_db.make_engine(url))
    try:
        sync(store, cfg)
        with Fetcher(fetch_settings(cfg)) as fetcher:
            daemon = Daemon(store, cfg, fetcher=fetcher)
            daemon.poll_tick()
            before = items_of(store, "good")
            assert before[0] > 0
            drop()
            create()
            daemon.poll_tick()
            daemon.poll_tick()  # a tick lost to the killed connections would be fine too
        assert items_of(store, "good") == before
    finally:
        store.close()
        drop()
        admin.dispose()
