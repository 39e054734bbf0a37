"""Start-up time of the commands that do not cluster, beside a bare ``import sqlalchemy, yaml``.

    python benchmarks/command_start.py [--runs 15] [--config config.yaml] [--db URL]

Each command runs ``--runs`` times as a fresh ``python -m aggregator`` process against a store
migrated with ``db upgrade`` (default: a new SQLite file in a temporary directory; ``--db`` for
another, e.g. PostgreSQL). The runs go round-robin over the commands after one warm-up round,
so a machine whose load changes meanwhile slows all of them alike; that round also writes the
bytecode caches, which ``PYTHONDONTWRITEBYTECODE`` would otherwise leave out of every run.

The table gives each command's median wall time and CPU time (user + system, what load on a
shared machine inflates least) and their ratios to the bare import's. Issue 22's target:
``status`` at most 2x. The second row imports only the config (pydantic) and the Core tables,
which any command that reads the store needs (the read commands query the tables, without the
ORM): what no lazier import can take off.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BARE = ["-c", "import sqlalchemy, yaml"]
# what every command that reads the store must import: pydantic (the config) and the tables
FLOOR = ["-c", "import aggregator.config, aggregator.store.tables"]
COMMANDS = [
    ["--help"],
    ["status"],
    ["status", "--json"],
    ["items"],
    ["sources", "list"],
    ["digest", "preview", "daily"],
]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """One run's wall time and CPU time (user + system), in seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], check=True, stdout=subprocess.DEVNULL, env=env, cwd=REPO
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--config", type=Path, default=REPO / "config.yaml")
    ap.add_argument("--db", help="database URL (default: a new SQLite file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env["AGGREGATOR_CONFIG"] = str(args.config.resolve())
        env["AGGREGATOR_DATABASE_URL"] = args.db or f"sqlite:///{tmp}/start.sqlite"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        # an installed package has its bytecode cached: the warm-up round writes it here
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run(
            [sys.executable, "-m", "aggregator", "db", "upgrade"],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
        )
        runs: dict[str, list[tuple[float, float]]] = {}
        cases = {"import sqlalchemy, yaml": BARE, "import config, tables": FLOOR} | {
            " ".join(c): ["-m", "aggregator", *c] for c in COMMANDS
        }
        for i in range(args.runs + 1):
            for name, argv in cases.items():
                took = timed(argv, env)
                if i:  # the first round only warms the file cache
                    runs.setdefault(name, []).append(took)
        medians = {
            name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
            for name, t in runs.items()
        }
        bare_wall, bare_cpu = medians["import sqlalchemy, yaml"]
        print(f"{'command':<26} {'wall':>7} {'ratio':>6} {'cpu':>7} {'ratio':>6}")
        for name, (wall, cpu) in medians.items():
            print(
                f"{name:<26} {wall * 1000:>5.0f}ms {wall / bare_wall:>6.2f} "
                f"{cpu * 1000:>5.0f}ms {cpu / bare_cpu:>6.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
