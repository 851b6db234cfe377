"""The web view's live data: Firestore listeners turned into server-sent
events, one stream per open page, nothing polled by the browser.

A job page's stream follows the job as ``povstorm watch`` does, through the
client's JobWatcher (the job document and its shard documents: 64 at most,
whatever the job's size), and past its end, since a retry starts it again
and a re-stitch adds a video. Beside it, one listener on the units of the
page of the grid on screen (``views.PAGE_SIZE`` at most), which nudges the
watcher when one changes: a 10,000-frame job streams the 200 units shown,
never the others, and only those that changed since the last event.

The jobs page's stream listens to the most recent jobs (one query) and to
the shards of those still running, for their live counts.

Every stream sends something at least every ``keepalive`` seconds (the
watcher's quiet-interval poll), so a closed tab is noticed and its thread
and listeners freed within that time; ``Streams.stop`` ends them all at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from google.cloud import firestore

from povstorm.client import Cluster
from povstorm.core.errors import PovstormError, translate
from povstorm.core.model import JobState
from povstorm.core.names import COLLECTIONS
from povstorm.ui.views import Page, job_payload, job_row, to_json, unit_row

log = logging.getLogger(__name__)

KEEPALIVE = 15.0  # seconds between two messages of a quiet stream
RECONNECT_MS = 3000  # how soon a browser reopens a stream that ended
_LONG_AGO = dt.datetime.min.replace(tzinfo=dt.UTC)  # a job with no created_at sorts last


def sse(event: str, data: Any) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {to_json(data)}\n\n"


class Streams:
    """The streams open now, so that stopping the server ends each at once
    rather than at its next keep-alive."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._wakes: set[Callable[[], None]] = set()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def opened(self, wake: Callable[[], None]) -> Iterator[None]:
        with self._lock:
            self._wakes.add(wake)
        try:
            yield
        finally:
            with self._lock:
                self._wakes.discard(wake)

    @property
    def count(self) -> int:
        """How many are open (a page closed is counted until its stream's next write)."""
        with self._lock:
            return len(self._wakes)

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            wakes = list(self._wakes)
        for wake in wakes:
            wake()


# --- a job page -----------------------------------------------------------------------


def page_query(cluster: Cluster, job_id: str, page: Page) -> Any:
    """The units of one page of a job's grid (a range of the ``unit`` field:
    Firestore's automatic single-field index serves it)."""
    units = cluster.ledger.job_ref(job_id).collection(COLLECTIONS["units"])
    return units.where(filter=firestore.FieldFilter("unit", ">=", page.first)).where(
        filter=firestore.FieldFilter("unit", "<", page.end)
    )


def page_records(cluster: Cluster, job_id: str, page: Page) -> list[dict[str, Any]]:
    """The unit documents of one page, in order: one query of PAGE_SIZE at most."""
    with translate("firestore"):
        records = [s.to_dict() for s in page_query(cluster, job_id, page).stream()]
    return sorted(records, key=lambda r: int(r["unit"]))


class PageUnits:
    """A listener on one page of a job's units that keeps those that
    changed until the stream takes them, and calls ``on_change``."""

    def __init__(
        self, cluster: Cluster, job_id: str, page: Page, on_change: Callable[[], None]
    ) -> None:
        self._query = page_query(cluster, job_id, page)
        self._on_change = on_change
        self._changed: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._watch: Any = None

    def _heard(self, _docs: list[Any], changes: list[Any], _read_time: Any) -> None:
        # The first snapshot lists every unit of the page as added; later
        # ones only those that changed.
        with self._lock:
            for change in changes:
                if change.document.exists:
                    record = change.document.to_dict()
                    self._changed[int(record["unit"])] = record
        self._on_change()

    def open(self) -> None:
        self.close()
        try:
            self._watch = self._query.on_snapshot(self._heard)
        except Exception as exc:  # whatever gRPC raises: the next keep-alive tries again
            log.debug("page listener could not open: %s", exc)

    @property
    def broken(self) -> bool:
        return self._watch is None or getattr(self._watch, "is_active", True) is False

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            changed, self._changed = self._changed, {}
        return [changed[u] for u in sorted(changed)]

    def close(self) -> None:
        if self._watch is not None:
            with contextlib.suppress(Exception):
                self._watch.unsubscribe()
            self._watch = None


def job_events(
    cluster: Cluster, job_id: str, page: Page, streams: Streams, keepalive: float = KEEPALIVE
) -> Iterator[str]:
    """A job page's stream: ``job`` (the payload of views.job_payload) on
    every change of the job or its shards, ``units`` (the page's units that
    changed) as they change, ``problem`` when the watch cannot go on (the
    browser reconnects)."""
    watcher = cluster.watcher(job_id, poll_seconds=keepalive)
    units = PageUnits(cluster, job_id, page, on_change=watcher.nudge)
    yield f"retry: {RECONNECT_MS}\n\n"
    try:
        with (
            streams.opened(watcher.nudge),
            contextlib.closing(watcher.follow(past_end=True)) as follow,
        ):
            units.open()
            last: dict[str, Any] | None = None
            for progress in follow:
                if streams.stopping.is_set():
                    return
                view = watcher.view()
                payload = job_payload(cluster.status_of(view), view.shards, progress)
                changed = units.take()
                if payload == last and not changed:
                    yield ": quiet\n\n"
                if payload != last:
                    yield sse("job", payload)
                    last = payload
                if changed:
                    yield sse("units", [unit_row(job_id, r) for r in changed])
                if units.broken:
                    units.open()
    except PovstormError as exc:
        yield sse("problem", {"error": str(exc)})
    finally:
        units.close()


# --- the jobs page ------------------------------------------------------------------


class RecentJobs:
    """Listeners on the ``limit`` most recent jobs and on the shards of
    those still running. The callbacks only record what they heard; the
    stream's own thread opens and closes the shard listeners (``follow``)."""

    def __init__(self, db: Any, limit: int) -> None:
        jobs = db.collection(COLLECTIONS["jobs"])
        self._query = jobs.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)
        self._jobs_col = jobs
        self._events: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._jobs: list[dict[str, Any]] = []
        self._shards: dict[str, dict[str, dict[str, Any]]] = {}
        self._watch: Any = None
        self._shard_watches: dict[str, Any] = {}

    def wake(self) -> None:
        self._events.put("wake")

    def _on_jobs(self, docs: list[Any], _changes: Any, _read_time: Any) -> None:
        # Most recent first, as the query asks (the listener's documents
        # come in no order one can rely on).
        jobs = sorted(
            (d.to_dict() for d in docs if d.exists),
            key=lambda j: j.get("created_at") or _LONG_AGO,
            reverse=True,
        )
        with self._lock:
            self._jobs = jobs
        self.wake()

    def _on_shards(self, job_id: str) -> Callable[[list[Any], Any, Any], None]:
        def heard(docs: list[Any], _changes: Any, _read_time: Any) -> None:
            with self._lock:
                self._shards[job_id] = {d.id: d.to_dict() for d in docs if d.exists}
            self.wake()

        return heard

    def open(self) -> None:
        with contextlib.suppress(Exception):
            if self._watch is not None:
                self._watch.unsubscribe()
        try:
            self._watch = self._query.on_snapshot(self._on_jobs)
        except Exception as exc:  # whatever gRPC raises: the next keep-alive tries again
            log.debug("jobs listener could not open: %s", exc)
            self._watch = None

    @property
    def broken(self) -> bool:
        return self._watch is None or getattr(self._watch, "is_active", True) is False

    def wait(self, timeout: float) -> None:
        """Until something changed (a burst counts once), or ``timeout``."""
        with contextlib.suppress(queue.Empty):
            self._events.get(timeout=timeout)
            while not self._events.empty():
                self._events.get_nowait()

    def follow(self) -> None:
        """Listen to the shards of the jobs listed that are running, and no others."""
        with self._lock:
            running = {str(j["job_id"]) for j in self._jobs if not JobState(j["state"]).terminal}
        for job_id in set(self._shard_watches) - running:
            with contextlib.suppress(Exception):
                self._shard_watches.pop(job_id).unsubscribe()
        for job_id in running - set(self._shard_watches):
            shards = self._jobs_col.document(job_id).collection(COLLECTIONS["shards"])
            with contextlib.suppress(Exception):
                self._shard_watches[job_id] = shards.on_snapshot(self._on_shards(job_id))

    def rows(self) -> list[dict[str, Any]]:
        """The jobs as the page lists them; a job's counts from its shards
        when they were heard (the job's own are folded only shard by shard)."""
        with self._lock:
            jobs = list(self._jobs)
            shards = {k: list(v.values()) for k, v in self._shards.items()}
        rows = []
        for job in jobs:
            heard = shards.get(str(job.get("job_id")))
            counts = None
            if heard and job.get("state") != JobState.DONE:
                counts = (
                    sum(int(s.get("done") or 0) for s in heard),
                    sum(int(s.get("failed") or 0) for s in heard),
                )
            rows.append(job_row(job, counts))
        return rows

    def close(self) -> None:
        for watch in [self._watch, *self._shard_watches.values()]:
            if watch is not None:
                with contextlib.suppress(Exception):
                    watch.unsubscribe()
        self._watch = None
        self._shard_watches = {}


def jobs_events(
    cluster: Cluster, limit: int, streams: Streams, keepalive: float = KEEPALIVE
) -> Iterator[str]:
    """The jobs page's stream: ``jobs`` (the rows) whenever they change."""
    feed = RecentJobs(cluster.clients.db, limit)
    yield f"retry: {RECONNECT_MS}\n\n"
    try:
        with streams.opened(feed.wake):
            feed.open()
            last: list[dict[str, Any]] | None = None
            while not streams.stopping.is_set():
                feed.wait(keepalive)
                if streams.stopping.is_set():
                    return
                feed.follow()
                rows = feed.rows()
                if rows != last:
                    yield sse("jobs", rows)
                    last = rows
                else:
                    yield ": quiet\n\n"
                if feed.broken:
                    feed.open()
    finally:
        feed.close()
