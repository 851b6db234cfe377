"""Notifications: a finished job's summary, POSTed to its spec's ``notify`` URL.

Where it sits in the event flow: whoever moves a job publishes a JobEvent on
``job_events`` after the commit (cloud/pubsub.py: publish_job_event); a push
subscription hands each one to the ``job_event`` function, which calls
``on_job_event``. Only an end (done, failed, cancelled) of a job with a
``notify`` URL sends anything.

Exactly one accepted POST per end of a job, as far as the receiver can see:

* the job's ``delivery`` record (ledger: ``begin_delivery``, ``end_delivery``)
  is claimed before each POST, so two deliveries of the event never POST at
  once, and once it says delivered (a 2xx) nothing is sent again;
* a non-2xx answer, a timeout or a refused connection records the attempt
  and raises TransientError: the function answers 500 and Pub/Sub delivers
  the event again after the subscription's backoff, until ``ATTEMPTS``
  attempts, after which the record says failed and the event is acknowledged;
* every attempt carries the same ``X-Povstorm-Delivery`` id (the job, the end,
  the retry round), so a receiver whose 2xx was lost dedupes the next one.

Each body is signed with HMAC-SHA256 under the deployment's secret
(``Settings.notify_secret``): ``X-Povstorm-Signature: sha256=<hex>`` over the
raw body, which carries its own ``sent_at`` (README: verifying it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from typing import Any

import requests

from povstorm.cloud.clients import Clients
from povstorm.core.errors import PovstormError, TransientError
from povstorm.core.model import DeliveryState, JobEvent
from povstorm.ledger.docs import JobDoc
from povstorm.ledger.ledger import Ledger, now

log = logging.getLogger(__name__)

# Attempts before a delivery is given up. With the push subscription's
# backoff (terraform: 10 s doubling to 600 s) the last is about 20 minutes
# after the first; locally (1 s to 30 s) about a minute and a half.
ATTEMPTS = 8
# A receiver answers within this, or the attempt failed.
POST_TIMEOUT = 10.0
# How long an attempt holds the delivery record: longer than its POST, so
# that a redelivery of the event waits for it rather than POSTing beside it.
LEASE_SECONDS = 60.0
# What a summary keeps of the job's errors and stats.
ERRORS_IN_SUMMARY = 5
_STATS_LEFT_OUT = frozenset({"frame_profile", "frames_digest"})  # per-frame detail


def sign(secret: str, body: bytes) -> str:
    """The ``X-Povstorm-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """(HTTP status, error) of one POST; status None when there was no
    answer. Redirects are not followed: a 3xx is not an acceptance."""
    try:
        reply = requests.post(
            url, data=body, headers=headers, timeout=POST_TIMEOUT, allow_redirects=False
        )
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"
    error = "" if 200 <= reply.status_code < 300 else f"HTTP {reply.status_code}"
    return reply.status_code, error


def summary(
    job: JobDoc, done: int, failed: int, bucket: str, sent_at: dt.datetime
) -> dict[str, Any]:
    """The JSON body for the end of ``job`` (``done``/``failed``: its live
    counts, exact even for a cancelled job whose shards were never folded)."""

    def uri(name: str | None) -> str | None:
        return f"gs://{bucket}/{name}" if name else None

    stats = {k: v for k, v in (job.stats or {}).items() if k not in _STATS_LEFT_OUT}
    return {
        "delivery": job.delivery_id,
        "sent_at": sent_at,
        "job_id": job.job_id,
        "name": job.name,
        "state": job.state.value,
        "retries": job.retries,
        "frames": {"expected": job.units_expected, "done": done, "failed": failed},
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "video": job.video,
        "video_url": uri(job.video),
        "poster": job.poster,
        "poster_url": uri(job.poster),
        "stats_object": job.stats_object,
        "stitch_error": job.stitch_error,
        "error_count": len(job.errors),
        "errors": [_error(e) for e in job.errors[:ERRORS_IN_SUMMARY]],
        "stats": stats or None,
    }


def _error(entry: dict[str, Any]) -> dict[str, Any]:
    keep = ("unit", "frame", "attempt", "error", "stitch")
    return {k: entry[k] for k in keep if entry.get(k) is not None}


def encode(body: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""

    def when(value: Any) -> str:
        if isinstance(value, dt.datetime):
            return value.isoformat()
        raise TypeError(f"{type(value).__name__} is not JSON")

    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=when).encode()


def headers(
    secret: str, body: bytes, delivery: str, attempt: int, sent_at: dt.datetime
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "povstorm-notify/1",
        "X-Povstorm-Signature": sign(secret, body),
        "X-Povstorm-Delivery": delivery,
        "X-Povstorm-Timestamp": str(int(sent_at.timestamp())),
        "X-Povstorm-Attempt": str(attempt),
    }


def on_job_event(clients: Clients, event: JobEvent) -> str:
    """Notify the end of ``event``'s job, once; what it did, for the log.
    The job as it is now decides, not the event: a stale or repeated event
    finds the delivery done, or the job moved on (a retry), and sends nothing.
    TransientError when the receiver did not accept and attempts remain."""
    ledger = Ledger(clients.db)
    job = ledger.job(event.job_id)
    url = str(job.spec.get("notify") or "")
    if not url or not job.state.terminal:
        return "nothing to notify"
    record = ledger.begin_delivery(job.job_id, job.delivery_id, url, lease=LEASE_SECONDS)
    if record is None:
        return "already settled"
    attempt = int(record["attempts"])
    secret = clients.settings.notify_secret
    if not secret:
        ledger.end_delivery(
            job.job_id, job.delivery_id, DeliveryState.FAILED, status=None, error="no secret"
        )
        raise PovstormError(
            f"cannot sign the notification of {job.job_id}: the deployment has no notify secret"
        )
    view = ledger.view(job.job_id)
    sent_at = now()
    body = encode(summary(job, view.done, view.failed, clients.settings.bucket, sent_at))
    status, error = post(url, body, headers(secret, body, job.delivery_id, attempt, sent_at))
    if not error:
        ledger.end_delivery(job.job_id, job.delivery_id, DeliveryState.DELIVERED, status=status)
        return f"delivered to {url} (attempt {attempt})"
    if attempt >= ATTEMPTS:
        ledger.end_delivery(
            job.job_id, job.delivery_id, DeliveryState.FAILED, status=status, error=error
        )
        log.error(
            "notification %s to %s given up after %d attempts: %s",
            job.delivery_id,
            url,
            attempt,
            error,
        )
        return f"given up after {attempt} attempts"
    ledger.end_delivery(
        job.job_id, job.delivery_id, DeliveryState.PENDING, status=status, error=error
    )
    raise TransientError(
        f"notification {job.delivery_id} to {url}, attempt {attempt} of {ATTEMPTS}: {error}"
    )
