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
  slices, shaped by their CPU seconds without the start-ups: ``frame_profile``;
  else its median for every frame), chunks are cut by estimated
  seconds, so frames that differ in cost (an explosion in the first second)
  make chunks of equal time rather than of equal frame counts. A job of at
  most EQUAL_SECONDS of rendering a slot becomes ``slots`` chunks of equal
  time: one start-up a slot, all finishing together (measured: 48 frames of
  examples/spinning at 320x240 on 4 processes, a guided plan with a 10 s
  floor cut four chunks of 10-12 frames and a fifth of 6, which ran alone for
  the job's last 3-4 s with half the cores idle). A longer job is guided in
  seconds, each chunk at least MIN_CHUNK_SECONDS;
* a scene the farm has no frame times of is planned from the client's
  estimate, if it sent one (``JobSpec.estimate``: the parse check's small
  renders of the first and last frames, or a proof's frames, as a
  profile), as above but for the one thing an estimate cannot say: how the
  cost varies between the frames it sampled. So only a job of at most
  ESTIMATE_EQUAL_SECONDS a slot becomes ``slots`` equal chunks, where a frame
  three times as costly as estimated, over a whole chunk, costs at most half
  a minute; a longer one is guided in seconds. (Measured: 48 frames of
  examples/spinning at 320x240 on 4 processes, the first job of the scene,
  guided by frame counts into 12 chunks, took 1.69 x the limit; the second,
  4 equal chunks from the first's frame times, 1.25.) Without any, the plan
  is guided by frame counts;
* a chunk is never longer than CHUNK_SECONDS of rendering when the frame
  time is known, and never more than MAX_FRAMES_PER_UNIT frames: a worker
  lost mid-chunk costs at most that much, and the worker hands the rest of a chunk on (``count`` smaller)
  when its own time budget runs out anyway.

The plan above gives the *sizes* of the chunks in dispatch order; where each
lies in the range is coarse to fine (``dispatch_ranks``): the chunk
dispatched first covers the start of the range, the second its end, the third
its middle, then the quarters, the eighths... (a van der Corput order), so
that at any moment the frames done are spread over the whole animation and a
half-finished job already previews the whole motion (``povstorm preview``).
The chunks keep their sizes (in seconds when the frames' times are known) and
their order of dispatch; only their places change.

Generated units (``WorkUnit``) and stills are one unit per message.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from povstorm.core.spec import FRAMES_PER_UNIT, MAX_FRAME_SECONDS, JobSpec

MAX_FRAMES_PER_UNIT = FRAMES_PER_UNIT.high  # also the largest transaction a chunk start makes
GUIDED_SHARE = 1
CHUNK_SECONDS = 300.0
MIN_CHUNK_SECONDS = 10.0
EQUAL_SECONDS = 60.0
ESTIMATE_EQUAL_SECONDS = 15.0
ESTIMATE_NOISE = 2.0  # estimates this close to one another are one (sample_profile)


PROFILE_SLICES = 256
PROFILE_WINDOW = 5  # frames: a rise of the profile narrower than this is noise


def frame_profile(
    seconds: Sequence[float | None], cpu: Sequence[float | None] | None = None
) -> list[float]:
    """Each frame's render seconds (None: unknown, taken as the mean) in at
    most PROFILE_SLICES slices of consecutive frames, each the mean of its
    frames: what ``plan_chunks`` reads back.

    A frame's wall time says more about what shared the cores while it
    rendered than about the frame: on 6 processes over 2 cores, 48 frames of
    equal cost (examples/spinning at 320x240) took 0.43 to 1.96 s each, and
    the next job's equal-time chunks cut on those times held 6 to 10 frames
    and ended 2.4 s apart. Their CPU seconds (``cpu``) agree far better:
    0.22 to 0.24 s, but for a chunk's first frame, which carries its
    POV-Ray's start-up (up to 0.44 s), and chunks of a frame or two put those
    side by side. So where every frame's CPU seconds are known they give the
    profile's shape, and an opening over PROFILE_WINDOW frames (``_opening``)
    takes away every rise narrower than that, start-ups and single costly
    frames alike, while a change of cost that lasts (an explosion in the
    first second) keeps its height and its edges. The profile is then scaled
    to the mean of the wall seconds, the frame time the plan's limits are in.
    (The same frames: four chunks of 12 on 4 slots, where the wall times
    alone cut 10 to 14.)"""
    known = [s for s in seconds if s is not None]
    if not known:
        return []
    overall = sum(known) / len(known)
    shape = [float(c) for c in cpu or () if c is not None and c > 0]
    if len(shape) != len(seconds):
        shape = [overall if s is None else float(s) for s in seconds]
    opened = _opening(shape, PROFILE_WINDOW)
    scale = overall / statistics.fmean(opened)
    opened = [t * scale for t in opened]
    n = len(opened)
    count = min(n, PROFILE_SLICES)
    return [
        round(statistics.fmean(opened[i * n // count : (i + 1) * n // count]), 3)
        for i in range(count)
    ]


def _opening(values: Sequence[float], window: int) -> list[float]:
    """A morphological opening: the running minimum over ``window`` values,
    then the running maximum of that. A rise narrower than the window goes;
    a plateau at least as wide keeps its height and its edges."""
    half = window // 2

    def running(f: Callable[[Sequence[float]], float], xs: Sequence[float]) -> list[float]:
        return [f(xs[max(0, i - half) : i + half + 1]) for i in range(len(xs))]

    return running(max, running(min, values))


def _times(profile: Sequence[float], units: int) -> list[float]:
    """The estimated seconds of each of ``units`` frames from a profile of them."""
    return [float(profile[u * len(profile) // units]) for u in range(units)]


def sample_profile(samples: Sequence[float], units: int) -> list[float]:
    """A profile of ``units`` frames (at most PROFILE_SLICES slices) from
    ``samples`` of their seconds evenly spaced from the first frame to the
    last, by straight lines between them; flat, their mean, where they are
    all within ESTIMATE_NOISE of one another (or one sample); in
    milliseconds, at least one, at most what a spec takes.

    Why flat: small renders timed side by side differ by more than the
    frames do. The parse check put examples/spinning's first and last
    frames, which cost the same, 1.2 x apart at 320x240 and 1.5 x at
    1280x960 on a busy machine; drawn as a slope, 1.2 x cut the 48 frames
    into chunks of 7 and 9 on 6 slots, and the chunks of 9 ended 3.4 s after
    the first of 7 with the cores a third busy. The scene's first measured
    job gives the shape."""
    if not samples or units <= 0:
        return []
    count = min(units, PROFILE_SLICES)
    if len(samples) == 1 or count == 1 or max(samples) < ESTIMATE_NOISE * min(samples):
        return [_ms(statistics.fmean(samples))] * count
    out = []
    for i in range(count):
        at = i / (count - 1) * (len(samples) - 1)
        k = min(int(at), len(samples) - 2)
        out.append(_ms(samples[k] + (samples[k + 1] - samples[k]) * (at - k)))
    return out


def _ms(seconds: float) -> float:
    return min(MAX_FRAME_SECONDS, max(0.001, round(seconds, 3)))


def plan_chunks(
    units: int,
    slots: int,
    frames_per_unit: int = 0,
    frame_seconds: float | None = None,
    profile: Sequence[float] | None = None,
    estimated: bool = False,
) -> list[tuple[int, int]]:
    """(first unit, count) of each chunk, in dispatch order, covering
    0..units-1 exactly once, laid out coarse to fine (``dispatch_ranks``);
    ``estimated``: the frame times are the client's estimate, not measured."""
    slots = max(1, slots)
    times: list[float] | None = None
    if frames_per_unit <= 0 and units > 0:
        if profile and all(t > 0 for t in profile):
            times = _times(profile, units)
        elif frame_seconds and frame_seconds > 0:
            times = [float(frame_seconds)] * units
    equal = ESTIMATE_EQUAL_SECONDS if estimated else EQUAL_SECONDS
    sized = _sized_chunks(units, slots, frames_per_unit, times, equal)
    if times is None:
        return _lay_out([n for _, n in sized])
    return _lay_out_timed(times, [sum(times[a : a + n]) for a, n in sized])


def dispatch_ranks(count: int) -> list[int]:
    """Where each of ``count`` chunks, in dispatch order, lies among them in
    the range (0: the first): the 1st at the start, the 2nd at the end, the
    3rd in the middle, then the quarters, the eighths... The rank order of
    0, 1, then the base-2 van der Corput sequence (1/2, 1/4, 3/4, 1/8, ...)."""

    def key(i: int) -> float:
        if i < 2:
            return float(i)
        n, value, half = i - 1, 0.0, 0.5
        while n:
            value, n, half = value + half * (n & 1), n >> 1, half / 2
        return value

    order = sorted(range(count), key=key)
    ranks = [0] * count
    for rank, i in enumerate(order):
        ranks[i] = rank
    return ranks


def _lay_out(sizes: list[int]) -> list[tuple[int, int]]:
    """Chunks of ``sizes`` (in dispatch order) placed one after another in
    the order of their ranks; returned in dispatch order."""
    ranks = dispatch_ranks(len(sizes))
    starts = [0] * len(sizes)
    first = 0
    for i in sorted(range(len(sizes)), key=ranks.__getitem__):
        starts[i], first = first, first + sizes[i]
    return list(zip(starts, sizes, strict=True))


def _lay_out_timed(times: list[float], seconds: list[float]) -> list[tuple[int, int]]:
    """Chunks of ``seconds`` (in dispatch order) placed in the order of their
    ranks, each ending at the frame boundary nearest its cumulative target (so
    rounding does not add up), at least one frame and at most
    MAX_FRAMES_PER_UNIT each; returned in dispatch order. With every frame's
    time equal, these are the frame counts the seconds came from."""
    units, count = len(times), len(seconds)
    cumulative = [0.0]
    for t in times:
        cumulative.append(cumulative[-1] + t)
    ranks = dispatch_ranks(count)
    out = [(0, 0)] * count
    first, target = 0, 0.0
    for k, i in enumerate(sorted(range(count), key=ranks.__getitem__)):
        target += seconds[i]
        after = count - k - 1  # chunks still to place
        low = max(first + 1, units - after * MAX_FRAMES_PER_UNIT)
        high = min(first + MAX_FRAMES_PER_UNIT, units - after)
        if after == 0:
            end = units
        else:
            end = bisect.bisect_left(cumulative, target, low, high + 1)
            if end > low and (
                end > high or target - cumulative[end - 1] <= cumulative[end] - target
            ):
                end -= 1
        out[i] = (first, end - first)
        first = end
    return out


def _sized_chunks(
    units: int, slots: int, frames_per_unit: int, times: list[float] | None, equal: float
) -> list[tuple[int, int]]:
    """The chunks' sizes in dispatch order, as consecutive (first, count)
    from the start of the range: the plan before its layout."""
    if frames_per_unit > 0:
        size = min(frames_per_unit, MAX_FRAMES_PER_UNIT)
        return [(a, min(size, units - a)) for a in range(0, units, size)]
    if times is not None:
        return _timed_chunks(times, slots, equal)
    out: list[tuple[int, int]] = []
    first = 0
    while first < units:
        size = min(MAX_FRAMES_PER_UNIT, math.ceil((units - first) / (GUIDED_SHARE * slots)))
        out.append((first, size))
        first += size
    return out


def _timed_chunks(times: list[float], slots: int, equal_seconds: float) -> list[tuple[int, int]]:
    """``plan_chunks`` when the frames' times are known. A job of at most
    ``equal_seconds`` a slot is cut into ``slots`` chunks of equal time (the last
    one taking a rest too small to be a chunk of its own): one start-up a
    slot, and they finish together. A longer one is guided: each chunk 1/slots
    of the time still unplanned, at least MIN_CHUNK_SECONDS, at most
    CHUNK_SECONDS and MAX_FRAMES_PER_UNIT frames. A chunk ends at the frame
    boundary nearest its target."""
    total = sum(times)
    equal = total / slots <= equal_seconds
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
    animation. A still is one unit (or one per band, each its own process),
    and so is each band of a tiled animation's frames; each generated unit
    has its own files."""
    return spec.povray is not None and spec.povray.animated and spec.povray.tiles is None


def job_plan(spec: JobSpec, plan: Mapping[str, Any]) -> list[tuple[int, int]]:
    """The chunks of a job by the plan its submission recorded (``JobDoc.plan``:
    its slots, and the frame times it had: farm/operations.py: submit)."""
    if not chunkable(spec):
        return [(u, 1) for u in range(spec.unit_count)]
    return plan_chunks(
        spec.unit_count,
        int(plan.get("slots") or 1),
        spec.frames_per_unit,
        plan.get("frame_seconds"),
        plan.get("frame_profile"),
        estimated=bool(plan.get("estimate")),
    )


_SOURCES = {
    "check": "the parse check's estimate",
    "proof": "the proof's estimate",
}


def plan_line(spec: JobSpec, plan: Mapping[str, Any]) -> str:
    """What a job's chunk plan was and what it was made from, on one line
    (``povstorm status``): ``4 chunk(s) of 12 frame(s) on 4 slot(s), from the
    parse check's estimate (~0.21 s a frame)``."""
    chunks = job_plan(spec, plan)
    sizes = sorted({n for _, n in chunks})
    frames = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    slots = int(plan.get("slots") or 1)
    line = f"{len(chunks)} chunk(s) of {frames} frame(s) on {slots} slot(s)"
    if not chunkable(spec):
        return f"{len(chunks)} unit(s), each its own POV-Ray process"
    if spec.povray is not None and spec.povray.prepass:
        return f"{line}: a radiosity pre-pass, one POV-Ray process"
    if spec.frames_per_unit:
        return f"{line}, as asked (--frames-per-unit {spec.frames_per_unit})"
    profile = plan.get("frame_profile") or []
    seconds = plan.get("frame_seconds") or (statistics.fmean(profile) if profile else None)
    if seconds is None:
        return f"{line}, guided: no frame time was known"
    source = _SOURCES.get(str(plan.get("estimate")), "the frame times of the scene's last job")
    return f"{line}, from {source} (~{seconds:.2f} s a frame)"


def runs(units: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted unit numbers, as (first, count)."""
    out: list[tuple[int, int]] = []
    for u in units:
        if out and out[-1][0] + out[-1][1] == u:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((u, 1))
    return out
