"""The domain model: job and unit states, their transitions, and the typed
messages that travel between the parts of the farm.

Pure: no cloud client is imported here. The ledger (``povstorm.ledger``)
applies these rules inside Firestore transactions; tests exercise them with no
cloud at all.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from povstorm.core.errors import IllegalTransition


class UnitState(enum.StrEnum):
    """A work unit (a frame or a generated unit). Vocabulary after OpenCue."""

    PENDING = "pending"  # queued, waiting for a worker
    RENDERING = "rendering"  # a worker holds it
    DONE = "done"  # its frame object is recorded
    FAILED = "failed"  # failed for good (attempts exhausted, or fail-fast)
    CANCELLED = "cancelled"  # its job was cancelled before it finished

    @property
    def terminal(self) -> bool:
        return self in _UNIT_TERMINAL


class JobState(enum.StrEnum):
    SUBMITTED = "submitted"  # written, work not yet fully dispatched
    RENDERING = "rendering"  # every unit dispatched
    STITCHING = "stitching"  # every unit done; the stitch is claimed
    DONE = "done"  # video recorded
    FAILED = "failed"  # some unit failed for good (or the stitch did)
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _JOB_TERMINAL


_UNIT_TERMINAL = frozenset({UnitState.DONE, UnitState.FAILED, UnitState.CANCELLED})
_JOB_TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})

# States only move forward. The one way back is an explicit user retry
# (``povstorm retry JOB``), which is its own transition, not an event.
UNIT_TRANSITIONS: dict[UnitState, frozenset[UnitState]] = {
    UnitState.PENDING: frozenset(
        {UnitState.RENDERING, UnitState.DONE, UnitState.FAILED, UnitState.CANCELLED}
    ),
    UnitState.RENDERING: frozenset(
        {UnitState.PENDING, UnitState.DONE, UnitState.FAILED, UnitState.CANCELLED}
    ),
    UnitState.DONE: frozenset(),
    UnitState.FAILED: frozenset(),
    UnitState.CANCELLED: frozenset(),
}
UNIT_RETRY: dict[UnitState, frozenset[UnitState]] = {
    UnitState.FAILED: frozenset({UnitState.PENDING}),
}

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.SUBMITTED: frozenset(
        {JobState.RENDERING, JobState.STITCHING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RENDERING: frozenset({JobState.STITCHING, JobState.FAILED, JobState.CANCELLED}),
    JobState.STITCHING: frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}
JOB_RETRY: dict[JobState, frozenset[JobState]] = {
    JobState.FAILED: frozenset({JobState.RENDERING}),
}


class VideoState(enum.StrEnum):
    """Another video of a done job, made from its frames again (``povstorm
    stitch JOB``): one entry of the job's ``videos`` map."""

    REQUESTED = "requested"  # recorded; its stitch launched or about to be
    DONE = "done"  # the video is in the bucket
    FAILED = "failed"  # the stitch could not make it (its error is kept)


# A failed video may be asked for again; a done one is kept as it is.
VIDEO_TRANSITIONS: dict[VideoState, frozenset[VideoState]] = {
    VideoState.REQUESTED: frozenset({VideoState.DONE, VideoState.FAILED}),
    VideoState.DONE: frozenset(),
    VideoState.FAILED: frozenset({VideoState.REQUESTED}),
}


class DeliveryState(enum.StrEnum):
    """The delivery of a finished job's notification (``notify``): the job's
    ``delivery`` record, one per job end (farm/notify.py)."""

    PENDING = "pending"  # attempted, not accepted yet: Pub/Sub delivers the event again
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed: given up


DELIVERY_TRANSITIONS: dict[DeliveryState, frozenset[DeliveryState]] = {
    DeliveryState.PENDING: frozenset({DeliveryState.DELIVERED, DeliveryState.FAILED}),
    DeliveryState.DELIVERED: frozenset(),
    DeliveryState.FAILED: frozenset(),
}


def can_move(table: dict, old: enum.Enum, new: enum.Enum) -> bool:
    return new in table.get(old, frozenset())


def check_move(table: dict, old: enum.Enum, new: enum.Enum) -> None:
    if not can_move(table, old, new):
        raise IllegalTransition(f"illegal transition {old.value} -> {new.value}")


# A job's units are counted in shards of consecutive units: a unit's count
# writes its shard, and only the unit that completes a shard folds it into the
# job document. A shard of at least UNITS_PER_SHARD units keeps the job
# document to one write per 8 frames or fewer (Firestore sustains about one
# write a second on a document; a fast job lands several frames a second),
# and consecutive units keep the frames rendering at once, one in each chunk,
# in different shards. MAX_SHARDS bounds the shard documents a watcher reads.
UNITS_PER_SHARD = 8
MAX_SHARDS = 64


def shard_block(units: int) -> int:
    """How many consecutive units one shard of a ``units``-unit job counts."""
    return max(UNITS_PER_SHARD, -(-units // MAX_SHARDS))


def shard_count_for(units: int) -> int:
    """No shard is empty: the last one takes what is left."""
    return max(1, -(-units // shard_block(units)))


def shard_of(unit: int, units: int) -> int:
    return unit // shard_block(units)


def shard_sizes(units: int) -> list[int]:
    block = shard_block(units)
    return [min(block, units - k * block) for k in range(shard_count_for(units))]


@dataclass(frozen=True)
class WorkMessage:
    """One unit of work on the ``work`` topic: units ``unit`` to
    ``unit + count - 1`` of a job (a chunk of frames, core/chunks.py), at
    ``attempt``. Tiny: the worker reads the spec from the ledger, so a
    requeue only republishes this. A requeue is always one unit."""

    job_id: str
    unit: int
    attempt: int = 1
    count: int = 1

    @property
    def units(self) -> range:
        return range(self.unit, self.unit + self.count)


@dataclass(frozen=True)
class JobEvent:
    """A job changed state (the ``job_events`` topic): published after the
    commit that moved it, by whoever moved it (cloud/pubsub.py:
    publish_job_event). ``previous`` is None where the mover did not read it.
    At least once, and in order only as the moves were: a consumer reads the
    job for what is true now (farm/notify.py does)."""

    job_id: str
    state: JobState
    previous: JobState | None = None
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class FrameEvent:
    """A GCS OBJECT_FINALIZE notification for a frame object."""

    bucket: str
    name: str
    generation: int
    metadata: dict[str, str] = field(default_factory=dict)
    size: int = 0


@dataclass(frozen=True)
class FailureReport:
    """A failed attempt, from a render worker or from the dead-letter topic."""

    job_id: str
    unit: int
    attempt: int
    error: str
    log_tail: str = ""
    worker: str = ""
    # False for a crash or dead letter, where another attempt may succeed,
    # and for POV-Ray errors too: a scene error fails every attempt, but the
    # max_attempts policy (not the worker) decides when to give up.
    final: bool = False


@dataclass(frozen=True)
class RenderStats:
    """What POV-Ray reported about one frame (object metadata on the frame)."""

    render_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
    worker: str = ""
    # The frame cache key it was copied from (core/framekey.py): not rendered.
    cached: str = ""

    def to_metadata(self) -> dict[str, str]:
        return {
            "render_seconds": f"{self.render_seconds:.3f}",
            "cpu_seconds": f"{self.cpu_seconds:.3f}",
            "peak_memory_bytes": str(self.peak_memory_bytes),
            "worker": self.worker,
            **({"cached": self.cached} if self.cached else {}),
        }

    @classmethod
    def from_metadata(cls, md: dict[str, Any] | None) -> RenderStats:
        md = md or {}

        def num(key: str, kind: type = float) -> Any:
            try:
                return kind(md.get(key, 0) or 0)
            except (TypeError, ValueError):
                return kind(0)

        return cls(
            render_seconds=num("render_seconds"),
            cpu_seconds=num("cpu_seconds"),
            peak_memory_bytes=num("peak_memory_bytes", int),
            worker=str(md.get("worker", "")),
            cached=str(md.get("cached", "")),
        )
