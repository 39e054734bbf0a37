"""Prometheus metrics (text exposition format 0.0.4), derived from the database at scrape time.

Every number comes from the tables, not from in-process counters, so any of several daemons
serves the same figures and a restart loses nothing. The text format is written here (it is
small): :func:`render_text` and the family builders are pure; :func:`collect` holds the queries.

Counters are row counts, so they only go down when rows are deleted (a source removed with its
items, a manual split); Prometheus reads such a drop as a counter reset.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "newsdedup_"

# poll_log.result values that are not failures: the poller's three, and the importer's.
SUCCESS_RESULTS = ("ok", "not_modified", "unchanged", "imported")
DIGEST_STATUSES = ("sent", "empty", "failed", "pending")
DURATION_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CLUSTER_SIZE_BUCKETS = (1, 2, 3, 5, 10, 20, 50)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TYPES = ("counter", "gauge", "histogram")

Labels = tuple[tuple[str, str], ...]
Number = int | float


# ---------------------------------------------------------------- the text format (pure)


@dataclass(frozen=True, slots=True)
class Sample:
    name: str  # the full sample name, e.g. ``…_bucket`` for a histogram
    labels: Labels
    value: Number


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str
    help: str
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class Histogram:
    """One histogram series: cumulative counts per finite bound (``+Inf`` is ``count``)."""

    counts: Sequence[int]
    sum: Number
    count: int


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes only backslash and newline (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: Number) -> str:
    """Go-parsable numbers: ints as written, floats by repr, and the spec's Inf/NaN spelling."""
    if isinstance(value, bool):
        raise TypeError("a metric value cannot be a bool")
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
    return "{" + inner + "}"


def render_text(families: Iterable[Family]) -> str:
    """The exposition text. Refuses what Prometheus would reject: a family named twice, a bad
    metric or label name, samples of one family with different label names."""
    lines: list[str] = []
    seen: set[str] = set()
    for fam in families:
        if fam.name in seen:
            raise ValueError(f"metric family {fam.name} appears twice")
        if not _NAME.match(fam.name) or fam.type not in _TYPES:
            raise ValueError(f"bad metric family {fam.name!r} of type {fam.type!r}")
        seen.add(fam.name)
        lines.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        keys: dict[str, tuple[str, ...]] = {}
        for s in fam.samples:
            names = tuple(k for k, _ in s.labels if k != "le")
            if keys.setdefault(s.name, names) != names:
                raise ValueError(f"{s.name}: inconsistent label names {names}")
            if not all(_LABEL.match(k) for k, _ in s.labels):
                raise ValueError(f"{s.name}: bad label name in {s.labels}")
            lines.append(f"{s.name}{_labels(s.labels)} {format_value(s.value)}")
    return "\n".join(lines) + "\n"


def simple_family(
    name: str,
    type_: str,
    help_: str,
    label_names: Sequence[str],
    values: Mapping[tuple[str, ...], Number],
) -> Family:
    """A counter or gauge: one sample per label-value tuple, sorted for a stable output."""
    samples = tuple(
        Sample(name, tuple(zip(label_names, key, strict=True)), values[key])
        for key in sorted(values)
    )
    return Family(name, type_, help_, samples)


def histogram_family(
    name: str,
    help_: str,
    bounds: Sequence[Number],
    label_names: Sequence[str],
    series: Mapping[tuple[str, ...], Histogram],
) -> Family:
    """A histogram: per series the ``_bucket`` lines (ending ``le="+Inf"`` = count), then
    ``_sum`` and ``_count``. The counts must already be cumulative."""
    samples: list[Sample] = []
    for key in sorted(series):
        h = series[key]
        if len(h.counts) != len(bounds):
            raise ValueError(f"{name}: {len(h.counts)} counts for {len(bounds)} bounds")
        cumulative = [*h.counts, h.count]
        if any(a > b for a, b in zip(cumulative, cumulative[1:], strict=False)):
            raise ValueError(f"{name}{key}: bucket counts are not cumulative: {cumulative}")
        labels = tuple(zip(label_names, key, strict=True))
        les = [format_value(b) for b in bounds] + ["+Inf"]
        for le, n in zip(les, cumulative, strict=True):
            samples.append(Sample(f"{name}_bucket", (*labels, ("le", le)), n))
        samples.append(Sample(f"{name}_sum", labels, h.sum))
        samples.append(Sample(f"{name}_count", labels, h.count))
    return Family(name, "histogram", help_, tuple(samples))


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
    """What a polling round would claim now (leases aside): ``poller.claim_due_feeds``."""
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


def collect(s: Session, now: datetime) -> list[Family]:
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
    for (name, status), n in _grouped(s, DigestRun.digest_name, DigestRun.status).items():
        runs.update({(name, st): 0 for st in DIGEST_STATUSES if (name, st) not in runs})
        runs[(name, status)] = n

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


def _build_info() -> Family:
    return simple_family(
        PREFIX + "build_info",
        "gauge",
        "The running newsdedup version.",
        ("version",),
        {(__version__,): 1},
    )


def _unavailable() -> list[Family]:
    return [
        simple_family(PREFIX + "up", "gauge", "1 when the database answered.", (), {(): 0}),
        _build_info(),
    ]


def render_metrics(store: Store, *, now: datetime | None = None) -> bytes:
    """The ``/metrics`` body. A database that cannot be reached yields ``newsdedup_up 0``
    (the exporter convention) rather than an exception; other errors are bugs and raise.

    On PostgreSQL the queries share one REPEATABLE READ snapshot, so families agree with
    each other (polls_total sums to the duration histogram's count); SQLite reads each
    statement separately.
    """
    now = now or datetime.now(UTC)
    try:
        with store.session() as s:
            if store.dialect == "postgresql":
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            families = collect(s, now)
    except StoreError as exc:
        log.warning("metrics: %s", exc)
        families = _unavailable()
    return render_text(families).encode("utf-8")


__all__ = ["CONTENT_TYPE", "render_metrics"]
