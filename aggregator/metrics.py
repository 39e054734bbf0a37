"""Prometheus metrics, derived from the database at scrape time.

Every number comes from the tables, not from in-process counters, so any of several daemons
serves the same figures and a restart loses nothing. :func:`collect` holds the queries and
builds the metric families; prometheus_client writes them (text format 0.0.4) from a registry
made per scrape, so nothing is process-global. prometheus_client is imported inside the
functions that need it: ``retention`` imports this module for its bucket bounds, and commands
that serve no metrics do not pay for the import.

Counters are row counts plus what retention pruned (``pruned_totals``), so pruning never sends
one backwards; they only go down when rows are deleted otherwise (a source removed with its
items, a manual split), which Prometheus reads as a counter reset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from . import __version__, errors
from .domain import ITEM_KINDS, LEVELS
from .errors import StoreError
from .store import Store
from .store.models import (
    Cluster,
    ClusterMember,
    DigestRun,
    Feed,
    Item,
    PollLog,
    PrunedTotal,
    Source,
)

if TYPE_CHECKING:
    from prometheus_client import Metric

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
PREFIX = "newsdedup_"

# poll_log.result values that are not failures: the poller's three, and the importer's.
SUCCESS_RESULTS = ("ok", "not_modified", "unchanged", "imported")
DIGEST_STATUSES = ("sent", "empty", "failed", "pending")
DURATION_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CLUSTER_SIZE_BUCKETS = (1, 2, 3, 5, 10, 20, 50)

Number = int | float


# ---------------------------------------------------------------- the families


@dataclass(frozen=True, slots=True)
class Histogram:
    """One histogram series: cumulative counts per finite bound (``+Inf`` is ``count``)."""

    counts: Sequence[int]
    sum: Number
    count: int


def simple_family(
    name: str,
    type_: str,
    help_: str,
    label_names: Sequence[str],
    values: Mapping[tuple[str, ...], Number],
) -> Metric:
    """A counter (``name`` ends in ``_total``) or gauge: one sample per label-value tuple,
    sorted for a stable output."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    family_of = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}[type_]
    family = family_of(name, help_, labels=label_names)
    for key in sorted(values):
        family.add_metric(key, values[key])
    return family


def histogram_family(
    name: str,
    help_: str,
    bounds: Sequence[Number],
    label_names: Sequence[str],
    series: Mapping[tuple[str, ...], Histogram],
) -> Metric:
    """A histogram, one series per label-value tuple. ``le`` is written as the bound is
    (``1``, not ``1.0``): a bucket's label values are part of its series' identity."""
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, help_, labels=label_names)
    les = [str(b) for b in bounds] + ["+Inf"]
    for key in sorted(series):
        h = series[key]
        family.add_metric(key, list(zip(les, [*h.counts, h.count], strict=True)), h.sum)
    return family


def error_kinds() -> list[str]:
    """Every ``kind`` a poll can fail with, so each error series exists (at 0) before the
    first such error: ``increase()`` misses the first increment of a new series."""
    kinds: set[str] = set()
    todo: list[type[errors.SourceError]] = [errors.SourceError]
    while todo:
        cls = todo.pop()
        kinds.add(cls.kind)
        todo.extend(cls.__subclasses__())
    return sorted(kinds)


# ---------------------------------------------------------------- the queries


def _bucket_counts(
    column: ColumnElement[int], thresholds: Sequence[int]
) -> list[ColumnElement[int]]:
    """``SUM(CASE WHEN column <= t THEN 1 ELSE 0 END)`` per threshold: cumulative by design."""
    return [func.coalesce(func.sum(case((column <= t, 1), else_=0)), 0) for t in thresholds]


def _pruned(s: Session, metric: str) -> dict[str, int]:
    """What rows pruned by retention had counted (see ``retention``): added back, so a
    counter never goes backwards."""
    rows = s.execute(
        select(PrunedTotal.label, PrunedTotal.value).where(PrunedTotal.metric == metric)
    )
    return {label: int(v) for label, v in rows}


def _poll_results(s: Session) -> dict[str, int]:
    rows = s.execute(select(PollLog.result, func.count()).group_by(PollLog.result))
    out = _pruned(s, "polls")
    for result, n in rows:
        out[result] = out.get(result, 0) + int(n)
    return out


def _poll_durations(s: Session) -> Histogram:
    thresholds_ms = [round(b * 1000) for b in DURATION_BUCKETS_S]
    row = s.execute(
        select(
            *_bucket_counts(PollLog.duration_ms, thresholds_ms),
            func.coalesce(func.sum(PollLog.duration_ms), 0),
            func.count(),
        ).where(PollLog.result != "imported")  # file imports take no network time
    ).one()
    *counts, total_ms, count = (int(v) for v in row)
    gone = _pruned(s, "poll_duration")
    counts = [c + gone.get(f"le_{t}", 0) for c, t in zip(counts, thresholds_ms, strict=True)]
    total_ms += gone.get("sum_ms", 0)
    count += gone.get("count", 0)
    return Histogram(counts, total_ms / 1000, count)


def _cluster_sizes(s: Session) -> dict[str, Histogram]:
    live = (Cluster.merged_into_id.is_(None), Cluster.size > 0)
    rows = s.execute(
        select(
            Cluster.level,
            *_bucket_counts(Cluster.size, CLUSTER_SIZE_BUCKETS),
            func.coalesce(func.sum(Cluster.size), 0),
            func.count(),
        )
        .where(*live)
        .group_by(Cluster.level)
    )
    out = {level: Histogram([0] * len(CLUSTER_SIZE_BUCKETS), 0, 0) for level in LEVELS}
    for level, *rest in rows:
        *counts, total, count = (int(v) for v in rest)
        out[level] = Histogram(counts, total, count)
    return out


def _grouped(s: Session, *columns: ColumnElement[Any]) -> dict[tuple[Any, ...], int]:
    rows = s.execute(select(*columns, func.count()).group_by(*columns))
    return {tuple(row[:-1]): int(row[-1]) for row in rows}


def _sources(s: Session) -> dict[str, int]:
    """A source removed from the config is disabled, whatever its ``enabled`` column says
    (``sync_sources`` disables its feeds); import-derived sources are stored disabled."""
    out = {"enabled": 0, "disabled": 0}
    for (enabled, in_config, origin), n in _grouped(
        s, Source.enabled, Source.in_config, Source.origin
    ).items():
        live = bool(enabled) and (bool(in_config) or origin != "config")
        out["enabled" if live else "disabled"] += n
    return out


def _feeds_due(s: Session, now: datetime) -> int:
    """What a polling round would claim now (leases aside): ``coordination.claim_due_feeds``."""
    stmt = (
        select(func.count())
        .select_from(Feed)
        .join(Source, Source.id == Feed.source_id)
        .where(Feed.enabled.is_(True), Source.enabled.is_(True), Feed.next_check_at <= now)
    )
    return int(s.scalar(stmt) or 0)


def _duplicates(s: Session) -> dict[tuple[str, ...], int]:
    """Memberships that joined an existing cluster (``method`` other than ``new``)."""
    rows = s.execute(
        select(ClusterMember.level, func.count())
        .where(ClusterMember.method != "new")
        .group_by(ClusterMember.level)
    )
    return {(level,): int(n) for level, n in rows}


def collect(s: Session, now: datetime) -> list[Metric]:
    """Query everything and build the families (each once, with a fixed label set; known
    label values are present at 0 so their series exist before the first event)."""
    results = _poll_results(s)
    for label in (*SUCCESS_RESULTS, *error_kinds()):
        results.setdefault(label, 0)
    failures = {r: n for r, n in results.items() if r not in SUCCESS_RESULTS}

    items = dict.fromkeys(ITEM_KINDS, 0) | _pruned(s, "items")
    pending = 0
    for (kind, state), n in _grouped(s, Item.kind, Item.dedup_state).items():
        items[kind] = items.get(kind, 0) + n
        pending += n if state == "pending" else 0

    duplicates = {(level,): 0 for level in LEVELS} | _duplicates(s)
    for level, n in _pruned(s, "duplicates").items():
        duplicates[(level,)] = duplicates.get((level,), 0) + n
    sizes = _cluster_sizes(s)

    runs: dict[tuple[str, ...], int] = {}
    gone = {tuple(reversed(k.split(":", 1))): n for k, n in _pruned(s, "digest_runs").items()}
    for (name, status), n in [
        *_grouped(s, DigestRun.digest_name, DigestRun.status).items(),
        *gone.items(),
    ]:
        runs.update({(name, st): 0 for st in DIGEST_STATUSES if (name, st) not in runs})
        runs[(name, status)] += n

    sources = _sources(s)
    last_poll = s.scalar(select(func.max(PollLog.started_at)))

    p = PREFIX
    fams = [
        simple_family(p + "up", "gauge", "1 when the database answered.", (), {(): 1}),
        _build_info(),
        simple_family(
            p + "polls_total",
            "counter",
            "Polls (poll_log rows) by result: ok, not_modified, unchanged, imported or the "
            "error kind.",
            ("result",),
            {(r,): n for r, n in results.items()},
        ),
        simple_family(
            p + "poll_errors_total",
            "counter",
            "Failed polls by error kind.",
            ("kind",),
            {(k,): n for k, n in failures.items()},
        ),
        histogram_family(
            p + "poll_duration_seconds",
            "Duration of polls over the network (poll_log.duration_ms; file imports excluded).",
            DURATION_BUCKETS_S,
            (),
            {(): _poll_durations(s)},
        ),
        simple_family(
            p + "items_stored_total",
            "counter",
            "Items stored, by kind.",
            ("kind",),
            {(k,): n for k, n in items.items()},
        ),
        simple_family(
            p + "items_pending_dedup",
            "gauge",
            "Stored items not yet placed in clusters.",
            (),
            {(): pending},
        ),
        simple_family(
            p + "duplicates_found_total",
            "counter",
            "Items that joined an existing cluster, by level.",
            ("level",),
            duplicates,
        ),
        simple_family(
            p + "clusters",
            "gauge",
            "Live clusters (not merged away, not empty), by level.",
            ("level",),
            {(level,): h.count for level, h in sizes.items()},
        ),
        histogram_family(
            p + "cluster_size",
            "Size of live clusters, by level.",
            CLUSTER_SIZE_BUCKETS,
            ("level",),
            {(level,): h for level, h in sizes.items()},
        ),
        simple_family(
            p + "digest_runs_total",
            "counter",
            "Digest runs by digest and status.",
            ("digest", "status"),
            runs,
        ),
        simple_family(
            p + "sources",
            "gauge",
            "Sources by state (removed from the config counts as disabled).",
            ("state",),
            {(st,): n for st, n in sources.items()},
        ),
        simple_family(
            p + "feeds_due",
            "gauge",
            "Enabled feeds of enabled sources whose next check is due.",
            (),
            {(): _feeds_due(s, now)},
        ),
    ]
    if last_poll is not None:
        fams.append(
            simple_family(
                p + "last_poll_timestamp_seconds",
                "gauge",
                "Start of the latest poll, as Unix time.",
                (),
                {(): last_poll.timestamp()},
            )
        )
    return fams


def _build_info() -> Metric:
    return simple_family(
        PREFIX + "build_info",
        "gauge",
        "The running newsdedup version.",
        ("version",),
        {(__version__,): 1},
    )


def _unavailable() -> list[Metric]:
    return [
        simple_family(PREFIX + "up", "gauge", "1 when the database answered.", (), {(): 0}),
        _build_info(),
    ]


class StoreCollector:
    """A custom collector (prometheus_client's protocol: ``collect`` yields metric families)
    that reads the store at each collection. A database that cannot be reached yields
    ``newsdedup_up 0`` (the exporter convention) rather than an exception; other errors are
    bugs and raise.

    On PostgreSQL the queries share one REPEATABLE READ snapshot, so families agree with
    each other (polls_total sums to the duration histogram's count); SQLite reads each
    statement separately.
    """

    def __init__(self, store: Store, now: datetime | None = None) -> None:
        self.store = store
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now or datetime.now(UTC)
        try:
            with self.store.session() as s:
                if self.store.dialect == "postgresql":
                    s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                families = collect(s, now)
        except StoreError as exc:
            log.warning("metrics: %s", exc)
            families = _unavailable()
        yield from families


def render_metrics(store: Store, *, now: datetime | None = None) -> bytes:
    """The ``/metrics`` body, from a registry made for this scrape."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, now))
    return generate_latest(registry)


__all__ = ["CONTENT_TYPE", "StoreCollector", "render_metrics"]
