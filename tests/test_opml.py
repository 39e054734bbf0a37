"""OPML import/export: typing by URL, screening of foreign files, the store, the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import new_schema
from helpers import Ran, cli, migrate, run_cli
from sqlalchemy import func, select, text

from aggregator.config import SourceConfig
from aggregator.errors import InputError
from aggregator.opml import (
    OpmlFeed,
    detect_type,
    export_sources,
    import_feeds,
    read_opml,
    render_opml,
)
from aggregator.store import db as store_db
from aggregator.store import repo
from aggregator.store.models import Feed, Source

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

GOOGLE = "https://news.google.com/rss/search?q=K%C3%BCnstliche%20Intelligenz&hl=de&gl=DE&ceid=DE:de"
BING = "https://www.bing.com/news/search?q=artificial%20intelligence&format=rss&mkt=en-US"


def opml(body: str, *, head: str = "<head><title>Mine</title></head>") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">{head}<body>{body}</body>'
        "</opml>"
    ).encode()


NESTED = opml(
    """
    <outline text="News">
      <outline text="Aggregators">
        <outline text="Google KI" type="rss" xmlUrl="{google}"/>
        <outline title="Bing AI" text="ignored" xmlUrl="{bing}"/>
      </outline>
      <outline text="Blog" xmlUrl="https://blog.example.org/feed/" htmlUrl="https://blog.example.org/"/>
    </outline>
    <outline text="Tech">
      <outline text="Atom Site" type="atom" xmlUrl="https://atom.example.net/updates.xml"/>
      <outline xmlUrl="https://plain.example.com/rss.xml"/>
    </outline>
    """.replace("{google}", GOOGLE.replace("&", "&amp;")).replace(
        "{bing}", BING.replace("&", "&amp;")
    )
)


# ---------------------------------------------------------------- typing


@pytest.mark.parametrize(
    ("url", "opml_type", "expected"),
    [
        (GOOGLE, "rss", "google_news"),
        (
            "https://news.google.com/rss/topics/CAAqJggKIiBDQkFTRWdvSUwyMHZNRGRqTVhZU0FtVnVHZ0pWVXlnQVAB",
            None,
            "google_news",
        ),  # fmt: skip
        ("https://news.google.com/search?q=ki", None, "rss"),  # the HTML page, not the feed
        (BING, None, "bing_news"),
        ("https://www.bing.com/news/search?q=ki&format=RSS", "rss", "bing_news"),
        ("https://bing.com/news/search/?format=rss&q=x", None, "bing_news"),
        ("https://www.bing.com/news/search?q=ki", None, "rss"),  # HTML results
        ("https://blog.example.org/feed/", "rss", "wordpress"),
        ("https://www.it-boltwise.de/feed", None, "wordpress"),
        ("https://blog.example.org/feed/rss2", None, "wordpress"),
        ("https://blog.example.org/feed/atom/", "atom", "wordpress"),
        ("https://blog.example.org/comments/feed/", None, "wordpress"),
        ("https://blog.example.org/?feed=rss2", None, "wordpress"),
        ("https://blog.example.org/index.php?feed=atom", None, "wordpress"),
        ("https://example.com/rss.xml", "rss", "rss"),
        ("https://example.com/newsfeed", None, "rss"),
        ("https://example.com/updates.xml", "atom", "atom"),
        ("https://www.heise.de/rss/heise-atom.xml", "rss", "atom"),
    ],
)
def test_detect_type(url: str, opml_type: str | None, expected: str) -> None:
    assert detect_type(url, opml_type) == expected


# ---------------------------------------------------------------- reading


def test_nested_category_outlines_are_walked_in_order() -> None:
    feeds = read_opml(NESTED).feeds
    assert [(f.name, f.url, f.type) for f in feeds] == [
        ("Google KI", GOOGLE, "google_news"),
        ("Bing AI", BING, "bing_news"),  # title wins over text
        ("Blog", "https://blog.example.org/feed/", "wordpress"),
        ("Atom Site", "https://atom.example.net/updates.xml", "atom"),
        ("plain.example.com", "https://plain.example.com/rss.xml", "rss"),  # no name: host
    ]
    assert feeds[2].html_url == "https://blog.example.org/"
    assert feeds[0].html_url is None


def test_exact_type_attribute_wins_over_the_guess() -> None:
    data = opml(
        '<outline text="x" xmlns:nd="urn:newsdedup:opml" nd:type="rss" '
        'xmlUrl="https://blog.example.org/feed/"/>'
        '<outline text="y" xmlns:nd="urn:newsdedup:opml" nd:type="nonsense" '
        'xmlUrl="https://blog.example.org/feed/"/>'
    )
    assert [f.type for f in read_opml(data).feeds] == ["rss", "wordpress"]


def test_non_http_feed_urls_are_skipped_with_a_reason() -> None:
    doc = read_opml(
        opml(
            '<outline text="mail" xmlUrl="mailto:news@example.org"/>'
            '<outline text="local" xmlUrl="file:///etc/passwd"/>'
            '<outline text="ftp" xmlUrl="ftp://example.org/feed.xml"/>'
            '<outline text="relative" xmlUrl="/feed.xml"/>'
            '<outline text="empty" xmlUrl=" "/>'
            '<outline text="spaced" xmlUrl="https://exa mple.org/feed"/>'
            '<outline text="ok" xmlUrl=" https://ok.example.org/rss "/>'
        )
    )
    assert [(f.name, f.url) for f in doc.feeds] == [("ok", "https://ok.example.org/rss")]
    reasons = {s.name: s.reason for s in doc.skipped}
    assert set(reasons) == {"mail", "local", "ftp", "relative", "empty", "spaced"}
    assert "http(s)" in reasons["mail"] and "'file'" in reasons["local"]
    assert reasons["empty"] == "empty xmlUrl"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE opml [
  <!ENTITY a "aaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<opml version="2.0"><body><outline text="&c;" xmlUrl="https://x.example/rss"/></body></opml>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><body><outline text="&secret;" xmlUrl="https://x.example/rss"/></body></opml>"""

PLAIN_DOCTYPE = b"""<?xml version="1.0"?>
<!DOCTYPE opml SYSTEM "http://example.org/opml.dtd">
<opml version="2.0"><body><outline text="x" xmlUrl="https://x.example/rss"/></body></opml>"""


@pytest.mark.parametrize(
    "data",
    [BILLION_LAUGHS, EXTERNAL, PLAIN_DOCTYPE, EXTERNAL.decode().encode("utf-16")],
    ids=["nested-entities", "external-entity", "doctype", "utf16-external-entity"],
)
def test_a_doctype_is_refused(data: bytes) -> None:
    with pytest.raises(InputError, match=r"^refused: the file has a DOCTYPE"):
        read_opml(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"name,url\nheise,https://www.heise.de/rss/heise-atom.xml\n", "invalid XML"),
        (b"", "invalid XML"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "invalid XML"),
        (b"<opml><body><outline text='x'></body></opml>", "invalid XML"),
        (b"<rss version='2.0'><channel/></rss>", "root element is <rss>"),
        (b"<opml version='2.0'><head/></opml>", "no <body>"),
        (b"<opml><body><outline text='&nbsp;'/></body></opml>", "undefined entity"),
    ],
)
def test_not_an_opml_file_is_one_clear_line(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=r"^not an OPML file") as err:
        read_opml(data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_render_opml_is_opml_2_and_reads_back() -> None:
    sources = [
        OpmlFeed('Tom & Jerry <"news">', "https://x.example/rss?a=1&b=2", "rss"),
        OpmlFeed(
            "Blog", "https://blog.example.org/feed/", "wordpress", "https://blog.example.org/"
        ),
        OpmlFeed("Ünïcödé", "https://ü.example/atom", "atom"),
    ]
    data = render_opml(sources, now=NOW)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert b'<opml xmlns:newsdedup="urn:newsdedup:opml" version="2.0">' in data
    assert b"<dateCreated>Sun, 01 Mar 2026 12:00:00 GMT</dateCreated>" in data
    assert b'type="rss"' in data and b'newsdedup:type="wordpress"' in data
    assert "Ünïcödé".encode() in data
    assert list(read_opml(data).feeds) == sources
    assert read_opml(data).title == "newsdedup sources"


# ---------------------------------------------------------------- the store


def _sources(store) -> dict[str, tuple[str, str, str, bool, bool]]:
    with store.session() as s:
        return {
            r.name: (r.url, r.type, r.origin, r.in_config, r.enabled)
            for r in s.scalars(select(Source))
        }


def _import(store, data: bytes, now: datetime = NOW):
    with store.session() as s:
        return import_feeds(s, read_opml(data).feeds, now)


def test_import_adds_enabled_opml_sources_with_a_main_feed_due_now(store) -> None:
    report = _import(store, NESTED)
    assert [o.action for o in report.outcomes] == ["added"] * 5 and not report.renamed
    with store.session() as s:
        rows = {r.name: r for r in s.scalars(select(Source))}
        assert {n: r.type for n, r in rows.items()} == {
            "Google KI": "google_news",
            "Bing AI": "bing_news",
            "Blog": "wordpress",
            "Atom Site": "atom",
            "plain.example.com": "rss",
        }
        for r in rows.values():
            assert (r.origin, r.in_config, r.enabled, r.comments) == ("opml", False, True, False)
        url_of = {r.id: r.url for r in rows.values()}
        feeds = list(s.scalars(select(Feed)))
        assert len(feeds) == 5
        for f in feeds:
            assert f.kind == "main" and f.enabled and f.url == url_of[f.source_id]
            assert f.next_check_at == NOW and f.created_at == NOW


def test_importing_twice_adds_nothing(store) -> None:
    _import(store, NESTED)
    before = _sources(store)
    report = _import(store, NESTED, NOW + timedelta(hours=1))
    assert report.added == [] and len(report.present) == 5
    assert {o.name for o in report.present} == set(before)
    assert _sources(store) == before
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Feed)) == 5


def test_a_feed_already_polled_by_another_source_is_present(store) -> None:
    with store.session() as s:
        repo.sync_sources(
            s, [SourceConfig(name="cfg-blog", type="wordpress", url="https://blog.example.org/feed/")], NOW
        )  # fmt: skip
        # a main feed whose URL differs from its source's still counts
        src = s.scalar(select(Source).where(Source.name == "cfg-blog"))
        src.url = "https://blog.example.org/"
    data = opml(
        '<outline text="Blog" xmlUrl="HTTPS://Blog.Example.ORG/feed/#top"/>'
        '<outline text="Twice" xmlUrl="https://twice.example/rss"/>'
        '<outline text="Twice again" xmlUrl="https://twice.example/rss"/>'
    )
    report = _import(store, data)
    assert [(o.action, o.name) for o in report.outcomes] == [
        ("present", "cfg-blog"),
        ("added", "Twice"),
        ("present", "Twice"),
    ]


def test_a_taken_name_with_another_url_gets_a_suffix(store) -> None:
    with store.session() as s:
        repo.sync_sources(
            s, [SourceConfig(name="Blog", type="rss", url="https://one.example/rss")], NOW
        )
    data = opml(
        '<outline text="Blog" xmlUrl="https://two.example/rss"/>'
        '<outline text="Blog" xmlUrl="https://three.example/rss"/>'
    )
    report = _import(store, data)
    assert [(o.name, o.renamed) for o in report.outcomes] == [("Blog-2", True), ("Blog-3", True)]
    assert len(report.renamed) == 2
    got = _sources(store)
    assert got["Blog"][0] == "https://one.example/rss" and got["Blog"][2] == "config"
    assert got["Blog-2"][0] == "https://two.example/rss"
    assert got["Blog-3"][0] == "https://three.example/rss"


def test_a_long_taken_name_still_fits(store) -> None:
    long = "n" * 200
    first = _import(store, opml(f'<outline text="{long}" xmlUrl="https://a.example/rss"/>'))
    second = _import(store, opml(f'<outline text="{long}" xmlUrl="https://b.example/rss"/>'))
    assert first.added[0].name == long
    assert second.added[0].name.endswith("-2") and len(second.added[0].name) <= 200


def test_imported_sources_survive_sync_and_are_taken_over_by_config(store) -> None:
    _import(store, NESTED)
    unrelated = SourceConfig(name="other", type="rss", url="https://other.example/rss")
    with store.session() as s:
        repo.sync_sources(s, [unrelated], NOW)
    got = _sources(store)
    assert got["Blog"] == ("https://blog.example.org/feed/", "wordpress", "opml", False, True)
    with store.session() as s:
        assert all(f.enabled for f in s.scalars(select(Feed)))
    takeover = SourceConfig(
        name="Blog", type="wordpress", url="https://blog.example.org/feed", comments=True
    )
    with store.session() as s:
        repo.sync_sources(s, [unrelated, takeover], NOW + timedelta(minutes=5))
    got = _sources(store)
    assert got["Blog"] == ("https://blog.example.org/feed", "wordpress", "config", True, True)
    assert len(got) == 6  # taken over, not duplicated
    with store.session() as s:
        src = s.scalar(select(Source).where(Source.name == "Blog"))
        mains = list(s.scalars(select(Feed).where(Feed.source_id == src.id)))
        assert [f.url for f in mains] == ["https://blog.example.org/feed"]
    # once the config lets it go, it is retired like any config source
    with store.session() as s:
        repo.sync_sources(s, [unrelated], NOW + timedelta(minutes=10))
    assert _sources(store)["Blog"][2:4] == ("config", False)
    with store.session() as s:
        assert "Blog" not in {f.name for f in export_sources(s)}


def test_export_lists_enabled_wanted_sources(store) -> None:
    cfg = [
        SourceConfig(name="wp", type="wordpress", url="https://wp.example/blog/feed/"),
        SourceConfig(name="off", type="rss", url="https://off.example/rss", enabled=False),
        SourceConfig(name="gone", type="rss", url="https://gone.example/rss"),
        SourceConfig(name="gn", type="google_news", query="KI", language="de", country="DE"),
    ]
    with store.session() as s:
        repo.sync_sources(s, cfg, NOW)
        repo.sync_sources(s, [c for c in cfg if c.name != "gone"], NOW)
    _import(store, opml('<outline text="imp" xmlUrl="https://imp.example/atom.xml"/>'))
    with store.session() as s:
        out = export_sources(s)
    assert out == [
        OpmlFeed("gn", cfg[3].feed_url(), "google_news"),
        OpmlFeed("imp", "https://imp.example/atom.xml", "atom"),
        OpmlFeed("wp", "https://wp.example/blog/feed/", "wordpress", "https://wp.example/blog/"),
    ]


@pytest.fixture
def fresh_store(db_url: str, tmp_path: Path, request: pytest.FixtureRequest):
    """A second, empty store on the same kind of database (for round trips)."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    else:
        url = new_schema(request.getfixturevalue("pg_database"))
    s = store_db.Store(store_db.make_engine(migrate(url)))
    yield s
    s.close()


def test_export_then_import_into_a_fresh_database_keeps_every_feed(store, fresh_store) -> None:
    cfg = [
        SourceConfig(name="it-boltwise", type="wordpress", url="https://www.it-boltwise.de/feed"),
        SourceConfig(name="google-news-ki", type="google_news", query="Künstliche Intelligenz"),
        SourceConfig(name="bing-news-ai", type="bing_news", query="artificial intelligence"),
        SourceConfig(name="heise", type="atom", url="https://www.heise.de/rss/heise-atom.xml"),
        # types the URL alone would guess wrong: only newsdedup:type keeps them
        SourceConfig(name="feedish", type="rss", url="https://substack.example/feed"),
        SourceConfig(name="atomish", type="rss", url="https://x.example/atom.xml"),
        SourceConfig(name="R&D <news>", type="atom", url="https://rd.example/feed.xml?a=1&b=2"),
    ]
    with store.session() as s:
        repo.sync_sources(s, cfg, NOW)
    first = _import(store, NESTED)
    assert [o.name for o in first.present] == ["bing-news-ai"]  # same URL as the config's
    with store.session() as s:
        exported = export_sources(s)
    assert len(exported) == len(cfg) + 4
    report = _import(fresh_store, render_opml(exported))
    assert len(report.added) == len(exported) and not report.renamed
    with fresh_store.session() as s:
        again = export_sources(s)
    assert again == exported
    assert {(f.name, f.url, f.type) for f in again} >= {(c.name, c.feed_url(), c.type) for c in cfg}


# ---------------------------------------------------------------- the CLI, end to end


CONFIG = """\
database:
  url: sqlite:///cli.sqlite
sources:
  - name: blog
    type: wordpress
    url: https://blog.example.org/feed/
  - name: google-news-ki
    type: google_news
    query: "Künstliche Intelligenz"
    language: de
    country: DE
"""


def run(config: Path, *args: str, db_url: str) -> Ran:
    return cli(config, "-q", *args, env={"AGGREGATOR_DATABASE_URL": db_url})


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path) -> tuple[Path, str]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG, encoding="utf-8")
    return cfg, migrate(db_url)


def _count_sources(db_url: str) -> int:
    engine = store_db.make_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM sources")).scalar_one()
    finally:
        engine.dispose()


def test_cli_opml_import_reports_each_feed_and_a_summary(cli_env, tmp_path: Path) -> None:
    cfg, db_url = cli_env
    src = tmp_path / "subs.opml"
    src.write_bytes(
        opml(
            '<outline text="Folder">'
            '<outline text="Blog copy" xmlUrl="https://blog.example.org/feed/"/>'
            '<outline text="blog" xmlUrl="https://other.example/feed/"/>'
            '<outline text="Bing AI" xmlUrl="https://www.bing.com/news/search?q=ai&amp;format=rss"/>'
            '<outline text="mail" xmlUrl="mailto:a@example.org"/>'
            "</outline>"
        )
    )
    first = run(cfg, "opml", "import", str(src), db_url=db_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "skipped\tBlog copy\twordpress\thttps://blog.example.org/feed/\talready present as 'blog'",
        "added\tblog-2\twordpress\thttps://other.example/feed/\trenamed: 'blog' is taken",
        "added\tBing AI\tbing_news\thttps://www.bing.com/news/search?q=ai&format=rss",
        "skipped\tmail\t-\tmailto:a@example.org\tnot an http(s) URL (scheme 'mailto')",
        f"{src}: 2 added (1 renamed), 1 already present, 1 skipped",
    ]
    second = run(cfg, "opml", "import", str(src), db_url=db_url)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == f"{src}: 0 added, 3 already present, 1 skipped"
    assert _count_sources(db_url) == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (BILLION_LAUGHS, "refused: the file has a DOCTYPE"),
        (b"this is not xml\n", "not an OPML file: invalid XML"),
    ],
    ids=["entities", "not-xml"],
)
def test_cli_opml_import_of_a_bad_file_is_one_line_and_adds_nothing(
    cli_env, tmp_path: Path, content: bytes, message: str
) -> None:
    cfg, db_url = cli_env
    bad = tmp_path / "bad.opml"
    bad.write_bytes(content)
    before = _count_sources(db_url)
    proc = run(cfg, "opml", "import", str(bad), db_url=db_url)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"aggregator: error: {bad}: {message}")
    assert _count_sources(db_url) == before


def test_cli_opml_import_of_a_missing_file(cli_env, tmp_path: Path) -> None:
    cfg, db_url = cli_env
    proc = run(cfg, "opml", "import", str(tmp_path / "nope.opml"), db_url=db_url)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"aggregator: error: cannot read {tmp_path / 'nope.opml'}: " + (
        "No such file or directory"
    )


def test_cli_opml_export_round_trips_through_import(cli_env, tmp_path: Path) -> None:
    cfg, db_url = cli_env
    extra = tmp_path / "extra.opml"
    extra.write_bytes(opml('<outline text="Atom Site" xmlUrl="https://a.example/atom.xml"/>'))
    assert run(cfg, "opml", "import", str(extra), db_url=db_url).returncode == 0
    # a real process: stdout there is a binary stream, written the rendered bytes as they are
    out = run_cli(cfg, "-q", "opml", "export", env={"AGGREGATOR_DATABASE_URL": db_url})
    assert out.returncode == 0, out.stderr
    feeds = read_opml(out.stdout.encode("utf-8")).feeds
    assert [(f.name, f.type) for f in feeds] == [
        ("Atom Site", "atom"),
        ("blog", "wordpress"),
        ("google-news-ki", "google_news"),
    ]
    target = tmp_path / "out.opml"
    to_file = run(cfg, "opml", "export", "-o", str(target), db_url=db_url)
    assert to_file.returncode == 0, to_file.stderr
    assert to_file.stdout.strip() == f"3 sources -> {target}"
    assert read_opml(target.read_bytes()).feeds == feeds
    # into a fresh database whose config lists nothing: every feed comes back
    empty_cfg = tmp_path / "empty.yaml"
    empty_cfg.write_text("database:\n  url: sqlite:///unused.sqlite\n", encoding="utf-8")
    fresh_url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    back = run(empty_cfg, "opml", "import", str(target), db_url=fresh_url)
    assert back.returncode == 0, back.stderr
    assert back.stdout.splitlines()[-1] == f"{target}: 3 added, 0 already present, 0 skipped"
    again = run(empty_cfg, "opml", "export", db_url=fresh_url)
    assert read_opml(again.stdout.encode("utf-8")).feeds == feeds
