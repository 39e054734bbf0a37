"""Poll latency: one poll of a feed with 50 new items, through the real pipeline, repeated.

    python benchmarks/poll_latency.py [--polls 200] [--new 50] [--window 100] [--per-day 2000]
        [--warmup 5] [--big 500] [--big-polls 20] [--format rss|atom|wordpress] [--keep DIR] [--cpu]
        [--profile PREFIX]

A threaded HTTP server on 127.0.0.1 serves one feed (text from ``workload.py``: one site's
chrome, German or English articles, every third item another report of the same event).
Before each poll the feed gains ``--new`` items; the document holds the newest ``--window``.
Each poll is timed in three parts:

* fetch: the same body fetched with the project's ``Fetcher`` alone, just before the poll
  (the network time of a local server: connection, request, body);
* refresh: ``aggregator.poller.refresh_feed`` (fetch, body hash, parse, normalise, exact
  dedup, insert, poll state, next check) on a SQLite store in a temporary directory;
* dedup: ``DedupService.process_pending()`` for the new items (one service for the whole run,
  loaded once, as in the daemon).

Reported: p50/p95 of fetch, parse+store (refresh - fetch), dedup, total (refresh + dedup) and
total - fetch (the figure the target "p50 <= 10 ms excluding network" is about), for all
polls after ``--warmup`` and for the first and last quarter (the engine's windows fill up as
the run goes: items are spaced ``--per-day`` apart, ending now).

``--cpu`` times the same parts in CPU seconds of the polling thread (``time.thread_time``:
parsing, storing, SQLite and clustering, not the server thread) instead of wall-clock time,
for comparisons on a machine shared with other work.

``--profile PREFIX`` profiles the counted polls (after ``--warmup``, not the bigger bodies)
with cProfile in the polling thread's CPU time, the refresh and the dedup part apart: writes
``PREFIX.refresh.pstats`` and ``PREFIX.dedup.pstats`` and prints each sorted by cumulative
time. The profiler's own cost inflates the figures printed beside it.

Then, with a bigger document of the newest ``--big`` items: ``--big-polls`` polls where each
time 10% of its entries are new and the rest known ("changed, mostly known"), then as many
polls of the very same body ("unchanged": the body-hash short-circuit). Both as items in the
body per second, with and without the fetch.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402

from aggregator.config import Config  # noqa: E402
from aggregator.coordination import claim_due_feeds  # noqa: E402
from aggregator.dedup.service import DedupService, settings_from  # noqa: E402
from aggregator.fetcher import Fetcher  # noqa: E402
from aggregator.poller import fetch_settings, refresh_feed  # noqa: E402
from aggregator.store import open_store, repo  # noqa: E402


class Feed:
    """The served document; swapped atomically between polls."""

    def __init__(self) -> None:
        self.body = b""

    def serve(self) -> ThreadingHTTPServer:
        return serve_bodies(lambda _path: self.body)


def serve_bodies(body_of: Callable[[str], bytes]) -> ThreadingHTTPServer:
    """A threaded server on 127.0.0.1 (any free port) answering GET ``path`` with
    ``body_of(path)`` as RSS, in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = body_of(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Items:
    """Item k of the benchmark feed, deterministic; item k is published at start + k * step."""

    def __init__(self, site: workload.Site, seed: int, start: datetime, step_s: float) -> None:
        self.site, self.seed, self.start, self.step_s = site, seed, start, step_s
        self._cache: dict[int, workload.Entry] = {}

    def entry(self, k: int) -> workload.Entry:
        e = self._cache.get(k)
        if e is None:
            site = self.site
            ev = workload.make_event(
                self.seed, 50_000_000 + k // 3, 60_000_000 + k // 12, site.lang
            )
            title, paragraphs = workload._article(self.seed, 70_000_000 + k, ev)
            e = workload.Entry(
                guid=f"{site.domain}/article/{k}",
                url=f"https://www.{site.domain}/news/{workload.slugify(title)}-{k}.html",
                title=title,
                paragraphs=paragraphs,
                published=self.start + timedelta(seconds=k * self.step_s),
                author=site.authors[k % len(site.authors)],
            )
            self._cache[k] = e
        return e

    def document(self, keys: list[int]) -> bytes:
        entries = [self.entry(k) for k in keys]
        return workload.render_document(self.site, entries, self.seed).encode("utf-8")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(x: float) -> str:
    return f"{x * 1000:8.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--polls", type=int, default=200)
    ap.add_argument("--new", type=int, default=50, help="new items per poll")
    ap.add_argument("--window", type=int, default=100, help="entries in the served document")
    ap.add_argument("--per-day", type=int, default=2000, help="item spacing: this many per day")
    ap.add_argument("--warmup", type=int, default=5, help="polls not counted")
    ap.add_argument("--big", type=int, default=500, help="entries of the re-poll document")
    ap.add_argument("--big-polls", type=int, default=20)
    ap.add_argument("--format", choices=("rss", "atom", "wordpress"), default="rss")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="keep the database in this directory")
    ap.add_argument("--cpu", action="store_true", help="time in the polling thread's CPU time")
    ap.add_argument("--profile", metavar="PREFIX", help="cProfile the counted polls' two parts")
    args = ap.parse_args(argv)
    clock = time.thread_time if args.cpu else time.perf_counter

    work = args.keep or Path(tempfile.mkdtemp(prefix="newsdedup-poll-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "poll.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db}"

    site = replace(workload.make_site(args.seed, 0), fmt=args.format)
    total = args.polls * args.new + args.big_polls * (args.big // 10)
    step = 86400.0 / args.per_day
    now = datetime.now(UTC).replace(microsecond=0)
    items = Items(site, args.seed, now - timedelta(seconds=total * step), step)

    feed = Feed()
    server = feed.serve()
    feed_url = f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    stype = "rss" if args.format == "rss" else args.format
    cfg = Config.model_validate(
        {
            "database": {"url": url},
            "polling": {
                "min_interval": "1s",
                "total_timeout": "30s",
                "read_timeout": "30s",
                "allow_private_addresses": True,
            },
            "sources": [{"name": "bench", "type": stype, "url": feed_url}],
        }
    )
    store = open_store(url)
    with store.session() as s:
        repo.sync_sources(s, cfg.sources, datetime.now(UTC))
    service = DedupService(store, settings_from(cfg.dedup))
    fetcher = Fetcher(fetch_settings(cfg))

    profiles: dict[str, cProfile.Profile] = {}
    if args.profile:
        profiles = {part: cProfile.Profile(time.thread_time) for part in ("refresh", "dedup")}

    def poll(
        expect_new: int | None, profiled: bool = False
    ) -> tuple[float, float, float, str, int, int]:
        (job,) = claim_due_feeds(store, now=datetime.now(UTC), owner="bench", all_feeds=True)
        t0 = clock()
        fetcher.fetch(feed_url, private_addresses="always")
        t1 = clock()
        if profiled and profiles:
            outcome = profiles["refresh"].runcall(refresh_feed, store, fetcher, cfg, job)
            t2 = clock()
            placed = profiles["dedup"].runcall(service.process_pending)
        else:
            outcome = refresh_feed(store, fetcher, cfg, job)
            t2 = clock()
            placed = service.process_pending()
        t3 = clock()
        if outcome.failed:
            raise SystemExit(f"poll failed: {outcome.error}")
        if expect_new is not None and outcome.items_new != expect_new:
            raise SystemExit(f"expected {expect_new} new items, got {outcome.items_new}")
        return t1 - t0, t2 - t1, t3 - t2, outcome.result, outcome.items_seen, placed

    fingerprint = workload.code_fingerprint()
    print(
        f"aggregator sources: {fingerprint}; "
        f"feed: {site.name} ({site.lang}, {args.format}), {args.new} new items per poll, "
        f"{args.window} entries per document, items {step:.0f} s apart; database {db}"
        + ("; CPU time of the polling thread" if args.cpu else ""),
        flush=True,
    )
    rows: list[tuple[float, float, float]] = []  # (fetch, refresh, dedup)
    sizes: list[int] = []
    started = time.perf_counter()
    for r in range(args.polls):
        newest = (r + 1) * args.new
        keys = list(range(max(0, newest - args.window), newest))
        feed.body = items.document(keys)
        fetch, refresh, dedup, result, _seen, _placed = poll(args.new, r >= args.warmup)
        sizes.append(len(feed.body))
        if r >= args.warmup:
            rows.append((fetch, refresh, dedup))
        if (r + 1) % 50 == 0:
            print(
                f"  poll {r + 1}: fetch {fetch * 1000:.1f} ms, parse+store "
                f"{(refresh - fetch) * 1000:.1f} ms, dedup {dedup * 1000:.1f} ms",
                flush=True,
            )
    loop_s = time.perf_counter() - started

    def report(label: str, sample: list[tuple[float, float, float]]) -> None:
        cols = {
            "fetch": [f for f, _, _ in sample],
            "parse+store": [max(0.0, r - f) for f, r, _ in sample],
            "dedup": [d for _, _, d in sample],
            "total": [r + d for _, r, d in sample],
            "total - fetch": [max(0.0, r + d - f) for f, r, d in sample],
        }
        print(f"\n{label} ({len(sample)} polls), milliseconds:")
        print(f"  {'':14} {'p50':>8} {'p95':>8} {'mean':>8}")
        for name, values in cols.items():
            print(
                f"  {name:14} {ms(pct(values, 0.5))} {ms(pct(values, 0.95))} "
                f"{ms(statistics.fmean(values))}"
            )

    n = len(rows)
    print(
        f"\n{args.polls} polls in {loop_s:.1f} s; document {statistics.fmean(sizes) / 1024:.0f} KiB "
        f"on average; {args.polls * args.new} items stored and clustered"
    )
    report(f"polls {args.warmup + 1}-{args.polls}", rows)
    if n >= 8:
        report("first quarter", rows[: n // 4])
        report("last quarter", rows[-(n // 4) :])
    print("\ntarget: one poll with 50 new items, p50 <= 10 ms excluding network")
    for part, profile in profiles.items():
        out = f"{args.profile}.{part}.pstats"
        profile.dump_stats(out)
        print(f"\n{part} of the counted polls, cProfile ({out}):")
        pstats.Stats(out).sort_stats("cumulative").print_stats(40)

    # ------------------------------------------------------------ bigger bodies
    if args.big_polls > 0 and args.big > 0:
        newest = args.polls * args.new
        known = list(range(max(0, newest - args.big), newest))
        fresh = args.big // 10
        changed: list[tuple[float, float, float]] = []
        seen_total = 0
        for r in range(args.big_polls):
            base = newest + r * fresh
            keys = known[fresh:] + list(range(base, base + fresh))
            feed.body = items.document(keys)
            fetch, refresh, dedup, result, seen, _ = poll(fresh)
            changed.append((fetch, refresh, dedup))
            seen_total = seen
        unchanged: list[tuple[float, float]] = []
        for _ in range(args.big_polls):
            fetch, refresh, dedup, result, seen, _ = poll(0)
            if result != "unchanged":
                raise SystemExit(f"expected an unchanged body, got {result}")
            unchanged.append((fetch, refresh))
        kib = len(feed.body) / 1024
        print(
            f"\nre-polls of a {seen_total}-entry document ({kib:.0f} KiB), "
            f"{args.big_polls} polls each, median:"
        )
        f = statistics.median(x[0] for x in changed)
        t = statistics.median(x[1] + x[2] for x in changed)
        d = statistics.median(x[2] for x in changed)
        print(
            f"  changed, {fresh} new: total {t * 1000:.1f} ms (dedup {d * 1000:.1f} ms, fetch "
            f"{f * 1000:.1f} ms) -> {seen_total / t:,.0f} items/s, "
            f"{seen_total / max(t - f, 1e-9):,.0f} items/s without the fetch (target >= 5000)"
        )
        f = statistics.median(x[0] for x in unchanged)
        t = statistics.median(x[1] for x in unchanged)
        print(
            f"  unchanged:         total {t * 1000:.1f} ms (fetch {f * 1000:.1f} ms) -> "
            f"{seen_total / t:,.0f} items/s, {seen_total / max(t - f, 1e-9):,.0f} items/s "
            "without the fetch (target >= 50000)"
        )

    if workload.code_fingerprint() != fingerprint:
        print("WARNING: the aggregator sources changed during the run (loaded code unchanged)")
    fetcher.close()
    server.shutdown()
    store.close()
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
