"""Shared test fixtures. Fixture feeds live in ../shared (never copied into this repo)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as _hypothesis

REPO = Path(__file__).resolve().parent.parent

# A developer's own settings (AGGREGATOR_DATABASE_URL, ...) must not reach the code under test,
# in-process or in the processes tests start: each test sets what it needs.
for _name in [k for k in os.environ if k.startswith("AGGREGATOR_")]:
    del os.environ[_name]

SHARED = Path(os.environ.get("NEWSDEDUP_SHARED", REPO.parent / "shared"))
FEEDS = SHARED / "fixtures" / "feeds"
HOSTILE = FEEDS / "hostile"
SEEDS = SHARED / "seeds"

# Property-based tests: locally each run explores new examples (and keeps failures in
# .hypothesis/); in CI the examples are derived from each test, so a run is repeatable and
# a landing never hangs on a chance find (which a local run then reproduces and fixes).
_hypothesis.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis.load_profile("ci")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Without the shared fixtures half the suite would pass vacuously: stop instead."""
    for path in (FEEDS, HOSTILE, SEEDS):
        if not path.is_dir():
            raise pytest.UsageError(
                f"shared test data not found at {path}: clone next to ../shared "
                "or set NEWSDEDUP_SHARED"
            )


@pytest.fixture(autouse=True)
def _unfreeze_after() -> Iterator[None]:
    """A dedup load freezes what it made out of the cyclic collector (a daemon holds it for
    good); a test's services are dropped at its end, their cycles collectable again."""
    yield
    gc.unfreeze()


@pytest.fixture(scope="session")
def feeds_dir() -> Path:
    if not FEEDS.is_dir():
        pytest.fail(f"fixture feeds not found at {FEEDS} (set NEWSDEDUP_SHARED)")
    return FEEDS


# ---------------------------------------------------------------- databases
#
# Storage tests run on SQLite and on the real PostgreSQL (127.0.0.1:5432, trust auth,
# database `test`). Each test run creates its own database and each test its own schema, so
# runs never collide. In CI (CI=true) a missing PostgreSQL fails the run instead of skipping.

PG_ADMIN_URL = os.environ.get(
    "NEWSDEDUP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def pg_database() -> str:
    """A database of this test run's own; dropped after the run."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"newsdedup_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        _pg_unavailable(str(exc).splitlines()[0])
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    admin.dispose()
    _drop_after_the_run(name)


def _drop_after_the_run(name: str) -> None:
    """DROP DATABASE waits for a checkpoint, which writes every page the run changed: tens of
    seconds the run need not wait for. A process of its own does it, and the run ends."""
    drop = (
        "import sys, conftest, sqlalchemy; conftest.drop_database(sqlalchemy.create_engine("
        "conftest.PG_ADMIN_URL, isolation_level='AUTOCOMMIT'), sys.argv[1])"
    )
    subprocess.Popen(
        [sys.executable, "-c", drop, name],
        cwd=Path(__file__).parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def drop_database(admin, name: str) -> None:
    """Drop a PostgreSQL database, ending the connections still open to it."""
    from sqlalchemy import text

    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


def new_schema(database_url: str) -> str:
    """A fresh, empty schema in a database: its URL, the schema selected through search_path.

    Its sessions commit without waiting for the write-ahead log to reach the disk: what a
    committed transaction wrote is visible and kept just the same, only a crash of the server
    itself could lose it, and these tests never crash the server."""
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in database_url else "?"
    return f"{database_url}{sep}options=-csynchronous_commit%3Doff%20-csearch_path%3D{schema}"


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """A fresh, empty schema in the run's database."""
    return new_schema(pg_database)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.sqlite'}"


def _migrated_store(url: str):
    """A Store on the new database at ``url``, brought to the head revision; closed after."""
    from helpers import migrate

    from aggregator.store import db as store_db

    s = store_db.Store(store_db.make_engine(migrate(url)))
    yield s
    s.close()


@pytest.fixture
def sqlite_store(sqlite_url: str):
    """An empty store at the head revision, for tests that need a database, not both kinds."""
    yield from _migrated_store(sqlite_url)


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest) -> str:
    """The test's database, once SQLite and once PostgreSQL: empty, or at the head revision
    where the test takes ``store`` as well (both name the one database)."""
    from helpers import migrate

    migrated = "store" in request.fixturenames
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
        return migrate(url) if migrated else url
    return request.getfixturevalue("pg_head_url" if migrated else "pg_url")


_pg_reusable: list[str] = []


@pytest.fixture
def pg_head_url(pg_database: str):
    """A schema at the head revision, all to the test: one another test emptied, or new."""
    from helpers import empty_postgres, migrate

    url = _pg_reusable.pop() if _pg_reusable else migrate(new_schema(pg_database))
    yield url
    if empty_postgres(url):
        _pg_reusable.append(url)


@pytest.fixture
def store(db_url: str):
    """An empty store at the head revision, on each database."""
    from aggregator.store import db as store_db

    s = store_db.Store(store_db.make_engine(db_url))
    yield s
    s.close()


@pytest.fixture(scope="module", params=DATABASES)
def module_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One store per module and database, for tests that only read what a fixture put in it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('module') / 'store.sqlite'}"
    else:
        url = new_schema(request.getfixturevalue("pg_database"))
    yield from _migrated_store(url)


@pytest.fixture(scope="module")
def module_sqlite_store(tmp_path_factory: pytest.TempPathFactory):
    """The same on SQLite only."""
    yield from _migrated_store(f"sqlite:///{tmp_path_factory.mktemp('module') / 'store.sqlite'}")


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on a free port: (controller, inbox)."""
    from aiosmtpd.controller import Controller
    from helpers import Inbox, free_port

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()
