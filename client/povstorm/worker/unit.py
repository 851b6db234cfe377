"""Render one work message: the work behind the render service.

Where it sits in the event flow: a render task (``povstorm.shells.render_task``,
a task of the render Cloud Run Job, or of the local stack's task runner)
pulls a work message (job, units ``unit`` to ``unit + count - 1``,
attempt); ``handle_work`` asks the ledger which of its
units to render (``start_chunk``: not the settled ones, nor, on a redelivery,
those whose frame is in the bucket already), materialises the job's files
into a fresh working directory and has ``worker.chunk`` render them, which
uploads, for each unit:

    logs/<job>/<unit>/attempt-<k>.log   always (POV-Ray's output for its frame)
    frames/<job>/<unit>.png             on success, as soon as POV-Ray wrote it,
                                        with the render stats as object
                                        metadata; its finalize notification
                                        (not this worker) tells the ledger the
                                        unit is done
    failures topic                      on failure: a FailureReport
    segments/<job>/<a>-<b>.<ext>        the frames of one POV-Ray process as a
                                        video segment, for the stitch to join

Acknowledge or not: every ``RenderOutcome`` means "acknowledge"; a
``TransientError`` escapes so the message is redelivered. A worker that dies
mid-chunk is noticed through ``UnitTicket.deliveries`` of the frame its
redelivery resumes at.
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
from povstorm.core.model import WorkMessage
from povstorm.core.naming import frame_object
from povstorm.core.schemas import load_work_message
from povstorm.core.spec import JobSpec
from povstorm.worker.cache import FrameCache
from povstorm.worker.chunk import ChunkRender
from povstorm.worker.inputs import InputCache, materialise

if TYPE_CHECKING:
    from povstorm.ledger.ledger import Ledger

log = logging.getLogger(__name__)

# A unit whose attempt was started this many times without an outcome keeps
# killing its worker (out of memory, a crash in POV-Ray): report it failed.
MAX_DELIVERIES = 3


class RenderStatus(enum.StrEnum):
    """What became of a work message; the workers' log line prints the value."""

    # frames uploaded or copied from the frame cache (their finalize events
    # count them), or handed on
    RENDERED = "rendered"
    FAILED = "failed"  # a unit failed: a FailureReport is published for it
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
    count: int = 1  # the units the message named
    frames: tuple[str, ...] = ()  # the frame objects uploaded
    failed: int = 0  # the units reported failed

    def line(self) -> str:
        """The one log line per work message that workers print."""
        units = (
            f"units {self.unit}-{self.unit + self.count - 1}"
            if self.count > 1
            else f"unit {self.unit}"
        )
        what = f"{self.job_id} {units} attempt {self.attempt}" if self.job_id else "message"
        tail = f": {self.detail}" if self.detail else ""
        return f"{what} {self.status} in {self.seconds:.2f}s{tail}"


# --- the unit ------------------------------------------------------------------


def handle_work(
    clients: Clients,
    ledger: Ledger,
    message: bytes | str | WorkMessage,
    *,
    cache: InputCache,
    budget: float | None = None,
) -> RenderOutcome:
    """Render the units a work message names, beginning no frame that would
    end past ``budget`` seconds from now (default: ``Settings.render_timeout``;
    the rest is handed on). Raises TransientError when the message should be
    redelivered; every returned outcome is acknowledged."""
    started = time.monotonic()
    try:
        work = message if isinstance(message, WorkMessage) else load_work_message(message)
    except PoisonMessage as exc:
        log.warning("poison work message acknowledged: %s", exc)
        return RenderOutcome(RenderStatus.POISON, detail=str(exc))

    def done(status: RenderStatus, detail: str = "", **kw: Any) -> RenderOutcome:
        return RenderOutcome(
            status,
            work.job_id,
            work.unit,
            work.attempt,
            detail,
            time.monotonic() - started,
            count=work.count,
            **kw,
        )

    def present(unit: int) -> bool:
        return clients.blobs.exists(frame_object(work.job_id, unit))

    worker = clients.settings.worker_id or f"{os.uname().nodename}:{os.getpid()}"
    try:
        ticket = ledger.start_chunk(
            work.job_id, work.unit, work.count, work.attempt, worker, present=present
        )
    except UnknownJob as exc:
        log.warning("work for an unknown job acknowledged: %s", exc)
        return done(RenderStatus.SKIPPED, str(exc))
    if ticket is None:
        return done(
            RenderStatus.SKIPPED, "job finished or cancelled, units settled, or attempt stale"
        )

    sandbox = Path(tempfile.mkdtemp(prefix=f"povstorm-{work.job_id}-{work.unit}-"))
    try:
        workdir = sandbox / "work"
        workdir.mkdir()
        spec: JobSpec = ticket.spec
        library = [workdir] + ([workdir / spec.inputs_dir] if spec.inputs_dir else [])
        frame_cache = FrameCache(clients, ticket, worker)
        chunk = ChunkRender(
            clients,
            ledger,
            ticket,
            worker=worker,
            sandbox=sandbox,
            workdir=workdir,
            library=library,
            frame_cache=frame_cache,
            budget=budget,
        )
        units = list(ticket.units)
        if ticket.deliveries > MAX_DELIVERIES:
            # The frame its lost workers were rendering: the rest go on.
            error = f"worker lost {ticket.deliveries - 1} times while rendering this unit"
            chunk.report(units[0], error)
            chunk.result.failed.append((units[0], error))
            units = units[1:]
        # Frames rendered before, by content: copied in, not rendered.
        chunk.result.cached = frame_cache.reuse(units)
        units = [u for u in units if u not in chunk.result.cached]
        if units:
            try:
                materialise(clients, cache, spec, ticket.unit_spec, workdir)
            except (SpecError, OSError) as exc:
                # A refused name, a missing or corrupt input: no attempt can
                # succeed, so the report says it is final. A full disk (OSError):
                # another worker may do better.
                error = f"cannot prepare the unit: {exc}"
                for unit in units:
                    chunk.report(unit, error, final=isinstance(exc, SpecError))
                return done(RenderStatus.FAILED, error, failed=len(units))
            chunk.render(units)
        result = chunk.result
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
    detail = ", ".join(
        part
        for part in (
            f"{len(result.rendered)} rendered" if result.rendered else "",
            f"{len(result.cached)} from the cache" if result.cached else "",
            f"{len(result.failed)} failed: {result.failed[0][1]}" if result.failed else "",
            f"{len(result.handed_on)} handed on" if result.handed_on else "",
            "job cancelled" if result.cancelled else "",
        )
        if part
    )
    if result.failed:
        status = RenderStatus.FAILED
    elif result.rendered or result.cached or result.handed_on:
        status = RenderStatus.RENDERED
    else:
        status = RenderStatus.SKIPPED
    return done(
        status,
        detail,
        frames=tuple(frame_object(work.job_id, u) for u in sorted(result.rendered + result.cached)),
        failed=len(result.failed),
    )
