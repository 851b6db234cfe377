"""The render service on Cloud Run: Pub/Sub pushes each work message here.

A thin shell over ``povstorm.worker.unit.handle_work``. The status tells Pub/Sub
what to do: 2xx acknowledges (rendered, failed and reported, skipped, or
poison that can never succeed: every returned outcome), non-2xx redelivers.
An error that escapes ``handle_work`` left its unit without an outcome, so it
is never acknowledged: a retryable one (contention, an outage) gets the
verdict's 503; anything else is a 500, and the ledger's delivery count ends a
unit that keeps doing it. A request that is not a push envelope at all gets
400; Pub/Sub itself never sends one. The container serves it with
``functions-framework --source render_container/main.py --target handle_push``
(that source only re-exports ``handle_push`` from here).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import functions_framework

from povstorm.cloud.clients import Clients
from povstorm.core.errors import PoisonMessage, PovstormError, verdict
from povstorm.core.logs import setup_logging
from povstorm.core.schemas import pubsub_data
from povstorm.core.settings import Settings
from povstorm.ledger.ledger import Ledger
from povstorm.worker.inputs import InputCache
from povstorm.worker.unit import handle_work

setup_logging()
log = logging.getLogger("povstorm.render")


@functools.cache
def instance() -> tuple[Clients, Ledger, InputCache]:
    # Built on the first request, not at import, and kept for the instance's
    # life: the input cache is what saves a download per frame.
    settings = Settings.from_env()
    clients = Clients.from_settings(settings)
    return clients, Ledger(clients.db), InputCache.from_settings(settings)


@functions_framework.http
def handle_push(request: Any) -> Any:
    envelope = request.get_json(silent=True)
    try:
        data, _ = pubsub_data(envelope)
    except PoisonMessage as exc:
        log.warning("not a Pub/Sub push: %s", exc)
        return f"{exc}\n", 400
    clients, ledger, cache = instance()
    try:
        outcome = handle_work(clients, ledger, data, cache=cache)
    except PovstormError as exc:
        v = verdict(exc)
        if v.ack:
            # No outcome, so never acknowledged (see above): functions-framework
            # answers 500 and logs it, as it does for a bug.
            raise
        log.log(v.log_level, "will be redelivered: %s", exc)
        return f"{exc}\n", v.http_status
    log.info("%s", outcome.line())
    return "", 204
