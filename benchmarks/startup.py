"""Daemon start-up with a long history: the dedup engine's load time and memory.

    python benchmarks/startup.py DB [--age K] [--runs 3] [--work DIR]

``DB`` is an SQLite database left by ``ingest.py --keep DIR`` (``DIR/ours.sqlite``). With
``--age K`` a copy of it gets K more generations of the same stored history, each shifted back
in time by the span of the original (new item, cluster and signature ids, new guids; the same
texts, signatures, memberships and merges), so the store holds (K + 1) times the items while
the recent window is the original's: what a daemon that has run for a long time starts from.
``--age 9`` on a 100k import makes a 1M-item store.

Each run is a fresh process that opens the store and calls ``DedupService.load()`` (what
``aggregator run`` and ``import`` do before their first batch); it prints the load time, the
items held in memory, and the process's resident memory after the load (current and peak).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from aggregator.dedup.service import DedupService
from aggregator.store.db import open_store
imported = time.perf_counter()
cpu0 = time.process_time()
svc = DedupService(open_store(sys.argv[1]))
svc.load()
done = time.perf_counter()
cpu = time.process_time() - cpu0
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
print(json.dumps({
    "import_s": imported - t0,
    "load_s": done - imported,
    "load_cpu_s": cpu,
    "held": len(svc.engine.records),
    "rss_mib": rss / 1024,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def age(src: Path, dst: Path, generations: int) -> dict[str, int]:
    """Copy ``src`` to ``dst`` and add ``generations`` time-shifted copies of its history."""
    shutil.copy(src, dst)
    conn = sqlite3.connect(dst)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    first, last = conn.execute("SELECT min(published_at), max(published_at) FROM items").fetchone()
    (span_days,) = conn.execute(
        "SELECT CAST(julianday(?) - julianday(?) AS INTEGER) + 1", (last, first)
    ).fetchone()
    item_off = conn.execute("SELECT max(id) FROM items").fetchone()[0] + 1
    cluster_off = conn.execute("SELECT max(id) FROM clusters").fetchone()[0] + 1

    def shifted(table: str, changes: dict[str, str]) -> str:
        cols = _columns(conn, table)
        exprs = [changes.get(c, c) for c in cols]
        return f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} FROM {table}"

    for k in range(1, generations + 1):
        io, co, days = k * item_off, k * cluster_off, k * span_days
        when = f"strftime('%Y-%m-%d %H:%M:%f000', {{}}, '-{days} days')"
        # only the original rows are copied: the WHERE keeps each generation to one copy
        conn.execute(
            shifted(
                "clusters",
                {
                    "id": f"id + {co}",
                    "merged_into_id": f"merged_into_id + {co}",
                    "created_at": when.format("created_at"),
                    "updated_at": when.format("updated_at"),
                },
            )
            + f" WHERE id < {cluster_off}"
        )
        conn.execute(
            shifted(
                "items",
                {
                    "id": f"id + {io}",
                    "parent_item_id": f"parent_item_id + {io}",
                    "guid": f"guid || '#g{k}'",
                    "published_at": when.format("published_at"),
                    "fetched_at": when.format("fetched_at"),
                },
            )
            + f" WHERE id < {item_off}"
        )
        conn.execute(
            shifted("signatures", {"item_id": f"item_id + {io}"}) + f" WHERE item_id < {item_off}"
        )
        conn.execute(
            shifted(
                "cluster_members",
                {
                    "item_id": f"item_id + {io}",
                    "cluster_id": f"cluster_id + {co}",
                    "matched_item_id": f"matched_item_id + {io}",
                    "joined_at": when.format("joined_at"),
                },
            )
            + f" WHERE item_id < {item_off}"
        )
        conn.commit()
        print(f"  generation {k}: {days} days back", flush=True)
    counts = {
        table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("items", "signatures", "cluster_members", "clusters")
    }
    # No ANALYZE: a store grown by the daemon has no planner statistics either, and with
    # them SQLite chose better plans than a real store gets (a 1M start-up looked 4 s faster).
    conn.close()
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("db", type=Path)
    ap.add_argument("--age", type=int, default=0, help="time-shifted copies of the history to add")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, help="where the aged copy goes (default: beside DB)")
    args = ap.parse_args()
    db = args.db
    if args.age:
        dst = (args.work or db.parent) / f"{db.stem}-aged{args.age}.sqlite"
        started = time.perf_counter()
        print(f"aging {db} x{args.age + 1} into {dst} ...", flush=True)
        counts = age(db, dst, args.age)
        print(f"  {counts} ({time.perf_counter() - started:.0f} s)")
        db = dst
    size_mb = db.stat().st_size / 1e6
    with sqlite3.connect(db) as conn:
        items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    print(f"store: {items} items, {size_mb:.0f} MB")
    results = []
    for run in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, f"sqlite:///{db}"],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"  run {run + 1}: load {r['load_s']:.2f} s wall, {r['load_cpu_s']:.2f} s CPU "
            f"(imports {r['import_s']:.2f} s), "
            f"{r['held']} items held, RSS {r['rss_mib']:.0f} MiB (peak {r['peak_rss_mib']:.0f})"
        )
    loads = sorted(r["load_s"] for r in results)
    cpus = sorted(r["load_cpu_s"] for r in results)
    print(
        f"start-up with {items} items stored: load median {loads[len(loads) // 2]:.2f} s wall, "
        f"{cpus[len(cpus) // 2]:.2f} s CPU, "
        f"{results[0]['held']} held, RSS {max(r['rss_mib'] for r in results):.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
