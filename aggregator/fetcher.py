"""HTTP fetching of feeds: conditional GET, size and time caps, per-host politeness.

Synchronous on purpose: the daemon runs fetches on a thread worker pool, so one
:class:`Fetcher` (one connection pool) is shared by all workers and is thread-safe.

Hostile servers are the norm, not the exception, so every fetch is bounded:
- time: connect/read timeouts per network operation *and* a wall-clock deadline for the
  whole download (a server trickling one byte per second never trips a read timeout);
- size: the *decoded* body is counted while streaming and decompression is done here with
  ``max_length`` so a gzip bomb is rejected after at most ``max_bytes`` of output, never
  inflated in memory (httpx's own decoder inflates a whole network chunk at once);
- scheme: only http/https, re-checked on every redirect hop (no ``file://`` via redirect);
- concurrency: at most ``per_host_limit`` requests in flight per host across all threads.

Error messages never contain URL credentials or secret query parameters (private feeds put
tokens there); see :func:`aggregator.redact.redact_url`.
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import httpx

from aggregator.errors import (
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    ResponseTooLarge,
    SourceGone,
)
from aggregator.redact import redact_url

__all__ = [
    "ACCEPT",
    "DEFAULT_USER_AGENT",
    "FetchResult",
    "FetchSettings",
    "Fetcher",
    "parse_cache_control_max_age",
    "parse_retry_after",
]


def _package_version() -> str:
    try:
        return version("newsdedup")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


DEFAULT_USER_AGENT = f"newsdedup/{_package_version()} (+https://github.com/newsdedup/newsdedup)"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)
ACCEPT_ENCODING = "gzip, deflate"  # only what we can decode with a bounded output size
ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchSettings:
    """Limits for one fetch. Defaults suit a polite feed poller on a home server."""

    timeout_s: float = 10.0  # connect (and connection-pool wait) timeout
    read_timeout_s: float = 30.0  # max silence between two network reads
    total_timeout_s: float = 60.0  # wall-clock cap on the whole fetch, redirects included
    max_bytes: int = 10 * 1024 * 1024  # cap on the decoded body (and on bytes on the wire)
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    per_host_limit: int = 2  # concurrent requests per host, across all worker threads

    def __post_init__(self) -> None:
        for name in ("timeout_s", "read_timeout_s", "total_timeout_s"):
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise ValueError(
                    f"{name} must be a positive finite number of seconds, got {value!r}"
                )
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int):
            raise ValueError(f"max_bytes must be an int, got {self.max_bytes!r}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")
        if isinstance(self.max_redirects, bool) or not isinstance(self.max_redirects, int):
            raise ValueError(f"max_redirects must be an int, got {self.max_redirects!r}")
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, got {self.max_redirects}")
        if isinstance(self.per_host_limit, bool) or not isinstance(self.per_host_limit, int):
            raise ValueError(f"per_host_limit must be an int, got {self.per_host_limit!r}")
        if self.per_host_limit < 1:
            raise ValueError(f"per_host_limit must be >= 1, got {self.per_host_limit}")
        if not self.user_agent or not self.user_agent.strip():
            raise ValueError("user_agent must not be empty")


@dataclass(frozen=True)
class FetchResult:
    """Outcome of a successful fetch (2xx or 304); failures raise a :class:`FetchError`.

    On 304 ``body`` is None and ``etag``/``last_modified`` fall back to the validators that
    were sent when the server does not repeat them, so the caller can store them as-is.
    """

    url: str  # final URL after redirects
    status: int
    body: bytes | None
    not_modified: bool
    etag: str | None
    last_modified: str | None
    content_type: str | None
    retry_after_s: float | None
    max_age_s: float | None
    elapsed_s: float  # network time, excluding waits for a per-host slot
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))


# --------------------------------------------------------------------------- pure helpers

_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_MAX_AGE = re.compile(r'max-age\s*=\s*"?(\d+)"?', re.IGNORECASE)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    Returns None when absent or unparseable; a date in the past gives 0.0. ``now`` must be
    timezone-aware; naive HTTP-dates are taken as UTC (RFC 9110 dates are always GMT).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None instead of raising
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def parse_cache_control_max_age(value: str | None) -> float | None:
    """``max-age`` seconds from a Cache-Control header, or None.

    ``no-store``/``no-cache`` mean "do not reuse", not "poll less", so they give None too.
    The first well-formed ``max-age`` wins; ``s-maxage`` is for shared caches and ignored.
    """
    if not value:
        return None
    for directive in value.split(","):
        directive = directive.strip()
        match = _MAX_AGE.fullmatch(directive)
        if match:
            return float(match.group(1))
    return None


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or "unknown error"


# --------------------------------------------------------------------------- decoding


class _BoundedDecoder:
    """Incremental Content-Encoding decoder whose every call yields at most ``max_out`` bytes."""

    def __init__(self, content_encoding: str | None) -> None:
        codings = [
            c.strip().lower()
            for c in (content_encoding or "").split(",")
            if c.strip() and c.strip().lower() != "identity"
        ]
        if not codings:
            self.coding = "identity"
        elif len(codings) == 1 and codings[0] in ("gzip", "x-gzip"):
            self.coding = "gzip"
        elif len(codings) == 1 and codings[0] == "deflate":
            self.coding = "deflate"
        else:
            raise ValueError(f"unsupported Content-Encoding {content_encoding!r}")
        self._started = False
        self._raw_deflate = False
        self._obj = None if self.coding == "identity" else self._new()

    def _new(self) -> zlib._Decompress:
        if self.coding == "gzip":
            return zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib, auto-detected
        if self.coding == "deflate":
            # RFC says zlib-wrapped; some servers send raw deflate, so fall back to it.
            return zlib.decompressobj(-zlib.MAX_WBITS if self._raw_deflate else zlib.MAX_WBITS)
        raise AssertionError("identity needs no decompressor")

    def feed(self, data: bytes, max_out: int) -> bytes:
        if self._obj is None:  # identity
            return data
        out = bytearray()
        pending = data
        while pending and len(out) < max_out:
            try:
                out += self._obj.decompress(pending, max_out - len(out))
            except zlib.error:
                if self.coding == "deflate" and not self._started and not self._raw_deflate:
                    self._raw_deflate = True
                    self._obj = self._new()
                    continue
                raise
            self._started = True
            pending = self._obj.unconsumed_tail
            if self._obj.eof:
                rest = self._obj.unused_data
                if self.coding == "gzip" and rest.startswith(b"\x1f\x8b"):
                    self._obj = self._new()  # concatenated gzip members
                    pending = rest
                else:
                    break  # trailing garbage after the stream: ignore, like browsers do
        return bytes(out)

    def flush(self) -> bytes:
        return b"" if self._obj is None else self._obj.flush()


# --------------------------------------------------------------------------- fetcher


class Fetcher:
    """Thread-safe feed fetcher; share one per process. Use as a context manager or close()."""

    def __init__(
        self,
        settings: FetchSettings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings or FetchSettings()
        self._client = httpx.Client(
            transport=transport,
            follow_redirects=False,  # followed by hand: scheme check and host slot per hop
            headers={
                "User-Agent": self.settings.user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )
        self._host_slots: dict[str, threading.BoundedSemaphore] = {}
        self._host_slots_lock = threading.Lock()

    # -- lifecycle
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- politeness
    def _slot_for(self, host: str) -> threading.BoundedSemaphore:
        key = host.lower()
        with self._host_slots_lock:
            slot = self._host_slots.get(key)
            if slot is None:
                slot = threading.BoundedSemaphore(self.settings.per_host_limit)
                self._host_slots[key] = slot
            return slot

    @contextmanager
    def _host_slot(self, host: str) -> Iterator[float]:
        """Hold one of the host's slots; yields the seconds spent waiting for it."""
        slot = self._slot_for(host)
        started = time.monotonic()
        slot.acquire()
        try:
            yield time.monotonic() - started
        finally:
            slot.release()

    # -- fetching
    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> FetchResult:
        """GET ``url`` conditionally, following redirects; raise a FetchError subclass on failure."""
        current = self._checked_url(url)
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified

        started = time.monotonic()
        deadline = started + self.settings.total_timeout_s
        waited_s = 0.0
        for _hop in range(self.settings.max_redirects + 1):
            with self._host_slot(current.host) as wait_s:
                # Queueing behind other workers is politeness, not server slowness.
                waited_s += wait_s
                deadline += wait_s
                response = self._send(current, headers, deadline)
                try:
                    if response.status_code in REDIRECT_STATUSES:
                        next_url = self._redirect_target(current, response)
                    else:
                        return self._finish(
                            current, response, deadline, started, waited_s, etag, last_modified
                        )
                finally:
                    response.close()
            current = self._checked_url(next_url, via=current)
        raise FetchError(
            f"GET {redact_url(url)}: too many redirects "
            f"(more than {self.settings.max_redirects}, last to {redact_url(current)})"
        )

    def _checked_url(self, url: str | httpx.URL, *, via: httpx.URL | None = None) -> httpx.URL:
        where = f" (redirected from {redact_url(via)})" if via is not None else ""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise FetchError(
                f"invalid URL {redact_url(str(url))}{where}: {_one_line(exc)}"
            ) from exc
        if parsed.scheme not in ALLOWED_SCHEMES:
            raise FetchError(
                f"refusing to fetch {redact_url(parsed)}{where}: "
                f"scheme {parsed.scheme or '(none)'!r} is not http or https"
            )
        if not parsed.host:
            raise FetchError(f"invalid URL {redact_url(parsed)}{where}: no host")
        return parsed

    def _redirect_target(self, current: httpx.URL, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("Location")
        if not location:
            raise HTTPStatusError(
                f"GET {redact_url(current)}: HTTP {response.status_code} redirect without Location",
                status=response.status_code,
            )
        try:
            return current.join(location.strip())
        except (httpx.InvalidURL, ValueError) as exc:
            raise FetchError(
                f"GET {redact_url(current)}: invalid redirect Location: {_one_line(exc)}"
            ) from exc

    def _timeout(self, deadline: float) -> httpx.Timeout:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise FetchTimeout(f"total timeout of {self.settings.total_timeout_s:g} s exceeded")
        connect_s = min(self.settings.timeout_s, remaining_s)
        read_s = min(self.settings.read_timeout_s, remaining_s)
        return httpx.Timeout(connect=connect_s, read=read_s, write=read_s, pool=connect_s)

    def _send(self, url: httpx.URL, headers: Mapping[str, str], deadline: float) -> httpx.Response:
        where = redact_url(url)
        try:
            timeout = self._timeout(deadline)
        except FetchTimeout as exc:
            raise FetchTimeout(f"GET {where}: {exc}") from None
        try:
            request = self._client.build_request("GET", url, headers=headers, timeout=timeout)
            return self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"GET {where}: {_timeout_kind(exc)} timed out") from exc
        except httpx.ConnectError as exc:
            raise FetchError(f"cannot connect to {url.host} ({where}): {_one_line(exc)}") from exc
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise FetchError(f"GET {where}: {type(exc).__name__}: {_one_line(exc)}") from exc

    def _finish(
        self,
        url: httpx.URL,
        response: httpx.Response,
        deadline: float,
        started: float,
        waited_s: float,
        sent_etag: str | None,
        sent_last_modified: str | None,
    ) -> FetchResult:
        status = response.status_code
        where = redact_url(url)
        fetched_at = datetime.now(UTC)
        retry_after_s = parse_retry_after(response.headers.get("Retry-After"), fetched_at)
        if status == 410:
            raise SourceGone(
                f"GET {where}: HTTP 410 {response.reason_phrase or 'Gone'}: the source is gone",
                status=status,
                retry_after_s=retry_after_s,
            )
        if not (200 <= status < 300 or status == 304):
            hint = f", retry after {retry_after_s:g} s" if retry_after_s is not None else ""
            raise HTTPStatusError(
                f"GET {where}: HTTP {status} {response.reason_phrase}".rstrip() + hint,
                status=status,
                retry_after_s=retry_after_s,  # meant for 429/503, honoured wherever sent
            )
        not_modified = status == 304
        body = None if not_modified else self._read_body(where, response, deadline)
        headers = response.headers
        return FetchResult(
            url=str(url),
            status=status,
            body=body,
            not_modified=not_modified,
            etag=headers.get("ETag") or (sent_etag if not_modified else None),
            last_modified=headers.get("Last-Modified")
            or (sent_last_modified if not_modified else None),
            content_type=headers.get("Content-Type"),
            retry_after_s=retry_after_s,
            max_age_s=parse_cache_control_max_age(headers.get("Cache-Control")),
            elapsed_s=time.monotonic() - started - waited_s,
            fetched_at=fetched_at,
        )

    def _read_body(self, where: str, response: httpx.Response, deadline: float) -> bytes:
        max_bytes = self.settings.max_bytes
        too_large = f"GET {where}: response larger than {max_bytes} bytes"
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLarge(f"{too_large} (Content-Length {declared})")
        if response.is_stream_consumed:
            # A test transport returned an in-memory (already decoded) body: nothing to stream.
            if len(response.content) > max_bytes:
                raise ResponseTooLarge(too_large)
            return response.content
        try:
            decoder = _BoundedDecoder(response.headers.get("Content-Encoding"))
        except ValueError as exc:
            raise FetchError(f"GET {where}: {exc}") from None

        body = bytearray()
        raw_count = 0
        try:
            for raw in response.iter_raw():
                raw_count += len(raw)  # also bounds bytes that decode to nothing
                if raw_count > max_bytes:
                    raise ResponseTooLarge(f"{too_large} (on the wire)")
                body += decoder.feed(raw, max_bytes - len(body) + 1)
                if len(body) > max_bytes:
                    raise ResponseTooLarge(f"{too_large} (decoded {decoder.coding})")
                if time.monotonic() > deadline:
                    raise FetchTimeout(
                        f"GET {where}: total timeout of {self.settings.total_timeout_s:g} s "
                        f"exceeded after {len(body)} bytes"
                    )
            body += decoder.flush()
        except httpx.TimeoutException as exc:
            raise FetchTimeout(
                f"GET {where}: {_timeout_kind(exc)} timed out after {len(body)} bytes"
            ) from exc
        except httpx.TransportError as exc:
            raise FetchError(
                f"GET {where}: {type(exc).__name__} while reading body: {_one_line(exc)}"
            ) from exc
        except zlib.error as exc:
            raise FetchError(
                f"GET {where}: corrupt {decoder.coding} body: {_one_line(exc)}"
            ) from exc
        if len(body) > max_bytes:
            raise ResponseTooLarge(f"{too_large} (decoded {decoder.coding})")
        return bytes(body)


def _timeout_kind(exc: httpx.TimeoutException) -> str:
    return {
        httpx.ConnectTimeout: "connect",
        httpx.ReadTimeout: "read",
        httpx.WriteTimeout: "write",
        httpx.PoolTimeout: "connection pool wait",
    }.get(type(exc), "request")
