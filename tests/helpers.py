"""What several test files need alike, one behaviour each: a config for polling local
servers, mirroring its sources, a poll round, a store filled from fixture feeds, and the
command line both in-process and as the real process a user starts."""

from __future__ import annotations

import atexit
import contextlib
import email
import email.policy
import io
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple

from conftest import FEEDS, REPO
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from aggregator.cli import main
from aggregator.config import Config
from aggregator.dedup.service import DedupService
from aggregator.fetcher import Fetcher
from aggregator.importer import import_file
from aggregator.poller import PollOutcome, fetch_settings, poll_round
from aggregator.store import Store, repo
from aggregator.store import db as store_db
from aggregator.store.models import Base

AGGREGATOR = [sys.executable, "-m", "aggregator"]

# Feeds are served on loopback by the test, so private addresses are allowed; the short
# timeouts keep a test that goes wrong from hanging.
POLLING = {
    "min_interval": "1s",
    "aggregator_min_interval": "1s",
    "total_timeout": "5s",
    "read_timeout": "2s",
    "allow_private_addresses": True,
}


def make_config(
    sources: Sequence[Mapping[str, object]] = (),
    *,
    digests: Sequence[Mapping[str, object]] = (),
    **polling: object,
) -> Config:
    """A config polling ``sources`` with POLLING, overridden by ``polling``."""
    return Config.model_validate(
        {"polling": POLLING | polling, "sources": list(sources), "digests": list(digests)}
    )


def sync(store: Store, cfg: Config) -> None:
    with store.session() as s:
        repo.sync_sources(s, cfg.sources, datetime.now(UTC))


def poll(
    store: Store, cfg: Config, *, all_feeds: bool = True, owner: str = "test"
) -> list[PollOutcome]:
    with Fetcher(fetch_settings(cfg)) as fetcher:
        return poll_round(store, cfg, fetcher, owner=owner, all_feeds=all_feeds)


def fill(store: Store, names: Sequence[str], cfg: Config | None = None) -> None:
    """Import fixture feeds (each must import cleanly), then cluster them."""
    cfg = cfg or Config()
    for name in names:
        assert import_file(store, cfg, FEEDS / name).error is None, name
    DedupService(store).process_pending()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``cond`` until it holds; a slow machine makes a test slower, never flaky."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def count_items(db: Path) -> int:
    """Items in a SQLite file; 0 while the file or its schema does not exist yet."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM items").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


# ---------------------------------------------------------------- the command line
#
# conftest removes the developer's own AGGREGATOR_* variables, so both forms see the test's
# environment plus ``env``.


@contextlib.contextmanager
def _environ(env: Mapping[str, str] | None) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _argv(config: Path | None, args: Sequence[str]) -> list[str]:
    return ["--config", str(config or REPO / "config.yaml"), *args]


class Ran(NamedTuple):
    """What a command left: the fields of subprocess.CompletedProcess, and a tuple."""

    returncode: int
    stdout: str
    stderr: str


def cli(config: Path | None, *args: str, env: Mapping[str, str] | None = None) -> Ran:
    """``aggregator --config CONFIG *args`` in-process (None: the repository's config.yaml).

    Where a test is about what the command does rather than about the process (signals,
    being killed, the real entry point), this is the same code path without a second of
    interpreter start-up."""
    out, err = io.StringIO(), io.StringIO()
    with _environ(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(_argv(config, args), out=out)
    return Ran(code, out.getvalue(), err.getvalue())


def process_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(env or {})}


def run_cli(
    config: Path | None, *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """The same as a user runs it: ``python -m aggregator`` in a process of its own."""
    return subprocess.run(
        [*AGGREGATOR, *_argv(config, args)],
        env=process_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def spawn(
    config: Path | None,
    *args: str,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[str] | None = subprocess.PIPE,
    stderr: int | IO[str] | None = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """The same, started and not waited for."""
    return subprocess.Popen(
        [*AGGREGATOR, *_argv(config, args)],
        env=process_env(env),
        stdout=stdout,
        stderr=stderr,
        text=True,
    )


def start_daemon(
    config: Path,
    *,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[str] | None = subprocess.PIPE,
    stderr: int | IO[str] | None = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """``aggregator run`` in a process of its own."""
    return spawn(config, "run", env=env, stdout=stdout, stderr=stderr)


# ---------------------------------------------------------------- digests

DIGEST_FEEDS = [
    "google-news-en-us-search-1.xml",
    "bing-news-en-us-search-2.xml",
    "wordpress-de-anime2you-news.xml",
]


def digest_config(port: int, **digest: object) -> Config:
    """One daily digest mailed through the SMTP server on ``port``."""
    return Config.model_validate(
        {
            "sources": [],
            "digests": [
                {
                    "name": "daily",
                    "schedule": "0 7 * * *",
                    "timezone": "Europe/Berlin",
                    "recipients": ["leser@example.org"],
                    "max_entries": 30,
                    **digest,
                }
            ],
            "smtp": {"host": "127.0.0.1", "port": port, "sender": "Nachrichten <news@example.org>"},
        }
    )


class Inbox:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self, on_data: Callable[[], None] | None = None) -> None:
        self.messages: list[bytes] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.on_data = on_data
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        with self.lock:
            self.messages.append(envelope.original_content or envelope.content)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.on_data is not None:
            self.on_data()
        return "250 OK"


def parse_mail(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


# ---------------------------------------------------------------- migrated databases
#
# Running the migrations costs more than most storage tests. The first database of a run is
# migrated for real; later ones get a copy of the result: the SQLite file, or on PostgreSQL
# the statements the migrations executed, replayed into the new schema. A PostgreSQL schema a
# test is done with is emptied for the next one (creating and dropping a schema's tables
# costs more still). tests/test_store.py runs the migrations themselves on every database.

_sqlite_template: Path | None = None


@dataclass(frozen=True)
class _Statement:
    sql: str
    parameters: object
    many: bool
    bare: bool  # executed without parameters (no placeholders to fill)

    @property
    def writes_rows(self) -> bool:
        words = self.sql.split(None, 3)
        return (
            words[0].upper() in ("INSERT", "UPDATE", "DELETE")
            and "alembic_version" not in (words[1:3])
        )

    def execute(self, cursor) -> None:  # noqa: ANN001
        if self.many:
            cursor.executemany(self.sql, self.parameters)
        elif self.bare and not self.parameters:
            cursor.execute(self.sql)
        else:
            cursor.execute(self.sql, self.parameters)


@dataclass(frozen=True)
class _PostgresHead:
    """What the migrations did to the run's first PostgreSQL schema, and what they left."""

    statements: list[_Statement]
    fingerprint: str


_pg_head: _PostgresHead | None = None

# Every table, column, index, constraint and relation of the current schema, and its revision.
_FINGERPRINT = """
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT format('column %s.%s %s %s %s', table_name, column_name, data_type, is_nullable,
                column_default) AS line
    FROM information_schema.columns WHERE table_schema = current_schema()
  UNION ALL
  SELECT 'index ' || replace(indexdef, current_schema() || '.', '')
    FROM pg_indexes WHERE schemaname = current_schema()
  UNION ALL
  SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
    FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
  UNION ALL
  SELECT format('relation %s %s', relname, relkind)
    FROM pg_class WHERE relnamespace = current_schema()::regnamespace
  UNION ALL
  SELECT 'revision ' || version_num FROM alembic_version
) AS schema
"""


def migrate(url: str) -> str:
    """Bring the new, empty database at ``url`` to the head revision; returns ``url``."""
    engine = store_db.make_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            _migrate_sqlite(engine, Path(engine.url.database or ""))
        else:
            _migrate_postgres(engine)
    finally:
        engine.dispose()
    return url


def _migrate_sqlite(engine: Engine, path: Path) -> None:
    global _sqlite_template
    assert not path.exists() or path.stat().st_size == 0, f"{path} is not new"
    if _sqlite_template is not None:
        shutil.copyfile(_sqlite_template, path)
        return
    store_db.upgrade(engine)
    engine.dispose()  # the last connection checkpoints the write-ahead log into the file
    assert not Path(f"{path}-wal").exists()
    template = Path(tempfile.mkdtemp(prefix="newsdedup-template-")) / "head.sqlite"
    shutil.copyfile(path, template)
    atexit.register(shutil.rmtree, template.parent, True)
    _sqlite_template = template


def _migrate_postgres(engine: Engine) -> None:
    global _pg_head
    if _pg_head is None:
        recorded: list[_Statement] = []

        def record(conn, cursor, sql, parameters, context, many) -> None:  # noqa: ANN001, ARG001
            if not sql.lstrip().upper().startswith("SELECT"):  # reads change nothing
                recorded.append(_Statement(sql, parameters, many, context.no_parameters))

        event.listen(engine, "before_cursor_execute", record)
        store_db.upgrade(engine)
        event.remove(engine, "before_cursor_execute", record)
        with engine.connect() as conn:
            _pg_head = _PostgresHead(recorded, conn.execute(text(_FINGERPRINT)).scalar_one())
        return
    conn = engine.raw_connection()
    try:
        cursor = conn.cursor()
        for statement in _pg_head.statements:
            statement.execute(cursor)
        cursor.execute(_FINGERPRINT)
        assert cursor.fetchone()[0] == _pg_head.fingerprint
        conn.commit()
    finally:
        conn.close()


def empty_postgres(url: str) -> bool:
    """Empty a schema ``migrate`` brought to the head revision, for another test: its rows
    as the migrations left them, its sequences at their start. False where that cannot be
    promised (the test changed the schema, or left a lock on it): then it is not reused."""
    if _pg_head is None:
        return False
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '2s'"))
            if conn.execute(text(_FINGERPRINT)).scalar_one() != _pg_head.fingerprint:
                return False
            tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
            if tables != set(Base.metadata.tables):
                return False
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
            sequences = "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
            for name in conn.execute(text(sequences)).scalars():
                conn.execute(text("SELECT setval(quote_ident(:name), 1, false)"), {"name": name})
            cursor = conn.connection.dbapi_connection.cursor()
            for statement in _pg_head.statements:  # the rows the migrations wrote
                if statement.writes_rows:
                    statement.execute(cursor)
        return True
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()
