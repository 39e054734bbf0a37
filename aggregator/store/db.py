"""Engines, the schema check and `db upgrade`.

Every command except ``db upgrade`` opens the store through :func:`open_store`, which refuses
an out-of-date schema and names the command that fixes it. The one exception: a brand-new
SQLite file is created at the head revision, so the first run just works. The check reads the
revisions itself; alembic is imported only to migrate.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from ..errors import SchemaError, StoreError
from ..redact import redact_url

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
VERSION_TABLE = "alembic_version"
_REVISION_LINE = re.compile(r"^(revision|down_revision)\b[^=\n]*=(.*)$", re.MULTILINE)


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


def _require_migrations() -> None:
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise StoreError(f"migrations not found at {MIGRATIONS_DIR} (install the project with -e)")


def alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    _require_migrations()
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The revision no migration script names as its ``down_revision``.

    Read from the scripts' assignment lines rather than by alembic, which imports itself and
    every script: the schema check before each command needs no more than this.
    """
    _require_migrations()
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = {
            name: ast.literal_eval(value.strip())
            for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8"))
        }
        if "revision" not in found:
            continue
        revisions.add(found["revision"])
        down = found.get("down_revision")
        parents.update([down] if isinstance(down, str) else down or ())
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise StoreError(f"migrations at {MIGRATIONS_DIR} have {len(heads)} heads: {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision alembic recorded in the database; None if it recorded none."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(found) > 1:
        raise SchemaError(
            f"database {redact_url(str(engine.url))} records {len(found)} schema revisions "
            f"({', '.join(found)}), this version needs one"
        )
    return found[0] if found else None


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply all migrations; returns (revision before, revision after)."""
    from alembic import command

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
    """An engine plus a session factory; the single handle commands pass around.

    The session factory (and with it ``sqlalchemy.orm``) is made at the first
    :meth:`session`: the commands that only read use :meth:`connect` and the Core tables of
    :mod:`.tables`, and start without the ORM.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            from sqlalchemy.orm import sessionmaker

            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        return self._sessions

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A Core transaction, like :meth:`session` without the ORM: committed on success,
        rolled back on error (a lost database wrapped in StoreError)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise StoreError(f"database error: {_first_line(exc)}") from exc

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


def database_size(store: Store) -> int | None:
    """Bytes on disk: the SQLite file with its WAL, or ``pg_database_size``."""
    if store.dialect == "sqlite":
        name = store.engine.url.database
        if not name or name == ":memory:":
            return None
        path = Path(name)
        return sum(p.stat().st_size for p in (path, Path(f"{name}-wal")) if p.exists())
    with store.connect() as conn:
        return int(conn.scalar(text("SELECT pg_database_size(current_database())")) or 0)


def open_store(url: str, *, check: bool = True) -> Store:
    engine = make_engine(url)
    if check:
        try:
            check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
    return Store(engine)
