"""Render one unit: the work behind the render service.

Where it sits in the event flow: a work message (job, unit, attempt) arrives
by Pub/Sub push (Cloud Run, ``povstorm.shells.render_service``) or pull (the local
worker, ``povstorm_local.pull_worker``); ``handle_work`` asks the ledger whether
to render it, materialises the unit's files into a fresh working directory,
runs POV-Ray and uploads what it made:

    logs/<job>/<unit>/attempt-<k>.log   always (POV-Ray's output)
    frames/<job>/<unit>.png             on success, with the render stats as
                                        object metadata; its finalize
                                        notification (not this worker) tells
                                        the ledger the unit is done
    failures topic                      on POV-Ray failure: a FailureReport

Acknowledge or not: every ``RenderOutcome`` means "acknowledge"; a
``TransientError`` escapes so the message is redelivered. A worker that dies
mid-render is noticed through ``UnitTicket.deliveries``.
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from povstorm.cloud.clients import Clients
from povstorm.core.errors import PoisonMessage, SpecError, UnknownJob
from povstorm.core.model import FailureReport, RenderStats, WorkMessage
from povstorm.core.naming import frame_object, log_object
from povstorm.core.schemas import encode_message, load_work_message
from povstorm.core.spec import JobSpec
from povstorm.povray import PovrayRun, error_line, parse_stats, run_povray, tail
from povstorm.worker.inputs import InputCache, materialise

if TYPE_CHECKING:
    from povstorm.ledger.ledger import Ledger

log = logging.getLogger(__name__)

# A unit whose attempt was started this many times without an outcome keeps
# killing its worker (out of memory, a crash in POV-Ray): report it failed.
MAX_DELIVERIES = 3


class RenderStatus(enum.StrEnum):
    """What became of a work message; the workers' log line prints the value."""

    RENDERED = "rendered"  # the frame is uploaded; its finalize event counts it
    FAILED = "failed"  # the attempt failed and a FailureReport is published
    SKIPPED = "skipped"  # unknown job, job finished or cancelled, unit settled, stale attempt
    POISON = "poison"  # a message that can never be rendered


@dataclass(frozen=True)
class RenderOutcome:
    """What became of one work message. Every outcome is acknowledged."""

    status: RenderStatus
    job_id: str = ""
    unit: int = -1
    attempt: int = 0
    detail: str = ""
    seconds: float = 0.0
    stats: RenderStats | None = None
    frame: str = ""  # the frame object, when rendered

    def line(self) -> str:
        """The one log line per unit that workers print."""
        what = (
            f"{self.job_id} unit {self.unit} attempt {self.attempt}" if self.job_id else "message"
        )
        tail = f": {self.detail}" if self.detail else ""
        return f"{what} {self.status} in {self.seconds:.2f}s{tail}"


# --- the unit ------------------------------------------------------------------


def handle_work(
    clients: Clients, ledger: Ledger, message: bytes | str | WorkMessage, *, cache: InputCache
) -> RenderOutcome:
    """Render the unit a work message names. Raises TransientError when the
    message should be redelivered; every returned outcome is acknowledged."""
    started = time.monotonic()
    try:
        work = message if isinstance(message, WorkMessage) else load_work_message(message)
    except PoisonMessage as exc:
        log.warning("poison work message acknowledged: %s", exc)
        return RenderOutcome(RenderStatus.POISON, detail=str(exc))

    def done(status: RenderStatus, detail: str = "", **kw: Any) -> RenderOutcome:
        return RenderOutcome(
            status, work.job_id, work.unit, work.attempt, detail, time.monotonic() - started, **kw
        )

    worker = clients.settings.worker_id or f"{os.uname().nodename}:{os.getpid()}"
    try:
        ticket = ledger.start_unit(work.job_id, work.unit, work.attempt, worker)
    except UnknownJob as exc:
        log.warning("work for an unknown job acknowledged: %s", exc)
        return done(RenderStatus.SKIPPED, str(exc))
    if ticket is None:
        return done(
            RenderStatus.SKIPPED, "job finished or cancelled, unit settled, or attempt stale"
        )
    if ticket.deliveries > MAX_DELIVERIES:
        error = f"worker lost {ticket.deliveries - 1} times while rendering this unit"
        _report(clients, work, error, "", worker)
        return done(RenderStatus.FAILED, error)

    spec: JobSpec = ticket.spec
    timeout = min(spec.timeout_seconds, clients.settings.render_timeout or spec.timeout_seconds)
    sandbox = Path(tempfile.mkdtemp(prefix=f"povstorm-{work.job_id}-{work.unit}-"))
    try:
        workdir = sandbox / "work"
        workdir.mkdir()
        try:
            materialise(clients, cache, spec, ticket.unit_spec, workdir)
        except SpecError as exc:
            # A refused name, a missing or corrupt input: no attempt can
            # succeed, so the report says it is final.
            error = f"cannot prepare the unit: {exc}"
            _report(clients, work, error, "", worker, final=True)
            return done(RenderStatus.FAILED, error)
        except OSError as exc:  # a full disk, say: another worker may do better
            error = f"cannot prepare the unit: {exc}"
            _report(clients, work, error, "", worker)
            return done(RenderStatus.FAILED, error)

        library = [workdir] + ([workdir / spec.inputs_dir] if spec.inputs_dir else [])
        run = run_povray(
            ticket.unit_spec.args, workdir, sandbox / "out", timeout=timeout, library=library
        )
        clients.blobs.upload_bytes(
            log_object(work.job_id, work.unit, work.attempt),
            run.output.encode(),
            content_type="text/plain; charset=utf-8",
        )
        failure = _failure(run, timeout)
        if failure:
            _report(clients, work, failure, tail(run.output), worker)
            return done(RenderStatus.FAILED, failure)

        seconds, peak = parse_stats(run.output)
        # A frame's render time is what POV-Ray took as a process (start-up,
        # parse and trace): what rendering the frames one after another costs.
        stats = RenderStats(
            render_seconds=run.wall_seconds,
            cpu_seconds=run.cpu_seconds,
            peak_memory_bytes=peak if peak is not None else run.maxrss_bytes,
            worker=worker,
        )
        frame = (
            spec.povray.frames.frame(work.unit) if spec.povray and spec.povray.animated else None
        )
        metadata = {
            **stats.to_metadata(),
            "attempt": str(work.attempt),
            "frame": "" if frame is None else str(frame),
            # POV-Ray's own parse + trace time, without its start-up.
            "trace_seconds": "" if seconds is None else f"{seconds:.3f}",
        }
        name = frame_object(work.job_id, work.unit)
        clients.blobs.upload_file(name, run.images[0], content_type="image/png", metadata=metadata)
        return done(
            RenderStatus.RENDERED, f"{stats.render_seconds:.3f}s render", stats=stats, frame=name
        )
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


def _failure(run: PovrayRun, timeout: float) -> str:
    """The one-line error of a failed run, or "" if it made its one image."""
    if run.timed_out:
        return f"POV-Ray timed out after {timeout:g} s and was killed"
    if run.returncode != 0:
        return error_line(run.output) or f"POV-Ray exited with status {run.returncode}"
    if not run.images:
        return error_line(run.output) or "POV-Ray exited normally but wrote no image"
    if len(run.images) > 1:
        return f"POV-Ray wrote {len(run.images)} images; a unit must render exactly one frame"
    return ""


def _report(
    clients: Clients, work: WorkMessage, error: str, log_tail: str, worker: str, final: bool = False
) -> None:
    report = FailureReport(
        job_id=work.job_id,
        unit=work.unit,
        attempt=work.attempt,
        error=error,
        log_tail=log_tail,
        worker=worker,
        final=final,
    )
    clients.publisher.publish("failures", encode_message(report))
