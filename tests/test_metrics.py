"""``/metrics``: the text format on its own, then the numbers against a real store.

The store is filled the way the daemon fills it (fixture feeds imported and clustered, feeds
polled from a local HTTP server, including failures), plus a few hand-made rows where exact
values matter (poll durations on bucket bounds, digest runs). Every figure is checked against
a count made in Python from the rows themselves, and the whole output against a strict parser.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from conftest import FEEDS
from helpers import fill, make_config, sync
from prometheus_client import CollectorRegistry, generate_latest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from aggregator import __version__
from aggregator.config import Config
from aggregator.dedup.service import DedupService
from aggregator.fetcher import Fetcher
from aggregator.importer import import_file
from aggregator.metrics import (
    CLUSTER_SIZE_BUCKETS,
    CONTENT_TYPE,
    DURATION_BUCKETS_S,
    Histogram,
    histogram_family,
    render_metrics,
    simple_family,
)
from aggregator.poller import fetch_settings, poll_round
from aggregator.store import Store
from aggregator.store.db import make_engine
from aggregator.store.models import Cluster, ClusterMember, DigestRun, Feed, Item, PollLog, Source

# ---------------------------------------------------------------- a strict parser

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)')
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]Inf$|^NaN$")
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass
class Parsed:
    type: str = ""
    help: str | None = None
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)


def _unescape(raw: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) not in _ESCAPES:
            raise AssertionError(f"bad escape {m.group(0)!r}")
        return _ESCAPES[m.group(0)]

    return re.sub(r"\\.", sub, raw)


def _labels(raw: str | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while raw and pos < len(raw):
        m = _LABEL.match(raw, pos)
        assert m, f"bad labels {raw!r} at {pos}"
        out.append((m.group(1), _unescape(m.group(2))))
        pos = m.end()
    assert len({k for k, _ in out}) == len(out), f"repeated label in {raw!r}"
    return out


def _family_of(sample: str, families: dict[str, Parsed]) -> str:
    if sample in families:
        return sample
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and families.get(base, Parsed()).type == "histogram":
            return base
    raise AssertionError(f"sample {sample} has no HELP/TYPE before it")


def parse_exposition(text: str) -> dict[str, Parsed]:
    """Text format 0.0.4, strictly: HELP and TYPE once per family before its samples, families
    contiguous, each series once, one label set per sample name, valid histograms."""
    assert text.endswith("\n") and "\n\n" not in text
    families: dict[str, Parsed] = {}
    closed: set[str] = set()
    current: str | None = None
    label_names: dict[str, tuple[str, ...]] = {}
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$", line)
            assert m, f"stray comment {line!r}"
            what, name, rest = m.groups()
            fam = families.setdefault(name, Parsed())
            assert name not in closed and not fam.samples, f"{name}: {what} after samples"
            if what == "HELP":
                assert fam.help is None, f"{name}: HELP twice"
                fam.help = _unescape(rest)
            else:
                assert not fam.type and rest in ("counter", "gauge", "histogram"), line
                fam.type = rest
            if current is not None and current != name:
                closed.add(current)
            current = name
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, raw_labels, raw_value = m.groups()
        assert _NUMBER.match(raw_value), f"bad value in {line!r}"
        fam_name = _family_of(name, families)
        fam = families[fam_name]
        assert fam.type and fam.help is not None, f"{name}: HELP or TYPE missing before it"
        assert fam_name == current, f"{name}: family {fam_name} is not contiguous"
        labels = _labels(raw_labels)
        names = tuple(k for k, _ in labels if k != "le")
        assert label_names.setdefault(name, names) == names, f"{name}: label sets differ"
        has_le = any(k == "le" for k, _ in labels)
        assert has_le == (fam.type == "histogram" and name.endswith("_bucket")), line
        key = (name, frozenset(labels))
        assert key not in fam.samples, f"series twice: {line!r}"
        fam.samples[key] = float(raw_value)
    for name, fam in families.items():
        assert fam.type and fam.help is not None, f"{name}: HELP or TYPE missing"
        if fam.type == "histogram":
            _check_histogram(name, fam, text)
    return families


def _check_histogram(name: str, fam: Parsed, text: str) -> None:
    series: dict[frozenset[tuple[str, str]], list[tuple[str, float]]] = {}
    for (sample, labels), value in fam.samples.items():
        if sample == f"{name}_bucket":
            le = dict(labels)["le"]
            series.setdefault(labels - {("le", le)}, []).append((le, value))
    assert series, f"{name}: no buckets"
    for labels, buckets in series.items():
        # dicts keep insertion order: this is document order
        bounds = [float(le) for le, _ in buckets]
        counts = [v for _, v in buckets]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), name
        assert buckets[-1][0] == "+Inf", f"{name}{set(labels)}: last bucket is not +Inf"
        assert counts == sorted(counts), f"{name}{set(labels)}: buckets not cumulative"
        assert fam.samples[(f"{name}_count", labels)] == counts[-1], f"{name}: +Inf != _count"
        assert (f"{name}_sum", labels) in fam.samples, f"{name}: _sum missing"


def value(fams: dict[str, Parsed], sample: str, **labels: str) -> float:
    fam = fams[_family_of(sample, fams)]
    return fam.samples[(sample, frozenset(labels.items()))]


def by_label(fams: dict[str, Parsed], sample: str, label: str) -> dict[str, float]:
    fam = fams[_family_of(sample, fams)]
    return {dict(ls)[label]: v for (n, ls), v in fam.samples.items() if n == sample}


def buckets(fams: dict[str, Parsed], name: str, **labels: str) -> list[float]:
    fam = fams[name]
    want = set(labels.items())
    found = [
        (float(dict(ls)["le"]), v)
        for (n, ls), v in fam.samples.items()
        if n == f"{name}_bucket" and set(ls) - {("le", dict(ls)["le"])} == want
    ]
    return [v for _, v in sorted(found)]


def expected_buckets(values: list[float], bounds: tuple[float, ...]) -> list[int]:
    """Cumulative counts per bound (``<=``) and +Inf, counted in Python."""
    ordered = sorted(values)
    return [bisect_left(ordered, b + 1e-9) for b in bounds] + [len(ordered)]


# ---------------------------------------------------------------- the families, no database


def written(*families: object) -> str:
    """The families as prometheus_client writes them (the same way ``render_metrics`` does)."""

    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            yield from families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry).decode("utf-8")


def test_families_exact_output() -> None:
    text = written(
        simple_family(
            "x_total", "counter", "Things.\nTwo lines.", ("k",), {("b",): 2, ('a\\"\n',): 1}
        ),
        simple_family("x_ratio", "gauge", "A ratio.", (), {(): 0.25}),
        histogram_family(
            "x_seconds", "Time.", (0.5, 1), ("lvl",), {("q",): Histogram([1, 3], 2.5, 4)}
        ),
    )
    # prometheus_client writes values as floats and label names sorted (``le`` first);
    # ``le`` keeps the bound as written (``1``), as the hand-written exposition did
    assert text == (
        "# HELP x_total Things.\\nTwo lines.\n"
        "# TYPE x_total counter\n"
        'x_total{k="a\\\\\\"\\n"} 1.0\n'
        'x_total{k="b"} 2.0\n'
        "# HELP x_ratio A ratio.\n"
        "# TYPE x_ratio gauge\n"
        "x_ratio 0.25\n"
        "# HELP x_seconds Time.\n"
        "# TYPE x_seconds histogram\n"
        'x_seconds_bucket{le="0.5",lvl="q"} 1.0\n'
        'x_seconds_bucket{le="1",lvl="q"} 3.0\n'
        'x_seconds_bucket{le="+Inf",lvl="q"} 4.0\n'
        'x_seconds_count{lvl="q"} 4.0\n'
        'x_seconds_sum{lvl="q"} 2.5\n'
    )
    parsed = parse_exposition(text)
    assert parsed["x_total"].help == "Things.\nTwo lines."
    assert by_label(parsed, "x_total", "k") == {'a\\"\n': 1, "b": 2}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a 1\n", "no HELP/TYPE"),
        ("# TYPE a gauge\na 1\n", "HELP or TYPE missing"),
        ("# HELP a A.\n# TYPE a gauge\na 1\n# HELP a A.\n", "after samples"),
        ('# HELP a A.\n# TYPE a gauge\na{x="1"} 1\na 2\n', "label sets differ"),
        ('# HELP a A.\n# TYPE a gauge\na{x="\\t"} 1\n', "bad escape"),
        ("# HELP a A.\n# TYPE a gauge\na one\n", "bad value"),
        ("# HELP a A.\n# TYPE a gauge\na 1\na 1\n", "series twice"),
        ("# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\na 1\n", "not contiguous"),
        (
            '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n'
            "h_sum 0\nh_count 1\n",
            "not cumulative",
        ),
        (
            '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'
            "h_sum 0\nh_count 3\n",
            r"\+Inf != _count",
        ),
        ('# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 0\nh_count 1\n', r"\+Inf"),
    ],
)
def test_the_parser_is_strict(text: str, why: str) -> None:
    with pytest.raises(AssertionError, match=why):
        parse_exposition(text)


# ---------------------------------------------------------------- against a real store

# Google News and SUWA's own feed share two articles (duplicates); the last one is comments.
IMPORTED = [
    "google-news-en-us-search-1.xml",
    "bing-news-en-us-search-2.xml",
    "wordpress-en-suwa-org-podcast.xml",
    "wordpress-de-global-offensive-comments-article.xml",
]
LATE = "wordpress-de-anime2you-news.xml"
# duration_ms on and around the bucket bounds (``le`` is inclusive)
DURATIONS_MS = [0, 10, 11, 50, 250, 999, 1000, 1001, 60_000, 60_001]
ODD_DIGEST = 'we"ird\\na\nme'


def configured(httpserver: HTTPServer, *names: str) -> Config:
    every = [
        {"name": "good", "type": "rss", "url": httpserver.url_for("/good")},
        {"name": "broken", "type": "rss", "url": httpserver.url_for("/broken")},
        {"name": "gone", "type": "rss", "url": httpserver.url_for("/gone")},
        {"name": "off", "type": "rss", "url": httpserver.url_for("/off"), "enabled": False},
    ]
    return make_config([s for s in every if s["name"] in names])


def populate(store: Store, httpserver: HTTPServer) -> datetime:
    """Imports + clustering, two polling rounds with failures, hand-made rows; returns the
    start time of the latest poll."""
    httpserver.expect_request("/good").respond_with_data(
        (FEEDS / "golem-de-rss2-iso-8859-1.xml").read_bytes(), content_type="application/xml"
    )
    httpserver.expect_request("/broken").respond_with_data("oops", status=500)
    httpserver.expect_request("/gone").respond_with_data("", status=410)
    cfg = configured(httpserver, "good", "broken", "gone", "off")
    fill(store, IMPORTED, cfg)
    sync(store, cfg)
    with Fetcher(fetch_settings(cfg)) as fetcher:
        for _ in range(2):
            poll_round(store, cfg, fetcher, owner="test", all_feeds=True)
    sync(store, configured(httpserver, "good", "gone", "off"))  # "broken" leaves the config

    latest = datetime(2031, 5, 4, 3, 2, 1, 500_000, tzinfo=UTC)
    with store.session() as s:
        good = s.scalars(select(Feed).where(Feed.url.endswith("/good"))).one()
        for i, ms in enumerate(DURATIONS_MS):
            s.add(
                PollLog(
                    feed_id=good.id,
                    started_at=latest - timedelta(minutes=i),
                    duration_ms=ms,
                    result="tls" if i == 3 else "ok",  # an error kind the code does not know
                )
            )
        for i, (name, status) in enumerate(
            [("daily", "sent"), ("daily", "sent"), ("daily", "failed"), (ODD_DIGEST, "pending")]
        ):
            end = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=i)
            s.add(
                DigestRun(
                    digest_name=name, period_end_at=end, created_at=end, status=status, attempts=0
                )
            )
    return latest


def scrape(store: Store, now: datetime | None = None) -> dict[str, Parsed]:
    body = render_metrics(store, now=now)
    assert isinstance(body, bytes)
    return parse_exposition(body.decode("utf-8"))


def test_metrics_match_the_rows(store: Store, httpserver: HTTPServer) -> None:
    latest = populate(store, httpserver)
    fams = scrape(store)
    with store.session() as s:
        polls = s.execute(select(PollLog.result, PollLog.duration_ms)).all()
        items = s.scalars(select(Item)).all()
        members = s.execute(select(ClusterMember.level, ClusterMember.method)).all()
        clusters = s.scalars(select(Cluster)).all()
        live_members = Counter(
            level
            for (level,) in s.execute(
                select(ClusterMember.level)
                .join(Cluster, Cluster.id == ClusterMember.cluster_id)
                .where(Cluster.merged_into_id.is_(None))
            )
        )
        runs = s.scalars(select(DigestRun)).all()

    assert value(fams, "newsdedup_up") == 1
    assert value(fams, "newsdedup_build_info", version=__version__) == 1

    # polls: every result, errors by kind, durations
    results = Counter(r for r, _ in polls)
    assert {"imported", "ok", "unchanged", "http", "gone", "tls"} <= set(results)
    got = by_label(fams, "newsdedup_polls_total", "result")
    assert {k: v for k, v in got.items() if v} == results
    errors = {k: n for k, n in results.items() if k not in ("ok", "not_modified", "unchanged")}
    errors.pop("imported")
    assert errors == {"http": 2, "gone": 1, "tls": 1}
    got = by_label(fams, "newsdedup_poll_errors_total", "kind")
    assert {k: v for k, v in got.items() if v} == errors
    assert {"timeout", "too_large", "parse"} <= set(got)  # known kinds are there at 0
    seconds = [ms / 1000 for r, ms in polls if r != "imported"]
    name = "newsdedup_poll_duration_seconds"
    assert buckets(fams, name) == expected_buckets(seconds, DURATION_BUCKETS_S)
    assert (
        value(fams, f"{name}_count") == len(seconds) == sum(results.values()) - results["imported"]
    )
    assert value(fams, f"{name}_sum") == pytest.approx(sum(seconds))
    # DURATIONS_MS sit on the bounds: a `<` for `<=` in the SQL would fail the line above
    assert value(fams, f"{name}_bucket", le="+Inf") - value(fams, f"{name}_bucket", le="60") == 1
    assert value(fams, "newsdedup_last_poll_timestamp_seconds") == latest.timestamp()

    # items and clustering
    kinds = Counter(i.kind for i in items)
    got = by_label(fams, "newsdedup_items_stored_total", "kind")
    assert got == {"article": kinds["article"], "comment": kinds["comment"]}
    assert kinds["article"] > 50 and kinds["comment"] > 0
    pending = sum(i.dedup_state == "pending" for i in items)
    assert value(fams, "newsdedup_items_pending_dedup") == pending
    assert pending == 40  # the golem items polled after clustering
    dups = Counter(level for level, method in members if method != "new")
    got = by_label(fams, "newsdedup_duplicates_found_total", "level")
    assert got == {level: dups[level] for level in ("duplicate", "story", "thread")}
    assert all(got.values())
    for level in ("duplicate", "story", "thread"):
        sizes = [c.size for c in clusters if c.level == level and c.merged_into_id is None]
        sizes = [n for n in sizes if n > 0]
        assert value(fams, "newsdedup_clusters", level=level) == len(sizes) > 0
        h = "newsdedup_cluster_size"
        assert buckets(fams, h, level=level) == expected_buckets(sizes, CLUSTER_SIZE_BUCKETS)
        assert value(fams, f"{h}_sum", level=level) == sum(sizes)
        # independent of clusters.size: the memberships of the live clusters
        assert sum(sizes) == live_members[level] == kinds["article"] - pending

    # digests, with a name that needs every escape
    expected_runs = Counter((r.digest_name, r.status) for r in runs)
    fam = fams["newsdedup_digest_runs_total"]
    got_runs = {(dict(ls)["digest"], dict(ls)["status"]): v for (_, ls), v in fam.samples.items()}
    assert {k: v for k, v in got_runs.items() if v} == expected_runs
    assert got_runs[(ODD_DIGEST, "pending")] == 1 and got_runs[(ODD_DIGEST, "sent")] == 0
    assert len(got_runs) == 2 * 4

    # sources: good and gone (its feed is disabled, the source is not) are enabled; broken
    # left the config, off is switched off, the four import-derived sources are never polled
    assert by_label(fams, "newsdedup_sources", "state") == {"enabled": 2, "disabled": 6}


def test_feeds_due_follows_the_clock(store: Store, httpserver: HTTPServer) -> None:
    populate(store, httpserver)
    with store.session() as s:
        rows = s.execute(select(Feed, Source).join(Source, Source.id == Feed.source_id)).all()
    for now in (
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime.now(UTC),
        datetime.now(UTC) + timedelta(days=3650),
    ):
        expected = sum(f.enabled and src.enabled and f.next_check_at <= now for f, src in rows)
        assert value(scrape(store, now), "newsdedup_feeds_due") == expected
    assert expected == 1  # only "good" is still polled


def test_new_items_are_pending_until_clustered(store: Store) -> None:
    cfg = Config.model_validate({"sources": []})
    outcome = import_file(store, cfg, FEEDS / LATE)
    fams = scrape(store)
    assert value(fams, "newsdedup_items_pending_dedup") == outcome.items_new > 0
    assert value(fams, "newsdedup_clusters", level="story") == 0
    assert value(fams, "newsdedup_polls_total", result="imported") == 1
    assert value(fams, "newsdedup_poll_errors_total", kind="http") == 0
    DedupService(store).process_pending()
    fams = scrape(store)
    assert value(fams, "newsdedup_items_pending_dedup") == 0
    assert value(fams, "newsdedup_cluster_size_sum", level="story") == outcome.items_new


def test_empty_store(store: Store) -> None:
    fams = scrape(store)
    assert "newsdedup_last_poll_timestamp_seconds" not in fams
    assert value(fams, "newsdedup_up") == 1
    assert value(fams, "newsdedup_poll_duration_seconds_count") == 0
    assert value(fams, "newsdedup_cluster_size_bucket", level="thread", le="+Inf") == 0
    assert fams["newsdedup_digest_runs_total"].samples == {}
    assert value(fams, "newsdedup_sources", state="enabled") == 0


def test_unreachable_database_reports_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(make_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}"))
    try:
        fams = parse_exposition(render_metrics(store).decode())
    finally:
        store.close()
    assert value(fams, "newsdedup_up") == 0
    assert value(fams, "newsdedup_build_info", version=__version__) == 1
    assert set(fams) == {"newsdedup_up", "newsdedup_build_info"}
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
