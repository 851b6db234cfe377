"""What the ledger hands back to its callers: the outcome of an event, a unit
a worker may render, a job with its live counts, and the spec of a stored job.

Where it sits: ``Ledger`` (ledger.py) returns these to ``povstorm.farm`` (which
acts on an ``Outcome`` after commit), to the render worker (``UnitTicket``) and
to the client (``JobView``). Nothing here touches Firestore.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from povstorm.core.model import JobState, WorkMessage
from povstorm.core.schemas import dump_job_spec, load_job_spec
from povstorm.core.spec import JobSpec, UnitSpec
from povstorm.ledger.docs import JobDoc


class OutcomeKind(enum.StrEnum):
    """What an event did. Log lines and the functions' logs print the value."""

    RECORDED = "recorded"  # a frame counted its unit done
    DUPLICATE = "duplicate"  # the same frame or report again: nothing counted
    OVERWRITE = "overwrite"  # a newer generation of a done frame: kept, not counted
    STALE = "stale"  # an older generation, or a report of an attempt no longer current
    LATE = "late"  # an event for a unit already settled otherwise
    REQUEUED = "requeued"  # a failed attempt: the unit goes back to pending
    FAILED = "failed"  # the unit failed for good and is counted failed
    OPEN = "open"  # complete_shard on a shard not yet full
    FOLDED = "folded"  # the shard is folded; the end of the job is not this call's
    COMPLETED = "completed"  # this call claimed the end of the job


@dataclass(frozen=True)
class Outcome:
    """What a ledger transaction decided; the caller acts on it after commit."""

    kind: OutcomeKind
    job_id: str
    unit: int
    launch_stitch: bool = False
    requeue: WorkMessage | None = None
    job_state: JobState | None = None  # set when this transaction moved the job


@dataclass(frozen=True)
class UnitTicket:
    """The units a worker may render now: ``units`` of a chunk (one for a
    still or a generated unit), ``unit`` the first of them, with its spec
    and the deliveries counted on it."""

    job_id: str
    unit: int
    attempt: int
    deliveries: int
    spec: JobSpec
    unit_spec: UnitSpec
    units: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.units:
            object.__setattr__(self, "units", (self.unit,))


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


@dataclass(frozen=True)
class StoredDoc:
    """One document of a job, as ``povstorm rm`` lists it: ``kind`` is
    "job" for jobs/{job}, else its subcollection (units, shards,
    completions); ``updated`` the POSIX time of its last write."""

    kind: str
    path: str
    updated: float


def spec_hash(spec: JobSpec) -> str:
    body = dump_job_spec(spec)
    body.pop("job_id", None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def spec_of(job: JobDoc) -> JobSpec:
    """The job-level spec; for generated-unit jobs ``units`` is empty (the
    unit specs live on the unit documents): use ``units_expected``."""
    body = dict(job.spec)
    if job.kind == "units":
        body["units"] = [{}]  # satisfies the one-form rule; dropped below
        spec = load_job_spec(body)
        return JobSpec(**{**spec.__dict__, "units": ()})
    return load_job_spec(body)
