"""When to check a feed next: one pure, deterministic function (Miniflux style).

Kept free of I/O, clocks and randomness so the scheduler, the daemon and the tests agree on
every decision; callers pass ``now`` and whatever they know about the feed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

__all__ = [
    "DEFAULT_INTERVAL_S",
    "MAX_RETRY_AFTER_S",
    "RATE_MAX_ITEMS",
    "RATE_WINDOW_S",
    "backoff_s",
    "next_check_at",
    "publishing_interval_s",
]

DEFAULT_INTERVAL_S = 3600.0  # no publishing history yet
RATE_WINDOW_S = 7 * 24 * 3600.0  # only items this recent say anything about the rate
RATE_MAX_ITEMS = 10  # the most recent items considered
MAX_RETRY_AFTER_S = 7 * 24 * 3600.0  # a Retry-After beyond this is a server bug, not a request


def _check_duration(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _hint_s(name: str, value: float | None) -> float | None:
    """A delay a server or feed asked for: any number is accepted (the caller must not crash on
    what a server sends); NaN and negative ones say nothing (None), huge ones are capped later."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not value >= 0:  # negative or NaN
        return None
    return float(value) if value <= sys.float_info.max else math.inf  # int of 400 digits


def _check_error_count(error_count: int) -> None:
    if isinstance(error_count, bool) or not isinstance(error_count, int):
        raise ValueError(f"error_count must be an int, got {type(error_count).__name__}")
    if error_count < 0:
        raise ValueError(f"error_count must be >= 0, got {error_count}")


def _check_bounds(min_interval_s: float, max_interval_s: float) -> None:
    _check_duration("min_interval_s", min_interval_s, allow_none=False)
    _check_duration("max_interval_s", max_interval_s, allow_none=False)
    if min_interval_s <= 0:
        raise ValueError(f"min_interval_s must be > 0, got {min_interval_s!r}")
    if min_interval_s > max_interval_s:
        raise ValueError(
            f"min_interval_s ({min_interval_s!r}) must not exceed max_interval_s ({max_interval_s!r})"
        )


def backoff_s(error_count: int, min_interval_s: float, max_interval_s: float) -> float:
    """``min_interval_s * 2**error_count`` capped at ``max_interval_s``; 0 errors -> minimum."""
    _check_error_count(error_count)
    _check_bounds(min_interval_s, max_interval_s)
    try:
        return min(max_interval_s, math.ldexp(min_interval_s, error_count))
    except OverflowError:  # astronomically many errors: simply the cap
        return float(max_interval_s)


def publishing_interval_s(now: datetime, recent_item_times: Sequence[datetime]) -> float | None:
    """Mean seconds per item over the latest items, or None without any publishing history.

    Uses the last ``RATE_MAX_ITEMS`` items of the last ``RATE_WINDOW_S`` and measures from the
    oldest of them up to ``now`` (not to the newest), so a burst followed by silence slows
    polling down as the silence grows. Future-dated items are ignored (clock skew, bad feeds).
    With history but nothing inside the window the feed is dormant: ``RATE_WINDOW_S``.
    """
    if not recent_item_times:
        return None
    window_start_at = now - timedelta(seconds=RATE_WINDOW_S)
    in_window = sorted(t for t in recent_item_times if window_start_at <= t <= now)
    if not in_window:
        return RATE_WINDOW_S
    latest = in_window[-RATE_MAX_ITEMS:]
    return (now - latest[0]).total_seconds() / len(latest)


def next_check_at(
    *,
    now: datetime,
    min_interval_s: float,
    max_interval_s: float,
    error_count: int = 0,
    retry_after_s: float | None = None,
    ttl_s: float | None = None,
    max_age_s: float | None = None,
    recent_item_times: Sequence[datetime] = (),
    floor_s: float | None = None,
    default_interval_s: float = DEFAULT_INTERVAL_S,
) -> datetime:
    """The UTC time a feed should next be fetched.

    1. base: the feed's publishing interval (:func:`publishing_interval_s`), else
       ``default_interval_s`` (``polling.default_interval``, 1 h);
    2. errors: at least the exponential backoff (:func:`backoff_s`), never sooner than base;
    3. RSS ``<ttl>`` and Cache-Control ``max-age`` are lower bounds;
    4. clamp to ``[max(min_interval_s, floor_s), max_interval_s]`` (``floor_s``: per source
       type, e.g. Google/Bing News never more often than every 15 min);
    5. ``Retry-After`` is honoured even beyond ``max_interval_s`` (the server asked), but at
       most ``MAX_RETRY_AFTER_S``.

    ``retry_after_s``, ``ttl_s`` and ``max_age_s`` come from servers and feeds: negative or NaN
    ones are ignored and infinite ones capped, so the result is always within
    ``[now + max(min_interval_s, floor_s), now + max(max_interval_s, MAX_RETRY_AFTER_S)]``
    (``now + max_interval_s`` without a ``Retry-After``). The other arguments are ours: wrong
    ones raise ValueError.
    """
    if not isinstance(now, datetime):
        raise ValueError(f"now must be a datetime, got {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (UTC)")
    _check_bounds(min_interval_s, max_interval_s)
    _check_error_count(error_count)
    retry_after_s = _hint_s("retry_after_s", retry_after_s)
    ttl_s = _hint_s("ttl_s", ttl_s)
    max_age_s = _hint_s("max_age_s", max_age_s)
    _check_duration("floor_s", floor_s)
    _check_duration("default_interval_s", default_interval_s, allow_none=False)
    if floor_s is not None and floor_s > max_interval_s:
        raise ValueError(
            f"floor_s ({floor_s!r}) must not exceed max_interval_s ({max_interval_s!r})"
        )
    for index, item_at in enumerate(recent_item_times):
        if not isinstance(item_at, datetime):
            raise ValueError(
                f"recent_item_times[{index}] must be a datetime, got {type(item_at).__name__}"
            )
        if item_at.tzinfo is None or item_at.utcoffset() is None:
            raise ValueError(f"recent_item_times[{index}] must be timezone-aware, got {item_at!r}")

    rate_s = publishing_interval_s(now, recent_item_times)
    interval_s = default_interval_s if rate_s is None else rate_s
    if error_count:
        interval_s = max(interval_s, backoff_s(error_count, min_interval_s, max_interval_s))
    for lower_bound_s in (ttl_s, max_age_s):
        if lower_bound_s is not None:
            interval_s = max(interval_s, lower_bound_s)

    low_s = max(min_interval_s, floor_s or 0.0)
    interval_s = min(max(interval_s, low_s), max_interval_s)

    if retry_after_s is not None:
        interval_s = max(interval_s, min(retry_after_s, MAX_RETRY_AFTER_S))
    return now.astimezone(UTC) + timedelta(seconds=interval_s)
