"""The model checked against the local stack: predict local runs that the
model's constants did not come from, and compare with their measured wall.

    calibrate   the local constants from the bench's overhead section (its
                farm runs at each size: the client's submit, a task's start,
                a chunk's overhead, frame upload -> record, last upload ->
                video, done -> downloaded, the stack's own CPU per frame, the
                segment encode per frame) and from the fill section's POV-Ray
                idle: ``LocalCalibration`` (by pixel count, interpolated)
    run_configs runs other configurations on fresh stacks (frames, size, task
                slots: ``CONFIGS``), each as the overhead section runs the
                farm (``overhead.run_farm``: from building the job until the
                video is downloaded), and keeps what the model needs of each:
                ``LocalRun`` (its wall, each frame's POV-Ray CPU seconds from
                the ledger, the chunk plan the job was made with, the CPU
                other processes took meanwhile)
    validate    the model's prediction of each run against its wall: the
                error, within TOLERANCE or not

A local run is the same simulation as the cloud's, on ``cores`` shared by
every task's POV-Ray (processor sharing), the segment encodes and the
stack's own work; the per-frame CPU seconds are the run's own (the work),
everything else comes from the calibration runs. ``python -m bench`` runs it
after the overhead section; docs/bench.md, section 5.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from povstorm.core.chunks import plan_chunks

from ._util import mean
from .constants import measured
from .model import Params, Result, Workload, simulate

TOLERANCE = 0.15
# frames x width x height @ task slots
DEFAULT_CONFIGS = "48x320x240@2,48x320x240@4,96x320x240@4,48x640x480@2,48x640x480@4"
QUICK_CONFIGS = "12x160x120@2,24x160x120@4"
# The local stack's render tasks and settings (as in the cloud table).
LEASE = 20.0
IDLE_EXIT = 10.0
RECONCILE_EVERY = 10.0  # the local reconciler's --interval
TASK_BUDGET = 3600.0  # Settings.render_timeout default
TASK_TIMEOUT = TASK_BUDGET + 60  # cloud/launchers.py TASK_TIMEOUT_MARGIN
JITTER = 0.5  # each chunk's overhead and POV-Ray start-up x U(0.5, 1.5), seeded


@dataclass(frozen=True)
class Config:
    frames: int
    width: int
    height: int
    slots: int

    @property
    def label(self) -> str:
        return f"{self.frames} frames {self.width}x{self.height}, {self.slots} slots"


def parse_configs(text: str) -> list[Config]:
    """ "48x320x240@2,96x320x240@4" -> configs; "none" -> []."""
    if text.strip().lower() in ("", "none", "0"):
        return []
    out = []
    for item in text.split(","):
        m = re.fullmatch(r"\s*(\d+)x(\d+)x(\d+)@(\d+)\s*", item)
        if not m or min(int(g) for g in m.groups()) < 1:
            raise argparse.ArgumentTypeError(
                f"a validation run is FRAMESxWxH@SLOTS, like 48x320x240@4, not {item!r}"
            )
        out.append(Config(*(int(g) for g in m.groups())))
    return out


# --- the calibration ------------------------------------------------------------


@dataclass(frozen=True)
class SizePoint:
    """What the overhead section's farm runs at one size measured."""

    pixels: int
    frames: int
    submit: float  # the client's submit, seconds
    task_start: float  # job created -> its first unit started
    chunk_overhead: float  # per chunk: a task's gaps and its work beyond POV-Ray, in all
    chunk_before: float  # of which before POV-Ray starts (the rest after it: exit, uploads)
    record_latency: float  # frame upload -> ledger record, p50
    last_upload_to_done: float
    stitch_seconds: float
    segments: float  # chunks (spans of work) per run
    after_done: float  # done -> the client saw it, and the download
    encode_per_frame: float  # ffmpeg alone on the frames, per frame
    stack_cpu_per_frame: float  # the stack's processes and the client, CPU s per frame


@dataclass(frozen=True)
class LocalCalibration:
    cores: int
    points: tuple[SizePoint, ...]
    create_per_unit: float
    povray_startup: float  # start and exit, CPU idle
    povray_exit: float  # of which after the last frame
    povray_between: float
    join_per_segment: float
    jitter: float = JITTER
    # The share of the stack's own CPU that takes cores from POV-Ray; the
    # rest runs in the cycles POV-Ray leaves idle. Fitted on the calibration
    # runs (``fit``): the one free parameter of the local model.
    stack_share: float = 1.0
    sources: dict[str, str] = field(default_factory=dict)

    def at(self, pixels: int) -> dict[str, float]:
        """Each figure of the points at ``pixels``: linear in pixels between
        the two points around it, the nearest point's outside them."""
        pts = sorted(self.points, key=lambda p: p.pixels)
        names = [f for f in asdict(pts[0]) if f not in ("pixels", "frames")]
        if pixels <= pts[0].pixels or len(pts) == 1:
            return {f: float(getattr(pts[0], f)) for f in names} | {"frames": pts[0].frames}
        if pixels >= pts[-1].pixels:
            return {f: float(getattr(pts[-1], f)) for f in names} | {"frames": pts[-1].frames}
        hi = next(i for i, p in enumerate(pts) if p.pixels >= pixels)
        a, b = pts[hi - 1], pts[hi]
        x = (pixels - a.pixels) / (b.pixels - a.pixels)
        out = {f: (1 - x) * getattr(a, f) + x * getattr(b, f) for f in names}
        return out | {"frames": round((1 - x) * a.frames + x * b.frames)}

    def params(self, pixels: int, foreign_cores: float = 0.0) -> Params:
        """The simulation's times for a local run at ``pixels`` a frame."""
        at = self.at(pixels)
        record = at["record_latency"]
        stitch_fixed = max(0.0, at["stitch_seconds"] - at["segments"] * self.join_per_segment)
        return Params(
            submit_fixed=max(0.0, at["submit"] - at["frames"] * self.create_per_unit),
            submit_per_unit=self.create_per_unit,
            launch=0.0,
            task_start=at["task_start"],
            reconcile_every=RECONCILE_EVERY,
            pull=0.0,
            chunk_overhead=at["chunk_before"],
            jitter=self.jitter,
            task_start_spread=at["task_start"],
            idle_exit=IDLE_EXIT,
            task_budget=TASK_BUDGET,
            task_timeout=TASK_TIMEOUT,
            lease=LEASE,
            lease_every=LEASE / 3,
            povray_startup=max(0.0, self.povray_startup - self.povray_exit),
            povray_exit=self.povray_exit,
            povray_startup_cpu=0.0,  # in each chunk's first frame's CPU (the ledger's)
            povray_between=self.povray_between,
            frame_upload=0.0,  # the emulator's: inside record_latency (from the object's time)
            encode_per_frame=at["encode_per_frame"],
            # What follows POV-Ray in a chunk but for its exit and the
            # encode (which the model has apart): the segment's and the last
            # frames' uploads, the ack.
            segment_upload=max(0.0, at["chunk_overhead"] - at["chunk_before"] - self.povray_exit),
            record_latency=record,
            stitch_launch=max(0.0, at["last_upload_to_done"] - record - at["stitch_seconds"]),
            stitch_fixed=stitch_fixed,
            join_per_segment=self.join_per_segment,
            gap_frame=at["encode_per_frame"],
            after_done=at["after_done"],
            cores=float(self.cores),
            background_cores=max(0.0, foreign_cores),
            stack_cpu_per_frame=at["stack_cpu_per_frame"] * self.stack_share,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "cores": self.cores,
            "create_per_unit": round(self.create_per_unit, 6),
            "povray_startup": self.povray_startup,
            "povray_exit": self.povray_exit,
            "jitter": self.jitter,
            "stack_share": self.stack_share,
            "povray_between": self.povray_between,
            "join_per_segment": self.join_per_segment,
            "points": [{k: round(v, 4) for k, v in asdict(p).items()} for p in self.points],
            "sources": self.sources,
        }


def _pixels(size: str) -> int:
    w, _, h = size.partition("x")
    return int(w) * int(h)


def calibrate(results: Mapping[str, Any]) -> LocalCalibration:
    """The local constants from the bench's overhead section and fill's
    POV-Ray idle (``results`` as ``python -m bench`` builds them)."""
    m = measured(results)
    cores = int((results.get("config") or {}).get("cores") or results["machine"]["nproc"])
    frames = int(results["config"]["frames"])
    points = []
    for size, ov in results["overhead"].items():
        lat = results["latency"][size]
        att = ov["attribution"]
        farm = [r for r in results.get("runs", []) if r["scenario"] == "farm" and r["size"] == size]
        spans = sum(a["spans"] for a in att)
        encode = float(ov["encode_seconds"]) / frames
        frames_per_span = frames * len(att) / spans if spans else 1.0
        overhead = (sum(a["delivery_overhead_total"] for a in att) / spans if spans else 0.0) - (
            encode * frames_per_span
        )
        gaps = sum(a.get("gaps_total", 0.0) for a in att) / spans if spans else 0.0
        split = [a for a in att if a.get("split_spans") and a.get("before_povray") is not None]
        # Before POV-Ray: the gaps and the measured part before it, less the
        # first frame's upload delay the split holds; all of it when no span
        # could be split.
        before = (
            gaps
            + max(
                0.0,
                mean(float(a["before_povray"]) for a in split) - m["povray_between"].value,
            )
            if split
            else max(0.0, overhead)
        )
        stack = sum((ov.get("stack_cpu_seconds_per_farm_run") or {}).values())
        client = mean(a["vs_limit"]["client_cpu"] * cores for a in att)
        points.append(
            SizePoint(
                pixels=_pixels(size),
                frames=frames,
                submit=mean(a["client_submit"] for a in att),
                task_start=mean(
                    float(a["timeline"].get("created_to_first_start") or 0.0) for a in att
                ),
                chunk_overhead=max(0.0, overhead),
                chunk_before=min(max(0.0, overhead), before),
                record_latency=float(lat["upload_to_record_p50"]),
                last_upload_to_done=float(lat["last_upload_to_video"]),
                stitch_seconds=float(lat["stitch_seconds"]),
                segments=float(ov.get("farm_spans_per_run") or 1.0),
                after_done=float(lat["done_to_client"])
                + mean(float(r["phases"].get("download", 0.0)) for r in farm),
                encode_per_frame=encode,
                stack_cpu_per_frame=(stack + client) / frames,
            )
        )
    return LocalCalibration(
        cores=cores,
        points=tuple(points),
        create_per_unit=m["create_per_unit"].value,
        povray_startup=m["povray_startup"].value,
        povray_exit=m["povray_exit"].value,
        povray_between=m["povray_between"].value,
        join_per_segment=m["join_per_segment"].value,
        sources={
            "points": "bench/overhead.py: the overhead section's farm runs at each size "
            "(attribution, latency, stack CPU), means over the pairs",
            "create_per_unit": m["create_per_unit"].source,
            "povray_startup": m["povray_startup"].source,
            "povray_exit": m["povray_exit"].source,
            "jitter": "assumed: each chunk's overhead and POV-Ray start-up vary by +-50 % "
            "(seeded), as the measured spans do (p50 ~0.5 s, p95 ~1.2 s at 320x240); the "
            "tasks' starts spread over one measured task start",
            "povray_between": m["povray_between"].source,
            "join_per_segment": m["join_per_segment"].source,
        },
    )


# --- runs and their prediction ------------------------------------------------------


@dataclass(frozen=True)
class LocalRun:
    """One measured local run, as the model needs it."""

    label: str
    frames: int
    width: int
    height: int
    slots: int
    wall: float  # building the job -> the video downloaded
    frame_cpu: tuple[float, ...]  # per unit: POV-Ray's CPU seconds (the ledger's)
    plan: dict[str, Any]  # the job's plan: slots, frame_seconds, frame_profile
    foreign_cores: float = 0.0  # CPU other processes took meanwhile / the wall
    parts: dict[str, float] = field(default_factory=dict)  # the measured milestones

    def chunks(self) -> tuple[tuple[int, int], ...]:
        """The chunks the submit function cut (``core/chunks.py`` from the
        plan the job records)."""
        return tuple(
            plan_chunks(
                self.frames,
                int(self.plan.get("slots") or self.slots),
                0,
                self.plan.get("frame_seconds"),
                self.plan.get("frame_profile"),
                estimated=bool(self.plan.get("estimate")),
            )
        )


def predict(run: LocalRun, cal: LocalCalibration) -> Result:
    params = cal.params(run.width * run.height, run.foreign_cores)
    return simulate(params, Workload(run.frame_cpu, run.chunks(), run.slots))


SHARES = tuple(i / 10 for i in range(11))


def fit(cal: LocalCalibration, runs: Sequence[LocalRun]) -> tuple[LocalCalibration, dict[str, Any]]:
    """``cal`` with the stack's share (SHARES) that predicts ``runs`` (the
    calibration runs: the overhead section's) best, by their mean absolute
    error; and how well, run by run."""
    if not runs:
        return cal, {"skipped": "no calibration runs"}
    scored = []
    for share in SHARES:
        c = replace(cal, stack_share=share)
        errors = [(predict(r, c).wall - r.wall) / r.wall for r in runs if r.wall]
        scored.append((mean(abs(e) for e in errors), share, errors))
    best = min(scored)
    fitted = replace(cal, stack_share=best[1])
    return fitted, {
        "stack_share": best[1],
        "mean_abs_error": round(best[0], 4),
        "runs": [
            {"label": r.label, "measured": round(r.wall, 2), "error": round(e, 4)}
            for r, e in zip(runs, best[2], strict=True)
        ],
    }


def validate(
    runs: Sequence[LocalRun], cal: LocalCalibration, tolerance: float = TOLERANCE
) -> dict[str, Any]:
    """Predicted against measured wall of each run."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        r = predict(run, cal)
        error = (r.wall - run.wall) / run.wall if run.wall else 0.0
        rows.append(
            {
                "label": run.label,
                "frames": run.frames,
                "size": f"{run.width}x{run.height}",
                "slots": run.slots,
                "chunks": len(run.chunks()),
                "measured": round(run.wall, 2),
                "predicted": round(r.wall, 2),
                "error": round(error, 4),
                "within": abs(error) <= tolerance,
                "cpu_seconds": round(sum(run.frame_cpu), 2),
                "foreign_cores": round(run.foreign_cores, 3),
                "parts": {
                    "measured": {k: round(v, 2) for k, v in run.parts.items()},
                    "predicted": {
                        "created_to_first_start": round(r.first_task - r.submitted, 2),
                        "first_start_to_last_upload": round(r.last_upload - r.first_task, 2),
                        "last_upload_to_done": round(r.done - r.last_upload, 2),
                    },
                },
            }
        )
    errors = [abs(x["error"]) for x in rows]
    return {
        "tolerance": tolerance,
        "calibration": cal.as_dict(),
        "runs": rows,
        "max_abs_error": round(max(errors, default=0.0), 4),
        "all_within": all(x["within"] for x in rows),
    }


def local_run(config: Config, run: Any) -> LocalRun:
    """A measured ``overhead.Run`` of the farm as a ``LocalRun``."""
    cpu = dict(run.unit_cpu)
    known = [v for v in cpu.values() if v > 0]
    fill = mean(known) if known else 0.0
    p = run.profile
    return LocalRun(
        label=config.label,
        frames=config.frames,
        width=config.width,
        height=config.height,
        slots=config.slots,
        wall=run.wall,
        frame_cpu=tuple(cpu.get(u) or fill for u in range(config.frames)),
        plan=dict(run.plan or {"slots": config.slots}),
        foreign_cores=run.window.foreign_cpu / run.wall if run.wall else 0.0,
        parts={
            k: float(p[k])
            for k in ("created_to_first_start", "first_start_to_last_upload", "last_upload_to_done")
            if isinstance(p.get(k), int | float)
        },
    )


def run_configs(
    configs: Sequence[Config],
    scene_dir: Path,
    root: Path,
    log: Callable[[str], None] = lambda _line: None,
) -> list[LocalRun]:
    """Each config on a fresh local stack of its slot count (started here and
    stopped again), after a warm-up job, rendered as the overhead section
    renders the farm. Runs nothing else meanwhile."""
    from povstorm.client import Cluster
    from povstorm.core.names import ENV
    from povstorm_local.stack import LocalStack

    from . import overhead

    runs: list[LocalRun] = []
    before = os.environ.get(ENV["home"])
    by_slots: dict[int, list[Config]] = {}
    for c in configs:
        by_slots.setdefault(c.slots, []).append(c)
    try:
        for slots, group in by_slots.items():
            home, work = root / f"validate-{slots}" / "home", root / f"validate-{slots}" / "work"
            work.mkdir(parents=True, exist_ok=True)
            os.environ[ENV["home"]] = str(home)  # the stitches the stack starts inherit it
            stack = LocalStack(home)
            try:
                state = stack.up(workers=slots)
                cluster = Cluster.local(home=home, start=False)
                pgids = {c.name: c.pgid for c in state.components.values()}
                first = group[0]
                overhead.warm_up(
                    overhead.Animation(scene_dir, "spinning.ini", first.width, first.height, 2),
                    work,
                    cluster,
                )
                # And one full run, discarded: a fresh stack's first jobs are
                # slower (measured: 17.4 s, then 14.2 s and 12.9 s for the
                # same 48 frames), while its emulators' JVMs warm up; the
                # overhead section's stack, which the model is calibrated
                # on, has run many jobs before its farm runs.
                time.sleep(IDLE_EXIT + 1.0)
                overhead.run_farm(
                    cluster,
                    overhead.Animation(
                        scene_dir, "spinning.ini", first.width, first.height, first.frames
                    ),
                    work,
                    -1,
                    pgids,
                    overhead.cores(),
                )
                for i, config in enumerate(group):
                    # The tasks of the run before have exited (idle): no exit
                    # falls in this run's window.
                    time.sleep(IDLE_EXIT + 1.0)
                    anim = overhead.Animation(
                        scene_dir, "spinning.ini", config.width, config.height, config.frames
                    )
                    run = overhead.run_farm(cluster, anim, work, i, pgids, overhead.cores())
                    runs.append(local_run(config, run))
                    log(f"validation {config.label}: {run.wall:.2f} s")
            finally:
                stack.down(wipe=True)
    finally:
        if before is None:
            os.environ.pop(ENV["home"], None)
        else:
            os.environ[ENV["home"]] = before
    return runs
