"""Cloud Functions (2nd gen) entry points; locally the same file is served by
functions-framework. Each one parses its event, calls ``povstorm.farm`` and
maps the outcome to a status: 2xx acknowledges, non-2xx makes Pub/Sub
redeliver. Poison (a malformed object name, an unknown job) is acknowledged
and logged, never retried forever; contention and outages are retried.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any

import functions_framework

from povstorm.cloud.clients import Clients
from povstorm.core.errors import PoisonMessage, PovstormError, TransientError, UnknownJob, UserError
from povstorm.core.schemas import (
    load_failure_report,
    load_frame_event,
    load_work_message,
    pubsub_data,
)
from povstorm.core.settings import Settings
from povstorm.farm import operations as farm
from povstorm.farm.reconcile import reconcile as run_reconcile

logging.basicConfig(level=os.environ.get("POVSTORM_LOG_LEVEL", "INFO"))
log = logging.getLogger("povstorm.functions")


@functools.cache
def clients() -> Clients:
    # Built on the first request, not at import, and reused by the instance.
    return Clients.from_settings(Settings.from_env())


def _json(status: int, body: dict[str, Any]) -> tuple[str, int, dict[str, str]]:
    return json.dumps(body, default=str), status, {"Content-Type": "application/json"}


def _ack_or_retry(handler: Any) -> Any:
    """Map povstorm's exceptions to what Pub/Sub should do with the event."""

    @functools.wraps(handler)
    def wrapper(cloud_event: Any) -> None:
        try:
            handler(cloud_event)
        except (PoisonMessage, UnknownJob) as exc:
            log.warning("acknowledged without effect: %s", exc)
        except TransientError as exc:
            log.warning("will be redelivered: %s", exc)
            raise  # functions-framework answers 500: Pub/Sub redelivers
        except PovstormError as exc:
            log.error("acknowledged after error: %s", exc)

    return wrapper


@functions_framework.http
def submit(request: Any) -> Any:
    if request.method != "POST":
        return _json(405, {"error": "POST a job spec"})
    payload = request.get_json(silent=True)
    if payload is None:
        return _json(400, {"error": "body is not JSON"})
    try:
        return _json(200, farm.submit(clients(), payload))
    except UserError as exc:
        return _json(exc.http_status, {"error": exc.message})
    except TransientError as exc:
        return _json(503, {"error": exc.message})


@functions_framework.cloud_event
@_ack_or_retry
def frame_finalized(cloud_event: Any) -> None:
    data, attributes = pubsub_data(cloud_event.data)
    event = load_frame_event(data, attributes)
    if event is not None:
        farm.on_frame_event(clients(), event)


@functions_framework.cloud_event
@_ack_or_retry
def frame_failed(cloud_event: Any) -> None:
    """Both the failures topic (a report) and the work dead-letter topic (a
    work message Pub/Sub gave up on) arrive here."""
    data, _ = pubsub_data(cloud_event.data)
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        raise PoisonMessage("failure message is not JSON") from None
    if isinstance(body, dict) and "error" in body:
        farm.on_failure(clients(), load_failure_report(data))
    else:
        farm.on_dead_letter(clients(), load_work_message(data))


@functions_framework.http
def reconcile(request: Any) -> Any:
    try:
        return _json(200, run_reconcile(clients()).as_dict())
    except TransientError as exc:
        return _json(503, {"error": exc.message})
