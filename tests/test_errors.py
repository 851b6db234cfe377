"""What a vendor error becomes (``translate``) and what each error means where
it surfaces (``verdict``): a Pub/Sub handler's ack, an HTTP status, an exit
code. No stack: google.api_core's exceptions are built directly."""

from __future__ import annotations

import logging

import pytest
from google.api_core import exceptions as gexc

from povstorm.core.errors import (
    IllegalTransition,
    NotFound,
    PoisonMessage,
    PovstormError,
    RenderError,
    SceneError,
    SpecError,
    StackError,
    StitchFailed,
    TransientError,
    UnknownJob,
    UserError,
    translate,
    verdict,
)

TRANSIENT = [
    gexc.Aborted,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.Conflict,
    gexc.ResourceExhausted,
]
PLAIN = [
    gexc.PermissionDenied,
    gexc.Unauthenticated,
    gexc.InvalidArgument,
    gexc.FailedPrecondition,
    gexc.BadRequest,
    gexc.AlreadyExists,
]


def raised(exc: BaseException, **kwargs: bool) -> BaseException:
    """What comes out of a translate() block that raises ``exc``."""
    with pytest.raises(BaseException) as caught, translate("storage", **kwargs):
        raise exc
    return caught.value


@pytest.mark.parametrize("cls", TRANSIENT, ids=lambda c: c.__name__)
def test_contention_and_outages_become_transient(cls: type[gexc.GoogleAPICallError]) -> None:
    original = cls("stand-in")
    err = raised(original)
    assert type(err) is TransientError and err.retryable
    assert str(err).startswith(f"storage: {cls.__name__}: ")
    assert err.__cause__ is original


def test_an_exhausted_retry_is_transient() -> None:
    err = raised(gexc.RetryError("deadline of 1.0s exceeded", cause=gexc.ServiceUnavailable("x")))
    assert type(err) is TransientError


def test_a_missing_object_becomes_povstorms_not_found() -> None:
    err = raised(gexc.NotFound("no such object: frames/j/000001.png"))
    assert type(err) is NotFound and not err.retryable
    assert "frames/j/000001.png" in str(err)


@pytest.mark.parametrize("cls", PLAIN, ids=lambda c: c.__name__)
def test_other_vendor_errors_become_plain_povstorm_errors(
    cls: type[gexc.GoogleAPICallError],
) -> None:
    err = raised(cls("stand-in"))
    assert type(err) is PovstormError and not err.retryable


def test_an_unreachable_endpoint_is_transient_only_where_the_caller_says_so() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    err = raised(refused, network=True)
    assert type(err) is TransientError and "unreachable" in str(err)
    assert raised(refused) is refused  # a local file error must stay what it is


def test_povstorm_errors_and_other_exceptions_pass_through_untouched() -> None:
    for exc in (UnknownJob("j"), TransientError("busy"), KeyError("k"), ValueError("v")):
        assert raised(exc, network=True) is exc


def test_a_block_that_raises_nothing_returns_its_value() -> None:
    with translate("storage", network=True):
        value = 42
    assert value == 42


# --- verdict ----------------------------------------------------------------------------

# class -> (ack, http_status, exit_code, log_level)
MEANINGS: list[tuple[BaseException, bool, int, int, int]] = [
    (PoisonMessage("not json"), True, 200, 1, logging.WARNING),
    (UnknownJob("gone"), True, 404, 2, logging.WARNING),
    (SpecError("fps: too big"), True, 400, 2, logging.ERROR),
    (SceneError("scene.pov: not found"), True, 400, 2, logging.ERROR),
    (UserError("bad"), True, 400, 2, logging.ERROR),
    (NotFound("not found: x"), True, 404, 1, logging.ERROR),
    (StackError("not running"), True, 500, 1, logging.ERROR),
    (RenderError("Parse Error"), True, 500, 1, logging.ERROR),
    (StitchFailed("ffmpeg: broken"), True, 500, 1, logging.ERROR),
    (IllegalTransition("done -> pending"), True, 500, 1, logging.ERROR),
    (PovstormError("PermissionDenied: no"), True, 500, 1, logging.ERROR),
    (TransientError("contended"), False, 503, 1, logging.WARNING),
    # A bug or a broken machine: redelivered, and a failed command.
    (KeyError("k"), False, 500, 1, logging.ERROR),
    (OSError("disk full"), False, 500, 1, logging.ERROR),
]


@pytest.mark.parametrize(
    ("exc", "ack", "http_status", "exit_code", "log_level"),
    MEANINGS,
    ids=[type(m[0]).__name__ for m in MEANINGS],
)
def test_verdict_says_what_each_error_means(
    exc: BaseException, ack: bool, http_status: int, exit_code: int, log_level: int
) -> None:
    v = verdict(exc)
    assert (v.ack, v.http_status, v.exit_code, v.log_level) == (
        ack,
        http_status,
        exit_code,
        log_level,
    )


def test_a_translated_vendor_error_gets_the_verdict_of_what_it_became() -> None:
    assert not verdict(raised(gexc.ServiceUnavailable("down"))).ack
    assert verdict(raised(gexc.NotFound("gone"))).http_status == 404
    assert verdict(raised(gexc.PermissionDenied("no"))).ack
