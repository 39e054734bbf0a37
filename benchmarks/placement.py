"""Placement cost per item against the number of items the engine holds.

    python benchmarks/placement.py [--sizes 3000,10000,100000] [--batch 1000] [--keep DIR]
        [--items N] [--window-days 365] [--profile N] [--seed 1]

One workload (``workload.py``, generated as ``ingest.py`` does, with ``max(sizes) + batch``
items; ``--items`` to reuse a bigger one; ``--keep DIR`` reuses ``DIR/docs`` and the parsed items
cached in ``DIR/items.pickle``)
is parsed and normalised once, its items sorted by publish time and placed one by one into one
in-memory engine (``Engine.add`` with the text, as ``cluster-file`` does), every window
``--window-days`` long so nothing leaves memory: at each size N the engine holds N items,
and the next ``--batch`` items are timed (CPU time per item), then placing goes on to the
next size. Per item it prints the whole ``add``, the features (``Engine._features``) and
placement = the rest, and the story and thread candidates each item met: what the story index
proposed and what was scored (a source's first items, placed again as its chrome is learned,
count too). At the end, the BCubed F1 per level of every item placed against the workload's
truth (what the candidate cuts cost in quality at scale). ``--profile`` prints a cProfile top
20 of one more batch at the largest size (the most expensive functions by own CPU time).

Issue 22's target: placement <= 0.5 ms per item with 100k items held.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pickle
import pstats
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import workload  # noqa: E402
from ingest import ensure_workload  # noqa: E402

from aggregator.dedup.engine import DedupItem, Engine, Settings  # noqa: E402
from aggregator.dedup.service import _dedup_item, _SourceRow  # noqa: E402


def load_items(work: Path, items: int, seed: int) -> tuple[list[tuple[DedupItem, str, str]], dict]:
    """The workload's unique items as the daemon would hand them to the engine, in publish
    order, each with its guid (cached: parsing 100k entries takes minutes); and the
    workload's manifest."""
    from aggregator.normaliser import normalise_feed
    from aggregator.parser import detect_source_type, parse_feed

    params = workload.Params(items=items, seed=seed)
    cache = work / "items.pickle"
    manifest = ensure_workload(work / "docs", params, 0.0)
    key = ("items with guids", manifest["generator"], manifest["params"])
    if cache.exists():
        cached_key, rows = pickle.loads(cache.read_bytes())
        if cached_key == key:
            return rows, manifest
    now = datetime(2030, 1, 1, tzinfo=UTC)
    seen: set[tuple[str, str]] = set()
    rows = []
    for path in workload.document_paths(work / "docs"):
        source = path.name.split("-part")[0]
        feed = parse_feed(path.read_bytes(), url=path.resolve().as_uri())
        kind = detect_source_type(feed)
        for it in normalise_feed(feed, source_type=kind, fetched_at=now):
            if (source, it.guid) in seen:  # a later part repeats the end of the one before
                continue
            seen.add((source, it.guid))
            stored = SimpleNamespace(id=len(rows) + 1, **asdict(it))  # as the store would hold it
            item = _dedup_item(stored, _SourceRow(source, kind))  # type: ignore[arg-type]
            rows.append((item, it.text, it.guid))
    rows.sort(key=lambda r: (r[0].published_at, r[0].id))
    rows = [(replace(item, id=n), text, guid) for n, (item, text, guid) in enumerate(rows, 1)]
    cache.write_bytes(pickle.dumps((key, rows), protocol=pickle.HIGHEST_PROTOCOL))
    return rows, manifest


def quality(engine: Engine, rows: list[tuple[DedupItem, str, str]], manifest: dict) -> str:
    """BCubed F1 per level of the items placed so far against the workload's truth: the
    original a copy was made of, the event, the event's topic."""
    from aggregator.dedup.evaluate import score

    truth, dup_of, topic = manifest["truth"], manifest["duplicate_of"], manifest["event_topic"]
    gold = {"duplicate": {}, "story": {}, "thread": {}}
    pred: dict[str, dict[str, str]] = {lv: {} for lv in gold}
    for item, _, guid in rows:
        if item.id not in engine.records or guid not in truth:
            continue
        key = str(item.id)
        gold["duplicate"][key] = dup_of.get(guid, guid)
        gold["story"][key] = str(truth[guid])
        gold["thread"][key] = str(topic[truth[guid]])
        for level in gold:
            pred[level][key] = str(engine.cluster_of[level][item.id])
    return "  ".join(f"{level} {score(pred[level], gold[level]).bcubed_f1:.4f}" for level in gold)


class Meter:
    """Counts, around the engine's own methods, what each timed item cost and met."""

    def __init__(self, engine: Engine) -> None:
        self.features_s = 0.0
        self.proposed = 0  # story-index candidates (before the window and top-k cuts)
        self.scored = {"story": 0, "thread": 0}
        features, candidates, near = engine._features, engine._story_candidates, engine._near
        self._last = -1

        def timed_features(rec):  # type: ignore[no-untyped-def]
            t0 = time.process_time()
            features(rec)
            self.features_s += time.process_time() - t0

        def counted_candidates(rec):  # type: ignore[no-untyped-def]
            cached = engine._cands is not None and engine._cands.item_id == rec.item.id
            cands = candidates(rec)
            if not cached:
                self.proposed += len(cands.ids)
            return cands

        def counted_near(rec, window_s):  # type: ignore[no-untyped-def]
            found = near(rec, window_s)  # the story's call comes first, then the thread's
            level = "thread" if self._last == rec.item.id else "story"
            self._last = rec.item.id
            self.scored[level] += len(found)
            return found

        engine._features = timed_features  # type: ignore[method-assign]
        engine._story_candidates = counted_candidates  # type: ignore[method-assign]
        engine._near = counted_near  # type: ignore[method-assign]

    def reset(self) -> None:
        self.features_s, self.proposed = 0.0, 0
        self.scored = {"story": 0, "thread": 0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="3000,10000,100000")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--items", type=int, help="workload size (default: the largest + 2 batches)")
    ap.add_argument("--window-days", type=float, default=365.0)
    ap.add_argument("--profile", type=int, default=20, help="top N of the largest size (0: none)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an engine setting (Settings field), e.g. max_candidates=50")  # fmt: skip
    ap.add_argument("--keep", type=Path, help="work here (reuses the workload and items)")
    args = ap.parse_args(argv)
    sizes = sorted(int(x) for x in args.sizes.split(","))

    work = args.keep or Path(tempfile.mkdtemp(prefix="newsdedup-placement-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows, manifest = load_items(work, args.items or sizes[-1] + 2 * args.batch, args.seed)
    print(f"{len(rows)} items from {work} ({time.perf_counter() - t0:.0f} s to load)")
    window_s = args.window_days * 86400.0
    overrides = {k: float(v) if "." in v else int(v) for k, v in (x.split("=") for x in args.set)}
    settings = Settings(
        **{
            "story_window_s": window_s,
            "thread_window_s": window_s,
            "duplicate_window_s": window_s,
            **overrides,
        }
    )
    engine = Engine(settings)
    meter = Meter(engine)
    print(
        f"code {workload.code_fingerprint()}, every window {args.window_days:g} days {overrides}\n"
    )
    print(f"{'held':>7}  {'add':>7}  {'features':>8}  {'placement':>9}  "
          f"{'proposed':>8}  {'story':>5}  {'thread':>6}  (ms/item; candidates/item)")  # fmt: skip
    done = 0
    started = time.perf_counter()
    for size in sizes:
        if size + args.batch > len(rows):
            print(f"{size:>7}  (the workload has {len(rows)} items)")
            break
        while done < size:
            item, text, _ = rows[done]
            engine.add(item, text=text)
            engine.drop_texts()
            done += 1
        held = len(engine.records)
        meter.reset()
        t = time.process_time()
        for item, text, _ in rows[done : done + args.batch]:
            engine.add(item, text=text)
            engine.drop_texts()
        total_ms = 1000 * (time.process_time() - t) / args.batch
        feat_ms = 1000 * meter.features_s / args.batch
        done += args.batch
        per = args.batch
        print(
            f"{held:>7}  {total_ms:7.3f}  {feat_ms:8.3f}  {total_ms - feat_ms:9.3f}  "
            f"{meter.proposed / per:8.0f}  {meter.scored['story'] / per:5.0f}  "
            f"{meter.scored['thread'] / per:6.0f}",
            flush=True,
        )
    print(f"\n{done} items placed in {time.perf_counter() - started:.0f} s (wall)")
    print(
        f"BCubed F1 of the {done} against the workload's truth: {quality(engine, rows, manifest)}"
    )
    if args.profile and done + args.batch <= len(rows):
        profiler = cProfile.Profile(time.process_time)  # CPU time: the machine is shared
        profiler.enable()
        for item, text, _ in rows[done : done + args.batch]:
            engine.add(item, text=text)
            engine.drop_texts()
        profiler.disable()
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(args.profile)
        print(f"\nprofile of the next {args.batch} items ({len(engine.records)} held at the end):")
        print(buf.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
