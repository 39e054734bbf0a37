"""Digests end to end: a store filled from the fixture feeds, a real in-process SMTP server
(aiosmtpd), both databases. What is checked is what a reader and the mail server see."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiosmtpd.controller import Controller
from conftest import FEEDS
from helpers import DIGEST_FEEDS, Inbox, Ran, cli, digest_config, fill, free_port, parse_mail, spawn
from sqlalchemy import select

from aggregator.dedup.service import DedupService
from aggregator.digest import deliver_pending, plan_run
from aggregator.store import Store, repo
from aggregator.store import db as store_db
from aggregator.store.models import DigestEntry, DigestRun


def test_digest_structure_one_entry_per_story_and_no_resend(store: Store, smtp) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port)
    fill(store, DIGEST_FEEDS, cfg)
    now = datetime.now(UTC)
    run_id = plan_run(store, cfg, cfg.digests[0], period_end_at=now)
    results = deliver_pending(store, cfg)
    assert [r.result for r in results] == ["sent"]
    assert len(inbox.messages) == 1
    msg = parse_mail(inbox.messages[0])
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert inbox.envelopes[0] == ("news@example.org", ["leser@example.org"])
    with store.session() as s:
        run = s.get_one(DigestRun, run_id)
        assert run.status == "sent" and run.sent_at is not None
        assert msg["Message-ID"] == run.message_id
        entries = s.scalars(
            select(DigestEntry)
            .where(DigestEntry.run_id == run_id, DigestEntry.deferred.is_(False))
            .order_by(DigestEntry.position)
        ).all()
        stories = repo.list_clusters(s, level="story")
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    # one entry per story cluster (up to max_entries), each cluster once
    assert len(entries) == min(30, len(stories))
    assert len({e.cluster_id for e in entries}) == len(entries)
    # the biggest story (the monument orders, covered by dozens of outlets) leads, once
    biggest = max(stories, key=lambda c: c["size"])
    assert biggest["size"] > 10 and entries[0].cluster_id == biggest["id"]
    assert "covered by" in text
    # links are the articles' own where known: Bing redirects are unwrapped, and Google's
    # opaque links appear only for outlets whose article URL is unknown
    assert "apiclick.aspx" not in html
    # the next run mails only the stories that did not fit; after it, nothing new, nothing sent
    plan_run(store, cfg, cfg.digests[0], period_end_at=now + timedelta(minutes=5))
    assert len(deliver_pending(store, cfg)) == (len(stories) > 30)
    plan_run(store, cfg, cfg.digests[0], period_end_at=now + timedelta(minutes=10))
    assert deliver_pending(store, cfg) == []
    assert len(inbox.messages) == 1 + (len(stories) > 30)


def test_grown_cluster_reappears_with_new_sources_marked(store: Store, smtp) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port)
    fill(store, DIGEST_FEEDS, cfg)
    t0 = datetime.now(UTC)
    plan_run(store, cfg, cfg.digests[0], period_end_at=t0)
    deliver_pending(store, cfg)
    # a new outlet reports a story already mailed: same title as a stored Google entry
    from aggregator.store.models import Item, Source

    with store.session() as s:
        item = s.scalars(
            select(Item).where(Item.title.contains("shrinks")).order_by(Item.id)
        ).first()
        src = s.get_one(Source, item.source_id)
        s.add(
            Item(
                source_id=src.id,
                kind="article",
                guid="late-1",
                url="https://late.example/x",
                canonical_url="https://late.example/x",
                title=item.title,
                publisher="Späte Zeitung",
                summary="",
                text=item.title,
                published_at=item.published_at + timedelta(hours=1),
                fetched_at=t0,
                content_hash="f" * 64,
            )
        )
    DedupService(store).process_pending()
    plan_run(store, cfg, cfg.digests[0], period_end_at=datetime.now(UTC) + timedelta(seconds=1))
    assert [r.result for r in deliver_pending(store, cfg)] == ["sent"]
    assert len(inbox.messages) == 2
    second = parse_mail(inbox.messages[1]).get_body(("plain",)).get_content()
    assert "Späte Zeitung" in second
    first = parse_mail(inbox.messages[0]).get_body(("plain",)).get_content()
    assert "Späte Zeitung" not in first


def test_smtp_down_then_up_sends_exactly_once(store: Store) -> None:
    port = free_port()
    cfg = digest_config(port)
    fill(store, DIGEST_FEEDS, cfg)
    now = datetime.now(UTC)
    run_id = plan_run(store, cfg, cfg.digests[0], period_end_at=now)
    down = deliver_pending(store, cfg, now=now)
    assert [r.result for r in down] == ["retry"] and "127.0.0.1" in (down[0].error or "")
    with store.session() as s:
        run = s.get_one(DigestRun, run_id)
        assert run.status == "pending" and run.attempts == 1 and run.last_error
        retry_at = run.next_attempt_at
    assert retry_at is not None and retry_at > now
    assert deliver_pending(store, cfg, now=now) == []  # backing off
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        up = deliver_pending(store, cfg, now=retry_at + timedelta(seconds=1))
        assert [r.result for r in up] == ["sent"]
        assert deliver_pending(store, cfg, now=retry_at + timedelta(hours=2)) == []
    finally:
        controller.stop()
    assert len(inbox.messages) == 1


def test_empty_period_sends_nothing(store: Store, smtp) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port)
    run_id = plan_run(store, cfg, cfg.digests[0], period_end_at=datetime.now(UTC))
    assert deliver_pending(store, cfg) == []
    with store.session() as s:
        assert s.get_one(DigestRun, run_id).status == "empty"
    assert inbox.messages == []


def test_filters_by_source_and_keyword(store: Store, smtp) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port, keywords=["Anime"])
    fill(store, DIGEST_FEEDS, cfg)
    plan_run(store, cfg, cfg.digests[0], period_end_at=datetime.now(UTC))
    deliver_pending(store, cfg)
    text = parse_mail(inbox.messages[0]).get_body(("plain",)).get_content()
    assert "Bears Ears" not in text and "Anime" in text


def test_two_schedulers_record_one_run_per_slot(store: Store, smtp) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port)
    fill(store, DIGEST_FEEDS, cfg)
    slot = (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0)
    ids = set()

    def fire() -> None:
        ids.add(plan_run(store, cfg, cfg.digests[0], period_end_at=slot))

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 1
    results = []
    senders = [
        threading.Thread(target=lambda: results.extend(deliver_pending(store, cfg)))
        for _ in range(3)
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    assert [r.result for r in results] == ["sent"]
    assert len(inbox.messages) == 1


def test_crash_between_send_and_mark_resends_the_same_message(tmp_path: Path) -> None:
    """The sender dies after the server accepted the message but before it marked the run
    sent; the retry sends byte-identical content with the same Message-ID."""
    victim: dict[str, subprocess.Popen[str]] = {}

    def kill_sender() -> None:
        proc = victim.get("proc")
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    inbox = Inbox(on_data=kill_sender)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(
        "sources: []\n"
        "digests:\n  - {name: daily, schedule: '0 7 * * *', recipients: [a@example.org]}\n"
        f"smtp: {{host: 127.0.0.1, port: {controller.port}, sender: news@example.org}}\n",
        encoding="utf-8",
    )
    try:
        imp = cli(cfg_path, "-q", "import", str(FEEDS / DIGEST_FEEDS[0]))
        assert imp.returncode == 0, imp.stderr
        # only the sender that dies needs a process of its own
        victim["proc"] = spawn(cfg_path, "-q", "digest", "send", "daily", "--now")
        victim["proc"].communicate(timeout=120)
        assert victim["proc"].returncode == -signal.SIGKILL
        assert len(inbox.messages) == 1
        inbox.on_data = None
        retry = cli(cfg_path, "-q", "digest", "send", "daily", "--now")
        assert retry.returncode == 0, retry.stderr
        again = cli(cfg_path, "-q", "digest", "send", "daily", "--now")
        assert again.returncode == 0, again.stderr
        status = cli(cfg_path, "-q", "status", "--json").stdout
    finally:
        controller.stop()
    assert len(inbox.messages) == 2, status  # the accepted one, its identical resend; no third
    first, second = (parse_mail(m) for m in inbox.messages)
    assert first["Message-ID"] == second["Message-ID"]
    assert inbox.messages[0] == inbox.messages[1]
    time.sleep(0)


def test_send_now_after_an_outage_sends_the_waiting_run_once(db_url: str, tmp_path: Path) -> None:
    """SMTP down (a closed port): the run is recorded and waits for its retry slot. A plain
    `digest send` says so; once the server is up, `digest send --now` sends that run (its
    recorded bytes and Message-ID) at once, and a second `--now` has nothing to send."""
    port = free_port()
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(
        f"database: {{url: '{db_url}'}}\n"
        "sources: []\n"
        "digests:\n  - {name: daily, schedule: '0 7 * * *', recipients: [a@example.org]}\n"
        f"smtp: {{host: 127.0.0.1, port: {port}, sender: news@example.org, timeout: 5s}}\n",
        encoding="utf-8",
    )

    def aggregator(*args: str) -> Ran:
        return cli(cfg_path, "-q", *args)

    assert aggregator("db", "upgrade").returncode == 0
    assert aggregator("import", str(FEEDS / DIGEST_FEEDS[0])).returncode == 0
    down = aggregator("digest", "send", "daily", "--now")
    assert down.returncode != 0 and "\tretry\t" in down.stdout, down.stdout + down.stderr
    store = store_db.Store(store_db.make_engine(db_url))
    try:
        with store.session() as s:
            (run,) = s.scalars(select(DigestRun).where(DigestRun.status == "pending")).all()
            run_id, recorded, mid = run.id, run.message or b"", run.message_id
            assert run.next_attempt_at is not None and run.next_attempt_at > datetime.now(UTC)
        waiting = aggregator("digest", "send", "daily")
        assert waiting.returncode == 0, waiting.stderr
        assert f"run {run_id}\twaiting: retry at" in waiting.stdout
        assert "nothing to send" not in waiting.stdout

        inbox = Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            up = aggregator("digest", "send", "daily", "--now")
            assert up.returncode == 0, up.stdout + up.stderr
            assert f"run {run_id}\tsent" in up.stdout
            again = aggregator("digest", "send", "daily", "--now")
            assert again.returncode == 0, again.stderr
            assert "nothing to send" in again.stdout
        finally:
            controller.stop()
        with store.session() as s:
            assert s.get_one(DigestRun, run_id).status == "sent"
            statuses = set(s.scalars(select(DigestRun.status).where(DigestRun.id != run_id)))
    finally:
        store.close()
    assert statuses <= {"empty"}  # nothing new since: recorded as such, never mailed
    assert len(inbox.messages) == 1
    assert parse_mail(inbox.messages[0])["Message-ID"] == mid
    assert inbox.messages[0].replace(b"\r\n", b"\n") == recorded.replace(b"\r\n", b"\n")
