"""Story rules on headline-only entries, wire copies and templated pages (engine, no I/O).

Each test builds the smallest set of items that exercises one rule, and each fails with the
rule taken out of the engine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aggregator.dedup.engine import DedupItem, Engine, Settings

AT = datetime(2026, 7, 13, 22, 0, tzinfo=UTC)


def google(n: int, title: str, publisher: str, at: datetime = AT) -> DedupItem:
    return DedupItem(
        id=n,
        source="Google News search",
        feed_kind="google_news",
        publisher=publisher,
        title=f"{title} - {publisher}",
        summary="",
        lang="en",
        canonical_url=None,
        published_at=at,
    )


def site(n: int, title: str, text: str, publisher: str, at: datetime = AT) -> tuple[DedupItem, str]:
    item = DedupItem(
        id=n,
        source=publisher,
        feed_kind="site",
        publisher=publisher,
        title=title,
        summary="",
        lang="en",
        canonical_url=f"https://{publisher.lower().replace(' ', '')}.example/{n}",
        published_at=at,
    )
    return item, text


def place(engine: Engine, items: list[DedupItem | tuple[DedupItem, str]]) -> None:
    """Items (a site's with its page text) in publication order."""
    pairs = [it if isinstance(it, tuple) else (it, "") for it in items]
    for item, text in sorted(pairs, key=lambda p: (p[0].published_at, p[0].id)):
        engine.add(item, text=text)


WIRE = "Governor signs water compact with three neighbouring states after decade of talks"
PAPERS = ["Valley Courier", "Harbor Times", "Plains Ledger", "Lakeside Post", "Ridge Herald"]


def test_a_wire_headline_printed_by_several_outlets_is_one_article() -> None:
    engine = Engine()
    items = [google(i, WIRE, p, AT + timedelta(minutes=7 * i)) for i, p in enumerate(PAPERS)]
    place(engine, items)
    assert len({engine.cluster_of["duplicate"][i.id] for i in items}) == 1


def test_a_short_stock_headline_or_one_a_day_later_is_not_the_same_article() -> None:
    engine = Engine()
    stock = [
        google(1, "Police appeal for witnesses", "Valley Courier"),
        google(2, "Police appeal for witnesses", "Harbor Times"),
    ]
    later = [
        google(3, WIRE, "Valley Courier"),
        google(4, WIRE, "Harbor Times", AT + timedelta(days=1, hours=2)),
    ]
    place(engine, stock + later)
    dup = engine.cluster_of["duplicate"]
    assert dup[1] != dup[2]
    assert dup[3] != dup[4]


TEMPLATE = """Coastal Lottery results, {day} July 2026
The winning numbers of the Saturday draw of the Coastal Lottery were drawn this evening in the
studio in Porthaven, with a jackpot of {jackpot} million pounds on offer.
The main numbers were {a}, {b}, {c}, {d}, {e} and {f}; the bonus ball was {g}.
Nobody matched all six numbers, so the jackpot rolls over to the next draw.
Lucky Dip: {h} {i} {j} {k} {l}.
Players can check their tickets at any sales point or online; prizes must be claimed within
180 days of the draw. The Coastal Lottery supports local charities with part of every ticket
sold, and publishes the full list of prize classes on its website.
"""


# two draws: one page each, the template's words the same, its numbers not
DRAWS = (
    TEMPLATE.format(
        day=11, jackpot=4, a=3, b=11, c=19, d=27, e=34, f=42, g=7, h=1, i=5, j=2, k=8, l=4
    ),
    TEMPLATE.format(
        day=18, jackpot=6, a=5, b=14, c=21, d=30, e=38, f=45, g=9, h=9, i=3, j=7, k=0, l=6
    ),
)


def test_two_pages_of_one_template_with_other_numbers_are_neither_article_nor_story() -> None:
    engine = Engine()
    first, second = DRAWS
    items = [
        site(1, "Coastal Lottery: results of the Saturday draw", first, "Coast News"),
        site(
            2,
            "Coastal Lottery: results of the Saturday draw",
            second,
            "Coast News",
            AT + timedelta(days=7),
        ),
        # a copy of the first page on another outlet keeps its numbers: the same article
        site(
            3,
            "Saturday lottery results",
            first + " Reprinted with permission.",
            "Bay Post",
            AT + timedelta(hours=1),
        ),
    ]
    place(engine, items)
    dup, story = engine.cluster_of["duplicate"], engine.cluster_of["story"]
    assert dup[1] == dup[3]
    assert dup[1] != dup[2]
    assert story[1] != story[2]


def test_one_headline_between_two_stories_does_not_merge_them_two_do() -> None:
    """Two wordings of one event (two stories so far, their centroids apart). A headline
    that matches both is a possible bridge and merges nothing; a second one merges them."""
    settings = Settings()
    a = [
        "Governor Alvarez signs Rio Verde water compact",
        "Rio Verde water compact signed by Governor Alvarez",
        "Alvarez signs Rio Verde compact on water",
    ]
    b = [
        "Salton accord cuts Imperial farm allocations",
        "Imperial farm allocations cut under Salton accord",
        "Salton accord: allocations of Imperial farms cut",
    ]
    bridge = [
        "Alvarez signs Rio Verde water compact as Salton accord cuts Imperial farm allocations",
        "Rio Verde water compact signed by Alvarez; Salton accord cuts Imperial farm allocations",
    ]
    items = [google(i, t, f"Paper {i}") for i, t in enumerate(a + b)]
    one = Engine(settings)
    place(one, items + [google(10, bridge[0], "Paper 10", AT + timedelta(hours=1))])
    story = one.cluster_of["story"]
    assert len({story[i] for i in range(3)}) == 1
    assert len({story[i] for i in range(3, 6)}) == 1
    assert story[0] != story[3]
    two = Engine(settings)
    place(
        two,
        items
        + [
            google(10 + k, t, f"Paper {10 + k}", AT + timedelta(hours=1 + k))
            for k, t in enumerate(bridge)
        ],
    )
    story = two.cluster_of["story"]
    assert len({story[i] for i in range(6)}) == 1


def test_why_names_the_rule_that_keeps_two_items_apart() -> None:
    from aggregator.dedup.explain import deciding_check

    engine = Engine()
    first, second = DRAWS
    items = [
        site(1, "Coastal Lottery results", first, "Coast News"),
        site(2, "Coastal Lottery results", second, "Coast News", AT + timedelta(hours=20)),
        google(3, "Police appeal for witnesses", "Valley Courier"),
        google(4, "Police appeal for witnesses", "Harbor Times"),
        google(5, WIRE, "Valley Courier"),
        google(6, WIRE, "Harbor Times", AT + timedelta(days=3)),
    ]
    place(engine, items)

    def rule(a: int, b: int, level: str) -> dict:
        ra, rb = engine.records[a], engine.records[b]
        apart_s = abs(ra.ts - rb.ts)
        return deciding_check(engine, ra, rb, level, apart_s)

    assert rule(1, 2, "duplicate")["rule"] == "template"
    assert rule(1, 2, "story")["rule"] == "template"
    assert rule(3, 4, "story")["rule"] == "stock headline"
    window = rule(5, 6, "story")
    assert (window["rule"], window["figure"], window["threshold"]) == ("window", 72.0, 48.0)


def test_every_engine_figure_is_a_dedup_config_key_with_the_same_default() -> None:
    from dataclasses import fields

    from aggregator.config import Config, DedupConfig
    from aggregator.dedup.service import settings_from

    keys = {f.name.removesuffix("_s") for f in fields(Settings)}
    assert keys == set(DedupConfig.model_fields)
    assert settings_from(DedupConfig()) == Settings()
    tuned = Config.model_validate({"dedup": {"cross_anchors": 4, "wire_window": "6h"}})
    assert settings_from(tuned.dedup) == Settings(cross_anchors=4, wire_window_s=6 * 3600.0)


def test_an_edited_item_is_re_placed_and_an_unchanged_one_is_not() -> None:
    """An article edited under the same id (a new headline naming the event) joins the
    story its new words match; re-adding it unchanged changes nothing."""
    from dataclasses import replace

    engine = Engine()
    story = [
        google(i, t, f"Paper {i}")
        for i, t in enumerate(
            [
                "Governor Alvarez signs Rio Verde water compact",
                "Rio Verde water compact signed by Governor Alvarez",
            ]
        )
    ]
    vague = google(5, "Statehouse news in brief this evening", "Paper 5", AT + timedelta(hours=1))
    place(engine, [*story, vague])
    assert engine.cluster_of["story"][5] != engine.cluster_of["story"][0]
    assert engine.add(vague).evidence == {}  # unchanged: nothing to do
    edited = replace(vague, title="Governor Alvarez signs the Rio Verde water compact - Paper 5")
    out = engine.add(edited)
    assert engine.cluster_of["story"][5] == engine.cluster_of["story"][0]
    assert (5, "story") in out.evidence
    assert engine.records[5].item.title == edited.title
    assert engine.add(edited).evidence == {}  # and once placed, it is known as it is now


def test_a_late_item_reads_back_its_own_windows_only() -> None:
    """An item dated long before what is held reads back the placed items within reach of
    it, not the history between it and what is held, and a span read once is not read again."""
    calls: list[tuple[datetime, datetime]] = []
    engine = Engine(load_range=lambda lo, hi: calls.append((lo, hi)))
    engine.begin_restore(AT)  # a store whose newest placed item is AT
    reach = engine.reach()
    old = AT - timedelta(days=200)
    engine.add(google(1, WIRE, "Valley Courier", old))
    assert calls == [(old - reach, old + reach)]
    engine.add(google(2, WIRE, "Harbor Times", old + timedelta(days=1)))
    assert calls[1:] == [(old + reach, old + timedelta(days=1) + reach)]  # the rest only


def test_a_publisher_suffix_is_stripped_only_as_whole_words() -> None:
    from aggregator.dedup.engine import bare_title
    from aggregator.normaliser import strip_publisher_suffix

    for strip in (strip_publisher_suffix, lambda t, p: bare_title(t, p, "google_news")):
        assert strip("Biden meets Xi - Apple shares slide", "AP") == (
            "Biden meets Xi - Apple shares slide"
        )
        assert strip("Feira do livro - ACidade ON São Carlos", "ACidade ON") == "Feira do livro"
        assert (
            strip("Cuts - News of the United States - NOTUS", "News of the United States - NOTUS")
            == "Cuts"
        )
        assert strip("A - B", " ") == "A - B"


def test_template_lines_of_the_same_shape_are_counted_apart() -> None:
    from aggregator.dedup.engine import number_lines

    lines = number_lines("Ziehung 1: 3 5 8\nZiehung 2: 7 9 11\nImpressum", "Lotto")
    assert sorted(lines.values()) == ["ziehung 1: 3 5 8", "ziehung 2: 7 9 11"]
