"""The Cluster: where jobs run (the local stack or a terraform deployment),
and what a client does with a job once it exists: submit its spec to the
submit function, watch it through Firestore listeners, cancel, retry, read
its logs, fetch its video, frames and stats (``JobResult``) and remove it
(``remove``, ``gc``: farm/cleanup.py).

Inputs are content-addressed: each file is uploaded once under its sha256
and a job names it by hash, so a second job with the same textures uploads
nothing. The spec goes to the submit function over HTTP, the same path on
the local stack and in the cloud.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from povstorm.client import stacks
from povstorm.client.watch import JobWatcher, Progress, watch
from povstorm.cloud.blobs import BlobStore
from povstorm.cloud.clients import Clients
from povstorm.core import cost
from povstorm.core.digest import sha256_bytes, sha256_file
from povstorm.core.errors import (
    NotFound,
    SpecError,
    StackError,
    StitchFailed,
    TransientError,
    UserError,
)
from povstorm.core.model import JobState, UnitState, VideoState
from povstorm.core.naming import (
    check_relpath,
    frame_object,
    input_object,
    log_object,
    new_job_id,
    poster_object,
)
from povstorm.core.schemas import dump_job_spec
from povstorm.core.settings import EMULATOR_VARS, Settings
from povstorm.core.spec import (
    JobSpec,
    container_for,
)
from povstorm.farm import cache as frame_cache
from povstorm.farm import cleanup
from povstorm.farm import operations as farm
from povstorm.ledger.ledger import Ledger, now
from povstorm.stitch import preview
from povstorm.stitch.still import merge

if TYPE_CHECKING:
    from povstorm.client.sweep import SweepResult
    from povstorm.core.tiles import Tiles

UPLOAD_THREADS = 8
RESTITCH_TIMEOUT = 3600.0  # how long ``restitch`` waits for the farm's stitch by default
RESTITCH_POLL = 0.25
WATCHDOG_EVERY = 2.0
PREVIEW_FRAMES = 240  # the most frames ``preview`` puts in its video (and downloads for it)


@dataclass
class Cluster:
    """Where jobs run: the local emulator stack or a terraform deployment."""

    settings: Settings
    clients: Clients
    auth: Any = None  # a requests auth for the submit function (ID token in the cloud)
    _stop: Callable[[], object] | None = None  # stops a stack this cluster started
    # Says what of the local stack stopped ("" while it runs): a watch ends on it.
    _watchdog: Callable[[], str] | None = None

    @classmethod
    def local(
        cls, home: Path | None = None, start: bool = True, workers: int | None = None
    ) -> Cluster:
        """The local stack; started (and stopped again by ``close``) if it is not
        running. The stack is a plugin (``povstorm.client.stacks``): this
        package never imports it."""
        plugin = stacks.require("local")
        settings, stop = plugin.connect(home, start=start, workers=workers)
        return cls(
            settings=settings,
            clients=Clients.from_settings(settings),
            _stop=stop,
            _watchdog=plugin.watchdog(home, settings),
        )

    @classmethod
    def from_terraform(cls, outputs: str | Path | Mapping[str, Any]) -> Cluster:
        """A deployment, from the JSON its terraform wrote (povstorm-outputs.json,
        or ``terraform output -json``)."""
        if isinstance(outputs, Mapping):
            raw: Mapping[str, Any] = outputs
        else:
            path = Path(outputs)
            try:
                raw = json.loads(path.read_text())
            except FileNotFoundError:
                raise UserError(f"no terraform outputs at {path}") from None
            except ValueError as exc:
                raise UserError(f"{path} is not JSON: {exc}") from None
        values = {
            k: (v["value"] if isinstance(v, Mapping) and "value" in v else v)
            for k, v in raw.items()
        }
        missing = [k for k in ("project", "bucket", "submit_url") if not values.get(k)]
        if missing:
            raise UserError(f"terraform outputs lack {', '.join(missing)}")
        # The client libraries read these variables themselves and would send
        # a cloud cluster's calls to an emulator; say so rather than unset them.
        stray = [var for var in EMULATOR_VARS if os.environ.get(var)]
        if stray:
            raise UserError(
                f"{', '.join(stray)} set in the environment would point the clients at "
                "an emulator: unset it to use a cloud cluster"
            )
        settings = Settings.from_env().with_overrides(
            project=values["project"],
            bucket=values["bucket"],
            submit_url=values["submit_url"],
            region=values.get("region"),
            namespace=values.get("namespace"),
            stitch_launcher="cloud-run",
            stitch_job=values.get("stitch_job"),
            # retry launches render tasks for the requeued frames, as submit does
            render_launcher="cloud-run",
            render_job=values.get("render_job"),
            render_slots=int(values["render_slots"]) if values.get("render_slots") else None,
        )
        from povstorm.cloud.auth import IdTokenAuth

        return cls(
            settings=settings,
            clients=Clients.from_settings(settings),
            auth=IdTokenAuth(values["submit_url"]),
        )

    def close(self) -> None:
        if self._stop:
            self._stop()
            self._stop = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.clients.db)

    @property
    def blobs(self) -> BlobStore:
        return self.clients.blobs

    # --- inputs and submission -----------------------------------------------------

    def upload_inputs(self, files: Mapping[str, Path | bytes]) -> dict[str, str]:
        """Upload each file once under its sha256; returns relative path -> sha256."""
        manifest: dict[str, str] = {}
        content: dict[str, Path | bytes] = {}
        for rel, src in files.items():
            check_relpath(rel, "input name")
            digest = sha256_bytes(src) if isinstance(src, bytes) else sha256_file(Path(src))
            manifest[rel] = digest
            content.setdefault(digest, src)

        def upload(item: tuple[str, Path | bytes]) -> None:
            digest, src = item
            name = input_object(digest)
            if self.blobs.exists(name):
                return
            if isinstance(src, bytes):
                self.blobs.upload_bytes(name, src)
            else:
                self.blobs.upload_file(name, Path(src))

        with cf.ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            list(pool.map(upload, content.items()))
        return manifest

    def submit(self, spec: JobSpec | Mapping[str, Any]) -> str:
        """POST a spec to the submit function; returns the job id."""
        body = dump_job_spec(spec) if isinstance(spec, JobSpec) else dict(spec)
        body.setdefault("job_id", new_job_id())
        if not self.settings.submit_url:
            raise StackError("no submit URL configured")
        for attempt in range(5):
            try:
                reply = requests.post(
                    self.settings.submit_url, json=body, auth=self.auth, timeout=300
                )
            except requests.RequestException as exc:
                if attempt == 4:
                    raise TransientError(
                        f"submit unreachable at {self.settings.submit_url}: {exc}"
                    ) from exc
                continue
            if reply.status_code < 300:
                return str(reply.json()["job_id"])
            message = _error_of(reply)
            if 400 <= reply.status_code < 500:
                raise SpecError(message)
            if attempt == 4:
                raise TransientError(f"submit failed ({reply.status_code}): {message}")
        raise TransientError("submit failed")  # unreachable: the loop returns or raises

    # --- jobs --------------------------------------------------------------------------

    def watch(
        self,
        job_id: str,
        on_progress: Callable[[Progress], None] | None = None,
        timeout: float | None = None,
    ) -> Progress:
        return watch(
            self.clients.db,
            job_id,
            on_progress=on_progress,
            timeout=timeout,
            watchdog=self._watchdog,
        )

    def watcher(self, job_id: str, poll_seconds: float = 5.0) -> JobWatcher:
        """The listeners ``watch`` follows, for a caller that follows the job
        its own way (the web view: past its end, nudged by its own listeners),
        with the local stack's watchdog."""
        return JobWatcher(self.clients.db, job_id, poll_seconds, watchdog=self._watchdog)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's document with its live counts and its ``cost`` (core/cost.py)."""
        return self.status_of(self.ledger.view(job_id))

    def status_of(self, view: Any) -> dict[str, Any]:
        """``status`` of a job already read: a ``ledger.view``, or a
        JobWatcher's ``view()`` (the web view, on each change it hears)."""
        return {
            **view.doc,
            "units_done": view.done,
            "units_failed": view.failed,
            "cost": self.cost_of(view),
        }

    def cost_of(self, view: Any, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A job's cost at Cloud Run list prices from its document and shards
        (read by ``ledger.view`` anyway); with the done units' ``records``,
        each frame's too. On the local stack (an emulated ledger) the figures
        are what the job would have cost on Cloud Run."""
        usage = cost.usage_of(view.doc, view.shards)
        local = bool(self.settings.endpoints.firestore)
        return cost.summary(view.doc, usage, local=local, records=records)

    def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        return self.ledger.list_jobs(limit)

    def cancel(self, job_id: str) -> str:
        return farm.cancel(self.clients, job_id)

    def retry(self, job_id: str) -> int:
        return farm.retry(self.clients, job_id)

    def remove(
        self,
        *job_ids: str,
        keep_video: bool = False,
        force: bool = False,
        dry_run: bool = False,
        on_removed: cleanup.OnRemoved | None = None,
    ) -> list[cleanup.Removal]:
        """Delete jobs whole, documents and objects (``povstorm rm``): inputs
        another job names stay, and with ``keep_video`` the videos and the
        poster. A job still active is refused unless ``force`` (cancelled
        first); an unknown one is UnknownJob; both before anything goes.
        ``on_removed`` hears of each job as soon as it is removed."""
        return cleanup.remove_jobs(
            self.clients,
            job_ids,
            keep_video=keep_video,
            force=force,
            dry_run=dry_run,
            on_removed=on_removed,
        )

    def gc(
        self,
        older_than: dt.timedelta,
        *,
        keep_video: bool = False,
        dry_run: bool = False,
        on_removed: cleanup.OnRemoved | None = None,
    ) -> list[cleanup.Removal]:
        """Delete every job that ended (done, failed or cancelled) longer ago
        than ``older_than``, and what Firestore's TTL left of expired jobs
        (``povstorm gc``), each as ``remove`` does."""
        return cleanup.collect_garbage(
            self.clients,
            older_than,
            keep_video=keep_video,
            dry_run=dry_run,
            on_removed=on_removed,
        )

    def cache_summary(self) -> frame_cache.CacheSummary:
        """What the deployment's frame cache holds (``povstorm cache ls``)."""
        return frame_cache.summary(frame_cache.entries(self.blobs))

    def clear_cache(
        self, *, older_than_days: float | None = None, max_bytes: int | None = None
    ) -> frame_cache.Removed:
        """Delete cached frames: all, or those older than ``older_than_days``,
        then the oldest past ``max_bytes`` (``povstorm cache clear``)."""
        return frame_cache.clear(self.blobs, older_than_days=older_than_days, max_bytes=max_bytes)

    def restitch(
        self,
        job_id: str,
        *,
        fps: int | None = None,
        codec: str | None = None,
        crf: int | None = None,
        format: str | None = None,
        out: Path | None = None,
        timeout: float | None = RESTITCH_TIMEOUT,
    ) -> Restitched:
        """Another video of a done job, made on the farm from its frames (or
        its segments, when they were encoded with these settings) with no
        render: settings not given are the job's own. Waits for the farm's
        stitch and, with ``out``, downloads the video there. The job keeps its
        video and every other; asking again for the same settings makes
        nothing new. UnknownJob / SpecError for bad input, StitchFailed if the
        stitch could not make it, TransientError if it is not made in time."""
        key, entry = farm.restitch(
            self.clients, job_id, fps=fps, codec=codec, crf=crf, format=format
        )
        deadline = None if timeout is None else time.monotonic() + timeout
        checked = time.monotonic()
        while entry.get("state") == VideoState.REQUESTED:
            if deadline is not None and time.monotonic() > deadline:
                raise TransientError(
                    f"video {key} of job {job_id} is not made after {timeout:.0f} s; "
                    f"`povstorm status {job_id}` shows it when it is"
                )
            if self._watchdog and time.monotonic() - checked > WATCHDOG_EVERY:
                checked = time.monotonic()
                stopped = self._watchdog()
                if stopped:
                    raise StackError(f"{stopped}: start it with `povstorm local up`")
            time.sleep(RESTITCH_POLL)
            entry = (self.ledger.require_job(job_id).get("videos") or {}).get(key) or entry
        if entry.get("state") != VideoState.DONE:
            raise StitchFailed(f"video {key} of job {job_id} failed: {entry.get('error')}")
        result = Restitched(job_id, key, str(entry["object"]))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.blobs.download_to(result.object, out)
            result.path = out
        return result

    def logs(
        self, job_id: str, unit: int | None = None, frame: int | None = None
    ) -> list[tuple[str, str]]:
        """POV-Ray's output for the attempts of one unit, or of a frame (each
        of its bands' in a tiled animation, in band order): [(object, text)]."""
        ledger = self.ledger
        job = ledger.require_job(job_id)
        if frame is not None:
            units = sorted(
                int(r["unit"]) for r in ledger.unit_records(job_id) if r.get("frame") == frame
            )
            if not units:
                raise UserError(f"job {job_id} has no frame {frame}")
        else:
            if unit is None:
                failed = ledger.unit_records(job_id, (UnitState.FAILED,))
                unit = int(failed[0]["unit"]) if failed else 0
            if not 0 <= unit < int(job["units_expected"]):
                raise UserError(f"job {job_id} has no unit {unit}")
            units = [unit]
        out = []
        for u in units:
            record = ledger.unit_record(job_id, u) or {}
            for attempt in range(1, int(record.get("attempts", 1)) + 1):
                name = log_object(job_id, u, attempt)
                if self.blobs.exists(name):
                    out.append((name, self.blobs.read_bytes(name).decode(errors="replace")))
        return out

    def fetch(
        self,
        job_id: str,
        out_dir: Path | None = None,
        *,
        video: Path | None = None,
        image: Path | None = None,
        frames_dir: Path | None = None,
        frame_names: Callable[[dict[str, Any]], str] | None = None,
    ) -> JobResult:
        """Download what a job produced: the video (and poster, contact sheet, stats.json) and,
        with ``frames_dir``, every done frame, named as POV-Ray would name it.
        ``image``: where a still's image goes (its poster: the tiles merged)."""
        view = self.ledger.view(job_id)
        job = view.doc
        result = JobResult.from_view(job_id, view)

        @functools.cache
        def done_records() -> list[dict[str, Any]]:
            """The done units' records: one query, for whichever of the stats,
            stats.json's per-frame cost and the frames needs them."""
            return self.ledger.unit_records(job_id, (UnitState.DONE,))

        # stats.json has each frame's cost too.
        result.cost = self.cost_of(view, done_records() if out_dir is not None else None)
        if not result.stats and view.done:
            # A job that never stitched (failed, cancelled) still gets its numbers.
            from povstorm.stitch.job import summarise

            result.stats = summarise(
                done_records(), job.get("created_at"), job.get("finished_at") or now()
            )
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            video = video or (out_dir / Path(job["video"]).name if job.get("video") else None)
            frames_dir = frames_dir or out_dir / "frames"
            if job.get("poster"):
                self.blobs.download_to(poster_object(job_id), out_dir / "poster.png")
            if job.get("sheet"):  # made once the job is done: it may not be yet
                result.sheet = out_dir / "contact.png"
                self.blobs.download_to(job["sheet"], result.sheet)
            stats_path = out_dir / "stats.json"
            stats_path.write_text(json.dumps(result.summary(), indent=2, default=str))
            result.stats_path = stats_path
        if video is not None and job.get("video"):
            self.blobs.download_to(job["video"], video)
            result.video = video
        if image is not None and job.get("poster"):
            self.blobs.download_to(job["poster"], image)
            result.image = image
        if out_dir is not None:
            # The videos made again from its frames (``restitch``), beside it.
            for entry in (job.get("videos") or {}).values():
                if entry.get("state") == VideoState.DONE:
                    dest = out_dir / Path(entry["object"]).name
                    self.blobs.download_to(entry["object"], dest)
                    result.videos.append(dest)
        if frames_dir is not None:
            frames_dir.mkdir(parents=True, exist_ok=True)
            name_of = frame_names or _default_frame_name(job)
            scene = (job.get("spec") or {}).get("povray") or {}
            tiles = self.ledger.get_spec(job_id).frame_tiles if scene.get("tiles") else None
            # Each frame's units: one, or a tiled animation's bands, merged here.
            per = len(tiles.bands) if tiles else 1
            by_frame: dict[int, list[dict[str, Any]]] = {}
            for record in sorted(done_records(), key=lambda r: int(r["unit"])):
                by_frame.setdefault(int(record["unit"]) // per, []).append(record)

            def get(records: list[dict[str, Any]]) -> Path:
                dest = frames_dir / name_of(records[0])
                if tiles is None:
                    self.blobs.download_to(frame_object(job_id, int(records[0]["unit"])), dest)
                    return dest
                return self._merged(job_id, [int(r["unit"]) for r in records], tiles, dest)

            complete = [rs for rs in by_frame.values() if len(rs) == per]
            with cf.ThreadPoolExecutor(UPLOAD_THREADS) as pool:
                result.frames = list(pool.map(get, complete))
            result.frames_dir = frames_dir
        return result

    def _merged(self, job_id: str, units: Sequence[int], tiles: Tiles, dest: Path) -> Path:
        """A frame of a tiled animation: its bands (``units``) downloaded and
        merged into ``dest`` (stitch/still.py, as the stitch merges them)."""
        with tempfile.TemporaryDirectory(prefix="povstorm-bands-") as tmp:
            bands = [Path(tmp) / f"{u}.png" for u in units]
            for unit, band in zip(units, bands, strict=True):
                self.blobs.download_to(frame_object(job_id, unit), band)
            return merge(bands, tiles.bands, dest)

    def sweep(
        self,
        argv: list[str],
        declares: list[str] | Mapping[str, list[float | str]],
        out_dir: Path,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> SweepResult:
        """A parameter sweep in one call (``povstorm sweep``, client/sweep.py):
        ``argv`` rendered once per combination of ``declares``
        (``["R=0.5,1", "Metal=0,1"]``), all at once, followed to their end
        and composed in ``out_dir`` (sweep.png, sweep.<ext> for an animation,
        sweep.json, a directory per combination). ``options`` are
        ``Sweep.from_ini``'s; ``Sweep`` takes it step by step."""
        from povstorm.client.sweep import Sweep

        sweep = Sweep.from_ini(self, argv, declares, **options)
        sweep.submit()
        return sweep.wait(out_dir, on_progress=on_progress, timeout=timeout)

    def preview(self, job_id: str, out_dir: Path, *, max_frames: int = PREVIEW_FRAMES) -> Preview:
        """What a job has rendered so far, at any time (rendering, done,
        failed, cancelled): ``contact.png``, a sheet of at most 64 of its done
        frames, and ``preview.<ext>``, a video of the whole animation in the
        job's codec, at its fps, each missing frame held from the nearest done
        one (the earlier on a tie), written into ``out_dir``. Only the frames
        these need are downloaded, into ``out_dir/frames/`` (``<unit>.png``; a
        later preview into the same directory downloads only what changed): a
        job of more than ``max_frames`` frames gets a video of ``max_frames``
        sampled evenly, at the frame rate that keeps its length. UnknownJob
        (exit 2) for a job that does not exist; NotFound (exit 1) while no
        frame is done."""
        if max_frames < 1:
            raise UserError("--max-frames: 1 or more")
        job = self.ledger.require_job(job_id)
        spec = self.ledger.get_spec(job_id)
        # A frame is its units: one, or a tiled animation's bands (all done).
        per, tiles = spec.bands_per_frame, spec.frame_tiles
        frames = int(job.get("units_expected") or 0) // per
        records = {int(r["unit"]): r for r in self.ledger.unit_records(job_id, (UnitState.DONE,))}
        done = [f for f in range(frames) if all(f * per + b in records for b in range(per))]
        if not done:
            raise NotFound(f"job {job_id} ({job.get('state')}) has no frame done yet")
        picked = preview.sample(frames, max_frames)
        needed = {preview.nearest(done, f) for f in picked}
        on_sheet = [done[i] for i in preview.sample(len(done), preview.SHEET_FRAMES)]
        needed.update(on_sheet)

        frames_dir = out_dir / "frames"
        frames_dir.mkdir(parents=True, exist_ok=True)
        index_path = frames_dir / "index.json"
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError):
            index = {}
        had = index.get("generations", {}) if index.get("job_id") == job_id else {}
        path_of = {f: frames_dir / f"{f:06d}.png" for f in needed}

        def generation(frame: int) -> str:
            return "/".join(str(records[frame * per + b].get("generation")) for b in range(per))

        def get(frame: int) -> None:
            if had.get(str(frame)) == generation(frame) and path_of[frame].exists():
                return
            if tiles is None:
                self.blobs.download_to(frame_object(job_id, frame), path_of[frame])
                return
            self._merged(job_id, range(frame * per, (frame + 1) * per), tiles, path_of[frame])

        with cf.ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            list(pool.map(get, sorted(needed)))
        had = {**had, **{str(f): generation(f) for f in needed}}
        index_path.write_text(json.dumps({"job_id": job_id, "generations": had}))

        sheet = preview.contact_sheet(
            [path_of[f] for f in on_sheet],
            out_dir / "contact.png",
            labels=[str(records[f * per].get("frame", f)) for f in on_sheet],
        )
        video = out_dir / f"preview.{container_for(spec.output)}"
        preview.preview_video(path_of, frames, spec.output, video, most=max_frames)
        return Preview(
            job_id,
            JobState(job["state"]),
            frames,
            len(done),
            sheet,
            video,
            frames=min(frames, max_frames),
        )


@dataclass
class Preview:
    """A preview of a job (``Cluster.preview``): its contact sheet and video,
    and how many of its frames were done."""

    job_id: str
    state: JobState
    units_expected: int
    units_done: int
    sheet: Path
    video: Path
    frames: int  # in the video

    def line(self) -> str:
        return (
            f"job {self.job_id} ({self.state.value}): {self.units_done} of "
            f"{self.units_expected} frames done: {self.sheet}, {self.video}"
        )


@dataclass
class Restitched:
    """Another video of a job (``Cluster.restitch``): its key in the job's
    ``videos`` map, its object, and where it was downloaded."""

    job_id: str
    key: str
    object: str
    path: Path | None = None


def _default_frame_name(job: dict[str, Any]) -> Callable[[dict[str, Any]], str]:
    """POV-Ray's own numbering for scene jobs (scene07.png; a tiled
    animation's frames once merged), the unit otherwise (a tiled still's
    bands: scene-tile0.png, ...)."""
    spec = job.get("spec") or {}
    stem = (spec.get("extra") or {}).get("output_stem")
    digits = int(spec.get("frame_digits") or 0)
    scene = spec.get("povray") or {}
    if scene.get("tiles") and not scene.get("animated", True):
        return lambda r: f"{stem or 'still'}-tile{int(r['unit'])}.png"
    if job.get("kind") == "scene" and stem:
        animated = (spec.get("povray") or {}).get("animated", True)
        return lambda r: f"{stem}{int(r['frame']):0{digits}d}.png" if animated else f"{stem}.png"
    return lambda r: f"{int(r['unit']):06d}.png"


def _error_of(reply: requests.Response) -> str:
    try:
        return str(reply.json().get("error") or reply.text)
    except ValueError:
        return reply.text.strip()[:500] or reply.reason


@dataclass
class JobResult:
    job_id: str
    state: JobState
    units_expected: int
    units_done: int
    units_failed: int
    stats: dict[str, Any]
    errors: list[dict[str, Any]]
    cost: dict[str, Any] = field(default_factory=dict)  # core/cost.py: summary
    cancel_reason: str | None = None  # why the farm cancelled it (a budget)
    video: Path | None = None
    frames_dir: Path | None = None
    frames: list[Path] = field(default_factory=list)
    stats_path: Path | None = None
    videos: list[Path] = field(default_factory=list)  # made again from its frames
    sheet: Path | None = None  # the contact sheet, contact.png
    image: Path | None = None  # a still's image (its poster)

    @classmethod
    def from_view(cls, job_id: str, view: Any) -> JobResult:
        job = view.doc
        return cls(
            job_id=job_id,
            state=JobState(job["state"]),
            units_expected=int(job.get("units_expected", 0)),
            units_done=view.done,
            units_failed=view.failed,
            stats=dict(job.get("stats") or {}),
            errors=list(job.get("errors") or []),
            cancel_reason=job.get("cancel_reason"),
        )

    @property
    def ok(self) -> bool:
        return self.state == JobState.DONE

    def summary(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state.value,
            "units_expected": self.units_expected,
            "units_done": self.units_done,
            "units_failed": self.units_failed,
            "video": str(self.video) if self.video else None,
            "image": str(self.image) if self.image else None,
            "frames_dir": str(self.frames_dir) if self.frames_dir else None,
            "stats": self.stats,
            "cost": self.cost,
            "cancel_reason": self.cancel_reason,
            "errors": [
                {k: (str(v) if k == "at" else v) for k, v in e.items()} for e in self.errors
            ],
        }
