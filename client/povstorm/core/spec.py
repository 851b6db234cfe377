"""The job spec: what a client asks the farm to do, as frozen dataclasses.

Two forms, exactly one per job:

* a POV-Ray scene: ``povray.args`` (the user's INI and options, rewritten by
  the client so the farm owns output names) plus the frame range; unit ``n``
  is frame ``frames.first + n``, and a chunk of units ``a..b`` renders with
  ``+SF fa +EF fb`` (core/chunks.py), so clock values are POV-Ray's own;
* generated units: each with its own args, inputs and inline files.

``inputs`` maps relative paths to sha256 digests of content-addressed objects;
they are materialised under ``inputs_dir`` in each unit's working directory.
Validation lives in ``povstorm.core.schemas``.

This module is also the one home of a job's defaults and valid ranges and of
the codec -> container table: the dataclasses below, the schemas, the Python
API's ``Job``, the CLI and the stitch all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from povstorm.core.tiles import Tiles


@dataclass(frozen=True)
class Bounded:
    """An integer option: its default and the inclusive range the schema accepts."""

    default: int
    low: int
    high: int

    def describe(self) -> str:
        return f"{self.low}-{self.high}, default {self.default}"


FPS = Bounded(24, 1, 240)
CRF = Bounded(20, 0, 51)  # x264/x265's scale: lower is better
MAX_ATTEMPTS = Bounded(3, 1, 10)
TIMEOUT_SECONDS = Bounded(600, 5, 3600)  # a frame's, in a chunk or alone
# Frames one POV-Ray process renders (core/chunks.py); 0: chosen by the farm.
FRAMES_PER_UNIT = Bounded(0, 0, 100)

# The frame cache (core/framekey.py): "use" reuses a frame rendered before and
# stores what it renders; "refresh" (--no-cache) renders every frame and
# stores it; "off" neither reads nor writes (a scene whose frames are not
# independent, povray/scan.py: cache_blockers).
CACHE_MODES = ("use", "refresh", "off")
DEFAULT_CACHE = "use"

# codec -> the containers it may go in, its default container first. The
# encoder options for each codec are the stitch's (stitch/encode.py).
CONTAINERS: dict[str, tuple[str, ...]] = {
    "h264": ("mp4", "mkv", "mov"),
    "h265": ("mp4", "mkv", "mov"),
    "vp9": ("webm", "mkv"),
    "prores": ("mov", "mkv"),
    "gif": ("gif",),
}
CODECS = tuple(CONTAINERS)
FORMATS = tuple(dict.fromkeys(c for cs in CONTAINERS.values() for c in cs))
DEFAULT_CODEC = "h264"
DEFAULT_FORMAT = CONTAINERS[DEFAULT_CODEC][0]


@dataclass(frozen=True)
class FrameRange:
    """The frames a scene job renders: ``first``, ``first + step``, ... up
    to ``last`` (POV-Ray's ``Frame_Step``, counted from the first frame)."""

    first: int
    last: int
    step: int = 1

    def __len__(self) -> int:
        return (self.last - self.first) // self.step + 1

    def frame(self, unit: int) -> int:
        return self.first + unit * self.step


# The radiosity pre-pass (client/prepass.py): the file of samples a pre-pass
# job's POV-Ray writes in its working directory (appending frame after
# frame), and the input name by which every unit of the job it serves loads
# it. POV-Ray 3.7: ``+RF<file>`` names it, ``+RFO`` writes, ``+RFI`` reads.
RADIOSITY_OUT = "_prepass.rca"
RADIOSITY_IN = "_prepass/radiosity.rca"
PREPASS_OPTIONS = ("+RFI", "+RFO", f"+RF{RADIOSITY_OUT}")
LOAD_RADIOSITY = ("+RFI", f"+RF{RADIOSITY_IN}")


@dataclass(frozen=True)
class PovraySpec:
    args: tuple[str, ...]
    frames: FrameRange
    # A still image is one unit with no subset options...
    animated: bool = True
    # ...or, tiled, one unit per band (core/tiles.py), merged by the stitch;
    # a tiled animation has one unit per band of each frame, frame after frame.
    tiles: Tiles | None = None
    # A radiosity pre-pass job: its units write their samples (PREPASS_OPTIONS).
    prepass: bool = False


@dataclass(frozen=True)
class UnitSpec:
    args: tuple[str, ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)
    inline: dict[str, str] = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class OutputSpec:
    fps: int = FPS.default
    codec: str = DEFAULT_CODEC
    crf: int = CRF.default
    format: str = DEFAULT_FORMAT
    video: bool = True


# Where a client's estimate of a scene's frame times comes from: the parse
# check's small renders of the first and last frames (povray/check.py), or a
# proof pass (client/proof.py).
ESTIMATE_SOURCES = ("check", "proof")
MAX_FRAME_SECONDS = 7 * 24 * 3600.0  # the most a frame's estimate may say


@dataclass(frozen=True)
class FrameEstimate:
    """The client's estimate of a scene job's frame seconds: what the farm
    plans the chunks of a scene it has not rendered before from (farm/
    operations.py: submit; core/chunks.py). ``seconds``: a profile, evenly
    over the frames from the first to the last (one value: every frame)."""

    seconds: tuple[float, ...]
    source: str


@dataclass(frozen=True)
class JobSpec:
    name: str = "job"
    inputs: dict[str, str] = field(default_factory=dict)
    inputs_dir: str = ""
    povray: PovraySpec | None = None
    units: tuple[UnitSpec, ...] = ()
    output: OutputSpec = field(default_factory=OutputSpec)
    max_attempts: int = MAX_ATTEMPTS.default
    fail_fast: bool = False
    timeout_seconds: int = TIMEOUT_SECONDS.default
    frames_per_unit: int = FRAMES_PER_UNIT.default
    cache: str = DEFAULT_CACHE
    # The most the job may cost at Cloud Run list prices (core/cost.py): the
    # farm cancels it once its projected cost passes this. None: no limit.
    budget_usd: float | None = None
    job_id: str | None = None
    # POV-Ray's own numbering of the frames, for names on download (scene form).
    frame_digits: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # An http(s) URL that gets a signed JSON summary when the job ends
    # (farm/notify.py); "" for none.
    notify: str = ""
    # The client's estimate of the frames' seconds, for the chunk plan of a
    # scene the farm has no frame times of; None for none.
    estimate: FrameEstimate | None = None

    @property
    def unit_count(self) -> int:
        if self.povray:
            return len(self.povray.frames) * self.bands_per_frame
        return len(self.units)

    @property
    def bands_per_frame(self) -> int:
        """The units of each frame (or of a still): its bands, or 1 untiled."""
        tiles = self.povray.tiles if self.povray else None
        return len(tiles.bands) if tiles else 1

    @property
    def frame_tiles(self) -> Tiles | None:
        """The bands of each frame of a tiled animation; None for any other job."""
        scene = self.povray
        return scene.tiles if scene and scene.animated else None

    def frame_of(self, unit: int) -> int:
        """The frame number a scene job's unit renders (a still's first and
        only frame is ``frames.first``)."""
        assert self.povray is not None
        if self.povray.animated:
            return self.povray.frames.frame(unit // self.bands_per_frame)
        return self.povray.frames.frame(unit)

    def band_of(self, unit: int) -> int | None:
        """The band of its frame (or still) that a tiled job's unit renders."""
        return unit % self.bands_per_frame if self.povray and self.povray.tiles else None

    def unit_args(self, unit: int, count: int = 1) -> tuple[str, ...]:
        """The POV-Ray arguments of one unit, or of the chunk of ``count``
        frames from it (without the farm's output option)."""
        if self.povray:
            args = (*self.povray.args, *(PREPASS_OPTIONS if self.povray.prepass else ()))
            tiles = self.povray.tiles
            if not self.povray.animated:
                return (*args, *tiles.options(unit)) if tiles else args
            if tiles:  # one band of one frame: never a chunk
                frame = self.frame_of(unit)
                return (
                    *args,
                    f"+SF{frame}",
                    f"+EF{frame}",
                    *tiles.options(unit % len(tiles.bands)),
                )
            frames = self.povray.frames
            first, last = frames.frame(unit), frames.frame(unit + count - 1)
            step = (f"+STP{frames.step}",) if frames.step > 1 else ()
            return (*args, f"+SF{first}", f"+EF{last}", *step)
        return self.units[unit].args

    def unit_spec(self, unit: int) -> UnitSpec:
        if self.povray:
            tiles, band = self.povray.tiles, self.band_of(unit)
            label = f"frame {self.frame_of(unit)}"
            if tiles and band is not None:
                tile = tiles.label(band)
                label = f"{label}, {tile}" if self.povray.animated else tile
            return UnitSpec(args=self.unit_args(unit), label=label)
        return self.units[unit]


def container_for(output: OutputSpec) -> str:
    """The video's container (its file extension): the spec's format when its
    codec fits in it, else the codec's default (vp9 -> webm, prores -> mov,
    gif -> gif)."""
    containers = CONTAINERS[output.codec]
    return output.format if output.format in containers else containers[0]
