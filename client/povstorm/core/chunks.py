"""Chunks: how the frames of an animation are handed to workers.

A unit of work is a *chunk*: a contiguous range of units (frames) that one
POV-Ray process renders with its own animation loop (``+SF a +EF b``), so
POV-Ray's start-up (about 0.6 s, CPU idle) is paid once per chunk rather than
once per frame. The ledger still has one document per frame and counts each
frame from its own finalize event; a chunk exists only in the work messages
(``WorkMessage.unit`` and ``count``) and in this plan.

The plan is a pure function of the job, so the reconciler can rebuild the
one the submission made:

* ``frames_per_unit`` set by the user (``--frames-per-unit N``): chunks of N;
* otherwise *guided* (as OpenMP's guided schedule): each chunk takes
  1/(GUIDED_SHARE x slots) of the frames still unplanned, so chunks start
  large (few POV-Ray start-ups) and shrink to single frames at the end, where
  the last ones then finish together on every worker; ``slots`` is how many
  POV-Ray processes the deployment runs at once. GUIDED_SHARE is 1: ``make
  bench``'s fill table measured every extra chunk's start-up at small frames
  (48 frames of 320x240 on 4 processes: 4 equal chunks 1.08 x the limit, the
  guided plan's 19 chunks with a share of 2, 1.33);
* when the frames' times are known (the latest done job of the same scene,
  or of its last version: ``Ledger.last_stats_of``; each frame's own time if
  that job rendered the same frames, ``profile`` in at most PROFILE_SLICES
  slices, else its median for every frame), chunks are cut by estimated
  seconds, so frames that differ in cost (an explosion in the first second)
  make chunks of equal time rather than of equal frame counts. A job of at
  most EQUAL_SECONDS of rendering a slot becomes ``slots`` chunks of equal
  time: one start-up a slot, all finishing together (measured: 48 frames of
  examples/spinning at 320x240 on 4 processes, a guided plan with a 10 s
  floor cut four chunks of 10-12 frames and a fifth of 6, which ran alone for
  the job's last 3-4 s with half the cores idle). A longer job is guided in
  seconds, each chunk at least MIN_CHUNK_SECONDS;
* a chunk is never longer than CHUNK_SECONDS of rendering when the frame
  time is known, and never more than MAX_FRAMES_PER_UNIT frames: a worker
  lost mid-chunk costs at most that much, and the worker hands the rest of a chunk on (``count`` smaller)
  when its own time budget runs out anyway.

Generated units (``WorkUnit``) and stills are one unit per message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from povstorm.core.spec import FRAMES_PER_UNIT, JobSpec

MAX_FRAMES_PER_UNIT = FRAMES_PER_UNIT.high  # also the largest transaction a chunk start makes
GUIDED_SHARE = 1
CHUNK_SECONDS = 300.0
MIN_CHUNK_SECONDS = 10.0
EQUAL_SECONDS = 60.0


PROFILE_SLICES = 256


def frame_profile(seconds: Sequence[float | None]) -> list[float]:
    """Each frame's render seconds (None: unknown) in at most PROFILE_SLICES
    slices of consecutive frames, each the mean of its known frames (an
    unknown slice takes the mean of all): what ``plan_chunks`` reads back."""
    known = [s for s in seconds if s is not None]
    if not known:
        return []
    overall = sum(known) / len(known)
    n = len(seconds)
    count = min(n, PROFILE_SLICES)
    out = []
    for i in range(count):
        part = [s for s in seconds[i * n // count : (i + 1) * n // count] if s is not None]
        out.append(round(sum(part) / len(part) if part else overall, 3))
    return out


def _times(profile: Sequence[float], units: int) -> list[float]:
    """The estimated seconds of each of ``units`` frames from a profile of them."""
    return [float(profile[u * len(profile) // units]) for u in range(units)]


def plan_chunks(
    units: int,
    slots: int,
    frames_per_unit: int = 0,
    frame_seconds: float | None = None,
    profile: Sequence[float] | None = None,
) -> list[tuple[int, int]]:
    """(first unit, count) of each chunk, in dispatch order, covering 0..units-1."""
    slots = max(1, slots)
    if frames_per_unit > 0:
        size = min(frames_per_unit, MAX_FRAMES_PER_UNIT)
        return [(a, min(size, units - a)) for a in range(0, units, size)]
    if profile and units > 0 and all(t > 0 for t in profile):
        return _timed_chunks(_times(profile, units), slots)
    if frame_seconds and frame_seconds > 0:
        return _timed_chunks([frame_seconds] * units, slots)
    out: list[tuple[int, int]] = []
    first = 0
    while first < units:
        size = min(MAX_FRAMES_PER_UNIT, math.ceil((units - first) / (GUIDED_SHARE * slots)))
        out.append((first, size))
        first += size
    return out


def _timed_chunks(times: list[float], slots: int) -> list[tuple[int, int]]:
    """``plan_chunks`` when the frames' times are known. A job of at most
    EQUAL_SECONDS a slot is cut into ``slots`` chunks of equal time (the last
    one taking a rest too small to be a chunk of its own): one start-up a
    slot, and they finish together. A longer one is guided: each chunk 1/slots
    of the time still unplanned, at least MIN_CHUNK_SECONDS, at most
    CHUNK_SECONDS and MAX_FRAMES_PER_UNIT frames. A chunk ends at the frame
    boundary nearest its target."""
    total = sum(times)
    equal = total / slots <= EQUAL_SECONDS
    out: list[tuple[int, int]] = []
    first, left = 0, total
    while first < len(times):
        if equal:
            target = total / slots
        else:
            target = min(CHUNK_SECONDS, max(MIN_CHUNK_SECONDS, left / (GUIDED_SHARE * slots)))
        size = _cut(times, first, target)
        spent = sum(times[first : first + size])
        if equal and left - spent < target / 2:
            size = min(len(times) - first, MAX_FRAMES_PER_UNIT)
            spent = sum(times[first : first + size])
        out.append((first, size))
        first, left = first + size, left - spent
    return out


def _cut(times: list[float], first: int, target: float) -> int:
    """How many frames from ``first`` come nearest ``target`` seconds (at
    least one, at most MAX_FRAMES_PER_UNIT)."""
    size, spent = 0, 0.0
    while first + size < len(times) and size < MAX_FRAMES_PER_UNIT:
        t = times[first + size]
        if size and spent + t / 2 > target:
            break
        size, spent = size + 1, spent + t
    return size


def chunkable(spec: JobSpec) -> bool:
    """Whether a job's units may share a POV-Ray process: the frames of an
    animation. A still is one unit; each generated unit has its own files."""
    return spec.povray is not None and spec.povray.animated


def job_plan(
    spec: JobSpec,
    slots: int,
    frame_seconds: float | None = None,
    profile: Sequence[float] | None = None,
) -> list[tuple[int, int]]:
    if not chunkable(spec):
        return [(u, 1) for u in range(spec.unit_count)]
    return plan_chunks(spec.unit_count, slots, spec.frames_per_unit, frame_seconds, profile)


def runs(units: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted unit numbers, as (first, count)."""
    out: list[tuple[int, int]] = []
    for u in units:
        if out and out[-1][0] + out[-1][1] == u:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((u, 1))
    return out
