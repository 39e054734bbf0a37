"""Engines, the schema check and `db upgrade`.

Every command except ``db upgrade`` opens the store through :func:`open_store`, which refuses
an out-of-date schema and names the command that fixes it. The one exception: a brand-new
SQLite file is created at the head revision, so the first run just works.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import SchemaError, StoreError
from ..redact import redact_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StoreError(f"invalid database URL {redact_url(repr(url))}") from None
    try:
        # JSON is read with orjson (the held items' terms, decoded at every start-up) and
        # written by the standard library, so what is stored stays text of one form.
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(
                url, connect_args={"timeout": 30}, json_deserializer=orjson.loads
            )
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(
                url,
                pool_pre_ping=True,
                pool_size=8,
                max_overflow=8,
                json_deserializer=orjson.loads,
            )
    except (ArgumentError, ImportError) as exc:
        raise StoreError(redact_url(f"cannot use database URL {parsed}: {exc}")) from exc
    return engine


def alembic_config(url: str) -> AlembicConfig:
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise StoreError(f"migrations not found at {MIGRATIONS_DIR} (install the project with -e)")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply all migrations; returns (revision before, revision after)."""
    try:
        before = current_revision(engine)
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return before, head_revision()
    except OperationalError as exc:
        raise StoreError(
            redact_url(f"database {engine.url} unavailable: {_first_line(exc)}")
        ) from exc


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def _is_new_sqlite(engine: Engine) -> bool:
    if engine.dialect.name != "sqlite":
        return False
    db = engine.url.database
    if not db or db == ":memory:":
        return True
    path = Path(db)
    return not path.exists() or path.stat().st_size == 0


def check_schema(engine: Engine, *, create_if_new: bool = True) -> None:
    """Raise SchemaError unless the database is at the head revision."""
    head = head_revision()
    new_sqlite = create_if_new and _is_new_sqlite(engine)
    try:
        current = current_revision(engine)
        if current is None and new_sqlite and not inspect(engine).get_table_names():
            log.info("creating new SQLite database at %s", engine.url.database)
            upgrade(engine)
            return
    except OperationalError as exc:
        raise StoreError(
            redact_url(f"database {engine.url} unavailable: {_first_line(exc)}")
        ) from exc
    if current == head:
        return
    if current is None:
        raise SchemaError(
            f"database {redact_url(str(engine.url))} has no newsdedup schema: "
            "run `aggregator db upgrade`"
        )
    raise SchemaError(
        f"database schema is at revision {current}, this version needs {head}: "
        "run `aggregator db upgrade`"
    )


class Store:
    """An engine plus a session factory; the single handle commands pass around."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error (wrapped in StoreError)."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except OperationalError as exc:
                session.rollback()
                raise StoreError(f"database error: {_first_line(exc)}") from exc
            except SQLAlchemyError:
                session.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str, *, check: bool = True) -> Store:
    engine = make_engine(url)
    if check:
        try:
            check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
    return Store(engine)
