"""A daemon that runs for a year: edited entries, moved feeds, bounded growth.

Real local HTTP server, real SQLite and PostgreSQL (the ``store`` fixture), the real poller,
clustering service and metrics; retention runs with a clock moved forward.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import DIGEST_FEEDS, cli, digest_config, fill, make_config, parse_mail, poll, sync
from pydantic import ValidationError
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from aggregator.config import Config, RetentionConfig
from aggregator.dedup.service import DedupService
from aggregator.metrics import render_metrics
from aggregator.retention import (
    ItemFacts,
    poll_totals,
    prunable,
    run_retention,
    vacuum,
)
from aggregator.store import Store
from aggregator.store.db import database_size
from aggregator.store.items import edits_of
from aggregator.store.models import (
    Cluster,
    ClusterMember,
    DigestEntry,
    DigestRun,
    Feed,
    Item,
    PollLog,
    Signature,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def rss(*items: tuple[str, str, str]) -> str:
    """An RSS document of (guid, title, description) entries."""
    body = "".join(
        f"<item><guid isPermaLink='false'>{g}</guid><title>{t}</title>"
        f"<link>https://news.example/{g}</link><description>{d}</description>"
        "<pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate></item>"
        for g, t, d in items
    )
    return (
        f"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>{body}</channel></rss>"
    )


STORY = "Der Stadtrat beschließt den Ausbau des Hafens mit neuen Kais und Kränen bis 2030."
OTHER = "Die Bahn kündigt einen Streik im Regionalverkehr für das Wochenende an."


def items_by_guid(store: Store) -> dict[str, Item]:
    with store.session() as s:
        return {it.guid: it for it in s.scalars(select(Item))}


def serve(httpserver: HTTPServer, path: str, document: str) -> None:
    httpserver.clear()
    httpserver.expect_request(path).respond_with_data(document, content_type="application/rss+xml")


# ---------------------------------------------------------------- edited entries


def test_edited_entry_is_stored_and_sent_back_to_clustering(
    store: Store, httpserver: HTTPServer
) -> None:
    cfg = make_config([{"name": "n", "type": "rss", "url": httpserver.url_for("/f")}])
    sync(store, cfg)
    serve(httpserver, "/f", rss(("g1", "Hafen wird ausgebaut", STORY), ("g2", "Streik", OTHER)))
    poll(store, cfg)
    assert DedupService(store).process_pending() == 2
    first = items_by_guid(store)["g1"]

    # markup and whitespace only: stored (the entry is not parsed again), not re-clustered
    markup = f"<p>{STORY.replace(' ', '  ')}</p>"
    serve(httpserver, "/f", rss(("g1", "Hafen wird ausgebaut", markup), ("g2", "Streik", OTHER)))
    poll(store, cfg)
    quiet = items_by_guid(store)["g1"]
    assert quiet.entry_hash != first.entry_hash
    assert (quiet.dedup_state, quiet.update_count, quiet.updated_at) == ("done", 0, None)

    # a new headline and a correction: the new version, first-seen time kept, pending again
    edited_text = STORY + " Korrektur: bis 2032."
    doc = rss(("g1", "Hafen: Ausbau dauert länger", edited_text), ("g2", "Streik", OTHER))
    serve(httpserver, "/f", doc)
    poll(store, cfg)
    got = items_by_guid(store)
    g1 = got["g1"]
    assert g1.id == first.id and len(got) == 2
    assert g1.title == "Hafen: Ausbau dauert länger" and "2032" in g1.text
    assert g1.fetched_at == first.fetched_at
    assert g1.update_count == 1 and g1.updated_at is not None
    assert g1.dedup_state == "pending" and got["g2"].dedup_state == "done"

    # the same document again: the edited entry is known by its bytes, nothing changes
    serve(httpserver, "/f", doc + " ")  # a different body, so it is parsed, not "unchanged"
    poll(store, cfg)
    again = items_by_guid(store)["g1"]
    assert (again.update_count, again.updated_at) == (1, g1.updated_at)
    DedupService(store).process_pending()
    assert items_by_guid(store)["g1"].dedup_state == "done"


def test_edits_of_decides_material_by_title_and_content_hash() -> None:
    from aggregator.normaliser import normalise_feed
    from aggregator.parser import parse_feed

    def one(title: str, text: str):
        feed = parse_feed(rss(("g", title, text)).encode(), url="https://news.example/f")
        item = normalise_feed(feed, source_type="rss", fetched_at=NOW)[0]
        return replace(item, entry_hash="e")

    it = one("Title", STORY)
    stored = {"g": (7, it.title, it.content_hash, "old-entry")}
    assert edits_of(stored, [it])[0].material is False  # only its entry bytes changed
    assert edits_of({"g": (7, it.title, it.content_hash, it.entry_hash)}, [it]) == []
    assert edits_of(stored, [one("New title", STORY)])[0].material is True
    assert edits_of(stored, [one("Title", STORY + " Neu.")])[0].material is True
    assert edits_of({}, [it]) == []
    # a guid twice in one document (a broken feed): the first entry decides, every time
    same = {"g": (7, it.title, it.content_hash, it.entry_hash)}
    assert edits_of(same, [it, one("Other title", OTHER)]) == []


# ---------------------------------------------------------------- moved feeds


@pytest.mark.parametrize(
    ("status", "moves"), [(301, True), (308, True), (302, False), (307, False)]
)
def test_permanent_redirect_moves_the_feed_temporary_does_not(
    store: Store, httpserver: HTTPServer, status: int, moves: bool
) -> None:
    old, new = httpserver.url_for("/old.xml"), httpserver.url_for("/new.xml")
    cfg = make_config([{"name": "n", "type": "rss", "url": old}])
    sync(store, cfg)
    httpserver.expect_request("/old.xml").respond_with_data(
        "", status=status, headers={"Location": "/new.xml"}
    )
    httpserver.expect_request("/new.xml").respond_with_data(
        rss(("g1", "Hafen", STORY)), content_type="application/rss+xml"
    )
    [outcome] = poll(store, cfg)
    assert outcome.result == "ok"
    with store.session() as s:
        feed = s.scalars(select(Feed)).one()
        assert (feed.url, feed.moved_from) == ((new, old) if moves else (old, None))
    # the next poll: straight to the new URL after a move, through the old one otherwise
    httpserver.clear_log()
    poll(store, cfg)
    paths = [req.path for req, _ in httpserver.log]
    assert paths == (["/new.xml"] if moves else ["/old.xml", "/new.xml"])
    # the config still names the old URL: a restart's sync keeps the moved one
    sync(store, cfg)
    with store.session() as s:
        assert s.scalars(select(Feed.url)).one() == (new if moves else old)


def test_status_says_where_a_feed_moved(tmp_path: Path, httpserver: HTTPServer) -> None:
    db = tmp_path / "s.sqlite"
    old = httpserver.url_for("/old.xml")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database: {{url: 'sqlite:///{db}'}}\n"
        "polling: {allow_private_addresses: true}\n"
        f"sources:\n  - {{name: n, type: rss, url: '{old}'}}\n"
    )
    httpserver.expect_request("/old.xml").respond_with_data(
        "", status=301, headers={"Location": "/new.xml"}
    )
    httpserver.expect_request("/new.xml").respond_with_data(
        rss(("g1", "Hafen", STORY)), content_type="application/rss+xml"
    )
    polled = cli(config, "poll", "--once")
    assert polled.returncode == 0, polled.stderr
    assert "feed moved permanently (HTTP 301)" in polled.stderr
    table = cli(config, "status")
    assert f"n: moved from {old} to {httpserver.url_for('/new.xml')}" in table.stdout
    assert "MiB)" in table.stdout.splitlines()[0]
    data = json.loads(cli(config, "status", "--json").stdout)
    assert data["database_size_bytes"] == db.stat().st_size + (
        Path(f"{db}-wal").stat().st_size if Path(f"{db}-wal").exists() else 0
    )
    vacuumed = cli(config, "db", "vacuum")
    assert vacuumed.returncode == 0 and "vacuumed" in vacuumed.stdout, vacuumed.stderr


# ---------------------------------------------------------------- retention


def facts(**kw: object) -> ItemFacts:
    base = dict(
        id=1,
        dedup_state="done",
        fetched_at=NOW - timedelta(days=10),
        updated_at=None,
        newest_cluster_at=NOW - timedelta(days=10),
        cluster_ids=frozenset({5}),
    )
    return ItemFacts(**(base | kw))  # type: ignore[arg-type]


def test_prunable_keeps_what_a_cluster_or_digest_needs() -> None:
    cutoff = NOW - timedelta(days=1)
    none: frozenset[int] = frozenset()
    assert prunable(facts(), cutoff, none)
    assert not prunable(facts(dedup_state="pending"), cutoff, none)
    assert not prunable(facts(updated_at=NOW), cutoff, none)
    assert not prunable(facts(fetched_at=NOW), cutoff, none)
    assert not prunable(facts(newest_cluster_at=NOW), cutoff, none)  # a live cluster
    assert not prunable(facts(), cutoff, frozenset({5}))  # an unsent digest shows it
    assert prunable(facts(newest_cluster_at=None, cluster_ids=none), cutoff, none)


def test_poll_totals_count_like_the_metrics() -> None:
    totals = poll_totals([("ok", 40), ("ok", 3000), ("http_error", 100), ("imported", 5)])
    assert totals[("polls", "ok")] == 2 and totals[("polls", "imported")] == 1
    assert totals[("poll_duration", "count")] == 3
    assert totals[("poll_duration", "sum_ms")] == 3140
    assert totals[("poll_duration", "le_50")] == 1 and totals[("poll_duration", "le_5000")] == 3


def test_retention_is_validated() -> None:
    with pytest.raises(ValidationError, match="must not be shorter than the longest dedup"):
        Config.model_validate({"retention": {"items": "1d"}})
    with pytest.raises(ValidationError, match="must be positive"):
        Config.model_validate({"retention": {"poll_log": "0s"}})
    cfg = Config.model_validate({"retention": {"poll_log": None, "items": "30d"}})
    assert cfg.retention.poll_log is None and cfg.retention.items == 30 * 86400


def samples(store: Store) -> dict[str, float]:
    """Every sample of /metrics, by series (name and labels)."""
    out = {}
    for line in render_metrics(store).decode().splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def counters(store: Store) -> dict[str, float]:
    """The counter and histogram samples of /metrics that rows feed (gauges change by design;
    a digest run moves between statuses)."""
    return {
        name: value
        for name, value in samples(store).items()
        if ("_total" in name or "poll_duration_seconds" in name) and "digest" not in name
    }


def test_retention_prunes_in_batches_and_counters_do_not_go_back(
    store: Store, httpserver: HTTPServer
) -> None:
    cfg = make_config(
        [
            {"name": "a", "type": "rss", "url": httpserver.url_for("/a")},
            {"name": "b", "type": "rss", "url": httpserver.url_for("/b")},
        ]
    )
    sync(store, cfg)
    httpserver.expect_request("/a").respond_with_data(
        rss(("a1", "Hafen wird ausgebaut", STORY), ("a2", "Streik am Wochenende", OTHER)),
        content_type="application/rss+xml",
    )
    httpserver.expect_request("/b").respond_with_data(
        rss(("b1", "Stadtrat: Hafen wird ausgebaut", STORY)), content_type="application/rss+xml"
    )
    httpserver.expect_request("/missing").respond_with_data("no", status=500)
    for _ in range(3):
        poll(store, cfg)
    DedupService(store).process_pending()
    before = counters(store)
    assert before['newsdedup_items_stored_total{kind="article"}'] == 3

    with store.session() as s:
        polls = s.scalar(select(func.count()).select_from(PollLog))
        # the story of a1/b1 goes into a digest not sent yet: those two stay
        held = s.scalar(
            select(ClusterMember.cluster_id).where(
                ClusterMember.level == "story",
                ClusterMember.item_id == s.scalar(select(Item.id).where(Item.guid == "a1")),
            )
        )
        run = DigestRun(
            digest_name="d", period_end_at=NOW, created_at=NOW, status="pending", attempts=0
        )
        s.add(run)
        s.flush()
        s.add(
            DigestEntry(
                run_id=run.id,
                position=0,
                cluster_id=held,
                level="story",
                item_ids=[],
                new_item_ids=[],
            )
        )
    settings = RetentionConfig(poll_log=86400, items=30 * 86400, batch=2)
    later = datetime.now(UTC) + timedelta(days=400)
    pruned = run_retention(store, settings, later)
    assert pruned.poll_log == polls and pruned.items == 1  # a2 only
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(PollLog)) == 0
        assert set(s.scalars(select(Item.guid))) == {"a1", "b1"}
        signed = set(s.scalars(select(Signature.item_id)))
        assert signed == set(s.scalars(select(Item.id)))  # the pruned item's went with it
        orphan = (
            select(func.count())
            .select_from(ClusterMember)
            .where(~select(Item.id).where(Item.id == ClusterMember.item_id).exists())
        )
        assert s.scalar(orphan) == 0
        assert s.get(Cluster, held) is not None
    assert counters(store) == before

    # the digest is sent: the rest goes, and still every counter stays where it was
    with store.session() as s:
        s.get_one(DigestRun, run.id).status = "sent"
    pruned = run_retention(store, settings, later)
    assert pruned.items == 2 and pruned.clusters > 0
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 0
        assert s.scalar(select(func.count()).select_from(Cluster)) == 0
    assert counters(store) == before
    # and new polls count on top
    poll(store, cfg)
    after = counters(store)
    assert after['newsdedup_polls_total{result="unchanged"}'] == (
        before['newsdedup_polls_total{result="unchanged"}'] + 2
    )


def digest_runs_total(store: Store) -> dict[str, float]:
    return {n: v for n, v in samples(store).items() if n.startswith("newsdedup_digest_runs_total{")}


def test_retention_drops_old_sent_digests_but_not_what_the_next_run_reads(store: Store) -> None:
    """Sent runs older than ``retention.digests`` lose their message; a run goes once no stored
    cluster is named by its entries, except the digest's latest sent run; unsent runs stay."""
    with store.session() as s:
        live = Cluster(level="story", created_at=NOW, updated_at=NOW, size=1)
        s.add(live)
        s.flush()
        runs = {}
        for name, days, status in (
            ("listed", -4, "sent"),
            ("bare", -3, "sent"),
            ("empty", -2, "empty"),
            ("latest", -1, "sent"),
            ("pending", 0, "pending"),
        ):
            at = NOW + timedelta(days=days)
            run = DigestRun(
                digest_name="d",
                period_end_at=at,
                created_at=at,
                status=status,
                attempts=1,
                message=b"x" * 1000 if status != "empty" else None,
            )
            s.add(run)
            s.flush()
            runs[name] = run.id
        s.add(
            DigestEntry(
                run_id=runs["listed"],
                position=0,
                cluster_id=live.id,
                level="story",
                item_ids=[],
                new_item_ids=[],
            )
        )
    before = digest_runs_total(store)
    assert before['newsdedup_digest_runs_total{digest="d",status="sent"}'] == 3

    settings = RetentionConfig(poll_log=None, items=None, digests=30 * 86400, batch=1)
    assert not run_retention(store, settings, NOW + timedelta(days=20))  # nothing old enough
    pruned = run_retention(store, settings, NOW + timedelta(days=60))
    assert pruned.digest_runs == 2  # "bare" and "empty"
    with store.session() as s:
        left = dict(s.execute(select(DigestRun.id, DigestRun.message)).all())
    assert set(left) == {runs["listed"], runs["latest"], runs["pending"]}
    assert left[runs["listed"]] is None and left[runs["latest"]] is None
    assert left[runs["pending"]] == b"x" * 1000  # a run not sent yet keeps what it will send
    assert digest_runs_total(store) == before  # counters never go back

    # the listed story's cluster is pruned: its entry goes with it, then the run
    with store.session() as s:
        s.delete(s.get_one(Cluster, live.id))
    assert run_retention(store, settings, NOW + timedelta(days=60)).digest_runs == 1
    assert digest_runs_total(store) == before


def test_retention_keeps_recent_rows(store: Store, httpserver: HTTPServer) -> None:
    cfg = make_config([{"name": "a", "type": "rss", "url": httpserver.url_for("/a")}])
    sync(store, cfg)
    serve(httpserver, "/a", rss(("a1", "Hafen", STORY)))
    poll(store, cfg)
    DedupService(store).process_pending()
    pruned = run_retention(store, RetentionConfig(), datetime.now(UTC))
    assert not pruned
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(PollLog)) == 1
        assert s.scalar(select(func.count()).select_from(Item)) == 1


def test_database_size_and_vacuum(store: Store) -> None:
    size = database_size(store)
    assert size is not None and size > 0
    vacuum(store)
    assert database_size(store) is not None


# ---------------------------------------------------------------- digests


def test_edited_story_is_marked_updated_in_the_next_digest_once(
    store: Store,
    smtp,
) -> None:
    from aggregator.digest import deliver_pending, plan_run

    controller, inbox = smtp
    cfg = digest_config(controller.port)
    fill(store, DIGEST_FEEDS, cfg)
    t0 = datetime.now(UTC)
    plan_run(store, cfg, cfg.digests[0], period_end_at=t0)
    assert [r.result for r in deliver_pending(store, cfg)] == ["sent"]
    # the poller stores an edit of a mailed article (as update_items does)
    with store.session() as s:
        entry = s.scalars(select(DigestEntry).order_by(DigestEntry.position)).first()
        item = s.get_one(Item, entry.item_ids[-1])
        item.title += " – Korrektur"
        item.updated_at, item.update_count, item.dedup_state = (
            t0 + timedelta(seconds=1),
            1,
            "pending",
        )
    DedupService(store).process_pending()
    t1 = t0 + timedelta(seconds=2)
    plan_run(store, cfg, cfg.digests[0], period_end_at=t1)
    assert [r.result for r in deliver_pending(store, cfg)] == ["sent"]
    first, second = (parse_mail(m).get_body(("plain",)).get_content() for m in inbox.messages)
    assert "(updated)" not in first and "(updated)" in second
    # nothing new since: nothing sent again
    plan_run(store, cfg, cfg.digests[0], period_end_at=t1 + timedelta(seconds=1))
    assert deliver_pending(store, cfg) == []
    assert len(inbox.messages) == 2


def test_moved_to_follows_only_leading_permanent_hops() -> None:
    from aggregator.fetcher import FetchResult

    def result(*hops: tuple[int, str]) -> FetchResult:
        return FetchResult(
            url=hops[-1][1] if hops else "https://a/",
            status=200,
            body=b"",
            not_modified=False,
            etag=None,
            last_modified=None,
            content_type=None,
            retry_after_s=None,
            max_age_s=None,
            elapsed_s=0.0,
            redirects=hops,
        )

    assert result().moved_to is None
    assert result((301, "https://b/"), (308, "https://c/")).moved_to == "https://c/"
    assert result((301, "https://b/"), (302, "https://c/")).moved_to == "https://b/"
    assert result((302, "https://b/"), (301, "https://c/")).moved_to is None


def test_the_daemon_job_prunes_and_the_counters_stay(store: Store, httpserver: HTTPServer) -> None:
    from aggregator.daemon import Daemon

    cfg = make_config([{"name": "a", "type": "rss", "url": httpserver.url_for("/a")}])
    cfg = cfg.model_copy(update={"retention": RetentionConfig(poll_log=3600, batch=1)})
    sync(store, cfg)
    serve(httpserver, "/a", rss(("a1", "Hafen", STORY)))
    for _ in range(3):
        poll(store, cfg)
    with store.session() as s:  # two of the three polls are two hours old
        ids = sorted(s.scalars(select(PollLog.id)))[:2]
        for row in s.scalars(select(PollLog).where(PollLog.id.in_(ids))):
            row.started_at -= timedelta(hours=2)
    before = counters(store)
    Daemon(store, cfg).retention_tick()
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(PollLog)) == 1
    assert counters(store) == before
