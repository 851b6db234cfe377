"""Building a job: ``Job`` with ``WorkUnit``s generated in Python, or
``Job.from_ini`` from a POV-Ray invocation (an INI file, a scene, options).

    cluster = Cluster.local()                      # or Cluster.from_terraform("povstorm-outputs.json")
    job = Job(cluster, shared="assets/", fps=24)   # shared files land in ./shared of every unit
    for i in range(30):
        job.add(WorkUnit(inline={"scene.pov": make_scene(i)}, args=["+Iscene.pov", "+W64", "+H48"]))
    job.submit()
    job.wait(on_progress=print)
    result = job.result(frames_dir="frames/", video="out.mp4")

Or from a POV-Ray invocation: ``Job.from_ini(cluster, ["scene.ini", "+W320", "+KFF24"])``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from povstorm.client.cluster import Cluster, JobResult
from povstorm.client.prepass import Prepass, load_prepass, render_prepass
from povstorm.client.proof import Proof, ProofFailed, run_proof
from povstorm.client.watch import Progress
from povstorm.core.chunks import sample_profile
from povstorm.core.errors import (
    PovstormError,
    UnknownJob,
    UserError,
)
from povstorm.core.naming import (
    new_job_id,
)
from povstorm.core.schemas import MAX_INLINE_BYTES_PER_UNIT, check_notify_url, load_job_spec
from povstorm.core.spec import (
    CRF,
    DEFAULT_CODEC,
    FPS,
    FRAMES_PER_UNIT,
    MAX_ATTEMPTS,
    TIMEOUT_SECONDS,
    FrameEstimate,
)
from povstorm.core.tiles import TILE_SECONDS, auto_tiles, check_tile_seconds


@dataclass
class WorkUnit:
    """One unit of a generated job: its POV-Ray args, its own files (inline
    text/bytes, or paths uploaded by hash), landing in its working directory.
    The job's shared files are in ./shared."""

    args: Sequence[str] = ()
    inline: Mapping[str, str | bytes] = field(default_factory=dict)
    files: Mapping[str, Path] = field(default_factory=dict)
    label: str = ""


class Job:
    """A job being built, then submitted and followed."""

    def __init__(
        self,
        cluster: Cluster,
        shared: str | Path | None = None,
        *,
        name: str = "job",
        fps: int = FPS.default,
        codec: str = DEFAULT_CODEC,
        crf: int = CRF.default,
        video: bool = True,
        max_attempts: int = MAX_ATTEMPTS.default,
        fail_fast: bool = False,
        timeout_seconds: int = TIMEOUT_SECONDS.default,
        frames_per_unit: int = FRAMES_PER_UNIT.default,
        cache: bool = True,
        proof: bool = False,
        keep_going: bool = False,
        notify: str | None = None,
        budget_usd: float | None = None,
        radiosity_prepass: bool = False,
    ) -> None:
        self.cluster = cluster
        self.shared = Path(shared) if shared else None
        self.options = {
            "name": name,
            "output": {"fps": fps, "codec": codec, "crf": crf, "video": video},
            "max_attempts": max_attempts,
            "fail_fast": fail_fast,
            "timeout_seconds": timeout_seconds,
            # Frames per POV-Ray process for a scene job; 0: the farm's plan.
            "frames_per_unit": frames_per_unit,
            # The frame cache: reuse frames rendered before; False renders
            # every frame (and stores it). A scene whose frames depend on one
            # another is not cached at all (``warnings`` says why).
            "cache": "use" if cache else "refresh",
        }
        if budget_usd is not None:
            # The farm cancels the job once its projected cost at Cloud Run
            # list prices passes this (core/cost.py); the spec checks it is > 0.
            self.options["budget_usd"] = budget_usd
        if notify:
            # When the job ends (done, failed, cancelled) the farm POSTs a
            # signed summary here; checked now, before anything is uploaded.
            self.options["notify"] = check_notify_url(notify)
        # What the client noticed about the job: the POV-Ray options, the
        # scan, the frame cache. One line each; the CLI prints them.
        self.warnings: list[str] = []
        # A proof pass before the full job (client/proof.py): submit() runs it
        # first and raises ProofFailed if it fails, unless keep_going.
        self.proof_first = proof
        self.keep_going = keep_going
        self.proof: Proof | None = None
        # A radiosity pre-pass (client/prepass.py): submit() renders it after
        # any proof, and every unit of the job loads its samples.
        self.radiosity_prepass = radiosity_prepass
        self.prepass: Prepass | None = None
        # --tiles auto (from_ini): a tile's seconds, until choose_tiles() has
        # cut the still by its proof's estimate.
        self.auto_tiles: float | None = None
        # The frames' seconds as the client estimates them (from the parse
        # check, or a proof): the farm plans the chunks of a scene it has no
        # frame times of from this (core/chunks.py). None: no estimate.
        self.estimate: FrameEstimate | None = None
        self.units: list[WorkUnit] = []
        self.job_id: str | None = None
        self._planned_id: str | None = None
        self._scene: dict[str, Any] | None = None  # set by from_ini
        self._scene_files: dict[str, Path] = {}
        self._extra: dict[str, Any] = {}
        self.invocation: Any = None  # the parsed POV-Ray invocation of a scene job

    def add(self, unit: WorkUnit) -> Job:
        if self._scene is not None:
            raise UserError("a scene job renders its frames; it takes no extra units")
        self.units.append(unit)
        return self

    def extend(self, units: Iterable[WorkUnit]) -> Job:
        for unit in units:
            self.add(unit)
        return self

    @classmethod
    def from_ini(
        cls,
        cluster: Cluster,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        include: Sequence[Path] = (),
        check: bool = True,
        tiles: int | str = 0,
        tile_seconds: float = TILE_SECONDS,
        **options: Any,
    ) -> Job:
        """A job from a POV-Ray invocation (INI files, a .pov, +/- options), as
        ``povray`` would read it; a missing include fails here, before upload.
        ``check``: parse the first and last frames with the local ``povray``
        first (povray/check.py): a scene it cannot parse fails here with
        POV-Ray's error (SceneError); skipped where there is no ``povray``.
        A still's result is its image (the job's poster), not a video;
        ``tiles``: render it as that many horizontal bands, each on its own
        worker, merged by the stitch into the PNG ``povray`` would write;
        ``"auto"``: a proof pass first, then as many bands as make parts of
        about ``tile_seconds`` by its estimate (``choose_tiles``)."""
        from povstorm.povray import check_parse, collect_inputs, parse_invocation

        inv = parse_invocation(list(argv), cwd or Path.cwd())
        # The tiles are checked before any upload, as the parse check.
        auto, planned = tiles == "auto", None
        if auto:
            check_tile_seconds(tile_seconds)
            plan_tiles(inv, "auto")  # a still, without a subset of its own
        elif isinstance(tiles, int) and not isinstance(tiles, bool):
            planned = plan_tiles(inv, tiles) if tiles else None
        else:
            raise UserError(f"--tiles {tiles}: a number of tiles, or auto")
        inputs = collect_inputs(inv, extra=list(include))
        checked = check_parse(inv, inputs.files) if check else None
        if not inv.animated:
            options["video"] = False  # its image is the result
        job = cls(cluster, name=options.pop("name", None) or inv.scene.stem, **options)
        first, last = inv.frames
        job._scene = {
            "args": list(inv.farm_args),
            "frames": {"first": first, "last": last, "step": inv.frame_step},
            "animated": inv.animated,
        }
        if planned:
            job._scene["tiles"] = planned
        job._scene_files = dict(inputs.files)
        job._extra = {"output_stem": _output_stem(inv)}
        job.options["frame_digits"] = inv.frame_digits
        job.invocation = inv
        if auto:
            job.auto_tiles, job.proof_first = tile_seconds, True
        if checked is not None:
            job.estimate_from(checked.estimate, "check")
        job.warnings += [*inv.warnings, *inputs.warnings]
        job._no_cache(list(inputs.uncacheable))
        return job

    def estimate_from(self, samples: Sequence[float], source: str) -> None:
        """Take ``samples`` of an animation's frame seconds, evenly spaced from
        its first frame to its last (the parse check's ``ParseCheck.estimate``,
        a proof's ``Proof.frame_seconds``), as its ``estimate``; none taken
        from no samples, or for a still."""
        inv = self.invocation
        if samples and inv is not None and inv.animated:
            profile = sample_profile(samples, inv.frame_count)
            self.estimate = FrameEstimate(tuple(profile), source)

    def _no_cache(self, reasons: list[str]) -> None:
        """Frames that may depend on one another are neither reused nor stored."""
        if not reasons:
            return
        self.options["cache"] = "off"
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        self.warnings.append(f"frames not cached: {reasons[0]}{more}")

    def spec(self) -> dict[str, Any]:
        """Upload the inputs and build the job spec (validated before return)."""
        body: dict[str, Any] = dict(self.options)
        body["extra"] = dict(self._extra)
        if self._scene is not None:
            body["inputs"] = self.cluster.upload_inputs(self._scene_files)
            body["povray"] = dict(self._scene)
            # Only where the farm's plan reads it: frames in chunks of its choosing.
            planned = not self._scene.get("tiles") and not self.options["frames_per_unit"]
            if self.estimate is not None and planned:
                body["estimate"] = {
                    "seconds": list(self.estimate.seconds),
                    "source": self.estimate.source,
                }
            if self.prepass is not None:
                load_prepass(body["povray"], body["inputs"], self.prepass)
        else:
            if not self.units:
                raise UserError("the job has no units: add WorkUnit(...) first")
            shared = _files_under(self.shared) if self.shared else {}
            if self.options["cache"] != "off":
                self._no_cache(_unit_blockers(shared, self.units))
                body["cache"] = self.options["cache"]
            body["inputs"] = self.cluster.upload_inputs(shared)
            body["inputs_dir"] = "shared"
            body["units"] = [self._unit_body(u) for u in self.units]
        # Chosen once: a proof pass names the full job before it is submitted.
        self._planned_id = self.job_id or self._planned_id or new_job_id()
        body["job_id"] = self._planned_id
        load_job_spec(body)  # fail here, with the field named, not at the server
        return body

    def _unit_body(self, unit: WorkUnit) -> dict[str, Any]:
        inline: dict[str, str] = {}
        files: dict[str, Path | bytes] = dict(unit.files)
        for name, content in unit.inline.items():
            # Text travels inside the spec; bytes (and big text) by hash.
            if isinstance(content, str) and len(content.encode()) <= MAX_INLINE_BYTES_PER_UNIT // 4:
                inline[name] = content
            else:
                files[name] = content.encode() if isinstance(content, str) else content
        return {
            "args": list(unit.args),
            "inline": inline,
            "inputs": self.cluster.upload_inputs(files) if files else {},
            "label": unit.label,
        }

    def run_proof(
        self,
        *,
        dest: Path | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        timeout: float | None = None,
    ) -> Proof:
        """Render this scene job's proof pass and wait for it (client/proof.py);
        with ``dest`` (a path without extension), its contact sheet and video
        go to ``<dest>-proof.png`` and ``<dest>-proof.<ext>``."""
        # --tiles auto needs the proof's render times: not frames from the cache.
        self.proof = run_proof(
            self,
            dest=dest,
            on_progress=on_progress,
            timeout=timeout,
            fresh=self.auto_tiles is not None,
        )
        # The proof's frames, rendered on the farm, say more than the check's two.
        self.estimate_from(self.proof.frame_seconds, "proof")
        return self.proof

    @property
    def tile_count(self) -> int:
        """The bands of a tiled still; 0 for a job that is not tiled."""
        tiles = (self._scene or {}).get("tiles")
        return len(tiles["edges"]) - 1 if tiles else 0

    def choose_tiles(self) -> int:
        """``tiles="auto"``: cut the still into as many bands as make parts of
        about ``tile_seconds`` by the proof's estimate of the whole image
        (core/tiles.py: auto_tiles), at most as many as it can be cut into;
        one (whole) without an estimate. Returns the count."""
        if self.auto_tiles is None or self.invocation is None or self._scene is None:
            raise UserError("choose_tiles is for Job.from_ini(..., tiles='auto')")
        from povstorm.povray.tiles import band_alignment

        inv, seconds = self.invocation, (self.proof.estimate if self.proof else {})
        count = 1
        if seconds:
            count = auto_tiles(
                seconds["frame_seconds"], inv.height, align=band_alignment(inv),
                part=self.auto_tiles,
            )  # fmt: skip
        if count > 1:
            self._scene["tiles"] = plan_tiles(inv, count)
        self.auto_tiles = None
        return count

    def run_prepass(
        self,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        timeout: float | None = None,
    ) -> Prepass:
        """Render this scene job's radiosity pre-pass and wait for it
        (client/prepass.py): every unit of the job then loads its samples."""
        self.prepass = render_prepass(self, on_progress=on_progress, timeout=timeout)
        return self.prepass

    def submit(self) -> str:
        if self.job_id is not None:
            raise UserError(f"job {self.job_id} is already submitted")
        if self.proof_first and self.proof is None:
            self.run_proof()
        if self.proof is not None and not self.proof.ok and not self.keep_going:
            raise ProofFailed(self.proof)
        if self.auto_tiles is not None:
            self.choose_tiles()
        if self.radiosity_prepass and self.prepass is None:
            self.run_prepass()
        body = self.spec()
        self.job_id = self.cluster.submit(body)
        return self.job_id

    def _require_id(self) -> str:
        if self.job_id is None:
            raise UserError("submit the job first")
        return self.job_id

    def watch(
        self, on_progress: Callable[[Progress], None] | None = None, timeout: float | None = None
    ) -> Progress:
        return self.cluster.watch(self._require_id(), on_progress=on_progress, timeout=timeout)

    def wait(
        self, on_progress: Callable[[Progress], None] | None = None, timeout: float | None = None
    ) -> JobResult:
        self.watch(on_progress=on_progress, timeout=timeout)
        return self.result()

    def result(
        self,
        *,
        video: Path | str | None = None,
        image: Path | str | None = None,
        frames_dir: Path | str | None = None,
    ) -> JobResult:
        """What the job made, downloaded: its video to ``video``, a still's
        image to ``image``, its frames into ``frames_dir``."""
        return self.cluster.fetch(
            self._require_id(),
            video=Path(video) if video else None,
            image=Path(image) if image else None,
            frames_dir=Path(frames_dir) if frames_dir else None,
        )

    def cancel(self) -> str:
        return self.cluster.cancel(self._require_id())


def plan_tiles(inv: Any, tiles: int | str) -> dict[str, Any]:
    """The spec's ``tiles`` for an image (a still, or each frame of an
    animation) cut in ``tiles`` bands (core/tiles.py), their edges on
    POV-Ray's render blocks when it antialiases; UserError or SpecError, one
    line, for a row or column subset of the user's own, more bands than the
    image can be cut in, or ``"auto"`` (checked as one band) on an animation."""
    from povstorm.core.tiles import plan_bands
    from povstorm.povray.tiles import band_alignment, subset_options

    if tiles == "auto" and inv.animated:
        first, last = inv.frames
        raise UserError(
            f"--tiles auto is for a still: this scene is an animation (frames {first}-{last}); "
            "give a number of tiles"
        )
    if subset := subset_options(inv):
        raise UserError(f"--tiles cuts the image itself: drop {', '.join(subset)}")
    bands = plan_bands(inv.height, 1 if tiles == "auto" else int(tiles), align=band_alignment(inv))
    return {"edges": [0, *(b.bottom for b in bands)]}


def _output_stem(inv: Any) -> str | None:
    """The part of POV-Ray's output file name before the frame number, so a
    later ``fetch`` names frames exactly as ``povray`` would; None if the
    name does not have that shape (frames are then named by unit)."""
    first, last = inv.frames
    stem = None
    for frame in (first, last):
        name = Path(inv.output_name(frame)).name
        suffix = f"{frame:0{inv.frame_digits}d}.png" if inv.animated else ".png"
        if not name.endswith(suffix):
            return None
        stem = name[: -len(suffix)]
    return stem


# The files of a generated job the cache check reads as scene text.
SCENE_SUFFIXES = (".pov", ".inc", ".mcr")


def _unit_blockers(shared: Mapping[str, Path], units: Sequence[WorkUnit]) -> list[str]:
    """Why a generated job's units may depend on one another (povray/scan.py:
    cache_blockers), from its shared scene files and each unit's own."""
    from povstorm.povray import cache_blockers

    texts: dict[str, str | bytes | Path] = {f"shared/{n}": p for n, p in shared.items()}
    for k, unit in enumerate(units):
        texts.update({f"unit {k}: {n}": c for n, c in {**unit.files, **unit.inline}.items()})
    out: list[str] = []
    for origin, content in texts.items():
        if not origin.lower().endswith(SCENE_SUFFIXES):
            continue
        if isinstance(content, Path):
            content = content.read_bytes()
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        out += cache_blockers(content, origin)
    return out


def _files_under(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise UserError(f"shared directory {root} does not exist")
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


__all__ = ["Cluster", "Job", "JobResult", "PovstormError", "UnknownJob", "WorkUnit"]
