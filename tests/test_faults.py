"""Faults, nothing lost: real processes killed with SIGKILL, database connections terminated,
a locked SQLite file, a full database, and secrets that must never be printed.

Every subprocess test waits for a condition it reads from the database (with a deadline),
never for a fixed time, so a slow machine makes the test slower, not flaky.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FEEDS
from helpers import cli, make_config, run_cli, spawn, start_daemon, sync, wait_for
from polled_feeds import (
    FETCH,
    POLLED,
    Snapshot,
    new_store,
    poll_all,
    polled_sources,
    reader,
    scalar,
    serve_feeds,
    snapshot,
    upgrade_if_postgres,
    write_config,
)
from pytest_httpserver import HTTPServer
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from aggregator.coordination import worker_id
from aggregator.daemon import Daemon
from aggregator.errors import StoreError
from aggregator.fetcher import Fetcher
from aggregator.poller import fetch_settings, poll_round
from aggregator.store import Store
from aggregator.store import db as store_db

IMPORT_FILES = [str(p) for p in sorted(FEEDS.glob("*.xml"))]


# ---------------------------------------------------------------- helpers


def stored_pairs(engine) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [
            (src, guid)
            for src, guid in conn.execute(
                text("SELECT s.name, i.guid FROM items i JOIN sources s ON s.id = i.source_id")
            )
        ]


def assert_never_ahead(snap: Snapshot, expected: dict[str, set[str]]) -> None:
    """A feed's poll state moves only together with all of its items; nothing half-stored,
    nothing stored twice."""
    for name, (advanced, guids) in snap.items():
        assert len(guids) == len(set(guids)), f"{name}: a guid stored twice"
        if advanced:
            assert set(guids) == expected[name], f"{name}: poll state ahead of its items"
        else:
            assert guids == [], f"{name}: items stored without the poll state"


def kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the process ended before it was killed"


@pytest.fixture
def expected_polled(tmp_path: Path, httpserver: HTTPServer) -> dict[str, set[str]]:
    """What one clean poll of the POLLED feeds stores, per source (the reference)."""
    cfg = make_config(polled_sources(httpserver), **FETCH)
    store = new_store(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    try:
        sync(store, cfg)
        serve_feeds(httpserver)
        poll_all(store, cfg)
        engine = reader(str(store.engine.url))
        snap = snapshot(engine)
        engine.dispose()
    finally:
        store.close()
    httpserver.clear()
    assert all(advanced and guids for advanced, guids in snap.values())
    return {name: set(guids) for name, (_, guids) in snap.items()}


# ---------------------------------------------------------------- 1a: import, kill -9


def test_import_killed_repeatedly_then_rerun_stores_every_entry_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    db_url = sqlite_url
    cfg = tmp_path / "config.yaml"
    cfg.write_text("sources: []\n", encoding="utf-8")
    cmd = (cfg, "-q", "import", *IMPORT_FILES)

    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    clean = cli(*cmd, env={"AGGREGATOR_DATABASE_URL": reference_url})
    assert clean.returncode == 0, clean.stderr
    ref = reader(reference_url)
    expected = stored_pairs(ref)
    ref.dispose()
    assert len(expected) > 400

    env = {"AGGREGATOR_DATABASE_URL": db_url}
    engine = reader(db_url)
    items = "SELECT count(*) FROM items"
    done = "SELECT count(*) FROM items WHERE dedup_state = 'done'"
    # kill points, read from the database: while files are being stored; after the import,
    # before clustering committed anything; in the middle of clustering (it commits per batch)
    kill_points: list[tuple[str, Callable[[], bool]]] = [
        ("storing files", lambda: scalar(engine, items) > 0),
        ("clustering not started", lambda: scalar(engine, items) == len(expected)),
        ("clustering half done", lambda: scalar(engine, done) > 0),
    ]
    try:
        for what, cond in kill_points:
            proc = spawn(*cmd, env=env, stdout=subprocess.DEVNULL)
            try:
                wait_for(cond, 60, what)
            finally:
                kill9(proc)
            pairs = stored_pairs(engine)
            assert len(pairs) == len(set(pairs)), f"duplicates after a kill while {what}"
            assert set(pairs) <= set(expected)
        assert scalar(engine, done) < len(expected), "no kill interrupted the clustering"

        rerun = cli(*cmd, env=env)  # what the kills left, finished in-process
        assert rerun.returncode == 0, rerun.stderr
        pairs = stored_pairs(engine)
        assert len(pairs) == len(set(pairs))
        assert sorted(pairs) == sorted(expected)
        assert scalar(engine, "SELECT count(*) FROM items WHERE dedup_state <> 'done'") == 0
        articles = scalar(engine, "SELECT count(*) FROM items WHERE kind = 'article'")
        assert articles > 400
        per_article = (
            "SELECT count(*) FROM items i WHERE i.kind = 'article' AND "
            "(SELECT count(*) FROM cluster_members m WHERE m.item_id = i.id) <> 3"
        )
        assert scalar(engine, per_article) == 0
        assert scalar(engine, "SELECT count(*) FROM cluster_members") == 3 * articles
    finally:
        engine.dispose()


# ---------------------------------------------------------------- 1b: daemon, kill -9


def test_daemon_killed_mid_round_loses_nothing_and_never_runs_ahead(
    tmp_path: Path, httpserver: HTTPServer, expected_polled: dict[str, set[str]], db_url: str
) -> None:
    slow = serve_feeds(httpserver)
    slow.set()
    cfg = write_config(tmp_path / "config.yaml", httpserver)
    upgrade_if_postgres(db_url)
    env = {"AGGREGATOR_DATABASE_URL": db_url}
    engine = reader(db_url)
    total = len(POLLED)
    polled = "SELECT count(*) FROM feeds WHERE body_hash IS NOT NULL"
    try:
        for at_least in (2, 6):  # kill -9 with this many feeds polled, the rest pending
            proc = start_daemon(cfg, env=env, stdout=subprocess.DEVNULL)
            try:
                wait_for(lambda n=at_least: scalar(engine, polled) >= n, 60, f"{at_least} feeds")
            finally:
                kill9(proc)
            assert_never_ahead(snapshot(engine), expected_polled)
        assert scalar(engine, polled) < total, "the kills came too late to interrupt a round"

        proc = start_daemon(cfg, env=env, stdout=subprocess.DEVNULL)
        try:
            wait_for(
                lambda: (
                    scalar(engine, polled) == total
                    and scalar(engine, "SELECT count(*) FROM items WHERE dedup_state = 'pending'")
                    == 0
                ),
                60,
                "every feed polled and clustered after the restart",
            )
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        snap = snapshot(engine)
        assert_never_ahead(snap, expected_polled)
        assert {name: set(guids) for name, (_, guids) in snap.items()} == expected_polled
    finally:
        engine.dispose()


# ---------------------------------------------------------------- 2a: PostgreSQL backends killed


LOG_LINE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "


@pytest.mark.postgres
def test_daemon_rides_out_terminated_postgres_connections(
    tmp_path: Path, httpserver: HTTPServer, expected_polled: dict[str, set[str]], pg_url: str
) -> None:
    """The test holds a lock on ``items`` so the daemon's insert transactions wait; each time
    one waits, every backend of the database but the test's lock holder is terminated."""
    import re

    serve_feeds(httpserver)
    cfg = write_config(tmp_path / "config.yaml", httpserver)
    upgrade_if_postgres(pg_url)
    env = {"AGGREGATOR_DATABASE_URL": pg_url}
    engine = reader(pg_url)
    log_path = tmp_path / "daemon.log"
    unavailable = "database unavailable, will retry next round"
    rounds = 2
    locker = engine.connect()
    log_file = log_path.open("w")
    proc = None
    try:
        locker.begin()
        locker.execute(text("LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE"))
        locker_pid = locker.execute(text("SELECT pg_backend_pid()")).scalar()
        proc = start_daemon(cfg, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            f"AND wait_event_type = 'Lock' AND pid <> {locker_pid}"
        )
        terminate = text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> :locker"
        )
        # A round goes on with its other feeds after one fails and reports the failure at
        # its end: keep terminating whichever backend waits until `rounds` rounds failed.
        killed = 0
        deadline = time.monotonic() + 60
        while log_path.read_text().count(unavailable) < rounds:
            assert time.monotonic() < deadline, "the daemon never reported the lost connections"
            assert proc.poll() is None, "the daemon died with its database connection"
            if scalar(engine, waiting) > 0:
                with engine.connect() as conn:
                    killed += conn.execute(terminate, {"locker": locker_pid}).scalar() or 0
            time.sleep(0.02)
        assert killed >= rounds
        assert proc.poll() is None
        assert scalar(engine, "SELECT count(*) FROM feeds WHERE body_hash IS NOT NULL") == 0
        locker.rollback()  # the lock goes: the next round must store everything

        wait_for(
            lambda: (
                scalar(engine, "SELECT count(*) FROM feeds WHERE body_hash IS NOT NULL")
                == len(POLLED)
            ),
            60,
            "every feed stored after the database came back",
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 0
        snap = snapshot(engine)
        assert_never_ahead(snap, expected_polled)
        assert {name: set(guids) for name, (_, guids) in snap.items()} == expected_polled
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        log_file.close()
        locker.close()
        engine.dispose()
    log = log_path.read_text()
    assert "Traceback" not in log, log
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) >= rounds
    # psycopg words it "terminating connection due to administrator command" or "server
    # closed the connection unexpectedly", depending on where the backend was
    assert all(unavailable in line and "connection" in line for line in errors), log
    # one line per event: every line of the log is a log record, none a continuation
    assert all(re.match(LOG_LINE, line) for line in log.splitlines()), log


# ---------------------------------------------------------------- 2b: SQLite busy


def test_poll_waits_for_another_sqlite_writer_then_succeeds(
    tmp_path: Path, httpserver: HTTPServer, expected_polled: dict[str, set[str]]
) -> None:
    serve_feeds(httpserver)
    cfg = write_config(tmp_path / "config.yaml", httpserver)
    db = tmp_path / "newsdedup.sqlite"
    created = run_cli(cfg, "status")
    assert created.returncode == 0, created.stderr
    holder = sqlite3.connect(db, isolation_level=None, timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
        holder.execute("UPDATE sources SET priority = priority")
        proc = spawn(cfg, "poll", "--once", "--all")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # without a busy timeout it fails within a second
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        holder.execute("COMMIT")
        out, err = proc.communicate(timeout=60)
    finally:
        holder.close()
    assert proc.returncode == 0, err
    assert "locked" not in err
    assert len(out.splitlines()) == len(POLLED)
    engine = reader(f"sqlite:///{db}")
    try:
        snap = snapshot(engine)
    finally:
        engine.dispose()
    assert {name: set(guids) for name, (_, guids) in snap.items()} == expected_polled


# ---------------------------------------------------------------- 2c: database full


def test_full_database_fails_the_round_cleanly_and_the_next_poll_stores_everything(
    tmp_path: Path,
    httpserver: HTTPServer,
    expected_polled: dict[str, set[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    serve_feeds(httpserver)
    cfg = make_config(
        polled_sources(httpserver), workers=1, **FETCH
    )  # one worker: the feeds are stored in order
    url = f"sqlite:///{tmp_path / 'full.sqlite'}"
    setup = new_store(url)
    sync(setup, cfg)
    setup.close()
    with sqlite3.connect(tmp_path / "full.sqlite") as conn:
        empty_pages = conn.execute("PRAGMA page_count").fetchone()[0]
    with sqlite3.connect(tmp_path / "reference.sqlite") as conn:
        full_pages = conn.execute("PRAGMA page_count").fetchone()[0]
    limit = empty_pages + (full_pages - empty_pages) // 3  # room for about a third

    engine = store_db.make_engine(url)

    @event.listens_for(engine, "connect")
    def _cap(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.execute(f"PRAGMA max_page_count = {limit}")

    limited = Store(engine)
    try:
        with Fetcher(fetch_settings(cfg)) as fetcher:
            with pytest.raises(StoreError) as failure:
                poll_round(limited, cfg, fetcher, owner=worker_id(), all_feeds=True)
            message = str(failure.value)
            assert "\n" not in message and "full" in message, message

            check = reader(url)
            snap = snapshot(check)
            check.dispose()
            assert_never_ahead(snap, expected_polled)
            advanced = [name for name, (adv, _) in snap.items() if adv]
            assert 0 < len(advanced) < len(POLLED), "the limit should stop the round midway"

            # the daemon's tick: the same failure is one logged line, no exception, no traceback
            caplog.clear()
            with caplog.at_level(logging.INFO):
                Daemon(limited, cfg, fetcher=fetcher).poll_tick()
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1, [r.getMessage() for r in caplog.records]
            assert "full" in errors[0].getMessage() and "\n" not in errors[0].getMessage()
            assert errors[0].exc_info is None
    finally:
        limited.close()

    store = Store(store_db.make_engine(url))  # room again
    try:
        poll_all(store, cfg)
    finally:
        store.close()
    check = reader(url)
    snap = snapshot(check)
    check.dispose()
    assert_never_ahead(snap, expected_polled)
    assert {name: set(guids) for name, (_, guids) in snap.items()} == expected_polled


# ---------------------------------------------------------------- 3: secrets


@pytest.mark.postgres
def test_passwords_never_appear_in_output_logs_or_status(
    tmp_path: Path, httpserver: HTTPServer, pg_url: str
) -> None:
    import json

    smtp_password, db_password = "Pa55-hunter2", "dbhunter2"
    httpserver.expect_request("/broken").respond_with_data("down", status=500)
    closed = socket.socket()  # bound, never listening: connections are refused
    closed.bind(("127.0.0.1", 0))
    smtp_port = closed.getsockname()[1]
    db_url = make_url(pg_url).set(password=db_password).render_as_string(hide_password=False)
    assert db_password in db_url
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "smtp: {timeout: 5s}\n"
        "polling: {min_interval: 1s, total_timeout: 5s, allow_private_addresses: true}\n"
        "sources:\n"
        f"  - {{name: broken, type: rss, url: '{httpserver.url_for('/broken')}'}}\n"
        "digests:\n"
        "  - {name: daily, schedule: '0 7 * * *', recipients: [reader@example.org], "
        "send_empty: true}\n",
        encoding="utf-8",
    )
    env = {
        "AGGREGATOR_DATABASE_URL": db_url,
        "AGGREGATOR_SMTP_URL": f"smtp://bot:{smtp_password}@127.0.0.1:{smtp_port}",
    }
    runs = [
        (("db", "upgrade"), 0),
        (("status",), 0),
        (("poll", "--once", "--all"), 1),
        (("digest", "send", "daily", "--now"), 1),
        (("-v", "digest", "send", "daily", "--now"), None),  # 1, or 0: retry backs off
        (("-v", "status"), 0),
        (("--log-format", "json", "status", "--json"), 0),
    ]
    try:
        results = [(args, rc, cli(cfg, *args, env=env)) for args, rc in runs]
    finally:
        closed.close()
    for args, rc, result in results:
        shown = result.stdout + result.stderr
        assert rc is None or result.returncode == rc, (args, shown)
        assert smtp_password not in shown, args
        assert db_password not in shown, args
    digest_err = results[4][2].stderr
    assert "digest daily" in digest_err  # it did try, and failed, to send
    status = json.loads(results[-1][2].stdout)
    assert "***" in status["database"]
    assert [s["last_error"] for s in status["sources"] if s["source"] == "broken"][0]
    assert status["digest_runs"] and status["digest_runs"][0]["last_error"]


# ---------------------------------------------------------------- 2d: PostgreSQL unreachable


class TcpProxy:
    """A loopback TCP forwarder to PostgreSQL that can be taken down (connections refused,
    open ones cut) and brought back on the same port: the database "unreachable for a while"."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self.lock:
            if self.listener is not None:
                # shutdown first: a bare close() leaves accept() blocked, still listening
                with contextlib.suppress(OSError):
                    self.listener.shutdown(socket.SHUT_RDWR)
                self.listener.close()
                self.listener = None
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def test_daemon_waits_out_an_unreachable_postgres_and_recovers(
    tmp_path: Path, httpserver: HTTPServer, expected_polled: dict[str, set[str]], pg_url: str
) -> None:
    """The database is down when the daemon starts, comes up, goes away again mid-run and
    comes back: one log line per failed attempt, no crash, every item stored once."""
    url = make_url(pg_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    upgrade_if_postgres(pg_url)
    slow = serve_feeds(httpserver)
    slow.set()  # a round takes a few seconds: the outage lands in the middle of one
    cfg = write_config(tmp_path / "config.yaml", httpserver)
    engine = reader(pg_url)
    log_path = tmp_path / "daemon.log"
    log_file = log_path.open("w")
    proc = start_daemon(
        cfg,
        env={"AGGREGATOR_DATABASE_URL": proxied},
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    try:
        wait_for(lambda: "retrying in" in log_path.read_text(), 30, "the start-up retry line")
        assert proc.poll() is None, "the daemon gave up while the database was down"
        proxy.up()
        stored = "SELECT count(*) FROM feeds WHERE body_hash IS NOT NULL"
        wait_for(lambda: scalar(engine, stored) >= 2, 60, "the first feeds stored")
        proxy.down()
        wait_for(
            lambda: "unavailable" in log_path.read_text().split("retrying in")[-1],
            60,
            "the daemon noticing the outage",
        )
        time.sleep(2)
        assert proc.poll() is None, "the daemon died with its database"
        slow.clear()
        proxy.up()
        wait_for(
            lambda: scalar(engine, stored) == len(POLLED),
            90,
            "every feed stored after the database came back",
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 0
        snap = snapshot(engine)
        assert {name: set(guids) for name, (_, guids) in snap.items()} == expected_polled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.down()
        log_file.close()
        engine.dispose()
    log = log_path.read_text()
    assert "Traceback" not in log, log
    assert all(re.match(LOG_LINE, line) for line in log.splitlines()), log
