"""``polling.default_interval``: how long a feed without publishing history waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers import make_config, poll, sync
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from aggregator.schedule import next_check_at
from aggregator.store.models import Feed

NOW = datetime(2026, 12, 7, 3, tzinfo=UTC)
EMPTY = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title>
<link>https://quiet.example.org/</link><description>nothing yet</description></channel></rss>"""


@pytest.mark.parametrize(
    ("default_s", "expected_s"),
    [(3600, 3600), (7200, 7200), (10, 60), (10**6, 86400)],  # clamped to [min, max]
)
def test_a_feed_without_history_waits_the_default_interval(
    default_s: float, expected_s: float
) -> None:
    at = next_check_at(
        now=NOW, min_interval_s=60, max_interval_s=86400, default_interval_s=default_s
    )
    assert at == NOW + timedelta(seconds=expected_s)
    # with publishing history the rate decides, not the default
    items = [NOW - timedelta(minutes=m) for m in (10, 20, 30)]
    assert next_check_at(
        now=NOW,
        min_interval_s=60,
        max_interval_s=86400,
        default_interval_s=default_s,
        recent_item_times=items,
    ) == NOW + timedelta(minutes=10)


def test_polling_a_feed_with_no_items_uses_the_configured_default(
    store, httpserver: HTTPServer
) -> None:  # noqa: ANN001
    httpserver.expect_request("/quiet").respond_with_data(EMPTY, content_type="application/rss+xml")
    cfg = make_config(
        [{"name": "quiet", "type": "rss", "url": httpserver.url_for("/quiet")}],
        default_interval="3h",
    )
    sync(store, cfg)
    before = datetime.now(UTC)
    (outcome,) = poll(store, cfg)
    assert not outcome.failed, outcome.error
    with store.session() as s:
        feed = s.scalars(select(Feed)).one()
        wait_s = (feed.next_check_at - before).total_seconds()
    assert 3 * 3600 - 5 <= wait_s <= 3 * 3600 + 30
