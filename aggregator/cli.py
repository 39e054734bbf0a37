"""The ``aggregator`` command line. Wires config, store and stages; holds no logic of its own.

Errors are one line on stderr and a non-zero exit; ``-v`` adds the traceback. Each command
imports what it uses when it runs, so ``--help`` loads neither config nor database code and
the commands that only read the store load no clustering, fetching or rendering
(tests/test_command_start.py).

Long because it is the whole command surface: one parser and one short function per command;
none of them holds logic that belongs to a stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .domain import LEVELS
from .errors import AggregatorError, InputError
from .redact import redact_url

if TYPE_CHECKING:
    from .config import Config
    from .store import Store

log = logging.getLogger("aggregator")

EXIT_ERROR = 1
EXIT_USAGE = 2


class Context:
    """What a command needs: the parsed args, the config (lazily) and the store (lazily)."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self._config: Config | None = None
        self._store: Store | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from .config import load_config

            self._config = load_config(self.args.config)
        return self._config

    def store(self, *, sync: bool = True) -> Store:
        """Open the store (schema checked) and mirror config sources into it."""
        if self._store is None:
            from .store import open_store

            store = open_store(self.config.database.url)
            try:
                if sync:
                    _sync_sources(store, self.config)
            except BaseException:
                store.close()
                raise
            self._store = store
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _sync_sources(store: Store, config: Config, attempts: int = 3) -> None:
    """Mirror the config into the database. Daemons started together race to add the same
    new sources: the loser's transaction fails on the unique name, and a retry finds them."""
    from sqlalchemy.exc import IntegrityError

    from .store import repo

    for attempt in range(attempts):
        try:
            with store.connect() as conn:
                repo.sync_sources(conn, config.sources, datetime.now(UTC))
            return
        except IntegrityError:
            if attempt == attempts - 1:
                raise


# ---------------------------------------------------------------- commands


def cmd_db_upgrade(ctx: Context) -> int:
    from .store import db as store_db

    url = ctx.config.database.url
    engine = store_db.make_engine(url)
    try:
        before, after = store_db.upgrade(engine)
    finally:
        engine.dispose()
    if before == after:
        print(f"database {redact_url(url)} already at revision {after}", file=ctx.out)
    else:
        print(f"database {redact_url(url)} upgraded {before or '(empty)'} -> {after}", file=ctx.out)
    return 0


def cmd_db_vacuum(ctx: Context) -> int:
    from .retention import vacuum
    from .store.db import database_size

    store = ctx.store()
    before = database_size(store)
    vacuum(store)
    after = database_size(store)
    print(
        f"database {redact_url(ctx.config.database.url)} vacuumed: {_mib(before)} -> {_mib(after)}",
        file=ctx.out,
    )
    return 0


def _mib(size: int | None) -> str:
    return "unknown size" if size is None else f"{size / 2**20:.1f} MiB"


def cmd_status(ctx: Context) -> int:
    from .coordination import clustering_holder
    from .store import db as store_db
    from .store import repo

    store = ctx.store()
    size = store_db.database_size(store)
    with store.connect() as s:  # Core: the read commands start without the ORM
        sources = repo.source_status(s)
        errors = repo.recent_errors(s, limit=10)
        digests = repo.digest_status(s)
        holder = clustering_holder(s, datetime.now(UTC))
    clustering = (
        {"holder": holder[0], "held_until": holder[1].isoformat()} if holder is not None else None
    )
    if ctx.args.json:
        json.dump(
            _redacted(
                {
                    "database": ctx.config.database.url,
                    "database_size_bytes": size,
                    "schema_revision": store_db.head_revision(),
                    "sources": sources,
                    "recent_errors": errors,
                    "digest_runs": digests,
                    "clustering": clustering,
                }
            ),
            ctx.out,
            indent=2,
        )
        ctx.out.write("\n")
        return 0
    print(f"database: {redact_url(ctx.config.database.url)} ({_mib(size)})", file=ctx.out)
    if clustering is not None:
        print(
            f"clustering: daemon {clustering['holder']} "
            f"(lease until {_when(clustering['held_until'])})",
            file=ctx.out,
        )
    if not sources:
        print("no sources configured", file=ctx.out)
        return 0
    rows = [
        [
            s["source"],
            s["type"],
            _state(s),
            _when(s["last_poll_at"]) or "never",
            s["result"] or "-",
            str(s["items"]),
            str(s["comments"]),
            _when(s["next_check_at"]) or "-",
            _clip(redact_url(s["last_error"] or ""), 60),
        ]
        for s in sources
    ]
    _table(
        ctx.out,
        [
            "source",
            "type",
            "state",
            "last poll",
            "result",
            "items",
            "comments",
            "next check",
            "last error",
        ],
        rows,
    )
    for src in sources:
        if src["moved_from"]:
            print(
                f"{src['source']}: moved from {redact_url(src['moved_from'])} to "
                f"{redact_url(src['feed_url'])} (permanent redirect, {src['moved_at']})",
                file=ctx.out,
            )
    aside = [f"{src['source']} {src['set_aside']}" for src in sources if src["set_aside"]]
    if aside:
        print(
            "items set aside, stored but not clustered (placing them raised an error, the log "
            f"names each): {', '.join(aside)}",
            file=ctx.out,
        )
    if digests:
        print("\nrecent digest runs:", file=ctx.out)
        _table(
            ctx.out,
            ["digest", "run", "status", "period end", "attempts", "last error"],
            [
                [
                    d["digest"],
                    str(d["run"]),
                    d["status"],
                    _when(d["period_end_at"]) or "-",
                    str(d["attempts"]),
                    _clip(redact_url(d["last_error"] or ""), 60),
                ]
                for d in digests[:10]
            ],
        )
    return 0


def _state(s: dict[str, Any]) -> str:
    if not s["in_config"] and s.get("origin") != "opml":
        return "removed"
    if not s["enabled"]:
        return "disabled" + (f" ({s['disabled_reason']})" if s["disabled_reason"] else "")
    return f"failing x{s['error_count']}" if s["error_count"] else "ok"


def cmd_items(ctx: Context) -> int:
    from .store import repo

    store = ctx.store()
    with store.connect() as s:
        rows = repo.item_rows(s, limit=ctx.args.limit)
        if ctx.args.format == "jsonl":
            for row in rows:
                ctx.out.write(json.dumps(row, ensure_ascii=False) + "\n")
            return 0
        table = [
            [
                str(r["id"]),
                r["source"],
                r["kind"],
                (r["published_at"] or "")[:16],
                _clip(r["publisher"] or "", 20),
                _clip(r["title"], 70),
            ]
            for r in rows
        ]
    _table(ctx.out, ["id", "source", "kind", "published", "publisher", "title"], table)
    return 0


def cmd_clusters(ctx: Context) -> int:
    from .store import repo

    store = ctx.store()
    with store.connect() as s:
        clusters = repo.list_clusters(s, level=ctx.args.level)
    if ctx.args.format == "jsonl":
        for c in clusters:
            ctx.out.write(json.dumps(c, ensure_ascii=False) + "\n")
        return 0
    rows = [
        [
            str(c["id"]),
            c["level"],
            str(c["size"]),
            _clip(c["members"][0]["title"] if c["members"] else "", 70),
        ]
        for c in clusters
    ]
    _table(ctx.out, ["id", "level", "size", "first item"], rows)
    return 0


def cmd_run(ctx: Context) -> int:
    import signal
    import threading

    from .daemon import Daemon
    from .errors import SchemaError, StoreError

    # A daemon waits for its database instead of dying (and being restarted in a loop):
    # one line per attempt, backing off to a minute. A wrong schema is not worth waiting for.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    wait_s = 2.0
    while True:
        try:
            store = ctx.store()
            break
        except SchemaError:
            raise
        except StoreError as exc:
            log.error("%s; retrying in %.0f s", exc, wait_s)
            if stop.wait(wait_s):
                return 0
            wait_s = min(wait_s * 2, 60.0)
    daemon = Daemon(store, ctx.config)
    daemon.stopping = stop  # a signal during the wait above still counts
    daemon.run_forever()
    return 0


def cmd_poll(ctx: Context) -> int:
    from .coordination import worker_id
    from .fetcher import Fetcher
    from .poller import fetch_settings, poll_round

    store = ctx.store()
    with Fetcher(fetch_settings(ctx.config)) as fetcher:
        outcomes = poll_round(store, ctx.config, fetcher, owner=worker_id(), all_feeds=ctx.args.all)
    for o in outcomes:
        detail = o.error or f"{o.items_seen} entries, {o.items_new} new"
        print(redact_url(f"{o.source}\t{o.result}\t{detail}\t{o.url}"), file=ctx.out)
    placed = _dedup(ctx, store)
    log.info("clustered %d new items", placed)
    failed = [o for o in outcomes if o.failed]
    if not outcomes:
        print("no feeds due", file=ctx.out)
    if failed:
        raise PartialFailure(
            f"{len(failed)} of {len(outcomes)} feeds failed (see `aggregator status`)"
        )
    return 0


def cmd_import(ctx: Context) -> int:
    from pathlib import Path

    from .importer import import_file

    store = ctx.store()
    if ctx.args.source:
        ctx.config.source(ctx.args.source)  # fail early on an unknown name
    failed = 0
    for name in ctx.args.files:
        o = import_file(store, ctx.config, Path(name), source_name=ctx.args.source)
        if o.error:
            failed += 1
            print(f"aggregator: error: {redact_url(o.error)}", file=sys.stderr)
            continue
        note = f" (warning: {o.warning[:120]})" if o.warning else ""
        print(
            f"{o.path}\t{o.source}\t{o.items_seen} entries, {o.items_new} new{note}", file=ctx.out
        )
    placed = _dedup(ctx, store)
    log.info("clustered %s", _n(placed, "new item"))
    if failed:
        raise PartialFailure(f"{failed} of {len(ctx.args.files)} files could not be imported")
    return 0


def _dedup(ctx: Context, store: Store) -> int:
    """Cluster what the command just stored (the same step the daemon runs after each round)."""
    from .dedup.service import DedupService, settings_from

    service = DedupService(store, settings_from(ctx.config.dedup))
    # nothing new (a re-import, a poll of unchanged feeds): no need to load the engine
    return service.process_pending() if service.has_pending() else 0


def cmd_why(ctx: Context) -> int:
    from .dedup.explain import explain, render_explanation
    from .dedup.service import DedupService, settings_from

    store = ctx.store()
    service = DedupService(store, settings_from(ctx.config.dedup))
    service.process_pending()
    report = explain(service, ctx.args.item_a, ctx.args.item_b)
    if ctx.args.json:
        json.dump(report, ctx.out, indent=2, ensure_ascii=False, default=str)
        ctx.out.write("\n")
    else:
        print(render_explanation(report), file=ctx.out)
    return 0


def cmd_split(ctx: Context) -> int:
    from .dedup.corrections import split

    with ctx.store().session() as s:
        result = split(s, ctx.args.cluster, ctx.args.item, datetime.now(UTC))
    print(result.describe(), file=ctx.out)
    return 0


def cmd_merge(ctx: Context) -> int:
    from .dedup.corrections import merge

    with ctx.store().session() as s:
        result = merge(s, ctx.args.cluster_a, ctx.args.cluster_b, datetime.now(UTC))
    print(result.describe(), file=ctx.out)
    return 0


def cmd_cluster_file(ctx: Context) -> int:
    from pathlib import Path

    from .dedup.clusterfile import cluster_rows, read_items, write_jsonl
    from .dedup.service import settings_from

    src = Path(ctx.args.input)
    rows = read_items(src)
    settings = settings_from(ctx.config.dedup) if ctx.args.use_config else None
    pred, _ = cluster_rows(rows, src, settings)
    write_jsonl(Path(ctx.args.output), pred)
    counts = {lv: len({p[lv] for p in pred}) for lv in LEVELS}
    log.info(
        "%d items -> %d duplicate, %d story, %d thread clusters",
        len(pred),
        counts["duplicate"],
        counts["story"],
        counts["thread"],
    )
    return 0


def cmd_eval(ctx: Context) -> int:
    from dataclasses import asdict

    from .dedup.evaluate import evaluate, format_table, read_jsonl

    results = evaluate(
        read_jsonl(ctx.args.pred),
        read_jsonl(ctx.args.labels),
        pred_name=ctx.args.pred,
        labels_name=ctx.args.labels,
    )
    if ctx.args.json:
        json.dump({lv: asdict(sc) for lv, sc in results.items()}, ctx.out, indent=2)
        ctx.out.write("\n")
    else:
        print(format_table(results), file=ctx.out)
    return 0


def cmd_digest_send(ctx: Context) -> int:
    from .digest import deliver_pending, last_slot, plan_run, waiting_runs

    digest = ctx.config.digest(ctx.args.name)
    store = ctx.store()
    _dedup(ctx, store)
    now = datetime.now(UTC)
    results = []
    if ctx.args.now:
        # a run waiting for its retry slot goes first, as recorded (same bytes, same
        # Message-ID); only then is there a question of anything new
        results += deliver_pending(store, ctx.config, name=digest.name, now=now, retry_now=True)
    slot = now if ctx.args.now else last_slot(digest, now)
    if slot is not None:
        plan_run(store, ctx.config, digest, period_end_at=slot, now=now)
    results += deliver_pending(store, ctx.config, name=digest.name, now=now)
    for r in results:
        print(
            redact_url(
                f"{r.digest}\trun {r.run_id}\t{r.result}" + (f"\t{r.error}" if r.error else "")
            ),
            file=ctx.out,
        )
    waiting = [] if results else waiting_runs(store, digest.name)
    for run_id, next_at, error in waiting:
        when = next_at.strftime("%Y-%m-%d %H:%M:%SZ") if next_at else "the next turn"
        print(
            redact_url(
                f"{digest.name}\trun {run_id}\twaiting: retry at {when} (--now sends it now)"
                + (f"\t{error}" if error else "")
            ),
            file=ctx.out,
        )
    if not results and not waiting:
        print(f"{digest.name}: nothing to send", file=ctx.out)
    failed = [r for r in results if r.result != "sent"]
    if failed:
        raise PartialFailure(
            f"digest {digest.name}: {len(failed)} run(s) not sent: {failed[0].error}"
        )
    return 0


def cmd_digest_preview(ctx: Context) -> int:
    from pathlib import Path

    from .digest import _last_success, build_view
    from .render import render_digest

    digest = ctx.config.digest(ctx.args.name)
    store = ctx.store()
    with store.session() as s:
        view, _ = build_view(
            s,
            ctx.config,
            digest,
            period_start_at=_last_success(s, digest.name),
            period_end_at=datetime.now(UTC),
        )
    subject, html, text = render_digest(view)
    if ctx.args.output:
        Path(ctx.args.output).write_text(html, encoding="utf-8")
        print(f"{subject}: {len(view.entries)} entries -> {ctx.args.output}", file=ctx.out)
    else:
        ctx.out.write(text if ctx.args.text else html)
    return 0


def cmd_export(ctx: Context) -> int:
    from .config import parse_duration_s
    from .export import FeedMeta, render_export, served_url
    from .stories import recent_stories

    args = ctx.args
    now = datetime.now(UTC)
    since_at = None
    if args.since:
        try:
            since_at = now - timedelta(seconds=parse_duration_s(args.since))
        except ValueError as exc:
            raise InputError(f"--since: {exc}") from None
    if args.limit < 1:
        raise InputError("--limit must be at least 1")
    with ctx.store().session() as s:
        stories = recent_stories(s, level=args.level, since_at=since_at, limit=args.limit)
    base = ctx.config.http.base_url
    meta = FeedMeta(
        level=args.level,
        generated_at=now,
        base_url=base,
        self_url=served_url(base, args.format, args.level, args.since),
    )
    data = render_export(args.format, stories, meta)
    if args.output:
        _write_atomically(args.output, data)
        print(f"{len(stories)} {args.level} clusters -> {args.output}", file=sys.stderr)
    else:
        ctx.out.write(data.decode("utf-8"))
    return 0


def _write_atomically(path: str, data: bytes) -> None:
    """Readers of the file (a web server, a cron job) never see half a document."""
    from pathlib import Path

    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_opml_import(ctx: Context) -> int:
    from pathlib import Path

    from .opml import import_feeds, read_opml

    path = Path(ctx.args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        doc = read_opml(data)  # before the store: a bad file changes nothing
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    store = ctx.store()
    with store.session() as s:
        report = import_feeds(s, doc.feeds, datetime.now(UTC))
    for o in report.outcomes:
        if o.action == "added":
            note = f"\trenamed: {o.feed.name!r} is taken" if o.renamed else ""
            print(redact_url(f"added\t{o.name}\t{o.feed.type}\t{o.feed.url}{note}"), file=ctx.out)
        else:
            print(
                redact_url(
                    f"skipped\t{o.feed.name}\t{o.feed.type}\t{o.feed.url}"
                    f"\talready present as {o.name!r}"
                ),
                file=ctx.out,
            )
    for sk in doc.skipped:
        print(redact_url(f"skipped\t{sk.name}\t-\t{sk.url}\t{sk.reason}"), file=ctx.out)
    renamed = f" ({len(report.renamed)} renamed)" if report.renamed else ""
    print(
        f"{path}: {len(report.added)} added{renamed}, {len(report.present)} already present, "
        f"{len(doc.skipped)} skipped",
        file=ctx.out,
    )
    return 0


def cmd_opml_export(ctx: Context) -> int:
    from pathlib import Path

    from .opml import export_sources, render_opml

    store = ctx.store()
    with store.session() as s:
        sources = export_sources(s)
    data = render_opml(sources, now=datetime.now(UTC))
    if ctx.args.output:
        try:
            Path(ctx.args.output).write_bytes(data)
        except OSError as exc:
            raise InputError(f"cannot write {ctx.args.output}: {exc.strerror or exc}") from exc
        print(f"{len(sources)} sources -> {ctx.args.output}", file=ctx.out)
        return 0
    binary = getattr(ctx.out, "buffer", None)  # the bytes as rendered, whatever the locale
    if binary is None:
        ctx.out.write(data.decode("utf-8"))
    else:
        ctx.out.flush()
        binary.write(data)
        binary.flush()
    return 0


def cmd_sources_list(ctx: Context) -> int:
    from .store import repo

    with ctx.store().connect() as s:
        sources = repo.source_status(s)
    rows = [
        {
            "name": x["source"],
            "type": x["type"],
            "origin": x["origin"] if x["in_config"] or x["origin"] == "opml" else "removed",
            "enabled": bool(x["enabled"]),
            "items": x["items"],
            "url": redact_url(x["url"]),
        }
        for x in sources
    ]
    if ctx.args.json:
        json.dump(rows, ctx.out, indent=2, ensure_ascii=False)
        ctx.out.write("\n")
        return 0
    if not rows:
        print("no sources (add them to config.yaml or run `aggregator opml import`)", file=ctx.out)
        return 0
    _table(
        ctx.out,
        ["name", "type", "origin", "enabled", "items", "url"],
        [
            [
                r["name"],
                r["type"],
                r["origin"],
                "yes" if r["enabled"] else "no",
                str(r["items"]),
                r["url"],
            ]
            for r in rows
        ],
    )
    return 0


def _configured(ctx: Context, name: str) -> Any:
    return next((src for src in ctx.config.sources if src.name == name), None)


def cmd_sources_enable(ctx: Context) -> int:
    return _set_enabled(ctx, True)


def cmd_sources_disable(ctx: Context) -> int:
    return _set_enabled(ctx, False)


def _set_enabled(ctx: Context, enabled: bool) -> int:
    from .store import repo

    name = ctx.args.name
    with ctx.store().session() as s:
        changed = repo.set_source_enabled(s, name, enabled, _configured(ctx, name))
    state = "enabled" if enabled else "disabled"
    if not changed:
        print(f"source {name!r} was already {state}", file=ctx.out)
    elif enabled:
        print(f"source {name!r} enabled: its feeds are polled from the next round", file=ctx.out)
    else:
        print(
            f"source {name!r} disabled: its feeds are no longer polled (its items stay; "
            f"`aggregator sources enable {name}` undoes this)",
            file=ctx.out,
        )
    return 0


def cmd_sources_remove(ctx: Context) -> int:
    from .store import repo

    name = ctx.args.name
    with ctx.store().session() as s:
        row = repo.get_source(s, name)
        if row.in_config and row.origin == "config":
            raise InputError(
                f"source {name!r} is in config.yaml: remove it there (it would come back at "
                "the next start), then run this again to delete its stored items"
            )
        plan = repo.plan_removal(s, name)
    what = (
        f"{_n(plan.feeds, 'feed')}, {_n(plan.articles, 'article')} and "
        f"{_n(plan.comments, 'comment')} with their cluster memberships"
    )
    if (plan.articles or plan.comments) and not ctx.args.yes:
        raise InputError(
            f"source {name!r} has stored items; removing it deletes {what}: "
            f"run `aggregator sources remove {name} --yes` to do so, or "
            f"`aggregator sources disable {name}` to stop polling it and keep them"
        )
    with ctx.store().session() as s:
        done = repo.remove_source(s, name, datetime.now(UTC))
    emptied = (
        f"; {_n(done.clusters_emptied, 'cluster')} left empty deleted"
        if done.clusters_emptied
        else ""
    )
    print(
        f"removed source {name!r}: deleted {_n(done.feeds, 'feed')}, {_n(done.articles, 'article')} "
        f"and {_n(done.comments, 'comment')}{emptied}",
        file=ctx.out,
    )
    return 0


class PartialFailure(AggregatorError):
    """Some of the work failed; each failure was already reported."""


# ---------------------------------------------------------------- output helpers


def _redacted(value: Any) -> Any:
    """Every string of a JSON document through :func:`redact_url`."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def _when(iso: str | None) -> str | None:
    """A stored ISO time as a reader wants it: UTC, to the second (``2026-12-07 02:31:05Z``)."""
    if not iso:
        return None
    at = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header).rstrip(), file=out)
    for r in rows:
        print(fmt.format(*r).rstrip(), file=out)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aggregator",
        description="newsdedup: a deduplicating news RSS aggregator.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $AGGREGATOR_CONFIG or ./config.yaml)",
    )
    verbosity = p.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging; tracebacks on errors"
    )
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=None,
        help="log line format (default text)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[[Context], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    add("run", cmd_run, "run the daemon: poll, dedup, digest")
    sp = add("poll", cmd_poll, "poll sources")
    sp.add_argument(
        "--once",
        action="store_true",
        required=True,
        help="run one round over the due sources and exit",
    )
    sp.add_argument("--all", action="store_true", help="poll every source, due or not")
    sp = add(
        "import",
        cmd_import,
        "ingest saved feed documents through the polling pipeline",
    )
    sp.add_argument("files", nargs="+", metavar="FILE", help="RSS/Atom/RDF documents saved to disk")
    sp.add_argument("--source", metavar="NAME", help="file the items under this source")

    db = sub.add_parser("db", help="database schema management")
    dbsub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    up = dbsub.add_parser("upgrade", help="apply all schema migrations")
    up.set_defaults(func=cmd_db_upgrade)
    vac = dbsub.add_parser("vacuum", help="give the space of pruned rows back (VACUUM)")
    vac.set_defaults(func=cmd_db_vacuum)

    sp = add("status", cmd_status, "show each source's poll state and errors")
    sp.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    sp = add("items", cmd_items, "list stored items")
    sp.add_argument(
        "--format",
        choices=["table", "jsonl"],
        default="table",
        help="a table (default) or one JSON object per line",
    )
    sp.add_argument("--limit", type=int, default=None, help="at most this many items, oldest first")
    sp = add("clusters", cmd_clusters, "list clusters")
    sp.add_argument("--level", choices=LEVELS, help="only clusters of this level")
    sp.add_argument(
        "--format",
        choices=["table", "jsonl"],
        default="table",
        help="a table (default) or one JSON object per line with the members",
    )
    sp = add(
        "why",
        cmd_why,
        "explain why two items are (or are not) clustered together",
    )
    sp.add_argument("item_a", metavar="ITEM", type=int, help="an item id (see `items`)")
    sp.add_argument("item_b", metavar="ITEM", type=int, help="the other item id")
    sp.add_argument("--json", action="store_true", help="the full report as JSON")
    sp = add(
        "split",
        cmd_split,
        "move an item (with its copies) into a cluster of its own, kept apart from now on",
    )
    sp.add_argument("cluster", metavar="CLUSTER", type=int, help="the cluster the item is in")
    sp.add_argument(
        "item", metavar="ITEM", type=int, help="the item to move out (the split is recorded on it)"
    )
    sp = add(
        "merge",
        cmd_merge,
        "merge two clusters of one level (and the coarser clusters they lie in)",
    )
    sp.add_argument("cluster_a", metavar="A", type=int, help="a cluster id")
    sp.add_argument("cluster_b", metavar="B", type=int, help="a cluster id of the same level as A")
    sp = add(
        "cluster-file",
        cmd_cluster_file,
        "cluster a JSONL file of items offline with the daemon's engine",
    )
    sp.add_argument("input", metavar="IN.jsonl", help="items, one JSON object per line")
    sp.add_argument(
        "-o",
        "--output",
        metavar="OUT.jsonl",
        required=True,
        help="write each item's duplicate, story and thread cluster here",
    )
    sp.add_argument(
        "--use-config",
        action="store_true",
        help="take dedup thresholds from the config (default: built-in defaults)",
    )
    sp = add("eval", cmd_eval, "score predicted clusters against labels")
    sp.add_argument("pred", metavar="PRED.jsonl", help="predicted clusters (`cluster-file` output)")
    sp.add_argument("labels", metavar="LABELS.jsonl", help="the true clusters of the same items")
    sp.add_argument("--json", action="store_true", help="the scores as JSON")

    digest = sub.add_parser("digest", help="digest emails")
    dsub = digest.add_subparsers(dest="digest_command", metavar="SUBCOMMAND", required=True)
    sp = dsub.add_parser("send", help="build and send a digest")
    sp.set_defaults(func=cmd_digest_send)
    sp.add_argument("name", metavar="NAME", help="a digest's name in config.yaml")
    sp.add_argument("--now", action="store_true", help="send immediately, not at the schedule")
    sp = dsub.add_parser("preview", help="render a digest without sending")
    sp.set_defaults(func=cmd_digest_preview)
    sp.add_argument("name", metavar="NAME", help="a digest's name in config.yaml")
    sp.add_argument("--text", action="store_true", help="the plain-text part instead of HTML")
    sp.add_argument("-o", "--output", metavar="FILE", help="write the HTML here (default stdout)")

    sp = add("export", cmd_export, "write a deduplicated feed: one entry per cluster")
    sp.add_argument(
        "--format", choices=["atom", "jsonfeed"], required=True, help="Atom or JSON Feed 1.1"
    )
    sp.add_argument(
        "--level",
        choices=LEVELS,
        default="story",
        help="one entry per cluster of this level (default story)",
    )
    sp.add_argument(
        "--since", metavar="DURATION", help="clusters changed within this time (e.g. 24h)"
    )
    sp.add_argument("--limit", type=int, default=100, help="at most this many entries")
    sp.add_argument("-o", "--output", metavar="FILE", help="write here (default stdout)")

    opml = sub.add_parser("opml", help="OPML import/export of sources")
    osub = opml.add_subparsers(dest="opml_command", metavar="SUBCOMMAND", required=True)
    sp = osub.add_parser("import", help="add the feeds of an OPML file")
    sp.set_defaults(func=cmd_opml_import)
    sp.add_argument("file", metavar="FILE", help="an OPML file (a feed reader's export)")
    sp = osub.add_parser("export", help="write the sources as OPML")
    sp.set_defaults(func=cmd_opml_export)
    sp.add_argument("-o", "--output", metavar="FILE", help="write here (default stdout)")

    sources = sub.add_parser("sources", help="list, disable, enable or remove sources")
    ssub = sources.add_subparsers(dest="sources_command", metavar="SUBCOMMAND", required=True)
    sp = ssub.add_parser(
        "list", help="every source in the database (config and OPML): type, origin, state, items"
    )
    sp.set_defaults(func=cmd_sources_list)
    sp.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    for name, func, text in (
        (
            "disable",
            cmd_sources_disable,
            "stop polling a source (its items stay); lasts across restarts",
        ),
        ("enable", cmd_sources_enable, "poll a disabled source again"),
    ):
        sp = ssub.add_parser(name, help=text, description=text)
        sp.set_defaults(func=func)
        sp.add_argument("name", metavar="NAME", help="the source's name (see `sources list`)")
    text = (
        "delete a source that is not in config.yaml, with its feeds and stored items "
        "(items only with --yes)"
    )
    sp = ssub.add_parser("remove", help=text, description=text)
    sp.set_defaults(func=cmd_sources_remove)
    sp.add_argument("name", metavar="NAME", help="the source's name (see `sources list`)")
    sp.add_argument(
        "--yes", action="store_true", help="also when it has stored items: delete them too"
    )
    return p


# ---------------------------------------------------------------- entry point


class _TextFormatter(logging.Formatter):
    """The standard line, secrets masked (a database or feed URL may be in any message)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_url(super().format(record))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_url(record.getMessage()),
        }
        return json.dumps(data, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (it may have been replaced
    since start-up, e.g. by a test harness), never to a stream closed since."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(verbose: int, quiet: bool, fmt: str | None) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = _StderrHandler(sys.stderr)
    if (fmt or os.environ.get("AGGREGATOR_LOG_FORMAT")) == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    # A round longer than the tick makes APScheduler skip ticks with a warning each time:
    # that is the coalescing we asked for, not news.
    logging.getLogger("apscheduler.scheduler").setLevel(
        logging.DEBUG if verbose > 1 else logging.ERROR
    )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)
    ctx = Context(args, out or sys.stdout)
    try:
        return int(args.func(ctx))
    except AggregatorError as exc:
        _fail(args, exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("aggregator: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        _fail(args, exc, unexpected=True)
        return EXIT_ERROR
    finally:
        ctx.close()


def _fail(args: argparse.Namespace, exc: BaseException, *, unexpected: bool = False) -> None:
    if args.verbose:
        import traceback

        sys.stderr.write(redact_url("".join(traceback.format_exception(exc))))
    text = redact_url(" ".join(str(exc).split())) or type(exc).__name__
    if unexpected:
        text = f"unexpected {type(exc).__name__}: {text} (run with -v for details)"
    print(f"aggregator: error: {text}", file=sys.stderr)


__all__ = ["main", "build_parser", "InputError"]
