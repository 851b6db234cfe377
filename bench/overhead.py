"""Farm overhead on one machine: the same animation rendered three ways,
against the limit.

    limit       the CPU seconds POV-Ray needs for the frames (the sum of the
                per-frame run's processes' own user + system time, from
                ``os.wait4``) divided by the cores: no way of rendering the
                frames on this machine can take less wall time
    direct (a)  ``povray`` renders the whole animation in one process (all
                cores, POV-Ray's default +WT), then ffmpeg: what a user does
                without povstorm
    per-frame (b) one ``povray +WT1`` process per frame, one per core in
                parallel, then ffmpeg: the farm's first strategy, without the
                farm; its processes' CPU seconds give the limit
    farm (c)    the warm local stack with the worker count it chooses and the
                user's arguments only (``Job.from_ini(cluster, anim.argv())``:
                the farm chooses POV-Ray's threads, processes and chunks):
                from building the job until the video is downloaded

(a) and (b) encode with the very ffmpeg command the stitch uses. After a farm
run, ``profile_job`` reads the ledger and the bucket to say where the time
went; it holds whether a worker renders one frame per POV-Ray process or a
chunk of frames in one.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import itertools
import os
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from povstorm.core.spec import FPS, OutputSpec
from povstorm.povray import FARM_OPTIONS
from povstorm.stitch.encode import ffmpeg_command

from ._util import (
    ProcessRun,
    Window,
    group_cpu_seconds,
    kill_live,
    mean,
    measure,
    percentile,
    run_process,
)

POVRAY = "povray"
# What the farm's worker adds to every POV-Ray run: given to the baselines
# too, so all three do the same work.
QUIET = FARM_OPTIONS


@dataclass(frozen=True)
class Animation:
    """A POV-Ray animation given as a user gives it: an INI file and options."""

    scene_dir: Path
    ini: str
    width: int
    height: int
    frames: int
    fps: int = FPS.default

    def argv(self) -> list[str]:
        return [self.ini, f"+W{self.width}", f"+H{self.height}", "+KFI1", f"+KFF{self.frames}"]

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def describe(self) -> str:
        return f"{self.scene_dir.name}/{self.ini} {self.width}x{self.height}, {self.frames} frames"


@dataclass
class Run:
    """One timed rendering of the animation."""

    scenario: str  # direct | per-frame | farm
    index: int  # which run of its scenario (at its size)
    window: Window
    phases: dict[str, float] = field(default_factory=dict)
    frame_seconds: list[float] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    # POV-Ray's own CPU seconds (user + system) in this run: from os.wait4
    # for direct and per-frame; for farm, the workers' reaped children
    # (POV-Ray and the workers' segment encodes).
    povray_cpu: float = 0.0
    frame_cpu_seconds: list[float] = field(default_factory=list)
    size: str = ""  # WxH of the animation
    # farm: each unit's POV-Ray CPU seconds (the ledger's), and the chunk
    # plan the job was made with (the job's ``plan``): the model's inputs.
    unit_cpu: dict[int, float] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return self.window.wall

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "size": self.size,
            "index": self.index,
            **self.window.as_dict(),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "frame_seconds_mean": round(mean(self.frame_seconds), 3),
            "povray_cpu_seconds": round(self.povray_cpu, 2),
            "profile": self.profile,
        }


def _encode(anim: Animation, frames_dir: Path, stem: str, digits: int, dest: Path) -> None:
    """The stitch's own ffmpeg command, on POV-Ray's own file names."""
    cmd = ffmpeg_command(OutputSpec(fps=anim.fps), frames_dir / f"{stem}%0{digits}d.png", dest)
    cmd[cmd.index("-start_number") + 1] = "1"
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, capture_output=True)


def _frames_written(frames_dir: Path, stem: str, anim: Animation) -> int:
    found = sorted(frames_dir.glob(f"{stem}*.png"))
    if len(found) != anim.frames:
        raise RuntimeError(f"expected {anim.frames} frames in {frames_dir}, found {len(found)}")
    return len(found[0].name) - len(stem) - len(".png")


def povray_argv(anim: Animation, extra: list[str], outdir: Path) -> list[str]:
    """``povray`` on the animation as the user gives it, plus ``extra``
    (threads, a frame range) and what the farm's worker adds to every run."""
    return [POVRAY, *anim.argv(), *extra, *QUIET, f"+O{outdir}/"]


def _povray(anim: Animation, extra: list[str], outdir: Path) -> ProcessRun:
    """One ``povray`` process, timed, with its own CPU seconds (``os.wait4``)."""
    name = "-".join(x.strip("+-") for x in extra) or "all"
    log = outdir / f"povray-{name}.log"
    run = run_process(povray_argv(anim, extra, outdir), anim.scene_dir, log)
    if run.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"povray {' '.join(extra)} exited {run.returncode}: {tail}")
    log.unlink(missing_ok=True)
    return run


def render_chunks_into(
    anim: Animation, chunks: Sequence[tuple[int, int]], processes: int, out: Path
) -> list[ProcessRun]:
    """Render ``chunks`` (first, last frame) with ``processes`` ``povray +WT1``
    processes at once into ``out``: each thread of the pool takes the next
    chunk in order when its process ends (the executor's queue is first in,
    first out). Returns the processes in the chunks' order."""
    pool = cf.ThreadPoolExecutor(processes)
    try:
        return list(
            pool.map(lambda c: _povray(anim, ["+WT1", f"+SF{c[0]}", f"+EF{c[1]}"], out), chunks)
        )
    except BaseException:
        # Interrupted, or a process failed: start no other chunk, end the rest.
        pool.shutdown(wait=False, cancel_futures=True)
        kill_live()
        raise
    finally:
        pool.shutdown(wait=True)


def run_direct(anim: Animation, work: Path, index: int) -> Run:
    out = work / f"direct-{anim.size}-{index}"
    out.mkdir(parents=True)
    stem = Path(anim.ini).stem
    with measure() as window:
        proc = _povray(anim, [], out)
        t = time.monotonic()
        digits = _frames_written(out, stem, anim)
        _encode(anim, out, stem, digits, out / "video.mp4")
        encode = time.monotonic() - t
    shutil.rmtree(out, ignore_errors=True)
    return Run(
        "direct",
        index,
        window,
        {"render": proc.wall, "encode": encode},
        povray_cpu=proc.cpu,
        size=anim.size,
    )


def run_per_frame(anim: Animation, work: Path, index: int, processes: int) -> Run:
    """(b): one ``povray +WT1`` per frame, ``processes`` at once; each
    process's own CPU seconds are kept (their sum over the cores is the limit)."""
    out = work / f"per-frame-{anim.size}-{index}"
    out.mkdir(parents=True)
    stem = Path(anim.ini).stem
    with measure() as window:
        t = time.monotonic()
        procs = render_chunks_into(
            anim, [(f, f) for f in range(1, anim.frames + 1)], processes, out
        )
        render = time.monotonic() - t
        t = time.monotonic()
        digits = _frames_written(out, stem, anim)
        _encode(anim, out, stem, digits, out / "video.mp4")
        encode = time.monotonic() - t
    shutil.rmtree(out, ignore_errors=True)
    return Run(
        "per-frame",
        index,
        window,
        {"render": render, "encode": encode},
        frame_seconds=[p.wall for p in procs],
        povray_cpu=sum(p.cpu for p in procs),
        frame_cpu_seconds=[p.cpu for p in procs],
        size=anim.size,
    )


def run_farm(
    cluster: Any,
    anim: Animation,
    work: Path,
    index: int,
    pgids: dict[str, int],
    ncores: int | None = None,
) -> Run:
    """(c): the user's arguments only; the farm chooses threads, processes
    and chunks. POV-Ray's CPU seconds are what the workers reaped (the
    ``workers`` group's children), whatever the ledger's unit records say."""
    from povstorm.client import Job

    out = work / f"farm-{anim.size}-{index}"
    out.mkdir(parents=True)
    groups = list(pgids.values())
    cpu_before = group_cpu_seconds(groups)
    reaped_before = group_cpu_seconds(groups, reaped=True)
    with measure() as window:
        t0 = time.monotonic()
        # Every pair renders the same frames: the frame cache would answer
        # the second. The parse check runs as in ``povstorm render``, inside
        # the time: the first job's chunk plan starts from its estimate.
        job = Job.from_ini(cluster, anim.argv(), cwd=anim.scene_dir, name="bench", cache=False)
        job_id = job.submit()
        t1 = time.monotonic()
        job.watch()
        t2 = time.monotonic()
        watched_at = dt.datetime.now(dt.UTC)
        result = job.result(video=out / "video.mp4")
        t3 = time.monotonic()
    cpu_after = group_cpu_seconds(groups)
    reaped_after = _after_stitch_reaped(groups, pgids.get("stitcher"), reaped_before)
    video = out / "video.mp4"
    if not result.ok or result.units_done != anim.frames or not video.is_file():
        raise RuntimeError(f"farm job {job_id} ended {result.state}: {result.errors[:3]}")
    profile = profile_job(cluster, job_id, watched_at, ncores or cores())
    profile["stack_cpu_seconds"] = {
        name: round(cpu_after.get(pgid, 0.0) - cpu_before.get(pgid, 0.0), 2)
        for name, pgid in pgids.items()
    }
    # The stitch: a child the stitcher forked and reaped (0 without a stitcher).
    stitcher = pgids.get("stitcher")
    profile["stitch_cpu_seconds"] = (
        round(reaped_after.get(stitcher, 0.0) - reaped_before.get(stitcher, 0.0), 2)
        if stitcher is not None
        else 0.0
    )
    # POV-Ray runs in its own session, reaped (wait4) by the worker that ran
    # it: its CPU is in the worker processes' children's time, with that of
    # the ffmpeg that encodes a chunk's segment on the worker (the ledger's
    # per-frame figures have POV-Ray alone, less its last frame's exit). A
    # worker that died meanwhile takes its children's time with it: the
    # ledger's sum then.
    workers_pgid = pgids.get("workers")
    reaped = (
        reaped_after.get(workers_pgid, 0.0) - reaped_before.get(workers_pgid, 0.0)
        if workers_pgid is not None
        else 0.0
    )
    ledger_cpu = profile.get("ledger_povray_cpu_seconds", 0.0)
    povray_cpu = reaped if reaped > 0.5 * ledger_cpu and reaped > 0 else ledger_cpu
    profile["povray_cpu_seconds"] = round(povray_cpu, 2)
    profile["povray_cpu_source"] = (
        "the workers' reaped children (POV-Ray and segment encodes)"
        if povray_cpu == reaped
        else "ledger (POV-Ray)"
    )
    # Ours too, though not this process's children: the stack, POV-Ray (and
    # segment encodes) in the workers, and the stitch the stitcher reaped.
    window.extra_own = (
        sum(profile["stack_cpu_seconds"].values()) + povray_cpu + profile["stitch_cpu_seconds"]
    )
    shutil.rmtree(out, ignore_errors=True)
    return Run(
        "farm",
        index,
        window,
        {"submit": t1 - t0, "render_and_stitch": t2 - t1, "download": t3 - t2},
        frame_seconds=profile.pop("_render_seconds"),
        profile=profile,
        povray_cpu=povray_cpu,
        size=anim.size,
        unit_cpu=profile.pop("_unit_cpu"),
        plan=profile.pop("_plan"),
    )


def _after_stitch_reaped(
    groups: list[int], stitcher: int | None, before: dict[int, float], wait: float = 3.0
) -> dict[int, float]:
    """The groups' reaped children's CPU, once the stitcher has reaped the
    job's stitch (it writes the job done just before it exits)."""
    deadline = time.monotonic() + wait
    while True:
        after = group_cpu_seconds(groups, reaped=True)
        if stitcher is None or after.get(stitcher, 0.0) > before.get(stitcher, 0.0):
            return after
        if time.monotonic() > deadline:
            return after
        time.sleep(0.05)


def _ts(value: Any) -> float | None:
    """A ledger timestamp as epoch seconds; None for a missing one."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _num(value: Any) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _stat(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 4),
        "p95": round(percentile(values, 95), 4),
        "total": round(sum(values), 3),
        "count": len(values),
    }


def _busy_spans(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """One worker's units grouped into spans of continuous work: a unit from
    its start to its frame's upload, overlapping units merged. With one frame
    per POV-Ray process a span is a unit; with a chunk of frames rendered by
    one process (its units started together, or each as the previous one
    ended) a span is the chunk, or the chunk's frames one after the other."""
    spans: list[list[dict[str, Any]]] = []
    end = float("-inf")
    for r in sorted(rows, key=lambda r: (r["started"], r["uploaded"])):
        if spans and r["started"] < end:
            spans[-1].append(r)
            end = max(end, r["uploaded"])
        else:
            spans.append([r])
            end = r["uploaded"]
    return spans


def _span_povray(span: list[dict[str, Any]], field_: str, bound: float) -> float:
    """POV-Ray's seconds (``render`` or ``cpu``) in one span. The units'
    figures add up, unless each unit of a chunk carries the whole chunk's
    figure: a sum beyond what the span can hold (``bound``) counts it once."""
    values = [r[field_] for r in span]
    total = sum(values)
    return max(values, default=0.0) if total > bound * 1.05 + 0.05 else total


def profile_job(
    cluster: Any, job_id: str, watched_at: dt.datetime, ncores: int | None = None
) -> dict[str, Any]:
    """Where a finished job's time went, from the ledger's timestamps and the
    frame objects' creation times (every process runs on this machine, so
    the clocks agree). A field the ledger lacks makes its figure None, or
    drops the unit from the per-unit figures (``units_incomplete``)."""
    from povstorm.cloud.blobs import storage_client
    from povstorm.core.naming import frame_object, frames_prefix

    ncores = ncores or cores()
    ledger = cluster.ledger
    job = ledger.require_job(job_id)
    units = ledger.unit_records(job_id)
    client = storage_client(cluster.settings.project, cluster.settings.endpoints.storage)
    created = {
        b.name: b.time_created.timestamp()
        for b in client.list_blobs(cluster.settings.bucket, prefix=frames_prefix(job_id))
    }
    rows: list[dict[str, Any]] = []
    incomplete = no_object = 0
    for u in units:
        started, recorded = _ts(u.get("started_at")), _ts(u.get("finished_at"))
        if started is None or recorded is None or u.get("unit") is None:
            incomplete += 1
            continue
        uploaded = created.get(frame_object(job_id, int(u["unit"])))
        if uploaded is None:  # no frame object of its own: its record stands in
            no_object += 1
            uploaded = recorded
        rows.append(
            {
                "unit": int(u["unit"]),
                "worker": str(u.get("worker") or ""),
                "started": started,
                "render": _num(u.get("render_seconds")),
                "cpu": _num(u.get("cpu_seconds")),
                "uploaded": uploaded,
                "recorded": recorded,
            }
        )
    job_created, job_finished = _ts(job.get("created_at")), _ts(job.get("finished_at"))
    stitch = job.get("stitch") or {}
    stats = job.get("stats") or {}
    claimed, launched = _ts(stitch.get("claimed_at")), _ts(stitch.get("launched_at"))
    last_upload = max((r["uploaded"] for r in rows), default=None)
    first_start = min((r["started"] for r in rows), default=None)

    # Per worker: the gaps between its spans of work (acknowledge, pull, the
    # start_unit transaction; between chunks, POV-Ray's start-up is in the
    # span), and in each span what is not POV-Ray (inputs, uploads, and with
    # chunks POV-Ray's idle between frames if the worker times frames apart).
    by_worker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_worker[r["worker"]].append(r)
    gaps: list[float] = []
    beyond: list[float] = []
    # Each span's work beyond POV-Ray (spans of 2 frames or more), split at
    # the process's start: before it (inputs, the ledger's start) and after
    # its last frame (its exit, the segment, the last uploads); the split is
    # off by the first frame's upload delay (POV-Ray's idle between frames
    # and the upload itself), which the model's calibration takes out
    # (bench/validate.py).
    before: list[float] = []
    after: list[float] = []
    spans_frames: list[int] = []
    render_total = cpu_total = 0.0
    for rs in by_worker.values():
        spans = _busy_spans(rs)
        for a, b in itertools.pairwise(spans):
            gaps.append(min(r["started"] for r in b) - max(r["uploaded"] for r in a))
        for span in spans:
            length = max(r["uploaded"] for r in span) - min(r["started"] for r in span)
            render = _span_povray(span, "render", length)
            render_total += render
            cpu_total += _span_povray(span, "cpu", length * ncores)
            beyond.append(length - render)
            spans_frames.append(len(span))
            if len(span) > 1:  # a lone frame goes up after its segment: no split
                first = min(span, key=lambda r: r["uploaded"])
                began = first["uploaded"] - first["render"]  # + the first frame's upload delay
                before.append(began - min(r["started"] for r in span))
                after.append(length - render - before[-1])
    to_record = [r["recorded"] - r["uploaded"] for r in rows]

    def since(a: float | None, b: float | None) -> float | None:
        return round(a - b, 3) if a is not None and b is not None else None

    return {
        "job_id": job_id,
        "units": len(units),
        "units_incomplete": incomplete,
        "units_without_frame_object": no_object,
        "upload_to_record_seconds": [round(x, 4) for x in to_record],
        "last_upload_to_claim": since(claimed, last_upload),
        "claim_to_launch": since(launched, claimed),
        "stitch_seconds": stats.get("stitch_seconds"),
        "last_upload_to_done": since(job_finished, last_upload),
        "done_to_client": since(watched_at.timestamp(), job_finished),
        "created_to_first_start": since(first_start, job_created),
        "first_start_to_last_upload": since(last_upload, first_start),
        "worker_idle_between_units": _stat(gaps),
        "unit_overhead_beyond_povray": _stat(beyond),
        "span_before_povray": _stat(before),
        "span_after_povray": _stat(after),
        "spans": len(spans_frames),
        "frames_per_span_mean": round(mean(spans_frames), 2),
        "workers": len(by_worker),
        "ledger_render_seconds": round(render_total, 2),
        "ledger_povray_cpu_seconds": round(cpu_total, 2),
        "_render_seconds": [r["render"] for r in rows],
        "_unit_cpu": {r["unit"]: r["cpu"] for r in rows},
        "_plan": dict(job.get("plan") or {}),
        "plan_slots": (job.get("plan") or {}).get("slots"),
    }


def warm_up(anim: Animation, work: Path, cluster: Any) -> float:
    """Tiny frames through each path, so that no measured run pays for a cold
    page cache, a first import or a function's first request. Returns the
    stitch seconds of the farm's 2-frame 64x48 job: the stitch's fixed cost."""
    from povstorm.client import Job

    tiny = Animation(anim.scene_dir, anim.ini, 64, 48, 2, anim.fps)
    out = work / "warm"
    out.mkdir(parents=True, exist_ok=True)
    _povray(tiny, ["+SF1", "+EF1"], out)
    shutil.rmtree(out, ignore_errors=True)
    job = Job.from_ini(cluster, tiny.argv(), cwd=tiny.scene_dir, name="bench-warm-up")
    job.submit()
    result = job.wait(timeout=120)
    if not result.ok:
        raise RuntimeError(f"the warm-up job ended {result.state}: {result.errors[:3]}")
    return float(result.stats.get("stitch_seconds") or 0.0)


def cores() -> int:
    return os.cpu_count() or 1
