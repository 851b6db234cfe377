"""Live progress of a job through Firestore listeners.

The client listens to the job document and its shard documents (never to
the units: a 10,000-frame job would stream 10,000 documents) and sums the
shards into a ``Progress``. A listener that breaks (the emulator restarted,
a network blip) is re-opened with backoff, and a slow poll runs beside the
listener, so the watcher always reaches the final state. On the local stack
a watchdog (``Cluster.local``) also checks, whenever a poll interval passes
without news, that the stack's processes still run: a stack stopped (or
replaced by another) for STACK_GRACE_SECONDS ends the watch with a
StackError saying what to do, rather than a wait that never ends.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from google.api_core.retry import Retry

from povstorm.core.errors import StackError, TransientError, UnknownJob
from povstorm.core.model import JobState
from povstorm.core.names import COLLECTIONS
from povstorm.ledger.views import JobView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    job_id: str
    state: JobState
    total: int
    done: int
    failed: int
    elapsed: float  # seconds since the watch began
    rate: float  # units per second since the first unit landed in this watch
    eta: float | None  # seconds, None while unknown
    job: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.state.terminal

    def line(self, unit: str = "frames") -> str:
        """The progress on one line; ``unit``: what the job's units are (a
        tiled job's are "parts", bands of its frames)."""
        eta = f"ETA {fmt_clock(self.eta)}" if self.eta is not None and not self.finished else ""
        pct = 100 * (self.done + self.failed) / self.total if self.total else 100
        counted = "" if unit == "frames" else f" {unit}"
        parts = [
            f"{self.state.value:<9}",
            f"{self.done}/{self.total}{counted} done",
            f"{self.failed} failed",
            f"{pct:5.1f}%",
            f"{self.rate:.2f} {unit}/s",
            eta,
        ]
        return "  ".join(p for p in parts if p)


def fmt_clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


# How long a stack the watchdog finds stopped may stay so before the watch
# ends (a component restarting comes back sooner); checked every second.
STACK_GRACE_SECONDS = 6.0
# A poll gives up on an outage after this long and tries again later (with
# backoff), rather than sit in the client library's 60 s retry.
POLL_RETRY = Retry(initial=0.2, maximum=2.0, timeout=10.0)
POLL_TIMEOUT = 10.0


class JobWatcher:
    """Yields a Progress each time the job or a shard changes, until the job
    reaches a terminal state (or the timeout passes)."""

    def __init__(
        self,
        db: Any,
        job_id: str,
        poll_seconds: float = 5.0,
        retry: Retry = POLL_RETRY,
        watchdog: Callable[[], str] | None = None,
    ) -> None:
        self._db = db
        self._watchdog = watchdog
        self._job_id = job_id
        self._poll = poll_seconds
        self._retry = retry
        self._events: queue.Queue[str] = queue.Queue()
        self._job: dict[str, Any] | None = None
        self._shards: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._watches: list[Any] = []
        self._start = time.monotonic()
        self._first: tuple[float, int] | None = None
        self._ended = False  # the last snapshot's state was terminal

    @property
    def _job_ref(self) -> Any:
        return self._db.collection(COLLECTIONS["jobs"]).document(self._job_id)

    def _on_job(self, docs: list[Any], _changes: Any, _read_time: Any) -> None:
        with self._lock:
            for d in docs:
                if d.exists:
                    self._job = d.to_dict()
        self._events.put("job")

    def _on_shards(self, docs: list[Any], _changes: Any, _read_time: Any) -> None:
        with self._lock:
            for d in docs:
                self._shards[d.id] = d.to_dict()
        self._events.put("shards")

    def _open(self) -> None:
        self._close()
        try:
            self._watches = [
                self._job_ref.on_snapshot(self._on_job),
                self._job_ref.collection(COLLECTIONS["shards"]).on_snapshot(self._on_shards),
            ]
        except Exception as exc:  # the listener API raises whatever gRPC gives it
            log.debug("listener could not open: %s", exc)
            self._watches = []

    def _close(self) -> None:
        # A listener whose server went away may fail to close, and its thread
        # may not stop within the library's second (it logs "Background thread
        # did not exit." on stderr): it is gone either way, and the watch says
        # what happened in one line of its own.
        bidi = logging.getLogger("google.api_core.bidi")
        level = bidi.level
        bidi.setLevel(logging.ERROR)
        try:
            for w in self._watches:
                with contextlib.suppress(Exception):
                    w.unsubscribe()
        finally:
            bidi.setLevel(level)
        self._watches = []

    def _listeners_broken(self) -> bool:
        return not self._watches or any(
            getattr(w, "is_active", True) is False for w in self._watches
        )

    def _refresh(self) -> None:
        """A plain read of the job and its shards: the poll beside the listeners."""
        job = self._job_ref.get(retry=self._retry, timeout=POLL_TIMEOUT)
        if not job.exists:
            raise UnknownJob(self._job_id)
        shards = {
            d.id: d.to_dict()
            for d in self._job_ref.collection(COLLECTIONS["shards"]).stream(
                retry=self._retry, timeout=POLL_TIMEOUT
            )
        }
        with self._lock:
            self._job = job.to_dict()
            self._shards = shards

    def _check_stack(self) -> None:
        """Nothing has changed for a poll interval: if the watchdog says the
        stack stopped, look again every second, and end the watch with one
        line once it has stayed stopped for STACK_GRACE_SECONDS."""
        if self._watchdog is None:
            return
        problem = self._watchdog()
        if not problem:
            return
        since = time.monotonic()
        while problem:
            if time.monotonic() - since >= STACK_GRACE_SECONDS:
                raise StackError(
                    f"{problem}: start it with `povstorm local up`, then "
                    f"`povstorm watch {self._job_id}`"
                )
            time.sleep(1.0)
            problem = self._watchdog()
        log.warning("the local stack is running again: watching %s on", self._job_id)

    def nudge(self) -> None:
        """Wake ``follow`` to yield a fresh Progress now: something its caller
        listens to besides the job and its shards changed (the web view's
        units of one page of the grid)."""
        self._events.put("nudge")

    def view(self) -> JobView:
        """The job document and its shards as last heard: what
        ``Cluster.cost_of`` reads, with no read of its own."""
        with self._lock:
            job = dict(self._job or {})
            shards = [dict(s) for s in self._shards.values()]
        return JobView(
            job_id=self._job_id,
            doc=job,
            done=sum(int(s.get("done", 0)) for s in shards),
            failed=sum(int(s.get("failed", 0)) for s in shards),
            shards=shards,
        )

    def snapshot(self) -> Progress:
        view = self.view()
        job, done, failed = view.doc, view.done, view.failed
        total = int(job.get("units_expected", 0))
        state = JobState(job.get("state", JobState.SUBMITTED))
        now = time.monotonic()
        elapsed = now - self._start
        if self._ended and not state.terminal:
            self._first = None  # a retry: the rate of its frames, not of the wait before it
        self._ended = state.terminal
        if self._first is None and done + failed > 0:
            self._first = (now, done + failed)
        rate, eta = 0.0, None
        if self._first is not None:
            span = now - self._first[0]
            landed = done + failed - self._first[1]
            if span > 0 and landed > 0:
                rate = landed / span
                eta = (total - done - failed) / rate
        return Progress(
            job_id=self._job_id,
            state=state,
            total=total,
            done=done,
            failed=failed,
            elapsed=elapsed,
            rate=rate,
            eta=eta,
            job=job,
        )

    def __iter__(self) -> Iterator[Progress]:
        return self.follow()

    def follow(
        self, timeout: float | None = None, *, past_end: bool = False
    ) -> Generator[Progress, None, None]:
        """Progress on each change until the job ends; with ``past_end``, on
        until the caller stops iterating (a page left open sees a retry
        start the job again, or a new video)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._refresh()
        self._open()
        backoff = 1.0
        try:
            while True:
                progress = self.snapshot()
                yield progress
                if progress.finished and not past_end:
                    return
                if deadline is not None and time.monotonic() > deadline:
                    raise TransientError(f"timed out watching {self._job_id} ({progress.line()})")
                try:
                    self._events.get(timeout=self._poll)
                    while not self._events.empty():  # coalesce a burst of changes
                        self._events.get_nowait()
                except queue.Empty:
                    self._check_stack()
                    try:
                        self._refresh()
                        backoff = 1.0
                    except UnknownJob:
                        raise
                    except Exception as exc:  # outage: keep trying; the job goes on without us
                        log.debug("poll failed: %s", exc)
                        time.sleep(min(backoff, 10))
                        backoff *= 2
                        continue
                    if self._listeners_broken():
                        self._open()
        finally:
            self._close()


def watch(
    db: Any,
    job_id: str,
    on_progress: Callable[[Progress], None] | None = None,
    timeout: float | None = None,
    poll_seconds: float = 5.0,
    watchdog: Callable[[], str] | None = None,
) -> Progress:
    """Follow a job to its end, calling ``on_progress`` on each change; returns
    the final Progress. StackError when ``watchdog`` finds the stack stopped."""
    last = None
    for progress in JobWatcher(db, job_id, poll_seconds, watchdog=watchdog).follow(timeout):
        last = progress
        if on_progress:
            on_progress(progress)
    assert last is not None
    return last
