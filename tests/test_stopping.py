"""Stopping ``aggregator run`` with Ctrl-C while a fetch stalls: a real process, real signals,
a local server that accepts the request and never answers."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

from conftest import FEEDS
from helpers import count_items, start_daemon
from pytest_httpserver import HTTPServer

FEED = FEEDS / "rss10-rdf-en-slashdot.xml"


class StallingServer:
    """Accepts connections, reads the request and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requested = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.recv(65536)
            self.requested.set()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


class Lines:
    """stderr of a process, line by line as it comes, with the time each arrived."""

    def __init__(self, stream) -> None:  # noqa: ANN001
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:  # noqa: ANN001
        for line in stream:
            with self._cond:
                self.lines.append((time.monotonic(), line))
                self._cond.notify_all()

    def wait_for(self, text: str, timeout_s: float) -> float | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for at, line in self.lines:
                    if text in line:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def text(self) -> str:
        return "".join(line for _, line in self.lines)


def test_second_ctrl_c_quits_a_stalled_fetch_promptly_keeping_stored_items(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/good").respond_with_data(
        FEED.read_bytes(), content_type="application/rss+xml"
    )
    stall = StallingServer()
    cfg = tmp_path / "config.yaml"
    # the stalled feed is polled a little later, once the good one is stored
    cfg.write_text(
        "polling:\n  tick: 1s\n  min_interval: 1s\n  workers: 1\n"
        "  read_timeout: 60s\n  total_timeout: 120s\n  allow_private_addresses: true\n"
        "sources:\n"
        f"  - name: good\n    type: rss\n    url: {httpserver.url_for('/good')}\n"
        f"  - name: stalled\n    type: rss\n    url: http://127.0.0.1:{stall.port}/feed\n",
        encoding="utf-8",
    )
    proc = start_daemon(cfg, stdout=subprocess.DEVNULL)
    err = Lines(proc.stderr)
    try:
        assert stall.requested.wait(60), "the daemon never fetched the stalling feed\n" + err.text()
        db = tmp_path / "newsdedup.sqlite"
        deadline = time.monotonic() + 30
        while count_items(db) < 15 and time.monotonic() < deadline:
            time.sleep(0.2)
        stored = count_items(db)
        assert stored == 15, err.text()

        assert "started: 2 sources with 2 feeds to poll" in err.text()
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        seen_at = err.wait_for("stopping: waiting for 1 fetch (Ctrl-C again to quit now)", 5)
        assert seen_at is not None, err.text()
        assert seen_at - sent_at < 2.0
        assert proc.poll() is None  # still waiting for the stalled fetch

        sent_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert time.monotonic() - sent_at < 3.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stall.close()
    assert proc.returncode == 130, err.text()
    assert "quitting now: 1 fetch abandoned" in err.text()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert count_items(db) == stored
