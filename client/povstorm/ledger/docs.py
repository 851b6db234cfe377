"""The ledger's documents as typed, frozen values, and the one way a write
changes a state.

    JobDoc     jobs/{job}
    UnitDoc    jobs/{job}/units/{n:06d}
    ShardDoc   jobs/{job}/shards/{k}

Where it sits: ``Ledger`` (ledger.py) reads every snapshot it decides on into
one of these and builds every write from them: a new document from
``to_fields()``, a state change from ``moved()`` (or ``retried()``, the user's
retry, or ``toward()``), any other change from ``update_fields()``. A move the
transition tables of ``core/model.py`` refuse raises IllegalTransition before
anything is written, so "states only move forward" is code, not a comment.

The field names are the documents' own: users read them in the Firestore
console, and the client, watch, CLI, reconciler, stitch and bench read them
too, so they never change here. Values passed to a write may be Firestore
sentinels (Increment, ArrayUnion, SERVER_TIMESTAMP): they go through as given.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from povstorm.core.errors import IllegalTransition
from povstorm.core.model import (
    JOB_RETRY,
    JOB_TRANSITIONS,
    UNIT_RETRY,
    UNIT_TRANSITIONS,
    JobState,
    UnitState,
    check_move,
    shard_of,
)
from povstorm.core.schemas import dump_job_spec
from povstorm.core.spec import JobSpec

Fields = dict[str, Any]
# The job document's field of Firestore's TTL policy (terraform firestore.tf).
TTL_FIELD = "expire_at"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def scene_key(spec: JobSpec) -> str:
    """What decides a scene job's frame time: its arguments and input files
    (not its frame range or video settings). "" for generated units."""
    return _scene_digest(spec, dict(sorted(spec.inputs.items())))


def scene_family(spec: JobSpec) -> str:
    """The scene across edits: its arguments and the names of its input
    files, not their content. An animator who changes a scene and renders it
    again gets the frame time of its last version for the chunk plan, which
    is right far more often than knowing nothing. "" for generated units."""
    return _scene_digest(spec, sorted(spec.inputs))


def _scene_digest(spec: JobSpec, inputs: Any) -> str:
    if spec.povray is None:
        return ""
    body = {"args": list(spec.povray.args), "inputs": inputs}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def state_update(table: dict, old: enum.Enum, new: enum.Enum, **fields: Any) -> Fields:
    """The fields of a write that moves ``old`` to ``new``, after the table allows it."""
    if "state" in fields:
        raise TypeError("the new state is the argument, not a field")
    check_move(table, old, new)
    return {"state": new.value, **fields}


class _Doc:
    """What the three documents share: reading a snapshot, writing fields."""

    # Fields a new document does not carry until a later write sets them (as
    # the documents were always written: absent, not null, until then).
    _LATER: ClassVar[frozenset[str]] = frozenset()
    _INTS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def _convert(cls, values: Fields) -> Fields:
        return values

    @classmethod
    def from_dict(cls, data: Fields) -> Self:
        """The document read; fields it lacks take their defaults (a document
        written before the field existed), fields this class lacks are ignored."""
        names = cls._names()
        values = {k: v for k, v in data.items() if k in names}
        for name in cls._INTS & values.keys():
            if values[name] is not None:
                values[name] = int(values[name])
        if "errors" in names:
            values["errors"] = tuple(data.get("errors") or ())
        return cls(**cls._convert(values))

    @classmethod
    def from_snapshot(cls, snap: Any) -> Self | None:
        return cls.from_dict(snap.to_dict()) if snap.exists else None

    def to_fields(self) -> Fields:
        """The whole document, to create it."""
        out: Fields = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.name in self._LATER:
                continue
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def update_fields(cls, **changes: Any) -> Fields:
        """The fields of a write that keeps the state. Usable on the class for
        blind writes (the fold increments a job it never read)."""
        if "state" in changes:
            raise IllegalTransition(f"{cls.__name__}: a state changes only through moved()")
        unknown = changes.keys() - cls._names()
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
        return {k: v.value if isinstance(v, enum.Enum) else v for k, v in changes.items()}

    def _what(self) -> str:
        raise NotImplementedError

    def _move(self, table: dict, old: enum.Enum, new: enum.Enum, changes: Fields) -> Fields:
        fields = self.update_fields(**changes)
        try:
            return state_update(table, old, new, **fields)
        except IllegalTransition as exc:
            raise IllegalTransition(f"{self._what()}: {exc}") from None


@dataclass(frozen=True)
class UnitDoc(_Doc):
    unit: int
    shard: int
    state: UnitState
    attempts: int = 1  # the current attempt
    attempt_limit: int = 1
    deliveries: int = 0  # deliveries of the current attempt
    frame: int | None = None
    label: str = ""
    generation: int | None = None  # of the frame object counted
    errors: tuple[dict[str, Any], ...] = ()
    updated_at: dt.datetime | None = None
    worker: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    queued_at: dt.datetime | None = None
    # When the reconciler may think the worker lost (started_at plus the
    # frame timeouts of the frames before it in its chunk, and its own).
    deadline_at: dt.datetime | None = None
    render_seconds: float | None = None
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    cached: str | None = None  # the frame cache key its frame was copied from
    frame_bytes: int | None = None  # the size of the frame object counted
    spec: dict[str, Any] | None = None  # generated units only

    _LATER = frozenset(
        {
            "worker",
            "started_at",
            "finished_at",
            "queued_at",
            "deadline_at",
            "render_seconds",
            "cpu_seconds",
            "peak_memory_bytes",
            "cached",
            "frame_bytes",
            "spec",
        }
    )
    _INTS = frozenset({"unit", "shard", "attempts", "attempt_limit", "deliveries"})

    @classmethod
    def _convert(cls, values: Fields) -> Fields:
        return {**values, "state": UnitState(values["state"])}

    @classmethod
    def first(cls, spec: JobSpec, unit: int, created: dt.datetime) -> UnitDoc:
        """Unit ``unit`` of a new job: pending, first attempt."""
        us = spec.units[unit] if spec.units else None
        return cls(
            unit=unit,
            shard=shard_of(unit, spec.unit_count),
            state=UnitState.PENDING,
            attempts=1,
            attempt_limit=spec.max_attempts,
            deliveries=0,
            frame=spec.frame_of(unit) if spec.povray else None,
            label=spec.unit_spec(unit).label,
            generation=None,
            errors=(),
            updated_at=created,
            spec={"args": list(us.args), "inputs": us.inputs, "inline": us.inline} if us else None,
        )

    def _what(self) -> str:
        return f"unit {self.unit}"

    def moved(self, new: UnitState, **changes: Any) -> Fields:
        """The fields of an event's move to ``new`` (UNIT_TRANSITIONS)."""
        return self._move(UNIT_TRANSITIONS, self.state, new, changes)

    def retried(self, new: UnitState, **changes: Any) -> Fields:
        """The fields of the user's retry (UNIT_RETRY: failed -> pending)."""
        return self._move(UNIT_RETRY, self.state, new, changes)

    def toward(self, new: UnitState, **changes: Any) -> Fields:
        """A move to ``new``, or, for a unit already there (a redelivery of a
        unit rendering, a requeue of a unit still pending), a write that
        keeps it: that is not a transition."""
        if self.state == new and not new.terminal:
            return self.update_fields(**changes)
        return self.moved(new, **changes)


@dataclass(frozen=True)
class ShardDoc(_Doc):
    shard: int
    expected: int
    done: int = 0
    failed: int = 0
    complete: bool = False  # folded into the job
    # What the frames it counted took and weigh, summed as they are counted
    # (the cost of core/cost.py, read from the shards, never from the units);
    # absent until the first count.
    render_seconds: float | None = None
    frame_bytes: int | None = None
    updated_at: dt.datetime | None = None

    _LATER = frozenset({"updated_at", "render_seconds", "frame_bytes"})
    _INTS = frozenset({"shard", "expected", "done", "failed", "frame_bytes"})

    def _what(self) -> str:
        return f"shard {self.shard}"

    @property
    def settled(self) -> int:
        return self.done + self.failed

    @property
    def full(self) -> bool:
        """Every unit of the shard is done or failed."""
        return self.settled >= self.expected

    def folded(self, **changes: Any) -> Fields:
        """The shard's side of the fold; a shard is folded once."""
        if self.complete:
            raise IllegalTransition(f"{self._what()}: already folded")
        return self.update_fields(complete=True, **changes)


@dataclass(frozen=True)
class JobDoc(_Doc):
    job_id: str
    state: JobState
    name: str = "job"
    spec: dict[str, Any] = field(default_factory=dict)  # job-level; unit specs on the units
    spec_hash: str = ""
    kind: str = "scene"  # scene | units
    units_expected: int = 0
    shard_count: int = 1
    shards_complete: int = 0  # the folded counts: exact once every shard is folded
    units_done: int = 0
    units_failed: int = 0
    max_attempts: int = 1
    fail_fast: bool = False
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    stitch: dict[str, Any] | None = None  # claim, claimed_at, launched_at, launches
    video: str | None = None
    poster: str | None = None
    stats: dict[str, Any] | None = None
    errors: tuple[dict[str, Any], ...] = ()  # the first MAX_ERRORS_ON_JOB
    retries: int = 0
    stats_object: str | None = None
    stitch_error: str | None = None
    # Frames the stitch stored in the frame cache once the job was done
    # (stitch/job.py: store_frames); None until it has.
    cache_filled: int | None = None
    # The contact sheet the stitch made once the job was done (stitch/job.py:
    # _contact_sheet), its object name; None until it has, or if it could not.
    sheet: str | None = None
    failed_by: int | None = None  # the unit that ended a fail-fast job
    # What the chunk plan was made from (core/chunks.py): the deployment's
    # render slots and the scene's expected seconds a frame, if known.
    plan: dict[str, Any] = field(default_factory=dict)
    # Jobs of the same scene and options share it; of the same scene across
    # edits of its files, scene_family (ledger.last_stats_of).
    scene_key: str = ""
    scene_family: str = ""
    # The videos made again from a done job's frames (``povstorm stitch``),
    # by ``core.naming.video_key``: {fps, codec, crf, format, state
    # (core.model.VideoState), object, error, requested_at, launched_at,
    # finished_at}. The job's own video stays ``video``.
    videos: dict[str, Any] | None = None
    # The render executions launched for the job's work (Cloud Run execution
    # names; locally the task runner's), which cancelling the job stops.
    executions: list[str] | None = None
    # Why it was cancelled, if the farm did it (a budget passed); None for a
    # user's cancel.
    cancel_reason: str | None = None
    # The task sizes of the deployment at submit, {render, stitch: {vcpus,
    # memory_gib}} (core/cost.py: resources): what its cost is computed with.
    resources: dict[str, Any] | None = None
    # The notification of the job's end to its spec's ``notify`` URL
    # (farm/notify.py): {id (``delivery_id``), url, state
    # (core.model.DeliveryState), attempts, status, error, sending_until,
    # first_at, last_at, delivered_at}. Absent until the first attempt.
    delivery: dict[str, Any] | None = None
    # How many days the job is kept once it ends (the deployment's
    # jobs_retention_days at submit; None: for ever), and when that is:
    # Firestore's TTL policy on ``expire_at`` (TTL_FIELD, terraform
    # firestore.tf) deletes the job document then. ``moved`` sets it with
    # ``finished_at``.
    retention_days: float | None = None
    expire_at: dt.datetime | None = None

    _LATER = frozenset(
        {
            "retention_days",
            "expire_at",
            "stats_object",
            "stitch_error",
            "cache_filled",
            "sheet",
            "failed_by",
            "videos",
            "executions",
            "delivery",
            "cancel_reason",
            "resources",
        }
    )
    _INTS = frozenset(
        {
            "units_expected",
            "shard_count",
            "shards_complete",
            "units_done",
            "units_failed",
            "max_attempts",
            "retries",
        }
    )

    @classmethod
    def _convert(cls, values: Fields) -> Fields:
        return {**values, "state": JobState(values["state"])}

    @classmethod
    def first(
        cls,
        spec: JobSpec,
        job_id: str,
        digest: str,
        shards: int,
        created: dt.datetime,
        plan: dict[str, Any] | None = None,
        resources: dict[str, Any] | None = None,
        retention_days: float | None = None,
    ) -> JobDoc:
        """A new job: submitted, nothing counted."""
        body = dump_job_spec(spec)
        body.pop("units", None)  # unit specs live on the unit documents
        return cls(
            job_id=job_id,
            state=JobState.SUBMITTED,
            name=spec.name,
            spec=body,
            spec_hash=digest,
            kind="scene" if spec.povray else "units",
            units_expected=spec.unit_count,
            shard_count=shards,
            max_attempts=spec.max_attempts,
            fail_fast=spec.fail_fast,
            created_at=created,
            updated_at=created,
            plan=dict(plan or {}),
            resources=resources,
            retention_days=retention_days or None,
            scene_key=scene_key(spec),
            scene_family=scene_family(spec),
        )

    def _what(self) -> str:
        return f"job {self.job_id}"

    @property
    def delivery_id(self) -> str:
        """The notification of this end of the job: the same for every
        attempt (a receiver dedupes on it), another after a retry ends it again."""
        return f"{self.job_id}.{self.state.value}.{self.retries}"

    def moved(self, new: JobState, **changes: Any) -> Fields:
        """The fields of a move to ``new`` (JOB_TRANSITIONS)."""
        return self._move(JOB_TRANSITIONS, self.state, new, self._expiry(changes))

    def retried(self, new: JobState, **changes: Any) -> Fields:
        """The fields of the user's retry (JOB_RETRY: failed -> rendering)."""
        return self._move(JOB_RETRY, self.state, new, self._expiry(changes))

    def _expiry(self, changes: Fields) -> Fields:
        """``changes`` with the ``expire_at`` its ``finished_at`` implies: a
        job that ends expires ``retention_days`` later; one that no longer
        has ended (a retry) does not expire. Here, so that every way a job
        ends (the claim, the stitch, fail-fast, cancel) sets it alike."""
        if "finished_at" not in changes:
            return changes
        end = changes["finished_at"]
        if end is None:
            return {**changes, "expire_at": None} if self.expire_at is not None else changes
        if not self.retention_days:
            return changes
        return {**changes, "expire_at": end + dt.timedelta(days=self.retention_days)}
