"""The proof pass: a quick version of a scene job, rendered before the full one.

An animator's mistake (a clock expression that breaks at frame 40, a camera
that drifts out of the scene halfway) shows in a quarter-size, un-antialiased
render of a sample of the frames as well as in the full render, at a small
fraction of its cost. ``povstorm render ... --proof`` (``Job(..., proof=True)``)
renders that first, as a job of its own on the same farm:

* every ``step``-th frame of the job's range (POV-Ray's own ``Frame_Step``,
  counted from the first frame, so the clock of each proof frame is the full
  job's), ``step`` chosen so the proof has about PROOF_FRAMES frames;
* at a quarter of the width and height (at least MIN_WIDTH x MIN_HEIGHT),
  without antialiasing (the options are appended to the job's own, so they
  win as they would on ``povray``'s command line);
* one attempt a frame and fail-fast: the first frame POV-Ray cannot render
  ends the proof with POV-Ray's error, and the full job is never submitted
  (unless ``keep_going``).

Then the client makes a contact sheet and fetches the proof's video (at the
full job's fps divided by ``step``, so it lasts as long), estimates the full
job from the proof's frame times, and submits the full job unless told to
stop there. A proof's frames go through the frame cache like any others: an
unchanged scene's proof is reused at once.

The proof only sees the frames it renders: a scene error in a frame between
two sampled ones is found by the full render (the parse check before upload
covers the first and the last frame).
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from povstorm.core.errors import PovstormError, RenderError, UserError
from povstorm.core.naming import frames_prefix, new_job_id
from povstorm.core.schemas import load_job_spec
from povstorm.core.spec import FPS, container_for
from povstorm.povray.output import scaled_seconds

if TYPE_CHECKING:
    from povstorm.client.cluster import JobResult
    from povstorm.client.job import Job

log = logging.getLogger(__name__)

PROOF_FRAMES = 16  # about this many frames
SCALE = 4  # a quarter of the width and of the height
MIN_WIDTH, MIN_HEIGHT = 16, 12


@dataclass(frozen=True)
class ProofPlan:
    """What the proof renders: every ``step``-th frame at ``width`` x ``height``."""

    step: int
    width: int
    height: int
    frames: int
    full_pixels: int
    antialias: bool

    @property
    def pixel_ratio(self) -> float:
        return self.full_pixels / (self.width * self.height)


def plan_proof(inv: Any) -> ProofPlan:
    """The proof of a parsed invocation (``povray.Invocation``)."""
    frames = inv.frame_count
    step = max(1, math.ceil(frames / PROOF_FRAMES))
    return ProofPlan(
        step=step,
        width=max(MIN_WIDTH, inv.width // SCALE),
        height=max(MIN_HEIGHT, inv.height // SCALE),
        frames=len(range(0, frames, step)),
        full_pixels=inv.width * inv.height,
        antialias=inv.antialias.enabled,
    )


def proof_body(
    body: dict[str, Any], plan: ProofPlan, full_job_id: str, *, fresh: bool = False
) -> dict[str, Any]:
    """The proof job's spec (JSON form) from the full job's; ``fresh``:
    rendered anew, not from the frame cache (whose copies carry no render
    times), for an estimate that must be there."""
    scene = body["povray"]
    frames = dict(scene["frames"])
    frames["step"] = int(frames.get("step", 1)) * plan.step
    output = dict(body["output"])
    output["fps"] = max(FPS.low, round(int(output["fps"]) / plan.step))
    # The proof is the client's own look ahead: only the full job notifies,
    # and the full job's estimate is not for the proof's own frames.
    full = {k: v for k, v in body.items() if k not in ("notify", "estimate")}
    return {
        **full,
        "job_id": new_job_id(),
        "name": f"{body['name']}-proof"[:100],
        "povray": {
            # A still's proof is rendered whole: its tiles are the full size's.
            **{k: v for k, v in scene.items() if k != "tiles"},
            "args": [*scene["args"], f"+W{plan.width}", f"+H{plan.height}", "-A"],
            "frames": frames,
        },
        "output": output,
        "max_attempts": 1,
        "fail_fast": True,
        "frames_per_unit": 0,
        **({"cache": "refresh"} if fresh and body.get("cache") == "use" else {}),
        "extra": {**body.get("extra", {}), "proof_for": full_job_id},
    }


@dataclass
class Proof:
    """A proof pass: its job's result, what it rendered, what the full job
    may take, and the contact sheet and video on this machine."""

    plan: ProofPlan
    result: JobResult
    sheet: Path | None = None
    video: Path | None = None
    estimate: dict[str, float] = field(default_factory=dict)
    # Each proof frame's estimated seconds at the full size, in frame order:
    # the full job's chunk plan starts from them (Job.estimate).
    frame_seconds: tuple[float, ...] = ()

    @property
    def ok(self) -> bool:
        return self.result.ok

    def error_line(self) -> str:
        """The proof's first error, as POV-Ray gave it, or its state."""
        for e in self.result.errors:
            if "stitch" not in e:
                where = f"frame {e['frame']}" if e.get("frame") is not None else "a frame"
                return f"{where}: {e.get('error')}"
        return f"the proof job ended {self.result.state}"

    def lines(self) -> list[str]:
        """What the CLI prints about the proof: one line each."""
        plan, stats = self.plan, self.result.stats
        wall = float(stats.get("wall_seconds") or 0.0)
        out = [
            f"proof {self.result.job_id}: {self.result.units_done} of {plan.frames} frame(s) "
            f"(every {plan.step}) at {plan.width}x{plan.height} without antialiasing"
            + (f" in {wall:.1f} s" if wall else "")
        ]
        if not self.ok:
            out.append(f"proof failed at {self.error_line()}")
        for what, path in (("contact sheet", self.sheet), ("preview video", self.video)):
            if path is not None:
                out.append(f"proof {what}: {path}")
        if self.estimate:
            e = self.estimate
            out.append(
                f"full job estimate: ~{e['frame_seconds']:.1f} s a frame, "
                f"~{e['job_seconds'] / 60:.1f} min on {int(e['slots'])} render slot(s) "
                "(the proof's trace times scaled by pixels)"
            )
        return out


def full_seconds(frames: list[dict[str, str]], plan: ProofPlan) -> list[float]:
    """Each proof frame's time at the full size, in the order of ``frames``
    (their object metadata, worker/chunk.py): its time with the part POV-Ray
    spent tracing (its reported time less its parse) scaled by the pixels,
    and the antialiasing, the full frame has more; the parse and POV-Ray's
    own overhead stay as they were. Frames without a time (from the frame
    cache) are left out."""

    def num(md: dict[str, str], key: str) -> float:
        try:
            return float(md.get(key) or 0.0)
        except ValueError:
            return 0.0

    out = []
    for md in frames:
        if num(md, "render_seconds") > 0:
            grows = max(0.0, num(md, "trace_seconds") - num(md, "parse_seconds"))
            fixed = num(md, "render_seconds") - grows
            out.append(round(scaled_seconds(fixed, grows, plan.pixel_ratio, plan.antialias), 3))
    return out


def estimate(full: list[float], count: int, slots: int) -> dict[str, float]:
    """The full job's time from its frames' (``full_seconds``): the median
    frame, times ``count`` frames, over ``slots`` render slots."""
    if not full:
        return {}
    per_frame = sorted(full)[len(full) // 2]
    return {
        "frame_seconds": round(per_frame, 3),
        "job_seconds": round(per_frame * count / max(1, slots), 1),
        "slots": float(slots),
    }


def run_proof(
    job: Job,
    *,
    dest: Path | None = None,
    on_progress: Any = None,
    timeout: float | None = None,
    fresh: bool = False,
) -> Proof:
    """Render ``job``'s proof and wait for it; with ``dest`` (a file name
    stem), write ``<dest>-proof.png`` (contact sheet) and the proof's video
    beside it (``fresh``: see ``proof_body``). The full job is not touched."""
    if job.invocation is None or job._scene is None:
        raise UserError("a proof pass is for a scene job (Job.from_ini)")
    inv = job.invocation
    plan = plan_proof(inv)
    full = job.spec()  # uploads the inputs (once: the proof shares them)
    body = proof_body(full, plan, full["job_id"], fresh=fresh)
    cluster = job.cluster
    proof_id = cluster.submit(body)
    cluster.watch(proof_id, on_progress=on_progress, timeout=timeout)
    if dest is None:
        proof = Proof(plan, cluster.fetch(proof_id))
    else:
        ext = container_for(load_job_spec(body).output)
        video = dest.parent / f"{dest.name}-proof.{ext}"
        with tempfile.TemporaryDirectory(prefix="povstorm-proof-") as tmp:
            result = cluster.fetch(proof_id, video=video, frames_dir=Path(tmp))
            proof = Proof(plan, result, video=result.video)
            if result.frames:
                proof.sheet = _sheet(sorted(result.frames), dest.parent / f"{dest.name}-proof.png")
    if proof.ok:
        slots = int((cluster.status(proof_id).get("plan") or {}).get("slots") or 1)
        frames = sorted(cluster.blobs.list(frames_prefix(proof_id)), key=lambda b: b.name)
        proof.frame_seconds = tuple(full_seconds([b.metadata for b in frames], plan))
        proof.estimate = estimate(list(proof.frame_seconds), inv.frame_count, slots)
    return proof


def _sheet(frames: list[Path], dest: Path) -> Path | None:
    from povstorm.stitch.preview import contact_sheet

    try:
        return contact_sheet(frames, dest)
    except (PovstormError, OSError) as exc:  # no ffmpeg on this machine, say
        log.warning("no contact sheet of the proof: %s", exc)
        return None


class ProofFailed(RenderError):
    """The proof pass found a frame POV-Ray cannot render: the full job was
    not submitted."""

    def __init__(self, proof: Proof) -> None:
        super().__init__(f"the proof failed at {proof.error_line()}: the full job was not started")
        self.proof = proof
