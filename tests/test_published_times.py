"""Published times as the pipeline stores them: a date after the fetch is a wrong clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.normaliser import normalise_feed
from aggregator.parser import parse_feed

FETCHED_AT = datetime(2026, 7, 14, 12, 0, tzinfo=UTC)


def _doc(*dates: str | None) -> bytes:
    items = "".join(
        f"<item><title>Item {n}</title><link>https://example.org/{n}</link>"
        + (f"<pubDate>{d}</pubDate>" if d else "")
        + "</item>"
        for n, d in enumerate(dates)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()


@pytest.mark.parametrize(
    ("date", "stored", "estimated"),
    [
        ("Tue, 14 Jul 2026 11:00:00 GMT", datetime(2026, 7, 14, 11, 0, tzinfo=UTC), False),
        # a few minutes ahead: clocks differ a little, the time is kept
        ("Tue, 14 Jul 2026 12:05:00 GMT", datetime(2026, 7, 14, 12, 5, tzinfo=UTC), False),
        # local time labelled GMT, and a year ahead: stamped with the fetch, marked estimated
        ("Tue, 14 Jul 2026 14:00:00 GMT", FETCHED_AT, True),
        ("Wed, 14 Jul 2027 11:00:00 GMT", FETCHED_AT, True),
        (None, FETCHED_AT, True),
    ],
)
def test_a_time_after_the_fetch_is_clamped_and_marked(
    date: str | None, stored: datetime, estimated: bool
) -> None:
    (item,) = normalise_feed(
        parse_feed(_doc(date), url="https://example.org/feed"),
        source_type="rss",
        fetched_at=FETCHED_AT,
    )
    assert (item.published_at, item.published_at_estimated) == (stored, estimated)
