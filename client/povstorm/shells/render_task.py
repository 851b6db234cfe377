"""A render task: ``python -m povstorm.shells.render_task``.

A task of the render Cloud Run Job, or locally of the stack's task runner
(``povstorm_local.tasks``), both started by a ``RenderLauncher`` when work is
published (``farm/operations.py: start_tasks``). It pulls the work
subscription one message at a time and runs ``povstorm.worker.unit.handle_work``
on it, whichever job the chunk belongs to, so the running tasks are shared by
every job. While a chunk renders, a background thread keeps extending the
message's ack deadline, so a render of any length is not handed to a second
task; if this process dies, the lease lapses within LEASE_SECONDS and Pub/Sub
redelivers the chunk, which resumes after the frames already in the bucket.

Acknowledge on every outcome (rendered, failed and reported, skipped,
poison). An error that escapes ``handle_work`` left its unit without an
outcome, so the message is never acknowledged but its deadline set to 0,
redelivering it at once: the error's ``verdict`` only says how it is logged.

The task ends (exit 0) when a pull has found no work for
``Settings.task_idle`` seconds, or when its budget (``Settings.render_timeout``
seconds from its start, which terraform keeps below the task timeout) is
spent: a chunk hands on the frames it cannot finish in time, and the task
takes no more. SIGTERM (a cancelled execution, Ctrl-C) stops it after the
current chunk. ``CLOUD_RUN_EXECUTION``, ``CLOUD_RUN_TASK_INDEX`` and
``CLOUD_RUN_TASK_ATTEMPT`` name the worker in its frames' metadata and logs.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from povstorm.cloud.clients import Clients
from povstorm.cloud.pubsub import subscriber_client
from povstorm.core.errors import PovstormError, translate, verdict
from povstorm.core.logs import setup_logging
from povstorm.core.names import ENV, Namespace
from povstorm.core.settings import Settings
from povstorm.ledger.ledger import Ledger
from povstorm.worker.inputs import InputCache
from povstorm.worker.unit import handle_work

log = logging.getLogger("povstorm.worker")

LEASE_SECONDS = 20  # short, so a dead task's chunk comes back soon
EXTEND_EVERY = LEASE_SECONDS / 3
# SIGTERM is handled between pulls, so this bounds how long a stop takes.
PULL_TIMEOUT = 5.0
# At most one empty pull per this many seconds. A pull long-polls (the
# emulator holds an empty one for about 4 s, as Pub/Sub does), so an empty
# answer is followed at once by the next pull: a fixed sleep after it left the
# worker deaf to a new job for up to a second.
IDLE_WAIT = 1.0


class LeaseKeeper:
    """Extends one message's ack deadline until stopped."""

    def __init__(self, subscriber: Any, subscription: str, ack_id: str) -> None:
        self._subscriber = subscriber
        self._subscription = subscription
        self._ack_id = ack_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # Extend at once: the subscription's own deadline may be shorter than a render.
        while True:
            try:
                self._subscriber.modify_ack_deadline(
                    request={
                        "subscription": self._subscription,
                        "ack_ids": [self._ack_id],
                        "ack_deadline_seconds": LEASE_SECONDS,
                    }
                )
            except Exception as exc:  # a missed extension is retried; the render goes on
                log.warning("cannot extend the lease: %s", exc)
            if self._stop.wait(EXTEND_EVERY):
                return


class Worker:
    def __init__(self, clients: Clients, subscriber: Any, subscription: str) -> None:
        self.clients = clients
        self.ledger = Ledger(clients.db)
        self.cache = InputCache.from_settings(clients.settings)
        self.subscriber = subscriber
        self.subscription = subscription
        self.stopping = threading.Event()
        self.started = time.monotonic()
        self.slowest_frame = 0.0  # the longest a frame of a chunk took, on average

    def _ack(self, ack_id: str) -> None:
        self._call(
            self.subscriber.acknowledge,
            {"subscription": self.subscription, "ack_ids": [ack_id]},
        )

    def _nack(self, ack_id: str) -> None:
        self._call(
            self.subscriber.modify_ack_deadline,
            {"subscription": self.subscription, "ack_ids": [ack_id], "ack_deadline_seconds": 0},
        )

    @staticmethod
    def _call(method: Any, request: dict[str, Any]) -> None:
        try:
            with translate("pubsub"):
                method(request=request)
        except PovstormError as exc:
            # The lease lapses by itself and Pub/Sub redelivers; the ledger
            # settles a duplicate. Not worth ending the task for.
            log.warning("%s failed: %s", getattr(method, "__name__", "call"), exc)

    def pull_one(self) -> Any | None:
        from google.api_core import exceptions as gexc

        # Not translate(): DeadlineExceeded here is an empty long-poll, not an
        # outage, and translate() would make it one TransientError with the rest.
        try:
            response = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": 1},
                timeout=PULL_TIMEOUT,
            )
        except gexc.DeadlineExceeded:
            return None
        except gexc.GoogleAPICallError as exc:
            log.warning("pull failed, retrying: %s", exc)
            self.stopping.wait(IDLE_WAIT * 5)
            return None
        return response.received_messages[0] if response.received_messages else None

    def budget_left(self) -> float:
        """Seconds of the task's render budget not yet spent."""
        return self.clients.settings.render_timeout - (time.monotonic() - self.started)

    def run(self) -> str:
        """Pull and render until idle, out of budget or stopped; why it ended."""
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            # A chunk's first frame always renders: pull none that the task
            # timeout could cut short (the slowest frame so far must fit).
            if self.budget_left() <= self.slowest_frame:
                return "budget spent"
            asked = time.monotonic()
            received = self.pull_one()
            if received is None:
                # Exit only straight after a pull found nothing: a submit
                # that found every slot taken started no task of its own.
                if asked - idle_since >= self.clients.settings.task_idle:
                    return f"no work for {self.clients.settings.task_idle:g}s"
                self.stopping.wait(max(0.0, IDLE_WAIT - (time.monotonic() - asked)))
                continue
            if self.stopping.is_set():  # pulled as the stop came: give it back
                self._nack(received.ack_id)
                break
            self.process(received)
            idle_since = time.monotonic()
        return "stopped"

    def process(self, received: Any) -> None:
        outcome = None
        with LeaseKeeper(self.subscriber, self.subscription, received.ack_id):
            try:
                outcome = handle_work(
                    self.clients,
                    self.ledger,
                    received.message.data,
                    cache=self.cache,
                    budget=self.budget_left(),
                )
            except Exception as exc:
                v = verdict(exc)
                if isinstance(exc, PovstormError) and not v.ack:
                    log.log(v.log_level, "redelivering: %s", exc)
                else:
                    # A bug or a broken machine: let Pub/Sub redeliver; the
                    # ledger's delivery count ends a unit that always does this.
                    log.exception("render crashed; redelivering")
        # Only once the lease keeper has stopped, so no extension follows.
        if outcome is None:
            self._nack(received.ack_id)
            return
        self._ack(received.ack_id)
        if outcome.frames:
            self.slowest_frame = max(self.slowest_frame, outcome.seconds / len(outcome.frames))
        log.info("%s", outcome.line())


def task_name(environ: Mapping[str, str]) -> str | None:
    """The worker id of a task: its execution and index (and attempt past
    the first), as Cloud Run and the local task runner set them; None (the
    settings' own: POVSTORM_WORKER_ID, else host:pid) outside a task or when
    POVSTORM_WORKER_ID is set."""
    execution = environ.get("CLOUD_RUN_EXECUTION")
    if not execution or environ.get(ENV["worker_id"]):
        return None
    name = f"{execution}/{environ.get('CLOUD_RUN_TASK_INDEX', '0')}"
    attempt = environ.get("CLOUD_RUN_TASK_ATTEMPT", "0")
    return name if attempt in ("", "0") else f"{name}.{attempt}"


def main() -> int:
    setup_logging()

    settings = Settings.from_env().with_overrides(worker_id=task_name(os.environ))
    clients = Clients.from_settings(settings)
    subscriber = subscriber_client(settings.endpoints.pubsub)
    subscription = subscriber.subscription_path(
        settings.project, Namespace(settings.namespace).subscription("work")
    )
    worker = Worker(clients, subscriber, subscription)

    def stop(signum: int, _frame: Any) -> None:
        log.info("%s: stopping after the current chunk", signal.Signals(signum).name)
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("task %s pulling %s", settings.worker_id, subscription)
    try:
        why = worker.run()
    finally:
        subscriber.close()
    log.info("task %s ends: %s", settings.worker_id, why)
    return 0


if __name__ == "__main__":
    sys.exit(main())
