"""One exception hierarchy for povstorm.

    PovstormError                   base; ``retryable`` says whether a redelivery may succeed
    +-- UserError                   bad input; a one-line message, exit 2 / HTTP 400
    |   +-- SpecError               a job spec or work message that fails validation
    |   +-- SceneError              an INI/option/scene problem found on the client
    |   +-- UnknownJob              no such job (HTTP 404)
    +-- StackError                  the local stack cannot start or is not running
    +-- RenderError                 POV-Ray failed on a unit (carries the log tail)
    +-- TransientError              contention, unavailable, deadline: retry (HTTP 503)
    +-- PoisonMessage               an event that can never succeed: acknowledge and log

Adapters map vendor errors (google.api_core) into these with ``from_google``.
"""

from __future__ import annotations


class PovstormError(Exception):
    retryable = False
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserError(PovstormError):
    http_status = 400


class SpecError(UserError):
    """Validation failed; ``messages`` holds marshmallow's field -> messages."""

    def __init__(self, message: str, messages: dict | None = None) -> None:
        super().__init__(message)
        self.messages = messages or {}


class SceneError(UserError):
    pass


class UnknownJob(UserError):
    http_status = 404

    def __init__(self, job_id: str) -> None:
        super().__init__(f"unknown job: {job_id}")
        self.job_id = job_id


class StackError(PovstormError):
    pass


class RenderError(PovstormError):
    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class TransientError(PovstormError):
    retryable = True
    http_status = 503


class PoisonMessage(PovstormError):
    """Never succeeds however often it is delivered: acknowledge it (2xx) and log."""

    http_status = 200


def from_google(exc: BaseException) -> PovstormError:
    """Map a google.api_core exception to the hierarchy (retryable or not)."""
    from google.api_core import exceptions as gexc

    transient = (
        gexc.Aborted,
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.TooManyRequests,
        gexc.InternalServerError,
        gexc.Conflict,
        gexc.ResourceExhausted,
    )
    if isinstance(exc, transient):
        return TransientError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, gexc.NotFound):
        return PovstormError(f"not found: {exc}")
    return PovstormError(f"{type(exc).__name__}: {exc}")
