"""The ledger: Firestore documents that count every unit exactly once and
claim the stitch when the last one lands.

    jobs/{job}                 state, spec, counts, times, stitch claim, stats, first errors,
                               videos (others made from its frames: request_video, finish_video)
    jobs/{job}/units/{n:06d}   state, attempts, generation, render stats, errors per attempt
    jobs/{job}/shards/{k}      expected, done, failed for a block of consecutive units

Where it sits: ``povstorm.farm`` calls it from the functions (submit,
frame_finalized, frame_failed), the render worker (``start_chunk``, ``hand_off``), the stitch
(``finish_stitch``) and the reconciler. The documents are typed in docs.py,
what it returns in views.py, the bounded transaction in transaction.py. The
rules it keeps (docs/architecture.md, section 3):

* a unit is counted once: a transaction moves it from pending/rendering to
  done or failed and bumps its shard in the same commit; anything that finds it
  terminal (a duplicate, an overwrite with a new generation, a late failure)
  changes no count;
* no transaction writes a document every unit touches: only the unit that
  completes a shard touches the job document;
* transactions have no side effects: they return an ``Outcome`` saying what
  to do after commit (launch the stitch, republish a unit);
* reads come before writes and in one order everywhere (unit, shard, job), so
  the emulator's pessimistic locks cannot deadlock;
* states only move forward: every state write is built by a document's
  ``moved``/``retried``/``toward``, which checks the tables of core/model.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from povstorm.core.errors import SpecError, TransientError, UnknownJob, translate
from povstorm.core.model import (
    DELIVERY_TRANSITIONS,
    VIDEO_TRANSITIONS,
    DeliveryState,
    JobState,
    RenderStats,
    UnitState,
    VideoState,
    WorkMessage,
    check_move,
    shard_count_for,
    shard_sizes,
)
from povstorm.core.names import COLLECTIONS
from povstorm.core.naming import check_job_id, parse_frame_object
from povstorm.core.spec import TIMEOUT_SECONDS, JobSpec, UnitSpec
from povstorm.ledger.docs import JobDoc, ShardDoc, UnitDoc, now
from povstorm.ledger.transaction import RPC_RETRY, RPC_TIMEOUT, _BoundedTransaction, _outage
from povstorm.ledger.views import (
    JobView,
    Outcome,
    OutcomeKind,
    StoredDoc,
    UnitTicket,
    spec_hash,
    spec_of,
)

__all__ = [
    "RPC_RETRY",
    "JobView",
    "Ledger",
    "Outcome",
    "OutcomeKind",
    "UnitTicket",
    "now",
    "spec_hash",
]

BATCH_LIMIT = 500  # Firestore's limit of writes in one batch
MAX_ERRORS_ON_JOB = 20  # the first errors, kept on the job for the console and the CLI
MAX_ERRORS_PER_UNIT = 20
TX_ATTEMPTS = 3
TX_ROUNDS = 5
# A re-stitch launched this long ago and not finished is launched again when
# asked for again (the reconciler's deadline for a job's own stitch).
RELAUNCH_VIDEO_AFTER = 30 * 60.0

T = TypeVar("T")


def unit_id(unit: int) -> str:
    return f"{unit:06d}"


# The class is longer than this codebase's 300 lines on purpose: it is the one
# place that owns the ledger's transactions and their ordering rules (reads
# before writes, unit then shard then job; count, then fold, then claim).
# Split, those rules would live in several places and drift apart.
class Ledger:
    def __init__(self, db: Any) -> None:
        self.db = db
        self._jobs = db.collection(COLLECTIONS["jobs"])

    # --- references -----------------------------------------------------------

    def job_ref(self, job_id: str) -> Any:
        return self._jobs.document(job_id)

    def unit_ref(self, job_id: str, unit: int) -> Any:
        return self.job_ref(job_id).collection(COLLECTIONS["units"]).document(unit_id(unit))

    def shard_ref(self, job_id: str, shard: int) -> Any:
        return self.job_ref(job_id).collection(COLLECTIONS["shards"]).document(str(shard))

    # --- plumbing ---------------------------------------------------------------

    def _run(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(transaction)`` in a transaction; contention and outages
        become TransientError so the event is redelivered, never lost."""
        # The library retries an aborted transaction at once; between rounds we
        # back off with jitter so colliding transactions stop colliding.
        last: Exception | None = None
        for round_ in range(TX_ROUNDS):
            # RPC_RETRY is read here, not bound at import, so one setting
            # bounds the reads and the transactions alike.
            transaction = _BoundedTransaction(self.db, max_attempts=TX_ATTEMPTS, retry=RPC_RETRY)
            with translate("firestore"):
                try:
                    return firestore.transactional(fn)(transaction)
                except ValueError as exc:  # the library's "failed after N attempts"
                    last = exc
                    outage = _outage(exc)
                    if outage is not None:
                        # The client already retried the outage for RPC_RETRY's
                        # deadline: hand the event back to Pub/Sub rather than
                        # wait longer (another round would wait as long again).
                        raise TransientError(f"Firestore unavailable: {outage}") from exc
                except (gexc.Aborted, gexc.Conflict) as exc:
                    last = exc
                except gexc.RetryError as exc:
                    raise TransientError(f"Firestore unavailable: {exc}") from exc
            time.sleep(random.uniform(0.02, 0.1) * 2**round_)
        raise TransientError(f"transaction contended: {last}") from last

    def _get(self, ref: Any, transaction: Any = None) -> dict[str, Any] | None:
        with translate("firestore"):
            try:
                snap = ref.get(transaction=transaction, retry=RPC_RETRY, timeout=RPC_TIMEOUT)
            except gexc.RetryError as exc:
                raise TransientError(f"Firestore unavailable: {exc}") from exc
        return snap.to_dict() if snap.exists else None

    def _job(self, job_id: str, transaction: Any = None) -> JobDoc | None:
        data = self._get(self.job_ref(job_id), transaction)
        return None if data is None else JobDoc.from_dict(data)

    def _unit(self, ref: Any, transaction: Any = None) -> UnitDoc | None:
        data = self._get(ref, transaction)
        return None if data is None else UnitDoc.from_dict(data)

    def _shard(self, ref: Any, transaction: Any = None) -> ShardDoc | None:
        data = self._get(ref, transaction)
        return None if data is None else ShardDoc.from_dict(data)

    # --- submission -------------------------------------------------------------

    def create_job(
        self,
        spec: JobSpec,
        job_id: str,
        plan: dict[str, Any] | None = None,
        created: dt.datetime | None = None,
        resources: dict[str, Any] | None = None,
        *,
        retention_days: float = 0.0,
    ) -> tuple[JobDoc, bool]:
        """Write the units and shards, then the job document (state submitted).

        Returns (job document, created). Idempotent: a retried submission of
        the same spec under the same id returns the existing job; a different
        spec under a taken id is a SpecError. Units are written first, so a
        job document never exists without its units. ``created``: when the
        job was submitted, if not now (a job rebuilt from its manifest).
        ``resources``: the deployment's task sizes, which the job's cost is
        computed with (core/cost.py). ``retention_days``: how long the job is kept once it ends (0: for
        ever), its ``expire_at`` then.
        """
        check_job_id(job_id)
        digest = spec_hash(spec)
        existing = self._job(job_id)
        if existing is not None:
            if existing.spec_hash != digest:
                raise SpecError(f"job id {job_id} is taken by another job")
            return existing, False

        n = spec.unit_count
        shards = shard_count_for(n)
        created = created or now()
        writes: list[tuple[Any, dict[str, Any]]] = [
            (self.shard_ref(job_id, k), ShardDoc(shard=k, expected=size).to_fields())
            for k, size in enumerate(shard_sizes(n))
        ]
        writes.extend(
            (self.unit_ref(job_id, u), UnitDoc.first(spec, u, created).to_fields())
            for u in range(n)
        )
        with translate("firestore"):
            for i in range(0, len(writes), BATCH_LIMIT):
                batch = self.db.batch()
                for ref, doc in writes[i : i + BATCH_LIMIT]:
                    batch.set(ref, doc)
                batch.commit()

        job = JobDoc.first(spec, job_id, digest, shards, created, plan, resources, retention_days)
        with translate("firestore"):
            try:
                self.job_ref(job_id).create(job.to_fields())
            except gexc.AlreadyExists:
                return self.create_job(
                    spec, job_id, plan, created, resources, retention_days=retention_days
                )
        return job, True

    def mark_dispatched(self, job_id: str) -> None:
        """submitted -> rendering once every work message is confirmed published."""

        def tx(transaction: Any) -> None:
            job = self._job(job_id, transaction)
            if job and job.state == JobState.SUBMITTED:
                transaction.update(
                    self.job_ref(job_id),
                    job.moved(JobState.RENDERING, started_at=now(), updated_at=now()),
                )

        self._run(tx)

    # --- reading ----------------------------------------------------------------
    #
    # The client, CLI, watch, stitch, bench and tests read these as the plain
    # documents (dicts): they are the console's view too. The ledger's own
    # decisions, and the reconciler's, read typed documents.

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self._get(self.job_ref(job_id))

    def require_job(self, job_id: str) -> dict[str, Any]:
        job = self.get_job(job_id)
        if job is None:
            raise UnknownJob(job_id)
        return job

    def job(self, job_id: str) -> JobDoc:
        """The job, typed; UnknownJob if there is none."""
        return JobDoc.from_dict(self.require_job(job_id))

    def get_spec(self, job_id: str) -> JobSpec:
        """The job-level spec; for generated-unit jobs ``units`` is empty (the
        unit specs live on the unit documents): use ``units_expected``."""
        return spec_of(self.job(job_id))

    def view(self, job_id: str) -> JobView:
        job = self.require_job(job_id)
        with translate("firestore"):
            shards = [
                s.to_dict() for s in self.job_ref(job_id).collection(COLLECTIONS["shards"]).stream()
            ]
        return JobView(
            job_id=job_id,
            doc=job,
            done=sum(int(s.get("done", 0)) for s in shards),
            failed=sum(int(s.get("failed", 0)) for s in shards),
            shards=shards,
        )

    def usage(self, job_id: str) -> tuple[int, float, int]:
        """(frames done, their render seconds, their bytes) summed over the
        job's shards by one aggregation query, which Firestore bills as one
        read: the budget check after each counted frame reads this, not the
        shards (up to 64) or the units."""
        shards = self.job_ref(job_id).collection(COLLECTIONS["shards"])
        query = (
            shards.sum("done", alias="done")
            .sum("render_seconds", alias="seconds")
            .sum("frame_bytes", alias="bytes")
        )
        with translate("firestore"):
            try:
                rows = query.get(retry=RPC_RETRY, timeout=RPC_TIMEOUT)
            except gexc.RetryError as exc:
                raise TransientError(f"Firestore unavailable: {exc}") from exc
        found = {r.alias: r.value for row in rows for r in row}
        return (
            int(found.get("done") or 0),
            float(found.get("seconds") or 0.0),
            int(found.get("bytes") or 0),
        )

    def unit_records(self, job_id: str, states: tuple[UnitState, ...] = ()) -> list[dict[str, Any]]:
        query = self.job_ref(job_id).collection(COLLECTIONS["units"])
        if states:
            query = query.where(
                filter=firestore.FieldFilter("state", "in", [s.value for s in states])
            )
        with translate("firestore"):
            records = [s.to_dict() for s in query.stream()]
        return sorted(records, key=lambda r: r["unit"])

    def units(self, job_id: str, states: tuple[UnitState, ...] = ()) -> list[UnitDoc]:
        """``unit_records``, typed."""
        return [UnitDoc.from_dict(r) for r in self.unit_records(job_id, states)]

    def unit_record(self, job_id: str, unit: int) -> dict[str, Any] | None:
        return self._get(self.unit_ref(job_id, unit))

    def list_jobs(self, limit: int = 20, states: tuple[JobState, ...] = ()) -> list[dict[str, Any]]:
        query = self._jobs.order_by("created_at", direction=firestore.Query.DESCENDING)
        with translate("firestore"):
            if states:
                # Filtering in memory keeps the console's single-field indexes enough.
                docs = [d.to_dict() for d in query.limit(max(limit * 10, 200)).stream()]
                return [d for d in docs if JobState(d["state"]) in states][:limit]
            return [d.to_dict() for d in query.limit(limit).stream()]

    def last_stats_of(self, key: str, family: str = "") -> dict[str, Any] | None:
        """The stats of the latest finished job of the same scene
        (``JobDoc.scene_key``), else of the latest of the same scene before its
        files changed (``scene_family``), or None: what the next job's chunk
        plan is made from (``render_seconds.p50``, ``frame_profile``). Equality
        filters only: no composite index needed."""
        for name, value in (("scene_key", key), ("scene_family", family)):
            if not value:
                continue
            query = self._jobs.where(filter=firestore.FieldFilter(name, "==", value))
            with translate("firestore"):
                docs = [JobDoc.from_dict(s.to_dict()) for s in query.limit(50).stream()]
            done = [d for d in docs if d.state == JobState.DONE and d.stats and d.created_at]
            if done:
                latest = max(done, key=lambda d: d.created_at or now())
                stats = latest.stats or {}
                if float((stats.get("render_seconds") or {}).get("p50") or 0.0):
                    return stats
        return None

    def job_ids(self) -> set[str]:
        """The id of every job document, in one query that reads no fields."""
        with translate("firestore"):
            return {snap.id for snap in self._jobs.select([]).stream()}

    def active_jobs(self) -> Iterator[JobDoc]:
        active = [JobState.SUBMITTED, JobState.RENDERING, JobState.STITCHING]
        query = self._jobs.where(
            filter=firestore.FieldFilter("state", "in", [s.value for s in active])
        )
        # The stream reads as it is iterated: an outage mid-way surfaces here.
        with translate("firestore"):
            for snap in query.stream():
                yield JobDoc.from_dict(snap.to_dict())

    def changed_since(self, since: dt.datetime) -> tuple[bool, bool]:
        """Whether a job document changed after ``since``, and whether a job
        finished after it: two one-document queries (the local stack's
        snapshots ask every half second)."""

        def any_after(field: str) -> bool:
            query = self._jobs.where(filter=firestore.FieldFilter(field, ">", since)).limit(1)
            return bool(list(query.stream(retry=RPC_RETRY, timeout=RPC_TIMEOUT)))

        with translate("firestore"):
            changed = any_after("updated_at")
            return changed, changed and any_after("finished_at")

    # --- the worker's side -------------------------------------------------------

    def start_unit(self, job_id: str, unit: int, attempt: int, worker: str) -> UnitTicket | None:
        """``start_chunk`` of one unit."""
        return self.start_chunk(job_id, unit, 1, attempt, worker)

    def start_chunk(
        self,
        job_id: str,
        first: int,
        count: int,
        attempt: int,
        worker: str,
        *,
        present: Callable[[int], bool] | None = None,
    ) -> UnitTicket | None:
        """Mark the units of a chunk rendering; the ticket names the ones this
        worker renders, in order. None if there is nothing to render (the
        worker acknowledges the message).

        A unit is skipped when it is settled, when its current attempt is a
        later one (its requeue carries it now), or, on a redelivery, when
        ``present(unit)`` says its frame is in the bucket already (rendered
        by the lost worker; its finalize event counts it). The first unit
        rendered counts a delivery: a redelivered chunk resumes at the frame
        its lost worker was rendering, so a frame that keeps killing workers
        ends failed (``deliveries``), and the frames after it go on.
        """
        job = self._job(job_id)
        if job is None:
            raise UnknownJob(job_id)
        if job.state.terminal:
            return None
        refs = [self.unit_ref(job_id, u) for u in range(first, first + count)]

        def wanted(doc: UnitDoc) -> bool:
            return not doc.state.terminal and attempt >= doc.attempts

        skip: set[int] = set()
        if present is not None:
            # Outside the transaction: a bucket lookup must not hold locks.
            started = [d for d in self._units_of(refs) if wanted(d) and d.deliveries > 0]
            skip = {d.unit for d in started if d.attempts == attempt and present(d.unit)}
        timeout = float(job.spec.get("timeout_seconds", TIMEOUT_SECONDS.default))

        def tx(transaction: Any) -> list[UnitDoc]:
            docs = self._units_of(refs, transaction)
            chosen = [d for d in docs if wanted(d) and d.unit not in skip]
            at = now()
            out = []
            for i, doc in enumerate(chosen):
                same = attempt == doc.attempts
                # Only the first frame was (maybe) being rendered when a worker died.
                deliveries = (
                    (doc.deliveries + 1 if i == 0 else max(doc.deliveries, 1)) if same else 1
                )
                # A redelivery of a unit already rendering keeps its state.
                update = doc.toward(
                    UnitState.RENDERING,
                    attempts=attempt,
                    deliveries=deliveries,
                    worker=worker,
                    started_at=at,
                    deadline_at=at + dt.timedelta(seconds=timeout * (i + 1)),
                    updated_at=at,
                )
                transaction.update(self.unit_ref(job_id, doc.unit), update)
                out.append(UnitDoc.from_dict({**doc.to_fields(), **update}))
            return out

        docs = self._run(tx)
        if not docs:
            return None
        spec = spec_of(job)  # the spec never changes: the job read above has it
        head = docs[0]
        if job.kind == "units":
            s = head.spec or {}
            unit_spec = UnitSpec(
                args=tuple(s.get("args", ())),
                inputs=s.get("inputs", {}),
                inline=s.get("inline", {}),
                label=head.label,
            )
        else:
            unit_spec = spec.unit_spec(head.unit)
        return UnitTicket(
            job_id,
            head.unit,
            attempt,
            head.deliveries,
            spec,
            unit_spec,
            units=tuple(d.unit for d in docs),
        )

    def _units_of(self, refs: list[Any], transaction: Any = None) -> list[UnitDoc]:
        """The unit documents of ``refs``, in their order; UnknownJob for a missing one."""
        with translate("firestore"):
            try:
                snaps = {
                    s.reference.path: s
                    for s in self.db.get_all(
                        refs, transaction=transaction, retry=RPC_RETRY, timeout=RPC_TIMEOUT
                    )
                }
            except gexc.RetryError as exc:
                raise TransientError(f"Firestore unavailable: {exc}") from exc
        out = []
        for ref in refs:
            snap = snaps.get(ref.path)
            if snap is None or not snap.exists:
                raise UnknownJob(f"no unit {ref.id} in {ref.parent.parent.id}")
            out.append(UnitDoc.from_dict(snap.to_dict()))
        return out

    def hand_off(self, job_id: str, units: list[int], attempt: int, worker: str) -> list[int]:
        """A worker whose time budget ran out gives back the units of its chunk
        it has not rendered: they go back to pending at the same attempt, with
        no delivery counted, for the message that carries them on (the worker
        publishes it, then ``mark_queued``; the reconciler republishes them if
        that never happens). Returns the units handed off (those still this
        worker's, at this attempt)."""
        refs = [self.unit_ref(job_id, u) for u in units]

        def tx(transaction: Any) -> list[int]:
            docs = self._units_of(refs, transaction)
            mine = [
                d
                for d in docs
                if d.state == UnitState.RENDERING and d.attempts == attempt and d.worker == worker
            ]
            for doc in mine:
                transaction.update(
                    self.unit_ref(job_id, doc.unit),
                    doc.moved(UnitState.PENDING, deliveries=0, queued_at=None, updated_at=now()),
                )
            return [d.unit for d in mine]

        return self._run(tx)

    # --- counting -----------------------------------------------------------------
    #
    # Counting a unit is one transaction that reads only the unit document and
    # writes the unit plus a blind Increment on its shard: no transaction holds
    # a read lock on a shard or on the job, so concurrent deliveries never
    # deadlock (the emulator's pessimistic locks timed out here as soon as 16
    # deliveries did read-modify-write on shards, and again on the job when
    # shards completed together).
    #
    # Whoever reads a shard complete after its own commit folds it into the
    # job: a batch that creates the marker completions/{k} (a precondition:
    # it fails if the marker exists, so a shard is folded once) and increments
    # the job's counts. Whoever then reads every shard folded claims the end
    # of the job the same way (marker "final"), with an update-time
    # precondition so a concurrent cancel is never overwritten. The reconciler
    # calls ``complete_shard`` too, for a process that died in between.

    def _marker_ref(self, job_id: str, name: str) -> Any:
        return self.job_ref(job_id).collection("completions").document(name)

    def complete_shard(self, job_id: str, shard: int, doc: ShardDoc | None = None) -> Outcome:
        """Fold a complete shard into the job, once; the last one claims the
        stitch (or fails the job if any unit failed). ``doc``: the shard as the
        caller just read it (the fold's markers, not this read, guard it)."""
        doc = doc or self._shard(self.shard_ref(job_id, shard))
        if doc is None:
            raise UnknownJob(job_id)
        if not doc.full:
            return Outcome(OutcomeKind.OPEN, job_id, -1)
        if not doc.complete:
            batch = self.db.batch()
            batch.create(self._marker_ref(job_id, str(shard)), {"shard": shard, "at": now()})
            batch.update(self.shard_ref(job_id, shard), doc.folded(updated_at=now()))
            batch.update(
                self.job_ref(job_id),
                JobDoc.update_fields(
                    shards_complete=firestore.Increment(1),
                    units_done=firestore.Increment(doc.done),
                    units_failed=firestore.Increment(doc.failed),
                    updated_at=now(),
                ),
            )
            # Already folded by someone else: they or we go on to the claim.
            with translate("firestore"), contextlib.suppress(gexc.AlreadyExists):
                batch.commit()
        return self._claim_end(job_id)

    def _claim_end(self, job_id: str) -> Outcome:
        for _ in range(10):
            with translate("firestore"):
                snap = self.job_ref(job_id).get()
            job = JobDoc.from_snapshot(snap)
            if job is None:
                raise UnknownJob(job_id)
            if (
                job.shards_complete < job.shard_count
                or job.state.terminal
                or job.state == JobState.STITCHING
            ):
                return Outcome(OutcomeKind.FOLDED, job_id, -1)
            new_state = JobState.STITCHING if job.units_failed == 0 else JobState.FAILED
            ending: dict[str, Any] = (
                {
                    "stitch": {
                        "claim": uuid.uuid4().hex,
                        "claimed_at": now(),
                        "launched_at": None,
                        "launches": 0,
                    }
                }
                if new_state == JobState.STITCHING
                else {"finished_at": now()}
            )
            # A blind write: the move is checked against the state read above,
            # and the precondition makes the write fail if that state is stale.
            update = job.moved(new_state, updated_at=now(), **ending)
            batch = self.db.batch()
            batch.create(
                self._marker_ref(job_id, f"final-{job.retries}"),
                {"state": new_state.value, "at": now()},
            )
            batch.update(
                self.job_ref(job_id),
                update,
                option=self.db.write_option(last_update_time=snap.update_time),
            )
            with translate("firestore"):
                try:
                    batch.commit()
                except gexc.AlreadyExists:
                    return Outcome(OutcomeKind.FOLDED, job_id, -1)
                except (gexc.FailedPrecondition, gexc.Aborted, gexc.Conflict):
                    time.sleep(random.uniform(0.01, 0.05))
                    continue  # the job changed under us: look again
            return Outcome(
                OutcomeKind.COMPLETED,
                job_id,
                -1,
                launch_stitch=new_state == JobState.STITCHING,
                job_state=new_state,
            )
        raise TransientError(f"{job_id}: could not claim the end of the job")

    def _after_count(self, job_id: str, unit: int, shard: int, kind: OutcomeKind) -> Outcome:
        doc = self._shard(self.shard_ref(job_id, shard))
        if doc and not doc.complete and doc.full:
            done = self.complete_shard(job_id, shard, doc)
            return Outcome(
                kind, job_id, unit, launch_stitch=done.launch_stitch, job_state=done.job_state
            )
        return Outcome(kind, job_id, unit)

    def record_frame(
        self, name: str, generation: int, metadata: dict[str, str] | None = None, size: int = 0
    ) -> Outcome:
        """A frame object was finalized: count its unit done, once. Its shard
        also sums the frame's render seconds and ``size`` (core/cost.py)."""
        job_id, unit = parse_frame_object(name)
        uref = self.unit_ref(job_id, unit)
        stats = RenderStats.from_metadata(metadata)

        def tx(transaction: Any) -> tuple[OutcomeKind, int]:
            doc = self._unit(uref, transaction)
            if doc is None:
                raise UnknownJob(job_id)
            if doc.state == UnitState.DONE:
                if doc.generation == generation:
                    return OutcomeKind.DUPLICATE, doc.shard
                if generation > int(doc.generation or 0):
                    # A newer object replaced the frame: keep the newest, count nothing.
                    transaction.update(
                        uref,
                        doc.update_fields(generation=generation, updated_at=now(), **_stats(stats)),
                    )
                    return OutcomeKind.OVERWRITE, -1
                return OutcomeKind.STALE, -1
            if doc.state.terminal:
                return OutcomeKind.LATE, -1
            transaction.update(
                uref,
                doc.moved(
                    UnitState.DONE,
                    generation=generation,
                    finished_at=now(),
                    updated_at=now(),
                    frame_bytes=size,
                    **_stats(stats),
                ),
            )
            transaction.update(
                self.shard_ref(job_id, doc.shard),
                ShardDoc.update_fields(
                    done=firestore.Increment(1),
                    render_seconds=firestore.Increment(stats.render_seconds),
                    frame_bytes=firestore.Increment(size),
                    updated_at=now(),
                ),
            )
            return OutcomeKind.RECORDED, doc.shard

        kind, shard = self._run(tx)
        # A redelivered event ("duplicate") goes on to the fold too: the first
        # delivery may have counted the unit and then died, or failed with a
        # transient error, before folding the shard; Pub/Sub redelivers because
        # it was never acknowledged, and only this finishes the job without
        # waiting for the reconciler. A shard already folded costs one read.
        if kind not in (OutcomeKind.RECORDED, OutcomeKind.DUPLICATE):
            return Outcome(kind, job_id, unit)
        return self._after_count(job_id, unit, shard, kind)

    def record_failure(
        self,
        job_id: str,
        unit: int,
        attempt: int,
        error: str,
        *,
        log_object: str = "",
        worker: str = "",
        final: bool = False,
    ) -> Outcome:
        """An attempt failed: requeue the unit, or fail it for good (once)."""
        fail_fast = self.job(job_id).fail_fast
        uref = self.unit_ref(job_id, unit)
        entry = {
            "attempt": attempt,
            "error": error[:2000],
            "log": log_object,
            "worker": worker,
            "at": now(),
        }

        def tx(transaction: Any) -> tuple[OutcomeKind, UnitDoc]:
            doc = self._unit(uref, transaction)
            if doc is None:
                raise UnknownJob(job_id)
            if doc.state.terminal:
                return OutcomeKind.LATE, doc
            current = doc.attempts
            if attempt != current or any(e.get("attempt") == attempt for e in doc.errors):
                return (OutcomeKind.DUPLICATE if attempt == current else OutcomeKind.STALE), doc
            errors = [*doc.errors, entry][-MAX_ERRORS_PER_UNIT:]
            if not (final or fail_fast or attempt >= doc.attempt_limit):
                # A unit no worker started (a dead letter) is still pending: it stays.
                update = doc.toward(
                    UnitState.PENDING,
                    attempts=attempt + 1,
                    deliveries=0,
                    errors=errors,
                    queued_at=None,
                    updated_at=now(),
                )
                transaction.update(uref, update)
                return OutcomeKind.REQUEUED, doc
            transaction.update(
                uref,
                doc.moved(UnitState.FAILED, errors=errors, finished_at=now(), updated_at=now()),
            )
            transaction.update(
                self.shard_ref(job_id, doc.shard),
                ShardDoc.update_fields(failed=firestore.Increment(1), updated_at=now()),
            )
            return OutcomeKind.FAILED, doc

        kind, doc = self._run(tx)
        if kind == OutcomeKind.REQUEUED:
            return Outcome(kind, job_id, unit, requeue=WorkMessage(job_id, unit, attempt + 1))
        if kind == OutcomeKind.FAILED:
            self._note_error(job_id, {"unit": unit, "frame": doc.frame, **entry})
        elif kind == OutcomeKind.LATE and doc.state == UnitState.FAILED:
            # A redelivered report of a unit that failed for good: finish what
            # its first delivery may not have reached (see record_frame): the
            # job's copy of the error, the fold and, on a fail-fast job, the end.
            failed = [e for e in doc.errors if e.get("attempt") == doc.attempts]
            if failed:
                self._note_error(job_id, {"unit": unit, "frame": doc.frame, **failed[-1]})
        else:
            return Outcome(kind, job_id, unit)
        outcome = self._after_count(job_id, unit, doc.shard, kind)
        if fail_fast and outcome.job_state is None and self.fail_job(job_id, failed_by=unit):
            return Outcome(kind, job_id, unit, job_state=JobState.FAILED)
        return outcome

    def _note_error(self, job_id: str, entry: dict[str, Any]) -> None:
        """Keep the first errors on the job for the console and the CLI, one per
        unit and attempt. A blind ArrayUnion: many units failing at once must
        not contend on the job."""
        job = self._job(job_id)
        errors = job.errors if job else ()
        if len(errors) >= MAX_ERRORS_ON_JOB or any(
            (e.get("unit"), e.get("attempt")) == (entry["unit"], entry["attempt"]) for e in errors
        ):
            return
        with translate("firestore"):
            self.job_ref(job_id).update(JobDoc.update_fields(errors=firestore.ArrayUnion([entry])))

    def fail_job(self, job_id: str, **fields: Any) -> bool:
        """Fail a job that is not finished yet (fail-fast); True if this call did."""

        def tx(transaction: Any) -> bool:
            job = self._job(job_id, transaction)
            if job is None or job.state.terminal:
                return False
            transaction.update(
                self.job_ref(job_id),
                job.moved(JobState.FAILED, finished_at=now(), updated_at=now(), **fields),
            )
            return True

        return self._run(tx)

    def mark_queued(self, message: WorkMessage) -> None:
        """A requeued or handed-on message is confirmed published (the
        reconciler republishes such units that never got here)."""
        with translate("firestore"):
            batch = self.db.batch()
            for unit in message.units:
                batch.update(
                    self.unit_ref(message.job_id, unit), UnitDoc.update_fields(queued_at=now())
                )
            batch.commit()

    # --- the stitch ---------------------------------------------------------------

    def mark_launched(self, job_id: str) -> None:
        def tx(transaction: Any) -> None:
            job = self._job(job_id, transaction)
            if job and job.state == JobState.STITCHING and job.stitch:
                stitch = dict(job.stitch)
                stitch["launched_at"] = now()
                stitch["launches"] = int(stitch.get("launches", 0)) + 1
                transaction.update(
                    self.job_ref(job_id), job.update_fields(stitch=stitch, updated_at=now())
                )

        self._run(tx)

    def _finish(self, job_id: str, new_state: JobState, **fields: Any) -> bool:
        """Record the one result of the stitch: stitching -> done or failed."""

        def tx(transaction: Any) -> bool:
            job = self._job(job_id, transaction)
            if job is None:
                raise UnknownJob(job_id)
            if job.state != JobState.STITCHING:
                return False
            transaction.update(
                self.job_ref(job_id),
                job.moved(new_state, finished_at=now(), updated_at=now(), **fields),
            )
            return True

        return self._run(tx)

    def finish_stitch(
        self,
        job_id: str,
        *,
        video: str | None,
        poster: str | None,
        stats: dict[str, Any],
        stats_object: str | None = None,
    ) -> bool:
        """Record the one stitch result: True only for the call that did (stitching -> done)."""
        return self._finish(
            job_id,
            JobState.DONE,
            video=video,
            poster=poster,
            stats=stats,
            stats_object=stats_object,
        )

    def note_cache_filled(self, job_id: str, frames: int) -> None:
        """The stitch stored a done job's rendered frames in the frame cache: a
        blind write of one field (the job's state is not read or written)."""
        with translate("firestore"):
            self.job_ref(job_id).update(JobDoc.update_fields(cache_filled=frames, updated_at=now()))

    def note_sheet(self, job_id: str, sheet: str) -> None:
        """The stitch made a done job's contact sheet: a blind write of one
        field, like ``note_cache_filled``."""
        with translate("firestore"):
            self.job_ref(job_id).update(JobDoc.update_fields(sheet=sheet, updated_at=now()))

    def note_execution(self, job_id: str, execution: str) -> None:
        """A render execution was launched for the job's work: a blind append
        to ``executions`` (the job's state is not read or written)."""
        with translate("firestore"):
            self.job_ref(job_id).update(
                {"executions": firestore.ArrayUnion([execution]), "updated_at": now()}
            )

    def fail_stitch(self, job_id: str, error: str) -> bool:
        return self._finish(
            job_id,
            JobState.FAILED,
            stitch_error=error[:2000],
            errors=firestore.ArrayUnion([{"stitch": error[:2000]}]),
        )

    # --- videos made again (``povstorm stitch JOB``) ----------------------------------
    #
    # A done job's other videos live in its ``videos`` map, one entry per
    # ``core.naming.video_key``. Each entry moves by VIDEO_TRANSITIONS; the
    # job's state, its own video and its units are never written here.

    def request_video(
        self,
        job_id: str,
        key: str,
        settings: dict[str, Any],
        object_name: str,
        *,
        relaunch_after: float = RELAUNCH_VIDEO_AFTER,
    ) -> tuple[dict[str, Any], bool]:
        """Ask for another video of a done job: (its entry, whether to launch
        its stitch after commit). A video made already is returned as it is;
        one launched less than ``relaunch_after`` seconds ago is waited for;
        a failed one, or one whose launch never happened, is asked for again.
        UnknownJob, or a SpecError for a job that is not done."""

        def tx(transaction: Any) -> tuple[dict[str, Any], bool]:
            job = self._job(job_id, transaction)
            if job is None:
                raise UnknownJob(job_id)
            if job.state != JobState.DONE:
                raise SpecError(
                    f"job {job_id} is {job.state}; only a done job's frames can be stitched again"
                )
            videos = dict(job.videos or {})
            at = now()
            entry = videos.get(key)
            if entry is not None:
                state = VideoState(entry["state"])
                if state == VideoState.DONE:
                    return entry, False
                launched = entry.get("launched_at")
                if (
                    state == VideoState.REQUESTED
                    and launched is not None
                    and (at - launched).total_seconds() < relaunch_after
                ):
                    return entry, False
                if state != VideoState.REQUESTED:
                    check_move(VIDEO_TRANSITIONS, state, VideoState.REQUESTED)
            entry = {
                **settings,
                "state": VideoState.REQUESTED.value,
                "object": object_name,
                "error": None,
                "requested_at": at,
                "launched_at": None,
                "finished_at": None,
            }
            videos[key] = entry
            transaction.update(
                self.job_ref(job_id), job.update_fields(videos=videos, updated_at=at)
            )
            return entry, True

        return self._run(tx)

    def _video_update(
        self, job_id: str, key: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> bool:
        """Write ``change(entry)`` over the entry ``key`` of the job's videos,
        unless it returns None; True if it wrote."""

        def tx(transaction: Any) -> bool:
            job = self._job(job_id, transaction)
            if job is None:
                raise UnknownJob(job_id)
            videos = dict(job.videos or {})
            entry = videos.get(key)
            changes = None if entry is None else change(entry)
            if entry is None or changes is None:
                return False
            videos[key] = {**entry, **changes}
            transaction.update(
                self.job_ref(job_id), job.update_fields(videos=videos, updated_at=now())
            )
            return True

        return self._run(tx)

    def mark_video_launched(self, job_id: str, key: str) -> None:
        def change(entry: dict[str, Any]) -> dict[str, Any] | None:
            if entry.get("state") != VideoState.REQUESTED:
                return None
            return {"launched_at": now(), "launches": int(entry.get("launches") or 0) + 1}

        self._video_update(job_id, key, change)

    def finish_video(self, job_id: str, key: str, *, error: str | None = None) -> bool:
        """Record the one result of a video's stitch: requested -> done, or
        failed with ``error``. True only for the call that did."""
        new = VideoState.DONE if error is None else VideoState.FAILED

        def change(entry: dict[str, Any]) -> dict[str, Any] | None:
            old = VideoState(entry["state"])
            if old != VideoState.REQUESTED:
                return None
            check_move(VIDEO_TRANSITIONS, old, new)
            return {
                "state": new.value,
                "error": None if error is None else error[:2000],
                "finished_at": now(),
            }

        return self._video_update(job_id, key, change)

    # --- notifications (farm/notify.py) ------------------------------------------------
    #
    # The job's ``delivery`` record: one per end of the job (``delivery_id``),
    # moved by DELIVERY_TRANSITIONS. An attempt is claimed before its POST and
    # holds the record until ``sending_until``, so two deliveries of the same
    # event never POST at once; the job's state is never written here.

    def begin_delivery(
        self, job_id: str, delivery_id: str, url: str, *, lease: float
    ) -> dict[str, Any] | None:
        """Claim the next attempt at notifying the end ``delivery_id`` of the
        job: its record, with ``attempts`` counting this one, or None when
        there is nothing to send (delivered or given up already, or the job
        is no longer at that end: retried since). TransientError while
        another attempt holds it (its POST may still succeed: ask again later)."""

        def tx(transaction: Any) -> dict[str, Any] | None:
            job = self._job(job_id, transaction)
            if job is None:
                raise UnknownJob(job_id)
            if not job.state.terminal or job.delivery_id != delivery_id:
                return None
            at = now()
            record = dict(job.delivery or {})
            if record.get("id") == delivery_id:
                if DeliveryState(record["state"]) != DeliveryState.PENDING:
                    return None
                held = record.get("sending_until")
                if held is not None and held > at:
                    raise TransientError(f"{delivery_id}: another attempt is in flight")
            else:
                record = {"id": delivery_id, "url": url, "attempts": 0, "first_at": at}
            record.update(
                state=DeliveryState.PENDING.value,
                attempts=int(record["attempts"]) + 1,
                sending_until=at + dt.timedelta(seconds=lease),
                last_at=at,
            )
            transaction.update(self.job_ref(job_id), job.update_fields(delivery=record))
            return record

        return self._run(tx)

    def end_delivery(
        self,
        job_id: str,
        delivery_id: str,
        state: DeliveryState,
        *,
        status: int | None,
        error: str | None = None,
    ) -> None:
        """Record how the attempt ``begin_delivery`` claimed ended: delivered,
        given up, or still pending (the event comes again after a backoff).
        Releases the record for the next attempt."""

        def tx(transaction: Any) -> None:
            job = self._job(job_id, transaction)
            record = dict((job.delivery if job else None) or {})
            if job is None or record.get("id") != delivery_id:
                return
            old = DeliveryState(record["state"])
            if old != DeliveryState.PENDING:
                return
            if state != old:
                check_move(DELIVERY_TRANSITIONS, old, state)
            at = now()
            record.update(
                state=state.value,
                status=status,
                error=None if error is None else error[:500],
                sending_until=None,
                last_at=at,
            )
            if state == DeliveryState.DELIVERED:
                record["delivered_at"] = at
            transaction.update(self.job_ref(job_id), job.update_fields(delivery=record))

        self._run(tx)

    def finished_since(self, since: dt.datetime) -> list[JobDoc]:
        """Jobs that ended after ``since`` (one range query on ``finished_at``,
        no composite index): the reconciler looks among them for an end whose
        notification never started."""
        query = self._jobs.where(filter=firestore.FieldFilter("finished_at", ">", since))
        with translate("firestore"):
            return [JobDoc.from_dict(s.to_dict()) for s in query.stream()]

    # --- user controls ------------------------------------------------------------

    def cancel(self, job_id: str, reason: str | None = None) -> JobState:
        """Cancel a job that has not ended; ``reason``, when the farm cancels
        it (a budget), is kept on it. Returns the job's state after."""
        return self.cancel_move(job_id, reason)[0]

    def cancel_move(
        self, job_id: str, reason: str | None = None
    ) -> tuple[JobState, JobState | None]:
        """``cancel``, saying also the state this call moved the job from
        (None when it had ended already): what its job event announces."""

        def tx(transaction: Any) -> tuple[JobState, JobState | None]:
            job = self._job(job_id, transaction)
            if job is None:
                raise UnknownJob(job_id)
            if job.state.terminal:
                return job.state, None
            why = {"cancel_reason": reason} if reason else {}
            transaction.update(
                self.job_ref(job_id),
                job.moved(JobState.CANCELLED, finished_at=now(), updated_at=now(), **why),
            )
            return JobState.CANCELLED, job.state

        return self._run(tx)

    def retry(self, job_id: str) -> list[WorkMessage]:
        """Requeue only the failed units of a failed job, in one transaction
        per shard (units, then shard, then job: the same order as counting).
        Returns the messages to publish after commit."""
        job = self.job(job_id)
        if job.state != JobState.FAILED:
            raise SpecError(f"job {job_id} is {job.state}; only a failed job can be retried")
        if job.stitch_error:
            raise SpecError(f"job {job_id} failed in the stitch; its frames are all done")
        failed_shards = sorted({u.shard for u in self.units(job_id, (UnitState.FAILED,))})
        messages: list[WorkMessage] = []
        for k in failed_shards:
            messages.extend(self._retry_shard(job_id, k))
        # Fail-fast leaves units that were never finished: the workers skipped
        # them while the job was failed. They count nowhere yet: just resend.
        stranded = self.units(job_id, (UnitState.PENDING, UnitState.RENDERING))
        requeued = {m.unit for m in messages}
        messages.extend(
            WorkMessage(job_id, u.unit, u.attempts) for u in stranded if u.unit not in requeued
        )
        return messages

    def _retry_shard(self, job_id: str, k: int) -> list[WorkMessage]:
        units_col = self.job_ref(job_id).collection(COLLECTIONS["units"])
        query = units_col.where(filter=firestore.FieldFilter("shard", "==", k)).where(
            filter=firestore.FieldFilter("state", "==", UnitState.FAILED.value)
        )

        def tx(transaction: Any) -> list[WorkMessage]:
            # Not translated here: an Aborted read must reach _run (inside its
            # translate block) as itself, to be retried as contention.
            failed = [
                (s.reference, UnitDoc.from_dict(s.to_dict()))
                for s in query.stream(transaction=transaction)
            ]
            sref = self.shard_ref(job_id, k)
            shard = self._shard(sref, transaction)
            job = self._job(job_id, transaction)
            if not failed or shard is None or job is None:
                return []
            changes: dict[str, Any] = {"finished_at": None, "updated_at": now()}
            if shard.complete:
                # Un-count what folding this shard added to the job, and drop its
                # marker so the shard can be folded again when it completes.
                changes["shards_complete"] = job.shards_complete - 1
                changes["units_done"] = job.units_done - shard.done
                changes["units_failed"] = job.units_failed - shard.failed
            if job.state == JobState.FAILED:
                job_update = job.retried(
                    JobState.RENDERING, retries=job.retries + 1, errors=[], **changes
                )
            elif job.state == JobState.RENDERING:
                # An earlier shard of this retry moved the job already.
                job_update = job.update_fields(**changes)
            else:
                return []  # the job moved on since the retry began (a cancel): leave it
            out = []
            for ref, doc in failed:
                attempt = doc.attempts + 1
                transaction.update(
                    ref,
                    doc.retried(
                        UnitState.PENDING,
                        attempts=attempt,
                        attempt_limit=attempt - 1 + job.max_attempts,
                        deliveries=0,
                        queued_at=None,
                        updated_at=now(),
                    ),
                )
                out.append(WorkMessage(job_id, doc.unit, attempt))
            if shard.complete:
                transaction.delete(self._marker_ref(job_id, str(k)))
            transaction.update(
                sref,
                shard.update_fields(
                    failed=shard.failed - len(failed), complete=False, updated_at=now()
                ),
            )
            transaction.update(self.job_ref(job_id), job_update)
            return out

        return self._run(tx)

    # --- removal (farm/cleanup.py: ``povstorm rm``, ``gc``) -------------------------
    #
    # Firestore's TTL policy deletes an expired job document alone, never its
    # subcollections: these find a job's documents whether or not its job
    # document is still there.

    def job_documents(self, job_id: str) -> list[StoredDoc]:
        """Every document of a job: those of each of its subcollections
        (units, shards, completions: whichever there are), then the job
        document if it exists, so that deleting them in this order removes
        the job document last."""
        ref = self.job_ref(job_id)
        with translate("firestore"):
            found = [
                StoredDoc(collection.id, snap.reference.path, snap.update_time.timestamp())
                for collection in ref.collections()
                for snap in collection.select([]).stream()
            ]
            job = ref.get(retry=RPC_RETRY, timeout=RPC_TIMEOUT)
        found.sort(key=lambda d: d.path)
        if job.exists:
            found.append(StoredDoc("job", ref.path, job.update_time.timestamp()))
        return found

    def delete_documents(self, paths: list[str]) -> None:
        """Delete these documents in their order, BATCH_LIMIT to a batch (a
        document already gone is no error)."""
        with translate("firestore"):
            for i in range(0, len(paths), BATCH_LIMIT):
                batch = self.db.batch()
                for path in paths[i : i + BATCH_LIMIT]:
                    batch.delete(self.db.document(path))
                batch.commit()

    def finished_before(self, cutoff: dt.datetime) -> list[JobDoc]:
        """The jobs that ended (done, failed or cancelled) before ``cutoff``."""
        query = self._jobs.where(filter=firestore.FieldFilter("finished_at", "<", cutoff))
        with translate("firestore"):
            docs = [JobDoc.from_dict(snap.to_dict()) for snap in query.stream()]
        return [d for d in docs if d.state.terminal]

    def leftover_job_ids(self) -> set[str]:
        """The ids under jobs/ with documents in a subcollection and no job
        document: what Firestore's TTL policy leaves of an expired job (and,
        for a moment, a job being created: its units are written first)."""
        with translate("firestore"):
            listed = {ref.id for ref in self._jobs.list_documents()}
        return listed - self.job_ids()

    def input_references(self) -> dict[str, set[str]]:
        """sha256 -> the jobs whose spec names it as an input: each job's own
        inputs and, for a job of generated units, its units'. One query of
        every job's inputs, and one of the units of each generated job."""
        users: dict[str, set[str]] = {}

        def add(job_id: str, doc: dict[str, Any]) -> None:
            for sha in ((doc.get("spec") or {}).get("inputs") or {}).values():
                users.setdefault(sha, set()).add(job_id)

        with translate("firestore"):
            jobs = [
                (s.id, s.to_dict()) for s in self._jobs.select(["kind", "spec.inputs"]).stream()
            ]
            for job_id, doc in jobs:
                add(job_id, doc)
                if doc.get("kind") == "units":
                    units = self.job_ref(job_id).collection(COLLECTIONS["units"])
                    for unit in units.select(["spec.inputs"]).stream():
                        add(job_id, unit.to_dict())
        return users


def _stats(stats: RenderStats) -> dict[str, Any]:
    return {
        "render_seconds": stats.render_seconds,
        "cpu_seconds": stats.cpu_seconds,
        "peak_memory_bytes": stats.peak_memory_bytes,
        "worker": stats.worker,
        "cached": stats.cached or None,
    }
