"""The reconciler: repairs what a crash or a lost event left undone.

Runs periodically (locally a loop in the stack; on GCP Cloud Scheduler calls
the ``reconcile`` function). Every repair goes through the same ledger
transactions as the events themselves, so it is idempotent and safe to run
twice at once:

* a job stuck in ``submitted`` (the submitter died mid-dispatch): republish
  its pending units and mark it rendering;
* a requeued or handed-on unit whose message was never confirmed published:
  republish;
* a unit whose frame object exists but whose finalize event was lost (or
  arrived before the job existed): record it from the bucket listing;
* a unit stuck in ``rendering`` past its deadline: republish its attempt (the
  worker's delivery count turns repeated crashes into a failure);
* a claimed stitch that never launched, or launched and never finished:
  launch it again (the stitch is idempotent; the ledger records one result);
* a job with open units while no render task runs (a launch that failed,
  tasks that gave up or exited idle as a requeue came), or with units
  pending past the dispatch deadline while render slots are free: start
  tasks;
* a job that ended with a ``notify`` URL and no delivery under way minutes
  later (its end's event was never published, or lost: a restarted Pub/Sub
  emulator keeps no message): publish the event again (farm/notify.py
  delivers it once).

``resume`` is the same pass after a restart of the stack (the local stack's
``up``), with nothing left to wait for: the ledger came back from a snapshot
and the work queue, if it restarted too, came back empty.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from povstorm.cloud.clients import Clients
from povstorm.cloud.pubsub import publish_job_event
from povstorm.core.errors import PoisonMessage, PovstormError
from povstorm.core.model import DeliveryState, JobEvent, JobState, UnitState, WorkMessage
from povstorm.core.naming import (
    cancel_marker,
    frames_prefix,
    manifests_prefix,
    parse_frame_object,
    parse_manifest_object,
)
from povstorm.farm.cache import trim_if_due
from povstorm.farm.operations import (
    announce_end,
    chunk_messages,
    coalesce,
    launch_stitch,
    publish_work,
    rebuild_job,
    start_tasks,
)
from povstorm.ledger.docs import JobDoc, ShardDoc
from povstorm.ledger.ledger import Ledger, now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deadlines:
    dispatch: dt.timedelta = dt.timedelta(seconds=60)
    requeue_publish: dt.timedelta = dt.timedelta(seconds=30)
    lost_event: dt.timedelta = dt.timedelta(seconds=20)
    render_margin: dt.timedelta = dt.timedelta(seconds=120)
    stitch_launch: dt.timedelta = dt.timedelta(seconds=30)
    stitch_run: dt.timedelta = dt.timedelta(minutes=30)
    # An ended job to notify whose delivery has not begun this long after.
    notify: dt.timedelta = dt.timedelta(minutes=5)
    # ...or whose pending delivery has had no attempt for this long: longer
    # than the push subscription's longest backoff (600 s), so its event is lost.
    notify_stalled: dt.timedelta = dt.timedelta(minutes=15)
    # ...among the jobs that ended this recently (one query's worth).
    notify_window: dt.timedelta = dt.timedelta(hours=1)


@dataclass
class Report:
    rebuilt: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)
    republished: list[tuple[str, int]] = field(default_factory=list)
    recovered: list[tuple[str, int]] = field(default_factory=list)
    relaunched: list[str] = field(default_factory=list)
    tasks_started: list[str] = field(default_factory=list)  # jobs given render tasks
    renotified: list[str] = field(default_factory=list)  # ends whose event went out again
    cache_trimmed: int = 0  # frame cache entries deleted past its limits
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rebuilt": self.rebuilt,
            "cancelled": self.cancelled,
            "redispatched": self.redispatched,
            "republished": [f"{j}/{u}" for j, u in self.republished],
            "recovered": [f"{j}/{u}" for j, u in self.recovered],
            "relaunched": self.relaunched,
            "tasks_started": self.tasks_started,
            "renotified": self.renotified,
            "cache_trimmed": self.cache_trimmed,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class Restart:
    """What a restart of the stack lost: the work queue's messages (the
    Pub/Sub emulator keeps none), and every stitch but those in ``stitching``
    (the jobs whose stitch process still runs)."""

    work_lost: bool
    stitching: frozenset[str] = frozenset()


# ``resume``'s deadlines: nothing to wait for (its stitches follow ``Restart``).
IMMEDIATE = Deadlines(
    dispatch=dt.timedelta(0), requeue_publish=dt.timedelta(0), lost_event=dt.timedelta(0)
)


def _older(ts: Any, age: dt.timedelta, at: dt.datetime) -> bool:
    return ts is None or ts < at - age


def reconcile(clients: Clients, deadlines: Deadlines | None = None) -> Report:
    deadlines = deadlines or Deadlines()
    ledger = Ledger(clients.db)
    report = Report()
    jobs = list(ledger.active_jobs())
    for job in jobs:
        try:
            _reconcile_job(clients, ledger, job, deadlines, report)
        except PovstormError as exc:
            report.errors.append(f"{job.job_id}: {exc}")
            log.warning("reconcile %s: %s", job.job_id, exc)
    _start_tasks(clients, ledger, jobs, deadlines, report)
    try:
        _renotify(clients, ledger, deadlines, report)
    except PovstormError as exc:
        report.errors.append(f"notifications: {exc}")
    settings = clients.settings
    try:
        removed = trim_if_due(
            clients.blobs,
            max_days=settings.frame_cache_days,
            max_bytes=settings.frame_cache_bytes,
        )
    except PovstormError as exc:
        report.errors.append(f"frame cache: {exc}")
    else:
        report.cache_trimmed = removed.entries if removed else 0
    return report


def _start_tasks(
    clients: Clients, ledger: Ledger, jobs: list[JobDoc], d: Deadlines, report: Report
) -> None:
    """Render tasks for rendering jobs whose chunks wait with nobody to pull
    them: every open unit when no task runs (a launch that failed, tasks
    that gave up or exited idle as a requeue came; a dead task's chunk comes
    back when its lease lapses), else the units pending longer than the
    dispatch deadline while slots are free (tasks that spent their budget
    and handed their chunks' rest on, an execution that got fewer tasks
    than its chunks). ``jobs``: the pass's active jobs, in the order the
    ledger lists them, until the slots are full (a job that ended meanwhile
    has no open units)."""
    at = now()
    due = [
        j for j in jobs if j.state == JobState.RENDERING and _older(j.started_at, d.dispatch, at)
    ]
    if clients.render is None or not due:
        return
    try:
        active = clients.render.active()
        for job in due:
            if active >= clients.settings.render_slots:
                return
            units = ledger.units(job.job_id, (UnitState.PENDING, UnitState.RENDERING))
            if active > 0:
                units = [
                    u
                    for u in units
                    if u.state == UnitState.PENDING and _older(u.updated_at, d.dispatch, at)
                ]
            if not units:
                continue
            # As many tasks as the plan's chunks that hold them: the messages
            # waiting in the subscription are those chunks (or their rests).
            chunks = chunk_messages(job, ledger.get_spec(job.job_id), {u.unit for u in units})
            if start_tasks(clients, ledger, job.job_id, len(chunks)):
                report.tasks_started.append(job.job_id)
                active = clients.render.active()
    except PovstormError as exc:
        report.errors.append(f"render tasks: {exc}")


def _renotify(clients: Clients, ledger: Ledger, d: Deadlines, report: Report) -> None:
    """The end of a job with a ``notify`` URL whose delivery never began
    (no record for this end ``d.notify`` after it), or stopped while pending
    (no attempt for ``d.notify_stalled``): its event was not published (a
    publish that failed after the commit) or was lost. Publish it again; the
    delivery's own record keeps it to one accepted POST."""
    at = now()
    for job in ledger.finished_since(at - d.notify_window):
        if not (job.state.terminal and job.spec.get("notify")):
            continue
        record = job.delivery or {}
        if record.get("id") == job.delivery_id:
            due = record.get("state") == DeliveryState.PENDING and _older(
                record.get("last_at"), d.notify_stalled, at
            )
        else:
            due = _older(job.finished_at, d.notify, at)
        if due:
            publish_job_event(clients.publisher, JobEvent(job.job_id, job.state))
            report.renotified.append(job.job_id)


def resume(clients: Clients, restart: Restart) -> Report:
    """The reconciler's pass right after a restart: every job whose manifest
    the bucket holds and the ledger lost made again, every job cancelled
    before the restart cancelled again, every frame in the bucket counted,
    every open unit whose message was lost published again, every stitch
    that no longer runs launched again."""
    ledger = Ledger(clients.db)
    report = Report()
    rebuilt: set[str] = set()
    known = ledger.job_ids()  # one query, not a read per manifest
    for blob in clients.blobs.list(manifests_prefix()):
        try:
            job_id = parse_manifest_object(blob.name)
        except PoisonMessage:
            continue  # a cancel marker
        if job_id in known:
            continue
        try:
            if rebuild_job(clients, ledger, job_id):
                rebuilt.add(job_id)
        except PovstormError as exc:
            report.errors.append(f"{blob.name}: {exc}")
    report.rebuilt = sorted(rebuilt)
    # A rebuilt job's messages, if the queue kept them, were dropped while
    # the ledger did not know the job: its work is lost either way.
    jobs = list(ledger.active_jobs())
    for job in jobs:
        lost = restart if job.job_id not in rebuilt else replace(restart, work_lost=True)
        try:
            if clients.blobs.exists(cancel_marker(job.job_id)):
                _, moved_from = ledger.cancel_move(job.job_id)
                if moved_from is not None:
                    event = JobEvent(job.job_id, JobState.CANCELLED, moved_from)
                    publish_job_event(clients.publisher, event)
                report.cancelled.append(job.job_id)
                continue
            _reconcile_job(clients, ledger, job, IMMEDIATE, report, lost)
        except PovstormError as exc:
            report.errors.append(f"{job.job_id}: {exc}")
    _start_tasks(clients, ledger, jobs, IMMEDIATE, report)
    return report


def _reconcile_job(
    clients: Clients,
    ledger: Ledger,
    job: JobDoc,
    d: Deadlines,
    report: Report,
    restart: Restart | None = None,
) -> None:
    job_id = job.job_id
    at = now()
    if job.state == JobState.STITCHING:
        stitch = job.stitch or {}
        launched = stitch.get("launched_at")
        if restart is not None:
            due = job_id not in restart.stitching
        else:
            due = (launched is None and _older(stitch.get("claimed_at"), d.stitch_launch, at)) or (
                launched is not None and _older(launched, d.stitch_run, at)
            )
        if due:
            launch_stitch(clients, ledger, job_id)
            report.relaunched.append(job_id)
        return

    if job.state == JobState.SUBMITTED and _older(job.created_at, d.dispatch, at):
        pending = {u.unit for u in ledger.units(job_id, (UnitState.PENDING,))}
        messages = chunk_messages(job, ledger.get_spec(job_id), pending)
        publish_work(clients, messages)
        ledger.mark_dispatched(job_id)
        start_tasks(clients, ledger, job_id, len(messages))  # as submit does
        publish_job_event(
            clients.publisher, JobEvent(job_id, JobState.RENDERING, JobState.SUBMITTED)
        )
        report.redispatched.append(job_id)
        return

    # Lost finalize events: frames in the bucket the ledger has not counted.
    if not _older(job.started_at or job.created_at, d.lost_event, at):
        return
    view = ledger.view(job_id)
    # A process that died between counting the last unit of a shard and
    # folding the shard into the job: fold it now (idempotent).
    for shard in map(ShardDoc.from_dict, view.shards):
        if not shard.complete and shard.full:
            outcome = ledger.complete_shard(job_id, shard.shard)
            report.recovered.append((job_id, -1 - shard.shard))
            announce_end(clients, outcome)
            if outcome.launch_stitch:
                launch_stitch(clients, ledger, job_id)
                return
    frames = {}
    for blob in clients.blobs.list(frames_prefix(job_id)):
        try:
            frames[parse_frame_object(blob.name)[1]] = blob
        except PovstormError:
            continue
    open_units = ledger.units(job_id, (UnitState.PENDING, UnitState.RENDERING))
    if len(frames) > view.done:
        for unit in open_units:
            found = frames.get(unit.unit)
            if found is not None and _older(unit.updated_at, d.lost_event, at):
                outcome = ledger.record_frame(
                    found.name, found.generation, found.metadata, found.size
                )
                report.recovered.append((job_id, unit.unit))
                announce_end(clients, outcome)
                if outcome.launch_stitch:
                    launch_stitch(clients, ledger, job_id)
    timeout = dt.timedelta(seconds=int(job.spec.get("timeout_seconds", 600)))
    resend = []
    for unit in open_units:
        if unit.unit in frames:
            continue
        # Requeued after a failure, or handed on by a worker out of budget
        # (started once, pending again): its message was never confirmed.
        requeued_unpublished = (
            unit.state == UnitState.PENDING
            and (unit.attempts > 1 or unit.started_at is not None)
            and unit.queued_at is None
            and _older(unit.updated_at, d.requeue_publish, at)
        )
        # A unit in a chunk has its own deadline (the frames before it in the
        # chunk had theirs); a unit started before chunks, one frame's timeout.
        deadline = unit.deadline_at or (unit.started_at and unit.started_at + timeout)
        stuck = (
            unit.state == UnitState.RENDERING
            and _older(deadline, d.render_margin, at)
            and _older(unit.queued_at, timeout + d.render_margin, at)
        )
        lost = restart is not None and restart.work_lost
        if requeued_unpublished or stuck or lost:
            resend.append(WorkMessage(job_id, unit.unit, unit.attempts))
    if resend:
        chunks = coalesce(resend, ledger.get_spec(job_id))
        publish_work(clients, chunks)
        for m in chunks:
            ledger.mark_queued(m)
        report.republished.extend((m.job_id, m.unit) for m in resend)
