"""Object and job naming: the one place that builds and parses bucket paths.

inputs/<sha256>                          content-addressed input files
jobs/<job>/job.json                      the job as submitted (spec, plan, time): what
                                         rebuilds its ledger entry if the ledger loses it
jobs/<job>/cancelled                     written once the ledger cancelled the job: a
                                         rebuilt or restored job is cancelled again
frames/<job>/<unit:06d>.png              one per done unit (finalize -> ledger)
logs/<job>/<unit:06d>/attempt-<k>.log    POV-Ray's output for each attempt
segments/<job>/<first:06d>-<last:06d>.<ext>
                                         units first..last as one video segment, encoded by
                                         the worker that rendered them (<ext>: stitch.segments.
                                         segment_ext); the stitch joins them, the ledger never
                                         counts them
videos/<job>/video.<ext>                 the stitch's video (<ext>: core.spec.container_for)
videos/<job>/video-<codec>-<fps>fps-crf<crf>.<ext>
                                         another video of a done job, made again from its
                                         frames (``povstorm stitch``); its key in the job's
                                         ``videos`` map is ``video_key``'s
videos/<job>/poster.png, stats.json      the stitch's poster frame and statistics
cache/<key>.png                          a frame rendered before, by the hash of everything
                                         that decides its pixels (core.framekey): a job's
                                         frame with that key is a copy of it

Every prefix but inputs/ and cache/ holds one job's objects under <job>/
(``job_prefixes``): what ``povstorm rm`` lists and deletes. Inputs are
shared by content and the cache by every job.
"""

from __future__ import annotations

import datetime as _dt
import posixpath
import re
import secrets

from povstorm.core.errors import PoisonMessage, SpecError
from povstorm.core.names import PREFIXES
from povstorm.core.spec import DEFAULT_FORMAT, OutputSpec, container_for

JOB_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FRAME_RE = re.compile(
    "^"
    + re.escape(PREFIXES["frames"])
    + r"(?P<job>[a-z0-9][a-z0-9-]{2,62})/(?P<unit>\d{6,9})\.png$"
)
_SEGMENT_RE = re.compile(
    "^"
    + re.escape(PREFIXES["segments"])
    + r"(?P<job>[a-z0-9][a-z0-9-]{2,62})/(?P<first>\d{6,9})-(?P<last>\d{6,9})\.[a-z0-9]{1,8}$"
)
_MANIFEST_RE = re.compile(
    "^" + re.escape(PREFIXES["jobs"]) + r"(?P<job>[a-z0-9][a-z0-9-]{2,62})/job\.json$"
)
_RESULT_RE = re.compile(
    "^"
    + re.escape(PREFIXES["videos"])
    + r"(?P<job>[a-z0-9][a-z0-9-]{2,62})/"
    + r"(?:poster\.png|contact\.png|video(?:-[a-z0-9-]+)?\.[a-z0-9]{1,8})$"
)
_CACHE_RE = re.compile("^" + re.escape(PREFIXES["cache"]) + r"(?P<key>[0-9a-f]{64})\.png$")
_EXT_RE = re.compile(r"^[a-z0-9]{1,8}$")
_VIDEO_KEY_RE = re.compile(
    r"^(?P<settings>(?P<codec>[a-z0-9]{1,16})-(?P<fps>\d{1,3})fps-crf(?P<crf>\d{1,2}))"
    r"-(?P<ext>[a-z0-9]{1,8})$"
)
MAX_PATH_LEN = 255


def new_job_id(now: _dt.datetime | None = None) -> str:
    """Sortable and readable: 20261123-084512-3fa9c1."""
    now = now or _dt.datetime.now(_dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise SpecError(f"invalid job id {job_id!r}: use 3-63 of a-z, 0-9 and '-'")
    return job_id


def check_relpath(path: str, what: str = "resource name") -> str:
    """A relative POSIX path that stays inside the working directory."""
    if not isinstance(path, str) or not path:
        raise SpecError(f"empty {what}")
    if len(path) > MAX_PATH_LEN:
        raise SpecError(f"{what} {path[:40]!r}... is longer than {MAX_PATH_LEN} characters")
    if "\x00" in path or "\\" in path:
        raise SpecError(f"{what} {path!r} has a NUL or backslash")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise SpecError(f"{what} {path!r} is absolute; give a path relative to the scene")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or posixpath.normpath(path) != path:
        raise SpecError(f"{what} {path!r} leaves its directory or is not normalised")
    return path


def cache_object(key: str) -> str:
    """The cached frame of a frame key (``core.framekey.frame_key``)."""
    if not SHA256_RE.match(key):
        raise SpecError(f"invalid frame key {key!r}")
    return f"{PREFIXES['cache']}{key}.png"


def cache_prefix() -> str:
    return PREFIXES["cache"]


def parse_cache_object(name: str) -> str | None:
    """The frame key of a cache object, or None for another name."""
    m = _CACHE_RE.match(name)
    return m["key"] if m else None


def input_object(sha256: str) -> str:
    if not SHA256_RE.match(sha256):
        raise SpecError(f"invalid sha256 {sha256!r}")
    return f"{PREFIXES['inputs']}{sha256}"


def manifest_object(job_id: str) -> str:
    return f"{PREFIXES['jobs']}{job_id}/job.json"


def cancel_marker(job_id: str) -> str:
    return f"{PREFIXES['jobs']}{job_id}/cancelled"


def manifests_prefix() -> str:
    return PREFIXES["jobs"]


def parse_manifest_object(name: str) -> str:
    """The job of a manifest object; a PoisonMessage for anything else."""
    m = _MANIFEST_RE.match(name or "")
    if not m:
        raise PoisonMessage(f"not a job manifest: {name!r}")
    return m["job"]


def frame_object(job_id: str, unit: int) -> str:
    return f"{PREFIXES['frames']}{job_id}/{unit:06d}.png"


def frames_prefix(job_id: str) -> str:
    return f"{PREFIXES['frames']}{job_id}/"


def segment_object(job_id: str, first_unit: int, last_unit: int, ext: str) -> str:
    """The segment of units ``first_unit..last_unit`` (both included) of a job."""
    if not 0 <= first_unit <= last_unit:
        raise SpecError(f"invalid segment range {first_unit}-{last_unit}")
    if not _EXT_RE.match(ext):
        raise SpecError(f"invalid segment extension {ext!r}")
    return f"{PREFIXES['segments']}{job_id}/{first_unit:06d}-{last_unit:06d}.{ext}"


def segments_prefix(job_id: str) -> str:
    return f"{PREFIXES['segments']}{job_id}/"


def log_object(job_id: str, unit: int, attempt: int) -> str:
    return f"{PREFIXES['logs']}{job_id}/{unit:06d}/attempt-{attempt}.log"


def video_object(job_id: str, ext: str = DEFAULT_FORMAT) -> str:
    return f"{PREFIXES['videos']}{job_id}/video.{ext}"


def poster_object(job_id: str) -> str:
    return f"{PREFIXES['videos']}{job_id}/poster.png"


def sheet_object(job_id: str) -> str:
    """The contact sheet the stitch makes beside the poster."""
    return f"{PREFIXES['videos']}{job_id}/contact.png"


def radiosity_object(job_id: str) -> str:
    """The radiosity samples a pre-pass job wrote (client/prepass.py), with
    their sha256 in the object's metadata."""
    return f"{PREFIXES['videos']}{job_id}/radiosity.rca"


def stats_object(job_id: str) -> str:
    return f"{PREFIXES['videos']}{job_id}/stats.json"


def video_key(output: OutputSpec) -> str:
    """The key of a job's re-stitched video with these settings (its entry in
    the job's ``videos`` map, the stitch's ``--video`` argument): one video
    per settings, so asking again for the same one makes nothing new."""
    return f"{output.codec}-{output.fps}fps-crf{output.crf}-{container_for(output)}"


def _video_key_match(key: str) -> re.Match[str]:
    m = _VIDEO_KEY_RE.match(key) if isinstance(key, str) else None
    if not m:
        raise SpecError(f"invalid video key {key!r}")
    return m


def check_video_key(key: str) -> str:
    _video_key_match(key)
    return key


def restitch_object(job_id: str, key: str) -> str:
    """The object of the re-stitched video ``key`` (``video_key``) of a job."""
    m = _video_key_match(key)
    return f"{PREFIXES['videos']}{job_id}/video-{m['settings']}.{m['ext']}"


def job_prefixes(job_id: str) -> dict[str, str]:
    """The prefix of each kind of object that belongs to this job alone, by
    kind: its manifest and cancel marker, frames, logs, segments, and its
    videos (the video, the videos made again, the poster and stats.json)."""
    check_job_id(job_id)
    return {
        "manifest": f"{PREFIXES['jobs']}{job_id}/",
        "frames": frames_prefix(job_id),
        "logs": f"{PREFIXES['logs']}{job_id}/",
        "segments": segments_prefix(job_id),
        "videos": f"{PREFIXES['videos']}{job_id}/",
    }


def is_result_object(job_id: str, name: str) -> bool:
    """Whether ``name`` is what ``fetch`` gives as the job's result, and
    ``rm --keep-video`` keeps: its video, a video made again from its
    frames, its poster or its contact sheet (not stats.json: ``fetch``
    writes the ledger's stats)."""
    m = _RESULT_RE.match(name or "")
    return bool(m and m["job"] == job_id)


def parse_frame_object(name: str) -> tuple[str, int]:
    """(job, unit) of a frame object; a PoisonMessage for anything else."""
    m = _FRAME_RE.match(name or "")
    if not m:
        raise PoisonMessage(f"not a frame object: {name!r}")
    return m["job"], int(m["unit"])


def parse_segment_object(name: str) -> tuple[str, int, int]:
    """(job, first unit, last unit) of a segment object; a PoisonMessage for
    anything else, a reversed range included."""
    m = _SEGMENT_RE.match(name or "")
    if not m or int(m["first"]) > int(m["last"]):
        raise PoisonMessage(f"not a segment object: {name!r}")
    return m["job"], int(m["first"]), int(m["last"])
