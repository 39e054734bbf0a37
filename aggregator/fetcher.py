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
- address: unless the caller allows private addresses for the hop, the connection is made
  only to an address the host name resolved to that is public (not loopback, private,
  link-local, multicast, reserved...): every resolved address is checked at connect time
  and the socket goes to the very address checked, so neither odd spellings of an IP nor
  DNS rebinding get a feed's URL into the local network;
- concurrency: at most ``per_host_limit`` requests in flight per host across all threads.

Error messages never contain URL credentials or secret query parameters (private feeds put
tokens there); see :func:`aggregator.redact.redact_url`.

Long because every bound (time, size, decompression, scheme, address, redirects, per-host
politeness) has to hold inside the one streaming loop of a download.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

import httpcore
import httpx
from httpx._utils import get_environment_proxies

from aggregator.errors import (
    AddressRefused,
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
    "PrivateAccess",
    "non_public_reason",
    "origin_of",
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
PERMANENT_REDIRECTS = frozenset({301, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}

# Which hops of a fetch may connect to a non-public address: none; only those whose origin
# (scheme, host, port) is the origin of the URL the fetch started with; all of them.
PrivateAccess = Literal["never", "same_origin", "always"]
PRIVATE_HINT = (
    "set polling.allow_private_addresses: true to allow configured sources on private networks"
)


@dataclass(frozen=True)
class FetchSettings:
    """Limits for one fetch. Defaults suit a polite feed poller on a home server."""

    timeout_s: float = 10.0  # connect (and connection-pool wait) timeout
    read_timeout_s: float = 30.0  # max silence between two network reads
    total_timeout_s: float = 60.0  # wall-clock cap on the whole fetch, redirects included
    # cap on the decoded body (and on bytes on the wire): polling.max_response_size, checked
    # by the config's Size type
    max_bytes: int = 10 * 1024 * 1024
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
    redirects: tuple[tuple[int, str], ...] = ()  # (status, target) per hop followed

    @property
    def moved_to(self) -> str | None:
        """Where the feed moved for good: the target of the leading permanent (301/308) hops,
        None when the first hop is temporary (302/307) or there was none."""
        moved = None
        for status, target in self.redirects:
            if status not in PERMANENT_REDIRECTS:
                break
            moved = target
        return moved


# --------------------------------------------------------------------------- pure helpers

_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_MAX_AGE = re.compile(r'max-age\s*=\s*"?([0-9]+)"?', re.IGNORECASE)

MAX_HEADER_DELAY_S = 365 * 24 * 3600.0
"""The longest delay a header may ask for; anything longer (400 digits, a date in year 9999)
is clamped to this, so every value handed on is finite and fits a ``timedelta``."""


def _delay_s(seconds: float) -> float:
    """Clamp a header-derived delay to ``[0, MAX_HEADER_DELAY_S]`` (NaN gives 0)."""
    return min(max(seconds, 0.0), MAX_HEADER_DELAY_S) if seconds == seconds else 0.0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    Returns None when absent or unparseable; a date in the past gives 0.0; anything beyond
    ``MAX_HEADER_DELAY_S`` gives that. ``now`` must be timezone-aware; naive HTTP-dates are
    taken as UTC (RFC 9110 dates are always GMT). Never raises for any ``value``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        return _delay_s(float(value))  # 400 digits: float() gives inf, clamped
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when is None:  # pragma: no cover - older Pythons returned None instead of raising
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return _delay_s((when - now).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_cache_control_max_age(value: str | None) -> float | None:
    """``max-age`` seconds from a Cache-Control header, or None; at most ``MAX_HEADER_DELAY_S``.

    ``no-store``/``no-cache`` mean "do not reuse", not "poll less", so they give None too.
    The first well-formed ``max-age`` wins; ``s-maxage`` is for shared caches and ignored.
    """
    if not value:
        return None
    for directive in value.split(","):
        directive = directive.strip()
        match = _MAX_AGE.fullmatch(directive)
        if match:
            return _delay_s(float(match.group(1)))
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


# --------------------------------------------------------------------------- address guard


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IANA special-purpose ranges, named; listed rather than left to ``is_global``, whose
# answers differ between Python versions (3.11 calls 192.0.0.8 and fec0::1 global).
_NON_PUBLIC: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignment"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def non_public_reason(address: str | IPAddress) -> str | None:
    """Why a fetch must not connect to ``address`` ("loopback", "private", ...), or None
    when the address is public. IPv6 forms that carry an IPv4 address (mapped, NAT64,
    6to4) are judged by that IPv4 address."""
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return "link-local"
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = non_public_reason(embedded)
            return f"{reason}, embedded in {ip.compressed}" if reason else None
    for network, reason in _NON_PUBLIC:
        if ip.version == network.version and ip in network:
            return reason
    if ip.is_multicast:
        return "multicast"
    if not ip.is_global:
        return "not globally routable"
    return None


def origin_of(url: str | httpx.URL) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the scheme's default port filled in; None if unparseable."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    scheme = parsed.scheme.lower()
    port = parsed.port or DEFAULT_PORTS.get(scheme)
    if not parsed.host or port is None:
        return None
    return scheme, parsed.host.lower().rstrip("."), port


def _public_addresses(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, if every one is public; else AddressRefused.

    Refusing a name when any of its addresses is non-public (rather than picking a public
    one) leaves no room for a name that mixes internal and external addresses.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        reason = non_public_reason(address)
        if reason is not None:
            raise AddressRefused(f"refusing to connect to {address} ({reason})")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise httpcore.ConnectError(f"{host} resolved to no address")
    return addresses


class _PublicOnlyBackend(httpcore.NetworkBackend):
    """Resolve, vet every address, then connect to a vetted address (never re-resolve)."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: object = None,
    ) -> httpcore.NetworkStream:
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in _public_addresses(host, port):
            try:
                return self._inner.connect_tcp(
                    address,
                    port,
                    timeout,
                    local_address,
                    socket_options,  # type: ignore[arg-type]
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(self, *args: object, **kwargs: object) -> httpcore.NetworkStream:
        raise AddressRefused("refusing to connect to a Unix socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _PublicOnlyTransport(httpx.HTTPTransport):
    """httpx's own transport on a connection pool whose connections pass the address guard.

    Limits and TLS settings are httpx's defaults, as for a plain ``httpx.Client()``.
    """

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context)
        self._pool.close()  # the default pool, never used
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_PublicOnlyBackend(),
        )


class _ProxyPreflight(httpx.BaseTransport):
    """For a request sent through a proxy, which resolves the name itself: refuse a host
    that resolves here to a non-public address. Best effort (the proxy resolves again)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        port = request.url.port or DEFAULT_PORTS.get(request.url.scheme, 80)
        try:
            _public_addresses(request.url.host, port)
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _public_only_client(headers: Mapping[str, str], ssl_context: ssl.SSLContext) -> httpx.Client:
    """A client that connects only to public addresses; environment proxies as httpx's."""
    mounts: dict[str, httpx.BaseTransport | None] = {
        pattern: None
        if proxy is None
        else _ProxyPreflight(httpx.HTTPTransport(verify=ssl_context, proxy=proxy))
        for pattern, proxy in get_environment_proxies().items()
    }
    return httpx.Client(
        transport=_PublicOnlyTransport(ssl_context),
        mounts=mounts,
        follow_redirects=False,
        headers=headers,
    )


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
        headers = {
            "User-Agent": self.settings.user_agent,
            "Accept": ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        # Two pools, so a connection opened to a private address for a hop allowed there
        # is never reused by a hop that is not. Redirects are followed by hand: scheme
        # check, address rule and host slot per hop.
        if transport is None:
            ssl_context = httpx.create_ssl_context()  # one for both: building one takes ms
            self._open = httpx.Client(verify=ssl_context, follow_redirects=False, headers=headers)
            self._public = _public_only_client(headers, ssl_context)
        else:
            self._open = httpx.Client(transport=transport, follow_redirects=False, headers=headers)
            self._public = httpx.Client(
                transport=transport, follow_redirects=False, headers=headers
            )
        self._host_slots: dict[str, threading.BoundedSemaphore] = {}
        self._host_slots_lock = threading.Lock()

    # -- lifecycle
    def close(self) -> None:
        self._open.close()
        self._public.close()

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
        private_addresses: PrivateAccess = "never",
    ) -> FetchResult:
        """GET ``url`` conditionally, following redirects; raise a FetchError subclass on failure.

        ``private_addresses`` says which hops may connect to non-public addresses; a hop
        that may not and would is refused with :class:`AddressRefused`.
        """
        if private_addresses not in ("never", "same_origin", "always"):
            raise ValueError(
                f"private_addresses must be never, same_origin or always, got {private_addresses!r}"
            )
        current = self._checked_url(url)
        start_origin = origin_of(current)
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified

        started = time.monotonic()
        deadline = started + self.settings.total_timeout_s
        waited_s = 0.0
        hops: list[tuple[int, str]] = []
        for _hop in range(self.settings.max_redirects + 1):
            with self._host_slot(current.host) as wait_s:
                # Queueing behind other workers is politeness, not server slowness.
                waited_s += wait_s
                deadline += wait_s
                private_ok = private_addresses == "always" or (
                    private_addresses == "same_origin" and origin_of(current) == start_origin
                )
                response = self._send(current, headers, deadline, private_ok, private_addresses)
                try:
                    if response.status_code in REDIRECT_STATUSES:
                        next_url = self._redirect_target(current, response)
                        hops.append((response.status_code, str(next_url)))
                    else:
                        result = self._finish(
                            current, response, deadline, started, waited_s, etag, last_modified
                        )
                        return replace(result, redirects=tuple(hops))
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

    def _send(
        self,
        url: httpx.URL,
        headers: Mapping[str, str],
        deadline: float,
        private_ok: bool,
        private_addresses: PrivateAccess,
    ) -> httpx.Response:
        where = redact_url(url)
        try:
            timeout = self._timeout(deadline)
        except FetchTimeout as exc:
            raise FetchTimeout(f"GET {where}: {exc}") from None
        client = self._open if private_ok else self._public
        try:
            request = client.build_request("GET", url, headers=headers, timeout=timeout)
            return client.send(request, stream=True)
        except AddressRefused as exc:
            hint = (
                PRIVATE_HINT
                if private_addresses == "never"
                else "this feed may reach a private address only on its own host"
            )
            raise AddressRefused(f"{exc} for {where}: {hint}") from None
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
