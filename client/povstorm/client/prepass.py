"""The radiosity pre-pass: one radiosity pretrace that every band of a tiled
still, or every frame of an animation, loads instead of gathering its own.

POV-Ray's radiosity gathers its samples in a pretrace over the area it
renders, then reuses them. A band of a tiled still pretraces its band alone,
so its samples differ from its neighbours' and the merged image shows a
step along each cut; each frame of an animation pretraces on its own, so
the indirect light shimmers from frame to frame. ``povstorm render
--radiosity-prepass`` (``Job.from_ini(..., radiosity_prepass=True)``) first
renders a job of its own on the same farm, before the full job:

* the whole image (no tiles) at a quarter of the width and height, but at
  least MIN_SIDE pixels on its longer side (the pretrace's steps are
  fractions of the image, so its samples hardly depend on the size: POV-Ray
  3.7 measures them against the screen), with the job's own options after
  which ``+RFI +RFO`` write the samples to a file;
* of an animation, up to PREPASS_FRAMES frames spread over its range, in
  one POV-Ray process, each adding the samples the others lacked (what one
  camera position cannot see, another may);
* one attempt, fail-fast, no frame cache.

The worker uploads the file with its sha256 (worker/chunk.py); the client
copies it to a content-addressed input, and the full job's every unit loads
it (``+RFI``, core/spec.py: LOAD_RADIOSITY). The bands then find the
samples they need already there and gather few of their own. Measured on
POV-Ray's ``cornell.pov`` (docs/bench.md, ``python -m bench.radiosity``):
the step across a cut and the flicker between frames both shrink, and the
bands render faster, since their pretraces find their samples loaded.
Radiosity is deterministic only with one render thread (POV-Ray's own
limit): with more, two direct renders differ too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from povstorm.core.errors import RenderError, UserError
from povstorm.core.naming import input_object, new_job_id, radiosity_object
from povstorm.core.spec import LOAD_RADIOSITY, RADIOSITY_IN

if TYPE_CHECKING:
    from povstorm.client.job import Job

SCALE = 4  # a quarter of the width and of the height...
MIN_SIDE = 320  # ...but at least this many pixels on the longer side
PREPASS_FRAMES = 5  # an animation's pre-pass renders at most this many frames


@dataclass(frozen=True)
class PrepassPlan:
    """What the pre-pass renders: ``frames`` frames, every ``step``-th of
    the job's from its ``offset``-th (counted in the job's own frames), at
    ``width`` x ``height``."""

    width: int
    height: int
    frames: int = 1
    step: int = 1
    offset: int = 0


def plan_prepass(width: int, height: int, frame_count: int, animated: bool) -> PrepassPlan:
    """The pre-pass of an image of ``width`` x ``height`` and of an
    animation of ``frame_count`` frames: up to PREPASS_FRAMES frames evenly
    spaced and centred in its range (POV-Ray's ``Frame_Step`` needs one
    step, so the ends may be a few frames short)."""
    longer = max(width, height)
    target = min(longer, max(MIN_SIDE, longer // SCALE))
    size = {
        "width": max(1, round(width * target / longer)),
        "height": max(1, round(height * target / longer)),
    }
    if not animated or frame_count <= 1:
        return PrepassPlan(**size)
    wanted = min(frame_count, PREPASS_FRAMES)
    step = max(1, math.ceil((frame_count - 1) / (wanted - 1)))
    frames = len(range(0, frame_count, step))
    offset = (frame_count - 1 - step * (frames - 1)) // 2
    return PrepassPlan(**size, frames=frames, step=step, offset=offset)


def prepass_body(body: dict[str, Any], plan: PrepassPlan, full_job_id: str) -> dict[str, Any]:
    """The pre-pass job's spec (JSON form) from the full job's."""
    scene = body["povray"]
    frames = dict(scene["frames"])
    step = int(frames.get("step", 1))
    frames["first"] = int(frames["first"]) + step * plan.offset
    frames["step"] = step * plan.step
    frames["last"] = frames["first"] + frames["step"] * (plan.frames - 1)
    full = {k: v for k, v in body.items() if k not in ("notify", "budget_usd", "estimate")}
    return {
        **full,
        "job_id": new_job_id(),
        "name": f"{body['name']}-prepass"[:100],
        "povray": {
            **{k: v for k, v in scene.items() if k != "tiles"},
            "args": [*scene["args"], f"+W{plan.width}", f"+H{plan.height}"],
            "frames": frames,
            "prepass": True,
        },
        "output": {**body["output"], "video": False},
        "max_attempts": 1,
        "fail_fast": True,
        "frames_per_unit": plan.frames,  # one POV-Ray process: one file of samples
        "cache": "off",
        "extra": {**body.get("extra", {}), "prepass_for": full_job_id},
    }


@dataclass(frozen=True)
class Prepass:
    """A finished pre-pass: its job, what it rendered, and the input its
    samples became."""

    job_id: str
    plan: PrepassPlan
    sha256: str
    seconds: float

    def line(self) -> str:
        what = f"{self.plan.frames} frame(s)" if self.plan.frames > 1 else "the image"
        return (
            f"radiosity pre-pass {self.job_id}: {what} at {self.plan.width}x{self.plan.height}"
            f" in {self.seconds:.1f} s; every part of the job loads its samples"
        )


def render_prepass(job: Job, on_progress: Any = None, timeout: float | None = None) -> Prepass:
    """Render ``job``'s radiosity pre-pass and wait for it; its samples
    become an input of the job. Raises RenderError when it fails (the full
    job is not submitted) and UserError when the scene computed no
    radiosity."""
    if job.invocation is None or job._scene is None:
        raise UserError("a radiosity pre-pass is for a scene job (Job.from_ini)")
    inv = job.invocation
    plan = plan_prepass(inv.width, inv.height, inv.frame_count, inv.animated)
    full = job.spec()  # uploads the inputs (once: the pre-pass shares them)
    cluster = job.cluster
    prepass_id = cluster.submit(prepass_body(full, plan, full["job_id"]))
    cluster.watch(prepass_id, on_progress=on_progress, timeout=timeout)
    result = cluster.fetch(prepass_id)
    if not result.ok:
        errors = [e for e in result.errors if e.get("error")]
        why = errors[0]["error"] if errors else f"it ended {result.state}"
        raise RenderError(
            f"the radiosity pre-pass {prepass_id} failed: {why}: the full job was not started"
        )
    info = cluster.blobs.info(radiosity_object(prepass_id))
    if info is None or not info.size or "sha256" not in info.metadata:
        raise UserError(
            "--radiosity-prepass: the scene computed no radiosity "
            "(no radiosity block in its global_settings?)"
        )
    sha = info.metadata["sha256"]
    if not cluster.blobs.exists(input_object(sha)):
        cluster.blobs.copy(radiosity_object(prepass_id), input_object(sha))
    return Prepass(prepass_id, plan, sha, float(result.stats.get("wall_seconds") or 0.0))


def load_prepass(scene: dict[str, Any], inputs: dict[str, str], prepass: Prepass) -> None:
    """Make the full job's spec (its ``povray`` and ``inputs``) load the samples."""
    inputs[RADIOSITY_IN] = prepass.sha256
    scene["args"] = [*scene["args"], *LOAD_RADIOSITY]
