"""One exception hierarchy for povstorm, and the one place that says what an
error means.

    PovstormError                   base: not retryable, HTTP 500, exit 1
    +-- UserError                   bad input; a one-line message, exit 2 / HTTP 400
    |   +-- SpecError               a job spec or work message that fails validation
    |   +-- SceneError              an INI/option/scene problem found on the client
    |   +-- UnknownJob              no such job (HTTP 404)
    +-- NotFound                    an object or document that is not there (HTTP 404)
    +-- StackError                  the local stack cannot start or is not running
    +-- RenderError                 POV-Ray failed on a unit (carries the log tail)
    +-- StitchFailed                a stitch that cannot succeed as things are
    +-- IllegalTransition           a state write the transition tables forbid (a bug)
    +-- TransientError              contention, unavailable, deadline: retry (HTTP 503)
    +-- PoisonMessage               an event that can never succeed: acknowledge and log

Vendor errors (google.api_core, and the network errors the client libraries
let through) become these in one place, ``translate()``; what an error means
to a Pub/Sub handler, an HTTP reply and a command's exit code is decided in
one place, ``verdict()``. Every shell and the CLI use both.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass


class PovstormError(Exception):
    retryable = False
    http_status = 500
    exit_code = 1
    log_level = logging.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserError(PovstormError):
    http_status = 400
    exit_code = 2


class SpecError(UserError):
    """Validation failed; ``messages`` holds marshmallow's field -> messages."""

    def __init__(self, message: str, messages: dict | None = None) -> None:
        super().__init__(message)
        self.messages = messages or {}


class SceneError(UserError):
    pass


class UnknownJob(UserError):
    # An event for a job that is gone or never was: nothing to do, nothing broken.
    http_status = 404
    log_level = logging.WARNING

    def __init__(self, job_id: str) -> None:
        super().__init__(f"unknown job: {job_id}")
        self.job_id = job_id


class NotFound(PovstormError):
    http_status = 404


class StackError(PovstormError):
    pass


class RenderError(PovstormError):
    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class StitchFailed(PovstormError):
    """A stitch that cannot succeed as things are: recorded with fail_stitch."""


class IllegalTransition(PovstormError):
    """A state write that the transition tables forbid: a bug, never retried."""


class TransientError(PovstormError):
    retryable = True
    http_status = 503
    log_level = logging.WARNING


class PoisonMessage(PovstormError):
    """Never succeeds however often it is delivered: acknowledge it (2xx) and log."""

    http_status = 200
    log_level = logging.WARNING


# Transient by nature: another try may well succeed.
_TRANSIENT_NAMES = (
    "Aborted",
    "ServiceUnavailable",
    "DeadlineExceeded",
    "TooManyRequests",
    "InternalServerError",
    "Conflict",
    "ResourceExhausted",
)


def from_google(exc: BaseException) -> PovstormError:
    """The povstorm error for a google.api_core exception (retryable or not)."""
    from google.api_core import exceptions as gexc

    transient = tuple(getattr(gexc, name) for name in _TRANSIENT_NAMES)
    # AlreadyExists is a Conflict (409) to google.api_core, but a create() that
    # found its document will find it again: retrying cannot help.
    if isinstance(exc, gexc.AlreadyExists):
        return PovstormError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (*transient, gexc.RetryError)):
        return TransientError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, gexc.NotFound):
        return NotFound(f"not found: {exc}")
    return PovstormError(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def translate(what: str = "", *, network: bool = False) -> Iterator[None]:
    """Turn vendor errors raised inside the block into povstorm's tree.

    ``what`` prefixes the message (``"storage"`` gives "storage: ..."). With
    ``network=True`` a connection error (which the HTTP-based storage client
    lets through as ``OSError``) is transient too.
    """
    from google.api_core import exceptions as gexc

    prefix = f"{what}: " if what else ""
    try:
        yield
    except PovstormError:
        raise
    except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
        err = from_google(exc)
        err.message = prefix + err.message
        raise err from exc
    except OSError as exc:
        if not network:
            raise
        raise TransientError(f"{prefix}unreachable: {exc}") from exc


@dataclass(frozen=True)
class Verdict:
    """What an error means where it surfaces."""

    ack: bool  # a Pub/Sub handler acknowledges the event (else it is redelivered)
    http_status: int  # an HTTP entry point's reply
    exit_code: int  # a command's exit status
    log_level: int


def verdict(exc: BaseException) -> Verdict:
    """The one decision about an error. povstorm's own errors carry their
    meaning; anything else is a bug or a broken machine: not acknowledged, so
    Pub/Sub redelivers it and the ledger's attempt counts end a unit that
    always does this."""
    if isinstance(exc, PovstormError):
        return Verdict(
            ack=not exc.retryable,
            http_status=exc.http_status,
            exit_code=exc.exit_code,
            log_level=exc.log_level,
        )
    return Verdict(ack=False, http_status=500, exit_code=1, log_level=logging.ERROR)
