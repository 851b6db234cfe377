"""Farm overhead on one machine: the same animation rendered three ways.

    direct      ``povray`` renders the whole animation in one process (all
                cores, POV-Ray's default +WT), then ffmpeg: what a user does
                without povstorm
    per-frame   one ``povray +WT1`` process per frame, one per core in
                parallel, then ffmpeg: the farm's own strategy, without the farm
    farm        the warm local stack (workers = cores, +WT1 in the job's
                arguments): ``Job.from_ini(...).submit()`` until the video is
                downloaded

per-frame and farm run the same POV-Ray processes with the same thread count,
so farm / per-frame is what the orchestration costs; both encode with the very
ffmpeg command the stitch uses. After a farm run, ``profile`` reads the ledger
and the bucket to say where the time went.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from povstorm.core.spec import FPS, OutputSpec
from povstorm.povray import FARM_OPTIONS
from povstorm.stitch.encode import ffmpeg_command

from ._util import Window, group_cpu_seconds, mean, measure, percentile

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

    def describe(self) -> str:
        return f"{self.scene_dir.name}/{self.ini} {self.width}x{self.height}, {self.frames} frames"


@dataclass
class Run:
    """One timed rendering of the animation."""

    scenario: str  # direct | per-frame | farm
    index: int  # which run of its scenario
    window: Window
    phases: dict[str, float] = field(default_factory=dict)
    frame_seconds: list[float] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return self.window.wall

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "index": self.index,
            **self.window.as_dict(),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "frame_seconds_mean": round(mean(self.frame_seconds), 3),
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


def _povray(anim: Animation, extra: list[str], outdir: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [POVRAY, *anim.argv(), *extra, *QUIET, f"+O{outdir}/"],
        cwd=anim.scene_dir,
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return time.monotonic() - started


def run_direct(anim: Animation, work: Path, index: int) -> Run:
    out = work / f"direct-{index}"
    out.mkdir(parents=True)
    stem = Path(anim.ini).stem
    with measure() as window:
        render = _povray(anim, [], out)
        t = time.monotonic()
        digits = _frames_written(out, stem, anim)
        _encode(anim, out, stem, digits, out / "video.mp4")
        encode = time.monotonic() - t
    shutil.rmtree(out, ignore_errors=True)
    return Run("direct", index, window, {"render": render, "encode": encode})


def run_per_frame(anim: Animation, work: Path, index: int, workers: int) -> Run:
    out = work / f"per-frame-{index}"
    out.mkdir(parents=True)
    stem = Path(anim.ini).stem
    with measure() as window:
        t = time.monotonic()
        with cf.ThreadPoolExecutor(workers) as pool:
            seconds = list(
                pool.map(
                    lambda f: _povray(anim, ["+WT1", f"+SF{f}", f"+EF{f}"], out),
                    range(1, anim.frames + 1),
                )
            )
        render = time.monotonic() - t
        t = time.monotonic()
        digits = _frames_written(out, stem, anim)
        _encode(anim, out, stem, digits, out / "video.mp4")
        encode = time.monotonic() - t
    shutil.rmtree(out, ignore_errors=True)
    return Run(
        "per-frame", index, window, {"render": render, "encode": encode}, frame_seconds=seconds
    )


def run_farm(cluster: Any, anim: Animation, work: Path, index: int, pgids: dict[str, int]) -> Run:
    from povstorm.client import Job

    out = work / f"farm-{index}"
    out.mkdir(parents=True)
    cpu_before = group_cpu_seconds(pgids.values())
    with measure() as window:
        t0 = time.monotonic()
        job = Job.from_ini(cluster, [*anim.argv(), "+WT1"], cwd=anim.scene_dir, name="bench")
        job_id = job.submit()
        t1 = time.monotonic()
        job.watch()
        t2 = time.monotonic()
        watched_at = dt.datetime.now(dt.UTC)
        result = job.result(video=out / "video.mp4")
        t3 = time.monotonic()
    cpu_after = group_cpu_seconds(pgids.values())
    video = out / "video.mp4"
    if not result.ok or result.units_done != anim.frames or not video.is_file():
        raise RuntimeError(f"farm job {job_id} ended {result.state}: {result.errors[:3]}")
    profile = profile_job(cluster, job_id, watched_at)
    profile["stack_cpu_seconds"] = {
        name: round(cpu_after.get(pgid, 0.0) - cpu_before.get(pgid, 0.0), 2)
        for name, pgid in pgids.items()
    }
    # Ours too, though not this process's children: the stack and POV-Ray in
    # the workers (the stitch, a detached process, is not counted anywhere).
    window.extra_own = sum(profile["stack_cpu_seconds"].values()) + profile["povray_cpu_seconds"]
    shutil.rmtree(out, ignore_errors=True)
    return Run(
        "farm",
        index,
        window,
        {"submit": t1 - t0, "render_and_stitch": t2 - t1, "download": t3 - t2},
        frame_seconds=profile.pop("_render_seconds"),
        profile=profile,
    )


def _ts(value: Any) -> float:
    return value.timestamp() if isinstance(value, dt.datetime) else float(value)


def profile_job(cluster: Any, job_id: str, watched_at: dt.datetime) -> dict[str, Any]:
    """Where a finished job's time went, from the ledger's timestamps and the
    frame objects' creation times (every process runs on this machine, so
    the clocks agree)."""
    from povstorm.cloud.blobs import storage_client
    from povstorm.core.naming import frame_object, frames_prefix

    ledger = cluster.ledger
    job = ledger.require_job(job_id)
    units = ledger.unit_records(job_id)
    client = storage_client(cluster.settings.project, cluster.settings.endpoints.storage)
    created = {
        b.name: b.time_created.timestamp()
        for b in client.list_blobs(cluster.settings.bucket, prefix=frames_prefix(job_id))
    }
    rows = []
    for u in units:
        rows.append(
            {
                "worker": u.get("worker") or "",
                "started": _ts(u["started_at"]),
                "render": float(u.get("render_seconds") or 0.0),
                "cpu": float(u.get("cpu_seconds") or 0.0),
                "uploaded": created[frame_object(job_id, int(u["unit"]))],
                "recorded": _ts(u["finished_at"]),
            }
        )
    job_created = _ts(job["created_at"])
    job_finished = _ts(job["finished_at"])
    last_upload = max(r["uploaded"] for r in rows)
    stitch = job.get("stitch") or {}
    stats = job.get("stats") or {}
    # Per worker: from its previous frame's upload to its next unit's start
    # (ack, pull, the start_unit transaction), and from a unit's start to its
    # frame's upload beyond POV-Ray's own run (inputs, log and frame upload).
    by_worker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["started"]):
        by_worker[r["worker"]].append(r)
    gaps, around = [], []
    for rs in by_worker.values():
        gaps += [b["started"] - a["uploaded"] for a, b in itertools.pairwise(rs)]
        around += [r["uploaded"] - r["started"] - r["render"] for r in rs]
    first_start = min(r["started"] for r in rows)
    to_record = [r["recorded"] - r["uploaded"] for r in rows]
    return {
        "job_id": job_id,
        "upload_to_record_seconds": [round(x, 4) for x in to_record],
        "last_upload_to_claim": round(_ts(stitch["claimed_at"]) - last_upload, 3)
        if stitch.get("claimed_at")
        else None,
        "claim_to_launch": round(_ts(stitch["launched_at"]) - _ts(stitch["claimed_at"]), 3)
        if stitch.get("launched_at") and stitch.get("claimed_at")
        else None,
        "stitch_seconds": stats.get("stitch_seconds"),
        "last_upload_to_done": round(job_finished - last_upload, 3),
        "done_to_client": round(watched_at.timestamp() - job_finished, 3),
        "created_to_first_start": round(first_start - job_created, 3),
        "worker_idle_between_units": {
            "p50": round(percentile(gaps, 50), 4),
            "p95": round(percentile(gaps, 95), 4),
            "total": round(sum(gaps), 3),
        },
        "unit_overhead_beyond_povray": {
            "p50": round(percentile(around, 50), 4),
            "p95": round(percentile(around, 95), 4),
            "total": round(sum(around), 3),
        },
        "workers": len(by_worker),
        "povray_cpu_seconds": round(sum(r["cpu"] for r in rows), 2),
        "_render_seconds": [r["render"] for r in rows],
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
