"""Normaliser: canonical URLs, titles, HTML to text, language, hashing, per-source rules."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone

import pytest
from conftest import FEEDS, HOSTILE

from aggregator import urls
from aggregator.domain import ParsedEntry, ParsedFeed
from aggregator.htmltext import html_to_text
from aggregator.normaliser import (
    content_hash,
    normalise_entry,
    normalise_feed,
    strip_publisher_suffix,
    strip_wordpress_trailer,
)
from aggregator.parser import detect_source_type, parse_feed
from aggregator.urls import canonical_url, is_google_news_link, unwrap_bing

FETCHED_AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def items_of(path, url="https://example.org/feed/", **kwargs):
    feed = parse_feed(path.read_bytes(), url=url)
    return normalise_feed(
        feed, source_type=detect_source_type(feed), fetched_at=FETCHED_AT, **kwargs
    )


# ---------------------------------------------------------------- canonical_url

BING_YAHOO = (
    "http://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=6a6a4d1609b5447b81258901dc55fdc6"
    "&url=https%3a%2f%2ffinance.yahoo.com%2fnews%2fbarrick-upholds-icsid-arbitration-face-013254090.html"
    "&c=8551137128190457851&mkt=en-us"
)

CANONICAL = [
    # scheme, host case, default port, fragment, tracking, sorting
    ("http://Example.COM/a/b", "https://example.com/a/b"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:80/a", "https://example.com/a"),
    ("https://example.com:8443/a", "https://example.com:8443/a"),
    ("https://example.com/a#section-2", "https://example.com/a"),
    ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
    (
        "https://example.com/a?utm_source=rss&utm_medium=feed&id=7&fbclid=x&gclid=y",
        "https://example.com/a?id=7",
    ),
    (
        "https://example.com/a?mc_cid=1&mc_eid=2&ref=tw&_ga=3&yclid=4&igshid=5&ocid=6&cmpid=7",
        "https://example.com/a",
    ),
    (
        "http://www.heise.de/developer/meldung/Java-Anwendungsserver-Red-Hat-gibt-WildFly-10-frei-3088438.html?wt_mc=rss.developer.beitrag.atom",
        "https://heise.de/developer/meldung/Java-Anwendungsserver-Red-Hat-gibt-WildFly-10-frei-3088438.html",
    ),
    (
        "https://yro.slashdot.org/story/24/03/02/071229/x?utm_source=rss1.0mainlinkanon&utm_medium=feed",
        "https://yro.slashdot.org/story/24/03/02/071229/x",
    ),
    # www. / m. / amp. hosts fold onto the bare domain (sjrnews.com == www.sjrnews.com)
    ("https://www.sjrnews.com/a", "https://sjrnews.com/a"),
    ("https://sjrnews.com/a", "https://sjrnews.com/a"),
    ("https://m.example.com/a", "https://example.com/a"),
    ("https://amp.example.com/a", "https://example.com/a"),
    ("https://www.com/a", "https://www.com/a"),  # never fold down to a bare TLD
    # AMP paths and parameters
    ("https://example.com/news/story-1/amp/", "https://example.com/news/story-1/"),
    ("https://example.com/news/story-1/amp", "https://example.com/news/story-1"),
    ("https://example.com/amp/news/story-1", "https://example.com/news/story-1"),
    ("https://example.com/news/story-1.amp.html", "https://example.com/news/story-1.html"),
    ("https://example.com/news/story-1?amp=1", "https://example.com/news/story-1"),
    ("https://example.com/news/story-1?amp", "https://example.com/news/story-1"),
    ("https://example.com/x/?outputType=amp", "https://example.com/x/"),
    ("https://example.com/amplifier/", "https://example.com/amplifier/"),  # not an AMP path
    # percent-encoding is normalised
    ("https://example.com/a%7eb", "https://example.com/a~b"),
    ("https://example.com/caf%C3%A9", "https://example.com/caf%C3%A9"),
    ("https://example.com/café", "https://example.com/caf%C3%A9"),
    # Bing redirects are unwrapped, then canonicalised
    (
        BING_YAHOO,
        "https://finance.yahoo.com/news/barrick-upholds-icsid-arbitration-face-013254090.html",
    ),
    (
        "http://www.bing.com/news/apiclick.aspx?ref=FexRss&url=https%3a%2f%2fwww.example.com%2fa%3futm_source%3dbing%26id%3d1&c=1",
        "https://example.com/a?id=1",
    ),
    # never the article's URL
    ("https://news.google.com/rss/articles/CBMiOGh0dHBz?oc=5", None),
    ("https://news.google.com/__i/rss/rd/articles/CBMihAFodHRw?oc=5", None),
    ("tag:example.com,2006-05-04:/blog/", None),
    ("ftp://example.com/file", None),
    ("/relative/path", None),
    ("", None),
    (None, None),
    ("http://[::1", None),
]


@pytest.mark.parametrize(("url", "expected"), CANONICAL)
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected


def test_canonical_url_is_idempotent():
    for url, expected in CANONICAL:
        if expected is not None:
            assert canonical_url(expected) == expected, url


@pytest.mark.parametrize(
    "url",
    [
        "https://www.example.com/news/a-b_c~d-1.html",
        "http://Example.COM/",
        "https://example.com",
        "https://example.com/a/",
        "https://example.com/a/./b",
        "https://example.com/a/../b",
        "https://example.com/a//b",
        "https://example.com/.hidden",
        "https://example.com/r\u00e9sum\u00e9",
        "https://example.com/a%2fb%7e",
        "https://example.com/a;p=1",
        "https://example.com/a:b@c",
        "https://example.com:8443/x",
        "https://127.1/x",
        "https://0x7f.1/x",
        "https://xn--bcher-kva.example/x",
        "https://b\u00fccher.example/x",
        "https://-a.example/x",
        "https://example.com/x?b=2&a=1",
        "https://example.com/x?a",
    ],
)
def test_canonical_url_agrees_with_w3lib(url):
    """The plain-URL shortcut (no w3lib call) gives what w3lib gives."""
    shortcut, full = urls._PLAIN_PATH, re.compile(r"(?!)")
    urls._PLAIN_PATH = full  # matches nothing: every URL through w3lib
    try:
        expected = canonical_url(url)
    finally:
        urls._PLAIN_PATH = shortcut
    assert canonical_url(url) == expected


def test_google_news_topic_pages_are_not_article_links():
    assert is_google_news_link("https://news.google.com/rss/articles/CBMi?oc=5")
    assert is_google_news_link("https://news.google.com/__i/rss/rd/articles/CBMi?oc=5")
    assert not is_google_news_link("https://news.google.com/topics/CAAqJggKIiBDQkFT?hl=de")
    assert not is_google_news_link("https://example.com/rss/articles/x")
    assert not is_google_news_link(None)


# ---------------------------------------------------------------- unwrap_bing


def test_unwrap_bing():
    assert (
        unwrap_bing(BING_YAHOO)
        == "https://finance.yahoo.com/news/barrick-upholds-icsid-arbitration-face-013254090.html"
    )
    direct = "https://news24online.com/cities/patna/x/8639"
    assert unwrap_bing(direct) == direct
    no_target = "http://www.bing.com/news/apiclick.aspx?ref=FexRss&c=1"
    assert unwrap_bing(no_target) == no_target
    not_http = "http://www.bing.com/news/apiclick.aspx?url=javascript%3aalert(1)"
    assert unwrap_bing(not_http) == not_http


@pytest.mark.parametrize(
    ("name", "urls"),
    [
        (
            "bing-news-en-in-search-1.xml",
            [
                "https://english.mathrubhumi.com/news/india/khan-sir-rival-tutor-raushan-anand-prince-yadav-death-nepal-htar24ky",
                "https://news24online.com/cities/patna/khan-sir-news-raushan-anand-a-popular-teacher-gets-bail-in-patna-coaching-controversy-brother-prince-yadav-found-dead-under-suspicious-circumstances-in-nepal/863910/",
            ],
        ),
        (
            "bing-news-en-us-search-3.xml",
            [
                "https://www.msn.com/en-us/news/other/crews-working-wreck-in-potter-county-near-i-40-and-lakeside/ar-AA2bwJvZ",
                None,
                None,
            ],
        ),
    ],
)
def test_bing_items(name, urls):
    items = items_of(FEEDS / name)
    for item, url in zip(items, urls, strict=True):
        if url is not None:
            assert item.url == url
        assert "bing.com" not in item.url
        assert "tid=" not in item.url and "&c=" not in item.url
        assert item.guid == item.url  # no <guid>: the unwrapped target is stable
        assert item.canonical_url and item.canonical_url.startswith("https://")
        assert item.publisher
        assert item.summary and item.text == item.summary


def test_bing_publishers_and_canonical():
    items = items_of(FEEDS / "bing-news-en-us-search-3.xml")
    assert [i.publisher for i in items] == [
        "MyHighPlains on MSN",
        "NewsChannel 10 on MSN",
        "Amarillo Globe-News",
    ]
    assert items[0].canonical_url == (
        "https://msn.com/en-us/news/other/crews-working-wreck-in-potter-county-near-i-40-and-lakeside/ar-AA2bwJvZ"
    )
    assert "&amp;" not in items[2].summary


# ---------------------------------------------------------------- titles


@pytest.mark.parametrize(
    ("title", "publisher", "expected"),
    [
        (
            "Trump again shrinks two national monuments in Utah - The Washington Post",
            "The Washington Post",
            "Trump again shrinks two national monuments in Utah",
        ),
        (
            "President Trump signs proclamation reducing Bears Ears Monument to 121,100 acres - San Juan Record |",
            "San Juan Record |",
            "President Trump signs proclamation reducing Bears Ears Monument to 121,100 acres",
        ),
        (
            "Middle East War Triggers New Global Refining Boom - Crude Oil Prices Today | OilPrice.com",
            "Crude Oil Prices Today | OilPrice.com",
            "Middle East War Triggers New Global Refining Boom",
        ),
        (  # publisher containing " - "
            "Trump Cuts Two Utah National Monuments by More Than 90% - News of the United States - NOTUS",
            "News of the United States - NOTUS",
            "Trump Cuts Two Utah National Monuments by More Than 90%",
        ),
        (  # headline containing " - ": only the publisher goes
            "Trump Shrinks Utah National Monuments: Bears Ears and Grand Staircase-Escalante - News and Statistics - IndexBox",
            "IndexBox",
            "Trump Shrinks Utah National Monuments: Bears Ears and Grand Staircase-Escalante - News and Statistics",
        ),
        (
            "Casal é preso em flagrante por tráfico de drogas no Jardim Santa Maria - ACidade ON São Carlos - ACidade ON",
            "ACidade ON",
            "Casal é preso em flagrante por tráfico de drogas no Jardim Santa Maria - ACidade ON São Carlos",
        ),
        ("Some headline - Other Paper", "The Washington Post", "Some headline - Other Paper"),
        ("Headline without suffix", "NPR", "Headline without suffix"),
        ("Headline - NPR", None, "Headline - NPR"),
        (" - NPR", "NPR", "- NPR"),  # never strip down to nothing
        ("  Padded\n   title - NHK  ", "\n NHK \n", "Padded title"),
    ],
)
def test_strip_publisher_suffix(title, publisher, expected):
    assert strip_publisher_suffix(title, publisher) == expected


@pytest.mark.parametrize(
    "path",
    [
        FEEDS / "google-news-en-us-search-1.xml",
        FEEDS / "google-news-pt-br-topic-local-2025.xml",
        FEEDS / "google-news-en-us-topstories-2019.xml",
        FEEDS / "google-news-en-gb-search-trimmed.xml",
        FEEDS / "google-news-de-topic-2023-reformatted.xml",
        HOSTILE / "google-news-ja-prettified-whitespace-padded.xml",
    ],
    ids=lambda p: p.name,
)
def test_google_items_lose_exactly_one_publisher_suffix(path):
    feed = parse_feed(path.read_bytes(), url="https://example.org/feed/")
    items = normalise_feed(feed, source_type="google_news", fetched_at=FETCHED_AT)
    assert len(items) == len(feed.entries)
    for entry, item in zip(feed.entries, items, strict=True):
        assert item.publisher
        assert entry.title == f"{item.title} - {item.publisher}"
        assert item.canonical_url is None
        assert item.url == entry.url and item.url.startswith("https://news.google.com/")
        assert item.summary == ""
        assert item.text == item.title


def test_google_item_fields():
    first = items_of(FEEDS / "google-news-en-us-search-1.xml")[0]
    assert first.title == "Trump again shrinks two national monuments in Utah"
    assert first.publisher == "The Washington Post"
    assert first.publisher_url == "https://www.washingtonpost.com"
    assert first.lang == "en"  # feed language en-US
    assert first.published_at == datetime(2026, 7, 14, 3, 33, 16, tzinfo=UTC)
    assert not first.published_at_estimated
    assert first.guid.startswith("CBMiwwFBVV95cUxQa2dqd043")


def test_google_prettified_titles():
    items = items_of(HOSTILE / "google-news-ja-prettified-whitespace-padded.xml")
    assert (
        items[0].title
        == "盛山文科相、旧統一教会系から選挙支援 21年衆院選 関係者が証言：朝日新聞デジタル"
    )
    assert items[0].lang == "ja"


# ---------------------------------------------------------------- html_to_text


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>One</p><p>Two</p>", "One\nTwo"),
        ("Line<br>break<br/>again", "Line\nbreak\nagain"),
        ("<p>a  \n  b\t c</p>", "a b c"),
        ("<p>a</p>\n\n<p>b</p>", "a\nb"),
        ("first para\n\n  second para\nsame para", "first para\nsecond para same para"),
        ("x &amp; y\r\n\r\nnext", "x & y\nnext"),
        ("<p>Caf&eacute; &amp; Bar&nbsp;&#8211;&#x2014;&hellip;</p>", "Café & Bar –—…"),
        ("<script>alert('x')</script><p>kept</p>", "kept"),
        ("<style>p{color:red}</style>text<noscript>enable js</noscript>", "text"),
        ("<ul><li>a</li><li>b</li></ul>", "a\nb"),
        ("<b>bold</b> and <i>italic</i>", "bold and italic"),
        ("<table><tr><td>a</td><td>b</td></tr></table>", "a b"),
        ("plain text, no markup", "plain text, no markup"),
        ("a < b and c > d", "a < b and c > d"),
        ("unclosed <p>para <div>div", "unclosed\npara\ndiv"),
        ("zero\u200bwidth\u00adsoft", "zerowidthsoft"),
        ("", ""),
        (None, ""),
    ],
)
def test_html_to_text(html, expected):
    assert html_to_text(html) == expected


def test_html_to_text_is_nfc():
    decomposed = "Ka\u0308se"  # a + combining diaeresis
    assert html_to_text(f"<p>{decomposed}</p>") == "Käse"
    assert unicodedata.is_normalized("NFC", html_to_text(decomposed))


def test_html_to_text_unclosed_script_drops_the_rest():
    assert html_to_text("<p>before</p><script>var x = '<p>not text</p>';") == "before"


# ---------------------------------------------------------------- WordPress


def test_wordpress_trailer_and_teaser_marker_are_stripped():
    items = items_of(FEEDS / "wordpress-de-anime2you-news.xml")
    first = items[0]
    assert first.title == "Geschichte von »Jujutsu Kaisen« nähert sich dem Ende"
    assert first.summary.startswith("Im Rahmen des Jump Festa 2024")
    assert first.summary.endswith("auch das »Jujutsu")
    for item in items:
        assert "erschien zuerst auf" not in item.summary
        assert "[…]" not in item.summary
    assert first.text == first.summary  # no content:encoded on this site
    assert first.lang == "de"
    assert first.comments_feed_url.endswith("/jujutsu-kaisen-naehert-sich-ende/feed/")
    assert first.author == "Mario Taschler"
    assert (
        first.canonical_url == "https://anime2you.de/news/749807/jujutsu-kaisen-naehert-sich-ende/"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Teaser [&hellip;]", "Teaser"),
        ("Teaser […]  \n", "Teaser"),
        ("Teaser [...]\nThe post Teaser appeared first on Site.", "Teaser"),
        ("Text\nDer Beitrag X erschien zuerst auf Y.\n", "Text"),
        ("[a] text ", "[a] text"),
        ("text [x]", "text [x]"),
    ],
)
def test_strip_wordpress_trailer(text, expected):
    assert strip_wordpress_trailer(text) == expected


def test_wordpress_english_trailer_and_full_text_from_content():
    items = items_of(FEEDS / "wordpress-en-suwa-org-podcast.xml")
    first = items[0]
    assert "appeared first on" not in first.summary
    assert first.summary.endswith("Bears Ears National Monuments by a")
    assert len(first.text) > 3 * len(first.summary)  # content:encoded is the full article
    assert "Protect Wild Utah" in first.text
    assert first.guid == "https://suwa.org/?p=20665"
    assert first.lang == "en"
    assert "appeared first on" not in items[-1].summary
    assert (
        items[-1].summary
        == "Our e-newsletter with the latest on redrock wilderness news and events."
    )


def test_wordpress_relative_site_and_comment_feed():
    articles = items_of(
        FEEDS / "wordpress-de-global-offensive-news-relative-urls.xml",
        url="https://global-offensive.com/feed/",
    )
    assert articles[0].guid == "https://global-offensive.com/?p=3715"
    assert articles[0].comments_feed_url == (
        "https://global-offensive.com/csgo-update-operation-hydra-weapons-expert-nun-spielbar-ausserdem-neuer-scoreboard-bug/feed/"
    )
    assert articles[0].text.startswith(
        "Weapons Expert nun spielbar\nInzwischen geht Operation Hydra"
    )
    comments = items_of(
        FEEDS / "wordpress-de-global-offensive-comments-article.xml",
        url="https://global-offensive.com/csgo-stats-net/feed/",
        kind="comment",
    )
    assert len(comments) == 10
    assert {c.kind for c in comments} == {"comment"}
    assert comments[0].title == "Von: soRai"
    assert comments[0].guid == "https://global-offensive.com/?p=2931#comment-381"
    assert "🙁" in comments[0].text  # text from content:encoded, not the ":(" description
    assert comments[0].text.count("\n") == 1  # two paragraphs


# ---------------------------------------------------------------- dates, guids, language


def test_rss090_items_get_estimated_dates():
    items = items_of(FEEDS / "rss090-rdf-de-heise.xml")
    assert len(items) == 60
    for item in items:
        assert item.published_at == FETCHED_AT
        assert item.published_at_estimated
        assert item.guid == item.url  # no id: the link is the guid
    assert items[0].lang == "de"  # no language in the feed: detected
    assert items[0].canonical_url == (
        "https://heise.de/newsticker/meldung/Facebook-f8-Kuenstliche-Intelligenz-raeumt-den-Newsfeed-auf-3173304.html"
    )


def test_updated_only_dates_are_not_estimated():
    items = items_of(FEEDS / "atom-en-h-online.xml")
    assert items[0].published_at == datetime(2009, 7, 4, 18, 31, 10, tzinfo=UTC)
    assert not items[0].published_at_estimated
    assert items[0].lang == "en"  # detected, the feed declares none
    laut = items_of(FEEDS / "rss10-rdf-de-laut-iso-8859-1.xml")
    assert laut[0].published_at == datetime(2009, 7, 4, 12, 28, 9, tzinfo=UTC)


def test_fetched_at_is_converted_to_utc():
    feed = parse_feed((FEEDS / "rss090-rdf-de-heise.xml").read_bytes(), url="https://x/")
    cest = timezone(timedelta(hours=2))
    item = normalise_entry(
        feed.entries[0],
        feed=feed,
        source_type="rss",
        fetched_at=datetime(2026, 11, 23, 11, 0, tzinfo=cest),
    )
    assert item.fetched_at == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert item.published_at.tzinfo is UTC


def _entry(**kwargs) -> ParsedEntry:
    base = dict(guid=None, url=None, title="T", summary_html="", content_html="")
    base.update(kwargs)
    return ParsedEntry(**base)


def _feed(*entries: ParsedEntry, language: str | None = None) -> ParsedFeed:
    return ParsedFeed(
        version="rss20",
        title="F",
        link=None,
        self_url=None,
        language=language,
        ttl_s=None,
        generator=None,
        entries=entries,
    )


def test_guid_falls_back_to_url_then_hash():
    feed = _feed(
        _entry(guid="g1", url="https://example.com/1"),
        _entry(url="https://example.com/2"),
        _entry(title="Only a title", summary_html="<p>and a summary</p>"),
    )
    items = normalise_feed(feed, source_type="rss", fetched_at=FETCHED_AT)
    assert [i.guid for i in items[:2]] == ["g1", "https://example.com/2"]
    assert items[2].guid == "sha256:" + content_hash("Only a title", "and a summary")


def test_duplicate_guids_within_a_document_are_dropped():
    feed = _feed(
        _entry(guid="same", title="first"),
        _entry(guid="same", title="second"),
        _entry(guid="other", title="third"),
    )
    items = normalise_feed(feed, source_type="rss", fetched_at=FETCHED_AT)
    assert [i.title for i in items] == ["first", "third"]


def test_feedburner_item_with_two_guids_yields_one_item():
    items = items_of(HOSTILE / "nodefeedparser-feedburner-duplicate-guids.xml")
    assert len(items) == 1
    assert items[0].guid == "http://www.braingle.com/50366.html"


def test_content_hash():
    base = content_hash("Title", "Some text")
    assert base == content_hash("  TITLE ", "some\n\ttext")
    assert len(base) == 64 and int(base, 16) >= 0
    assert base != content_hash("Title", "Some text!")
    assert content_hash("ab", "c") != content_hash("a", "bc")
