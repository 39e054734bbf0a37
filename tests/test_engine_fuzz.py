"""The engine takes any item a feed can carry: placing it and packing what is stored of it
never raise.

An item whose placing raises is set aside by the service (``tests/test_dedup_store.py``), but
it then has no clusters: the engine must not raise in the first place. Titles, summaries and
texts are made of what real texts hold and what trips readers of them: addresses and version
strings (``192.168.0.1`` made the number anchors raise), numbers of any length and both decimal
marks, digits of other scripts, ligatures, combining marks, invisible characters, names,
markup remains and URLs, in both languages, none or another, for every kind of feed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.dedup.engine import DedupItem, Engine, Settings
from aggregator.dedup.service import _signature_rows

PIECES = st.sampled_from(
    ["192.168.0.1", "1.250.0", "1,000.000", "3,5 %", "1e308", "٣٤٥", "²³", "½", "Ⅻ", "𝟙𝟚"]
    + ["1.", ".5", ",5", "0x1F", "Mrd.", "Mio", "bn", "%", "Prozent", "per cent", "Euro", "€"]
    + ["-", "–", "'", "’", "O'", "d'Alembert", "Ł", "ǅ", "İstanbul", "ß", "ẞ", "ﬁ", "Å"]
    + ["e\u0301", "\u200b", "\u00ad", "\ufeff", "\n", "\n\n", "\t", "A.", "U.S.", "Dr.", "Frau"]
    + ["Merkel", "Biden", "NATO", "EU", "KI", "iPhone", "X Æ A-12", "…", "«»", "„", "“", "#"]
    + ["@", "&", "<", ">", "http://a.example/c?d=e", "www.x.de", "a@b.c", "(", ")"]
)
NUMBERS = st.from_regex(r"[0-9]{1,40}([.,][0-9]{1,5}){0,4}", fullmatch=True)
TEXT = st.lists(st.one_of(PIECES, NUMBERS, st.text(max_size=8)), max_size=60).map(" ".join)
ITEM = st.tuples(
    TEXT,
    TEXT,
    TEXT,
    st.sampled_from(["de", "en", None, "fr", ""]),
    st.sampled_from(["site", "google_news", "bing_news"]),
    st.one_of(st.none(), TEXT),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ITEM, min_size=1, max_size=4))
def test_placing_any_item_never_raises(items) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(Settings())
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for k, (title, summary, text, lang, kind, publisher) in enumerate(items):
        item = DedupItem(
            k + 1, f"source {k % 2}", kind, publisher, title, summary, lang, None,
            start + timedelta(minutes=k),
        )  # fmt: skip
        out = engine.add(item, text=text)
        assert out.item_id == k + 1 and item.id in engine.records
        # and what the service then stores of it: signatures and packed features
        assert {row["level"] for row in _signature_rows(engine.records[item.id])} <= {
            "duplicate",
            "story",
        }
