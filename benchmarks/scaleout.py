"""Scale-out: 1..N polling processes on one PostgreSQL, and what PostgreSQL spends per item.

    python benchmarks/scaleout.py [--feeds 200] [--new 10] [--rounds 3] [--workers 1,2,3]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

A threaded HTTP server on 127.0.0.1 serves ``--feeds`` RSS feeds (text from ``workload.py``).
Each round, every feed's document gains ``--new`` items and keeps the previous round's (so a
poll parses the new half and skips the known half, as a real re-poll does). For each worker
count N, on a fresh database: N processes (each what ``aggregator poll --once`` runs: ``poll_round``
with the project's fetcher, leasing due feeds with ``FOR UPDATE SKIP LOCKED``) are started and
loaded once; then, per round, every feed is made due and all N poll at the same moment.

Per round the script checks that every feed was polled exactly once (one ``poll_log`` row per
feed) and every served item is stored once, and measures the wall time, the CPU the pollers
used and the CPU every ``postgres`` process on the machine used (from /proc; run it on an
otherwise idle machine). Clustering is not part of a poll: one daemon (the clustering lease
holder) places every pending item; after the one-poller rounds, that poller clusters all
the stored items once, timed the same way.

Prints, per N: feeds polled per second, new items stored per second, pollers' and
PostgreSQL's CPU per round and PostgreSQL's CPU per item stored (what bounds the number of
pollers one PostgreSQL server can take).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402
from ingest import pg_create, pg_drop  # noqa: E402
from poll_latency import Items, serve_bodies  # noqa: E402

TICK_S = os.sysconf("SC_CLK_TCK")


def child(config: str) -> int:
    """A poller: loads once, then runs one poll round per "go" line on stdin."""
    import resource

    from aggregator.config import load_config
    from aggregator.coordination import worker_id
    from aggregator.fetcher import Fetcher
    from aggregator.poller import fetch_settings, poll_round
    from aggregator.store import open_store

    cfg = load_config(Path(config))
    store = open_store(cfg.database.url)
    with Fetcher(fetch_settings(cfg)) as fetcher:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            if line.strip() == "cluster":  # place every stored item, as the lease holder does
                from aggregator.dedup.service import DedupService, settings_from

                usage = resource.getrusage(resource.RUSAGE_SELF)
                started = time.perf_counter()
                placed = DedupService(store, settings_from(cfg.dedup)).process_pending()
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu_s = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
                seconds = time.perf_counter() - started
                print(
                    json.dumps({"seconds": seconds, "cpu_s": cpu_s, "placed": placed}), flush=True
                )
                continue
            if line.strip() != "go":
                break
            usage = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            outcomes = poll_round(store, cfg, fetcher, owner=worker_id())
            after = resource.getrusage(resource.RUSAGE_SELF)
            print(
                json.dumps(
                    {
                        "seconds": time.perf_counter() - started,
                        "cpu_s": after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime,
                        "feeds": len(outcomes),
                        "failed": sum(o.failed for o in outcomes),
                        "new": sum(o.items_new for o in outcomes),
                    }
                ),
                flush=True,
            )
    store.close()
    return 0


class Server:
    """Feed ``i`` at round ``r``: the items of rounds ``r - 1`` and ``r``, newest first."""

    def __init__(self, feeds: int, new: int) -> None:
        site = workload.make_site(1, 0)
        start = datetime.now(UTC) - timedelta(days=2)
        self.items = Items(site, 1, start, step_s=5.0)
        self.feeds, self.new, self.round = feeds, new, 0
        self._bodies: dict[tuple[int, int], bytes] = {}
        self._lock = threading.Lock()

    def keys(self, feed: int, rnd: int) -> list[int]:
        return [(rnd * self.feeds + feed) * self.new + j for j in range(self.new)]

    def body(self, feed: int) -> bytes:
        rnd = self.round
        with self._lock:
            body = self._bodies.get((feed, rnd))
            if body is None:
                keys = self.keys(feed, rnd) + (self.keys(feed, rnd - 1) if rnd else [])
                body = self._bodies[(feed, rnd)] = self.items.document(sorted(keys, reverse=True))
            return body

    def prepare(self, rnd: int) -> None:
        """Render a round's documents before it is timed (the server is not what is measured)."""
        self.round = rnd
        self._bodies = {k: v for k, v in self._bodies.items() if k[1] == rnd}
        for feed in range(self.feeds):
            self.body(feed)

    def serve(self) -> ThreadingHTTPServer:
        return serve_bodies(lambda path: self.body(int(path.rsplit("/", 1)[1])))


def postgres_cpu_s() -> float:
    """CPU seconds used so far by every process named ``postgres`` (alive now)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name.startswith("postgres"):
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK_S


def write_config(path: Path, url: str, port: int, feeds: int) -> None:
    lines = [
        "database:",
        f"  url: '{url}'",
        "polling:",
        "  min_interval: 1m",
        "  workers: 4",
        "  per_host_limit: 16",  # every feed is on 127.0.0.1
        "  allow_private_addresses: true",
        "sources:",
    ]
    for i in range(feeds):
        lines += [
            f"  - name: feed{i:04d}",
            "    type: rss",
            f"    url: http://127.0.0.1:{port}/f/{i}",
        ]
    path.write_text("\n".join(lines) + "\n")


def run(n: int, args: argparse.Namespace, server: Server, port: int, work: Path) -> dict:
    from sqlalchemy import create_engine, text

    admin, url = pg_create(args.postgres)
    procs: list[subprocess.Popen[str]] = []
    try:
        config = work / f"config-{n}.yaml"
        write_config(config, url, port, args.feeds)
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        aggregator = [sys.executable, "-m", "aggregator", "-q", "--config", str(config)]
        subprocess.run([*aggregator, "db", "upgrade"], check=True, env=env, capture_output=True)
        # `aggregator poll --once` registers the configured sources and polls round 0
        server.prepare(0)
        subprocess.run([*aggregator, "poll", "--once"], check=True, env=env, capture_output=True)
        db = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(config)]
        for _ in range(n):
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(p)
        for p in procs:
            assert json.loads(p.stdout.readline())["ready"]  # type: ignore[union-attr]
        rounds = []
        for rnd in range(1, args.rounds + 1):
            server.prepare(rnd)
            with db.begin() as conn:
                conn.execute(text("UPDATE feeds SET next_check_at = now() - interval '1 second'"))
                polls_before = conn.execute(text("SELECT count(*) FROM poll_log")).scalar_one()
            pg_before = postgres_cpu_s()
            started = time.perf_counter()
            for p in procs:
                p.stdin.write("go\n")  # type: ignore[union-attr]
                p.stdin.flush()  # type: ignore[union-attr]
            results = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
            wall = time.perf_counter() - started
            pg_cpu = postgres_cpu_s() - pg_before
            with db.connect() as conn:
                items = conn.execute(text("SELECT count(*) FROM items")).scalar_one()
                polls = conn.execute(
                    text("SELECT feed_id, count(*) FROM poll_log GROUP BY feed_id")
                ).all()
                polled = conn.execute(text("SELECT count(*) FROM poll_log")).scalar_one()
            expected = (rnd + 1) * args.feeds * args.new
            if items != expected or polled - polls_before != args.feeds:
                raise SystemExit(
                    f"N={n} round {rnd}: {items} items (expected {expected}), "
                    f"{polled - polls_before} polls (expected {args.feeds})"
                )
            # round 0 (`aggregator poll --once`) and this run's rounds
            if any(count != rnd + 1 for _, count in polls):
                raise SystemExit(f"N={n} round {rnd}: a feed was polled twice or not at all")
            rounds.append(
                {
                    "wall_s": wall,
                    "pollers_cpu_s": sum(r["cpu_s"] for r in results),
                    "pg_cpu_s": pg_cpu,
                    "new": sum(r["new"] for r in results),
                    "per_worker": [r["feeds"] for r in results],
                    "failed": sum(r["failed"] for r in results),
                }
            )
        db.dispose()
        out: dict = {"n": n, "rounds": rounds}
        if n == 1:  # then the clustering of everything stored, by one process
            pg_before = postgres_cpu_s()
            procs[0].stdin.write("cluster\n")  # type: ignore[union-attr]
            procs[0].stdin.flush()  # type: ignore[union-attr]
            out["cluster"] = json.loads(procs[0].stdout.readline())  # type: ignore[union-attr]
            out["cluster"]["pg_cpu_s"] = postgres_cpu_s() - pg_before
        return out
    finally:
        for p in procs:
            p.stdin.close()  # type: ignore[union-attr]
            p.wait(timeout=60)
        pg_drop(admin, url)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--new", type=int, default=10, help="new items per feed per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="1,2,3", help="worker counts to run, comma-separated")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args(argv)

    server = Server(args.feeds, args.new)
    httpd = server.serve()
    port = httpd.server_address[1]
    work = Path(tempfile.mkdtemp(prefix="newsdedup-scaleout-"))
    print(
        f"{args.feeds} feeds, {args.new} new items each per round ({args.new} known), "
        f"{args.rounds} rounds per worker count, {os.cpu_count()} cores",
        flush=True,
    )
    results = [run(int(n), args, server, port, work) for n in args.workers.split(",")]
    httpd.shutdown()

    print()
    head = (
        f"{'pollers':>7}  {'feeds/s':>8}  {'items/s':>8}  {'round s':>7}  "
        f"{'pollers CPU s':>13}  {'PG CPU s':>8}  {'PG CPU ms/item':>14}  feeds per poller"
    )
    print(head)
    print("-" * len(head))
    for res in results:
        rounds = res["rounds"]
        wall = sorted(r["wall_s"] for r in rounds)[len(rounds) // 2]  # median
        new = rounds[0]["new"]
        pg = sorted(r["pg_cpu_s"] for r in rounds)[len(rounds) // 2]
        ours = sorted(r["pollers_cpu_s"] for r in rounds)[len(rounds) // 2]
        shares = " / ".join(",".join(str(x) for x in r["per_worker"]) for r in rounds)
        print(
            f"{res['n']:>7}  {args.feeds / wall:>8.1f}  {new / wall:>8.0f}  {wall:>7.2f}  "
            f"{ours:>13.2f}  {pg:>8.2f}  {1000 * pg / new:>14.2f}  {shares}"
        )
    print(
        "\nEvery round: each feed polled exactly once, every served item stored once "
        "(checked). Median of the rounds."
    )
    for res in results:
        c = res.get("cluster")
        if c:
            print(
                f"\nclustering, one process, all {c['placed']} stored items: "
                f"{c['placed'] / c['seconds']:.0f} items/s ({c['seconds']:.1f} s, "
                f"its CPU {c['cpu_s']:.1f} s, PostgreSQL CPU {c['pg_cpu_s']:.1f} s = "
                f"{1000 * c['pg_cpu_s'] / c['placed']:.2f} ms/item)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
