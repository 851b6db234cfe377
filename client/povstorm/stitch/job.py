"""The stitch: every frame of a finished job into one video, a poster and stats.

Where it sits in the event flow: the ledger claims the stitch when the last
unit lands (job state ``stitching``) and launches ``povstorm.shells.stitch_job``
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
import enum
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from povstorm.cloud.clients import Clients
from povstorm.core.errors import StitchFailed, UnknownJob
from povstorm.core.model import JobState
from povstorm.core.naming import (
    check_job_id,
    frame_object,
    frames_prefix,
    poster_object,
    stats_object,
    video_object,
)
from povstorm.core.spec import container_for
from povstorm.stitch.encode import CONTENT_TYPES, encode

if TYPE_CHECKING:
    from povstorm.ledger.ledger import Ledger

FFMPEG = "ffmpeg"
DOWNLOAD_THREADS = 8
SLOWEST = 5
MAX_MISSING_LISTED = 20


class StitchStatus(enum.StrEnum):
    """What a stitch run did; its log line prints the value."""

    DONE = "done"  # this run recorded the result
    DUPLICATE = "duplicate"  # another run recorded the result first
    SKIPPED = "skipped"  # the job is not stitching: nothing to do
    FAILED = "failed"  # the stitch cannot succeed (recorded with fail_stitch)


@dataclass(frozen=True)
class StitchOutcome:
    status: StitchStatus
    job_id: str
    detail: str = ""
    video: str | None = None
    poster: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.status == StitchStatus.FAILED else 0

    def line(self) -> str:
        return f"stitch {self.job_id}: {self.status}" + (f": {self.detail}" if self.detail else "")


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
    state = JobState(job["state"])
    if state != JobState.STITCHING:
        return StitchOutcome(StitchStatus.SKIPPED, job_id, f"job is {state}, not stitching")
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
            StitchStatus.DUPLICATE,
            job_id,
            "another stitch recorded the result first",
            video,
            poster,
            stats,
        )
    return StitchOutcome(
        StitchStatus.DONE, job_id, video or "no video (units are not frames)", video, poster, stats
    )


def _fail(ledger: Ledger, job_id: str, error: str) -> StitchOutcome:
    if not ledger.fail_stitch(job_id, error):
        error += " (not recorded: the job was already settled)"
    return StitchOutcome(StitchStatus.FAILED, job_id, error)
