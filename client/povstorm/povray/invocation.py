"""What a POV-Ray command line means, as the farm needs it: ``Invocation``.

Where it sits: ``parse.parse_invocation`` builds an ``Invocation``; the client
shows its settings and warnings, ``scan.py`` collects the files it names, and
``Invocation.povray_spec`` becomes the job spec's POV-Ray part (``farm_args``
plus the frame range). ``Invocation.output_name`` predicts the PNG names
POV-Ray gives each frame (``ImageProcessing::GetOutputFilename``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from povstorm.core.errors import SceneError
from povstorm.core.spec import FrameRange, PovraySpec
from povstorm.povray.cfloat import f32
from povstorm.povray.options import PNG


@dataclass(frozen=True)
class Setting:
    """One option as POV-Ray applied it, in order (INI files included)."""

    origin: str  # "command line" or "dir/file.ini:7"
    text: str  # as written: "+W320", "Width=320", "sub/b.ini"
    keys: tuple[str, ...]  # the INI keywords it set, canonical spelling


@dataclass(frozen=True)
class IniFile:
    """An INI file POV-Ray reads: given as an argument, nested, or the default."""

    literal: str  # the name as written (without the [section])
    path: Path  # absolute
    section: str | None
    origin: str  # where it was named ("command line", "a.ini:3", "default INI")
    key: str | None  # name in the upload; None for POV-Ray's own files
    top_level: bool  # named on the command line (farm_args refers to it by key)


@dataclass(frozen=True)
class LibraryDir:
    """A directory of the library path, in POV-Ray's search order."""

    literal: str  # as written
    path: Path  # absolute
    origin: str
    exists: bool
    # The directory's name on the worker: relative to the working directory,
    # "_lib/<n>-<name>" when it lies outside the scene directory, None for
    # POV-Ray's own directories (the workers have them).
    remote: str | None

    @property
    def system(self) -> bool:
        return self.remote is None


@dataclass(frozen=True)
class Antialias:
    """Anti-aliasing as POV-Ray will apply it (its defaults where unset)."""

    enabled: bool = False
    threshold: float = f32(0.3)
    depth: int = 3
    method: int = 1
    jitter: bool = True
    jitter_amount: float = 1.0
    gamma: float = 2.5


@dataclass(frozen=True)
class Invocation:
    """A POV-Ray command line, read as POV-Ray reads it, ready for the farm.

    ``frames`` is the inclusive range of frame numbers POV-Ray renders (after
    subsets); unit ``n`` is frame ``frames[0] + n``. A still image has
    ``animated=False``, ``frames=(0, 0)`` and ``frame_digits=0``.
    """

    argv: tuple[str, ...]
    cwd: Path
    scene: Path  # absolute
    scene_literal: str  # Input_File_Name as POV-Ray has it (names the output)
    root: Path  # the scene's directory: the unit working directory
    scene_key: str  # the scene's name in the upload (relative to root)
    default_ini: Path | None
    ini_files: tuple[IniFile, ...]
    settings: tuple[Setting, ...]
    options: Mapping[str, str]  # effective value of each option set, INI spelling
    library_paths: tuple[LibraryDir, ...]
    declares: tuple[tuple[str, float | str], ...]
    include_header: str | None
    width: int
    height: int
    antialias: Antialias
    animated: bool
    initial_frame: int
    final_frame: int
    initial_clock: float
    final_clock: float
    cyclic: bool
    field_render: bool
    odd_field: bool
    frames: tuple[int, int]
    frame_step: int
    frame_digits: int
    output_file_name: str | None  # the user's, used by output_name only
    clock_value: float  # the clock of a still image
    farm_args: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    _clock_delta: float = field(default=0.0, repr=False)

    @property
    def clock_range(self) -> tuple[float, float]:
        return (self.initial_clock, self.final_clock)

    @property
    def frame_count(self) -> int:
        return len(self.frame_range())

    def frame_range(self) -> FrameRange:
        return FrameRange(*self.frames, step=self.frame_step)

    def povray_spec(self) -> PovraySpec:
        return PovraySpec(args=self.farm_args, frames=self.frame_range(), animated=self.animated)

    def clock(self, frame: int) -> float:
        """The value of ``clock`` in the scene for ``frame``, as POV-Ray computes it."""
        if not self.animated:
            return self.clock_value
        return f32(self._clock_delta * float(frame - self.initial_frame) + self.initial_clock)

    def output_name(self, frame: int) -> str:
        """The file name POV-Ray gives the PNG of ``frame`` (relative to ``cwd``).

        Port of ``ImageProcessing::GetOutputFilename``: the user's
        Output_File_Name or the scene's name, the frame number written over
        ``frame_digits`` zeros, ``.png`` (the farm always renders PNG).
        """
        return _output_name(
            self.output_file_name or "",
            self.scene_literal,
            frame if self.animated else 0,
            self.frame_digits if self.animated else 0,
        )


def _split_file(path: str) -> tuple[str, str]:
    pos = path.rfind("/")
    return (path[: pos + 1], path[pos + 1 :]) if pos >= 0 else ("", path)


def _output_name(out: str, inp: str, frame: int, digits: int) -> str:
    folder, name = _split_file(out)
    if name in ("", PNG):
        if out == "":
            folder = _split_file(inp)[0]
        name = _split_file(inp)[1]
        pos = name.rfind(".")
        if pos >= 0:
            name = name[:pos]
    else:
        pos = name.rfind(".")
        if pos >= 0 and (pos == len(name) - 1 or name[pos:] == PNG):
            name = name[:pos]
    if digits > 0:
        chars = list(name + "0" * digits)
        i = len(chars) - 1
        while frame > 0:
            if i < 0:
                raise SceneError(
                    f"frame {frame} does not fit in the output file name {out or inp!r}"
                )
            chars[i] = str(frame % 10)
            i -= 1
            frame //= 10
        name = "".join(chars)
    return folder + name + PNG
