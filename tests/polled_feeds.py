"""The ten POLLED fixture feeds served on loopback, a config polling them (for daemons in
processes of their own and for rounds in-process), and the test's own reads of what they
stored: for the tests that kill, fail and scale out daemons (test_faults, test_scaleout)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from conftest import FEEDS
from helpers import migrate
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from werkzeug import Request, Response

from aggregator.config import Config
from aggregator.coordination import worker_id
from aggregator.fetcher import Fetcher
from aggregator.poller import fetch_settings, poll_round
from aggregator.store import Store
from aggregator.store import db as store_db

# ten feeds of every kind (no comment feeds: those would add feeds while the test runs)
POLLED = [
    ("atom-de-heise-developer.xml", "atom"),
    ("atom-en-h-online.xml", "atom"),
    ("bing-news-en-us-search-2.xml", "bing_news"),
    ("golem-de-rss2-iso-8859-1.xml", "rss"),
    ("google-news-en-gb-search-trimmed.xml", "google_news"),
    ("google-news-en-us-topstories-2019.xml", "google_news"),
    ("rss090-rdf-de-heise.xml", "rss"),
    ("rss10-rdf-de-laut-iso-8859-1.xml", "rss"),
    ("rss10-rdf-en-slashdot.xml", "rss"),
    ("wordpress-de-anime2you-news.xml", "wordpress"),
]
# the fetch timeouts of write_config's daemons, for the rounds run in-process
FETCH = {"read_timeout": "5s", "total_timeout": "10s"}
FEED_DELAY_S = 0.25  # per response while `slow` is set: a round takes ~2.5 s (one server thread)

Snapshot = dict[str, tuple[bool, list[str]]]  # source -> (poll state advanced, stored guids)


def reader(url: str):  # type: ignore[no-untyped-def]
    """A plain engine for the test's own reads (no pool: terminated backends don't linger)."""
    return create_engine(url, poolclass=NullPool)


def scalar(engine, sql: str, default: int = 0) -> int:  # type: ignore[no-untyped-def]
    """One number from the database; 0 while the schema does not exist yet."""
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar() or default
    except Exception:  # noqa: BLE001 - the file or the tables are still being created
        return default


def snapshot(engine) -> Snapshot:  # type: ignore[no-untyped-def]
    """Per configured source: has its poll state moved (body hash or ETag stored), and the
    guids stored for it -- read in one transaction, so both halves belong together."""
    with engine.connect() as conn, conn.begin():
        state = {
            name: advanced
            for name, advanced in conn.execute(
                text(
                    "SELECT s.name, (f.body_hash IS NOT NULL OR f.etag IS NOT NULL) "
                    "FROM feeds f JOIN sources s ON s.id = f.source_id WHERE f.kind = 'main'"
                )
            )
        }
        guids: dict[str, list[str]] = {name: [] for name in state}
        for name, guid in conn.execute(
            text("SELECT s.name, i.guid FROM items i JOIN sources s ON s.id = i.source_id")
        ):
            guids.setdefault(name, []).append(guid)
    return {name: (bool(state.get(name)), g) for name, g in guids.items()}


def serve_feeds(httpserver: HTTPServer, gate: threading.Event | None = None) -> threading.Event:
    """Serve the POLLED fixtures; while the returned event is set every response is slow.
    With ``gate``, no response is sent before it is set."""
    slow = threading.Event()

    def handler(name: str) -> Callable[[Request], Response]:
        body = (FEEDS / name).read_bytes()

        def respond(_request: Request) -> Response:
            if gate is not None:
                gate.wait(timeout=120)
            if slow.is_set():
                time.sleep(FEED_DELAY_S)
            return Response(body, content_type="application/xml")

        return respond

    for name, _ in POLLED:
        httpserver.expect_request(f"/{name}").respond_with_handler(handler(name))
    return slow


def polled_sources(httpserver: HTTPServer) -> list[dict[str, str]]:
    return [
        {"name": Path(name).stem, "type": kind, "url": httpserver.url_for(f"/{name}")}
        for name, kind in POLLED
    ]


def write_config(path: Path, httpserver: HTTPServer, extra: str = "") -> Path:
    lines = [
        "polling:",
        "  tick: 1s",
        "  min_interval: 1s",
        "  aggregator_min_interval: 1s",
        "  read_timeout: 5s",
        "  total_timeout: 10s",
        "  allow_private_addresses: true",
        "sources:",
    ]
    for s in polled_sources(httpserver):
        lines.append(f"  - {{name: {s['name']}, type: {s['type']}, url: '{s['url']}'}}")
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def new_store(url: str) -> Store:
    return Store(store_db.make_engine(migrate(url)))


def poll_all(store: Store, cfg: Config) -> None:
    with Fetcher(fetch_settings(cfg)) as fetcher:
        outcomes = poll_round(store, cfg, fetcher, owner=worker_id(), all_feeds=True)
    assert [o.error for o in outcomes if o.failed] == []


def upgrade_if_postgres(url: str) -> None:
    """A daemon creates a new SQLite file itself; a PostgreSQL schema must be upgraded first."""
    if not url.startswith("sqlite"):
        migrate(url)
