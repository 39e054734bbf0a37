"""Soak: the daemon against a local server whose feeds change every round, for N minutes.

    python benchmarks/soak.py [--minutes 10] [--feeds 12] [--round-s 5]

A threaded HTTP server on 127.0.0.1 serves ``--feeds`` RSS feeds. Every ``--round-s`` seconds
each feed gains a new item (own generated text), sometimes an old item is edited (same guid,
new title), and some rounds a feed answers 500, 429 with Retry-After, or garbage. The daemon
(``aggregator run`` as a subprocess, SQLite in a temporary directory) polls them; every 10 s
its resident memory, open files and threads are sampled from /proc. At the end the server stops
adding items, the daemon gets time to catch up, is stopped with SIGTERM, and the script checks
that every item ever served is stored exactly once. Prints the figures; exits 1 on a loss.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WORDS = [
    "Hafen",
    "Brücke",
    "Stadtrat",
    "Wahl",
    "Energie",
    "Netz",
    "Bahn",
    "Streik",
    "Schule",
    "Klinik",
    "Forschung",
    "Satellit",
    "council",
    "harbour",
    "bridge",
    "election",
    "grid",
    "railway",
    "strike",
    "school",
    "hospital",
    "research",
    "launch",
]


class Feeds:
    def __init__(self, n: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.items: list[list[dict[str, str]]] = [[] for _ in range(n)]
        self.served: set[str] = set()
        self.fault: list[str | None] = [None] * n
        self.lock = threading.Lock()
        self.round = 0

    def advance(self) -> None:
        with self.lock:
            self.round += 1
            now = datetime.now(UTC)
            for k, items in enumerate(self.items):
                words = " ".join(self.rng.choice(WORDS) for _ in range(40))
                items.append(
                    {
                        "guid": f"soak-{k}-{self.round}",
                        "title": f"Meldung {self.round} aus Quelle {k}: {self.rng.choice(WORDS)}",
                        "body": words,
                        "date": format_datetime(now),
                    }
                )
                del items[:-20]
                if len(items) > 3 and self.rng.random() < 0.2:
                    items[0]["title"] += " (aktualisiert)"
                r = self.rng.random()
                self.fault[k] = (
                    "500" if r < 0.05 else "429" if r < 0.08 else ("garbage" if r < 0.10 else None)
                )

    def document(self, k: int) -> tuple[int, bytes, dict[str, str]]:
        with self.lock:
            fault = self.fault[k]
            if fault == "500":
                return 500, b"oops", {}
            if fault == "429":
                return 429, b"slow down", {"Retry-After": "3"}
            if fault == "garbage":
                return 200, bytes(self.rng.randrange(256) for _ in range(2000)), {}
            entries = "".join(
                f"<item><title>{it['title']}</title><link>http://soak.example/{it['guid']}</link>"
                f'<guid isPermaLink="false">{it["guid"]}</guid><pubDate>{it["date"]}</pubDate>'
                f"<description>{it['body']}</description></item>"
                for it in self.items[k]
            )
            self.served.update(it["guid"] for it in self.items[k])
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>Soak {k}</title><link>http://soak.example/{k}</link>{entries}"
            "</channel></rss>"
        ).encode()
        return 200, body, {"Content-Type": "application/rss+xml"}


def serve(feeds: Feeds) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            try:
                k = int(self.path.rsplit("/", 1)[1].split(".")[0])
            except (ValueError, IndexError):
                self.send_error(404)
                return
            status, body, headers = feeds.document(k)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sample(pid: int) -> tuple[int, int, int, int]:
    """(resident KiB, open files, threads, anonymous resident KiB) of a process, from /proc.

    Anonymous memory is the heap; the rest of VmRSS is file pages (libraries, SQLite's
    memory-mapped WAL index) that the kernel can drop, reported apart so a leak is not
    confused with pages of a growing database file."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = int(fields["VmRSS"].split()[0])
    anon_kib = int(fields.get("RssAnon", fields["VmRSS"]).split()[0])
    threads = int(fields["Threads"])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kib, fds, threads, anon_kib


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--feeds", type=int, default=12)
    ap.add_argument("--round-s", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--window", default=None, help="dedup windows (e.g. 2m), so retention is reached in the run"
    )
    args = ap.parse_args()

    feeds = Feeds(args.feeds, args.seed)
    feeds.advance()
    server = serve(feeds)
    port = server.server_address[1]
    work = Path(tempfile.mkdtemp(prefix="newsdedup-soak-"))
    sources = "".join(
        f"  - {{name: soak-{k}, type: rss, url: 'http://127.0.0.1:{port}/feed/{k}.xml'}}\n"
        for k in range(args.feeds)
    )
    (work / "config.yaml").write_text(
        "polling: {tick: 1s, min_interval: 2s, max_interval: 10s, workers: 4, "
        "allow_private_addresses: true}\n"
        + (
            f"dedup: {{duplicate_window: {args.window}, story_window: {args.window}, "
            f"thread_window: {args.window}}}\n"
            if args.window
            else ""
        )
        + f"sources:\n{sources}",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    log = (work / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(work / "config.yaml"), "run"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    samples: list[tuple[float, int, int, int, int]] = []
    started = time.monotonic()
    end = started + args.minutes * 60
    next_round = started + args.round_s
    next_sample = started + 5
    try:
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_round:
                feeds.advance()
                next_round += args.round_s
            if now >= next_sample:
                samples.append((now - started, *sample(proc.pid)))
                next_sample += 10
            if proc.poll() is not None:
                print("daemon exited early; see", work / "daemon.log")
                return 1
            time.sleep(0.2)
        # stop changing; no faults; let the daemon poll everything once more
        with feeds.lock:
            feeds.fault = [None] * args.feeds
        time.sleep(25)
        samples.append((time.monotonic() - started, *sample(proc.pid)))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        server.shutdown()
        log.close()

    with sqlite3.connect(work / "newsdedup.sqlite") as db:
        stored = [g for (g,) in db.execute("SELECT guid FROM items")]
        errors = db.execute("SELECT count(*) FROM poll_log WHERE error IS NOT NULL").fetchone()[0]
        polls = db.execute("SELECT count(*) FROM poll_log").fetchone()[0]
        clustered = db.execute("SELECT count(*) FROM items WHERE dedup_state = 'done'").fetchone()[
            0
        ]
    missing = feeds.served - set(stored)
    dupes = len(stored) - len(set(stored))
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    peak = max(s[1] for s in samples)
    print(
        f"duration            {args.minutes:.1f} min, {args.feeds} feeds, "
        f"round every {args.round_s:.0f} s"
    )
    print(f"polls               {polls} ({errors} failed: served 500/429/garbage)")
    print(f"items served        {len(feeds.served)}")
    print(
        f"items stored        {len(stored)} (missing {len(missing)}, duplicates {dupes}, "
        f"clustered {clustered})"
    )
    print(
        f"resident memory     {first[1] / 1024:.1f} MiB at {first[0]:.0f}s -> "
        f"{last[1] / 1024:.1f} MiB at {last[0]:.0f}s (peak {peak / 1024:.1f} MiB)"
    )
    timeline = " ".join(f"{s[1] / 1024:.0f}" for s in samples[::6])
    print(f"memory every minute {timeline} MiB")
    anon = " ".join(f"{s[4] / 1024:.0f}" for s in samples[::6])
    print(f"  of it anonymous   {anon} MiB")
    # the trend once warmed up: the last third against the middle third
    third = len(samples) // 3
    if third >= 6:
        mid = sum(s[1] for s in samples[third : 2 * third]) / third / 1024
        end_ = sum(s[1] for s in samples[2 * third : 3 * third]) / third / 1024
        per_min = (end_ - mid) / (third * 10 / 60)
        print(
            f"memory trend        middle third {mid:.1f} MiB, last third {end_:.1f} MiB "
            f"({per_min:+.2f} MiB/min)"
        )
    print(f"open files          {first[2]} -> {last[2]}")
    print(f"threads             {first[3]} -> {last[3]}")
    print(f"daemon exit code    {code}")
    print(f"work dir            {work}")
    ok = not missing and dupes == 0 and code == 0 and clustered == len(stored)
    print("RESULT              " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
