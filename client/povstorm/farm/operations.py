"""The farm's operations: each one a ledger transaction followed, after
commit, by its side effects (publish, launch, announce the job's move on
``job_events``). Called by the thin shells in
functions/, render_container/, stitch_container/ and the reconciler.

A side effect that fails after commit is left for the reconciler (a claimed
stitch that never launched, a requeued unit never published); the event that
caused it is still acknowledged, because its count is already recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import replace
from typing import Any

from marshmallow import ValidationError

from povstorm.cloud.clients import Clients
from povstorm.cloud.pubsub import publish_job_event
from povstorm.core import cost
from povstorm.core.chunks import (
    MAX_FRAMES_PER_UNIT,
    chunkable,
    dispatch_ranks,
    job_plan,
    runs,
)
from povstorm.core.errors import PoisonMessage, PovstormError, SpecError, UnknownJob
from povstorm.core.model import FailureReport, FrameEvent, JobEvent, JobState, WorkMessage
from povstorm.core.naming import (
    cancel_marker,
    frames_prefix,
    log_object,
    manifest_object,
    new_job_id,
    restitch_object,
    video_key,
)
from povstorm.core.schemas import OutputSchema, dump_job_spec, encode_message, load_job_spec
from povstorm.core.spec import CODECS, CONTAINERS, JobSpec, OutputSpec, container_for
from povstorm.ledger.docs import JobDoc, scene_family, scene_key
from povstorm.ledger.ledger import Ledger, Outcome, OutcomeKind, now
from povstorm.ledger.views import spec_of

log = logging.getLogger(__name__)


def submit(clients: Clients, payload: Any) -> dict[str, Any]:
    """Validate a job spec, write its manifest and the job, publish one
    message per chunk."""
    spec = load_job_spec(payload)
    ledger = Ledger(clients.db)
    job_id = spec.job_id or new_job_id()
    plan: dict[str, Any] = {"slots": clients.settings.render_slots}
    if chunkable(spec):
        stats = ledger.last_stats_of(scene_key(spec), scene_family(spec)) or {}
        plan["frame_seconds"] = (stats.get("render_seconds") or {}).get("p50")
        # Each frame's time, if the last job rendered the same frames.
        profile = stats.get("frame_profile") or {}
        if profile.get("units") == spec.unit_count and profile.get("seconds"):
            plan["frame_profile"] = profile["seconds"]
        elif plan["frame_seconds"] is None and spec.estimate is not None:
            # A scene the farm has not rendered: the client's estimate.
            plan["frame_profile"] = list(spec.estimate.seconds)
            plan["estimate"] = spec.estimate.source
    at = now()
    write_manifest(clients, job_id, spec, plan, at)
    job, created = ledger.create_job(
        spec,
        job_id,
        plan,
        at,
        cost.resources(clients.settings),
        retention_days=clients.settings.jobs_retention_days,
    )
    if created:
        publish_job_event(clients.publisher, JobEvent(job_id, JobState.SUBMITTED, at=at))
    if created or job.state == JobState.SUBMITTED:
        messages = chunk_messages(job, spec)
        publish_work(clients, messages)
        ledger.mark_dispatched(job_id)
        publish_job_event(
            clients.publisher, JobEvent(job_id, JobState.RENDERING, JobState.SUBMITTED)
        )
        start_tasks(clients, ledger, job_id, len(messages))
    return {"job_id": job_id, "units_expected": spec.unit_count, "created": created}


def write_manifest(
    clients: Clients, job_id: str, spec: JobSpec, plan: dict[str, Any], created: dt.datetime
) -> None:
    """The job as submitted, in the bucket before it is in the ledger: what
    ``rebuild_job`` makes its ledger entry from again if the ledger loses it
    (the local stack's Firestore emulator, killed between two snapshots). The
    first submission's manifest stays: a retry with the same id is the same
    job, and another spec under a taken id is refused by ``create_job``."""
    name = manifest_object(job_id)
    if clients.blobs.exists(name):
        return
    manifest = {
        "job_id": job_id,
        "spec": dump_job_spec(spec),
        "plan": plan,
        "created_at": created.isoformat(),
    }
    clients.blobs.upload_bytes(name, json.dumps(manifest).encode(), content_type="application/json")


def rebuild_job(clients: Clients, ledger: Ledger, job_id: str) -> bool:
    """The ledger entry of a job the ledger lost, made again from its
    manifest (units pending, dispatched): the reconciler then counts the
    frames the bucket holds and publishes the rest. False if the ledger has
    the job."""
    if ledger.get_job(job_id) is not None:
        return False
    try:
        manifest = json.loads(clients.blobs.read_bytes(manifest_object(job_id)))
        spec = load_job_spec(manifest["spec"])
        created = dt.datetime.fromisoformat(manifest["created_at"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PoisonMessage(f"unreadable manifest of job {job_id}: {exc}") from None
    _, rebuilt = ledger.create_job(
        spec,
        job_id,
        manifest.get("plan") or {},
        created,
        cost.resources(clients.settings),
        retention_days=clients.settings.jobs_retention_days,
    )
    ledger.mark_dispatched(job_id)
    return rebuilt


def chunk_messages(job: JobDoc, spec: JobSpec, units: set[int] | None = None) -> list[WorkMessage]:
    """The first attempt's work messages of a job, by the plan it was made
    with; with ``units``, only those units, each chunk cut to the runs of
    them it holds (the reconciler's redispatch)."""
    chunks = job_plan(spec, job.plan)
    out = []
    for first, count in chunks:
        members = range(first, first + count)
        pieces = runs([u for u in members if u in units]) if units is not None else [(first, count)]
        out += [WorkMessage(job.job_id, a, 1, n) for a, n in pieces]
    return out


def coalesce(messages: list[WorkMessage], spec: JobSpec) -> list[WorkMessage]:
    """Single-unit messages of a chunkable job as chunks: contiguous units at
    the same attempt share a POV-Ray process (a retry of many failed frames).
    The chunks of an attempt come coarse to fine, as a plan's
    (``dispatch_ranks``: the first, the last, the middle one...)."""
    if not chunkable(spec):
        return messages
    by_attempt: dict[int, list[int]] = {}
    for m in messages:
        by_attempt.setdefault(m.attempt, []).extend(m.units)
    out = []
    for attempt, units in sorted(by_attempt.items()):
        chunks = []
        for first, count in runs(sorted(set(units))):
            for a in range(first, first + count, MAX_FRAMES_PER_UNIT):
                n = min(MAX_FRAMES_PER_UNIT, first + count - a)
                chunks.append(WorkMessage(messages[0].job_id, a, attempt, n))
        out += [chunks[rank] for rank in dispatch_ranks(len(chunks))]
    return out


def publish_work(clients: Clients, messages: list[WorkMessage]) -> None:
    for i in range(0, len(messages), 1000):
        clients.publisher.publish_many("work", [encode_message(m) for m in messages[i : i + 1000]])


def start_tasks(
    clients: Clients, ledger: Ledger, job_id: str, chunks: int, *, only_if_idle: bool = False
) -> str | None:
    """After ``chunks`` chunks of a job are published: start render tasks for
    them, as many as there are chunks and free slots (``render_slots`` less
    the tasks already running, which pull any job's chunks); none when every
    slot is taken (the running tasks pull the chunks as they finish theirs:
    a task exits idle only right after a pull found nothing, and a chunk
    published as one exits is the reconciler's, which starts tasks for units
    left pending while slots are free), and none with ``only_if_idle``
    while any task runs (a requeued frame). Records the execution on the
    job, for cancel. A failed launch is logged and left to the reconciler;
    returns the execution, or None."""
    render = clients.render
    if render is None or chunks <= 0:
        return None
    try:
        active = render.active()
        free = clients.settings.render_slots - active
        if free <= 0 or (only_if_idle and active > 0):
            return None
        execution = render.launch(job_id, min(chunks, free))
    except PovstormError as exc:
        log.error("render launch for %s failed, the reconciler will retry: %s", job_id, exc)
        return None
    ledger.note_execution(job_id, execution)
    return execution


def launch_stitch(clients: Clients, ledger: Ledger, job_id: str) -> None:
    try:
        clients.launcher.launch(job_id)
    except PovstormError as exc:
        log.error("stitch launch for %s failed, the reconciler will retry: %s", job_id, exc)
        return
    ledger.mark_launched(job_id)


def announce_end(clients: Clients, outcome: Outcome) -> None:
    """A count that ended the rendering (the claim of the stitch, or a failed
    job: the last shard folded, or fail-fast) says so on ``job_events``."""
    if outcome.job_state is not None:
        publish_job_event(clients.publisher, JobEvent(outcome.job_id, outcome.job_state))


def on_frame_event(clients: Clients, event: FrameEvent) -> Outcome | None:
    """A GCS finalize notification. Not a frame of ours: acknowledge and log."""
    if event.bucket != clients.settings.bucket:
        raise PoisonMessage(f"event for another bucket: {event.bucket}")
    if not event.name.startswith(frames_prefix("").rstrip("/")):
        log.debug("ignoring %s", event.name)
        return None
    ledger = Ledger(clients.db)
    outcome = ledger.record_frame(event.name, event.generation, event.metadata, event.size)
    log.info("frame %s gen %s: %s", event.name, event.generation, outcome.kind)
    announce_end(clients, outcome)
    if outcome.launch_stitch:
        launch_stitch(clients, ledger, outcome.job_id)
    if outcome.kind == OutcomeKind.RECORDED and outcome.job_state is None:
        enforce_budget(clients, ledger, outcome.job_id)
    return outcome


# Jobs this process found without a budget: a spec never changes, so their
# next frames skip the check without reading the job again.
_UNBUDGETED: set[str] = set()
_UNBUDGETED_MAX = 10_000


def enforce_budget(clients: Clients, ledger: Ledger, job_id: str) -> str | None:
    """After a frame of a rendering job is counted: cancel the job if its
    cost so far, or (once enough frames are done to project) its projected
    cost, passes its spec's ``budget_usd`` (core/cost.py: over_budget).
    Returns the reason, which the job keeps, or None. Cheap on the frame
    path: a job without a budget costs one read per process; one with a
    budget, a read of the job and one aggregation over its shards (billed as
    one read) per frame; no write unless it cancels. A failure is logged and
    acknowledged, as any side effect after the count: the next frame checks."""
    if job_id in _UNBUDGETED:
        return None
    try:
        job = ledger.job(job_id)
        budget = job.spec.get("budget_usd")
        if budget is None:
            if len(_UNBUDGETED) >= _UNBUDGETED_MAX:
                _UNBUDGETED.clear()
            _UNBUDGETED.add(job_id)
            return None
        if job.state not in (JobState.SUBMITTED, JobState.RENDERING):
            return None
        render, stitch = cost.shapes(job.resources)
        usage = cost.Usage(*ledger.usage(job_id))
        reason = cost.over_budget(usage, job.units_expected, float(budget), render, stitch)
        if reason is None or cancel(clients, job_id, reason=reason) != JobState.CANCELLED:
            return None
    except PovstormError as exc:
        log.warning("budget check of %s failed; the next frame checks again: %s", job_id, exc)
        return None
    log.warning("job %s cancelled: %s", job_id, reason)
    return reason


def on_failure(clients: Clients, report: FailureReport) -> Outcome:
    ledger = Ledger(clients.db)
    outcome = ledger.record_failure(
        report.job_id,
        report.unit,
        report.attempt,
        report.error,
        log_object=log_object(report.job_id, report.unit, report.attempt),
        worker=report.worker,
        final=report.final,
    )
    log.info(
        "failure %s/%s attempt %s: %s", report.job_id, report.unit, report.attempt, outcome.kind
    )
    announce_end(clients, outcome)
    if outcome.requeue:
        publish_work(clients, [outcome.requeue])
        ledger.mark_queued(outcome.requeue)
        start_tasks(clients, ledger, report.job_id, 1, only_if_idle=True)
    if outcome.launch_stitch:
        launch_stitch(clients, ledger, outcome.job_id)
    return outcome


def on_dead_letter(clients: Clients, message: WorkMessage) -> Outcome:
    """Pub/Sub gave up delivering a work message: that attempt failed."""
    return on_failure(
        clients,
        FailureReport(
            job_id=message.job_id,
            unit=message.unit,
            attempt=message.attempt,
            error="delivery attempts exhausted: the render service never acknowledged this unit",
        ),
    )


def restitch_output(
    own: OutputSpec,
    *,
    fps: int | None = None,
    codec: str | None = None,
    crf: int | None = None,
    format: str | None = None,
) -> OutputSpec:
    """The settings of another video of a job: each one given, else the job's
    own (its container if it fits the codec, else the codec's first), checked
    as submit checks a spec's (core/schemas.py: OutputSchema, the bounds and
    tables of core/spec.py). SpecError for a setting out of range or a
    format the codec does not go in."""
    codec = codec or own.codec
    settings = {
        "fps": own.fps if fps is None else fps,
        "codec": codec,
        "crf": own.crf if crf is None else crf,
        "format": format
        or container_for(replace(own, codec=codec if codec in CODECS else own.codec)),
    }
    try:
        output: OutputSpec = OutputSchema().load(settings)
    except ValidationError as exc:
        name, messages = next(iter(exc.normalized_messages().items()))
        raise SpecError(f"--{name} {settings.get(name)}: {' '.join(map(str, messages))}") from None
    if output.format not in CONTAINERS[output.codec]:
        raise SpecError(
            f"--format {output.format} does not fit --codec {output.codec}: "
            f"{output.codec} video goes in {', '.join(CONTAINERS[output.codec])}"
        )
    return output


def restitch(
    clients: Clients,
    job_id: str,
    *,
    fps: int | None = None,
    codec: str | None = None,
    crf: int | None = None,
    format: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Ask for another video of a done job from its frames (``povstorm stitch``):
    record the request on the job (``Ledger.request_video``), then, after
    commit, launch its stitch (``JOB --video KEY``) unless it is made or being
    made. Returns (its key, its entry); the stitch completes the entry.
    UnknownJob, or a SpecError for a job that is not done, has no video or
    bad settings; a failed launch raises (asking again launches again)."""
    ledger = Ledger(clients.db)
    job = ledger.job(job_id)
    if job.state != JobState.DONE:
        raise SpecError(
            f"job {job_id} is {job.state}; only a done job's frames can be stitched again"
        )
    own = spec_of(job).output
    if not own.video:
        raise SpecError(f"job {job_id} has no video: its units are not frames")
    output = restitch_output(own, fps=fps, codec=codec, crf=crf, format=format)
    key = video_key(output)
    settings = {
        "fps": output.fps,
        "codec": output.codec,
        "crf": output.crf,
        "format": output.format,
    }
    entry, launch = ledger.request_video(job_id, key, settings, restitch_object(job_id, key))
    if launch:
        clients.launcher.launch(job_id, video=key)
        ledger.mark_video_launched(job_id, key)
    log.info("video %s of %s: %s", key, job_id, "launched" if launch else entry["state"])
    return key, entry


def cancel(clients: Clients, job_id: str, reason: str | None = None) -> str:
    """Cancel the job; once the ledger says so, leave a marker beside its
    manifest, so that a ledger restored from before the cancel cancels it
    again, and stop the render executions launched for it. (Their tasks may
    hold another job's chunk: Pub/Sub gives it to another task once its
    lease lapses, and it resumes after the frames already in the bucket.)
    ``reason``: why the farm cancels it (``enforce_budget``), kept on the job."""
    ledger = Ledger(clients.db)
    state, moved_from = ledger.cancel_move(job_id, reason)
    if state != JobState.CANCELLED:
        return state.value
    if moved_from is not None:  # else it was cancelled before: nothing moved
        publish_job_event(clients.publisher, JobEvent(job_id, JobState.CANCELLED, moved_from))
    clients.blobs.upload_bytes(cancel_marker(job_id), b"", content_type="text/plain")
    if clients.render is not None:
        for execution in (ledger.get_job(job_id) or {}).get("executions") or ():
            try:
                clients.render.cancel(execution)
            except PovstormError as exc:  # its tasks stop on the cancelled job anyway
                log.warning("cannot cancel execution %s: %s", execution, exc)
    return state.value


def retry(clients: Clients, job_id: str) -> int:
    """Requeue the failed units of a failed job; returns how many."""
    ledger = Ledger(clients.db)
    messages = ledger.retry(job_id)
    if messages:
        publish_job_event(clients.publisher, JobEvent(job_id, JobState.RENDERING, JobState.FAILED))
    chunks = coalesce(messages, ledger.get_spec(job_id)) if messages else []
    publish_work(clients, chunks)
    for m in chunks:
        ledger.mark_queued(m)
    start_tasks(clients, ledger, job_id, len(chunks))
    return len(messages)


__all__ = [
    "UnknownJob",
    "announce_end",
    "cancel",
    "chunk_messages",
    "coalesce",
    "enforce_budget",
    "launch_stitch",
    "on_dead_letter",
    "on_failure",
    "on_frame_event",
    "publish_work",
    "rebuild_job",
    "restitch",
    "restitch_output",
    "retry",
    "start_tasks",
    "submit",
    "write_manifest",
]
