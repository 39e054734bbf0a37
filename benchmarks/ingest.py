"""Ingest throughput: ``aggregator import`` against the naive baseline, on the same files.

    python benchmarks/ingest.py [--items 10000] [--feeds 50] [--seed 1] [--skip-naive]
        [--keep DIR] [--postgres URL] [--profile]

Generates a workload (``workload.py``: ``--items`` unique items in ``--feeds`` feeds, plus a
"changed" copy of every document with 10% of its entries replaced by new items), then times:

(a) naive: ``naive.py`` over the files, the same files again, then the changed files, in one
    process (feedparser, one ``MinHash.update`` per token, in-memory ``MinHashLSH``, one ORM
    object per row);
(b) ours: ``aggregator import FILE...`` end to end (a subprocess running the CLI in-process,
    fresh SQLite database in the work directory, a temporary config): parse, normalise, store,
    then dedup at all three levels. Checks afterwards that ``items`` holds exactly the
    manifest's unique items and none is pending dedup;
(c) with ``--postgres URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``): the same
    against a fresh PostgreSQL database created next to URL's (dropped at the end unless
    ``--keep``);
(d) re-import of the same files into the same database (nothing new);
(e) import of the changed files (10% of the entries new, the rest known).

Throughput is entries in the files / seconds (the time of the CLI call in the subprocess:
config, store, every file, dedup; interpreter start excluded, as for the naive one). Also
timed: loading the dedup engine from the database after (b), what every ``aggregator run``
start and every ``import``/``why`` does first. Prints one table (figure, ours, naive,
ours/naive, target), the peak RSS of each process, and the clustering quality of (b) against
the workload's ground truth. ``--profile`` runs (b) under cProfile and prints the top 15
lines by cumulative time. ``--keep DIR`` keeps everything in DIR (and reuses a workload
generated there with the same parameters).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402

TARGETS = {
    "import": "> naive (issue: 857/s)",
    "reimport": ">= 50000/s",
    "changed": ">= 5000/s",
    "load": "(daemon start)",
}


# --------------------------------------------------------------------------- the child


def child(argv: list[str]) -> int:
    """Runs in the subprocess: ``--child import|load|upgrade CONFIG [--profile FILE]``;
    file names on stdin; prints one JSON object."""
    import resource

    mode, config = argv[0], argv[1]
    profile_out = argv[argv.index("--profile") + 1] if "--profile" in argv else None
    result: dict[str, Any] = {}
    if mode in ("import", "upgrade"):
        from aggregator.cli import main

        files = [f for f in sys.stdin.read().splitlines() if f] if mode == "import" else []
        args = ["-q", "--config", config, *(["import", *files] if files else ["db", "upgrade"])]
        out = io.StringIO()
        prof = None
        if profile_out:
            import cProfile

            prof = cProfile.Profile()
        started = time.perf_counter()
        if prof:
            prof.enable()
        code = main(args, out=out)
        if prof:
            prof.disable()
        result["seconds"] = time.perf_counter() - started
        result["code"] = code
        seen = new = 0
        for line in out.getvalue().splitlines():
            cells = line.split("\t")
            if len(cells) >= 3 and " entries, " in cells[2]:
                a, b = cells[2].split(" entries, ", 1)
                seen += int(a)
                new += int(b.split(" new", 1)[0])
        result.update(files=len(files), entries=seen, new=new)
        if prof and profile_out:
            import pstats

            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(15)
            Path(profile_out).write_text(text.getvalue(), encoding="utf-8")
    elif mode == "load":
        from aggregator.config import load_config
        from aggregator.dedup.service import DedupService, settings_from
        from aggregator.store import open_store

        cfg = load_config(config)
        store = open_store(cfg.database.url)
        started = time.perf_counter()
        service = DedupService(store, settings_from(cfg.dedup))
        service.load()
        result["seconds"] = time.perf_counter() - started
        result["records"] = len(service.engine.records)
        store.close()
    else:
        raise SystemExit(f"unknown child mode {mode}")
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
    return 0


def run_child(mode: str, config: Path, files: list[Path] = (), profile: Path | None = None):  # type: ignore[assignment]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(config)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    started = time.perf_counter()
    proc = subprocess.run(
        cmd,
        input="\n".join(str(f) for f in files),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not proc.stdout.strip():
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{mode} failed (exit {proc.returncode})")
    if proc.stderr.strip():
        sys.stderr.write(proc.stderr[-2000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    if result.get("code", 0) != 0:
        raise SystemExit(f"{mode}: aggregator exited {result['code']}")
    return result


# --------------------------------------------------------------------------- helpers


def ensure_workload(directory: Path, params: workload.Params, replace: float) -> dict[str, Any]:
    try:
        m = workload.load_manifest(directory)
        if (
            m.get("generator") == workload.VERSION
            and m["params"] == asdict(params)
            and m["replace_fraction"] == replace
        ):
            return m
    except (OSError, ValueError, KeyError):
        pass
    if directory.exists():
        shutil.rmtree(directory)
    return workload.generate(params, directory, replace_fraction=replace, jobs=os.cpu_count() or 1)


def write_config(directory: Path, url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(f"database:\n  url: '{url}'\n", encoding="utf-8")
    return path


def db_counts(url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            items = conn.execute(text("SELECT count(*) FROM items")).scalar_one()
            pending = conn.execute(
                text("SELECT count(*) FROM items WHERE dedup_state <> 'done'")
            ).scalar_one()
            members = conn.execute(text("SELECT count(*) FROM cluster_members")).scalar_one()
    finally:
        engine.dispose()
    return {"items": items, "pending": pending, "members": members}


def check(label: str, counts: dict[str, int], expected: int, problems: list[str]) -> None:
    ok = counts["items"] == expected and counts["pending"] == 0
    print(
        f"  check {label}: items {counts['items']} (expected {expected}), "
        f"pending dedup {counts['pending']}, memberships {counts['members']} "
        + ("ok" if ok else "MISMATCH")
    )
    if not ok:
        problems.append(f"{label}: {counts} expected {expected} items and 0 pending")


def quality(url: str, manifest: dict[str, Any]) -> str:
    """Our clusters after (b) scored against the workload's ground truth."""
    from sqlalchemy import create_engine, text

    from aggregator.dedup.evaluate import evaluate, format_table

    truth: dict[str, int] = manifest["truth"]
    dup_of: dict[str, str] = manifest["duplicate_of"]
    topic: list[int] = manifest["event_topic"]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            guid = dict(conn.execute(text("SELECT id, guid FROM items")).all())
            pred: dict[int, dict[str, Any]] = {}
            for item_id, level, cluster in conn.execute(
                text("SELECT item_id, level, cluster_id FROM cluster_members")
            ):
                pred.setdefault(item_id, {"id": guid[item_id]})[level] = cluster
    finally:
        engine.dispose()
    labels = [
        {"id": g, "dup_group": dup_of.get(g, g), "story": e, "thread": topic[e]}
        for g, e in truth.items()
    ]
    return format_table(evaluate(pred.values(), labels, pred_name="db", labels_name="truth"))


def pg_create(admin_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if admin_url.startswith("postgresql://"):
        admin_url = "postgresql+psycopg://" + admin_url[len("postgresql://") :]
    name = f"newsdedup_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def pg_drop(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def ours(
    label: str,
    url: str,
    work: Path,
    docs: list[Path],
    changed: list[Path],
    m: dict[str, Any],
    mc: dict[str, Any],
    *,
    profile: Path | None,
    problems: list[str],
) -> dict[str, dict[str, Any]]:
    if url.startswith("sqlite:///"):  # a fresh database (--keep reuses the directory)
        for suffix in ("", "-wal", "-shm"):
            Path(url[len("sqlite:///") :] + suffix).unlink(missing_ok=True)
    config = write_config(work, url)
    if not url.startswith("sqlite"):
        run_child("upgrade", config)
    out: dict[str, dict[str, Any]] = {}
    print(f"[{label}] (b) import {len(docs)} files ...", flush=True)
    out["import"] = run_child("import", config, docs, profile)
    check("after import", db_counts(url), int(m["items"]), problems)
    print(f"[{label}] dedup engine load ...", flush=True)
    out["load"] = run_child("load", config)
    print(f"[{label}] (d) re-import of the same files ...", flush=True)
    out["reimport"] = run_child("import", config, docs)
    check("after re-import", db_counts(url), int(m["items"]), problems)
    print(f"[{label}] (e) changed files ({mc['replaced']} new entries) ...", flush=True)
    out["changed"] = run_child("import", config, changed)
    check("after changed", db_counts(url), int(m["items"]) + int(mc["replaced"]), problems)
    return out


def rate(r: dict[str, Any] | None) -> float | None:
    if not r:
        return None
    return r["entries"] / r["seconds"] if r["seconds"] else None


def fmt(x: float | None, unit: str = "/s") -> str:
    if x is None:
        return "-"
    if unit == "s":
        return f"{x:.2f} s"
    if unit == "MiB":
        return f"{x:.0f} MiB"
    return f"{x:,.0f}{unit}"


def table(rows: list[tuple[str, str, str, str, str]]) -> str:
    header = ("figure", "ours", "naive", "ours/naive", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    r = a / b
    return f"{r:.1f}x" if r >= 1 else f"{r:.3f}x"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--feeds", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-naive", action="store_true", help="do not run the naive baseline")
    ap.add_argument("--keep", type=Path, help="work here and keep everything")
    ap.add_argument("--postgres", metavar="URL", help="also run against a fresh PostgreSQL db")
    ap.add_argument("--profile", action="store_true", help="cProfile our first import")
    args = ap.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="newsdedup-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    params = workload.Params(items=args.items, feeds=args.feeds, seed=args.seed)
    started = time.perf_counter()
    m = ensure_workload(work / "docs", params, 0.0)
    mc = ensure_workload(work / "changed", params, 0.1)
    docs = workload.document_paths(work / "docs")
    changed = workload.document_paths(work / "changed")
    print(
        f"workload: {m['items']} items ({m['copies']} copies, {m['rewrites']} rewrites, "
        f"{m['events']} events), {m['entries']} entries in {len(docs)} files, "
        f"{int(m['bytes']) / 1e6:.1f} MB; changed set {mc['entries']} entries, "
        f"{mc['replaced']} new ({time.perf_counter() - started:.1f} s) in {work}",
        flush=True,
    )

    fingerprint = workload.code_fingerprint()
    print(f"aggregator sources: {fingerprint}", flush=True)
    problems: list[str] = []
    naive: dict[str, dict[str, Any]] = {}
    if not args.skip_naive:
        print("[naive] import, re-import, changed ...", flush=True)
        cmd = [sys.executable, str(HERE / "naive.py"), str(work / "docs"), str(work / "docs")]
        cmd += [str(work / "changed"), "--db", str(work / "naive.sqlite"), "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return 1
        passes = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        naive = dict(zip(("import", "reimport", "changed"), passes, strict=True))

    profile = work / "profile.txt" if args.profile else None
    results = {
        "SQLite": ours(
            "SQLite",
            f"sqlite:///{work / 'ours.sqlite'}",
            work / "sqlite",
            docs,
            changed,
            m,
            mc,
            profile=profile,
            problems=problems,
        )
    }
    sqlite_url = f"sqlite:///{work / 'ours.sqlite'}"
    if args.postgres:
        admin, url = pg_create(args.postgres)
        try:
            results["PostgreSQL"] = ours(
                "PostgreSQL",
                url,
                work / "pg",
                docs,
                changed,
                m,
                mc,
                profile=None,
                problems=problems,
            )
        finally:
            if not args.keep:
                pg_drop(admin, url)

    rows = []
    for db, r in results.items():
        tag = "" if db == "SQLite" else f" [{db}]"
        for key, what in (
            ("import", f"import {m['entries']} entries, full dedup"),
            ("reimport", "re-import, same files"),
            ("changed", f"changed files ({mc['replaced']} new)"),
        ):
            a, b = rate(r[key]), rate(naive.get(key))
            rows.append((what + tag, fmt(a), fmt(b), ratio(a, b), TARGETS[key]))
        load = r["load"]
        rows.append(
            (
                f"dedup engine load, {load['records']} items{tag}",
                fmt(load["seconds"], "s"),
                "-",
                "-",
                TARGETS["load"],
            )
        )
        rss_naive = naive["import"]["peak_rss_mib"] if naive else None
        rows.append(
            (
                "peak RSS, import process" + tag,
                fmt(r["import"]["peak_rss_mib"], "MiB"),
                fmt(rss_naive, "MiB"),
                ratio(r["import"]["peak_rss_mib"], rss_naive),
                "",
            )
        )
    print()
    print(table(rows))
    print()
    for db, r in results.items():
        parts = ", ".join(
            f"{k} {r[k]['seconds']:.2f} s (wall {r[k]['wall']:.2f} s, {r[k].get('new', 0)} new)"
            for k in ("import", "reimport", "changed")
        )
        print(f"{db}: {parts}")
    for key, r in naive.items():
        print(f"naive {key}: {r['seconds']:.2f} s, {r['new']} new rows")
    print("\nclustering quality after (b), SQLite, against the workload's ground truth:")
    print(quality(sqlite_url, m))
    if profile is not None and profile.exists():
        print("\nprofile of (b), top 15 by cumulative time:")
        print(profile.read_text(encoding="utf-8"))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if workload.code_fingerprint() != fingerprint:
        problems.append(
            f"the aggregator sources changed during the run ({fingerprint} -> "
            f"{workload.code_fingerprint()}): the figures mix two versions"
        )
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
