"""Several ``aggregator run`` processes on one PostgreSQL share the work: each due feed is
leased by one of them (``FOR UPDATE SKIP LOCKED``), every item is stored once, and clustering,
serialised through the dedup epoch row, ends in the same clusters a single process makes."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import FEEDS
from helpers import make_config, start_daemon, sync, wait_for
from polled_feeds import (
    FETCH,
    POLLED,
    new_store,
    poll_all,
    polled_sources,
    reader,
    scalar,
    serve_feeds,
    snapshot,
    upgrade_if_postgres,
    write_config,
)
from pytest_httpserver import HTTPServer
from sqlalchemy import text

from aggregator.config import Config
from aggregator.dedup import service as service_mod
from aggregator.dedup.evaluate import score
from aggregator.dedup.service import DedupService
from aggregator.importer import import_file
from aggregator.store import Store

Partition = dict[str, set[frozenset[tuple[str, str]]]]


def mapping(clusters: set[frozenset[tuple[str, str]]]) -> dict[str, str]:
    return {f"{s}|{g}": str(sorted(c)[0]) for c in clusters for s, g in c}


def partitions(engine) -> Partition:  # type: ignore[no-untyped-def]
    """Per level, the clusters as sets of (source, guid): comparable across databases."""
    groups: dict[tuple[str, int], set[tuple[str, str]]] = defaultdict(set)
    with engine.connect() as conn:
        for level, cid, source, guid in conn.execute(
            text(
                "SELECT m.level, m.cluster_id, s.name, i.guid FROM cluster_members m "
                "JOIN items i ON i.id = m.item_id JOIN sources s ON s.id = i.source_id"
            )
        ):
            groups[(level, cid)].add((source, guid))
    out: Partition = defaultdict(set)
    for (level, _), members in groups.items():
        out[level].add(frozenset(members))
    return out


@pytest.fixture
def reference(tmp_path: Path, httpserver: HTTPServer) -> tuple[dict[str, set[str]], Partition]:
    """One process: one poll of every feed, then clustering."""
    cfg = make_config(polled_sources(httpserver), **FETCH)
    store = new_store(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    try:
        sync(store, cfg)
        serve_feeds(httpserver)
        poll_all(store, cfg)
        DedupService(store).process_pending()
        engine = reader(str(store.engine.url))
        stored = {name: set(guids) for name, (_, guids) in snapshot(engine).items()}
        parts = partitions(engine)
        engine.dispose()
    finally:
        store.close()
    httpserver.clear()
    return stored, parts


@pytest.mark.postgres
@pytest.mark.parametrize("workers", [3])
def test_workers_share_feeds_store_once_and_cluster_like_one_process(
    tmp_path: Path, httpserver: HTTPServer, reference, pg_url: str, workers: int
) -> None:
    expected, expected_parts = reference
    # No feed is answered before two workers hold leases: the first to start cannot take
    # every feed while the others are still importing (a loaded machine made that happen).
    gate = threading.Event()
    slow = serve_feeds(httpserver, gate)
    slow.set()  # each response takes FEED_DELAY_S: the workers' rounds overlap
    # each feed is due once during the test (a long min_interval): exactly one poll per feed;
    # fetch timeouts longer than the gate can take
    cfg_path = write_config(tmp_path / "config.yaml", httpserver)
    cfg_path.write_text(
        cfg_path.read_text()
        .replace("_interval: 1s", "_interval: 1h")
        .replace("read_timeout: 5s", "read_timeout: 150s")
        .replace("total_timeout: 10s", "total_timeout: 300s")
    )
    upgrade_if_postgres(pg_url)
    env = {"AGGREGATOR_DATABASE_URL": pg_url}
    engine = reader(pg_url)
    logs = [tmp_path / f"worker{n}.log" for n in range(workers)]
    procs: list[subprocess.Popen[str]] = []
    try:
        for log in logs:
            procs.append(
                start_daemon(
                    cfg_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log.open("w"),
                )
            )
        wait_for(
            lambda: (
                scalar(
                    engine,
                    "SELECT count(DISTINCT lease_owner) FROM feeds WHERE lease_owner IS NOT NULL",
                )
                >= 2
            ),
            120,
            "two workers holding feed leases",
        )
        gate.set()
        total = sum(len(g) for g in expected.values())
        wait_for(
            lambda: (
                scalar(engine, "SELECT count(*) FROM items WHERE dedup_state = 'done'") == total
            ),
            120,
            "every item stored and clustered",
        )
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
            assert proc.returncode == 0
    finally:
        gate.set()  # the server thread is not left waiting
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # every feed polled once, by one worker; every item stored once
    requests = defaultdict(int)
    for req, _ in httpserver.log:
        requests[req.path] += 1
    assert dict(requests) == {f"/{name}": 1 for name, _ in POLLED}
    assert scalar(engine, "SELECT count(*) FROM poll_log") == len(POLLED)
    snap = snapshot(engine)
    assert {name: set(guids) for name, (_, guids) in snap.items()} == expected
    assert all(len(guids) == len(set(guids)) for _, guids in snap.values())
    # the work was shared: more than one worker polled feeds
    polled_by = []
    for log in logs:
        content = log.read_text()
        assert "Traceback" not in content, content
        polled_by.append(sum(int(n) for n in re.findall(r"polled (\d+) feeds?\b", content)))
    assert sum(polled_by) == len(POLLED)
    assert sum(1 for n in polled_by if n) >= 2, polled_by
    # ... and the clustering was not: one daemon holds the clustering lease and places every
    # item, the others never load an engine, so nobody reloads after another's batch
    texts = [log.read_text() for log in logs]
    assert sum(1 for text in texts if "clustered " in text) == 1, texts
    assert not any("reloading" in text for text in texts)
    # the clusters one process makes. Placement is online, so what an item joins can depend
    # on what was placed before it (term statistics, the learned site chrome); several
    # workers store items in a different order than one process, so a few borderline
    # decisions may go the other way. Copies of one article must all agree.
    got = partitions(engine)
    engine.dispose()
    for level, minimum in (("duplicate", 1.0), ("story", 0.99), ("thread", 0.97)):
        scores = score(mapping(got[level]), mapping(expected_parts[level]))
        print(f"{level}: pairwise F1 {scores.pairwise_f1:.3f}, B3 F1 {scores.bcubed_f1:.3f}")
        assert scores.bcubed_f1 >= minimum, (level, scores)
    assert got["duplicate"] == expected_parts["duplicate"]


@pytest.mark.postgres
def test_concurrent_clustering_ends_as_one_process_would(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items stored, then three services (as three daemons) cluster at the same moment: the
    epoch row lets one place a batch at a time and the others reload before theirs, so the
    clusters are exactly those of one service placing everything, near-duplicates that
    arrived together included."""
    files = [FEEDS / name for name, _ in POLLED] + [FEEDS / "wordpress-en-suwa-org-podcast.xml"]
    files.append(FEEDS / "google-news-en-us-search-1.xml")
    cfg = Config()

    def filled(url: str) -> Store:
        store = new_store(url)
        for path in files:
            assert import_file(store, cfg, path).error is None
        return store

    reference = filled(f"sqlite:///{tmp_path / 'one.sqlite'}")
    shared = filled(pg_url)
    try:
        DedupService(reference).process_pending()
        # small batches: many turns at the lock, so the services really take turns
        monkeypatch.setattr(service_mod, "BATCH", 10)
        services = [DedupService(shared) for _ in range(3)]
        for service in services:
            service.load()  # all start from the same (empty) state
        start = threading.Barrier(len(services))
        placed: list[int] = []

        def work(service: DedupService) -> None:
            start.wait()
            placed.append(service.process_pending())

        threads = [threading.Thread(target=work, args=(sv,)) for sv in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        total = scalar(reader(pg_url), "SELECT count(*) FROM items")
        assert sum(placed) == total > 300
        assert sum(1 for n in placed if n) >= 2, placed  # the work really was interleaved
        got = partitions(reader(pg_url))
        want = partitions(reader(str(reference.engine.url)))
        for level in ("duplicate", "story", "thread"):
            assert got[level] == want[level], level
    finally:
        reference.close()
        shared.close()
