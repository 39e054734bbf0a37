"""``aggregator run`` and ``import`` as a user runs them: real processes, real signals."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from conftest import FEEDS, HOSTILE
from helpers import cli, count_items, run_cli, start_daemon
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

FEED = FEEDS / "rss10-rdf-en-slashdot.xml"


def write_config(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "polling:\n  tick: 1s\n  min_interval: 1s\n  allow_private_addresses: true\n"
        f"sources:\n  - name: slashdot\n    type: rss\n    url: {url}\n",
        encoding="utf-8",
    )
    return cfg


def test_sigterm_finishes_the_fetch_in_flight_then_exits(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    in_flight = threading.Event()

    def slow(request: Request) -> Response:
        in_flight.set()
        time.sleep(2)
        return Response(FEED.read_bytes(), content_type="application/rss+xml")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    cfg = write_config(tmp_path, httpserver.url_for("/slow"))
    proc = start_daemon(cfg)
    try:
        assert in_flight.wait(30), "daemon never fetched"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err
    assert count_items(tmp_path / "newsdedup.sqlite") == 15  # the fetch in flight was finished


def test_daemon_keeps_polling_when_one_source_is_hostile(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/good").respond_with_data(FEED.read_bytes())
    httpserver.expect_request("/bomb").respond_with_data(
        (HOSTILE / "defusedxml-billion-laughs.xml").read_bytes()
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "polling:\n  tick: 1s\n  min_interval: 1s\n  allow_private_addresses: true\nsources:\n"
        f"  - {{name: bomb, type: rss, url: '{httpserver.url_for('/bomb')}'}}\n"
        f"  - {{name: good, type: rss, url: '{httpserver.url_for('/good')}'}}\n",
        encoding="utf-8",
    )
    proc = start_daemon(cfg)
    try:
        deadline = time.monotonic() + 30
        while count_items(tmp_path / "newsdedup.sqlite") < 15 and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert count_items(tmp_path / "newsdedup.sqlite") == 15
    bomb_lines = [line for line in err.splitlines() if "bomb:" in line]
    assert bomb_lines and "entity expansion" in bomb_lines[0]
    status = run_cli(cfg, "status", "--json")
    assert '"last_error": "refused: entity expansion' in status.stdout


def test_import_cli_twice_adds_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("sources: []\n", encoding="utf-8")
    files = [str(p) for p in sorted(FEEDS.glob("*.xml"))]
    first = cli(cfg, "-q", "import", *files)  # in-process: the next test runs the real one
    assert first.returncode == 0, first.stderr
    stored = count_items(tmp_path / "newsdedup.sqlite")
    assert stored > 500
    second = cli(cfg, "-q", "import", *files)
    assert second.returncode == 0
    assert all(line.endswith(", 0 new") for line in second.stdout.splitlines())
    assert count_items(tmp_path / "newsdedup.sqlite") == stored


def test_import_reports_bad_files_and_keeps_the_good(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("sources: []\n", encoding="utf-8")
    bad = HOSTILE / "nodefeedparser-html-page-not-a-feed.html"
    proc = run_cli(cfg, "-q", "import", str(bad), str(FEED), str(tmp_path / "missing.xml"))
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert "not a feed" in errors[0] and "missing.xml" in errors[1]
    assert errors[-1].endswith("2 of 3 files could not be imported")
    assert count_items(tmp_path / "newsdedup.sqlite") == 15
