"""A scaling model for the cloud: the wall time of N frames of T seconds on M
Cloud Run instances, from constants measured on the local stack and the
limits Google documents (or, where it documents none, stated assumptions).

A unit of work is a *chunk*: contiguous frames rendered by one POV-Ray
process (``+SF a +EF b``) on one instance, delivered by one push. The model
is a small event simulation of the cloud event flow:

    submit      create_job writes N unit documents (one per frame) and the
                chunks' work messages are published
                                                  N x submit_per_unit (measured)
    plan        the frames cut into chunks (``bench.plans``; by default the
                farm's guided plan for M slots, ``povstorm.core.chunks``:
                ceil(remaining / M) frames, each chunk short enough to
                finish within the push's deadline), handed out in order
    dispatch    Pub/Sub pushes work with a slow-start window: it starts at a
                single digit and grows by one per acknowledged push (so it
                doubles every round of chunks), up to M instances, and
                beyond 3,000 outstanding only linearly (Pub/Sub push docs)
    render      each push: a cold start the first time an instance serves
                (assumed), POV-Ray's start-up once per chunk (measured), T a
                frame plus POV-Ray's idle between two frames of one process
                (measured), the worker's own work per delivery (measured),
                then the chunk's frames encoded into one segment (ffmpeg's
                seconds per frame, measured)
    ledger      each frame is counted on its own, upload-to-record after its
                upload (measured, or the assumed notification latency if
                larger), at most ledger_rate per second: 64 shard documents
                at Firestore's ~1 sustained write/s each, or the event
                functions' capacity, whichever is lower
    stitch      once the last frame is counted and the last segment is up, a
                Cloud Run Job execution starts (assumed) and joins the
                segments without re-encoding: the measured fixed cost plus
                the join's seconds per segment (bench/segments.py, measured
                when present, else assumed)

The plan "frame" is the design before chunks, for comparison: one frame a
unit (POV-Ray's start-up every frame) and one ffmpeg over every frame in the
stitch (the measured stitch seconds per frame).

``ideal`` is N x T / M; efficiency is ideal / wall.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, replace
from typing import Any

from .plans import PLANNERS

# Used only when the bench did not measure them (``--fill-repeats 0`` still
# measures them; these keep the model usable on its own): the figures of
# docs/bench.md, section 1 (a 16x16 frame: 0.63 s of wall, 0.01 s of CPU;
# 48 tiny frames in one process: 0.23 s a frame).
FALLBACK_POVRAY_STARTUP = 0.6
FALLBACK_POVRAY_BETWEEN_FRAMES = 0.2


@dataclass(frozen=True)
class Cloud:
    """GCP behaviour the model needs: documented limits and, where Google
    documents no number, assumptions to replace with a measured deployment."""

    # Assumed: a render instance's cold start (image pull, Python and the
    # clients, first input download). Cloud Run documents no figure.
    cold_start: float = 10.0
    # Documented (Pub/Sub push, "Delivery rate"): "a small single-digit window".
    push_window_start: int = 4
    # Documented: beyond 3,000 outstanding messages the window grows linearly
    # and falls back there when push latency exceeds 1 s (ours is a chunk).
    push_window_cap: int = 3000
    # This module's deployment (README, Limits): a push is acknowledged within
    # Pub/Sub's 600 s maximum ack deadline, so POV-Ray gets 540 s: a chunk's
    # frames must fit in it.
    render_deadline: float = 540.0
    # Documented soft limit: ~1 sustained write/s per document; 64 shards.
    shard_docs: int = 64
    doc_writes_per_second: float = 1.0
    # The module's defaults: 20 instances of frame_finalized, concurrency 1,
    # each event ~0.3 s in the cloud (docs/deploy.md's cost estimate).
    function_instances: int = 20
    function_seconds: float = 0.3
    # Assumed: GCS finalize -> Pub/Sub -> Eventarc -> function latency.
    notification_latency: float = 1.0
    # Assumed: from run_job to the stitch task running (scheduling, cold start).
    stitch_job_start: float = 20.0
    # Assumed, when bench/segments.py did not measure it: downloading one
    # segment from GCS and appending it (ffmpeg's concat, no re-encoding).
    join_per_segment: float = 0.05

    @property
    def ledger_rate(self) -> float:
        return min(
            self.shard_docs * self.doc_writes_per_second,
            self.function_instances / self.function_seconds,
        )


@dataclass(frozen=True)
class Measured:
    """Constants measured on the local stack by this benchmark."""

    submit_per_unit: float  # create_job + publish, seconds per frame (a unit document each)
    delivery_overhead: float  # per chunk delivered: a worker between chunks and beyond POV-Ray
    record_latency: float  # frame upload -> ledger record, p95
    claim_to_stitch: float  # last record -> the stitch running (launch, start-up)
    stitch_fixed: float  # a 2-frame stitch: reads, uploads, the ledger, ffmpeg start
    stitch_per_frame: float  # a one-ffmpeg stitch beyond that, per frame (download, encode)
    encode_per_frame: float  # ffmpeg alone on the frames, per frame: a segment's encode
    povray_startup: float  # a POV-Ray process starting and stopping, CPU idle
    povray_between_frames: float  # idle between two frames of one POV-Ray process
    join_per_segment: float  # the join, per segment (0: not measured, Cloud's assumption)
    frame_pixels: int  # the frame size the per-frame constants were measured at


@dataclass(frozen=True)
class Estimate:
    frames: int
    frame_seconds: float
    instances: int
    plan: str
    units: int  # chunks (pushes)
    max_chunk: int
    submit: float
    ramp: float  # until M chunks render at once (or the work runs out)
    render_end: float  # the last frame uploaded
    last_record: float
    stitch: float
    wall: float
    ideal: float
    cold_starts: int
    ledger_bound: bool

    @property
    def efficiency(self) -> float:
        return self.ideal / self.wall if self.wall else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()},
            "efficiency": round(self.efficiency, 3),
        }


def max_chunk(t: float, measured: Measured, cloud: Cloud = Cloud()) -> int:
    """The most frames one push can render within the deadline."""
    room = cloud.render_deadline - measured.povray_startup - measured.delivery_overhead
    return max(
        1, int((room + measured.povray_between_frames) // (t + measured.povray_between_frames))
    )


def estimate(
    n: int, t: float, m: int, measured: Measured, cloud: Cloud = Cloud(), plan: str = "guided"
) -> Estimate:
    chunks = PLANNERS[plan](1, n, m, max_chunk(t, measured, cloud))
    segments = plan != "frame"
    between = measured.povray_between_frames
    submit = n * measured.submit_per_unit
    cap = min(m, cloud.push_window_cap)
    window = float(min(cloud.push_window_start, cap))
    queue = list(reversed(chunks))  # pop() takes them in order
    running = idle = instances = 0
    finishing: list[float] = []
    uploads: list[float] = []
    ramp = None

    def dispatch(now: float) -> None:
        nonlocal running, idle, instances, ramp
        while queue and running < int(window):
            a, b = queue.pop()
            size = b - a + 1
            if idle:
                idle -= 1
                begin = now
            else:
                instances += 1
                begin = now + cloud.cold_start
            # The frames come out of one POV-Ray process one after another.
            first = begin + measured.povray_startup + t
            uploads.extend(first + i * (t + between) for i in range(size))
            end = (
                begin
                + measured.povray_startup
                + size * t
                + (size - 1) * between
                + measured.delivery_overhead
                + (size * measured.encode_per_frame if segments else 0.0)
            )
            heapq.heappush(finishing, end)
            running += 1
        if ramp is None and (running >= cap or not queue):
            ramp = now - submit

    dispatch(submit)
    last_end = submit
    while finishing:
        now = heapq.heappop(finishing)
        last_end = now
        running -= 1
        idle += 1
        # Slow start: +1 per acknowledged push below the cap of fast growth.
        window = min(float(cap), window + 1.0)
        dispatch(now)

    uploads.sort()
    latency = max(measured.record_latency, cloud.notification_latency)
    # Frames are counted at most ledger_rate per second: a burst queues (and
    # only delays the count); a sustained excess would bound the whole job.
    gap = 1.0 / cloud.ledger_rate
    recorded = 0.0
    for up in uploads:
        recorded = max(up + latency, recorded + gap)
    bound = min(m, n) / (t + between) > cloud.ledger_rate
    per_segment = measured.join_per_segment or cloud.join_per_segment
    stitch = (
        measured.claim_to_stitch
        + cloud.stitch_job_start
        + measured.stitch_fixed
        + (len(chunks) * per_segment if segments else n * measured.stitch_per_frame)
    )
    # With segments the stitch also waits for the last segment's upload.
    start = max(recorded, last_end) if segments else recorded
    return Estimate(
        frames=n,
        frame_seconds=t,
        instances=m,
        plan=plan,
        units=len(chunks),
        max_chunk=max((b - a + 1 for a, b in chunks), default=0),
        submit=submit,
        ramp=ramp or 0.0,
        render_end=uploads[-1] if uploads else submit,
        last_record=recorded,
        stitch=stitch,
        wall=start + stitch,
        ideal=n * t / m,
        cold_starts=instances,
        ledger_bound=bound,
    )


SCENARIOS = [(1000, 30.0, 100), (1000, 30.0, 1000), (10000, 30.0, 100), (10000, 30.0, 1000)]
PLAN = "guided"


def table(measured: Measured, cloud: Cloud = Cloud(), plan: str = PLAN) -> list[dict[str, Any]]:
    rows = [estimate(n, t, m, measured, cloud, plan).as_dict() for n, t, m in SCENARIOS]
    # Sensitivity to the largest assumption (a slower cold start), what
    # Pub/Sub's slow start costs (the same with all M pushes at once), the
    # other plan, and the design before chunks (a frame a unit, one ffmpeg).
    slow = replace(cloud, cold_start=30.0)
    flat = replace(cloud, push_window_start=cloud.push_window_cap)
    other = "equal" if plan != "equal" else "guided"
    for row, (n, t, m) in zip(rows, SCENARIOS, strict=True):
        row["wall_if_cold_start_30s"] = round(estimate(n, t, m, measured, slow, plan).wall, 1)
        row["wall_without_push_slow_start"] = round(estimate(n, t, m, measured, flat, plan).wall, 1)
        row[f"wall_{other}_chunks"] = round(estimate(n, t, m, measured, cloud, other).wall, 1)
        row["wall_one_frame_per_unit"] = round(estimate(n, t, m, measured, cloud, "frame").wall, 1)
        row["wall_one_frame_per_unit_without_push_slow_start"] = round(
            estimate(n, t, m, measured, flat, "frame").wall, 1
        )
    return rows


def cloud_assumptions(cloud: Cloud = Cloud()) -> dict[str, Any]:
    return {**asdict(cloud), "ledger_rate": round(cloud.ledger_rate, 1)}
