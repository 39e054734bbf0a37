"""Commands start with only the modules they use (benchmarks/command_start.py times them).

The clustering stack (datasketch pulls in scipy and numpy; numba its LLVM binding) costs most
of a second of imports, alembic with mako and every dialect another quarter: a command that
only reads the store loads neither, nor the fetching, parsing, rendering and metrics
libraries, nor the ORM (it queries the Core tables). ``--help`` loads no config or database
code at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.store import db as store_db

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import io, json, sys
from aggregator.cli import main
try:
    code = main(sys.argv[1:], out=io.StringIO())
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

CLUSTERING = {
    "datasketch",
    "scipy",
    "numpy",
    "numba",
    "llvmlite",
    "aggregator.dedup.bandindex",
    "aggregator.dedup.engine",
    "aggregator.dedup.service",
}
SCHEMA_MIGRATION = {"alembic", "mako"}
FETCHING = {"httpx", "feedparser", "lxml", "aggregator.fetcher", "aggregator.parser"}
RENDERING = {"jinja2", "aggregator.render"}
METRICS = {"prometheus_client", "aggregator.metrics"}
NOT_WHEN_READING = CLUSTERING | SCHEMA_MIGRATION | FETCHING | RENDERING | METRICS
# the read commands query the Core tables: no mappers to build (issue 22)
ORM = {"sqlalchemy.orm", "aggregator.store.models"}
CONFIG_AND_STORE = {"sqlalchemy", "pydantic", "yaml", "aggregator.config", "aggregator.store"}

CONFIG = """\
database: {{url: 'sqlite:///{db}'}}
sources:
  - name: blog
    type: rss
    url: https://blog.example.org/feed/
digests:
  - name: daily
    schedule: '0 7 * * *'
    recipients: [me@example.org]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose SQLite database is already migrated (a new file would be created at
    the head revision through alembic, once)."""
    db = tmp_path / "db.sqlite"
    engine = store_db.make_engine(f"sqlite:///{db}")
    store_db.upgrade(engine)
    engine.dispose()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=db), encoding="utf-8")
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter, the database and config named by the arguments alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=120, cwd=REPO, env=env
    )


def loaded(config: Path, *args: str) -> tuple[int, set[str]]:
    """Run a command in a fresh interpreter: its exit code and every module it imported."""
    proc = run("-c", PROBE, "--config", str(config), *args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def _among(modules: set[str], names: set[str]) -> set[str]:
    """Which of ``names`` (packages or modules) were imported."""
    return {n for n in names if n in modules}


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["items", "--format", "jsonl"],
        ["clusters"],
        ["sources", "list"],
        ["sources", "list", "--json"],
    ],
)
def test_commands_that_read_the_store_import_nothing_else(config: Path, args: list[str]) -> None:
    code, modules = loaded(config, *args)
    assert code == 0
    assert "aggregator.store.tables" in modules  # the probe sees what the command did
    assert _among(modules, NOT_WHEN_READING | ORM) == set()


def test_digest_preview_renders_without_clustering_or_fetching(config: Path) -> None:
    code, modules = loaded(config, "digest", "preview", "daily")
    assert code == 0
    assert "jinja2" in modules
    assert _among(modules, CLUSTERING | SCHEMA_MIGRATION | FETCHING | METRICS) == set()


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["status", "--help"]])
def test_help_loads_no_config_or_database_code(config: Path, args: list[str]) -> None:
    code, modules = loaded(config, *args)
    assert code == 0
    assert _among(modules, NOT_WHEN_READING | CONFIG_AND_STORE) == set()


def test_an_old_schema_is_refused_without_alembic(config: Path, tmp_path: Path) -> None:
    engine = store_db.make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'old0'")
    engine.dispose()
    proc = run("-m", "aggregator", "--config", str(config), "status")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"aggregator: error: database schema is at revision old0, this version needs "
        f"{store_db.head_revision()}: run `aggregator db upgrade`"
    )
    code, modules = loaded(config, "status")
    assert code == 1
    assert _among(modules, SCHEMA_MIGRATION) == set()
