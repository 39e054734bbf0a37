"""parse_feed / detect_source_type against the real fixture feeds (expectations read by
hand from the XML, not copied from parser output)."""

from __future__ import annotations

from datetime import UTC, datetime

import feedparser
import pytest
from conftest import FEEDS

from aggregator.domain import ParsedFeed
from aggregator.errors import ParseError
from aggregator.normaliser import normalise_feed
from aggregator.parser import detect_source_type, parse_feed

BASE = "https://example.org/feed/"


def load(name: str, url: str = BASE, **kwargs) -> ParsedFeed:
    return parse_feed((FEEDS / name).read_bytes(), url=url, **kwargs)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# file, version, entries, source type, first title, first url, first published_at (UTC)
FIXTURES = [
    (
        "atom-de-heise-developer.xml",
        "atom10",
        15,
        "atom",
        "Java-Anwendungsserver: Red Hat gibt WildFly 10 frei",
        "http://www.heise.de/developer/meldung/Java-Anwendungsserver-Red-Hat-gibt-WildFly-10-frei-3088438.html?wt_mc=rss.developer.beitrag.atom",
        utc(2016, 2, 1, 16, 22),  # 17:22+01:00
    ),
    (
        "atom-en-h-online.xml",
        "atom10",
        60,
        "atom",
        "McAfee update brings systems down again",
        "http://www.h-online.com/security/McAfee-update-brings-systems-down-again--/news/113689/from/rss",
        utc(2009, 7, 4, 18, 31, 10),  # only <updated> 20:31:10+02:00
    ),
    (
        "bing-news-en-in-search-1.xml",
        "rss20",
        2,
        "bing_news",
        "‘While I was in jail, Khan Sir got my brother killed’: Rival tutor’s explosive allegation after bail",
        "http://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=6a326756416444ae948ecbaea0c4a6ff&url=https%3a%2f%2fenglish.mathrubhumi.com%2fnews%2findia%2fkhan-sir-rival-tutor-raushan-anand-prince-yadav-death-nepal-htar24ky&c=8117572897718682517&mkt=en-in",
        utc(2026, 6, 15, 5, 54),
    ),
    (
        "bing-news-en-us-search-2.xml",
        "rss20",
        3,
        "bing_news",
        "Barrick Upholds ICSID Arbitration In The Face Of A Malian Court Decision",
        "http://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=6a6a4d1609b5447b81258901dc55fdc6&url=https%3a%2f%2ffinance.yahoo.com%2fnews%2fbarrick-upholds-icsid-arbitration-face-013254090.html&c=8551137128190457851&mkt=en-us",
        utc(2025, 6, 29, 18, 32),
    ),
    (
        "bing-news-en-us-search-3.xml",
        "rss20",
        3,
        "bing_news",
        "Crews working wreck in Potter County near I-40 and Lakeside",
        "http://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=6a9a2baf070e40cc9754b416c2f25783&url=https%3a%2f%2fwww.msn.com%2fen-us%2fnews%2fother%2fcrews-working-wreck-in-potter-county-near-i-40-and-lakeside%2far-AA2bwJvZ&c=8981295634380816831&mkt=en-us",
        utc(2026, 9, 3, 18, 23, 52),
    ),
    (
        "golem-de-rss2-iso-8859-1.xml",
        "rss20",
        40,
        "rss",
        "Anheuser Busch: US-Brauerei bestellt 40 Tesla-Trucks vor",
        "https://www.golem.de/news/anheuser-busch-us-brauerei-bestellt-40-tesla-trucks-vor-1712-131577-rss.html",
        utc(2017, 12, 9, 14, 44),  # 15:44 +0100
    ),
    (
        "google-news-de-search-2023-reformatted.xml",
        "rss20",
        2,
        "google_news",
        'Chemnitz: Preisschock bei "eins energie"! Fernwärme wird 75 Prozent teurer - TAG24',
        None,
        utc(2023, 12, 6, 4, 30),
    ),
    (
        "google-news-de-topic-2023-reformatted.xml",
        "rss20",
        2,
        "google_news",
        "GDL ruft von Donnerstagabend an zu eintägigem Streik auf - tagesschau.de",
        "https://news.google.com/rss/articles/CBMiOGh0dHBzOi8vd3d3LnRhZ2Vzc2NoYXUuZGUvd2lydHNjaGFmdC9nZGwtc3RyZWlrLTE5MC5odG1s0gEA?oc=5",
        utc(2023, 12, 6, 19, 20),
    ),
    (
        "google-news-en-gb-search-trimmed.xml",
        "rss20",
        6,
        "google_news",
        "Middle East War Triggers New Global Refining Boom - Crude Oil Prices Today | OilPrice.com",
        None,
        utc(2026, 8, 5, 0, 0),  # date-only precision
    ),
    (
        "google-news-en-us-search-1.xml",
        "rss20",
        92,
        "google_news",
        "Trump again shrinks two national monuments in Utah - The Washington Post",
        None,
        utc(2026, 7, 14, 3, 33, 16),
    ),
    (
        "google-news-en-us-topstories-2019.xml",
        "rss20",
        38,
        "google_news",
        "Live updates: Trump asserts ‘normal people’ would close the case on his impeachment - The Washington Post",
        None,
        utc(2019, 11, 14, 15, 28),
    ),
    (
        "google-news-pt-br-topic-local-2025.xml",
        "rss20",
        100,
        "google_news",
        "Bebê de 4 meses morre após ser amamentado em São Carlos - São Carlos Agora",
        None,
        utc(2025, 10, 8, 11, 22),
    ),
    (
        "rss090-rdf-de-heise.xml",
        "rss090",
        60,
        "rss",
        "Facebook f8: Künstliche Intelligenz räumt den Newsfeed auf",
        "http://www.heise.de/newsticker/meldung/Facebook-f8-Kuenstliche-Intelligenz-raeumt-den-Newsfeed-auf-3173304.html?wt_mc=rss.ho.beitrag.rdf",
        None,  # RSS 0.90: no dates at all
    ),
    (
        "rss10-rdf-de-laut-iso-8859-1.xml",
        "rss10",
        20,
        "rss",
        "Angelika Express: MySpace-Aus wegen Sido-Werbung",
        "http://www.laut.de/vorlaut/news/2009/07/04/22426/index.htm",
        utc(2009, 7, 4, 12, 28, 9),  # dc:date 13:28:09+01:00
    ),
    (
        "rss10-rdf-en-slashdot.xml",
        "rss10",
        15,
        "rss",
        "Ransomware Attack Hampers Prescription Drug Sales at 90% of US Pharmacies",
        "https://yro.slashdot.org/story/24/03/02/071229/ransomware-attack-hampers-prescription-drug-sales-at-90-of-us-pharmacies?utm_source=rss1.0mainlinkanon&utm_medium=feed",
        utc(2024, 3, 2, 15, 34),
    ),
    (
        "wordpress-de-anime2you-news.xml",
        "rss20",
        25,
        "wordpress",
        "Geschichte von »Jujutsu Kaisen« nähert sich dem Ende",
        "https://www.anime2you.de/news/749807/jujutsu-kaisen-naehert-sich-ende/",
        utc(2023, 12, 21, 16, 39, 46),
    ),
    (
        "wordpress-de-global-offensive-comments-article.xml",
        "rss20",
        10,
        "wordpress",
        "Von: soRai",
        "https://example.org/csgo-stats-net-beta-veroeffentlicht-map-und-waffen-statistiken-aus-deinem-csgo/#comment-381",
        utc(2014, 10, 21, 10, 51, 51),
    ),
    (
        "wordpress-de-global-offensive-comments-sitewide.xml",
        "rss20",
        10,
        "wordpress",
        "Kommentar zu CS:GO Große VAC Banwelle – Bekannter Premium Hack nun von VAC erkannt von Tius Blau",
        "https://example.org/csgo-grosse-vac-banwelle-bekannter-premium-hack-nun-von-vac-erkannt/#comment-445",
        utc(2017, 11, 14, 21, 13),
    ),
    (
        "wordpress-de-global-offensive-news-relative-urls.xml",
        "rss20",
        10,
        "wordpress",
        "CS:GO Update: Operation Hydra – Weapons Expert nun spielbar außerdem neuer Scoreboard Bug!",
        "https://example.org/csgo-update-operation-hydra-weapons-expert-nun-spielbar-ausserdem-neuer-scoreboard-bug/",
        utc(2017, 6, 8, 13, 33, 42),
    ),
    (
        "wordpress-en-suwa-org-podcast.xml",
        "rss20",
        10,
        "wordpress",
        "Trump Illegally Decimates Bears Ears and Grand Staircase-Escalante",
        "https://suwa.org/trump-illegally-decimates-bears-ears-and-grand-staircase-escalante/",
        utc(2026, 7, 14, 0, 40, 48),
    ),
]


def test_every_fixture_is_listed(feeds_dir):
    assert sorted(p.name for p in feeds_dir.glob("*.xml")) == sorted(f[0] for f in FIXTURES)


@pytest.mark.parametrize(
    ("name", "version", "count", "source_type", "title", "url", "published_at"),
    FIXTURES,
    ids=[f[0] for f in FIXTURES],
)
def test_fixture(name, version, count, source_type, title, url, published_at):
    feed = load(name)
    assert feed.version == version
    assert len(feed.entries) == count
    assert detect_source_type(feed) == source_type
    assert feed.warning is None  # all of these are well-formed
    first = feed.entries[0]
    assert first.title == title
    if url is not None:
        assert first.url == url
    if published_at is not None:
        assert first.published_at == published_at
    for entry in feed.entries:
        for moment in (entry.published_at, entry.updated_at):
            assert moment is None or moment.utcoffset().total_seconds() == 0
        assert entry.url is None or entry.url.startswith(("http://", "https://"))


# Where feedparser's HTML sanitiser changed the stored text (parse_feed turns it off: feed HTML
# is only read as text, and html_to_text drops scripts itself): test documents of broken or
# hostile HTML only. In crazy-html the sanitiser left the page's JavaScript in the text.
SANITISER_CHANGED = {
    "feedparser-crazy-html-atom03.xml",
    "feedparser-linenoise-bytes.xml",
    "feedparser-script-nested-cdata-content-encoded.xml",
}


def test_feedparser_sanitising_changes_no_item_of_a_real_feed(monkeypatch):
    """Differential: every fixture, parsed and normalised as stored, with feedparser's HTML
    sanitiser and relative-link rewriting on (its defaults) and off (ours)."""
    fetched_at = datetime(2026, 1, 1, tzinfo=UTC)
    paths = sorted(p for p in FEEDS.rglob("*") if p.suffix in (".xml", ".html"))

    def items(path):
        try:
            feed = parse_feed(path.read_bytes(), url="https://example.org/feed/")
        except ParseError as exc:
            return str(exc)
        kind = detect_source_type(feed) if feed.entries else "rss"
        return normalise_feed(feed, source_type=kind, fetched_at=fetched_at)

    ours = {p.name: items(p) for p in paths}
    plain_parse = feedparser.parse

    def sanitising(*args, **kwargs):
        return plain_parse(
            *args, **{**kwargs, "sanitize_html": True, "resolve_relative_uris": True}
        )

    monkeypatch.setattr(feedparser, "parse", sanitising)
    theirs = {p.name: items(p) for p in paths}
    assert len(paths) == 49 and sum(isinstance(v, list) and len(v) > 0 for v in ours.values()) > 30
    changed = {name for name in ours if ours[name] != theirs[name]}
    assert changed == SANITISER_CHANGED
    (crazy,) = ours["feedparser-crazy-html-atom03.xml"]
    (crazy_before,) = theirs["feedparser-crazy-html-atom03.xml"]
    assert "executeMe" in crazy_before.text and "executeMe" not in crazy.text


# ---------------------------------------------------------------- dates


def test_atom_updated_is_kept_separately():
    entry = load("atom-de-heise-developer.xml").entries[0]
    assert entry.published_at == utc(2016, 2, 1, 16, 22)
    assert entry.updated_at == utc(2016, 2, 1, 16, 54, 50)
    assert entry.guid == "http://heise.de/-3088438"  # differs from the link


def test_rss090_has_no_dates_and_no_guid():
    feed = load("rss090-rdf-de-heise.xml")
    assert all(e.published_at is None and e.updated_at is None for e in feed.entries)
    assert all(e.guid is None for e in feed.entries)


@pytest.mark.parametrize(
    ("pubdate", "expected"),
    [
        ("Tue, 14 Jul 2026 03:33:16 GMT", utc(2026, 7, 14, 3, 33, 16)),
        ("Sat, 09 Dec 2017 15:44:00 +0100", utc(2017, 12, 9, 14, 44)),
        ("Mon, 01 Jan 1900 00:00:00 GMT", None),  # absurdly old
        ("Mon, 01 Jan 2999 00:00:00 GMT", None),  # absurdly new
        ("not a date", None),
    ],
)
def test_absurd_or_broken_dates_count_as_missing(pubdate, expected):
    doc = (
        "<rss version='2.0'><channel><title>t</title><item><title>a</title>"
        f"<link>https://example.com/a</link><pubDate>{pubdate}</pubDate></item></channel></rss>"
    ).encode()
    assert parse_feed(doc, url=BASE).entries[0].published_at == expected


# ---------------------------------------------------------------- encodings


def test_iso_8859_1_umlauts():
    golem = load("golem-de-rss2-iso-8859-1.xml")
    assert golem.entries[1].title == "Apple: Jony Ive übernimmt wieder Apples Produktdesign"
    assert "größte Vorbestellung" in golem.entries[0].summary_html
    laut = load("rss10-rdf-de-laut-iso-8859-1.xml")
    assert laut.entries[1].title == "Michael Jackson: Video der letzten Probe veröffentlicht"
    assert laut.entries[0].summary_html.startswith("Schon länger haderten die Kölner")
    assert laut.entries[0].language == "de"  # dc:language


# ---------------------------------------------------------------- Google News


def test_google_source_is_publisher():
    feed = load("google-news-en-us-search-1.xml")
    first, second = feed.entries[:2]
    assert first.publisher == "The Washington Post"
    assert first.publisher_url == "https://www.washingtonpost.com"
    assert second.publisher == "San Juan Record |"
    assert second.publisher_url == "https://www.sjrnews.com"
    assert feed.language == "en-US"
    assert feed.namespaces == ("http://search.yahoo.com/mrss/",)
    assert all(e.publisher for e in feed.entries)


def test_google_2019_numeric_guid_and_rd_links():
    entry = load("google-news-en-us-topstories-2019.xml").entries[0]
    assert entry.guid == "52780435491242"
    assert entry.url.startswith("https://news.google.com/__i/rss/rd/articles/CBMi")
    assert entry.publisher == "The Washington Post"


def test_prettified_google_feed_whitespace_is_squashed():
    feed = parse_feed(
        (FEEDS / "hostile" / "google-news-ja-prettified-whitespace-padded.xml").read_bytes(),
        url=BASE,
    )
    assert detect_source_type(feed) == "google_news"
    entry = feed.entries[0]
    assert (
        entry.title
        == "盛山文科相、旧統一教会系から選挙支援 21年衆院選 関係者が証言：朝日新聞デジタル - 朝日新聞デジタル"
    )
    assert entry.publisher == "朝日新聞デジタル"
    assert entry.url.startswith("https://news.google.com/rss/articles/CBMi")
    assert entry.url == entry.url.strip()


# ---------------------------------------------------------------- Bing


BING = [
    ("bing-news-en-in-search-1.xml", ["Mathrubhumi English", "News24"]),
    ("bing-news-en-us-search-2.xml", ["Yahoo Finance", "Yahoo Finance", "Hetq"]),
    (
        "bing-news-en-us-search-3.xml",
        ["MyHighPlains on MSN", "NewsChannel 10 on MSN", "Amarillo Globe-News"],
    ),
]


@pytest.mark.parametrize(("name", "publishers"), BING, ids=[b[0] for b in BING])
def test_bing_news_source_is_publisher(name, publishers):
    feed = load(name)
    assert [e.publisher for e in feed.entries] == publishers
    assert all(e.guid is None for e in feed.entries)  # Bing has no <guid>
    assert len(feed.namespaces) == 1 and "bing.com/news/search" in feed.namespaces[0]


def test_bing_namespace_uris_differ_between_feeds():
    uris = {load(name).namespaces[0] for name, _ in BING}
    assert len(uris) == 3


def test_bing_source_found_under_any_prefix():
    doc = b"""<?xml version="1.0"?>
<rss version="2.0" xmlns:B="https://www.bing.com/news/search?q=x&amp;format=rss">
<channel><title>x - BingNews</title><ttl>30</ttl>
<item><title>a</title><link>https://example.com/a</link><B:Source>Pub X</B:Source></item>
</channel></rss>"""
    feed = parse_feed(doc, url="https://www.bing.com/news/search?q=x&format=rss")
    assert feed.entries[0].publisher == "Pub X"
    assert feed.ttl_s == 30 * 60
    assert detect_source_type(feed) == "bing_news"  # by namespace, no apiclick link


# ---------------------------------------------------------------- WordPress


def test_wordpress_comment_feed_url_and_tags():
    entry = load("wordpress-de-anime2you-news.xml").entries[0]
    assert entry.guid == "https://www.anime2you.de/?p=749807"
    assert (
        entry.comments_feed_url
        == "https://www.anime2you.de/news/749807/jujutsu-kaisen-naehert-sich-ende/feed/"
    )
    assert entry.author == "Mario Taschler"
    assert entry.tags == ("Japan", "Nachrichten aus der Branche")
    assert entry.content_html == ""  # this site has no content:encoded


def test_relative_urls_resolve_against_feed_url():
    feed = load(
        "wordpress-de-global-offensive-news-relative-urls.xml",
        url="https://global-offensive.com/feed/",
    )
    entry = feed.entries[0]
    slug = "csgo-update-operation-hydra-weapons-expert-nun-spielbar-ausserdem-neuer-scoreboard-bug"
    assert entry.url == f"https://global-offensive.com/{slug}/"
    assert entry.guid == "https://global-offensive.com/?p=3715"
    assert entry.comments_feed_url == f"https://global-offensive.com/{slug}/feed/"
    assert feed.self_url == "https://global-offensive.com/feed/"
    assert feed.link == "https://global-offensive.com/"
    assert feed.generator == "https://wordpress.org/?v=5.0.2"
    assert feed.language == "de-DE"
    assert entry.content_html.startswith('<div style="text-align: center;">')
    assert "http://wellformedweb.org/CommentAPI/" in feed.namespaces


def test_comment_feed_guids_resolve_but_opaque_guids_do_not():
    comments = load(
        "wordpress-de-global-offensive-comments-article.xml",
        url="https://global-offensive.com/x/feed/",
    )
    assert comments.entries[0].guid == "https://global-offensive.com/?p=2931#comment-381"
    assert comments.entries[0].author == "soRai"
    assert "🙁" in comments.entries[0].content_html
    google = load("google-news-de-topic-2023-reformatted.xml")
    assert (
        google.entries[0].guid
        == "CBMiOGh0dHBzOi8vd3d3LnRhZ2Vzc2NoYXUuZGUvd2lydHNjaGFmdC9nZGwtc3RyZWlrLTE5MC5odG1s0gEA"
    )


# ---------------------------------------------------------------- errors and limits


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty document"),
        (b"   \n ", "empty document"),
        (b"<!-- only a comment -->", "empty document"),
        (b"<!DOCTYPE html><html><body><p>hi</p></body></html>", "HTML page"),
        (b"/etc/passwd", "no XML markup"),  # feedparser would open() a bytes file name
        (b"\x00\x01\x02garbage\xff\xfe", "not a feed"),
    ],
)
def test_not_a_feed(body, message):
    with pytest.raises(ParseError, match=message):
        parse_feed(body, url=BASE)


def test_html_page_is_an_error_not_an_empty_feed():
    with pytest.raises(ParseError, match="HTML page"):
        parse_feed(
            (FEEDS / "hostile" / "wordpress-de-article-html-instead-of-feed.html").read_bytes(),
            url="https://global-offensive.com/some-article/",
            content_type="text/html; charset=UTF-8",
        )


def test_str_body_is_rejected():
    with pytest.raises(TypeError):
        parse_feed("<rss/>", url=BASE)  # type: ignore[arg-type]


def test_max_entries_keeps_first_n_and_warns():
    feed = load("google-news-en-us-search-1.xml", max_entries=10)
    assert len(feed.entries) == 10
    assert feed.entries[0].title.startswith("Trump again shrinks")
    assert feed.warning == "92 entries, kept the first 10"


def test_max_bytes():
    with pytest.raises(ParseError, match="too large"):
        load("google-news-en-us-search-1.xml", max_bytes=1000)


def test_bozo_feed_keeps_entries_and_warns():
    feed = parse_feed(
        (FEEDS / "hostile" / "derived-google-news-truncated-mid-item.xml").read_bytes(), url=BASE
    )
    assert len(feed.entries) == 3
    assert feed.warning and "no element found" in feed.warning
    assert "\n" not in feed.warning


def test_content_type_header_noise_is_not_a_warning():
    feed = load("golem-de-rss2-iso-8859-1.xml", content_type="text/html")
    assert len(feed.entries) == 40
    assert feed.entries[1].title == "Apple: Jony Ive übernimmt wieder Apples Produktdesign"
    assert feed.warning is None or "NonXMLContentType" not in feed.warning


def test_local_file_import_resolves_against_the_feeds_own_link():
    doc = b"""<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>
<title>t</title><link>/</link>
<atom:link href="https://site.example/feed/" rel="self" type="application/rss+xml"/>
<item><title>a</title><link>/a/</link><guid isPermaLink="false">/?p=1</guid></item>
</channel></rss>"""
    feed = parse_feed(doc, url="/tmp/some/feed.xml")
    assert feed.self_url == "https://site.example/feed/"
    assert feed.link == "https://site.example/"
    assert feed.entries[0].url == "https://site.example/a/"
    assert feed.entries[0].guid == "https://site.example/?p=1"
    # the fully relative export has no absolute link to anchor on: links stay relative
    rel = load("wordpress-de-global-offensive-news-relative-urls.xml", url="feed/index.xml")
    assert rel.entries[0].url.startswith("/csgo-update-operation-hydra")
