"""A scaling model for the cloud: the wall time of N frames of T seconds on M
Cloud Run instances, from constants measured on the local stack and the
limits Google documents (or, where it documents none, stated assumptions).

The model is a small event simulation of the cloud event flow:

    submit      create_job writes N unit documents, then N work messages
                are published                     N x submit_per_unit (measured)
    dispatch    Pub/Sub pushes work with a slow-start window: it starts at a
                single digit and grows by one per acknowledged push (so it
                doubles every round of renders), up to M instances, and
                beyond 3,000 outstanding only linearly (Pub/Sub push docs)
    render      each push: a cold start the first time an instance serves
                (assumed), plus T, plus the worker's own per-frame overhead
                (measured)
    ledger      each finished frame is counted upload-to-record later
                (measured, or the assumed notification latency if larger),
                at most ledger_rate per second: 64 shard documents at
                Firestore's ~1 sustained write/s each, or the event
                functions' capacity, whichever is lower
    stitch      the last count claims the stitch; a Cloud Run Job execution
                starts (assumed) and stitches N frames: the measured fixed
                cost plus the measured seconds per frame

``ideal`` is N x T / M; efficiency is ideal / wall.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, replace
from typing import Any


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
    # and falls back there when push latency exceeds 1 s (ours is T).
    push_window_cap: int = 3000
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

    @property
    def ledger_rate(self) -> float:
        return min(
            self.shard_docs * self.doc_writes_per_second,
            self.function_instances / self.function_seconds,
        )


@dataclass(frozen=True)
class Measured:
    """Constants measured on the local stack by this benchmark."""

    submit_per_unit: float  # create_job + publish, seconds per unit
    worker_overhead: float  # per frame on a worker, beyond POV-Ray itself
    record_latency: float  # frame upload -> ledger record, p95
    claim_to_stitch: float  # last record -> the stitch running (launch, start-up)
    stitch_fixed: float  # a 2-frame stitch: reads, uploads, the ledger, ffmpeg start
    stitch_per_frame: float  # beyond that, per frame (download, encode)
    frame_pixels: int  # the frame size the stitch constant was measured at


@dataclass(frozen=True)
class Estimate:
    frames: int
    frame_seconds: float
    instances: int
    submit: float
    ramp: float  # until M frames render at once (or the work runs out)
    render_end: float  # the last frame uploaded
    last_record: float
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


def estimate(n: int, t: float, m: int, measured: Measured, cloud: Cloud = Cloud()) -> Estimate:
    submit = n * measured.submit_per_unit
    per_frame = t + measured.worker_overhead
    cap = min(m, cloud.push_window_cap)
    window = float(min(cloud.push_window_start, cap))
    queued, running, idle, instances = n, 0, 0, 0
    finishing: list[float] = []
    uploads: list[float] = []
    ramp = None

    def dispatch(now: float) -> None:
        nonlocal queued, running, idle, instances, ramp
        while queued and running < int(window):
            if idle:
                idle -= 1
                heapq.heappush(finishing, now + per_frame)
            else:
                instances += 1
                heapq.heappush(finishing, now + cloud.cold_start + per_frame)
            queued -= 1
            running += 1
        if ramp is None and (running >= cap or not queued):
            ramp = now - submit

    dispatch(submit)
    while finishing:
        now = heapq.heappop(finishing)
        uploads.append(now)
        running -= 1
        idle += 1
        # Slow start: +1 per acknowledged push below the cap of fast growth.
        window = min(float(cap), window + 1.0)
        dispatch(now)

    latency = max(measured.record_latency, cloud.notification_latency)
    # Frames are counted at most ledger_rate per second: a burst queues (and
    # only delays the count); a sustained excess would bound the whole job.
    gap = 1.0 / cloud.ledger_rate
    recorded = 0.0
    for up in uploads:  # already in time order
        recorded = max(up + latency, recorded + gap)
    bound = min(m, n) / per_frame > cloud.ledger_rate
    stitch = (
        measured.claim_to_stitch
        + cloud.stitch_job_start
        + measured.stitch_fixed
        + n * measured.stitch_per_frame
    )
    return Estimate(
        frames=n,
        frame_seconds=t,
        instances=m,
        submit=submit,
        ramp=ramp or 0.0,
        render_end=uploads[-1] if uploads else submit,
        last_record=recorded,
        wall=recorded + stitch,
        ideal=n * t / m,
        cold_starts=instances,
        ledger_bound=bound,
    )


SCENARIOS = [(1000, 30.0, 100), (1000, 30.0, 1000), (10000, 30.0, 100), (10000, 30.0, 1000)]


def table(measured: Measured, cloud: Cloud = Cloud()) -> list[dict[str, Any]]:
    rows = [estimate(n, t, m, measured, cloud).as_dict() for n, t, m in SCENARIOS]
    # Sensitivity to the largest assumption (a slower cold start), and what
    # Pub/Sub's slow start costs: the same with all M pushes at once.
    slow = replace(cloud, cold_start=30.0)
    flat = replace(cloud, push_window_start=cloud.push_window_cap)
    for row, (n, t, m) in zip(rows, SCENARIOS, strict=True):
        row["wall_if_cold_start_30s"] = round(estimate(n, t, m, measured, slow).wall, 1)
        row["wall_without_push_slow_start"] = round(estimate(n, t, m, measured, flat).wall, 1)
    return rows


def cloud_assumptions(cloud: Cloud = Cloud()) -> dict[str, Any]:
    return {**asdict(cloud), "ledger_rate": round(cloud.ledger_rate, 1)}
