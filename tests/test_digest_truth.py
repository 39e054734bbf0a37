"""What the reader of a digest sees is true: a full digest says what it left out and mails it
next; undated reports do not crowd out dated ones; every outlet shows its own time, estimated
ones marked; summaries read whole; dates in the digest's language; a story is headed by a
report at its centre. Real SMTP server (aiosmtpd), the store on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from helpers import DIGEST_FEEDS, digest_config, fill, parse_mail
from pydantic import ValidationError
from sqlalchemy import func, select, update

from aggregator.config import Config
from aggregator.dedup.service import DedupService
from aggregator.digest import deliver_pending, plan_run
from aggregator.digest_view import Entry
from aggregator.export import FeedMeta, atom
from aggregator.store import Store
from aggregator.store.models import Cluster, ClusterMember, DigestEntry, DigestRun, Item, Source
from aggregator.stories import clean_summary, recent_stories

NOW = datetime.now(UTC)


def flat(text: str) -> str:
    return " ".join(text.split())


def live_stories(store: Store) -> set[int]:
    with store.session() as s:
        return set(
            s.scalars(
                select(Cluster.id).where(
                    Cluster.level == "story", Cluster.merged_into_id.is_(None), Cluster.size > 0
                )
            )
        )


def mailed(store: Store, run_id: int, *, deferred: bool = False) -> list[int]:
    with store.session() as s:
        return list(
            s.scalars(
                select(DigestEntry.cluster_id)
                .where(DigestEntry.run_id == run_id, DigestEntry.deferred.is_(deferred))
                .order_by(DigestEntry.position)
            )
        )


def source(store: Store, name: str, *, priority: int = 0, type_: str = "rss") -> int:
    with store.session() as s:
        src = Source(
            name=name, type=type_, url=f"https://{name}.example/feed", priority=priority,
            created_at=NOW,
        )  # fmt: skip
        s.add(src)
        s.flush()
        return src.id


def add_item(
    store: Store,
    source_id: int,
    title: str,
    *,
    publisher: str,
    published_at: datetime,
    estimated: bool = False,
    summary: str = "",
) -> int:
    with store.session() as s:
        n = s.scalar(select(func.count()).select_from(Item)) or 0
        item = Item(
            source_id=source_id,
            kind="article",
            guid=f"truth-{n}",
            url=f"https://{publisher.replace(' ', '').lower()}.example/{n}",
            canonical_url=f"https://{publisher.replace(' ', '').lower()}.example/{n}",
            title=title,
            publisher=publisher,
            summary=summary,
            text=summary or title,
            published_at=published_at,
            published_at_estimated=estimated,
            fetched_at=NOW,
            content_hash=f"{n:064x}",
        )
        s.add(item)
        s.flush()
        return item.id


def send(store: Store, cfg: Config, inbox, end: datetime) -> tuple[int, str | None]:  # type: ignore[no-untyped-def]
    """Plan and deliver one run; its id and the plain-text part mailed (None: nothing)."""
    before = len(inbox.messages)
    run_id = plan_run(store, cfg, cfg.digests[0], period_end_at=end)
    deliver_pending(store, cfg)
    if len(inbox.messages) == before:
        return run_id, None
    return run_id, parse_mail(inbox.messages[-1]).get_body(("plain",)).get_content().replace(
        "\r\n", "\n"
    )


# ---------------------------------------------------------------- a full digest


def test_full_digest_says_how_many_more_and_mails_them_next(store: Store, smtp) -> None:
    controller, inbox = smtp
    fill(store, DIGEST_FEEDS, digest_config(controller.port))
    stories = live_stories(store)
    assert len(stories) > 25
    size = len(stories) // 2 + 2  # more stories than fit in one run, fewer than in two
    cfg = digest_config(controller.port, max_entries=size)
    cfg = cfg.model_copy(update={"http": cfg.http.model_copy(update={"base_url": "https://n.ex"})})

    run1, text1 = send(store, cfg, inbox, datetime.now(UTC))
    assert text1 is not None
    first, left = mailed(store, run1), mailed(store, run1, deferred=True)
    assert len(first) == size and len(left) == len(stories) - size
    assert f"… and {len(left)} more stories that did not fit" in flat(text1)
    assert "\nhttps://n.ex/?level=story\n" in text1  # the web page lists them
    html1 = parse_mail(inbox.messages[-1]).get_body(("html",)).get_content()
    assert f"and {len(left)} more stories" in html1 and 'href="https://n.ex/?level=story"' in html1
    subject = parse_mail(inbox.messages[-1])["Subject"]
    assert subject.startswith(f"newsdedup daily: {size} of {len(stories)} stories")

    # a new story arrives before the next run: the carried ones still go first
    src = source(store, "latewire")
    add_item(
        store, src, "Lighthouse keeper rescues stranded kayakers off the Orkney coast",
        publisher="Late Wire", published_at=datetime.now(UTC),
    )  # fmt: skip
    DedupService(store).process_pending()
    (late,) = live_stories(store) - stories

    run2, text2 = send(store, cfg, inbox, datetime.now(UTC) + timedelta(seconds=1))
    assert text2 is not None and "more stories that did not fit" not in text2
    second = mailed(store, run2)
    assert second[: len(left)] == left  # carried, in the order they were left
    assert set(second) == set(left) | {late}
    assert mailed(store, run2, deferred=True) == []
    # over the two runs every story was mailed, and none twice
    assert sorted(first + second) == sorted(stories | {late})
    _, text3 = send(store, cfg, inbox, datetime.now(UTC) + timedelta(seconds=2))
    assert text3 is None


def test_no_silent_loss_when_the_backlog_exceeds_one_run(store: Store, smtp) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port, max_entries=12)
    fill(store, DIGEST_FEEDS, cfg)
    stories = live_stories(store)
    sent: list[int] = []
    for n in range(6):
        run_id, text = send(store, cfg, inbox, datetime.now(UTC) + timedelta(seconds=n))
        if text is None:
            break
        sent += mailed(store, run_id)
        left = len(mailed(store, run_id, deferred=True))
        assert (f"and {left} more" in flat(text)) == (left > 0)
        assert "?level=" not in text  # no http.base_url: no link to the web page
    assert sorted(sent) == sorted(stories)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(DigestRun)) == n + 1


def test_a_deferred_story_merged_into_another_is_mailed_as_the_survivor(
    store: Store,
    smtp,
) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port, max_entries=1)
    src = source(store, "wire")
    for title, hours in (
        ("Ferry service resumes after week-long strike at Harbourton port", 3),
        ("Observatory in the Alps discovers an unusually bright comet", 2),
    ):
        add_item(store, src, title, publisher="Wire", published_at=NOW - timedelta(hours=hours))
    DedupService(store).process_pending()
    run1, text1 = send(store, cfg, inbox, datetime.now(UTC))
    assert text1 is not None and "bright comet" in text1  # the newer of two alike
    (left,) = mailed(store, run1, deferred=True)
    # the deferred story is merged into a new one (its members move, their joins stay old)
    later = datetime.now(UTC) + timedelta(seconds=1)
    with store.session() as s:
        top = s.scalar(select(func.max(Cluster.id))) or 0  # the engine numbers clusters
        survivor = Cluster(id=top + 1, level="story", created_at=later, updated_at=later, size=1)
        s.add(survivor)
        s.flush()
        s.execute(
            update(ClusterMember)
            .where(ClusterMember.cluster_id == left)
            .values(cluster_id=survivor.id)
        )
        s.execute(update(Cluster).where(Cluster.id == left).values(merged_into_id=survivor.id))
        survivor_id = survivor.id
    run2, text = send(store, cfg, inbox, later + timedelta(seconds=1))
    assert text is not None and "Ferry service resumes" in text
    assert mailed(store, run2) == [survivor_id]


def test_an_undated_report_does_not_push_a_dated_story_out(store: Store, smtp) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port, max_entries=1)
    src = source(store, "wire")
    add_item(
        store, src, "Ferry service resumes after week-long strike at Harbourton port",
        publisher="Harbourton Gazette", published_at=NOW - timedelta(hours=6),
    )  # fmt: skip
    # no date in the feed: stamped with its fetch time, later than the dated report
    add_item(
        store, src, "Observatory in the Alps discovers an unusually bright comet",
        publisher="Science Today", published_at=NOW, estimated=True,
    )  # fmt: skip
    DedupService(store).process_pending()
    assert len(live_stories(store)) == 2

    _, text = send(store, cfg, inbox, datetime.now(UTC))
    assert text is not None
    assert "Ferry service resumes" in text and "bright comet" not in text
    assert "and 1 more story that did not fit" in flat(text)
    _, text2 = send(store, cfg, inbox, datetime.now(UTC) + timedelta(seconds=1))
    assert text2 is not None and "bright comet" in text2  # carried, with its time marked
    assert "Science Today · ≈ " in flat(text2) and "≈ time estimated" in flat(text2)


# ---------------------------------------------------------------- times, summaries, language


def test_each_outlet_shows_its_own_time_and_estimates_are_marked(store: Store, smtp) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port, timezone="UTC")
    title = "Storm floods the old town of Lindenau as river breaks its banks"
    times = {
        "Lindenau Courier": datetime(2026, 10, 5, 8, 15, tzinfo=UTC),
        "River Post": datetime(2026, 10, 5, 6, 40, tzinfo=UTC),
        "Valley Radio": datetime(2026, 10, 5, 11, 5, tzinfo=UTC),
    }
    main = source(store, "courier", priority=5)
    other = source(store, "others")
    for name, at in times.items():
        add_item(
            store, main if name == "Lindenau Courier" else other, title, publisher=name,
            published_at=at, estimated=name == "Valley Radio",
        )  # fmt: skip
    DedupService(store).process_pending()
    assert len(live_stories(store)) == 1

    _, text = send(store, cfg, inbox, datetime.now(UTC))
    assert text is not None
    html = parse_mail(inbox.messages[-1]).get_body(("html",)).get_content()
    body = flat(text)
    # the headline's outlet with its own time (not the story's earliest, 06:40)
    assert "Lindenau Courier · 5 Oct 2026, 08:15" in body
    assert "River Post · 5 Oct 2026, 06:40" in body
    assert "Valley Radio · ≈ 5 Oct 2026, 11:05" in body  # no date in its feed
    assert "≈ time estimated" in body
    assert "(5 Oct 2026, 06:40)" in html and "(≈ 5 Oct 2026, 11:05)" in html
    assert "08:15" in html.split("Lindenau Courier")[1].split("</p>")[0]
    # the web page's list shows the headline outlet's own time too
    from aggregator.web import WebApp

    page = WebApp(store, cfg).route("GET", "/?since=3650d").body.decode()
    assert "Lindenau Courier · 2026-10-05 08:15 UTC" in flat(page)


def test_dates_follow_the_digest_language(store: Store, smtp) -> None:
    controller, inbox = smtp
    src = source(store, "wire")
    add_item(
        store, src, "Harbourton ferry service resumes after a week-long strike",
        publisher="Harbourton Gazette", published_at=datetime(2026, 10, 5, 9, 30, tzinfo=UTC),
    )  # fmt: skip
    DedupService(store).process_pending()
    texts = {}
    for n, language in enumerate(("en", "de")):
        cfg = digest_config(controller.port, name=f"d{language}", language=language)
        send(store, cfg, inbox, datetime.now(UTC) + timedelta(seconds=n))
        texts[language] = flat(parse_mail(inbox.messages[-1]).get_body(("plain",)).get_content())
    # Europe/Berlin: 09:30 UTC is 11:30 (summer time)
    assert "Harbourton Gazette · 5 Oct 2026, 11:30" in texts["en"]
    assert "Harbourton Gazette · 5. Okt. 2026, 11:30" in texts["de"]
    assert "Okt." not in texts["en"] and " Oct " not in texts["de"]
    month_en = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    month_de = ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sep.", "Okt.")
    month_de += ("Nov.", "Dez.")
    end = datetime.now(UTC).astimezone(ZoneInfo("Europe/Berlin"))
    assert f"{end.day} {month_en[end.month - 1]} {end.year}" in texts["en"].split("----")[0]
    assert f"{end.day}. {month_de[end.month - 1]} {end.year}" in texts["de"].split("----")[0]


def test_language_is_validated() -> None:
    with pytest.raises(
        ValidationError, match=r"unknown digest language 'fr' \(supported: de, en\)"
    ):
        digest_config(25, language="fr")
    assert digest_config(25).digests[0].language == "en"


def test_summary_cut_at_a_boundary_without_the_title(store: Store, smtp) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port)
    title = "Harbourton ferry service resumes after week-long strike"
    summary = (
        f"{title} - The first boat left at dawn on Monday, carrying commuters who had waited "
        "a week. The union and the operator agreed on a four percent raise and new rosters "
        "that limit night shifts, according to a statement released late on Sunday evening "
        "by both sides. Travellers are advised to check the timetable because several "
        "sailings remain cancelled until the crews have rested and the maintenance backlog "
        "that piled up during the strike has been cleared by the harbour engineers"
    )
    add_item(
        store, source(store, "gazette"), title, publisher="Harbourton Gazette",
        published_at=NOW - timedelta(hours=1), summary=summary,
    )  # fmt: skip
    DedupService(store).process_pending()
    _, text = send(store, cfg, inbox, datetime.now(UTC))
    assert text is not None
    body = flat(text)
    assert body.count("Harbourton ferry service resumes") == 1  # the headline only
    assert "The first boat left at dawn on Monday" in body
    assert "by both sides." in body and "Travellers are advised" not in body


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        # the feed cut it ("..", what a Bing "..." became): back to the last whole sentence
        (
            "Yahoo Finance is not a broker-dealer and does not offer securities for sale. "
            "Coinbase pays us for ..",
            "Yahoo Finance is not a broker-dealer and does not offer securities for sale.",
        ),
        # cut with a dangling comma and dot, no sentence to fall back on: a word and "…"
        (
            "The lawyers nominated under the state quota have connections to the office, .",
            "The lawyers nominated under the state quota have connections to the office…",
        ),
        # WordPress' "[…]" after a sentence that ends early: the words and "…"
        (
            "Kurz. Der Stadtrat hat am Abend entschieden, dass die Altstadt […]",
            "Kurz. Der Stadtrat hat am Abend entschieden, dass die Altstadt…",
        ),
        # cut by the feed mid-word, unmarked: back to the last whole sentence
        (
            "Im Rahmen des Jump Festa 2024 gab der Zeichner bekannt, dass er seinen Manga im "
            "nächsten Jahr abschließen möchte. Wir fassen zusammen. Charakter s",
            "Im Rahmen des Jump Festa 2024 gab der Zeichner bekannt, dass er seinen Manga im "
            "nächsten Jahr abschließen möchte. Wir fassen zusammen.",
        ),
        # short and without punctuation: a phrase, left alone
        ("Watch the video", "Watch the video"),
        # a leading repeat of the headline, with its separator
        ("Bridge reopens: The bridge reopened on Friday.", "The bridge reopened on Friday."),
        ("BRIDGE REOPENS — after two years.", "after two years."),
        # whole and short: untouched
        ("The bridge reopened on Friday.", "The bridge reopened on Friday."),
        ("", ""),
    ],
)
def test_clean_summary(summary: str, expected: str) -> None:
    assert clean_summary(summary, "Bridge reopens") == expected


def test_clean_summary_long_text_ends_at_a_word_with_an_ellipsis() -> None:
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu " * 40
    out = clean_summary(words, "Greek letters", limit=100)
    assert out.endswith("…") and len(out) <= 101
    assert out[:-1].split(" ")[-1] in words.split()  # a whole word before the ellipsis
    assert not out[:-1].endswith(" ")


# ---------------------------------------------------------------- headline choice


def _big_story(store: Store) -> tuple[int, list[int]]:
    with store.session() as s:
        cid, _ = s.execute(
            select(ClusterMember.cluster_id, func.count())
            .where(ClusterMember.level == "story")
            .group_by(ClusterMember.cluster_id)
            .order_by(func.count().desc())
        ).first()
        ids = list(
            s.scalars(
                select(ClusterMember.item_id).where(
                    ClusterMember.level == "story", ClusterMember.cluster_id == cid
                )
            )
        )
    return cid, ids


def _join(store: Store, item_id: int, cluster_id: int) -> None:
    """The report joins the story (as a wrong link or a loose match would join it)."""
    with store.session() as s:
        s.execute(
            update(ClusterMember)
            .where(ClusterMember.item_id == item_id, ClusterMember.level == "story")
            .values(cluster_id=cluster_id, joined_at=datetime.now(UTC))
        )


def _headlines(store: Store, cid: int, cfg: Config, inbox) -> tuple[str, str, Entry]:  # type: ignore[no-untyped-def]
    """The story's first entry in a digest, the Atom feed and the web page list's entry."""
    _, text = send(store, cfg, inbox, datetime.now(UTC) + timedelta(seconds=len(inbox.messages)))
    assert text is not None
    with store.session() as s:
        (story,) = [st for st in recent_stories(s, limit=1000) if st.entry.cluster_id == cid]
    doc = atom([story], FeedMeta(level="story", generated_at=datetime.now(UTC))).decode()
    first = flat(text).split("----------------------------------------")[1].split(" 2. ")[0]
    return first, doc, story.entry


def test_headline_is_a_central_member_not_an_off_topic_high_priority_one(
    store: Store,
    smtp,
) -> None:
    controller, inbox = smtp
    cfg = digest_config(controller.port, max_entries=100)  # all fit: the big story leads
    fill(store, DIGEST_FEEDS, cfg)
    cid, _ = _big_story(store)
    press = add_item(
        store, source(store, "pressdesk", priority=100, type_="wordpress"),
        "Acme Corp announces quarterly dividend and opens new logistics centre in Ohio",
        publisher="Acme Corp Press Office", published_at=NOW - timedelta(days=1),
        summary="Acme Corp announced a quarterly dividend of 42 cents per share. The new "
        "logistics centre in Columbus, Ohio, will employ 300 people.",
    )  # fmt: skip
    DedupService(store).process_pending()  # the engine stores its terms
    _join(store, press, cid)
    digest_first, feed, web = _headlines(store, cid, cfg, inbox)
    assert "Acme" not in web.headline and "Bears Ears" in web.headline
    assert web.publisher != "Acme Corp Press Office"
    assert f"1. {web.headline} " in digest_first and f"<title>{web.headline}</title>" in feed

    # on-topic reports do head it, the high-priority source's of two alike (the other one is
    # earlier): priority breaks ties among the members that represent the story
    title = "Trump shrinks Bears Ears and Grand Staircase-Escalante national monuments again"
    on_topic = [
        add_item(
            store, source(store, "ownsite", priority=100, type_="wordpress"), title,
            publisher="Utah Desk", published_at=NOW - timedelta(days=1),
        ),
        add_item(
            store, source(store, "plainwire"), title, publisher="Plain Wire",
            published_at=NOW - timedelta(days=2),
        ),
    ]  # fmt: skip
    DedupService(store).process_pending()
    for item_id in on_topic:
        _join(store, item_id, cid)
    digest_first, feed, web = _headlines(store, cid, cfg, inbox)
    assert web.headline == title and web.publisher == "Utah Desk"
    assert f"1. [Update] {title} " in digest_first and f"<title>{title}</title>" in feed
    assert " Utah Desk · " in digest_first and "- Utah Desk" not in digest_first
    assert "- Plain Wire (new) · " in digest_first  # an outlet beside it
