"""Iteration speed on the warm local stack: what an animator waits for when
rendering a scene again, and what a proof pass costs against the full job.

    first       a scene never rendered before (a salted copy of the example:
                nothing in the frame cache), from building the job until the
                video is downloaded: the baseline
    again       the same scene once more: every frame comes from the frame
                cache, so this is the farm's fixed cost of a job (submit, 48
                finalize events, the stitch's encode, the download)
    proof       the same scene with a parse error in frame 40 of 48, rendered with
                a proof pass (client/proof.py: every 3rd frame at a quarter
                of the size, no antialiasing): until the proof has failed,
                against ``first`` (the issue's goal: under a quarter)
    check       the local parse check alone (povray/check.py), which every
                ``povstorm render`` pays before it uploads

Each figure is printed as a ratio against ``first``, the time the same
animation takes when nothing is known about it.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from .overhead import Animation

# A parse error in one frame: frame 40 of 48 (a frame the proof renders).
BROKEN_AT = "\n#if (frame_number = {frame})\n  sphere {{ 0, 1 pigment {{ rgb <1, 0, 0> }}\n#end\n"


def broken_frame(frames: int, step: int) -> int:
    """The proof's frame at or before 5/6 of the range: 40 of 48 (every 3rd)."""
    at = max(1, round(frames * 5 / 6))
    return at - (at - 1) % step


def _salted(anim: Animation, work: Path, name: str, extra: str = "") -> Path:
    """A copy of the animation's scene that no frame in the cache comes from."""
    scene = work / name
    shutil.copytree(anim.scene_dir, scene)
    pov = scene / "spinning.pov"
    pov.write_text(pov.read_text() + f'\n#declare Salt = "{uuid.uuid4().hex}";\n' + extra)
    return scene


def _render(cluster: Any, anim: Animation, scene: Path, out: Path) -> tuple[float, dict[str, Any]]:
    from povstorm.client import Job

    t0 = time.monotonic()
    job = Job.from_ini(cluster, anim.argv(), cwd=scene, name="bench-iteration")
    job.submit()
    job.watch()
    result = job.result(video=out)
    wall = time.monotonic() - t0
    if not result.ok or result.units_done != anim.frames:
        raise RuntimeError(f"iteration job {job.job_id} ended {result.state}: {result.errors[:2]}")
    # The stitch stores the frames in the cache after the video (not timed):
    # the next render starts once they are there, as a user's would.
    deadline = time.monotonic() + 60
    while cluster.status(job.job_id).get("cache_filled") is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job.job_id}: its frames never reached the frame cache")
        time.sleep(0.1)
    return wall, result.stats


def run(cluster: Any, anim: Animation, work: Path) -> dict[str, Any]:
    from povstorm.client import Job
    from povstorm.client.proof import plan_proof
    from povstorm.povray import check_parse, collect_inputs, parse_invocation

    scene = _salted(anim, work, f"iteration-{anim.size}")
    first, _ = _render(cluster, anim, scene, work / f"first-{anim.size}.mp4")
    again, again_stats = _render(cluster, anim, scene, work / f"again-{anim.size}.mp4")
    if again_stats.get("frames_cached") != anim.frames:
        raise RuntimeError(f"the second render reused {again_stats.get('frames_cached')} frames")

    step = plan_proof(parse_invocation(anim.argv(), scene)).step
    frame = broken_frame(anim.frames, step)
    broken = _salted(anim, work, f"broken-{anim.size}", BROKEN_AT.format(frame=frame))
    t0 = time.monotonic()
    job = Job.from_ini(cluster, anim.argv(), cwd=broken, name="bench-proof", check=False)
    proof = job.run_proof()
    proof_wall = time.monotonic() - t0
    if proof.ok or f"frame {frame}:" not in proof.error_line():
        raise RuntimeError(f"the proof should fail at frame {frame}: {proof.error_line()}")

    t0 = time.monotonic()
    inv = parse_invocation(anim.argv(), scene)
    check_parse(inv, collect_inputs(inv).files)
    check = time.monotonic() - t0
    return {
        "first_seconds": round(first, 3),
        "again_seconds": round(again, 3),
        "again_ratio": round(again / first, 3),
        "again_frames_cached": again_stats.get("frames_cached"),
        "again_stitch_seconds": again_stats.get("stitch_seconds"),
        "proof_seconds": round(proof_wall, 3),
        "proof_ratio": round(proof_wall / first, 3),
        "proof_frames": proof.plan.frames,
        "broken_frame": frame,
        "proof_error": proof.error_line()[:120],
        "check_seconds": round(check, 3),
        "check_ratio": round(check / first, 3),
    }
