"""What a job costs on Google Cloud at list prices (the table of
``core/prices.py``): each frame, the job, its projection, and whether the
projection passes the job's budget. Pure arithmetic over what the farm
already records; the client (``status``, ``render``, ``fetch``) and the farm
(the budget check after each counted frame, ``farm/operations.py``) apply it.
On the local stack the same figures are what the job would have cost on
Cloud Run, with the deployment's default task sizes.

A frame costs:

* its render: a Cloud Run job's task is billed for the vCPUs and memory it
  was given for as long as it runs, whatever POV-Ray does with them, so a
  frame costs its wall seconds (``render_seconds``: since the previous frame
  of its POV-Ray process, or since the process started for the first, so
  POV-Ray's start is in it) x (vCPUs x the vCPU-second price + GiB x the
  GiB-second price), not its CPU seconds;
* its event: one call of the frame_finalized function (request-based
  billing: the request and about FUNCTION_SECONDS of a 512 MiB instance);
* its ledger reads and writes and its Cloud Storage operations (counts below);
* storing its PNG for STORAGE_MONTHS.

The job adds its stitch (``stitch_seconds`` at the stitch task's size) and
storing its video for STORAGE_MONTHS. A frame copied from the frame cache
has no render time, so it costs only its event, operations and storage.

Left out, because no one job owns it or nothing records it: a render task's
own start and its idle wait for work at the end (about 20 s a task, shared
by every job whose chunks it pulls; docs/deploy.md estimates it), a task's
time between two POV-Ray processes (placing inputs, encoding a segment), the
stitch's container start, attempts that failed (their time is not kept), a
second render of a done frame (counted once), Pub/Sub (under $0.000001 a
frame), downloads to your machine, the inputs, and the deployment's fixed
costs (the reconciler, Cloud Scheduler, Artifact Registry).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from povstorm.core.model import JobState
from povstorm.core.prices import PRICES, PriceTable
from povstorm.core.settings import Settings

GIB = 1 << 30
# Frames and the video are priced for a month in the bucket, as one clear
# figure (the bucket's lifecycle deletes frames after frame_lifecycle_days,
# 7 by default, and keeps videos).
STORAGE_MONTHS = 1.0
# Per frame, as the code does it: the ledger reads the unit when the render
# starts (start_chunk) and when the frame is counted (record_frame), the
# shard after the count, and the stitch reads the unit once; it writes the
# unit twice (started, done) and the shard once (the count).
LEDGER_READS_PER_FRAME = 4
LEDGER_WRITES_PER_FRAME = 3
# Class A: the frame's upload, its log's upload, its copy into the frame
# cache. Class B: one read of it (the stitch's or a download).
CLASS_A_PER_FRAME = 3
CLASS_B_PER_FRAME = 1
# The frame_finalized call: terraform's function_memory (512Mi), which Cloud
# Run functions give 0.333 vCPU, for about 0.3 s (docs/deploy.md).
FUNCTION_SECONDS = 0.3
FUNCTION_VCPUS = 0.333
FUNCTION_MEMORY_GIB = 0.5
# A budget is checked against a projection once this many frames are done,
# or this share of them if more (whichever is larger; all of a smaller job):
# one frame is too few to project from, 5 % is enough to see the trend.
PROJECT_AFTER_FRAMES = 3
PROJECT_AFTER_SHARE = 0.05

# What the figures are: a deployment's bill at list prices, or, on the local
# stack (which bills nothing), what Cloud Run would have billed.
CLOUD_BASIS = "Cloud Run list prices"
LOCAL_BASIS = "what it would have cost on Cloud Run"

ASSUMPTIONS = (
    "list prices, no free tier deducted",
    "a frame is billed for its wall seconds at its render task's vCPUs and memory, "
    "not for POV-Ray's CPU seconds",
    f"per frame: one frame_finalized call ({FUNCTION_SECONDS:g} s at {FUNCTION_VCPUS:g} vCPU, "
    f"{FUNCTION_MEMORY_GIB:g} GiB), {LEDGER_READS_PER_FRAME} Firestore reads and "
    f"{LEDGER_WRITES_PER_FRAME} writes, {CLASS_A_PER_FRAME} class A and "
    f"{CLASS_B_PER_FRAME} class B storage operations",
    f"frames and the video stored for {STORAGE_MONTHS:g} month",
    "left out: render tasks' start and idle time (about 20 s a task, shared between jobs), "
    "time between POV-Ray processes, failed attempts, Pub/Sub, downloads, fixed costs",
)


@dataclass(frozen=True)
class TaskShape:
    """The vCPUs and memory (GiB) a Cloud Run task is given, and billed for."""

    vcpus: float
    memory_gib: float

    def second(self, prices: PriceTable = PRICES) -> float:
        """What one second of the task costs at instance-based (job) prices."""
        return self.vcpus * prices.run_vcpu_second + self.memory_gib * prices.run_gib_second


@dataclass(frozen=True)
class Usage:
    """What a job used, as the ledger and the stitch recorded it."""

    frames: int = 0  # frames done (counted by the ledger)
    render_seconds: float = 0.0  # their wall seconds, summed
    frame_bytes: int = 0  # their PNGs, summed
    stitch_seconds: float = 0.0
    video_bytes: int = 0


@dataclass(frozen=True)
class Cost:
    """A cost in the table's currency, by component: render_cpu,
    render_memory, frame_events, ledger, storage_operations, storage, stitch."""

    components: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.components.values())


def job_cost(
    usage: Usage, render: TaskShape, stitch: TaskShape, prices: PriceTable = PRICES
) -> Cost:
    """The cost of ``usage`` on tasks of ``render`` and ``stitch`` size."""
    n = usage.frames
    function = prices.function_request + FUNCTION_SECONDS * (
        FUNCTION_VCPUS * prices.function_vcpu_second
        + FUNCTION_MEMORY_GIB * prices.function_gib_second
    )
    stored = (usage.frame_bytes + usage.video_bytes) / GIB
    return Cost(
        {
            "render_cpu": usage.render_seconds * render.vcpus * prices.run_vcpu_second,
            "render_memory": usage.render_seconds * render.memory_gib * prices.run_gib_second,
            "frame_events": n * function,
            "ledger": n
            * (
                LEDGER_READS_PER_FRAME * prices.firestore_read
                + LEDGER_WRITES_PER_FRAME * prices.firestore_write
            ),
            "storage_operations": n
            * (
                CLASS_A_PER_FRAME * prices.storage_class_a
                + CLASS_B_PER_FRAME * prices.storage_class_b
            ),
            "storage": stored * STORAGE_MONTHS * prices.storage_gib_month,
            "stitch": usage.stitch_seconds * stitch.second(prices),
        }
    )


def frame_cost(
    render_seconds: float, frame_bytes: int, render: TaskShape, prices: PriceTable = PRICES
) -> Cost:
    """One frame's cost: a job of that frame alone, without its stitch and video."""
    return job_cost(Usage(1, render_seconds, frame_bytes), render, render, prices)


def projected(
    usage: Usage,
    expected: int,
    render: TaskShape,
    stitch: TaskShape,
    prices: PriceTable = PRICES,
) -> float:
    """The job's cost once all ``expected`` frames are done, if the frames
    still to come cost what the done ones did on average: the cost so far
    plus that average for each missing frame (the stitch, not yet run, adds
    what it will). Equal to the cost itself once every frame is done."""
    spent = job_cost(usage, render, stitch, prices).total
    if usage.frames <= 0:
        return spent
    frames_only = replace(usage, stitch_seconds=0.0, video_bytes=0)
    per_frame = job_cost(frames_only, render, stitch, prices).total / usage.frames
    return spent + per_frame * max(0, expected - usage.frames)


def can_project(done: int, expected: int) -> bool:
    """Enough frames are done to project the job's cost from them."""
    needed = max(PROJECT_AFTER_FRAMES, math.ceil(PROJECT_AFTER_SHARE * expected))
    return done >= min(needed, expected)


def over_budget(
    usage: Usage,
    expected: int,
    budget: float,
    render: TaskShape,
    stitch: TaskShape,
    prices: PriceTable = PRICES,
) -> str | None:
    """Why a job must stop for its budget, or None: its cost so far passes
    the budget, or, once enough frames are done to project
    (``can_project``), its projected cost does."""
    if usage.frames <= 0:
        return None
    projection = projected(usage, expected, render, stitch, prices)
    spent = job_cost(usage, render, stitch, prices).total
    if spent <= budget and not (can_project(usage.frames, expected) and projection > budget):
        return None
    return (
        f"projected {usd(projection)} passes the budget {usd(budget)} "
        f"after {usage.frames} of {expected} frames"
    )


def usd(value: float) -> str:
    """Dollars as people read them: cents from $1, else three significant
    digits at most ($0.0421, $0.000183, $0.50), so a tiny job's cost is not
    $0.00."""
    if value >= 1 or value <= 0:
        return f"${value:,.2f}"
    digits = f"{value:.{2 - math.floor(math.log10(value))}f}".rstrip("0")
    whole, _, cents = digits.partition(".")
    return f"${whole}.{cents:0<2}"


# --- task sizes -------------------------------------------------------------------

_MEMORY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?\s*$")
_UNITS = {
    None: 1,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def memory_gib(text: str) -> float:
    """A Cloud Run memory limit (``2Gi``, ``512Mi``, ``4G``) in GiB."""
    m = _MEMORY.match(str(text))
    if m is None:
        raise ValueError(f"not a memory size: {text!r}")
    return float(m[1]) * _UNITS[m[2]] / GIB


def resources(settings: Settings) -> dict[str, dict[str, float]]:
    """The task sizes of a deployment, as a job records them at submit
    (``JobDoc.resources``): what its cost is computed with ever after."""
    return {
        "render": {
            "vcpus": float(settings.render_cpus),
            "memory_gib": memory_gib(settings.render_memory),
        },
        "stitch": {
            "vcpus": float(settings.stitch_cpus),
            "memory_gib": memory_gib(settings.stitch_memory),
        },
    }


def shapes(recorded: dict[str, Any] | None) -> tuple[TaskShape, TaskShape]:
    """(render, stitch) task sizes of a job: those it recorded at submit, or
    the deployment's defaults (terraform's, ``Settings``) for a job
    submitted before jobs recorded them."""
    sizes = {**resources(Settings()), **(recorded or {})}
    render, stitch = (
        TaskShape(float(sizes[k]["vcpus"]), float(sizes[k]["memory_gib"]))
        for k in ("render", "stitch")
    )
    return render, stitch


# --- from the ledger's documents ----------------------------------------------------


def usage_of(job: dict[str, Any], shards: list[dict[str, Any]]) -> Usage:
    """A job's usage from its document and its shards (each shard sums the
    render seconds and frame bytes of the frames it counted): the reads a
    ``status`` makes anyway, none per frame. A done job whose shards predate
    those sums takes its render seconds from the stitch's stats."""
    stats = job.get("stats") or {}
    seconds = sum(float(s.get("render_seconds") or 0.0) for s in shards)
    if not any("render_seconds" in s for s in shards):
        seconds = float((stats.get("render_seconds") or {}).get("total") or 0.0)
    return Usage(
        frames=sum(int(s.get("done") or 0) for s in shards),
        render_seconds=seconds,
        frame_bytes=sum(int(s.get("frame_bytes") or 0) for s in shards),
        stitch_seconds=float(stats.get("stitch_seconds") or 0.0),
        video_bytes=int(stats.get("video_bytes") or 0),
    )


def summary(
    job: dict[str, Any],
    usage: Usage,
    *,
    local: bool,
    records: list[dict[str, Any]] | None = None,
    prices: PriceTable = PRICES,
) -> dict[str, Any]:
    """The ``cost`` object of ``status --json``, the render summary and the
    fetched stats.json: the total and its components in ``currency``, the
    projection and budget, the task sizes, the price table's date and
    sources, and what is assumed (the projection of a job that has ended is
    its cost). With the unit ``records`` of the done
    frames, each frame's own cost too (``frames_detail``)."""
    render, stitch = shapes(job.get("resources"))
    cost = job_cost(usage, render, stitch, prices)
    frames_only = replace(usage, stitch_seconds=0.0, video_bytes=0)
    frames_cost = job_cost(frames_only, render, stitch, prices).total
    expected = int(job.get("units_expected") or 0)
    budget = (job.get("spec") or {}).get("budget_usd")
    # A job that has ended renders nothing more: its projection is its cost.
    ended = JobState(job.get("state") or JobState.SUBMITTED).terminal
    projection = cost.total if ended else projected(usage, expected, render, stitch, prices)
    out: dict[str, Any] = {
        "currency": prices.currency,
        "total_usd": _round(cost.total),
        "components": {k: _round(v) for k, v in cost.components.items()},
        "frames": usage.frames,
        "render_seconds": round(usage.render_seconds, 3),
        "stitch_seconds": round(usage.stitch_seconds, 3),
        "per_frame_usd": _round(frames_cost / usage.frames) if usage.frames else 0.0,
        "projected_usd": _round(projection),
        "budget_usd": budget,
        "tasks": {
            "render": {"vcpus": render.vcpus, "memory_gib": render.memory_gib},
            "stitch": {"vcpus": stitch.vcpus, "memory_gib": stitch.memory_gib},
        },
        "prices": {
            "date": prices.date,
            "region": prices.region,
            "sources": list(prices.sources),
            "free_tier": "not deducted",
        },
        "basis": LOCAL_BASIS if local else CLOUD_BASIS,
        "assumptions": list(ASSUMPTIONS),
    }
    if records is not None:
        out["frames_detail"] = [
            {
                "unit": int(r["unit"]),
                "frame": r.get("frame"),
                "render_seconds": float(r.get("render_seconds") or 0.0),
                "frame_bytes": int(r.get("frame_bytes") or 0),
                "usd": _round(
                    frame_cost(
                        float(r.get("render_seconds") or 0.0),
                        int(r.get("frame_bytes") or 0),
                        render,
                        prices,
                    ).total
                ),
            }
            for r in records
        ]
    return out


def line(cost: dict[str, Any], *, detail: bool = True) -> str:
    """The ``cost`` object in one line, as ``status`` (with ``detail``: its
    parts, the budget) and ``render`` print it."""
    total, date = usd(cost["total_usd"]), cost["prices"]["date"]
    if cost["basis"] == LOCAL_BASIS:
        text = f"would cost {total} on Cloud Run at list prices of {date}"
    else:
        text = f"cost {total} at Cloud Run list prices of {date}"
    if not detail:
        return text
    parts = cost["components"]
    render = parts["render_cpu"] + parts["render_memory"]
    rest = max(0.0, cost["total_usd"] - render - parts["stitch"])
    text += (
        f" (render {usd(render)}, stitch {usd(parts['stitch'])}, storage and requests {usd(rest)})"
    )
    if cost.get("budget_usd") is not None:
        text += f"; budget {usd(cost['budget_usd'])}, projected {usd(cost['projected_usd'])}"
    return text


def _round(value: float) -> float:
    """To a millionth of a cent: exact enough to sum, short enough to read."""
    return round(value, 8)
