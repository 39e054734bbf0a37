"""A site served by the real web listener on a free port, fetched over a real socket, its
pages parsed, and headless Chromium: for the tests of the web pages (test_web, test_web_paging)."""

from __future__ import annotations

import contextlib
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from helpers import fill

from aggregator.config import Config
from aggregator.store import Store
from aggregator.web import WebApp, WebServer

CHROMIUM = Path("/usr/bin/chromium")
FIXTURES = ["google-news-en-us-search-1.xml", "wordpress-en-suwa-org-podcast.xml"]


def config(**http: object) -> Config:
    return Config.model_validate({"http": {"enabled": True, "port": 0, **http}})


def serve_site(store: Store) -> WebServer:
    """FIXTURES imported and clustered into ``store``, served on a free port."""
    cfg = config(base_url="http://news.example.org")
    fill(store, FIXTURES, cfg)
    server = WebServer(WebApp(store, cfg), "127.0.0.1", 0)
    server.start()
    return server


@contextlib.contextmanager
def running_site(store: Store) -> Iterator[tuple[Store, str]]:
    """(store, url) of :func:`serve_site`, stopped on leaving."""
    server = serve_site(store)
    try:
        yield store, server.url
    finally:
        server.stop()


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Page(HTMLParser):
    """The parts of a page the tests look at: story cards, member rows, links, scripts."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stories: dict[int, list[str]] = {}
        self.rows: dict[int, list[str]] = {}
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self._story: int | None = None
        self._row: int | None = None
        self._depth = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        a = dict(attrs)
        self.tags.append(tag)
        if "href" in a:
            self.hrefs.append(a["href"] or "")
        if tag == "article" and a.get("data-cluster"):
            self._story = int(a["data-cluster"])
            self.stories[self._story] = []
        if tag == "tr" and a.get("data-item"):
            self._row = int(a["data-item"])
            self.rows[self._row] = []

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag == "article":
            self._story = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self._story is not None:
            self.stories[self._story].append(data)
        if self._row is not None:
            self.rows[self._row].append(data)

    def text_of_story(self, cid: int) -> str:
        return " ".join(" ".join(self.stories[cid]).split())

    def text_of_row(self, item: int) -> str:
        return " ".join(" ".join(self.rows[item]).split())


# ---------------------------------------------------------------- a real browser


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[bytes]:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, timeout=90, check=False)
