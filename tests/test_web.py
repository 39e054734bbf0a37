"""The daemon's HTTP listener over a real socket: the story page, cluster pages with the
stored evidence of every merge, feeds, metrics and health, on both databases; the page in
headless Chromium with screenshots kept in ``artifacts/``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import feedparser
import pytest
from conftest import REPO
from sqlalchemy import select
from website import CHROMIUM, Page, chromium, config, get, running_site

from aggregator.config import Config
from aggregator.daemon import Daemon
from aggregator.errors import AggregatorError
from aggregator.store import Store
from aggregator.store.models import Cluster, ClusterMember
from aggregator.stories import recent_stories
from aggregator.web import Response, ServerLimits, WebApp, WebServer


@pytest.fixture(scope="module")
def site(module_store: Store):
    """(store, url): one site per database for the tests that only read it."""
    with running_site(module_store) as running:
        yield running


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_index_lists_each_recent_story_once(site) -> None:
    store, url = site
    status, headers, body = get(url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none'
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    page = Page(body.decode())
    with store.session() as s:
        expected = recent_stories(s, level="story", limit=100)
    assert sorted(page.stories) == sorted(st.entry.cluster_id for st in expected)
    for st in expected:
        text = page.text_of_story(st.entry.cluster_id)
        assert st.entry.headline.split()[0] in text
        if st.entry.outlets:
            assert f"covered by {len(st.entry.outlets) + 1} outlets" in text
            for outlet in st.entry.outlets:
                assert outlet.name in text
        if st.thread_id:
            assert f"/cluster/{st.thread_id}" in page.hrefs
    assert "script" not in page.tags
    assert all(h.startswith(("http://", "https://", "/", "#")) for h in page.hrefs)
    # the widest-covered story comes first
    first = next(iter(page.stories))
    assert first == max(expected, key=lambda st: len(st.entry.outlets)).entry.cluster_id


def test_cluster_page_explains_every_member_from_stored_evidence(site) -> None:
    store, url = site
    with store.session() as s:
        cid = max(
            (c for c in s.scalars(select(Cluster).where(Cluster.level == "story"))),
            key=lambda c: c.size,
        ).id
        members = list(
            s.scalars(
                select(ClusterMember).where(
                    ClusterMember.level == "story", ClusterMember.cluster_id == cid
                )
            )
        )
    assert len(members) > 10
    status, _, body = get(f"{url}/cluster/{cid}")
    assert status == 200
    page = Page(body.decode())
    assert sorted(page.rows) == sorted(m.item_id for m in members)
    for m in members:
        row = page.text_of_row(m.item_id)
        if m.score is not None:
            assert f"{m.score:.3f}" in row
        if m.estimated_score is not None:
            assert f"{m.estimated_score:.3f}" in row
        if m.matched_item_id is not None:
            assert f"#{m.matched_item_id}" in row
        if m.matched_bands:
            assert ", ".join(str(b) for b in m.matched_bands) in row
    assert any("weighted term similarity" in page.text_of_row(m.item_id) for m in members)


def test_thread_page_lists_its_stories_and_merged_clusters_redirect(site) -> None:
    store, url = site
    with store.session() as s:
        thread = max(
            s.scalars(
                select(Cluster).where(Cluster.level == "thread", Cluster.merged_into_id.is_(None))
            ),
            key=lambda c: c.size,
        )
        stories = set(
            s.scalars(
                select(ClusterMember.cluster_id)
                .where(ClusterMember.level == "story")
                .where(
                    ClusterMember.item_id.in_(
                        select(ClusterMember.item_id).where(
                            ClusterMember.level == "thread", ClusterMember.cluster_id == thread.id
                        )
                    )
                )
            )
        )
        merged = s.scalars(select(Cluster).where(Cluster.merged_into_id.is_not(None))).first()
    _, _, body = get(f"{url}/cluster/{thread.id}")
    page = Page(body.decode())
    assert {f"/cluster/{sid}" for sid in stories} <= set(page.hrefs)
    assert merged is not None, "the fixtures make the engine merge clusters"
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(f"{url}/cluster/{merged.id}", timeout=30)
    assert info.value.code == 301
    location = info.value.headers["Location"]
    status, _, _ = get(url + location)
    assert status == 200 and location != f"/cluster/{merged.id}"


def test_feeds_health_and_errors_over_http(site) -> None:
    store, url = site
    status, headers, body = get(url + "/feed.atom")
    assert status == 200 and headers["Content-Type"].startswith("application/atom+xml")
    parsed = feedparser.parse(body)
    assert not parsed.bozo and len(parsed.entries) > 10
    assert parsed.feed.links[0].href == "http://news.example.org/feed.atom"  # rel=self
    status, headers, body = get(url + "/feed.json?level=thread")
    assert status == 200 and headers["Content-Type"].startswith("application/feed+json")
    data = json.loads(body)
    assert data["feed_url"] == "http://news.example.org/feed.json?level=thread"  # this feed
    assert {i["_newsdedup"]["level"] for i in data["items"]} == {"thread"}

    status, headers, body = get(url + "/healthz")
    assert status == 200 and json.loads(body)["database"] == "ok"

    status, _, body = get(url + "/metrics")
    assert status == 200 and b"newsdedup_up 1" in body

    assert get(url + "/cluster/999999")[0] == 404
    assert get(url + "/cluster/abc")[0] == 404
    assert get(url + "/nothing-here")[0] == 404
    assert get(url + "/?level=bogus")[0] == 400
    assert get(url + "/?since=whenever")[0] == 400
    status, headers, body = get(url + "/", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = get(url + "/", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000


def test_daemon_serves_when_enabled_and_reports_a_taken_port(store: Store) -> None:
    cfg = config()
    daemon = Daemon(store, cfg)
    daemon.start()
    try:
        assert daemon.web is not None
        status, _, body = get(daemon.web.url + "/healthz")
        report = json.loads(body)
        assert status == 200 and report["status"] == "ok" and report["worker"] == daemon.owner
        taken = config(port=daemon.web.port)
        with pytest.raises(AggregatorError, match=r"http: cannot listen on 127\.0\.0\.1:\d+"):
            Daemon(store, taken).start()
    finally:
        daemon.stop()
    with pytest.raises(OSError):
        get(daemon.web.url + "/healthz")


# ---------------------------------------------------------------- hostile clients


def test_out_of_range_numbers_are_bad_requests(site, caplog: pytest.LogCaptureFixture) -> None:
    """Numbers no database column holds are the client's mistake: 400, one debug line."""
    _, url = site
    caplog.set_level(logging.DEBUG, logger="aggregator")
    for path in [
        "/cluster/99999999999999999999999",
        f"/cluster/{2**31}",
        "/cluster/" + "9" * 5000,  # beyond int()'s digit limit
        "/?since=99999999999d",
        "/?since=" + "9" * 400 + "d",  # a float that overflows to inf
        "/feed.atom?since=99999999999d",
        "/feed.json?since=36501d",
    ]:
        status, _, body = get(url + path)
        assert status == 400, (path, status, body[:200])
        assert b"range" in body or b"at most" in body, path
    assert get(url + f"/cluster/{2**31 - 1}")[0] == 404  # the largest id: a plain miss
    assert get(url + "/cluster/-1")[0] == 404
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /cluster/\xb9\xb2 HTTP/1.0\r\n\r\n")  # Latin-1 superscripts: "digits"
        assert sock.recv(1024).startswith(b"HTTP/1.0 404"), "not a number, so no such cluster"
    assert get(url + "/?since=-5d")[0] == 400
    assert get(url + "/?since=36500d")[0] == 200
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def _half_request(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
    return sock


def _web_threads(before: set[threading.Thread]) -> list[str]:
    """The web threads started since ``before`` (the module's site has its own)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("web") and t not in before]


def test_idle_half_sent_requests_hold_no_thread_and_time_out(sqlite_store: Store) -> None:
    limits = ServerLimits(workers=2, queued=2, head_timeout_s=3.0)
    server = WebServer(WebApp(sqlite_store, config()), "127.0.0.1", 0, limits)
    before = set(threading.enumerate())
    server.start()
    idle: list[socket.socket] = []
    try:
        idle = [_half_request(("127.0.0.1", server.port)) for _ in range(limits.workers + 10)]
        time.sleep(0.2)  # the listener has read them all
        started = time.monotonic()
        status, _, body = get(server.url + "/healthz")
        assert status == 200 and json.loads(body)["database"] == "ok"
        assert time.monotonic() - started < 2.5
        for sock in idle:  # all still waiting for the rest of their request
            sock.settimeout(0.01)
            with pytest.raises(TimeoutError):
                sock.recv(1024)
        assert len(_web_threads(before)) <= limits.workers + 1, _web_threads(
            before
        )  # + the listener
        for sock in idle:  # each is closed once its head is overdue
            sock.settimeout(10)
            assert sock.recv(1024) == b""
        assert get(server.url + "/healthz")[0] == 200
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_unfinished_requests_beyond_the_bound_drop_the_oldest(sqlite_store: Store) -> None:
    server = WebServer(WebApp(sqlite_store, config()), "127.0.0.1", 0, ServerLimits(pending=4))
    server.start()
    idle: list[socket.socket] = []
    try:
        for _ in range(7):
            idle.append(_half_request(("127.0.0.1", server.port)))
            time.sleep(0.05)  # accepted in this order
        # the request that follows is the 8th: the four oldest unfinished ones make room
        assert get(server.url + "/healthz")[0] == 200
        for i, sock in enumerate(idle):
            sock.settimeout(0.5 if i < 4 else 0.2)
            if i < 4:
                assert sock.recv(1024) == b"", i
            else:
                with pytest.raises(TimeoutError):
                    sock.recv(1024)
    finally:
        for sock in idle:
            sock.close()
        server.stop()


class _Held(WebApp):
    """Every answer waits until the test lets it go: the workers stay busy."""

    def __init__(self, store: Store, cfg: Config) -> None:
        super().__init__(store, cfg)
        self.release = threading.Event()

    def route(self, method: str, target: str) -> Response:
        assert self.release.wait(30)
        return Response(200, "text/plain", b"done\n")


def test_requests_beyond_workers_and_queue_get_503_at_once(sqlite_store: Store) -> None:
    limits = ServerLimits(workers=2, queued=1)
    app = _Held(sqlite_store, config())
    server = WebServer(app, "127.0.0.1", 0, limits)
    before = set(threading.enumerate())
    server.start()
    socks: list[socket.socket] = []
    try:
        for _ in range(limits.workers + limits.queued):  # two answering, one waiting
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            socks[-1].sendall(b"GET / HTTP/1.0\r\n\r\n")
        time.sleep(0.3)
        started = time.monotonic()
        status, _, body = get(server.url + "/")
        assert status == 503 and b"busy" in body and time.monotonic() - started < 2
        assert len(_web_threads(before)) <= limits.workers + 1, _web_threads(before)
        app.release.set()
        for sock in socks:
            assert sock.makefile("rb").read().endswith(b"done\n")
        assert get(server.url + "/")[0] == 200
    finally:
        app.release.set()
        for sock in socks:
            sock.close()
        server.stop()


class _BigPage(WebApp):
    """A page far larger than the socket buffers: the answer is still being written when the
    client goes away."""

    def route(self, method: str, target: str) -> Response:
        return Response(200, "text/plain", b"x" * (16 << 20))


def test_client_leaving_mid_response_is_one_debug_line(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="aggregator")
    server = WebServer(_BigPage(sqlite_store, config()), "127.0.0.1", 0)
    server.start()
    try:
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.0 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset, with most of the answer unsent
        deadline = time.monotonic() + 10
        while caplog.text.count("went away") < 3:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
        status, _, body = get(server.url + "/")
        assert status == 200 and len(body) == 16 << 20
    finally:
        server.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


# ---------------------------------------------------------------- a real browser


def test_page_in_headless_chromium(site, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("NEWSDEDUP_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{CHROMIUM} is missing but NEWSDEDUP_REQUIRE_CHROMIUM=1")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    store, url = site
    with store.session() as s:
        expected = recent_stories(s, level="story", limit=100)
    # the DOM as the browser built it: loaded, and listing the expected stories
    proc = chromium("--dump-dom", url + "/", profile=tmp_path / "p1")
    dom = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0 and "</html>" in dom, proc.stderr.decode()[-2000:]
    page = Page(dom)
    assert sorted(page.stories) == sorted(st.entry.cluster_id for st in expected)
    out = REPO / "artifacts"
    out.mkdir(exist_ok=True)
    big = max(expected, key=lambda st: len(st.entry.outlets))
    for name, path in (
        ("web-index.png", "/"),
        ("web-cluster.png", f"/cluster/{big.entry.cluster_id}"),
    ):
        shot = tmp_path / name
        proc = chromium(
            f"--screenshot={shot}",
            "--window-size=1000,1400",
            url + path,
            profile=tmp_path / f"profile-{name}",
        )
        assert shot.exists(), proc.stderr.decode(errors="replace")[-2000:]
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20 * 1024
        shutil.copyfile(shot, out / name)
