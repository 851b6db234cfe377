"""The local render worker: ``python -m povstorm_local.pull_worker``.

On Cloud Run, Pub/Sub pushes work to ``povstorm.shells.render_service``; on
the local stack workers pull it instead, one message at a time, and run the
same ``povstorm.worker.unit.handle_work``. While a unit renders, a background
thread keeps extending the message's ack deadline, so a long render is not
handed to a second worker; if this process dies, the lease lapses and Pub/Sub
redelivers. Acknowledge on every outcome (rendered, failed and reported,
skipped, poison). An error that escapes ``handle_work`` left its unit without
an outcome, so the message is never acknowledged but its deadline set to 0,
redelivering it at once, as the render service's non-2xx does: the error's
``verdict`` only says how it is logged. SIGTERM (or Ctrl-C) stops after the
current unit.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Any

from povstorm.cloud.clients import Clients
from povstorm.cloud.pubsub import subscriber_client
from povstorm.core.errors import PovstormError, translate, verdict
from povstorm.core.logs import setup_logging
from povstorm.core.names import Namespace
from povstorm.core.settings import Settings
from povstorm.ledger.ledger import Ledger
from povstorm.worker.inputs import InputCache
from povstorm.worker.unit import handle_work

log = logging.getLogger("povstorm.worker")

LEASE_SECONDS = 20  # short, so a dead worker's unit comes back soon
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
            # settles a duplicate. Not worth ending the worker for.
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

    def run(self) -> None:
        while not self.stopping.is_set():
            asked = time.monotonic()
            received = self.pull_one()
            if received is None:
                self.stopping.wait(max(0.0, IDLE_WAIT - (time.monotonic() - asked)))
                continue
            if self.stopping.is_set():  # pulled as the stop came: give it back
                self._nack(received.ack_id)
                break
            self.process(received)

    def process(self, received: Any) -> None:
        outcome = None
        with LeaseKeeper(self.subscriber, self.subscription, received.ack_id):
            try:
                outcome = handle_work(
                    self.clients, self.ledger, received.message.data, cache=self.cache
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
        log.info("%s", outcome.line())


def main() -> int:
    setup_logging()

    settings = Settings.from_env()
    clients = Clients.from_settings(settings)
    subscriber = subscriber_client(settings.endpoints.pubsub)
    subscription = subscriber.subscription_path(
        settings.project, Namespace(settings.namespace).subscription("work")
    )
    worker = Worker(clients, subscriber, subscription)

    def stop(signum: int, _frame: Any) -> None:
        log.info("%s: stopping after the current unit", signal.Signals(signum).name)
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("worker %s pulling %s", settings.worker_id, subscription)
    try:
        worker.run()
    finally:
        subscriber.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
