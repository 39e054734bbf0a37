"""Soak: the daemon against a local server whose feeds change every round, for N minutes.

    python benchmarks/soak.py [--minutes 10] [--feeds 12] [--round-s 5] [--year]

A threaded HTTP server on 127.0.0.1 serves ``--feeds`` RSS feeds. Every ``--round-s`` seconds
each feed gains a new item (own generated text), sometimes an old item is edited (same guid,
new title), and some rounds a feed answers 500, 429 with Retry-After, or garbage. The daemon
(``aggregator run`` as a subprocess, SQLite in a temporary directory) polls them; every 10 s
its resident memory, open files and threads are sampled from /proc. At the end the server stops
adding items, the daemon gets time to catch up, is stopped with SIGTERM, and the script checks
that every item ever served is stored exactly once. Prints the figures; exits 1 on a loss.

``--year`` (with ``--window``) runs what a year does in minutes: edited entries (same guid,
new headline and text) every round, feeds that move (301, followed for good) or redirect for
a while (302, not followed for good), retention with short periods so pruning happens, and a
digest every minute to a local SMTP server. Then a served item counts when it is stored or
was pruned (``pruned_totals``), and the checks add: the edited versions stored, moved feeds
polled at their new URL, temporarily redirected ones at their old one, every item a live
cluster or an unsent digest names still there, and no digest sent twice. Rows, file size
and memory are sampled every 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
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
        self.moved: set[int] = set()  # answers 301 to /moved/k.xml
        self.redirected: set[int] = set()  # answers 302 to /temp/k.xml for now
        self.titles: dict[str, str] = {}  # guid -> latest served title
        self.year = False
        self.lock = threading.Lock()
        self.round = 0

    def advance(self) -> None:
        with self.lock:
            self.round += 1
            now = datetime.now(UTC)
            for k, items in enumerate(self.items):
                words = " ".join(self.rng.choice(WORDS) for _ in range(40))
                if self.year:  # three stories a round, each told by a third of the feeds
                    story = random.Random(self.round * 7 + k % 3)
                    vocab = ["".join(story.choices("bdfgklmnprstvz", k=7)) for _ in range(30)]
                    words = " ".join(story.choice(vocab) for _ in range(60)) + " " + words[:80]
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
                if self.year and len(items) > 5 and self.rng.random() < 0.3:
                    edited = items[self.rng.randrange(len(items) - 1)]
                    edited["title"] = f"{edited['title'].split(' [')[0]} [Update {self.round}]"
                    edited["body"] += " " + " ".join(self.rng.choice(WORDS) for _ in range(8))
                if self.year and self.round % 40 == 0 and k % 4 == 0:
                    self.moved.add(k)
                if self.year and k % 4 == 1:
                    if self.round % 30 == 0:
                        self.redirected.add(k)
                    elif self.round % 30 == 10:
                        self.redirected.discard(k)
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
            self.titles.update((it["guid"], it["title"]) for it in self.items[k])
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
            first = self.path.split("/")[1]
            with feeds.lock:
                moved, redirected = k in feeds.moved, k in feeds.redirected
            if first == "feed" and (moved or redirected):
                self.send_response(301 if moved else 302)
                self.send_header("Location", f"/{'moved' if moved else 'temp'}/{k}.xml")
                self.send_header("Content-Length", "0")
                self.end_headers()
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


TABLES = ("items", "poll_log", "signatures", "cluster_members", "clusters", "digest_runs")


def table_rows(path: Path) -> tuple[dict[str, int], int]:
    """Rows per growing table (a read-only connection of its own) and the bytes on disk."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            rows = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608
    except sqlite3.Error:
        rows = {}
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return rows, size


def year_report(
    path: Path,
    feeds: Feeds,
    growth: list[tuple[float, dict[str, int], int]],
    mails: list[bytes],
    pruned_items: int,
) -> bool:
    """Print the growth timeline and check edits, moves, retention and digests."""
    print("rows and size every 3 minutes (after pruning starts they should stay flat):")
    print("  t(s)  " + " ".join(f"{t:>15}" for t in TABLES) + "   file MiB")
    for t, rows, size in growth[::18] + growth[-1:]:
        cells = " ".join(f"{rows.get(tb, -1):>15}" for tb in TABLES)
        print(f"  {t:5.0f} {cells}   {size / 2**20:8.2f}")
    with sqlite3.connect(path) as db:
        titles = dict(db.execute("SELECT guid, title FROM items"))
        updated = db.execute("SELECT count(*) FROM items WHERE update_count > 0").fetchone()[0]
        urls = dict(db.execute("SELECT url, moved_from FROM feeds WHERE kind = 'main'"))
        orphans = db.execute(
            "SELECT count(*) FROM cluster_members m LEFT JOIN items i ON i.id = m.item_id "
            "WHERE i.id IS NULL"
        ).fetchone()[0]
        unsent = [
            json.loads(ids)
            for (ids,) in db.execute(
                "SELECT e.item_ids FROM digest_entries e JOIN digest_runs r ON r.id = e.run_id "
                "WHERE r.status IN ('pending', 'failed')"
            )
        ]
        runs = dict(db.execute("SELECT status, count(*) FROM digest_runs GROUP BY status"))
        sent_ids = [
            m for (m,) in db.execute("SELECT message_id FROM digest_runs WHERE sent_at IS NOT NULL")
        ]
        pruned_polls = db.execute(
            "SELECT coalesce(sum(value), 0) FROM pruned_totals WHERE metric = 'polls'"
        ).fetchone()[0]
        # sent runs pruned by retention.digests were sent once: they count
        pruned_sent = db.execute(
            "SELECT coalesce(sum(value), 0) FROM pruned_totals "
            "WHERE metric = 'digest_runs' AND label LIKE 'sent:%'"
        ).fetchone()[0]
    stale = [g for g, t in titles.items() if g in feeds.titles and feeds.titles[g] != t]
    with sqlite3.connect(path) as db:
        present = {i for (i,) in db.execute("SELECT id FROM items")}
    missing_unsent = [i for ids in unsent for i in ids if i not in present]
    moved_ok = all(f"/moved/{k}.xml" in " ".join(urls) for k in feeds.moved)
    temp_kept = not any("/temp/" in u for u in urls)
    message_ids = [
        m.split(b"Message-ID:", 1)[1].split(b"\n", 1)[0].strip()
        for m in mails
        if b"Message-ID:" in m
    ]
    resent = len(message_ids) - len(set(message_ids))
    print(f"items pruned        {pruned_items}; poll_log rows pruned {pruned_polls}")
    print(f"edited items        {updated} stored as updated; {len(stale)} with a stale headline")
    print(
        f"moved feeds         {len(feeds.moved)} moved (301), polled at the new URL: {moved_ok}; "
        f"302 kept the old URL: {temp_kept}"
    )
    print(f"orphan memberships  {orphans}; unsent digest items missing {len(missing_unsent)}")
    print(
        f"digests             runs {runs}; mails {len(mails)}, "
        f"sent runs {len(sent_ids)} (+{pruned_sent} pruned), re-sent {resent}"
    )
    return (
        not stale
        and moved_ok
        and temp_kept
        and orphans == 0
        and not missing_unsent
        and resent == 0
        and len(mails) == len(sent_ids) + pruned_sent
        and pruned_items > 0
        and pruned_polls > 0
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--feeds", type=int, default=12)
    ap.add_argument("--round-s", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--window", default=None, help="dedup windows (e.g. 2m), so retention is reached in the run"
    )
    ap.add_argument("--year", action="store_true", help="edits, moves, retention, digests")
    args = ap.parse_args()
    if args.year and not args.window:
        ap.error("--year needs --window (retention must not be shorter than it)")

    feeds = Feeds(args.feeds, args.seed)
    feeds.year = args.year
    mails: list[bytes] = []
    smtp = None
    if args.year:
        from aiosmtpd.controller import Controller

        class Sink:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001, ANN201
                mails.append(envelope.content)
                return "250 OK"

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            smtp_port = probe.getsockname()[1]
        smtp = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
        smtp.start()
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
        + (
            f"retention: {{poll_log: {args.window}, items: {args.window}, "
            f"digests: {args.window}, interval: 30s, "
            "batch: 200}\n"
            f"smtp: {{host: 127.0.0.1, port: {smtp_port}}}\n"
            "digests:\n  - {name: minute, schedule: '* * * * *', recipients: [a@b.example]}\n"
            if args.year and smtp is not None
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
    growth: list[tuple[float, dict[str, int], int]] = []  # (t, rows per table, file bytes)
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
                growth.append((now - started, *table_rows(work / "newsdedup.sqlite")))
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
        if smtp is not None:
            smtp.stop()

    with sqlite3.connect(work / "newsdedup.sqlite") as db:
        stored = [g for (g,) in db.execute("SELECT guid FROM items")]
        errors = db.execute("SELECT count(*) FROM poll_log WHERE error IS NOT NULL").fetchone()[0]
        polls = db.execute("SELECT count(*) FROM poll_log").fetchone()[0]
        clustered = db.execute("SELECT count(*) FROM items WHERE dedup_state = 'done'").fetchone()[
            0
        ]
    pruned_items = 0
    if args.year:
        with sqlite3.connect(work / "newsdedup.sqlite") as db:
            pruned_items = db.execute(
                "SELECT coalesce(sum(value), 0) FROM pruned_totals WHERE metric = 'items'"
            ).fetchone()[0]
    missing = feeds.served - set(stored)
    if args.year:  # an item pruned by retention was stored once: it counts, by number
        missing = set(sorted(missing)[: max(0, len(missing) - pruned_items)])
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
    if args.year:
        ok = year_report(work / "newsdedup.sqlite", feeds, growth, mails, pruned_items) and ok
        errors_logged = [
            ln for ln in (work / "daemon.log").read_text().splitlines() if " ERROR " in ln
        ]
        expected = int(args.minutes) - 2  # a digest a minute, the first and last may miss
        print(
            f"daemon ERROR lines  {len(errors_logged)}; digest mails {len(mails)} (>= {expected})"
        )
        for line in errors_logged[:3]:
            print("  ", line[:160])
        ok = ok and not errors_logged and len(mails) >= expected
    print("RESULT              " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
