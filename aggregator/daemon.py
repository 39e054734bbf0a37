"""``aggregator run``: APScheduler drives the rounds; the database says what is due.

One interval job (``coalesce``, ``max_instances=1``) asks the database for due feeds and
refreshes them on a worker pool. SIGTERM/SIGINT stop new fetches, let the running ones finish
(saying how many), and exit cleanly; a second signal quits at once: every feed and item stored
so far is committed, and the feeds abandoned mid-fetch are leased to a dead process, which the
next daemon sees and takes over. A database outage costs a logged line and a retry next tick.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as APSThreadPool
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .config import Config
from .coordination import release_clustering, worker_id
from .dedup.service import DedupService, settings_from
from .errors import AggregatorError, ConfigError, StoreError
from .fetcher import Fetcher
from .poller import fetch_settings, poll_round
from .store import Store, repo
from .store.models import Feed, Source
from .web import WebApp, WebServer

log = logging.getLogger(__name__)

CLUSTERING_LEASE_MIN_S = 300.0
EXIT_INTERRUPTED = 130


class CountingFetcher:
    """A fetcher that knows how many fetches are in flight, so stopping can say what it
    waits for."""

    def __init__(self, inner: Fetcher) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def fetch(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._in_flight += 1
        try:
            return self.inner.fetch(*args, **kwargs)
        finally:
            with self._lock:
                self._in_flight -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def stopping_message(in_flight: int) -> str:
    if not in_flight:
        return "stopping"
    return (
        f"stopping: waiting for {plural(in_flight, 'fetch', 'fetches')} (Ctrl-C again to quit now)"
    )


def start_web(store: Store, cfg: Config, *, health: Callable[[], dict[str, object]]) -> WebServer:
    """The HTTP listener, or a clear error naming the address (a taken port is a config
    problem to fix, not something to run without)."""
    host, port = cfg.http.host, cfg.http.port
    try:
        server = WebServer(WebApp(store, cfg, health=health), host, port)
    except OSError as exc:
        raise AggregatorError(
            f"http: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    server.start()
    return server


class Daemon:
    def __init__(self, store: Store, cfg: Config, *, fetcher: Fetcher | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self.fetcher = CountingFetcher(fetcher or Fetcher(fetch_settings(cfg)))
        self.owner = worker_id()
        # Renewed at each of this daemon's clustering turns (one per poll round): it lapses
        # only when the daemon died or hung, then another takes over (one reload).
        self.clustering_lease_s = max(CLUSTERING_LEASE_MIN_S, 5.0 * cfg.polling.tick)
        self.stopping = threading.Event()
        self.rounds = 0
        self.last_round_at: datetime | None = None
        self.web: WebServer | None = None
        self.dedup = self._new_dedup()
        self._dedup_lock = threading.Lock()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": APSThreadPool(3)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def poll_tick(self) -> None:
        """One round, then clustering; never raises (the scheduler would only log it less
        clearly). Only a database outage skips the clustering: whatever the round stored is
        clustered even if the round itself failed."""
        if self.stopping.is_set():
            return
        try:
            self.resync_sources()
            outcomes = poll_round(
                self.store,
                self.cfg,
                self.fetcher,  # type: ignore[arg-type]
                owner=self.owner,
                should_stop=self.stopping.is_set,
            )
        except StoreError as exc:
            log.error("database unavailable, will retry next round: %s", exc)
            return
        except Exception:  # noqa: BLE001 - keep the daemon alive; the traceback is logged
            log.exception("poll round failed")
            outcomes = []
        else:
            self.rounds += 1
            self.last_round_at = datetime.now(UTC)
        self.dedup_tick()
        if outcomes:
            new = sum(o.items_new for o in outcomes)
            failed = sum(1 for o in outcomes if o.failed)
            log.info(
                "polled %s: %s, %d failed",
                plural(len(outcomes), "feed"),
                plural(new, "new item"),
                failed,
            )

    def resync_sources(self) -> None:
        """Put the configured sources back when the database lost them (dropped and recreated
        under the running daemon): one indexed query per tick when nothing is missing."""
        names = {src.name for src in self.cfg.sources}
        if not names:
            return
        try:
            with self.store.session() as s:
                present = set(
                    s.scalars(
                        select(Source.name)
                        .join(Feed, (Feed.source_id == Source.id) & (Feed.kind == "main"))
                        .where(Source.name.in_(names))
                    )
                )
                if present >= names:
                    return
                missing = sorted(names - present)
                log.warning(
                    "%d configured sources missing from the database, adding them again: %s",
                    len(missing),
                    ", ".join(missing[:5]) + (", …" if len(missing) > 5 else ""),
                )
                repo.sync_sources(s, self.cfg.sources, datetime.now(UTC))
        except IntegrityError:  # another daemon added them at the same moment
            log.info("configured sources were re-added by another process")

    def dedup_tick(self) -> None:
        """Cluster what was stored. On failure the in-memory engine may be ahead of the
        database, so it is dropped and reloaded from the database next time."""
        try:
            with self._dedup_lock:  # the poll job and digest jobs share one engine
                placed = self.dedup.process_pending(
                    wait=False, worker=self.owner, lease_s=self.clustering_lease_s
                )
        except StoreError as exc:
            log.error("database unavailable while clustering, will retry: %s", exc)
            self.dedup = self._new_dedup()
            return
        except Exception:  # noqa: BLE001 - keep the daemon alive; the traceback is logged
            log.exception("clustering failed")
            self.dedup = self._new_dedup()
            return
        if placed:
            log.info("clustered %s", plural(placed, "new item"))

    def _new_dedup(self) -> DedupService:
        return DedupService(self.store, settings_from(self.cfg.dedup))

    def digest_tick(self, name: str) -> None:
        """A digest's scheduled time: record the slot, then send (retries follow)."""
        from .digest import last_slot, run_digest

        # the scheduled time, not the clock: every daemon names the same slot
        slot = last_slot(self.cfg.digest(name), datetime.now(UTC))
        if slot is None:
            return
        try:
            self.dedup_tick()
            run_digest(self.store, self.cfg, name, period_end_at=slot)
        except Exception as exc:  # noqa: BLE001 - one line; the retry job tries again
            log.error("digest %s: %s", name, exc)

    def delivery_tick(self) -> None:
        """Retry recorded digests that are not sent yet (SMTP was down, a process died)."""
        from .digest import deliver_pending

        try:
            deliver_pending(self.store, self.cfg)
        except Exception as exc:  # noqa: BLE001
            log.error("digest delivery: %s", exc)

    def retention_tick(self) -> None:
        """Prune what ``retention`` lets go, in short batches; SQLite then ``PRAGMA optimize``."""
        from .retention import optimize, run_retention

        started = time.monotonic()
        try:
            pruned = run_retention(
                self.store, self.cfg.retention, datetime.now(UTC), should_stop=self.stopping.is_set
            )
            optimize(self.store)
        except Exception as exc:  # noqa: BLE001 - one line; the next run tries again
            log.error("retention: %s", exc)
            return
        if pruned:
            log.info(
                "retention: pruned %d poll_log rows, %d items, %d clusters, %d digest runs "
                "in %.2f s",
                pruned.poll_log,
                pruned.items,
                pruned.clusters,
                pruned.digest_runs,
                time.monotonic() - started,
            )

    def health(self) -> dict[str, object]:
        running = self.scheduler.running and not self.stopping.is_set()
        return {
            "status": "ok" if running else "stopping",
            "worker": self.owner,
            "poll_rounds": self.rounds,
            "last_round_at": self.last_round_at.isoformat() if self.last_round_at else None,
        }

    def start(self) -> None:
        from .digest import trigger

        if self.cfg.http.enabled:
            self.web = start_web(self.store, self.cfg, health=self.health)

        self._check_digest_sources()
        for digest in self.cfg.digests:
            self.scheduler.add_job(
                self.digest_tick, trigger(digest), args=[digest.name], id=f"digest:{digest.name}"
            )
        self.scheduler.add_job(
            self.delivery_tick, IntervalTrigger(seconds=60, timezone=UTC), id="digest-delivery"
        )
        self.scheduler.add_job(
            self.retention_tick,
            IntervalTrigger(seconds=self.cfg.retention.interval, timezone=UTC),
            id="retention",
        )
        tick_s = self.cfg.polling.tick
        self.scheduler.add_job(
            self.poll_tick,
            IntervalTrigger(seconds=tick_s, timezone=UTC),
            id="poll",
            next_run_time=datetime.now(UTC) + timedelta(milliseconds=100),
        )
        self.scheduler.start()
        n_sources, n_feeds = self._polled_counts()
        log.info(
            "daemon %s started: %s with %s to poll, tick %ss",
            self.owner,
            plural(n_sources, "source"),
            plural(n_feeds, "feed"),
            tick_s,
        )

    def _check_digest_sources(self) -> None:
        """Say at start-up, not only at the first send, when a digest names a source that is
        neither configured nor imported."""
        for digest in self.cfg.digests:
            try:
                with self.store.session() as s:
                    repo.check_digest_sources(s, digest)
            except (ConfigError, StoreError) as exc:
                log.warning("%s", exc)

    def _polled_counts(self) -> tuple[int, int]:
        """Enabled sources and feeds in the database (OPML imports and comment feeds too),
        not only those of the config."""
        try:
            with self.store.session() as s:
                n_feeds = s.scalar(select(func.count()).select_from(Feed).where(Feed.enabled)) or 0
                n_sources = (
                    s.scalar(select(func.count(func.distinct(Feed.source_id))).where(Feed.enabled))
                    or 0
                )
        except StoreError:
            return len(self.cfg.sources), len(self.cfg.sources)
        return int(n_sources), int(n_feeds)

    def stop(self) -> None:
        """Finish the fetches in flight, start no new ones, then stop the scheduler."""
        self.stopping.set()
        log.info(stopping_message(self.fetcher.in_flight))
        self.scheduler.shutdown(wait=True)
        if self.web is not None:
            self.web.stop()
        self.fetcher.close()
        try:  # the next daemon clusters at its next turn, not when the lease runs out
            with self.store.session() as s:
                release_clustering(s, self.owner)
        except StoreError as exc:
            log.warning("could not release the clustering lease (it runs out by itself): %s", exc)
        log.info("daemon %s stopped after %s", self.owner, plural(self.rounds, "round"))

    def quit_now(self) -> None:
        """The second signal: leave without waiting for the fetches in flight. Everything
        stored is committed (each feed's result is one transaction); the open transactions of
        abandoned fetches roll back, and their feeds' leases name this dead process, so the
        next daemon takes them over."""
        log.warning(
            "quitting now: %s abandoned, fetched again at the next start",
            plural(self.fetcher.in_flight, "fetch", "fetches"),
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_INTERRUPTED)

    def _on_signal(self, *_: object) -> None:
        if self.stopping.is_set():
            self.quit_now()
        self.stopping.set()

    def run_forever(
        self, install_signals: bool = True, until: Callable[[], bool] | None = None
    ) -> None:
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        self.start()
        try:
            while not self.stopping.wait(0.5):
                if until is not None and until():
                    break
        finally:
            self.stop()
