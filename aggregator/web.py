"""The daemon's HTTP listener: today's stories, one page per cluster, feeds, metrics, health.

Read-only and server-side rendered (the digest's template engine, autoescaped; no
JavaScript), so it is safe to leave on loopback, its default. Pages are built per request
from the database, which any number of daemons share. ``route`` is a plain function from a
request to a :class:`Response`; the standard library's threaded server only carries bytes.

Long because it holds every page's route and the small threaded server that carries them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from sqlalchemy import func, or_, select, text

from . import __version__
from .config import Config, parse_duration_s
from .domain import AGGREGATOR_SOURCE_TYPES, LEVELS
from .errors import AggregatorError
from .export import CONTENT_TYPES, FeedMeta, render_export, served_url
from .render import render_template
from .store import Store
from .store.clusters import survivors
from .store.models import Cluster, ClusterMember, Correction, Item, Source
from .stories import (
    link_of,
    load_members,
    recent_stories,
    story_entry,
    thread_of,
)

log = logging.getLogger(__name__)

HTML = "text/html; charset=utf-8"
SECURITY_HEADERS = {
    # no scripts, no remote anything: feed text cannot turn into active content
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
DEFAULT_SINCE_S = 48 * 3600.0
MAX_SINCE_S = 36500 * 86400.0  # a century back is still a date
MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds (ids are INTEGER on PostgreSQL)
PAGE_LIMIT = 100
MAX_PAGE = 100_000  # ten million clusters back; beyond, a client is probing


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _page(status: int, body: str) -> Response:
    return Response(status, HTML, body.encode("utf-8"), dict(SECURITY_HEADERS))


def _error(status: int, message: str) -> Response:
    return _page(status, render_template("web_error.html.j2", status=status, message=message))


class WebApp:
    def __init__(
        self, store: Store, cfg: Config, *, health: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.health = health or (lambda: {})

    def route(self, method: str, target: str) -> Response:
        if method not in ("GET", "HEAD"):
            return Response(
                405, "text/plain; charset=utf-8", b"method not allowed\n", {"Allow": "GET, HEAD"}
            )
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        try:
            if path == "/":
                return self.index(query)
            if path.startswith("/cluster/"):
                return self.cluster(_cluster_id(path.removeprefix("/cluster/")))
            if path == "/feed.atom":
                return self.feed("atom", query)
            if path == "/feed.json":
                return self.feed("jsonfeed", query)
            if path == "/metrics":
                return self.metrics()
            if path == "/healthz":
                return self.healthz()
            return _error(404, "not found")
        except _BadRequest as exc:
            return _error(400, str(exc))
        except _NotFound as exc:
            return _error(404, str(exc))

    # ------------------------------------------------------------ pages

    def index(self, query: dict[str, list[str]]) -> Response:
        """One page of ``PAGE_LIMIT`` clusters by last change (``?page=2``: the next older
        ones), the most widely covered first within the page, as in the digests."""
        level = _level(query)
        since_s = _since_s(query, DEFAULT_SINCE_S)
        page = _page_number(query)
        now = datetime.now(UTC)
        since_at = now - timedelta(seconds=since_s)
        with self.store.sessions() as s:
            stories = recent_stories(
                s,
                level=level,
                since_at=since_at,
                limit=PAGE_LIMIT + 1,
                comments_since_at=since_at,
                offset=(page - 1) * PAGE_LIMIT,
            )
            n_items = s.scalar(select(func.count()).select_from(Item)) or 0
            n_sources = s.scalar(select(func.count()).select_from(Source)) or 0
        if page > 1 and not stories:
            return _error(404, f"no page {page}: fewer clusters changed in this period")
        more = len(stories) > PAGE_LIMIT
        stories = stories[:PAGE_LIMIT]
        stories.sort(key=lambda st: (-len(st.entry.outlets), -st.entry.published_at.timestamp()))
        body = render_template(
            "web_index.html.j2",
            stories=stories,
            level=level,
            since=_human(since_s),
            page=page,
            first=(page - 1) * PAGE_LIMIT + 1,
            older_url=_index_url(query, page + 1) if more else None,
            newer_url=_index_url(query, page - 1) if page > 1 else None,
            generated_at=now,
            n_items=n_items,
            n_sources=n_sources,
            version=__version__,
        )
        return _page(200, body)

    def cluster(self, cluster_id: int) -> Response:
        with self.store.sessions() as s:
            cluster = s.get(Cluster, cluster_id)
            if cluster is None:
                return _error(404, f"no cluster {cluster_id}")
            if cluster.merged_into_id is not None:
                target = survivors(s, [cluster.id])[cluster.id]
                return Response(
                    301, HTML, b"", {"Location": f"/cluster/{target}", **SECURITY_HEADERS}
                )
            view = _cluster_view(s, cluster)
        return _page(200, render_template("web_cluster.html.j2", **view))

    def feed(self, fmt: str, query: dict[str, list[str]]) -> Response:
        level = _level(query)
        since_s = _since_s(query, None)
        now = datetime.now(UTC)
        since_at = now - timedelta(seconds=since_s) if since_s is not None else None
        with self.store.sessions() as s:
            stories = recent_stories(
                s, level=level, since_at=since_at, limit=self.cfg.http.feed_limit
            )
        base = self.cfg.http.base_url
        since = (query.get("since") or [None])[-1]
        meta = FeedMeta(
            level=level,
            generated_at=now,
            base_url=base,
            self_url=served_url(base, fmt, level, since),
        )
        return Response(200, CONTENT_TYPES[fmt], render_export(fmt, stories, meta))

    def metrics(self) -> Response:
        from .metrics import CONTENT_TYPE, render_metrics

        return Response(200, CONTENT_TYPE, render_metrics(self.store))

    def healthz(self) -> Response:
        """Liveness: 200 while the daemon's scheduler runs. The database's state is reported
        but does not fail the check (a restart would not bring the database back)."""
        import json

        report: dict[str, Any] = {"status": "ok", "version": __version__}
        report.update(self.health())
        try:
            with self.store.sessions() as s:
                s.execute(text("SELECT 1"))
            report["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            report["database"] = f"unavailable: {type(exc).__name__}"
        status = 200 if report.get("status") == "ok" else 503
        body = json.dumps(report, sort_keys=True).encode() + b"\n"
        return Response(status, "application/json", body)


class _BadRequest(AggregatorError):
    pass


class _NotFound(AggregatorError):
    pass


def _cluster_id(ident: str) -> int:
    """A path's cluster id; one no database column can hold is a bad request, not a 503."""
    if not (ident.isascii() and ident.isdigit()):
        raise _NotFound("no such cluster")
    if len(ident.lstrip("0")) > len(str(MAX_ID)) or int(ident) > MAX_ID:
        raise _BadRequest(f"cluster id out of range (at most {MAX_ID})")
    return int(ident)


def _level(query: dict[str, list[str]]) -> str:
    level = (query.get("level") or ["story"])[-1]
    if level not in LEVELS:
        raise _BadRequest("level must be duplicate, story or thread")
    return level


def _since_s(query: dict[str, list[str]], default: float | None) -> float | None:
    raw = (query.get("since") or [None])[-1]
    if raw is None:
        return default
    try:
        since_s = parse_duration_s(raw)
    except ValueError as exc:
        raise _BadRequest(f"since: {exc}") from None
    if not since_s <= MAX_SINCE_S:  # also inf, from a very long number
        raise _BadRequest(f"since: at most {MAX_SINCE_S / 86400:g}d")
    return since_s


def _page_number(query: dict[str, list[str]]) -> int:
    raw = (query.get("page") or ["1"])[-1]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_PAGE)):
        raise _BadRequest(f"page must be a whole number from 1 to {MAX_PAGE}")
    page = int(raw)
    if not 1 <= page <= MAX_PAGE:
        raise _BadRequest(f"page must be a whole number from 1 to {MAX_PAGE}")
    return page


def _index_url(query: dict[str, list[str]], page: int) -> str:
    """The index with the same level and period, at ``page``."""
    params = {k: v[-1] for k, v in query.items() if k in ("level", "since")}
    if page > 1:
        params["page"] = str(page)
    return "/" + ("?" + urlencode(params) if params else "")


def _human(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:g} days" if hours >= 48 and hours % 24 == 0 else f"{hours:g} hours"


# ---------------------------------------------------------------- the cluster page

_METHODS = {
    "new": "started this cluster",
    "url": "same canonical URL as",
    "hash": "identical text to",
    "title": "aggregator entry with the same publisher and title as",
    "minhash": "near-identical text (shingle containment) to",
    "duplicate": "a copy of an article already in this story:",
    "terms": "reports the same event (weighted term similarity) as",
    "story": "its story belongs to this thread, through",
    "centroid": "its story's terms match (centroid cosine) the story of",
    "manual": "put here by a manual correction",
}
_FINER = {"story": "duplicate", "thread": "story"}
_COARSER = {"duplicate": "story", "story": "thread"}


def _cluster_view(s: Any, cluster: Cluster) -> dict[str, Any]:
    rows = s.execute(
        select(ClusterMember, Item, Source)
        .join(Item, Item.id == ClusterMember.item_id)
        .join(Source, Source.id == Item.source_id)
        .where(ClusterMember.level == cluster.level, ClusterMember.cluster_id == cluster.id)
        .order_by(ClusterMember.joined_at, Item.published_at, Item.id)
    ).all()
    ids = [item.id for _, item, _ in rows]
    titles = dict(
        s.execute(
            select(Item.id, Item.title).where(
                Item.id.in_({m.matched_item_id for m, _, _ in rows if m.matched_item_id})
            )
        ).all()
    )
    groups: dict[str, dict[int, int]] = {}
    for lv in filter(None, (_FINER.get(cluster.level), _COARSER.get(cluster.level))):
        groups[lv] = dict(
            s.execute(
                select(ClusterMember.item_id, ClusterMember.cluster_id).where(
                    ClusterMember.level == lv, ClusterMember.item_id.in_(ids)
                )
            ).all()
        )
    comments = dict(
        s.execute(
            select(Item.parent_item_id, func.count())
            .where(Item.kind == "comment", Item.parent_item_id.in_(ids))
            .group_by(Item.parent_item_id)
        ).all()
    )
    members = []
    for m, item, source in rows:
        members.append(
            {
                "item": item,
                "source": source.name,
                "publisher": item.publisher or source.name,
                "link": link_of(item, source) or item.url,
                "aggregator": source.type in AGGREGATOR_SOURCE_TYPES,
                "method": m.method,
                "explanation": _METHODS.get(m.method, m.method),
                "matched_item_id": m.matched_item_id,
                "matched_title": titles.get(m.matched_item_id),
                "score": m.score,
                "estimated_score": m.estimated_score,
                "bands": m.matched_bands or [],
                "joined_at": m.joined_at,
                "manual": m.manual,
                "finer": groups.get(_FINER.get(cluster.level, ""), {}).get(item.id),
                "comments": comments.get(item.id, 0),
            }
        )
    coarser_level = _COARSER.get(cluster.level)
    coarser = sorted(set(groups.get(coarser_level or "", {}).values()))
    corrections = list(
        s.scalars(
            select(Correction)
            .where(
                Correction.level == cluster.level,
                or_(Correction.item_id.in_(ids), Correction.other_item_id.in_(ids)),
            )
            .order_by(Correction.id)
        )
    )
    stories: list[dict[str, Any]] = []
    if cluster.level == "thread":
        story_ids = sorted(set(groups.get("story", {}).values()))
        by_story: dict[int, list[dict[str, Any]]] = {}
        for member in members:
            by_story.setdefault(member["finer"], []).append(member)
        for sid in story_ids:
            group = sorted(by_story.get(sid, []), key=lambda m: m["item"].published_at)
            stories.append({"id": sid, "first": group[0] if group else None, "size": len(group)})
    elif cluster.level == "story":
        thread_ids = thread_of(s, [cluster.id])
        coarser = [thread_ids[cluster.id]] if cluster.id in thread_ids else coarser
    group = load_members(s, cluster.level, [cluster.id]).get(cluster.id)
    headline = (
        story_entry(s, cluster.id, group, set(), False, None, cluster.level).headline
        if group
        else None
    )
    return {
        "cluster": cluster,
        "headline": headline,
        "members": members,
        "outlets": len({m["publisher"] for m in members}),
        "coarser_level": coarser_level,
        "coarser": coarser,
        "finer_level": _FINER.get(cluster.level),
        "stories": stories,
        "corrections": corrections,
        "generated_at": datetime.now(UTC),
        "version": __version__,
    }


# ---------------------------------------------------------------- the server


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What the listener holds at most, so that idle or slow clients cannot exhaust it."""

    workers: int = 8  # threads answering complete requests
    queued: int = 64  # complete requests waiting for a worker; beyond: 503 at once
    pending: int = 512  # connections still sending their request head; beyond: oldest dropped
    head_timeout_s: float = 15.0  # to send the whole request head
    io_timeout_s: float = 15.0  # per socket operation while a worker answers
    max_head_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("workers", "queued", "pending", "max_head_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("head_timeout_s", "io_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


class _Handler(BaseHTTPRequestHandler):
    """One request whose head the listener has already read (``head``); HTTP/1.0, so the
    connection closes after the response."""

    app: WebApp  # set on the subclass made per server
    server_version = f"newsdedup/{__version__}"
    sys_version = ""

    def __init__(self, sock: socket.socket, address: Any, server: Any, head: bytes) -> None:
        self._head = head
        super().__init__(sock, address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = io.BytesIO(self._head)

    def _serve(self, head: bool) -> None:
        try:
            resp = self.app.route(self.command, self.path)
        except Exception as exc:  # noqa: BLE001 - one request fails, the listener stays up
            log.error("web: %s %s failed: %s: %s", self.command, self.path, type(exc).__name__, exc)
            log.debug("web: %s %s failed", self.command, self.path, exc_info=True)
            resp = Response(503, "text/plain; charset=utf-8", b"temporarily unavailable\n")
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("Cache-Control", "no-cache")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(resp.body)

    def do_GET(self) -> None:  # noqa: N802 - the standard library's naming
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def do_POST(self) -> None:  # noqa: N802
        self._serve(head=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("web: %s " + format, self.address_string(), *args)


@dataclass(slots=True)
class _Pending:
    address: Any
    deadline: float
    head: bytearray = field(default_factory=bytearray)


def _head_complete(data: bytes | bytearray) -> bool:
    return b"\r\n\r\n" in data or b"\n\n" in data


def _plain(status: int, reason: str, text: str) -> bytes:
    body = f"{text}\n".encode()
    return (
        f"HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


class WebServer:
    """The listener: one thread reads request heads from every connection without blocking,
    a bounded pool answers complete requests. A client that connects and sends nothing, or
    half a request, costs a socket until ``head_timeout_s``, never a thread. ``port`` is the
    bound one (config may say 0)."""

    def __init__(
        self, app: WebApp, host: str, port: int, limits: ServerLimits | None = None
    ) -> None:
        self.limits = limits or ServerLimits()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=128)
        self._listener.setblocking(False)
        self.host, self.port = host, self._listener.getsockname()[1]
        self._handler = type(
            "Handler", (_Handler,), {"app": app, "timeout": self.limits.io_timeout_s}
        )
        self._pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="web-worker")
        self._slots = threading.BoundedSemaphore(self.limits.workers + self.limits.queued)
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._loop, name="web", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        log.info("web pages, feeds and metrics on %s", self.url)

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        else:
            self._listener.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._wake_r.close()
        self._wake_w.close()

    # ------------------------------------------------------------ the listener thread

    def _loop(self) -> None:
        pending: dict[socket.socket, _Pending] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            try:
                while not self._stopping.is_set():
                    now = time.monotonic()
                    wait_s = min((p.deadline for p in pending.values()), default=now + 1) - now
                    for key, _ in sel.select(max(0.0, min(wait_s, 1.0))):
                        if key.fileobj is self._listener:
                            self._accept(sel, pending)
                        elif key.fileobj is not self._wake_r:
                            self._read(sel, pending, key.fileobj)  # type: ignore[arg-type]
                    now = time.monotonic()
                    for conn in [c for c, p in pending.items() if p.deadline <= now]:
                        log.debug("web: %s sent no complete request in time", pending[conn].address)
                        self._drop(sel, pending, conn)
            except Exception as exc:  # noqa: BLE001 - reported; the daemon keeps running
                log.error("web: listener stopped: %s: %s", type(exc).__name__, exc)
            finally:
                for conn in list(pending):
                    self._drop(sel, pending, conn)
                self._listener.close()

    def _accept(self, sel: selectors.BaseSelector, pending: dict[socket.socket, _Pending]) -> None:
        while True:
            try:
                conn, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, a reset before accept
                log.warning("web: cannot accept a connection: %s", exc)
                return
            if len(pending) >= self.limits.pending:
                oldest = min(pending, key=lambda c: pending[c].deadline)
                log.debug("web: too many unfinished requests, dropping %s", pending[oldest].address)
                self._drop(sel, pending, oldest)
            conn.setblocking(False)
            pending[conn] = _Pending(address, time.monotonic() + self.limits.head_timeout_s)
            sel.register(conn, selectors.EVENT_READ)

    def _read(
        self,
        sel: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        conn: socket.socket,
    ) -> None:
        state = pending[conn]
        try:
            data = conn.recv(8192)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._drop(sel, pending, conn)
            return
        state.head += data
        if _head_complete(state.head):
            sel.unregister(conn)
            del pending[conn]
            self._dispatch(conn, state.address, bytes(state.head))
        elif len(state.head) > self.limits.max_head_bytes:
            sel.unregister(conn)
            del pending[conn]
            self._refuse(conn, _plain(431, "Request Header Fields Too Large", "request too large"))

    def _drop(
        self,
        sel: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        conn: socket.socket,
    ) -> None:
        sel.unregister(conn)
        del pending[conn]
        conn.close()

    def _dispatch(self, conn: socket.socket, address: Any, head: bytes) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("web: all %d workers busy, answering 503", self.limits.workers)
            self._refuse(conn, _plain(503, "Service Unavailable", "busy, try again"))
            return
        conn.setblocking(True)
        try:
            self._pool.submit(self._answer, conn, address, head)
        except RuntimeError:  # shutting down
            self._slots.release()
            conn.close()

    def _refuse(self, conn: socket.socket, response: bytes) -> None:
        """A short answer written without a worker: the send buffer takes it at once."""
        with contextlib.suppress(OSError):
            conn.send(response)
        conn.close()

    def _answer(self, conn: socket.socket, address: Any, head: bytes) -> None:
        try:
            self._handler(conn, address, self, head)
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            log.debug("web: %s went away: %s", address, type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - one connection fails, the listener stays up
            log.error("web: answering %s failed: %s: %s", address, type(exc).__name__, exc)
        finally:
            self._slots.release()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            conn.close()
