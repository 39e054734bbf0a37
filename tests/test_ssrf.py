"""URLs found in feed content must not reach the local network (issue 19, point 2).

An "internal" service listens on 127.0.0.1 (and ::1) on its own port; a WordPress feed on
pytest-httpserver points its comment feeds at it through every spelling we know. The
guard checks the addresses a host resolves to at connect time, so the spelling does not
matter; these tests fail if any request reaches the internal service.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import pytest
from helpers import make_config, poll, sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from aggregator import ingest
from aggregator.config import Config
from aggregator.coordination import FeedJob
from aggregator.errors import AddressRefused, FetchError
from aggregator.fetcher import Fetcher, FetchSettings, non_public_reason, origin_of
from aggregator.ingest import MAX_COMMENT_FEEDS_PER_DOCUMENT, admit_comment_feeds
from aggregator.poller import private_access
from aggregator.store import Store, repo
from aggregator.store.models import Feed, Item

FAST = FetchSettings(timeout_s=2.0, read_timeout_s=2.0, total_timeout_s=5.0)
SECRET = "INTERNAL SECRET"


class InternalService:
    """A loopback HTTP service (IPv4 and, where available, IPv6 on the same port) that
    records every request and answers with a comment feed that must never be stored."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.requests.append(f"{self.headers.get('Host')} {self.path}")
                date = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
                body = (
                    '<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
                    f"<item><title>{SECRET}</title><guid>http://internal/?p=1#comment-9</guid>"
                    f"<pubDate>{date}</pubDate><description>{SECRET}</description></item>"
                    "</channel></rss>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler)]
        self.port = self.servers[0].server_address[1]

        class V6Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        with contextlib.suppress(OSError):  # without IPv6 the [::1] variants are still refused
            self.servers.append(V6Server(("::1", self.port), Handler))
        for server in self.servers:
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def internal() -> Iterator[InternalService]:
    service = InternalService()
    yield service
    service.close()


@pytest.fixture(scope="module")
def guarded() -> Iterator[Fetcher]:
    with Fetcher(FAST) as fetcher:
        yield fetcher


def sync_and_poll(store: Store, cfg: Config):
    sync(store, cfg)
    return poll(store, cfg)


def rfc822_now() -> str:
    return datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def wordpress_feed(items: list[str]) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
        'xmlns:wfw="http://wellformedweb.org/CommentAPI/"><channel><title>Blog</title>'
        + "".join(items)
        + "</channel></rss>"
    )


def item(n: int, base: str, *, link: str | None = None, extra: str = "") -> str:
    return (
        f"<item><title>Artikel Nummer {n} über Thema {n * 7919 % 1000}</title>"
        f'<link>{link or f"{base}/p/{n}/"}</link><guid isPermaLink="false">{base}/?p={n}</guid>'
        f"<pubDate>{rfc822_now()}</pubDate><description>Text {n} zu Thema {n}.</description>"
        f"{extra}</item>"
    )


# ------------------------------------------------------------------ the 17 variants


def variants(base: str, port: int) -> list[tuple[str, dict[str, str]]]:
    """(name, item fields) per way of pointing a comment feed at the internal service."""
    wfw = {
        "loopback": f"http://127.0.0.1:{port}/",
        "localhost": f"http://localhost:{port}/",
        "LOCALHOST": f"http://LOCALHOST:{port}/",
        "ipv6 loopback": f"http://[::1]:{port}/",
        "ipv6 loopback long": f"http://[0:0:0:0:0:0:0:1]:{port}/",
        "ipv4-mapped ipv6": f"http://[::ffff:127.0.0.1]:{port}/",
        "unspecified": f"http://0.0.0.0:{port}/",
        "decimal": f"http://2130706433:{port}/",
        "hex": f"http://0x7f000001:{port}/",
        "short": f"http://127.1:{port}/",
        "octal dotted": f"http://0177.0.0.1:{port}/",
        "octal": f"http://017700000001:{port}/",
        "userinfo": f"http://evil@127.0.0.1:{port}/",
        "scheme-relative": f"//127.0.0.1:{port}/relative/",
        "redirect from the feed's host": f"{base}/redirect",
    }
    out = [(name, {"wfw": url}) for name, url in wfw.items()]
    out.append(("item link + /feed/", {"link": f"http://localhost:{port}/artikel/"}))
    out.append(
        (
            "<comments> and link",
            {
                "link": f"http://127.0.0.1:{port}/post/",
                "comments": f"http://127.0.0.1:{port}/post/#comments",
            },
        )
    )
    return out


def test_no_spelling_of_the_internal_service_is_reached(
    store: Store, httpserver: HTTPServer, internal: InternalService
) -> None:
    base = httpserver.url_for("").rstrip("/")
    cases = variants(base, internal.port)
    assert len(cases) == 17
    items = []
    for n, (_name, fields) in enumerate(cases):
        extra = ""
        if "wfw" in fields:
            extra += f"<wfw:commentRss>{fields['wfw']}</wfw:commentRss>"
        if "comments" in fields:
            extra += f"<comments>{fields['comments']}</comments>"
        items.append(item(n, base, link=fields.get("link"), extra=extra))
    # a comment feed on the source's own scheme, host and port: allowed, and polled
    ok = len(cases)
    items.append(item(ok, base, extra=f"<wfw:commentRss>{base}/ok/feed/</wfw:commentRss>"))
    httpserver.expect_request("/feed/").respond_with_data(
        wordpress_feed(items), content_type="application/rss+xml"
    )
    httpserver.expect_request("/redirect").respond_with_data(
        "", status=302, headers={"Location": f"http://127.0.0.1:{internal.port}/"}
    )
    httpserver.expect_request("/ok/feed/").respond_with_data(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>c</title>'
        f'<item><title>Von: Anna</title><guid isPermaLink="false">{base}/?p={ok}#comment-1</guid>'
        f"<pubDate>{rfc822_now()}</pubDate><description>Gut.</description></item>"
        "</channel></rss>",
        content_type="application/rss+xml",
    )
    cfg = make_config(
        [
            {
                "name": "blog",
                "type": "wordpress",
                "url": f"{base}/feed/",
                "comments": True,
                "comments_interval": "1s",
            }
        ],
        allow_private_addresses=True,  # the feed itself is on loopback
    )
    before = len(internal.requests)

    first = sync_and_poll(store, cfg)
    assert [(o.result, o.items_new) for o in first] == [("ok", len(cases) + 1)]
    with store.session() as s:
        comment_feeds = s.scalar(
            select(func.count()).select_from(Feed).where(Feed.kind == "comments")
        )
    assert comment_feeds == len(cases) + 1

    second = {o.url: o for o in poll(store, cfg)}
    assert internal.requests[before:] == []
    assert second[f"{base}/ok/feed/"].items_new == 1
    with store.session() as s:
        rows = s.scalars(select(Feed).where(Feed.kind == "comments")).all()
        stored = s.scalars(select(Item.title)).all()
        articles = s.scalar(select(func.count()).select_from(Item).where(Item.kind == "article"))
    assert articles == len(cases) + 1
    assert not [t for t in stored if SECRET in t]
    errors = {
        r.url: (r.last_result, r.last_error or "") for r in rows if r.url != f"{base}/ok/feed/"
    }
    assert len(errors) == len(cases)
    for url, (result, error) in errors.items():
        if "0177.0.0.1" in url:  # not even a URL to httpx
            assert result == "fetch" and "invalid URL" in error, (url, error)
        else:
            assert result == "refused" and "refusing to connect to" in error, (url, error)
    redirected = errors[f"{base}/redirect"][1]
    assert "127.0.0.1" in redirected and "only on its own host" in redirected

    # the internal service was live all along: a fetch allowed to go there gets there
    with Fetcher(FAST) as fetcher:
        fetcher.fetch(f"http://127.0.0.1:{internal.port}/", private_addresses="always")
    assert len(internal.requests) == before + 1


def test_a_configured_source_on_loopback_needs_the_setting(
    store: Store, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/feed/").respond_with_data(
        wordpress_feed([item(1, "http://x.example")]), content_type="application/rss+xml"
    )
    url = httpserver.url_for("/feed/")
    cfg = make_config([{"name": "local", "type": "rss", "url": url}], allow_private_addresses=False)
    assert cfg.polling.allow_private_addresses is False
    (outcome,) = sync_and_poll(store, cfg)
    assert outcome.result == "refused"
    assert "refusing to connect to" in (outcome.error or "")
    assert "polling.allow_private_addresses: true" in (outcome.error or "")
    assert httpserver.log == []
    with store.session() as s:
        row = s.scalars(select(Feed)).one()
        assert row.error_count == 1 and row.last_result == "refused"
        assert "(loopback)" in (row.last_error or "")
        assert repo.recent_errors(s)  # what `aggregator status` shows

    allowed = make_config(
        [{"name": "local", "type": "rss", "url": url}], allow_private_addresses=True
    )
    (outcome,) = poll(store, allowed)
    assert (outcome.result, outcome.items_new) == ("ok", 1)


def test_one_document_registers_at_most_the_cap_of_comment_feeds(
    store: Store,
    httpserver: HTTPServer,
    internal: InternalService,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = httpserver.url_for("").rstrip("/")
    items = [item(n, base, link=f"http://localhost:{internal.port}/p/{n}/") for n in range(300)]
    httpserver.expect_request("/feed/").respond_with_data(
        wordpress_feed(items), content_type="application/rss+xml"
    )
    cfg = make_config(
        [{"name": "wp", "type": "wordpress", "url": f"{base}/feed/", "comments": True}],
        allow_private_addresses=True,
    )
    before = len(internal.requests)
    with caplog.at_level(logging.WARNING, logger="aggregator.ingest"):
        (outcome,) = sync_and_poll(store, cfg)
    assert (outcome.result, outcome.items_new) == ("ok", 300)
    with store.session() as s:
        comment_feeds = s.scalar(
            select(func.count()).select_from(Feed).where(Feed.kind == "comments")
        )
    assert comment_feeds == MAX_COMMENT_FEEDS_PER_DOCUMENT
    skipped = [r for r in caplog.records if "over the caps" in r.getMessage()]
    assert len(skipped) == 1 and "skipped 250" in skipped[0].getMessage()

    outcomes = poll(store, cfg)
    refused = [o for o in outcomes if o.result == "refused"]
    assert len(refused) == MAX_COMMENT_FEEDS_PER_DOCUMENT
    assert internal.requests[before:] == []

    # the next document's comment feeds fill the host up to its cap, and no further
    monkeypatch.setattr(ingest, "MAX_COMMENT_FEEDS_PER_HOST", 70)
    items = [
        item(n, base, link=f"http://localhost:{internal.port}/p/{n}/") for n in range(300, 600)
    ]
    httpserver.clear()
    httpserver.expect_request("/feed/").respond_with_data(
        wordpress_feed(items), content_type="application/rss+xml"
    )
    outcomes = poll(store, cfg)
    assert [o.items_new for o in outcomes if o.url == f"{base}/feed/"] == [300]
    with store.session() as s:
        comment_feeds = s.scalar(
            select(func.count()).select_from(Feed).where(Feed.kind == "comments")
        )
    assert comment_feeds == 70
    assert internal.requests[before:] == []


def test_allow_private_addresses_is_a_checked_boolean(tmp_path) -> None:
    from aggregator.config import load_config
    from aggregator.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_text("polling: {allow_private_addresses: maybe}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="polling.allow_private_addresses"):
        load_config(path, env={})
    path.write_text("polling: {allow_private_addresses: true}\n", encoding="utf-8")
    assert load_config(path, env={}).polling.allow_private_addresses is True
    assert Config().polling.allow_private_addresses is False


def test_comment_feed_caps_per_document_and_per_host() -> None:
    urls = [f"http://a.example/p/{n}/feed/" for n in range(5)] + [
        f"http://B.example:80/p/{n}/feed/" for n in range(5)
    ]
    assert admit_comment_feeds(urls, {}, per_document=3, per_host=10) == urls[:3]
    assert admit_comment_feeds(urls, {"a.example": 9}, per_document=50, per_host=10) == (
        urls[:1] + urls[5:]
    )
    # b.example is one host however it is spelled
    assert admit_comment_feeds(urls, {"b.example": 10}, per_document=50, per_host=10) == urls[:5]
    assert admit_comment_feeds(urls, {}, per_document=0, per_host=10) == []


def test_private_access_rule() -> None:
    cfg = make_config(
        [
            {"name": "wp", "type": "wordpress", "url": "http://blog.lan:8080/feed/"},
            {"name": "rss", "type": "rss", "url": "http://10.0.0.2/rss"},
        ],
        allow_private_addresses=True,
    )
    off = make_config(cfg.model_dump()["sources"], allow_private_addresses=False)

    def rule(c: Config, url: str, kind: str = "comments", source: str = "wp") -> str:
        job = FeedJob(
            feed_id=1,
            url=url,
            kind=kind,
            etag=None,
            last_modified=None,
            body_hash=None,
            error_count=0,
            source_id=1,
            source_name=source,
            source_type="wordpress",
            article_item_id=None,
        )
        return private_access(c, job)

    assert rule(cfg, "http://10.0.0.2/rss", "main", "rss") == "always"
    assert rule(off, "http://10.0.0.2/rss", "main", "rss") == "never"
    assert rule(cfg, "http://blog.lan:8080/p/1/feed/") == "same_origin"
    assert rule(cfg, "http://user@BLOG.lan:8080/p/1/feed/") == "same_origin"
    assert rule(off, "http://blog.lan:8080/p/1/feed/") == "never"
    assert rule(cfg, "http://blog.lan/p/1/feed/") == "never"  # another port
    assert rule(cfg, "https://blog.lan:8080/p/1/feed/") == "never"  # another scheme
    assert rule(cfg, "http://blog.lan.:8080/p/1/feed/") == "same_origin"
    assert rule(cfg, "http://127.0.0.1:8080/p/1/feed/") == "never"
    assert rule(cfg, "http://blog.lan:8080/p/1/feed/", source="gone") == "never"


def test_origin_of() -> None:
    assert origin_of("http://example.org/x") == ("http", "example.org", 80)
    assert origin_of("HTTPS://u:p@Example.ORG:443/x") == ("https", "example.org", 443)
    assert origin_of("http://[::1]:8080/") == ("http", "::1", 8080)
    assert origin_of("not a url") is None
    assert origin_of("ftp://example.org/") is None


# ------------------------------------------------------------------ the address classifier


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("100.64.0.1", "shared address space"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "this network"),
        ("192.0.0.8", "IETF protocol assignment"),
        ("192.0.2.1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fe80::1%1", "link-local"),
        ("fec0::1", "site-local"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("2001::1", "IETF protocol assignment"),  # Teredo
        ("::127.0.0.1", "IPv4-compatible (deprecated)"),
        ("::ffff:127.0.0.1", "loopback, embedded in ::ffff:7f00:1"),
        ("::ffff:10.0.0.1", "private, embedded in ::ffff:a00:1"),
        ("64:ff9b::7f00:1", "loopback, embedded in 64:ff9b::7f00:1"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("2002:7f00:1::", "loopback, embedded in 2002:7f00:1::"),
        ("2002:c0a8:101::1", "private, embedded in 2002:c0a8:101::1"),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("93.184.215.14", None),
        ("172.32.0.1", None),
        ("100.128.0.1", None),
        ("2606:4700:4700::1111", None),
        ("2a00:1450:4001:80b::200e", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("2002:808:808::1", None),
    ],
)
def test_non_public_reason(address: str, reason: str | None) -> None:
    assert non_public_reason(address) == reason


NON_PUBLIC_V4 = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
]


def _network_bounds(cidr: str) -> tuple[int, int]:
    import ipaddress

    net = ipaddress.IPv4Network(cidr)
    return int(net.network_address), int(net.broadcast_address)


@st.composite
def non_public_spellings(draw: st.DrawFn) -> str:
    low, high = _network_bounds(draw(st.sampled_from(NON_PUBLIC_V4)))
    n = draw(st.integers(low, high))
    a, b, c, d = n.to_bytes(4, "big")
    forms = [
        f"{a}.{b}.{c}.{d}",
        str(n),
        f"0x{n:x}",
        f"0x{n:08X}",
        f"0{n:o}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"0x{a:x}.{b}.{c}.{d}",
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
        f"[::ffff:{a}.{b}.{c}.{d}]",
        f"[::ffff:{(a << 8) | b:x}:{(c << 8) | d:x}]",
        f"[64:ff9b::{a}.{b}.{c}.{d}]",
    ]
    return draw(st.sampled_from(forms))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spelling=non_public_spellings())
def test_no_spelling_of_a_non_public_ipv4_address_passes(
    spelling: str, guarded: Fetcher, internal: InternalService
) -> None:
    before = len(internal.requests)
    with pytest.raises(FetchError) as info:
        guarded.fetch(f"http://{spelling}:{internal.port}/")
    error = info.value
    assert isinstance(error, AddressRefused) or "invalid URL" in str(error), str(error)
    assert len(internal.requests) == before


# ------------------------------------------------------------------ names and rebinding


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """Names under ``.test`` resolve to the next answer in the list (the last one sticks)."""
    answers: dict[str, list[list[str]]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".test"):
            queue = answers[host]
            addresses = queue.pop(0) if len(queue) > 1 else queue[0]
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port, 0, 0) if ":" in a else (a, port),
                )
                for a in addresses
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_a_name_resolving_to_a_private_address_is_refused(
    fake_dns: dict, guarded: Fetcher, internal: InternalService
) -> None:
    fake_dns["intranet.test"] = [["10.0.0.5"]]
    fake_dns["mixed.test"] = [["1.1.1.1", "127.0.0.1"]]
    fake_dns["v6.test"] = [["fd00::5"]]
    for host, reason in [
        ("intranet.test", "10.0.0.5 (private)"),
        ("mixed.test", "127.0.0.1 (loopback)"),
        ("v6.test", "fd00::5 (unique local)"),
    ]:
        with pytest.raises(AddressRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
            guarded.fetch(f"http://{host}:{internal.port}/feed")


def test_the_socket_goes_to_the_address_that_was_checked(
    fake_dns: dict, monkeypatch: pytest.MonkeyPatch, internal: InternalService
) -> None:
    # DNS rebinding: public when checked, loopback on any later lookup
    fake_dns["rebind.test"] = [["1.1.1.1"], ["127.0.0.1"]]
    dialled: list[str] = []

    def connect_tcp(self, host, port, *args, **kwargs):
        dialled.append(host)
        raise httpcore.ConnectError("not dialling out from a test")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    with Fetcher(FAST) as fetcher, pytest.raises(FetchError, match="cannot connect"):
        fetcher.fetch(f"http://rebind.test:{internal.port}/")
    assert dialled == ["1.1.1.1"]


def test_environment_proxies_still_apply_and_are_screened(
    fake_dns: dict, monkeypatch: pytest.MonkeyPatch, internal: InternalService
) -> None:
    proxy = InternalService()  # a private proxy configured by the operator is fine
    try:
        for name in (
            "NO_PROXY",
            "no_proxy",
            "ALL_PROXY",
            "all_proxy",
            "HTTPS_PROXY",
            "https_proxy",
        ):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        fake_dns["public.test"] = [["1.1.1.1"]]
        fake_dns["private.test"] = [["192.168.0.10"]]
        with Fetcher(FAST) as fetcher:
            assert fetcher.fetch("http://public.test/feed").status == 200
            with pytest.raises(AddressRefused, match="192.168.0.10"):
                fetcher.fetch("http://private.test/feed")
        assert proxy.requests == ["public.test http://public.test/feed"]
    finally:
        proxy.close()
