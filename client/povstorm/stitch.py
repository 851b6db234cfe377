"""The stitch: every frame of a finished job into one video, a poster and stats.

Where it sits in the event flow: the ledger claims the stitch when the last
unit lands (job state ``stitching``) and launches ``stitch_container.main``
(a Cloud Run Job execution, locally a process); it runs this, which records
exactly one result with ``ledger.finish_stitch`` or ``ledger.fail_stitch``.

Idempotent, because a launch can be repeated (the reconciler relaunches a
stitch that never finished, and run_job has no idempotency key): a job not in
``stitching`` is left alone, the output names are fixed by the job id, and the
ledger keeps only the first recorded result.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import Clients
from .errors import UnknownJob
from .model import JobState
from .naming import (
    check_job_id,
    frame_object,
    frames_prefix,
    poster_object,
    stats_object,
    video_object,
)
from .spec import OutputSpec

if TYPE_CHECKING:
    from .ledger import Ledger

FFMPEG = "ffmpeg"
DOWNLOAD_THREADS = 8
SLOWEST = 5
MAX_MISSING_LISTED = 20

# codec -> (encoder options, containers it may go in; the first is its default)
_EVEN = "pad=ceil(iw/2)*2:ceil(ih/2)*2"  # yuv420p needs even sizes: pad, never crop
CODECS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "h264": (
        ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "medium"],
        ("mp4", "mkv", "mov"),
    ),
    "h265": (
        # hvc1 is the tag Apple players want; x265 is chatty on stderr otherwise.
        [
            "-c:v",
            "libx265",
            "-pix_fmt",
            "yuv420p",
            "-tag:v",
            "hvc1",
            "-x265-params",
            "log-level=error",
        ],
        ("mp4", "mkv", "mov"),
    ),
    "vp9": (
        # -b:v 0 makes -crf a constant quality rather than a cap on a bitrate.
        ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "0", "-row-mt", "1"],
        ("webm", "mkv"),
    ),
    "prores": (["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le"], ("mov", "mkv")),
    "gif": ([], ("gif",)),
}
CONTENT_TYPES = {
    "mp4": "video/mp4",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "mov": "video/quicktime",
    "gif": "image/gif",
}


@dataclass(frozen=True)
class StitchOutcome:
    status: str  # done | duplicate | skipped | failed
    job_id: str
    detail: str = ""
    video: str | None = None
    poster: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "failed" else 0

    def line(self) -> str:
        return f"stitch {self.job_id}: {self.status}" + (f": {self.detail}" if self.detail else "")


class StitchFailed(Exception):
    """A stitch that cannot succeed as things are: recorded with fail_stitch."""


def container_for(output: OutputSpec) -> str:
    """The file extension: the spec's format when its codec fits in it,
    else the codec's own container (vp9 -> webm, prores -> mov, gif -> gif)."""
    _, containers = CODECS[output.codec]
    return output.format if output.format in containers else containers[0]


def ffmpeg_command(output: OutputSpec, pattern: Path, dest: Path) -> list[str]:
    """Encode ``pattern`` (an image2 pattern numbered from 0) into ``dest``."""
    # -xerror: a frame that does not decode fails the encode instead of
    # silently leaving a gap in the video.
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-xerror", "-y"]
    cmd += ["-framerate", str(output.fps), "-start_number", "0", "-i", str(pattern)]
    if output.codec == "gif":
        # One palette for the whole clip: GIF has 256 colours per frame.
        cmd += ["-filter_complex", "[0:v]split[a][b];[a]palettegen[p];[b][p]paletteuse"]
    else:
        options, _ = CODECS[output.codec]
        cmd += ["-vf", _EVEN, *options, "-crf", str(output.crf)]
        if dest.suffix in (".mp4", ".mov"):
            cmd += ["-movflags", "+faststart"]  # playable while it downloads
    cmd += ["-an", str(dest)]
    return cmd


def encode(output: OutputSpec, pattern: Path, dest: Path) -> None:
    proc = subprocess.run(
        ffmpeg_command(output, pattern, dest),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
    )
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exited with status {proc.returncode}"
        # "[png @ 0x55d0...] Invalid PNG signature" -> "png: Invalid PNG signature"
        last = re.sub(r"^\[(\S+) @ 0x[0-9a-f]+\] ", r"\1: ", last)
        raise StitchFailed(f"ffmpeg: {last}")


def summarise(
    records: list[dict[str, Any]], created_at: dt.datetime | None, finished_at: dt.datetime
) -> dict[str, Any]:
    """The job's stats: wall time, per-frame render times, CPU, memory, speed-up."""
    seconds = [float(r.get("render_seconds") or 0.0) for r in records]
    total = sum(seconds)
    wall = (finished_at - created_at).total_seconds() if created_at else 0.0
    slowest = sorted(records, key=lambda r: float(r.get("render_seconds") or 0.0), reverse=True)
    return {
        "units": len(records),
        "wall_seconds": round(wall, 3),
        "render_seconds": {
            "total": round(total, 3),
            "min": round(min(seconds), 3) if seconds else 0.0,
            "p50": round(statistics.median(seconds), 3) if seconds else 0.0,
            "max": round(max(seconds), 3) if seconds else 0.0,
        },
        "slowest": [
            {
                "unit": int(r["unit"]),
                "frame": r.get("frame"),
                "render_seconds": round(float(r.get("render_seconds") or 0.0), 3),
                "worker": r.get("worker") or "",
            }
            for r in slowest[:SLOWEST]
        ],
        "cpu_seconds": round(sum(float(r.get("cpu_seconds") or 0.0) for r in records), 3),
        "peak_memory_bytes": max(
            (int(r.get("peak_memory_bytes") or 0) for r in records), default=0
        ),
        "workers": len({r.get("worker") for r in records if r.get("worker")}),
        # What the farm bought: rendering the frames one after another would
        # have taken ``total`` seconds; the job took ``wall``.
        "speedup": round(total / wall, 3) if wall > 0 else 0.0,
    }


def stitch(clients: Clients, ledger: Ledger, job_id: str) -> StitchOutcome:
    """Stitch one job, once. Raises UnknownJob / SpecError for a bad id and
    TransientError for an outage (the launcher or the reconciler runs it again)."""
    check_job_id(job_id)
    started = time.monotonic()
    job = ledger.get_job(job_id)
    if job is None:
        raise UnknownJob(job_id)
    if job["state"] != JobState.STITCHING.value:
        return StitchOutcome("skipped", job_id, f"job is {job['state']}, not stitching")
    spec = ledger.get_spec(job_id)
    units = int(job["units_expected"])

    # One listing instead of one request per frame.
    present = {b.name for b in clients.blobs.list(frames_prefix(job_id))}
    missing = [u for u in range(units) if frame_object(job_id, u) not in present]
    if missing:
        listed = ", ".join(map(str, missing[:MAX_MISSING_LISTED]))
        more = ", ..." if len(missing) > MAX_MISSING_LISTED else ""
        return _fail(
            ledger, job_id, f"missing frames for {len(missing)} of {units} units: {listed}{more}"
        )

    video = poster = None
    tmp = Path(tempfile.mkdtemp(prefix=f"povstorm-stitch-{job_id}-"))
    try:
        if spec.output.video:
            frames = tmp / "frames"
            frames.mkdir()

            def get(unit: int) -> None:
                clients.blobs.download_to(frame_object(job_id, unit), frames / f"{unit:06d}.png")

            with cf.ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
                list(pool.map(get, range(units)))
            ext = container_for(spec.output)
            dest = tmp / f"video.{ext}"
            try:
                encode(spec.output, frames / "%06d.png", dest)
            except StitchFailed as exc:
                return _fail(ledger, job_id, str(exc))
            video = video_object(job_id, ext)
            clients.blobs.upload_file(video, dest, content_type=CONTENT_TYPES[ext])
            poster = poster_object(job_id)
            clients.blobs.upload_file(
                poster, frames / f"{units // 2:06d}.png", content_type="image/png"
            )

        stats = summarise(
            ledger.unit_records(job_id), job.get("created_at"), dt.datetime.now(dt.UTC)
        )
        stats["stitch_seconds"] = round(time.monotonic() - started, 3)
        stats["video"] = video
        stats["poster"] = poster
        stats_name = stats_object(job_id)
        clients.blobs.upload_bytes(
            stats_name,
            json.dumps({"job_id": job_id, **stats}, indent=2).encode(),
            content_type="application/json",
        )
        recorded = ledger.finish_stitch(
            job_id, video=video, poster=poster, stats=stats, stats_object=stats_name
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not recorded:
        return StitchOutcome(
            "duplicate", job_id, "another stitch recorded the result first", video, poster, stats
        )
    return StitchOutcome(
        "done", job_id, video or "no video (units are not frames)", video, poster, stats
    )


def _fail(ledger: Ledger, job_id: str, error: str) -> StitchOutcome:
    if not ledger.fail_stitch(job_id, error):
        error += " (not recorded: the job was already settled)"
    return StitchOutcome("failed", job_id, error)
