"""The job spec: what a client asks the farm to do, as frozen dataclasses.

Two forms, exactly one per job:

* a POV-Ray scene: ``povray.args`` (the user's INI and options, rewritten by
  the client so the farm owns output names) plus the frame range; unit ``n``
  renders frame ``frames.first + n`` with ``+SF f +EF f``, so clock values are
  POV-Ray's own;
* generated units: each with its own args, inputs and inline files.

``inputs`` maps relative paths to sha256 digests of content-addressed objects;
they are materialised under ``inputs_dir`` in each unit's working directory.
Validation lives in ``povstorm.schemas``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from povstorm.core.names import DEFAULTS


@dataclass(frozen=True)
class FrameRange:
    first: int
    last: int

    def __len__(self) -> int:
        return self.last - self.first + 1

    def frame(self, unit: int) -> int:
        return self.first + unit


@dataclass(frozen=True)
class PovraySpec:
    args: tuple[str, ...]
    frames: FrameRange
    # A still image is one unit with no subset options.
    animated: bool = True


@dataclass(frozen=True)
class UnitSpec:
    args: tuple[str, ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)
    inline: dict[str, str] = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class OutputSpec:
    fps: int = 24
    codec: str = "h264"
    crf: int = 20
    format: str = "mp4"
    video: bool = True


@dataclass(frozen=True)
class JobSpec:
    name: str = "job"
    inputs: dict[str, str] = field(default_factory=dict)
    inputs_dir: str = ""
    povray: PovraySpec | None = None
    units: tuple[UnitSpec, ...] = ()
    output: OutputSpec = field(default_factory=OutputSpec)
    max_attempts: int = DEFAULTS["max_attempts"]
    fail_fast: bool = False
    timeout_seconds: int = 600
    job_id: str | None = None
    # POV-Ray's own numbering of the frames, for names on download (scene form).
    frame_digits: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def unit_count(self) -> int:
        return len(self.povray.frames) if self.povray else len(self.units)

    def unit_args(self, unit: int) -> tuple[str, ...]:
        """The POV-Ray arguments of one unit (without the farm's output option)."""
        if self.povray:
            if not self.povray.animated:
                return self.povray.args
            f = self.povray.frames.frame(unit)
            return (*self.povray.args, f"+SF{f}", f"+EF{f}")
        return self.units[unit].args

    def unit_spec(self, unit: int) -> UnitSpec:
        if self.povray:
            return UnitSpec(
                args=self.unit_args(unit), label=f"frame {self.povray.frames.frame(unit)}"
            )
        return self.units[unit]
