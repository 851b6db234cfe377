"""The ledger: Firestore documents that count every unit exactly once and
claim the stitch when the last one lands.

    jobs/{job}                 state, spec, counts, times, stitch claim, stats, first errors
    jobs/{job}/units/{n:06d}   state, attempts, generation, render stats, errors per attempt
    jobs/{job}/shards/{k}      expected, done, failed for the units with n % S == k

Where it sits: ``povstorm.farm`` calls it from the functions (submit,
frame_finalized, frame_failed), the render worker (``start_unit``), the stitch
(``finish_stitch``) and the reconciler. The rules it keeps (ARCHITECTURE.md):

* a unit is counted once: a transaction moves it from pending/rendering to
  done or failed and bumps its shard in the same commit; anything that finds it
  terminal (a duplicate, an overwrite with a new generation, a late failure)
  changes no count;
* no transaction writes a document every unit touches: only the unit that
  completes a shard touches the job document;
* transactions have no side effects: they return an ``Outcome`` saying what
  to do after commit (launch the stitch, republish a unit);
* reads come before writes and in one order everywhere (unit, shard, job), so
  the emulator's pessimistic locks cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from povstorm.core.errors import SpecError, TransientError, UnknownJob, from_google
from povstorm.core.model import (
    JobState,
    RenderStats,
    UnitState,
    WorkMessage,
    shard_count_for,
    shard_of,
    shard_sizes,
)
from povstorm.core.names import COLLECTIONS
from povstorm.core.naming import check_job_id, parse_frame_object
from povstorm.core.schemas import dump_job_spec, load_job_spec
from povstorm.core.spec import JobSpec, UnitSpec
from povstorm.ledger.transaction import RPC_RETRY, RPC_TIMEOUT, _BoundedTransaction, _outage

log = logging.getLogger(__name__)

BATCH_LIMIT = 500  # Firestore's limit of writes in one batch
MAX_ERRORS_ON_JOB = 20  # the first errors, kept on the job for the console and the CLI
MAX_ERRORS_PER_UNIT = 20
TX_ATTEMPTS = 3
TX_ROUNDS = 5

T = TypeVar("T")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def unit_id(unit: int) -> str:
    return f"{unit:06d}"


@dataclass(frozen=True)
class Outcome:
    """What a ledger transaction decided; the caller acts on it after commit."""

    kind: str  # recorded | duplicate | overwrite | late | stale | requeued | failed | ignored
    job_id: str
    unit: int
    launch_stitch: bool = False
    requeue: WorkMessage | None = None
    job_state: JobState | None = None  # set when this transaction moved the job


@dataclass(frozen=True)
class UnitTicket:
    """A unit a worker may render now."""

    job_id: str
    unit: int
    attempt: int
    deliveries: int
    spec: JobSpec
    unit_spec: UnitSpec


@dataclass
class JobView:
    """A job document with its live counts summed from the shards."""

    job_id: str
    doc: dict[str, Any]
    done: int = 0
    failed: int = 0
    shards: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> JobState:
        return JobState(self.doc["state"])

    @property
    def expected(self) -> int:
        return int(self.doc.get("units_expected", 0))


def spec_hash(spec: JobSpec) -> str:
    body = dump_job_spec(spec)
    body.pop("job_id", None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


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
        for round_ in range(TX_ROUNDS):
            transaction = _BoundedTransaction(self.db, max_attempts=TX_ATTEMPTS)
            try:
                return firestore.transactional(fn)(transaction)
            except ValueError as exc:  # the library's "failed after N attempts"
                last: Exception = exc
                outage = _outage(exc)
                if outage is not None:
                    # The client already retried the outage for RPC_RETRY's
                    # deadline: hand the event back to Pub/Sub rather than wait
                    # longer (another round would wait as long again).
                    raise TransientError(f"Firestore unavailable: {outage}") from exc
            except (gexc.Aborted, gexc.Conflict) as exc:
                last = exc
            except gexc.RetryError as exc:
                raise TransientError(f"Firestore unavailable: {exc}") from exc
            except gexc.GoogleAPICallError as exc:
                raise from_google(exc) from exc
            time.sleep(random.uniform(0.02, 0.1) * 2**round_)
        raise TransientError(f"transaction contended: {last}") from last

    def _get(self, ref: Any, transaction: Any = None) -> dict[str, Any] | None:
        try:
            snap = ref.get(transaction=transaction, retry=RPC_RETRY, timeout=RPC_TIMEOUT)
        except gexc.RetryError as exc:
            raise TransientError(f"Firestore unavailable: {exc}") from exc
        except gexc.GoogleAPICallError as exc:
            raise from_google(exc) from exc
        return snap.to_dict() if snap.exists else None

    # --- submission -------------------------------------------------------------

    def create_job(self, spec: JobSpec, job_id: str) -> tuple[dict[str, Any], bool]:
        """Write the units and shards, then the job document (state submitted).

        Returns (job document, created). Idempotent: a retried submission of
        the same spec under the same id returns the existing job; a different
        spec under a taken id is a SpecError. Units are written first, so a
        job document never exists without its units.
        """
        check_job_id(job_id)
        digest = spec_hash(spec)
        existing = self._get(self.job_ref(job_id))
        if existing is not None:
            if existing.get("spec_hash") != digest:
                raise SpecError(f"job id {job_id} is taken by another job")
            return existing, False

        n = spec.unit_count
        shards = shard_count_for(n)
        created = now()
        writes: list[tuple[Any, dict[str, Any]]] = []
        for k, size in enumerate(shard_sizes(n, shards)):
            writes.append(
                (
                    self.shard_ref(job_id, k),
                    {"shard": k, "expected": size, "done": 0, "failed": 0, "complete": False},
                )
            )
        for u in range(n):
            unit_doc: dict[str, Any] = {
                "unit": u,
                "shard": shard_of(u, shards),
                "state": UnitState.PENDING.value,
                "attempts": 1,
                "attempt_limit": spec.max_attempts,
                "deliveries": 0,
                "frame": spec.povray.frames.frame(u) if spec.povray else None,
                "label": spec.unit_spec(u).label
                if spec.units
                else f"frame {spec.povray.frames.frame(u)}"
                if spec.povray
                else "",
                "generation": None,
                "errors": [],
                "updated_at": created,
            }
            if spec.units:
                us = spec.units[u]
                unit_doc["spec"] = {"args": list(us.args), "inputs": us.inputs, "inline": us.inline}
            writes.append((self.unit_ref(job_id, u), unit_doc))
        try:
            for i in range(0, len(writes), BATCH_LIMIT):
                batch = self.db.batch()
                for ref, doc in writes[i : i + BATCH_LIMIT]:
                    batch.set(ref, doc)
                batch.commit()
        except gexc.GoogleAPICallError as exc:
            raise from_google(exc) from exc

        body = dump_job_spec(spec)
        body.pop("units", None)  # unit specs live on the unit documents
        job_doc = {
            "job_id": job_id,
            "name": spec.name,
            "state": JobState.SUBMITTED.value,
            "spec": body,
            "spec_hash": digest,
            "kind": "scene" if spec.povray else "units",
            "units_expected": n,
            "shard_count": shards,
            "shards_complete": 0,
            "units_done": 0,
            "units_failed": 0,
            "max_attempts": spec.max_attempts,
            "fail_fast": spec.fail_fast,
            "created_at": created,
            "updated_at": created,
            "started_at": None,
            "finished_at": None,
            "stitch": None,
            "video": None,
            "poster": None,
            "stats": None,
            "errors": [],
            "retries": 0,
        }
        try:
            self.job_ref(job_id).create(job_doc)
        except gexc.AlreadyExists:
            return self.create_job(spec, job_id)
        except gexc.GoogleAPICallError as exc:
            raise from_google(exc) from exc
        return job_doc, True

    def mark_dispatched(self, job_id: str) -> None:
        """submitted -> rendering once every work message is confirmed published."""

        def tx(transaction: Any) -> None:
            job = self._get(self.job_ref(job_id), transaction)
            if job and job["state"] == JobState.SUBMITTED.value:
                transaction.update(
                    self.job_ref(job_id),
                    {"state": JobState.RENDERING.value, "started_at": now(), "updated_at": now()},
                )

        self._run(tx)

    # --- reading ----------------------------------------------------------------

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self._get(self.job_ref(job_id))

    def require_job(self, job_id: str) -> dict[str, Any]:
        job = self.get_job(job_id)
        if job is None:
            raise UnknownJob(job_id)
        return job

    def get_spec(self, job_id: str) -> JobSpec:
        """The job-level spec; for generated-unit jobs ``units`` is empty (the
        unit specs live on the unit documents): use ``units_expected``."""
        return self._spec_of(self.require_job(job_id))

    @staticmethod
    def _spec_of(job: dict[str, Any]) -> JobSpec:
        body = dict(job["spec"])
        if job.get("kind") == "units":
            body["units"] = [{}]  # satisfies the one-form rule; dropped below
            spec = load_job_spec(body)
            return JobSpec(**{**spec.__dict__, "units": ()})
        return load_job_spec(body)

    def view(self, job_id: str) -> JobView:
        job = self.require_job(job_id)
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

    def unit_records(self, job_id: str, states: tuple[UnitState, ...] = ()) -> list[dict[str, Any]]:
        query = self.job_ref(job_id).collection(COLLECTIONS["units"])
        if states:
            query = query.where(
                filter=firestore.FieldFilter("state", "in", [s.value for s in states])
            )
        records = [s.to_dict() for s in query.stream()]
        return sorted(records, key=lambda r: r["unit"])

    def unit_record(self, job_id: str, unit: int) -> dict[str, Any] | None:
        return self._get(self.unit_ref(job_id, unit))

    def list_jobs(self, limit: int = 20, states: tuple[JobState, ...] = ()) -> list[dict[str, Any]]:
        query = self._jobs.order_by("created_at", direction=firestore.Query.DESCENDING)
        if states:
            # Filtering in memory keeps the console's single-field indexes enough.
            docs = [d.to_dict() for d in query.limit(max(limit * 10, 200)).stream()]
            return [d for d in docs if d["state"] in {s.value for s in states}][:limit]
        return [d.to_dict() for d in query.limit(limit).stream()]

    def active_jobs(self) -> Iterator[dict[str, Any]]:
        active = [JobState.SUBMITTED.value, JobState.RENDERING.value, JobState.STITCHING.value]
        query = self._jobs.where(filter=firestore.FieldFilter("state", "in", active))
        for snap in query.stream():
            yield snap.to_dict()

    # --- the worker's side -------------------------------------------------------

    def start_unit(self, job_id: str, unit: int, attempt: int, worker: str) -> UnitTicket | None:
        """Mark a unit rendering; None if the worker should skip (and ack) it."""
        job = self.get_job(job_id)
        if job is None:
            raise UnknownJob(job_id)
        if JobState(job["state"]).terminal:
            return None
        uref = self.unit_ref(job_id, unit)

        def tx(transaction: Any) -> dict[str, Any] | None:
            doc = self._get(uref, transaction)
            if doc is None:
                raise UnknownJob(f"{job_id} unit {unit}")
            state = UnitState(doc["state"])
            if state.terminal or attempt < int(doc["attempts"]):
                return None
            deliveries = int(doc.get("deliveries", 0)) + 1 if attempt == doc["attempts"] else 1
            update = {
                "state": UnitState.RENDERING.value,
                "attempts": attempt,
                "deliveries": deliveries,
                "worker": worker,
                "started_at": now(),
                "updated_at": now(),
            }
            transaction.update(uref, update)
            return {**doc, **update}

        doc = self._run(tx)
        if doc is None:
            return None
        spec = self._spec_of(job)  # the spec never changes: the job read above has it
        if job.get("kind") == "units":
            s = doc.get("spec") or {}
            unit_spec = UnitSpec(
                args=tuple(s.get("args", ())),
                inputs=s.get("inputs", {}),
                inline=s.get("inline", {}),
                label=doc.get("label", ""),
            )
        else:
            unit_spec = spec.unit_spec(unit)
        return UnitTicket(job_id, unit, attempt, int(doc["deliveries"]), spec, unit_spec)

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

    def complete_shard(self, job_id: str, shard: int) -> Outcome:
        """Fold a complete shard into the job, once; the last one claims the
        stitch (or fails the job if any unit failed)."""
        doc = self._get(self.shard_ref(job_id, shard))
        if doc is None:
            raise UnknownJob(job_id)
        if int(doc["done"]) + int(doc["failed"]) < int(doc["expected"]):
            return Outcome("open", job_id, -1)
        if not doc.get("complete"):
            batch = self.db.batch()
            batch.create(self._marker_ref(job_id, str(shard)), {"shard": shard, "at": now()})
            batch.update(self.shard_ref(job_id, shard), {"complete": True, "updated_at": now()})
            batch.update(
                self.job_ref(job_id),
                {
                    "shards_complete": firestore.Increment(1),
                    "units_done": firestore.Increment(int(doc["done"])),
                    "units_failed": firestore.Increment(int(doc["failed"])),
                    "updated_at": now(),
                },
            )
            try:
                batch.commit()
            except gexc.AlreadyExists:
                pass  # folded by someone else; they or we go on to the claim
            except gexc.GoogleAPICallError as exc:
                raise from_google(exc) from exc
        return self._claim_end(job_id)

    def _claim_end(self, job_id: str) -> Outcome:
        for _ in range(10):
            try:
                snap = self.job_ref(job_id).get()
            except gexc.GoogleAPICallError as exc:
                raise from_google(exc) from exc
            job = snap.to_dict()
            state = JobState(job["state"])
            if (
                int(job.get("shards_complete", 0)) < int(job["shard_count"])
                or state.terminal
                or state == JobState.STITCHING
            ):
                return Outcome("folded", job_id, -1)
            new_state = (
                JobState.STITCHING if int(job.get("units_failed", 0)) == 0 else JobState.FAILED
            )
            update: dict[str, Any] = {"state": new_state.value, "updated_at": now()}
            if new_state == JobState.STITCHING:
                update["stitch"] = {
                    "claim": uuid.uuid4().hex,
                    "claimed_at": now(),
                    "launched_at": None,
                    "launches": 0,
                }
            else:
                update["finished_at"] = now()
            batch = self.db.batch()
            batch.create(
                self._marker_ref(job_id, f"final-{job.get('retries', 0)}"),
                {"state": new_state.value, "at": now()},
            )
            batch.update(
                self.job_ref(job_id),
                update,
                option=self.db.write_option(last_update_time=snap.update_time),
            )
            try:
                batch.commit()
            except gexc.AlreadyExists:
                return Outcome("folded", job_id, -1)
            except (gexc.FailedPrecondition, gexc.Aborted, gexc.Conflict):
                time.sleep(random.uniform(0.01, 0.05))
                continue  # the job changed under us: look again
            except gexc.GoogleAPICallError as exc:
                raise from_google(exc) from exc
            return Outcome(
                "completed",
                job_id,
                -1,
                launch_stitch=new_state == JobState.STITCHING,
                job_state=new_state,
            )
        raise TransientError(f"{job_id}: could not claim the end of the job")

    def _after_count(self, job_id: str, unit: int, shard: int, kind: str) -> Outcome:
        doc = self._get(self.shard_ref(job_id, shard))
        if (
            doc
            and not doc.get("complete")
            and int(doc["done"]) + int(doc["failed"]) >= int(doc["expected"])
        ):
            done = self.complete_shard(job_id, shard)
            return Outcome(
                kind, job_id, unit, launch_stitch=done.launch_stitch, job_state=done.job_state
            )
        return Outcome(kind, job_id, unit)

    def record_frame(
        self, name: str, generation: int, metadata: dict[str, str] | None = None
    ) -> Outcome:
        """A frame object was finalized: count its unit done, once."""
        job_id, unit = parse_frame_object(name)
        uref = self.unit_ref(job_id, unit)
        stats = RenderStats.from_metadata(metadata)

        def tx(transaction: Any) -> tuple[str, int]:
            doc = self._get(uref, transaction)
            if doc is None:
                raise UnknownJob(job_id)
            state = UnitState(doc["state"])
            if state == UnitState.DONE:
                if doc.get("generation") == generation:
                    return "duplicate", int(doc["shard"])
                if generation > int(doc.get("generation") or 0):
                    # A newer object replaced the frame: keep the newest, count nothing.
                    transaction.update(
                        uref, {"generation": generation, "updated_at": now(), **_stats(stats)}
                    )
                    return "overwrite", -1
                return "stale", -1
            if state.terminal:
                return "late", -1
            transaction.update(
                uref,
                {
                    "state": UnitState.DONE.value,
                    "generation": generation,
                    "finished_at": now(),
                    "updated_at": now(),
                    **_stats(stats),
                },
            )
            transaction.update(
                self.shard_ref(job_id, int(doc["shard"])),
                {"done": firestore.Increment(1), "updated_at": now()},
            )
            return "recorded", int(doc["shard"])

        kind, shard = self._run(tx)
        # A redelivered event ("duplicate") goes on to the fold too: the first
        # delivery may have counted the unit and then died, or failed with a
        # transient error, before folding the shard; Pub/Sub redelivers because
        # it was never acknowledged, and only this finishes the job without
        # waiting for the reconciler. A shard already folded costs one read.
        if kind not in ("recorded", "duplicate"):
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
        job = self.require_job(job_id)
        fail_fast = bool(job.get("fail_fast"))
        uref = self.unit_ref(job_id, unit)
        entry = {
            "attempt": attempt,
            "error": error[:2000],
            "log": log_object,
            "worker": worker,
            "at": now(),
        }

        def tx(transaction: Any) -> tuple[str, dict[str, Any]]:
            doc = self._get(uref, transaction)
            if doc is None:
                raise UnknownJob(job_id)
            if UnitState(doc["state"]).terminal:
                return "late", doc
            current = int(doc["attempts"])
            errors = list(doc.get("errors") or [])
            if attempt != current or any(e.get("attempt") == attempt for e in errors):
                return ("duplicate" if attempt == current else "stale"), doc
            errors = [*errors, entry][-MAX_ERRORS_PER_UNIT:]
            if not (final or fail_fast or attempt >= int(doc.get("attempt_limit", 1))):
                transaction.update(
                    uref,
                    {
                        "state": UnitState.PENDING.value,
                        "attempts": attempt + 1,
                        "deliveries": 0,
                        "errors": errors,
                        "queued_at": None,
                        "updated_at": now(),
                    },
                )
                return "requeued", doc
            transaction.update(
                uref,
                {
                    "state": UnitState.FAILED.value,
                    "errors": errors,
                    "finished_at": now(),
                    "updated_at": now(),
                },
            )
            transaction.update(
                self.shard_ref(job_id, int(doc["shard"])),
                {"failed": firestore.Increment(1), "updated_at": now()},
            )
            return "failed", doc

        kind, doc = self._run(tx)
        if kind == "requeued":
            return Outcome(kind, job_id, unit, requeue=WorkMessage(job_id, unit, attempt + 1))
        if kind == "failed":
            self._note_error(job_id, {"unit": unit, "frame": doc.get("frame"), **entry})
        elif kind == "late" and doc.get("state") == UnitState.FAILED.value:
            # A redelivered report of a unit that failed for good: finish what
            # its first delivery may not have reached (see record_frame): the
            # job's copy of the error, the fold and, on a fail-fast job, the end.
            failed = [e for e in doc.get("errors") or [] if e.get("attempt") == doc["attempts"]]
            if failed:
                self._note_error(job_id, {"unit": unit, "frame": doc.get("frame"), **failed[-1]})
        else:
            return Outcome(kind, job_id, unit)
        outcome = self._after_count(job_id, unit, int(doc["shard"]), kind)
        if fail_fast and outcome.job_state is None and self.fail_job(job_id, failed_by=unit):
            return Outcome(kind, job_id, unit, job_state=JobState.FAILED)
        return outcome

    def _note_error(self, job_id: str, entry: dict[str, Any]) -> None:
        """Keep the first errors on the job for the console and the CLI, one per
        unit and attempt. A blind ArrayUnion: many units failing at once must
        not contend on the job."""
        job = self.get_job(job_id) or {}
        errors = job.get("errors") or []
        if len(errors) >= MAX_ERRORS_ON_JOB or any(
            (e.get("unit"), e.get("attempt")) == (entry["unit"], entry["attempt"]) for e in errors
        ):
            return
        self.job_ref(job_id).update({"errors": firestore.ArrayUnion([entry])})

    def fail_job(self, job_id: str, **fields: Any) -> bool:
        """Fail a job that is not finished yet (fail-fast); True if this call did."""

        def tx(transaction: Any) -> bool:
            job = self._get(self.job_ref(job_id), transaction)
            if job is None or JobState(job["state"]).terminal:
                return False
            transaction.update(
                self.job_ref(job_id),
                {
                    "state": JobState.FAILED.value,
                    "finished_at": now(),
                    "updated_at": now(),
                    **fields,
                },
            )
            return True

        return self._run(tx)

    def mark_queued(self, message: WorkMessage) -> None:
        """The requeued message is confirmed published (the reconciler
        republishes requeued units that never got here)."""
        self.unit_ref(message.job_id, message.unit).update({"queued_at": now()})

    # --- the stitch ---------------------------------------------------------------

    def mark_launched(self, job_id: str) -> None:
        def tx(transaction: Any) -> None:
            job = self._get(self.job_ref(job_id), transaction)
            if job and job["state"] == JobState.STITCHING.value and job.get("stitch"):
                stitch = dict(job["stitch"])
                stitch["launched_at"] = now()
                stitch["launches"] = int(stitch.get("launches", 0)) + 1
                transaction.update(self.job_ref(job_id), {"stitch": stitch, "updated_at": now()})

        self._run(tx)

    def _finish(self, job_id: str, update: dict[str, Any]) -> bool:
        def tx(transaction: Any) -> bool:
            job = self._get(self.job_ref(job_id), transaction)
            if job is None:
                raise UnknownJob(job_id)
            if job["state"] != JobState.STITCHING.value:
                return False
            transaction.update(
                self.job_ref(job_id), {**update, "finished_at": now(), "updated_at": now()}
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
            {
                "state": JobState.DONE.value,
                "video": video,
                "poster": poster,
                "stats": stats,
                "stats_object": stats_object,
            },
        )

    def fail_stitch(self, job_id: str, error: str) -> bool:
        return self._finish(
            job_id,
            {
                "state": JobState.FAILED.value,
                "stitch_error": error[:2000],
                "errors": firestore.ArrayUnion([{"stitch": error[:2000]}]),
            },
        )

    # --- user controls ------------------------------------------------------------

    def cancel(self, job_id: str) -> JobState:
        def tx(transaction: Any) -> JobState:
            job = self._get(self.job_ref(job_id), transaction)
            if job is None:
                raise UnknownJob(job_id)
            state = JobState(job["state"])
            if state.terminal:
                return state
            transaction.update(
                self.job_ref(job_id),
                {"state": JobState.CANCELLED.value, "finished_at": now(), "updated_at": now()},
            )
            return JobState.CANCELLED

        return self._run(tx)

    def retry(self, job_id: str) -> list[WorkMessage]:
        """Requeue only the failed units of a failed job, in one transaction
        per shard (units, then shard, then job: the same order as counting).
        Returns the messages to publish after commit."""
        job = self.require_job(job_id)
        if job["state"] != JobState.FAILED.value:
            raise SpecError(f"job {job_id} is {job['state']}; only a failed job can be retried")
        if job.get("stitch_error"):
            raise SpecError(f"job {job_id} failed in the stitch; its frames are all done")
        failed_shards = sorted(
            {int(r["shard"]) for r in self.unit_records(job_id, (UnitState.FAILED,))}
        )
        messages: list[WorkMessage] = []
        for k in failed_shards:
            messages.extend(self._retry_shard(job_id, k))
        # Fail-fast leaves units that were never finished: the workers skipped
        # them while the job was failed. They count nowhere yet: just resend.
        stranded = self.unit_records(job_id, (UnitState.PENDING, UnitState.RENDERING))
        requeued = {m.unit for m in messages}
        messages.extend(
            WorkMessage(job_id, int(r["unit"]), int(r["attempts"]))
            for r in stranded
            if r["unit"] not in requeued
        )
        return messages

    def _retry_shard(self, job_id: str, k: int) -> list[WorkMessage]:
        units_col = self.job_ref(job_id).collection(COLLECTIONS["units"])
        query = units_col.where(filter=firestore.FieldFilter("shard", "==", k)).where(
            filter=firestore.FieldFilter("state", "==", UnitState.FAILED.value)
        )

        def tx(transaction: Any) -> list[WorkMessage]:
            failed = [(s.reference, s.to_dict()) for s in query.stream(transaction=transaction)]
            sref = self.shard_ref(job_id, k)
            shard = self._get(sref, transaction)
            job = self._get(self.job_ref(job_id), transaction)
            if not failed or shard is None or job is None:
                return []
            out = []
            for ref, doc in failed:
                attempt = int(doc["attempts"]) + 1
                transaction.update(
                    ref,
                    {
                        "state": UnitState.PENDING.value,
                        "attempts": attempt,
                        "attempt_limit": attempt - 1 + int(job.get("max_attempts", 1)),
                        "deliveries": 0,
                        "queued_at": None,
                        "updated_at": now(),
                    },
                )
                out.append(WorkMessage(job_id, int(doc["unit"]), attempt))
            update: dict[str, Any] = {
                "updated_at": now(),
                "state": JobState.RENDERING.value,
                "finished_at": None,
            }
            if shard.get("complete"):
                # Un-count what folding this shard added to the job, and drop its
                # marker so the shard can be folded again when it completes.
                transaction.delete(self._marker_ref(job_id, str(k)))
                update["shards_complete"] = int(job["shards_complete"]) - 1
                update["units_done"] = int(job["units_done"]) - int(shard["done"])
                update["units_failed"] = int(job["units_failed"]) - int(shard["failed"])
            if job["state"] == JobState.FAILED.value:
                update["retries"] = int(job.get("retries", 0)) + 1
                update["errors"] = []
            transaction.update(
                sref,
                {
                    "failed": int(shard["failed"]) - len(failed),
                    "complete": False,
                    "updated_at": now(),
                },
            )
            transaction.update(self.job_ref(job_id), update)
            return out

        return self._run(tx)


def _stats(stats: RenderStats) -> dict[str, Any]:
    return {
        "render_seconds": stats.render_seconds,
        "cpu_seconds": stats.cpu_seconds,
        "peak_memory_bytes": stats.peak_memory_bytes,
        "worker": stats.worker,
    }
