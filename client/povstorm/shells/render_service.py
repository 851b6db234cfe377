"""The render service on Cloud Run: Pub/Sub pushes each work message here.

A thin shell over ``povstorm.worker.unit.handle_work``. The status tells Pub/Sub
what to do: 2xx acknowledges (rendered, failed and reported, skipped, or
poison that can never succeed), 503 redelivers (contention, an outage). A
request that is not a push envelope at all gets 400; Pub/Sub itself never
sends one. Serve it with
``functions-framework --source render_container/main.py --target handle_push``.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import functions_framework

from povstorm.cloud.clients import Clients
from povstorm.core.errors import PoisonMessage, TransientError
from povstorm.core.schemas import pubsub_data
from povstorm.core.settings import Settings
from povstorm.ledger.ledger import Ledger
from povstorm.worker.inputs import InputCache
from povstorm.worker.unit import handle_work

logging.basicConfig(level=os.environ.get("POVSTORM_LOG_LEVEL", "INFO"))
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
    except TransientError as exc:
        log.warning("will be redelivered: %s", exc)
        return f"{exc}\n", 503
    log.info("%s", outcome.line())
    return "", 204
