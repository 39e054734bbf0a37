"""next_check_at is pure: every case is (inputs -> exact interval)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.schedule import (
    DEFAULT_INTERVAL_S,
    MAX_RETRY_AFTER_S,
    RATE_WINDOW_S,
    backoff_s,
    next_check_at,
    publishing_interval_s,
)

NOW_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MIN_S = 300.0  # Miniflux-like bounds: 5 min .. 24 h
MAX_S = 86_400.0
GOOGLE_FLOOR_S = 900.0


def ago(**kwargs: float) -> datetime:
    return NOW_AT - timedelta(**kwargs)


def every(gap_s: float, count: int, *, newest_age_s: float = 0.0) -> list[datetime]:
    """``count`` items ``gap_s`` apart, the newest ``newest_age_s`` ago."""
    return [NOW_AT - timedelta(seconds=newest_age_s + i * gap_s) for i in range(count)]


def interval_s(**kwargs) -> float:
    kwargs.setdefault("now", NOW_AT)
    kwargs.setdefault("min_interval_s", MIN_S)
    kwargs.setdefault("max_interval_s", MAX_S)
    return (next_check_at(**kwargs) - NOW_AT).total_seconds()


@pytest.mark.parametrize(
    ("case", "kwargs", "expected_s"),
    [
        # --- publishing rate
        ("no history: default 1 h", {}, DEFAULT_INTERVAL_S),
        # 10 items 30 min apart, newest just now: span 4.5 h + nothing open / 10 items
        ("frequent publisher", {"recent_item_times": every(1800, 10)}, 1620.0),
        (
            "steady hourly publisher",
            {"recent_item_times": every(3600, 10, newest_age_s=1800)},
            3420.0,
        ),
        ("only the latest 10 items count", {"recent_item_times": every(1800, 50)}, 1620.0),
        ("very frequent: clamped to min", {"recent_item_times": every(10, 10)}, MIN_S),
        ("slow publisher: clamped to max", {"recent_item_times": every(3 * 86_400, 2)}, MAX_S),
        ("single recent item: its age", {"recent_item_times": [ago(hours=2)]}, 7200.0),
        (
            "burst then silence slows down",
            {"recent_item_times": every(60, 10, newest_age_s=36_000)},
            3654.0,
        ),
        ("dormant feed (nothing in 7 days): max", {"recent_item_times": [ago(days=30)]}, MAX_S),
        (
            "future-dated items ignored",
            {"recent_item_times": [NOW_AT + timedelta(days=1), ago(hours=2)]},
            7200.0,
        ),
        (
            "order of items irrelevant",
            {"recent_item_times": list(reversed(every(1800, 10)))},
            1620.0,
        ),
        (
            "other offsets compare as instants",
            {"recent_item_times": [ago(hours=2).astimezone(timezone(timedelta(hours=2)))]},
            7200.0,
        ),
        # --- errors: exponential backoff, never sooner than the rate says
        ("1 error", {"error_count": 1, "recent_item_times": every(10, 10)}, 600.0),
        ("3 errors", {"error_count": 3, "recent_item_times": every(10, 10)}, 2400.0),
        ("9 errors", {"error_count": 9, "recent_item_times": every(10, 10)}, MAX_S),
        ("huge error count capped", {"error_count": 10_000}, MAX_S),
        (
            "backoff below rate: rate wins",
            {"error_count": 1, "recent_item_times": [ago(hours=5)]},
            18_000.0,
        ),
        # --- TTL and Cache-Control max-age are lower bounds, still capped by max
        ("ttl raises", {"ttl_s": 7200.0}, 7200.0),
        ("ttl below rate ignored", {"ttl_s": 60.0}, DEFAULT_INTERVAL_S),
        ("max-age raises", {"max_age_s": 10_000.0}, 10_000.0),
        ("larger of ttl and max-age", {"ttl_s": 5000.0, "max_age_s": 9000.0}, 9000.0),
        ("ttl beyond max is capped", {"ttl_s": 10 * 86_400.0}, MAX_S),
        # --- per-source floor (Google/Bing News: >= 15 min)
        (
            "google floor lifts a frequent feed",
            {"floor_s": GOOGLE_FLOOR_S, "recent_item_times": every(10, 10)},
            GOOGLE_FLOOR_S,
        ),
        (
            "floor below min is irrelevant",
            {"floor_s": 60.0, "recent_item_times": every(10, 10)},
            MIN_S,
        ),
        ("floor does not lower a slow feed", {"floor_s": GOOGLE_FLOOR_S}, DEFAULT_INTERVAL_S),
        # --- Retry-After: a hard lower bound, even past max, up to 7 days
        ("retry-after raises", {"retry_after_s": 120.0, "recent_item_times": every(10, 10)}, MIN_S),
        (
            "retry-after beats rate",
            {"retry_after_s": 5000.0, "recent_item_times": every(10, 10)},
            5000.0,
        ),
        ("retry-after beyond max honoured", {"retry_after_s": 2 * 86_400.0}, 2 * 86_400.0),
        ("retry-after capped at 7 days", {"retry_after_s": 30 * 86_400.0}, MAX_RETRY_AFTER_S),
        ("retry-after 0 changes nothing", {"retry_after_s": 0.0}, DEFAULT_INTERVAL_S),
        ("retry-after with errors", {"retry_after_s": 100_000.0, "error_count": 2}, 100_000.0),
    ],
)
def test_next_check_interval(case: str, kwargs: dict, expected_s: float) -> None:
    assert interval_s(**kwargs) == pytest.approx(expected_s), case


def test_backoff_grows_exponentially_then_caps() -> None:
    growth = [backoff_s(n, MIN_S, MAX_S) for n in range(10)]
    assert growth[:6] == [300.0, 600.0, 1200.0, 2400.0, 4800.0, 9600.0]
    assert growth[8:] == [76_800.0, MAX_S]  # 300 * 2**9 = 153 600 > 24 h
    assert all(a <= b for a, b in zip(growth, growth[1:], strict=False))
    assert backoff_s(10**6, MIN_S, MAX_S) == MAX_S


def test_result_is_utc_and_deterministic() -> None:
    cest_now = NOW_AT.astimezone(timezone(timedelta(hours=2)))
    first = next_check_at(now=cest_now, min_interval_s=MIN_S, max_interval_s=MAX_S, error_count=2)
    second = next_check_at(now=cest_now, min_interval_s=MIN_S, max_interval_s=MAX_S, error_count=2)
    assert first == second
    assert first.utcoffset() == timedelta(0)
    assert first == NOW_AT + timedelta(seconds=DEFAULT_INTERVAL_S)


def test_publishing_interval_without_history_is_none() -> None:
    assert publishing_interval_s(NOW_AT, []) is None
    assert publishing_interval_s(NOW_AT, [ago(days=8)]) == RATE_WINDOW_S


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"min_interval_s": 600.0, "max_interval_s": 300.0},
            r"min_interval_s \(600.0\) must not exceed max_interval_s \(300.0\)",
        ),
        ({"min_interval_s": 0.0}, r"min_interval_s must be > 0"),
        ({"min_interval_s": -1.0}, r"min_interval_s must be >= 0"),
        ({"max_interval_s": float("inf")}, r"max_interval_s must be finite"),
        ({"min_interval_s": "300"}, r"min_interval_s must be a number of seconds, got str"),
        ({"error_count": -1}, r"error_count must be >= 0, got -1"),
        ({"error_count": 1.5}, r"error_count must be an int, got float"),
        ({"error_count": True}, r"error_count must be an int, got bool"),
        ({"retry_after_s": "120"}, r"retry_after_s must be a number of seconds, got str"),
        ({"ttl_s": True}, r"ttl_s must be a number of seconds, got bool"),
        (
            {"floor_s": 100_000.0},
            r"floor_s \(100000.0\) must not exceed max_interval_s \(86400.0\)",
        ),
        ({"now": datetime(2024, 5, 1, 12, 0)}, r"now must be timezone-aware"),
        ({"now": "2024-05-01"}, r"now must be a datetime"),
        (
            {"recent_item_times": [ago(hours=1), datetime(2024, 5, 1)]},
            r"recent_item_times\[1\] must be timezone-aware",
        ),
        ({"recent_item_times": ["2024-05-01"]}, r"recent_item_times\[0\] must be a datetime"),
    ],
)
def test_validation_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        interval_s(**kwargs)


def test_backoff_validation() -> None:
    with pytest.raises(
        ValueError, match=r"min_interval_s \(10\) must not exceed max_interval_s \(5\)"
    ):
        backoff_s(1, 10, 5)
    with pytest.raises(ValueError, match="error_count must be >= 0"):
        backoff_s(-1, 5, 10)


@pytest.mark.parametrize(
    ("kwargs", "expected_s"),
    [
        ({"retry_after_s": -5.0}, DEFAULT_INTERVAL_S),
        ({"retry_after_s": float("nan")}, DEFAULT_INTERVAL_S),
        ({"retry_after_s": float("inf")}, MAX_RETRY_AFTER_S),
        ({"retry_after_s": 10**400}, MAX_RETRY_AFTER_S),
        ({"ttl_s": float("nan")}, DEFAULT_INTERVAL_S),
        ({"ttl_s": float("inf")}, MAX_S),
        ({"max_age_s": -1}, DEFAULT_INTERVAL_S),
        ({"max_age_s": 10**400}, MAX_S),
    ],
)
def test_server_hints_out_of_range_are_ignored_or_capped(kwargs: dict, expected_s: float) -> None:
    """What a server or feed sends never raises: NaN and negative say nothing, huge is capped."""
    assert interval_s(**kwargs) == pytest.approx(expected_s)


# Any number a header or a feed may yield, including the ones no parser should let through.
hint = st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**400), 10**400)


@settings(max_examples=300, deadline=None)
@given(
    now=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    bounds=st.tuples(
        st.floats(min_value=1.0, max_value=30 * 86_400.0),
        st.floats(min_value=1.0, max_value=30 * 86_400.0),
    ).map(sorted),
    floor_fraction=st.none() | st.floats(min_value=0.0, max_value=1.0),
    error_count=st.integers(min_value=0, max_value=10**6),
    retry_after_s=hint,
    ttl_s=hint,
    max_age_s=hint,
    item_offsets_s=st.lists(st.floats(min_value=-1e9, max_value=1e9), max_size=15),
)
def test_next_check_is_always_within_bounds(
    now, bounds, floor_fraction, error_count, retry_after_s, ttl_s, max_age_s, item_offsets_s
) -> None:
    min_s, max_s = bounds
    floor_s = None if floor_fraction is None else floor_fraction * max_s
    items = [now + timedelta(seconds=o) for o in item_offsets_s]
    got_s = (
        next_check_at(
            now=now,
            min_interval_s=min_s,
            max_interval_s=max_s,
            error_count=error_count,
            retry_after_s=retry_after_s,
            ttl_s=ttl_s,
            max_age_s=max_age_s,
            recent_item_times=items,
            floor_s=floor_s,
        )
        - now
    ).total_seconds()
    low_s = max(min_s, floor_s or 0.0)
    asks = retry_after_s is not None and retry_after_s > 0  # NaN > 0 is False
    high_s = max(max_s, MAX_RETRY_AFTER_S) if asks else max_s
    assert math.isfinite(got_s)
    assert low_s - 1e-3 <= got_s <= high_s + 1e-3
