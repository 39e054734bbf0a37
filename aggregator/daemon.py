"""``aggregator run``: APScheduler drives the rounds; the database says what is due.

One interval job (``coalesce``, ``max_instances=1``) asks the database for due feeds and
refreshes them on a worker pool. SIGTERM/SIGINT stop new fetches, let the running ones finish,
and exit cleanly. A database outage costs a logged line and a retry on the next tick.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor as APSThreadPool
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .config import Config
from .dedup.corrections import release_clustering
from .dedup.service import DedupService, settings_from
from .errors import AggregatorError, StoreError
from .fetcher import Fetcher
from .poller import fetch_settings, poll_round
from .store import Store, repo
from .store.models import Feed, Source
from .web import WebApp, WebServer

log = logging.getLogger(__name__)

CLUSTERING_LEASE_MIN_S = 300.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
        self.fetcher = fetcher or Fetcher(fetch_settings(cfg))
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
                self.fetcher,
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
            log.info("polled %d feeds: %d new items, %d failed", len(outcomes), new, failed)

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
            log.info("clustered %d new items", placed)

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
                "retention: pruned %d poll_log rows, %d items, %d clusters in %.2f s",
                pruned.poll_log,
                pruned.items,
                pruned.clusters,
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
        log.info(
            "daemon %s started: %d sources, tick %ss", self.owner, len(self.cfg.sources), tick_s
        )

    def stop(self) -> None:
        """Finish the fetches in flight, start no new ones, then stop the scheduler."""
        self.stopping.set()
        self.scheduler.shutdown(wait=True)
        if self.web is not None:
            self.web.stop()
        self.fetcher.close()
        try:  # the next daemon clusters at its next turn, not when the lease runs out
            with self.store.session() as s:
                release_clustering(s, self.owner)
        except StoreError as exc:
            log.warning("could not release the clustering lease (it runs out by itself): %s", exc)
        log.info("daemon %s stopped after %d rounds", self.owner, self.rounds)

    def run_forever(
        self, install_signals: bool = True, until: Callable[[], bool] | None = None
    ) -> None:
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stopping.set())
        self.start()
        try:
            while not self.stopping.wait(0.5):
                if until is not None and until():
                    break
        finally:
            self.stop()
