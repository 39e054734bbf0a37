"""The web index pages on, the cluster page is headed by its headline, and the pages read
on a 390 px phone as on a 1280 px screen (headless Chromium)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO
from website import CHROMIUM, Page, chromium, get, running_site

from aggregator import web
from aggregator.store import Store
from aggregator.stories import recent_stories


@pytest.fixture(scope="module")
def site(module_store: Store):
    """(store, url): one site per database for the tests that only read it."""
    with running_site(module_store) as running:
        yield running


def test_index_pages_on_with_older_links_until_every_cluster_was_shown(
    site, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, url = site
    monkeypatch.setattr(web, "PAGE_LIMIT", 7)
    with store.session() as s:
        every = {st.entry.cluster_id for st in recent_stories(s, level="story", limit=10_000)}
    assert len(every) > 15  # at least three pages
    seen: list[int] = []
    path, pages = "/?since=36500d", 0
    while path:
        status, _, body = get(url + path)
        assert status == 200, body[:300]
        html = body.decode()
        page = Page(html)
        assert 1 <= len(page.stories) <= 7
        seen += list(page.stories)
        pages += 1
        older = [h for h in page.hrefs if "page=" in h and h.endswith(f"page={pages + 1}")]
        if pages > 1:
            assert f'href="/?since=36500d{"" if pages == 2 else f"&amp;page={pages - 1}"}"' in html
            assert "newer" in html
        path = older[0].replace("&amp;", "&") if older else ""
        assert "since=36500d" in (path or "since=36500d")  # the period is kept
    assert len(seen) == len(set(seen)) and set(seen) == every
    assert pages == -(-len(every) // 7)
    assert get(url + f"/?since=36500d&page={pages + 1}")[0] == 404


@pytest.mark.parametrize(
    "query", ["page=0", "page=-1", "page=x", "page=1.5", "page=100001", "page=" + "9" * 400]
)
def test_bad_page_numbers_are_bad_requests(site, query: str) -> None:
    _, url = site
    status, _, body = get(url + "/?" + query)
    assert status == 400 and b"page must be a whole number from 1 to 100000" in body


def test_cluster_page_is_headed_by_its_headline(site) -> None:
    store, url = site
    with store.session() as s:
        stories = recent_stories(s, level="story", limit=10_000)
    big = max(stories, key=lambda st: len(st.entry.outlets))
    status, _, body = get(url + f"/cluster/{big.entry.cluster_id}")
    html = body.decode()
    assert status == 200
    h1 = html.split("<h1>", 1)[1].split("</h1>", 1)[0]
    from html import unescape

    assert unescape(h1) == big.entry.headline and h1 != f"Story {big.entry.cluster_id}"
    assert f"Story {big.entry.cluster_id} ·" in html  # the id is still there, below it


# ---------------------------------------------------------------- phone and desktop

# Appended to a saved copy of a page (served, the page allows no script): measures what a
# reader would see and writes it into the DOM, which --dump-dom prints.
MEASURE = """<script>
const words = [];
const walker = document.createTreeWalker(document.querySelector("main"), NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  for (const m of n.data.matchAll(/[\\p{L}]{4,}/gu)) {
    const r = document.createRange();
    r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
    const tops = new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.top)));
    if (tops.size > 1) words.push(m[0]);
  }
}
document.body.setAttribute("data-overflow",
  String(document.documentElement.scrollWidth - document.documentElement.clientWidth));
document.body.setAttribute("data-broken", words.join(" "));
</script>"""


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[bytes]:
    """website's Chromium, without scrollbars (they would narrow the measured page)."""
    return chromium("--hide-scrollbars", *args, profile=profile)


@pytest.fixture(scope="module")
def sqlite_site(module_sqlite_store: Store):
    with running_site(module_sqlite_store) as running:
        yield running


@pytest.mark.parametrize("width", [390, 1280])
def test_cluster_page_reads_without_broken_words_or_sideways_scrolling(
    sqlite_site, tmp_path: Path, width: int
) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("NEWSDEDUP_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{CHROMIUM} is missing but NEWSDEDUP_REQUIRE_CHROMIUM=1")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    store, url = sqlite_site
    with store.session() as s:
        stories = recent_stories(s, level="story", limit=10_000)
    big = max(stories, key=lambda st: len(st.entry.outlets))
    _, _, body = get(url + f"/cluster/{big.entry.cluster_id}")
    page = tmp_path / "cluster.html"
    page.write_text(body.decode().replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    proc = _chromium(
        "--dump-dom", f"--window-size={width},900", page.as_uri(), profile=tmp_path / "p"
    )
    dom = proc.stdout.decode("utf-8", "replace")
    assert 'data-overflow="' in dom, proc.stderr.decode(errors="replace")[-2000:]
    overflow = int(dom.split('data-overflow="', 1)[1].split('"', 1)[0])
    broken = dom.split('data-broken="', 1)[1].split('"', 1)[0].split()
    assert overflow <= 0, f"{overflow}px sideways scrolling at {width}px"
    assert broken == [], f"words broken across lines at {width}px: {broken[:10]}"

    shot = tmp_path / f"web-cluster-{width}.png"
    proc = _chromium(
        f"--screenshot={shot}",
        f"--window-size={width},1400",
        url + f"/cluster/{big.entry.cluster_id}",
        profile=tmp_path / "p2",
    )
    assert shot.exists(), proc.stderr.decode(errors="replace")[-2000:]
    out = REPO / "artifacts"
    out.mkdir(exist_ok=True)
    shutil.copyfile(shot, out / f"web-cluster-{width}.png")


# ---------------------------------------------------------------- feeds say where they are


def test_served_feeds_name_themselves_and_the_home_page(site) -> None:
    import json
    from xml.etree import ElementTree as ET

    _, url = site
    status, _, body = get(url + "/feed.atom?level=thread&since=7d")
    assert status == 200
    links = {
        el.get("rel"): el.get("href")
        for el in ET.fromstring(body).findall("{http://www.w3.org/2005/Atom}link")
    }
    assert links["self"] == "http://news.example.org/feed.atom?level=thread&since=7d"
    assert links["alternate"] == "http://news.example.org"
    status, _, body = get(url + "/feed.json")
    doc = json.loads(body)
    assert doc["feed_url"] == "http://news.example.org/feed.json"
    assert doc["home_page_url"] == "http://news.example.org"


def test_exported_feeds_name_where_the_web_listener_serves_them(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import json

    from aggregator.cli import main

    cfg = tmp_path / "config.yaml"
    cfg.write_text("http:\n  base_url: https://news.example.org/\n", encoding="utf-8")
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", str(store.engine.url.render_as_string(False)))
    out = io.StringIO()
    assert main(["-q", "--config", str(cfg), "export", "--format", "jsonfeed"], out=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["feed_url"] == "https://news.example.org/feed.json"
    assert doc["home_page_url"] == "https://news.example.org"
    out = io.StringIO()
    args = ["export", "--format", "atom", "--level", "duplicate"]
    assert main(["-q", "--config", str(cfg), *args], out=out) == 0
    assert (
        '<link rel="self" type="application/atom+xml" '
        'href="https://news.example.org/feed.atom?level=duplicate" />' in out.getvalue()
    )
