"""The command line end to end, as a user runs it (subprocesses on both databases)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from helpers import run_cli


def run(
    *args: str, db_url: str | None = None, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(config, *args, env={"AGGREGATOR_DATABASE_URL": db_url} if db_url else None)


def test_db_upgrade_then_status(db_url: str) -> None:
    first = run("db", "upgrade", db_url=db_url)
    assert first.returncode == 0, first.stderr
    assert "upgraded (empty) -> " in first.stdout
    again = run("db", "upgrade", db_url=db_url)
    assert again.returncode == 0 and "already at revision" in again.stdout
    status = run("status", "--json", db_url=db_url)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    names = {s["source"] for s in data["sources"]}
    assert {"it-boltwise", "google-news-ki", "bing-news-ai", "heise"} <= names
    table = run("status", db_url=db_url)
    assert table.returncode == 0 and "it-boltwise" in table.stdout
    assert data["clustering"] is None and "clustering:" not in table.stdout  # nobody yet

    # a daemon that clusters holds the lease; status names it
    from datetime import UTC, datetime

    from aggregator.coordination import claim_clustering, lock_epoch
    from aggregator.store import open_store

    store = open_store(db_url)
    try:
        with store.session() as s:
            now = datetime.now(UTC)
            lock_epoch(s, now)
            assert claim_clustering(s, "host-a:4242", now, 600)
    finally:
        store.close()
    data = json.loads(run("status", "--json", db_url=db_url).stdout)
    assert data["clustering"]["holder"] == "host-a:4242"
    assert "clustering: daemon host-a:4242 (lease until " in run("status", db_url=db_url).stdout


def test_commands_refuse_a_database_without_schema(pg_url: str) -> None:
    proc = run("status", db_url=pg_url)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("run `aggregator db upgrade`")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_status_password_is_redacted(pg_url: str) -> None:
    url = pg_url.replace("postgres@", "postgres:topsecret@")
    run("db", "upgrade", db_url=url)
    proc = run("status", "--json", db_url=url)
    assert proc.returncode == 0, proc.stderr
    assert "topsecret" not in proc.stdout + proc.stderr


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    proc = run("status", db_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unavailable" in proc.stderr and "Traceback" not in proc.stderr


def test_first_run_on_fresh_sqlite_just_works(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text((REPO / "config.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    proc = run("items", "--format", "jsonl", config=cfg)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert (tmp_path / "newsdedup.sqlite").exists()


def test_verbose_shows_traceback_quiet_does_not(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("nonsense: 1\n", encoding="utf-8")
    plain = run("status", config=bad)
    verbose = run("-v", "status", config=bad)
    assert "Traceback" not in plain.stderr and "nonsense: unknown key" in plain.stderr
    assert "Traceback" in verbose.stderr


def test_python_m_and_console_script_agree() -> None:
    exe = Path(sys.executable).with_name("aggregator")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for name in [
        "run",
        "poll",
        "import",
        "db",
        "status",
        "items",
        "clusters",
        "why",
        "cluster-file",
        "eval",
        "digest",
        "export",
        "opml",
    ]:
        assert name in proc.stdout
