"""Fetcher against real loopback HTTP servers (pytest-httpserver, plus a tiny threaded server
for behaviour werkzeug cannot fake: trickling bodies, silence, concurrency)."""

from __future__ import annotations

import email.utils
import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from werkzeug import Request, Response

from aggregator.errors import (
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    ResponseTooLarge,
    SourceGone,
)
from aggregator.fetcher import (
    DEFAULT_USER_AGENT,
    Fetcher,
    FetchSettings,
    parse_cache_control_max_age,
    parse_retry_after,
)

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
FAST = FetchSettings(timeout_s=2.0, read_timeout_s=2.0, total_timeout_s=5.0, max_bytes=1 << 20)


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    with Fetcher(FAST) as f:
        yield f


def seen_headers(httpserver) -> list:
    return [request.headers for request, _response in httpserver.log]


# --------------------------------------------------------------------------- helper server


@contextmanager
def serve(do_get: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A threaded loopback server calling ``do_get(handler)`` per request; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with suppress(BrokenPipeError, ConnectionResetError):  # the client gave up on us
                do_get(self)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- success paths


def test_200_returns_body_and_metadata(httpserver, fetcher: Fetcher) -> None:
    httpserver.expect_request("/feed").respond_with_data(
        FEED,
        content_type="application/rss+xml; charset=utf-8",
        headers={
            "ETag": '"v1"',
            "Last-Modified": "Wed, 01 May 2024 10:00:00 GMT",
            "Cache-Control": "public, max-age=600",
        },
    )
    before_at = datetime.now(UTC)
    result = fetcher.fetch(httpserver.url_for("/feed"), private_addresses="always")

    assert result.status == 200
    assert result.body == FEED
    assert result.not_modified is False
    assert result.url == httpserver.url_for("/feed")
    assert result.etag == '"v1"'
    assert result.last_modified == "Wed, 01 May 2024 10:00:00 GMT"
    assert result.content_type == "application/rss+xml; charset=utf-8"
    assert result.max_age_s == 600.0
    assert result.retry_after_s is None
    assert 0 <= result.elapsed_s < 5
    assert before_at <= result.fetched_at <= datetime.now(UTC)
    (headers,) = seen_headers(httpserver)
    assert headers["User-Agent"] == DEFAULT_USER_AGENT
    assert DEFAULT_USER_AGENT.startswith("newsdedup/")
    assert "application/rss+xml" in headers["Accept"]
    assert "gzip" in headers["Accept-Encoding"]
    assert "If-None-Match" not in headers and "If-Modified-Since" not in headers


def test_custom_user_agent_is_sent(httpserver) -> None:
    httpserver.expect_request("/feed").respond_with_data(FEED)
    with Fetcher(FetchSettings(user_agent="probe/1.0")) as fetcher:
        fetcher.fetch(httpserver.url_for("/feed"), private_addresses="always")
    assert seen_headers(httpserver)[0]["User-Agent"] == "probe/1.0"


def test_conditional_get_gives_not_modified_without_body(httpserver, fetcher: Fetcher) -> None:
    last_modified = "Wed, 01 May 2024 10:00:00 GMT"

    def handler(request: Request) -> Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(status=304)  # no validators repeated: the sent ones must survive
        return Response(FEED, headers={"ETag": '"v1"', "Last-Modified": last_modified})

    httpserver.expect_request("/feed").respond_with_handler(handler)
    url = httpserver.url_for("/feed")
    first = fetcher.fetch(url, private_addresses="always")
    second = fetcher.fetch(
        url, etag=first.etag, last_modified=first.last_modified, private_addresses="always"
    )

    assert second.status == 304
    assert second.not_modified is True
    assert second.body is None
    assert (second.etag, second.last_modified) == ('"v1"', last_modified)
    conditional = seen_headers(httpserver)[1]
    assert conditional["If-None-Match"] == '"v1"'
    assert conditional["If-Modified-Since"] == last_modified


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # RFC 9110: zlib-wrapped
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, seen in the wild
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
def test_compressed_body_is_decoded(httpserver, fetcher: Fetcher, encoding, compress) -> None:
    body = FEED * 200
    httpserver.expect_request("/feed").respond_with_data(
        compress(body), headers={"Content-Encoding": encoding}
    )
    assert fetcher.fetch(httpserver.url_for("/feed"), private_addresses="always").body == body


def test_concatenated_gzip_members_are_all_decoded(httpserver, fetcher: Fetcher) -> None:
    httpserver.expect_request("/feed").respond_with_data(
        gzip.compress(b"first ") + gzip.compress(b"second"), headers={"Content-Encoding": "gzip"}
    )
    assert (
        fetcher.fetch(httpserver.url_for("/feed"), private_addresses="always").body
        == b"first second"
    )


def test_swappable_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=FEED, headers={"ETag": '"m"'})

    with Fetcher(FAST, transport=httpx.MockTransport(handler)) as fetcher:
        result = fetcher.fetch("https://example.invalid/feed")
    assert (result.body, result.etag) == (FEED, '"m"')


# --------------------------------------------------------------------------- size caps


def gzip_bomb(decoded_size: int) -> bytes:
    """``decoded_size`` zero bytes gzip-compressed, built without holding them in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(decoded_size // len(block))]
    parts.append(compressor.flush())
    return b"".join(parts)


def test_gzip_bomb_rejected_without_inflating_it(httpserver) -> None:
    bomb = gzip_bomb(50 << 20)
    assert len(bomb) < 100_000  # fits in one or two network reads
    httpserver.expect_request("/bomb").respond_with_data(bomb, headers={"Content-Encoding": "gzip"})
    settings = FetchSettings(max_bytes=1 << 20, total_timeout_s=10)

    with Fetcher(settings) as fetcher:
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLarge, match="larger than 1048576 bytes"):
                fetcher.fetch(httpserver.url_for("/bomb"), private_addresses="always")
            _current, peak_bytes = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # Inflating with httpx's decoder peaks above 100 MB here; bounded decoding stays ~3 MB.
    assert peak_bytes < 16 << 20, f"peak {peak_bytes} bytes: the bomb was inflated"


def test_oversized_body_with_content_length_rejected(httpserver) -> None:
    httpserver.expect_request("/big").respond_with_data(b"x" * 5000)
    with Fetcher(FetchSettings(max_bytes=1000)) as fetcher, pytest.raises(ResponseTooLarge):
        fetcher.fetch(httpserver.url_for("/big"), private_addresses="always")


def test_body_of_exactly_max_bytes_is_accepted(httpserver) -> None:
    httpserver.expect_request("/fit").respond_with_data(b"x" * 1000)
    with Fetcher(FetchSettings(max_bytes=1000)) as fetcher:
        assert (
            fetcher.fetch(httpserver.url_for("/fit"), private_addresses="always").body
            == b"x" * 1000
        )


def test_oversized_body_without_content_length_rejected_while_streaming() -> None:
    sent = {"bytes": 0}

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()  # no Content-Length: body ends when the connection closes
        for _ in range(2000):  # up to 16 MB
            handler.wfile.write(b"y" * 8192)
            sent["bytes"] += 8192

    with (
        serve(endless) as base,
        Fetcher(FetchSettings(max_bytes=100_000)) as fetcher,
        pytest.raises(ResponseTooLarge, match="larger than 100000 bytes"),
    ):
        fetcher.fetch(f"{base}/feed", private_addresses="always")
    assert sent["bytes"] < 16_000_000


# --------------------------------------------------------------------------- redirects


def test_redirect_chain_followed_and_final_url_reported(httpserver, fetcher: Fetcher) -> None:
    httpserver.expect_request("/a").respond_with_data("", 302, headers={"Location": "b"})
    httpserver.expect_request("/b").respond_with_data(
        "", 301, headers={"Location": httpserver.url_for("/c")}
    )
    httpserver.expect_request("/c").respond_with_data(FEED, headers={"ETag": '"c"'})

    result = fetcher.fetch(httpserver.url_for("/a"), etag='"old"', private_addresses="always")

    assert result.url == httpserver.url_for("/c")
    assert (result.status, result.body, result.etag) == (200, FEED, '"c"')
    assert [request.path for request, _ in httpserver.log] == ["/a", "/b", "/c"]
    assert all(h["If-None-Match"] == '"old"' for h in seen_headers(httpserver))


def test_redirect_loop_gives_fetch_error(httpserver, fetcher: Fetcher) -> None:
    httpserver.expect_request("/loop").respond_with_data("", 302, headers={"Location": "/loop"})
    with pytest.raises(FetchError, match="too many redirects") as info:
        fetcher.fetch(httpserver.url_for("/loop"), private_addresses="always")
    assert type(info.value) is FetchError
    assert len(httpserver.log) == FAST.max_redirects + 1


@pytest.mark.parametrize(("hops", "ok"), [(2, True), (3, False)])
def test_redirect_limit_is_exact(httpserver, hops: int, ok: bool) -> None:
    for i in range(hops):
        httpserver.expect_request(f"/r{i}").respond_with_data(
            "", 307, headers={"Location": f"/r{i + 1}"}
        )
    httpserver.expect_request(f"/r{hops}").respond_with_data(FEED)
    with Fetcher(FetchSettings(max_redirects=2)) as fetcher:
        if ok:
            assert fetcher.fetch(httpserver.url_for("/r0"), private_addresses="always").body == FEED
        else:
            with pytest.raises(FetchError, match="more than 2"):
                fetcher.fetch(httpserver.url_for("/r0"), private_addresses="always")


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.org/feed.xml"])
def test_redirect_to_other_scheme_rejected(httpserver, fetcher: Fetcher, target: str) -> None:
    httpserver.expect_request("/evil").respond_with_data("", 302, headers={"Location": target})
    with pytest.raises(FetchError, match="is not http or https") as info:
        fetcher.fetch(httpserver.url_for("/evil"), private_addresses="always")
    assert "redirected from" in str(info.value)


def test_redirect_without_location_is_status_error(httpserver, fetcher: Fetcher) -> None:
    httpserver.expect_request("/nowhere").respond_with_data("", 302)
    with pytest.raises(HTTPStatusError, match="without Location") as info:
        fetcher.fetch(httpserver.url_for("/nowhere"), private_addresses="always")
    assert info.value.status == 302


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x", "/relative", ""])
def test_non_http_url_rejected_without_network(url: str) -> None:
    def no_network(request: httpx.Request) -> httpx.Response:
        raise AssertionError("must not be sent")

    with (
        Fetcher(FAST, transport=httpx.MockTransport(no_network)) as fetcher,
        pytest.raises(FetchError),
    ):
        fetcher.fetch(url)


# --------------------------------------------------------------------------- statuses


def test_410_is_source_gone(httpserver, fetcher: Fetcher) -> None:
    httpserver.expect_request("/gone").respond_with_data("bye", 410)
    with pytest.raises(SourceGone) as info:
        fetcher.fetch(httpserver.url_for("/gone"), private_addresses="always")
    assert info.value.status == 410


def test_429_retry_after_seconds(httpserver, fetcher: Fetcher) -> None:
    httpserver.expect_request("/rl").respond_with_data(
        "slow down", 429, headers={"Retry-After": "120"}
    )
    with pytest.raises(HTTPStatusError) as info:
        fetcher.fetch(httpserver.url_for("/rl"), private_addresses="always")
    assert (info.value.status, info.value.retry_after_s) == (429, 120.0)
    assert not isinstance(info.value, SourceGone)


def test_503_retry_after_http_date(httpserver, fetcher: Fetcher) -> None:
    retry_at = datetime.now(UTC) + timedelta(seconds=300)
    httpserver.expect_request("/busy").respond_with_data(
        "", 503, headers={"Retry-After": email.utils.format_datetime(retry_at, usegmt=True)}
    )
    with pytest.raises(HTTPStatusError) as info:
        fetcher.fetch(httpserver.url_for("/busy"), private_addresses="always")
    assert info.value.status == 503
    assert info.value.retry_after_s == pytest.approx(300, abs=3)


@pytest.mark.parametrize("status", [500, 404, 403])
def test_other_error_statuses(httpserver, fetcher: Fetcher, status: int) -> None:
    httpserver.expect_request("/err").respond_with_data("oops", status)
    with pytest.raises(HTTPStatusError, match=f"HTTP {status}") as info:
        fetcher.fetch(httpserver.url_for("/err"), private_addresses="always")
    assert info.value.status == status
    assert info.value.retry_after_s is None
    assert type(info.value) is HTTPStatusError


# --------------------------------------------------------------------------- time caps


def test_trickling_server_hits_total_timeout() -> None:
    stop = threading.Event()

    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000000")
        handler.end_headers()
        for _ in range(20):  # ~10 s, then an incomplete body: a broken fetcher fails, not hangs
            if stop.wait(0.5):
                return
            handler.wfile.write(b"<")

    settings = FetchSettings(timeout_s=1, read_timeout_s=1, total_timeout_s=2)
    try:
        with serve(trickle) as base, Fetcher(settings) as fetcher:
            started = time.monotonic()
            with pytest.raises(FetchTimeout, match="total timeout of 2 s"):
                fetcher.fetch(f"{base}/feed", private_addresses="always")
            elapsed_s = time.monotonic() - started
    finally:
        stop.set()
    # Each byte arrives well within the 1 s read timeout: only the wall clock can stop it.
    assert 1.9 <= elapsed_s < 3.2


def test_silent_server_hits_read_timeout() -> None:
    stop = threading.Event()

    def silent(handler: BaseHTTPRequestHandler) -> None:
        stop.wait(5)

    settings = FetchSettings(timeout_s=1, read_timeout_s=0.5, total_timeout_s=5)
    try:
        with serve(silent) as base, Fetcher(settings) as fetcher:
            started = time.monotonic()
            with pytest.raises(FetchTimeout, match="read timed out"):
                fetcher.fetch(f"{base}/feed", private_addresses="always")
            assert time.monotonic() - started < 2
    finally:
        stop.set()


# --------------------------------------------------------------------------- connection errors


def test_connection_refused_names_host_without_credentials() -> None:
    url = f"http://reader:s3cret@127.0.0.1:{closed_port()}/private/feed?token=abc123"
    with Fetcher(FAST) as fetcher, pytest.raises(FetchError) as info:
        fetcher.fetch(url, private_addresses="always")
    message = str(info.value)
    assert type(info.value) is FetchError
    assert "127.0.0.1" in message
    assert "s3cret" not in message and "reader" not in message and "abc123" not in message
    assert "\n" not in message


# --------------------------------------------------------------------------- per-host limit


def run_concurrently(fetcher: Fetcher, urls: list[str]) -> list[BaseException | None]:
    errors: list[BaseException | None] = [None] * len(urls)

    def work(i: int) -> None:
        try:
            fetcher.fetch(urls[i], private_addresses="always")
        except BaseException as exc:  # reported to the test thread
            errors[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return errors


@contextmanager
def concurrency_probe(delay_s: float = 0.3) -> Iterator[tuple[str, dict]]:
    lock = threading.Lock()
    state = {"active": 0, "max_active": 0}

    def slow(handler: BaseHTTPRequestHandler) -> None:
        with lock:
            state["active"] += 1
            state["max_active"] = max(state["max_active"], state["active"])
        try:
            time.sleep(delay_s)
        finally:
            # counted out before the response leaves: once the client has it, it may send
            # the next request, which must not find this one still counted in
            with lock:
                state["active"] -= 1
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(FEED)))
        handler.end_headers()
        handler.wfile.write(FEED)

    with serve(slow) as base:
        yield base, state


@pytest.mark.parametrize("limit", [1, 2])
def test_per_host_limit_caps_concurrent_requests(limit: int) -> None:
    with concurrency_probe() as (base, state), Fetcher(FetchSettings(per_host_limit=limit)) as f:
        errors = run_concurrently(f, [f"{base}/feed"] * 3)
    assert errors == [None, None, None]
    assert state["max_active"] == limit


def test_per_host_limit_does_not_serialise_other_hosts() -> None:
    with concurrency_probe() as (base, state), Fetcher(FetchSettings(per_host_limit=1)) as f:
        other_host = base.replace("127.0.0.1", "localhost")
        errors = run_concurrently(f, [f"{base}/feed", f"{other_host}/feed"])
    assert errors == [None, None]
    assert state["max_active"] == 2


# --------------------------------------------------------------------------- pure helpers

NOW_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Wed, 01 May 2024 12:05:00 GMT", 300.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past: retry now
        ("Wednesday, 01-May-24 12:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value, expected) -> None:
    assert parse_retry_after(value, NOW_AT) == expected


def test_parse_retry_after_needs_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_retry_after("120", datetime(2024, 5, 1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=600", 600.0),
        ("public, MAX-AGE=60, must-revalidate", 60.0),
        ('max-age="30"', 30.0),
        ("s-maxage=100", None),
        ("s-maxage=100, max-age=5", 5.0),
        ("no-cache", None),
        ("max-age=-1", None),
        ("max-age=abc", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_cache_control_max_age(value, expected) -> None:
    assert parse_cache_control_max_age(value) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": 0}, "timeout_s must be a positive"),
        ({"total_timeout_s": float("inf")}, "total_timeout_s must be a positive"),
        ({"max_redirects": -1}, "max_redirects must be >= 0"),
        ({"per_host_limit": 0}, "per_host_limit must be >= 1"),
        ({"user_agent": " "}, "user_agent must not be empty"),
    ],
)
def test_settings_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FetchSettings(**kwargs)
