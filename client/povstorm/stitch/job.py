"""The stitch: a finished job's segments and frames into one video, a poster and stats.

Where it sits in the event flow: the ledger claims the stitch when the last
unit lands (job state ``stitching``) and launches ``povstorm.shells.stitch_job``
(a Cloud Run Job execution, locally a process); it runs this, which records
exactly one result with ``ledger.finish_stitch`` or ``ledger.fail_stitch``,
and the run that records it announces the job's end on ``job_events``.

How the video is made (``povstorm.stitch.segments`` says why it is exact):
when the codec joins exactly (not gif) and the render workers uploaded
segments (``segments/<job>/``), the stitch covers units 0..units-1 with them,
encodes what they do not cover from its frames (a gap), and joins the pieces
without re-encoding; it downloads only the segments, the gaps' frames and the
poster frame. Otherwise, or if the join fails (a segment ffmpeg cannot read),
it downloads every frame and encodes the video in one pass. A frame it needs
that is missing fails the stitch with the missing units listed. A still has
no video: its image (its one frame, or its bands merged by ``stitch/still.py``)
is its poster. Beside the poster, once the job is done, a contact sheet
(``contact.png``): at most 64 frames sampled evenly, each labelled with its
frame number, named by the job's ``sheet``; a sheet that cannot be made is
logged and left out.

Idempotent, because a launch can be repeated (the reconciler relaunches a
stitch that never finished, and run_job has no idempotency key): a job not in
``stitching`` is left alone, the output names are fixed by the job id, nothing
is written but the outputs, and the ledger keeps only the first recorded result.
A stitch whose outputs are already in the bucket for the same frames (its
stats name them by ``frames_digest``: a job the ledger lost after its video
was made, and rebuilt) records them and encodes nothing.

``restitch`` makes another video of a done job (``povstorm stitch JOB``):
the settings of an entry of the job's ``videos`` map, recorded by
``ledger.request_video``, into ``core.naming.restitch_object``; it renders
nothing and writes neither the job's state, its video, poster and stats nor
its units: only that entry, with ``ledger.finish_video``. The same video
code: the workers' segments are joined when they were encoded with the new
settings (same codec, fps and crf; any container), else every frame is
encoded. Idempotent too: an entry already done is left alone.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import enum
import hashlib
import json
import logging
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from povstorm.cloud.clients import Clients
from povstorm.cloud.pubsub import publish_job_event
from povstorm.core.chunks import frame_profile
from povstorm.core.errors import NotFound, PoisonMessage, PovstormError, StitchFailed, UnknownJob
from povstorm.core.model import JobEvent, JobState, VideoState
from povstorm.core.naming import (
    cache_object,
    check_job_id,
    frame_object,
    frames_prefix,
    parse_frame_object,
    parse_segment_object,
    poster_object,
    restitch_object,
    segments_prefix,
    sheet_object,
    stats_object,
    video_object,
)
from povstorm.core.spec import OutputSpec, container_for
from povstorm.core.tiles import Tiles
from povstorm.stitch import preview
from povstorm.stitch.encode import CONTENT_TYPES, encode
from povstorm.stitch.segments import cover, encode_segment, join_segments, segment_ext
from povstorm.stitch.still import merge

if TYPE_CHECKING:
    from povstorm.ledger.ledger import Ledger

log = logging.getLogger(__name__)

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
    """The job's stats: wall time, per-frame render times, CPU, memory, speed-up.
    Frames copied from the frame cache are counted apart (``frames_cached``)
    and left out of the render times: nothing rendered them."""
    cached = sum(1 for r in records if r.get("cached"))
    seconds = [float(r.get("render_seconds") or 0.0) for r in records if not r.get("cached")]
    total = sum(seconds)
    wall = (finished_at - created_at).total_seconds() if created_at else 0.0
    rendered = [r for r in records if not r.get("cached")]
    slowest = sorted(rendered, key=lambda r: float(r.get("render_seconds") or 0.0), reverse=True)
    return {
        "units": len(records),
        "frames_cached": cached,
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
        # Each frame's time, for the chunk plan of the next job of this scene.
        "frame_profile": {
            "units": len(records),
            "seconds": frame_profile(
                [float(r["render_seconds"]) if r.get("render_seconds") else None for r in records],
                [float(r["cpu_seconds"]) if r.get("cpu_seconds") else None for r in records],
            ),
        },
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
    kept = _made_before(clients, ledger, job_id, spec.output)
    if kept is not None:
        video, poster = kept.get("video"), kept.get("poster")
        recorded = ledger.finish_stitch(
            job_id, video=video, poster=poster, stats=kept, stats_object=stats_object(job_id)
        )
        if recorded:
            _announce(clients, job_id, JobState.DONE)
            if clients.blobs.exists(sheet_object(job_id)):
                ledger.note_sheet(job_id, sheet_object(job_id))
        status = StitchStatus.DONE if recorded else StitchStatus.DUPLICATE
        return StitchOutcome(
            status, job_id, "kept the video made before of the same frames", video, poster, kept
        )

    video = poster = None
    tmp = Path(tempfile.mkdtemp(prefix=f"povstorm-stitch-{job_id}-"))
    try:
        # The stats read every unit's record: one query, made while the video is.
        with cf.ThreadPoolExecutor(1) as background:
            records = background.submit(ledger.unit_records, job_id)
            made = _Video()
            scene = spec.povray
            if scene and not scene.animated and (scene.tiles or not spec.output.video):
                # A still: its image (its bands merged) is the job's poster.
                try:
                    image = _still(clients, job_id, scene.tiles, units, tmp)
                except StitchFailed as exc:
                    return _fail(clients, ledger, job_id, str(exc))
                poster = poster_object(job_id)
                clients.blobs.upload_file(poster, image, content_type="image/png")
            elif spec.output.video:
                try:
                    made = _make_video(
                        clients, job_id, spec.output, units, tmp, tiles=spec.frame_tiles
                    )
                except StitchFailed as exc:
                    return _fail(clients, ledger, job_id, str(exc))
                ext = container_for(spec.output)
                video = video_object(job_id, ext)
                clients.blobs.upload_file(video, made.path, content_type=CONTENT_TYPES[ext])
                poster = poster_object(job_id)
                clients.blobs.upload_file(poster, made.poster, content_type="image/png")

            stats = summarise(records.result(), job.get("created_at"), dt.datetime.now(dt.UTC))
        stats["frames_digest"] = frames_digest(records.result())
        stats["stitch_seconds"] = round(time.monotonic() - started, 3)
        stats["video"] = video
        # What the video weighs in the bucket: part of the job's cost (core/cost.py).
        stats["video_bytes"] = made.path.stat().st_size if video else 0
        stats["poster"] = poster
        stats["segments_joined"] = made.joined
        stats["segments_encoded"] = made.encoded
        stats_name = stats_object(job_id)
        clients.blobs.upload_bytes(
            stats_name,
            json.dumps({"job_id": job_id, **stats}, indent=2).encode(),
            content_type="application/json",
        )
        recorded = ledger.finish_stitch(
            job_id, video=video, poster=poster, stats=stats, stats_object=stats_name
        )
        if not recorded:
            return StitchOutcome(
                StitchStatus.DUPLICATE,
                job_id,
                "another stitch recorded the result first",
                video,
                poster,
                stats,
            )
        _announce(clients, job_id, JobState.DONE)
        # Then, at once, what the video does not wait for, so it costs it no
        # time: the contact sheet (the job's ``sheet`` says when it is there)
        # and the rendered frames into the frame cache (``cache_filled``).
        with cf.ThreadPoolExecutor(1) as background:
            filled = background.submit(store_frames, clients, job_id)
            if spec.output.video and (
                sheet := _contact_sheet(clients, job_id, records.result(), tmp, made.merged)
            ):
                ledger.note_sheet(job_id, sheet)
            ledger.note_cache_filled(job_id, filled.result())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return StitchOutcome(
        StitchStatus.DONE, job_id, video or "no video (units are not frames)", video, poster, stats
    )


def restitch(clients: Clients, ledger: Ledger, job_id: str, key: str) -> StitchOutcome:
    """Make the video ``key`` of a done job's ``videos`` map from its frames,
    once. UnknownJob / SpecError for a bad id or key, TransientError for an
    outage (the user asks again, which launches it again)."""
    check_job_id(job_id)
    name = restitch_object(job_id, key)
    job = ledger.get_job(job_id)
    if job is None:
        raise UnknownJob(job_id)
    entry = (job.get("videos") or {}).get(key)
    if entry is None:
        return StitchOutcome(StitchStatus.SKIPPED, job_id, f"no video {key} was asked for")
    if VideoState(entry["state"]) != VideoState.REQUESTED:
        return StitchOutcome(StitchStatus.DUPLICATE, job_id, f"video {key} is {entry['state']}")
    spec = ledger.get_spec(job_id)
    own = spec.output
    output = OutputSpec(
        fps=int(entry["fps"]), codec=entry["codec"], crf=int(entry["crf"]), format=entry["format"]
    )
    # The workers' segments hold the job's own encode: joined only if that is this one.
    joins = (own.codec, own.fps, own.crf) == (output.codec, output.fps, output.crf)
    tmp = Path(tempfile.mkdtemp(prefix=f"povstorm-restitch-{job_id}-"))
    try:
        try:
            made = _make_video(
                clients,
                job_id,
                output,
                int(job["units_expected"]),
                tmp,
                join=joins and own.video,
                tiles=spec.frame_tiles,
            )
        except StitchFailed as exc:
            if not ledger.finish_video(job_id, key, error=str(exc)):
                return StitchOutcome(StitchStatus.DUPLICATE, job_id, f"video {key} was settled")
            return StitchOutcome(StitchStatus.FAILED, job_id, f"video {key}: {exc}")
        ext = container_for(output)
        clients.blobs.upload_file(name, made.path, content_type=CONTENT_TYPES[ext])
    except PovstormError as exc:
        # An outage: recorded if the ledger answers, so that the client waiting
        # for the video stops; asking again launches it again.
        with contextlib.suppress(PovstormError):
            ledger.finish_video(job_id, key, error=f"{exc} (ask again to retry)")
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not ledger.finish_video(job_id, key):
        return StitchOutcome(StitchStatus.DUPLICATE, job_id, f"video {key} was recorded first")
    how = f"{made.joined} segments joined" if made.joined else "every frame encoded"
    return StitchOutcome(StitchStatus.DONE, job_id, f"{name} ({how})", video=name)


def store_frames(clients: Clients, job_id: str) -> int:
    """Copy each rendered frame of the job that carries a frame cache key
    (its metadata's ``cache_key``, core/framekey.py) to ``cache/<key>.png``;
    how many were stored. Frames reused from the cache are there already.
    One listing of the job's frames, then the copies, server-side, in
    parallel; never raises (a frame not stored is rendered again later)."""
    try:
        found = [
            (b.name, b.metadata)
            for b in clients.blobs.list(frames_prefix(job_id))
            if b.metadata.get("cache_key") and not b.metadata.get("cached")
        ]
    except PovstormError as exc:
        log.warning("%s: frames not stored in the frame cache: %s", job_id, exc)
        return 0

    def store(item: tuple[str, dict[str, str]]) -> bool:
        name, md = item
        try:
            clients.blobs.copy(
                name,
                cache_object(md["cache_key"]),
                content_type="image/png",
                metadata={"job": job_id, "render_seconds": md.get("render_seconds", "")},
            )
        except PovstormError as exc:
            log.warning("%s: %s not stored in the frame cache: %s", job_id, name, exc)
            return False
        return True

    if not found:
        return 0
    with cf.ThreadPoolExecutor(min(DOWNLOAD_THREADS, len(found))) as pool:
        return sum(pool.map(store, found))


def frames_digest(records: list[dict[str, Any]]) -> str:
    """Which frames a video was made of: its done units and the generations
    of their frame objects."""
    done = sorted(
        (int(r["unit"]), int(r.get("generation") or 0)) for r in records if r.get("state") == "done"
    )
    return hashlib.sha256(json.dumps(done).encode()).hexdigest()


def _made_before(
    clients: Clients, ledger: Ledger, job_id: str, output: OutputSpec
) -> dict[str, Any] | None:
    """The stats of this job's outputs if the bucket holds them, made of the
    frames the ledger has counted now; None otherwise (one read of a missing
    object on every first stitch)."""
    try:
        kept = json.loads(clients.blobs.read_bytes(stats_object(job_id)))
    except (NotFound, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("frames_digest") != frames_digest(
        ledger.unit_records(job_id)
    ):
        return None
    video = kept.get("video")
    if output.video and not (video and clients.blobs.exists(video)):
        return None
    kept.pop("job_id", None)
    return kept


@dataclass(frozen=True)
class _Video:
    """A made video: its file, the poster frame's, and how many segments of
    the workers it joined and of its own it encoded (0 and 0: one full encode)."""

    path: Path = Path()
    poster: Path = Path()
    joined: int = 0
    encoded: int = 0
    # A tiled animation's merged frames (by frame index) and its bands per frame.
    merged: tuple[Path, int] | None = None


class _JoinFailed(Exception):
    """The segments did not join: the stitch encodes every frame instead."""


def _make_video(
    clients: Clients,
    job_id: str,
    output: OutputSpec,
    units: int,
    tmp: Path,
    *,
    join: bool = True,
    tiles: Tiles | None = None,
) -> _Video:
    """The job's video, joined from segments where it can be (``join``: the
    segments were encoded as ``output`` wants), else encoded from every frame
    (a tiled animation's: each frame's bands merged first, ``tiles``).
    StitchFailed when it cannot be made."""
    if tiles is not None:
        return _encoded(clients, job_id, output, units, tmp / "encode", tiles)
    ext = segment_ext(output) if join else None
    if ext is not None:
        names: dict[tuple[int, int], str] = {}
        for blob in clients.blobs.list(segments_prefix(job_id)):
            try:
                job, first, last = parse_segment_object(blob.name)
            except PoisonMessage:
                continue
            if job == job_id and blob.name.endswith(f".{ext}"):
                names[first, last] = blob.name
        pieces = cover(names, units)
        if any(used for _, _, used in pieces):
            try:
                return _joined(clients, job_id, output, units, pieces, names, tmp / "join")
            except _JoinFailed as exc:
                log.warning("stitch %s: %s; encoding every frame instead", job_id, exc)
    return _encoded(clients, job_id, output, units, tmp / "encode")


def _contact_sheet(
    clients: Clients,
    job_id: str,
    records: list[dict[str, Any]],
    tmp: Path,
    merged: tuple[Path, int] | None = None,
) -> str | None:
    """The job's contact sheet, uploaded beside its poster: at most
    SHEET_FRAMES frames sampled evenly, labelled with their frame numbers;
    its object name, or None (logged) if it cannot be made. ``merged``: a
    tiled animation's frames as the encode merged them, and its bands per
    frame (each frame's first band's record stands for it)."""
    units = sorted(records, key=lambda r: int(r["unit"]))
    if merged is not None:
        units = [r for r in units if int(r["unit"]) % merged[1] == 0]
    picked = [units[i] for i in preview.sample(len(units), preview.SHEET_FRAMES)]
    if not picked:
        return None
    work = tmp / "sheet"
    work.mkdir(parents=True)
    paths = {
        frame_object(job_id, int(r["unit"])): work / f"{int(r['unit']):06d}.png" for r in picked
    }
    if merged is not None:
        folder, per = merged
        paths = {
            name: folder / f"{int(r['unit']) // per:06d}.png"
            for name, r in zip(paths, picked, strict=True)
        }
    try:
        if merged is None and (absent := _download(clients, paths)):
            raise StitchFailed(f"{len(absent)} frames are missing, {sorted(absent)[0]} first")
        dest = preview.contact_sheet(
            list(paths.values()),
            work / "contact.png",
            labels=[str(r.get("frame", r["unit"])) for r in picked],
        )
        name = sheet_object(job_id)
        clients.blobs.upload_file(name, dest, content_type="image/png")
    except (StitchFailed, OSError) as exc:
        log.warning("stitch %s: no contact sheet: %s", job_id, exc)
        return None
    return name


def _still(clients: Clients, job_id: str, tiles: Tiles | None, units: int, tmp: Path) -> Path:
    """A still's image: its one frame, or its bands merged (stitch/still.py)
    into the PNG ``povray`` would have written. StitchFailed for a missing
    band, or bands that do not merge (not the renders of their rows)."""
    parts = {frame_object(job_id, u): tmp / f"part-{u:06d}.png" for u in range(units)}
    if absent := _download(clients, parts):
        raise _missing(units, sorted(parse_frame_object(n)[1] for n in absent))
    if tiles is None:
        return next(iter(parts.values()))
    try:
        return merge(list(parts.values()), tiles.bands, tmp / "still.png")
    except ValueError as exc:
        raise StitchFailed(f"the tiles do not merge: {exc}") from None


def _download(clients: Clients, wanted: dict[str, Path]) -> set[str]:
    """Download every object, several at once; the names of those not there."""

    def get(item: tuple[str, Path]) -> str | None:
        name, path = item
        try:
            clients.blobs.download_to(name, path)
        except NotFound:
            return name
        return None

    with cf.ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        return {name for name in pool.map(get, wanted.items()) if name}


def _missing(units: int, missing: list[int]) -> StitchFailed:
    listed = ", ".join(map(str, missing[:MAX_MISSING_LISTED]))
    more = ", ..." if len(missing) > MAX_MISSING_LISTED else ""
    return StitchFailed(f"missing frames for {len(missing)} of {units} units: {listed}{more}")


def _joined(
    clients: Clients,
    job_id: str,
    output: OutputSpec,
    units: int,
    pieces: list[tuple[int, int, bool]],
    names: dict[tuple[int, int], str],
    work: Path,
) -> _Video:
    """Join the workers' segments and the gaps between them, encoded here
    from their frames: no work per frame beyond the gaps'."""
    frames, segments = work / "frames", work / "segments"
    frames.mkdir(parents=True)
    segments.mkdir()
    wanted = {units // 2} | {
        u for first, last, used in pieces if not used for u in range(first, last + 1)
    }
    frame_names = {frame_object(job_id, u): frames / f"{u:06d}.png" for u in sorted(wanted)}
    paths = [
        segments / f"{first:06d}-{last:06d}.{segment_ext(output)}" for first, last, _ in pieces
    ]
    worker_segments = {
        names[first, last]: path
        for (first, last, used), path in zip(pieces, paths, strict=True)
        if used
    }
    absent = _download(clients, frame_names | worker_segments)
    missing = sorted(u for u in wanted if frame_object(job_id, u) in absent)
    if missing:
        raise _missing(units, missing)
    if absent:
        raise _JoinFailed(f"{len(absent)} segments went away: {min(absent)}")
    encoded = 0
    for (first, last, used), path in zip(pieces, paths, strict=True):
        if not used:
            encode_segment(output, [frames / f"{u:06d}.png" for u in range(first, last + 1)], path)
            encoded += 1
    dest = work / f"video.{container_for(output)}"
    try:
        join_segments(output, paths, dest, [last - first + 1 for first, last, _ in pieces])
    except StitchFailed as exc:
        raise _JoinFailed(str(exc)) from exc
    return _Video(dest, frames / f"{units // 2:06d}.png", len(pieces) - encoded, encoded)


def _encoded(
    clients: Clients,
    job_id: str,
    output: OutputSpec,
    units: int,
    work: Path,
    tiles: Tiles | None = None,
) -> _Video:
    """Every frame in one encode, as ffmpeg reads a numbered sequence; a
    tiled animation's frames are its bands merged, frame by frame."""
    # One listing instead of one request per frame.
    present = {b.name for b in clients.blobs.list(frames_prefix(job_id))}
    missing = [u for u in range(units) if frame_object(job_id, u) not in present]
    if missing:
        raise _missing(units, missing)
    parts = frames = work / "frames"
    if tiles is not None:
        parts = work / "parts"
        frames.mkdir(parents=True)
    parts.mkdir(parents=True, exist_ok=True)
    absent = _download(
        clients, {frame_object(job_id, u): parts / f"{u:06d}.png" for u in range(units)}
    )
    if absent:
        raise _missing(units, sorted(parse_frame_object(n)[1] for n in absent))
    count = units
    if tiles is not None:
        count = merge_frames(parts, tiles, units, frames)
    dest = work / f"video.{container_for(output)}"
    encode(output, frames / "%06d.png", dest)
    merged = (frames, len(tiles.bands)) if tiles else None
    return _Video(dest, frames / f"{count // 2:06d}.png", merged=merged)


def merge_frames(parts: Path, tiles: Tiles, units: int, dest: Path) -> int:
    """A tiled animation's frames (``dest/<frame index>.png``) from its
    units' images (``parts/<unit>.png``, a frame's bands one after another);
    how many frames. StitchFailed when a frame's bands do not merge."""
    per = len(tiles.bands)
    for index in range(units // per):
        bands = [parts / f"{index * per + b:06d}.png" for b in range(per)]
        try:
            merge(bands, tiles.bands, dest / f"{index:06d}.png")
        except ValueError as exc:
            raise StitchFailed(f"the tiles of frame index {index} do not merge: {exc}") from None
    return units // per


def _announce(clients: Clients, job_id: str, state: JobState) -> None:
    """This run ended the job: said on ``job_events`` at once (before the
    frame cache is filled, which may take a while)."""
    publish_job_event(clients.publisher, JobEvent(job_id, state, JobState.STITCHING))


def _fail(clients: Clients, ledger: Ledger, job_id: str, error: str) -> StitchOutcome:
    if ledger.fail_stitch(job_id, error):
        _announce(clients, job_id, JobState.FAILED)
    else:
        error += " (not recorded: the job was already settled)"
    return StitchOutcome(StitchStatus.FAILED, job_id, error)
