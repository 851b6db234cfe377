"""The Cloud Functions (2nd gen) handlers: submit, frame_finalized,
frame_failed, job_event and reconcile. Cloud Functions loads them through the source
root ``functions/main.py``; locally functions-framework serves the same.

Each one parses its event, calls ``povstorm.farm`` and lets
``povstorm.core.errors.verdict`` say what an error means: 2xx acknowledges,
non-2xx makes Pub/Sub redeliver. Poison (a malformed object name, an unknown
job) is acknowledged and logged, never retried forever; contention and
outages are retried.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import functions_framework

from povstorm.cloud.clients import Clients
from povstorm.core.errors import PoisonMessage, PovstormError, verdict
from povstorm.core.logs import setup_logging
from povstorm.core.schemas import (
    load_failure_report,
    load_frame_event,
    load_job_event,
    load_work_message,
    pubsub_data,
)
from povstorm.core.settings import Settings
from povstorm.farm import notify
from povstorm.farm import operations as farm
from povstorm.farm.reconcile import reconcile as run_reconcile

setup_logging()
log = logging.getLogger("povstorm.functions")


@functools.cache
def clients() -> Clients:
    # Built on the first request, not at import, and reused by the instance.
    return Clients.from_settings(Settings.from_env())


def _json(status: int, body: dict[str, Any]) -> tuple[str, int, dict[str, str]]:
    return json.dumps(body, default=str), status, {"Content-Type": "application/json"}


def _error_reply(exc: PovstormError) -> tuple[str, int, dict[str, str]]:
    return _json(verdict(exc).http_status, {"error": exc.message})


def _ack_or_retry(handler: Any) -> Any:
    """Tell Pub/Sub what to do with the event, as the error's verdict says."""

    @functools.wraps(handler)
    def wrapper(cloud_event: Any) -> None:
        try:
            handler(cloud_event)
        except Exception as exc:
            v = verdict(exc)
            if not v.ack:
                if isinstance(exc, PovstormError):
                    log.log(v.log_level, "will be redelivered: %s", exc)
                raise  # functions-framework answers 500 (a bug with its traceback)
            what = "without effect" if v.log_level < logging.ERROR else "after error"
            log.log(v.log_level, "acknowledged %s: %s", what, exc)

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
    except PovstormError as exc:
        return _error_reply(exc)


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


@functions_framework.cloud_event
@_ack_or_retry
def job_event(cloud_event: Any) -> None:
    """A job changed state (``job_events``): notify its end if it asks to.
    A receiver that did not accept makes this answer 500, and Pub/Sub
    delivers the event again after the subscription's backoff."""
    data, _ = pubsub_data(cloud_event.data)
    event = load_job_event(data)
    log.info("job %s %s: %s", event.job_id, event.state, notify.on_job_event(clients(), event))


@functions_framework.http
def reconcile(request: Any) -> Any:
    try:
        return _json(200, run_reconcile(clients()).as_dict())
    except PovstormError as exc:
        return _error_reply(exc)
