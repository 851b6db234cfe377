"""Read a POV-Ray invocation exactly as POV-Ray 3.7 does, for the farm.

Where it sits: the client turns ``povstorm render SCENE.ini|SCENE.pov [options]``
into an ``Invocation`` here, ``povstorm.scan`` collects the files it needs, and
the job spec carries ``farm_args`` plus the frame range. Each unit then runs the
real ``povray`` on a worker with ``farm_args + (+SF<f> +EF<f>) + farm output
options``, in a working directory that holds the uploaded files.

Fidelity. The option reader is a port of POV-Ray 3.7.0's own
(``frontend/processoptions.cpp``, ``processrenderoptions.cpp``, the unix
``vfe`` front end and ``AnimationProcessing``), quirks included, and every rule
below was checked against the installed ``povray`` 3.7.0.10:

* the default INI file is the first of ``$POVINI``, ``./povray.ini``,
  ``~/.povray/3.7/povray.ini``, ``/etc/povray/3.7/povray.ini`` (then the old
  ``~/.povrayrc``, ``/etc/povray.ini``); it replaces, not adds to, the others;
* every relative path, in an INI file or on the command line, is relative to
  the current directory, never to the INI file; INI files, the scene and
  includes are then searched in the library path;
* an INI line is ``Key=Value`` (one per line, the rest ignored), ``+X``/``-X``
  switches (several per line), ``;``/``#`` comments, ``[Section]`` headers
  (a plain ``file.ini`` reads only the lines before the first section,
  ``file.ini[Name]`` those plus section ``Name``), or a bare file name: an
  INI file to include, a ``.pov`` scene, or a library directory ending in ``/``;
* floats are C ``float``: clock values are computed in single precision the
  way ``AnimationProcessing`` does, and match ``clock`` in the scene bit for
  bit; subset fractions (0 < x < 1) take ``int(frames * x)``, not offset by
  the initial frame; a cyclic animation adds one frame to the clock period
  and to the digit count of output names (``+KFF9 +KC`` names ``s01.png``).

farm_args: the INI files are referenced, not expanded. POV-Ray on the worker
reads the uploaded INI files itself, so sections, ``Declare`` strings, comma
lists and every quirk of the INI syntax mean exactly what they meant on the
client. Command-line arguments are kept verbatim, except path arguments
(scene, INI files, library paths) which are rewritten relative to the unit
working directory, and the options the farm owns, which are dropped. Options
the farm owns that are set *inside* INI files are neutralised by appending
overriding options after everything else, since the last setting wins:

    -D -P +FN               no display, no pause, PNG output
    +W<w> +H<h>             the size computed here, whatever the worker's
                            povray.ini says
    +I<scene>               the scene, relative to the working directory
    Pre_Scene_Command= ...  empty shell-out commands (the only way to unset one)
    Create_Ini=  -C -RTR    no INI written, no continued trace, output on
    Statistic_File= ...     a stream file that would land outside the working
                            directory goes back to its default name in it
    +L<dir>                 library directories that an INI names by a path
                            the worker cannot see (absolute, or outside the
                            scene directory): uploaded under ``_lib/``
The worker appends ``+SF<f> +EF<f>`` and its own ``+O`` after these (which is
why an Output_File_Name inside an INI file needs no override). Every removal
or override that changes what the user asked for adds a one-line warning.
``Frame_Step`` above 1 is refused: units map to consecutive frames.

Paths inside an INI file cannot be rewritten, so a nested INI include or an
``Include_Header`` named there must resolve on the worker as it does here:
relative, below the working directory. Anything else is refused with a
``SceneError`` that names the file and line. The working directory plays the
part of the current directory: with ``povstorm`` run from the scene's
directory (the usual case) every relative path means the same on both sides.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from povstorm.core.errors import SceneError, SpecError
from povstorm.core.naming import check_relpath
from povstorm.core.spec import FrameRange, PovraySpec

# POV-Ray's installation (Debian's povray 3.7): the workers have these files.
SYSTEM_SHARE = Path("/usr/share/povray-3.7")
SYSTEM_INI = Path("/etc/povray/3.7/povray.ini")
SYSTEM_INI_OLD = Path("/etc/povray.ini")
# Prefixes inside the upload for files that live outside the scene directory.
LIB_PREFIX = "_lib"
INI_PREFIX = "_ini"
PNG = ".png"

# --- option tables (POV-Ray 3.7.0.10) ----------------------------------------

_INT, _FLOAT, _BOOL, _STR, _SPECIAL, _OBSOLETE, _NONE = (
    "int",
    "float",
    "bool",
    "str",
    "special",
    "obsolete",
    "none",
)

# INI keyword -> (attribute, type). Aliases share an attribute.
_INI_ROWS: tuple[tuple[str, str, str], ...] = (
    ("All_Console", "All_Console", _BOOL),
    ("All_File", "All_File", _STR),
    ("Antialias_Depth", "Antialias_Depth", _INT),
    ("Antialias", "Antialias", _BOOL),
    ("Antialias_Threshold", "Antialias_Threshold", _FLOAT),
    ("Antialias_Gamma", "Antialias_Gamma", _FLOAT),
    ("Append_File", "Append_File", _BOOL),
    ("Bits_Per_Color", "Bits_Per_Color", _INT),
    ("Bits_Per_Colour", "Bits_Per_Color", _INT),
    ("Bounding", "Bounding", _BOOL),
    ("Bounding_Method", "Bounding_Method", _INT),
    ("Bounding_Threshold", "Bounding_Threshold", _INT),
    ("BSP_BaseAccessCost", "BSP_BaseAccessCost", _FLOAT),
    ("BSP_ChildAccessCost", "BSP_ChildAccessCost", _FLOAT),
    ("BSP_ISectCost", "BSP_ISectCost", _FLOAT),
    ("BSP_MaxDepth", "BSP_MaxDepth", _INT),
    ("BSP_MissChance", "BSP_MissChance", _FLOAT),
    ("Buffer_Output", "Buffer_Output", _OBSOLETE),
    ("Buffer_Size", "Buffer_Size", _OBSOLETE),
    ("Clock", "Clock", _FLOAT),
    ("Clockless_Animation", "Clockless_Animation", _BOOL),
    ("Compression", "Compression", _INT),
    ("Continue_Trace", "Continue_Trace", _BOOL),
    ("Create_Histogram", "Create_Histogram", _OBSOLETE),
    ("Create_Ini", "Create_Ini", _STR),
    ("Cyclic_Animation", "Cyclic_Animation", _BOOL),
    ("Debug_Console", "Debug_Console", _BOOL),
    ("Debug_File", "Debug_File", _STR),
    ("Declare", "Declare", _SPECIAL),
    ("Display", "Display", _BOOL),
    ("Display_Gamma", "Display_Gamma", _SPECIAL),
    ("Dither", "Dither", _BOOL),
    ("Dither_Method", "Dither_Method", _SPECIAL),
    ("Draw_Vistas", "Draw_Vistas", _BOOL),
    ("End_Column", "End_Column", _FLOAT),
    ("End_Row", "End_Row", _FLOAT),
    ("Fatal_Console", "Fatal_Console", _BOOL),
    ("Fatal_Error_Command", "Fatal_Error_Command", _SPECIAL),
    ("Fatal_Error_Return", "Fatal_Error_Command", _SPECIAL),
    ("Fatal_File", "Fatal_File", _STR),
    ("Field_Render", "Field_Render", _BOOL),
    ("File_Gamma", "File_Gamma", _SPECIAL),
    ("Final_Clock", "Final_Clock", _FLOAT),
    ("Final_Frame", "Final_Frame", _INT),
    ("Frame_Step", "Frame_Step", _INT),
    ("Grayscale_Output", "Grayscale_Output", _BOOL),
    ("Height", "Height", _INT),
    ("High_Reproducibility", "High_Reproducibility", _BOOL),
    ("Histogram_Name", "Histogram_Name", _OBSOLETE),
    ("Histogram_Grid_Size", "Histogram_Grid_Size", _OBSOLETE),
    ("Histogram_Type", "Histogram_Type", _OBSOLETE),
    ("Initial_Clock", "Initial_Clock", _FLOAT),
    ("Initial_Frame", "Initial_Frame", _INT),
    ("Input_File_Name", "Input_File_Name", _STR),
    ("Include_Header", "Include_Header", _STR),
    ("Include_Ini", "Include_Ini", _SPECIAL),
    ("Jitter_Amount", "Jitter_Amount", _FLOAT),
    ("Jitter", "Jitter", _BOOL),
    ("Library_Path", "Library_Path", _SPECIAL),
    ("Light_Buffer", "Light_Buffer", _BOOL),
    ("Max_Image_Buffer_Memory", "Max_Image_Buffer_Memory", _INT),
    ("Odd_Field", "Odd_Field", _BOOL),
    ("Output_Alpha", "Output_Alpha", _BOOL),
    ("Output_File_Name", "Output_File_Name", _STR),
    ("Output_File_Type", "Output_File_Type", _SPECIAL),
    ("Output_To_File", "Output_To_File", _BOOL),
    ("Palette", "Palette", _SPECIAL),
    ("Pause_When_Done", "Pause_When_Done", _BOOL),
    ("Post_Frame_Command", "Post_Frame_Command", _SPECIAL),
    ("Post_Frame_Return", "Post_Frame_Command", _SPECIAL),
    ("Post_Scene_Command", "Post_Scene_Command", _SPECIAL),
    ("Post_Scene_Return", "Post_Scene_Command", _SPECIAL),
    ("Preview_End_Size", "Preview_End_Size", _INT),
    ("Preview_Start_Size", "Preview_Start_Size", _INT),
    ("Pre_Frame_Command", "Pre_Frame_Command", _SPECIAL),
    ("Pre_Frame_Return", "Pre_Frame_Command", _SPECIAL),
    ("Pre_Scene_Command", "Pre_Scene_Command", _SPECIAL),
    ("Pre_Scene_Return", "Pre_Scene_Command", _SPECIAL),
    ("Quality", "Quality", _INT),
    ("Radiosity_File_Name", "Radiosity_File_Name", _STR),
    ("Radiosity_From_File", "Radiosity_From_File", _BOOL),
    ("Radiosity_To_File", "Radiosity_To_File", _BOOL),
    ("Radiosity_Vain_Pretrace", "Radiosity_Vain_Pretrace", _BOOL),
    ("Real_Time_Raytracing", "Real_Time_Raytracing", _BOOL),
    ("Remove_Bounds", "Remove_Bounds", _BOOL),
    ("Render_Block_Size", "Render_Block_Size", _INT),
    ("Render_Block_Step", "Render_Block_Step", _INT),
    ("Render_Console", "Render_Console", _BOOL),
    ("Render_File", "Render_File", _STR),
    ("Render_Pattern", "Render_Pattern", _INT),
    ("Sampling_Method", "Sampling_Method", _INT),
    ("Split_Unions", "Split_Unions", _BOOL),
    ("Start_Column", "Start_Column", _FLOAT),
    ("Start_Row", "Start_Row", _FLOAT),
    ("Statistic_Console", "Statistic_Console", _BOOL),
    ("Statistic_File", "Statistic_File", _STR),
    ("Subset_End_Frame", "Subset_End_Frame", _FLOAT),
    ("Subset_Start_Frame", "Subset_Start_Frame", _FLOAT),
    ("Test_Abort_Count", "Test_Abort_Count", _INT),
    ("Test_Abort", "Test_Abort", _BOOL),
    ("User_Abort_Command", "User_Abort_Command", _SPECIAL),
    ("User_Abort_Return", "User_Abort_Command", _SPECIAL),
    ("Verbose", "Verbose", _BOOL),
    ("Version", "Version", _FLOAT),
    ("Video_Mode", "Video_Mode", _SPECIAL),
    ("Vista_Buffer", "Vista_Buffer", _BOOL),
    ("Warning_Console", "Warning_Console", _BOOL),
    ("Warning_File", "Warning_File", _STR),
    ("Warning_Level", "Warning_Level", _INT),
    ("Width", "Width", _INT),
    ("Work_Threads", "Work_Threads", _INT),
)
_INI_TABLE = {row[0].lower(): row for row in _INI_ROWS}

# Switch -> (parameter attribute, type, boolean attribute set by +/-). Order
# matters: the first entry whose letters prefix the switch and whose
# parameter rule fits wins, so longer names come first and a switch with an
# optional parameter has two rows (with, then without).
_SWITCHES: tuple[tuple[str, str | None, str, str | None], ...] = (
    ("AG", "Antialias_Gamma", _FLOAT, None),
    ("AM", "Sampling_Method", _INT, None),
    ("A0", "Antialias_Threshold", _FLOAT, "Antialias"),
    ("A", None, _NONE, "Antialias"),
    ("BM", "Bounding_Method", _INT, None),
    ("BS", "Render_Block_Size", _INT, None),
    ("B", None, _NONE, "Bounding"),
    ("C", None, _NONE, "Continue_Trace"),
    ("D", "Display", _SPECIAL, "Display"),
    ("D", None, _NONE, "Display"),
    ("EC", "End_Column", _FLOAT, None),
    ("EF0", "Subset_End_Frame", _FLOAT, None),
    ("EF", "Subset_End_Frame", _INT, None),
    ("EP", "Preview_End_Size", _INT, None),
    ("ER", "End_Row", _FLOAT, None),
    ("F", "Output_File_Type", _SPECIAL, "Output_To_File"),
    ("F", None, _NONE, "Output_To_File"),
    ("GA", "All_File", _STR, "All_Console"),
    ("GA", None, _NONE, "All_Console"),
    ("GD", "Debug_File", _STR, "Debug_Console"),
    ("GD", None, _NONE, "Debug_Console"),
    ("GF", "Fatal_File", _STR, "Fatal_Console"),
    ("GF", None, _NONE, "Fatal_Console"),
    ("GI", "Create_Ini", _STR, None),
    ("GP", None, _NONE, "Append_File"),
    ("GR", "Render_File", _STR, "Render_Console"),
    ("GR", None, _NONE, "Render_Console"),
    ("GS", "Statistic_File", _STR, "Statistic_Console"),
    ("GS", None, _NONE, "Statistic_Console"),
    ("GW", "Warning_File", _STR, "Warning_Console"),
    ("GW", None, _NONE, "Warning_Console"),
    ("HI", "Include_Header", _STR, None),
    ("HR", None, _NONE, "High_Reproducibility"),
    ("H", "Height", _INT, None),
    ("I", "Input_File_Name", _STR, None),
    ("J", "Jitter_Amount", _FLOAT, "Jitter"),
    ("J", None, _NONE, "Jitter"),
    ("KC", None, _NONE, "Cyclic_Animation"),
    ("KI", "Initial_Clock", _FLOAT, None),
    ("KFF", "Final_Frame", _INT, None),
    ("KFI", "Initial_Frame", _INT, None),
    ("KF", "Final_Clock", _FLOAT, None),
    ("KLA", None, _NONE, "Clockless_Animation"),
    ("K", "Clock", _FLOAT, None),
    ("L", "Library_Path", _SPECIAL, None),
    ("MB", "Bounding_Threshold", _INT, "Bounding"),
    ("MB", None, _NONE, "Bounding"),
    ("MI", "Max_Image_Buffer_Memory", _INT, None),
    ("MV", "Version", _FLOAT, None),
    ("O", "Output_File_Name", _STR, None),
    ("P", None, _NONE, "Pause_When_Done"),
    ("Q", "Quality", _INT, None),
    ("RFI", None, _NONE, "Radiosity_From_File"),
    ("RFO", None, _NONE, "Radiosity_To_File"),
    ("RF", "Radiosity_File_Name", _STR, None),
    ("RS", "Render_Block_Step", _INT, None),
    ("RP", "Render_Pattern", _INT, None),
    ("RTR", None, _NONE, "Real_Time_Raytracing"),
    ("RVP", None, _NONE, "Radiosity_Vain_Pretrace"),
    ("R", "Antialias_Depth", _INT, None),
    ("SC", "Start_Column", _FLOAT, None),
    ("SF0", "Subset_Start_Frame", _FLOAT, None),
    ("SF", "Subset_Start_Frame", _INT, None),
    ("SP", "Preview_Start_Size", _INT, None),
    ("SR", "Start_Row", _FLOAT, None),
    ("STP", "Frame_Step", _INT, None),
    ("SU", None, _NONE, "Split_Unions"),
    ("TH", "Dither_Method", _SPECIAL, "Dither"),
    ("TH", None, _NONE, "Dither"),
    ("UA", None, _NONE, "Output_Alpha"),
    ("UD", None, _NONE, "Draw_Vistas"),
    ("UF", None, _NONE, "Field_Render"),
    ("UL", None, _NONE, "Light_Buffer"),
    ("UO", None, _NONE, "Odd_Field"),
    ("UR", None, _NONE, "Remove_Bounds"),
    ("UV", None, _NONE, "Vista_Buffer"),
    ("V", None, _NONE, "Verbose"),
    ("WL", "Warning_Level", _INT, None),
    ("WT", "Work_Threads", _INT, None),
    ("W", "Width", _INT, None),
    ("X", "Test_Abort_Count", _SPECIAL, "Test_Abort"),
    ("X", None, _NONE, "Test_Abort"),
)

# Output file type letters 3.7.0.10 knows (no 'S': the Debian build has no
# system format) -> (extension, 16-bit grayscale capable).
_FILE_TYPES = {
    "T": (".tga", False),
    "C": (".tga", False),
    "N": (".png", True),
    "J": (".jpg", False),
    "P": (".ppm", True),
    "B": (".bmp", False),
    "E": (".exr", False),
    "H": (".hdr", False),
}
_DITHER_METHODS = ("B2", "B3", "B4", "D1", "D2", "FS")
_GAMMA_TYPES = ("SRGB",)
_COMMANDS = (
    "Pre_Scene_Command",
    "Pre_Frame_Command",
    "Post_Frame_Command",
    "Post_Scene_Command",
    "User_Abort_Command",
    "Fatal_Error_Command",
)
_STREAM_FILES = (
    ("All_File", "GA"),
    ("Debug_File", "GD"),
    ("Fatal_File", "GF"),
    ("Render_File", "GR"),
    ("Statistic_File", "GS"),
    ("Warning_File", "GW"),
)
# Arguments the unix front end takes for itself (help, version, benchmark).
_FRONTEND_ARGS = (
    "--help",
    "-help",
    "-h",
    "-?",
    "--version",
    "-version",
    "--V",
    "--benchmark",
    "-benchmark",
)
_QUOTES = "\"'"
_SPACE = " \t\n\r\v\f"

# --- C semantics ---------------------------------------------------------------


def f32(x: float) -> float:
    """``x`` rounded to a C float, as POV-Ray stores every float option."""
    if math.isnan(x) or math.isinf(x):
        return x
    try:
        return float(struct.unpack("f", struct.pack("f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


_INT_RE = re.compile(r"[ \t\n\r\v\f]*([+-]?\d+)")
_FLOAT_RE = re.compile(
    r"[ \t\n\r\v\f]*([+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?"
    r"|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan))",
    re.IGNORECASE,
)


def _c_int(text: str) -> int | None:
    """sscanf("%d"): leading space, sign, digits; None when nothing matches."""
    m = _INT_RE.match(text)
    if not m:
        return None
    value = int(m.group(1))
    # glibc wraps a value that does not fit; POV-Ray would then misbehave.
    return value if -(2**31) <= value < 2**31 else None


def _c_float(text: str) -> float | None:
    """sscanf("%lf") / strtod on the longest numeric prefix."""
    m = _FLOAT_RE.match(text)
    if not m:
        return None
    s = m.group(1)
    if "x" in s.lower() and not s.lower().lstrip("+-").startswith("inf"):
        sign = -1.0 if s.startswith("-") else 1.0
        body = s.lstrip("+-")
        return sign * float.fromhex(body if "p" in body.lower() else body + "p0")
    return float(s)


def _atof(text: str) -> float:
    value = _c_float(text)
    return 0.0 if value is None else value


def _matches(constant: str, value: str) -> bool:
    """POV-Ray's ``Matches``: equal up to the end of the shorter string."""
    return all(a == b.lower() for a, b in zip(constant, value, strict=False))


def _is_true(value: str) -> bool:
    return any(_matches(c, value) for c in ("on", "true", "yes", "1"))


def _is_false(value: str) -> bool:
    return any(_matches(c, value) for c in ("off", "false", "no", "0"))


def _isalnum(c: str) -> bool:
    return c != "" and c.isascii() and c.isalnum()


def _isalpha(c: str) -> bool:
    return c != "" and c.isascii() and c.isalpha()


# --- public types --------------------------------------------------------------


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
        return self.frames[1] - self.frames[0] + 1

    def frame_range(self) -> FrameRange:
        return FrameRange(*self.frames)

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


# --- the reader ------------------------------------------------------------------


class _Backtrack(Exception):
    """POV-Ray's kParseErr inside an option: re-read the text as a plain string."""


@dataclass
class _Item:
    origin: str
    text: str
    kind: str  # "switch" | "option" | "ini" | "scene" | "library"
    keys: tuple[str, ...]
    from_cl: bool
    on: bool | None = None
    param: str | None = None
    literal: str | None = None
    section: str | None = None
    ini: IniFile | None = None


@dataclass
class _Lib:
    literal: str
    origin: str
    from_cl: bool


class _Cursor:
    """POV-Ray's text stream: getchar / ungetchar / tellg / seekg."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def eof(self) -> bool:
        return self.i >= len(self.s)

    def get(self) -> str:
        if self.i >= len(self.s):
            self.i += 1  # ungetting EOF must land where it was
            return ""
        c = self.s[self.i]
        self.i += 1
        return c

    def unget(self) -> None:
        self.i -= 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def line_at(self, pos: int) -> int:
        return self.s.count("\n", 0, pos) + 1


class _Reader:
    def __init__(self, cwd: Path, environ: Mapping[str, str]) -> None:
        self.cwd = cwd
        self.environ = environ
        self.values: dict[str, Any] = {}
        self.libs: list[_Lib] = []
        self.declares: list[tuple[str, float | str]] = []
        self.commands: dict[str, str] = {}
        self.items: list[_Item] = []
        self.inis: list[IniFile] = []
        self.ini_found: list[tuple[str, str | None]] = []  # (name that matched, library entry)
        self.warnings: list[str] = []
        self.stack: list[Path] = []
        self.scene_origin = ""

    # -- paths ------------------------------------------------------------------

    def abs(self, literal: str) -> Path:
        return Path(os.path.normpath(os.path.join(self.cwd, literal)))

    def display(self, path: Path) -> str:
        try:
            rel = path.relative_to(self.cwd)
        except ValueError:
            return str(path)
        return str(rel)

    def lib_literals(self) -> list[str]:
        return [lib.literal for lib in self.libs]

    def find_ini(self, filename: str) -> tuple[Path, str, str | None] | None:
        """``OpenINIFileStream``: cwd, then the library path; '.ini' appended.
        Returns the file, the name that matched and the library entry used."""
        dot = filename.rfind(".")
        has_ext = dot >= 0 and len(filename) - dot <= 4
        names = ([filename] if has_ext else []) + [filename + ".ini", filename + ".INI"]
        for name in names:
            p = self.abs(name)
            if p.is_file():
                return p, name, None
        for lib in self.lib_literals():
            for name in names:
                p = self.abs(lib + "/" + name)
                if p.is_file():
                    return p, name, lib
        return None

    # -- values -----------------------------------------------------------------

    def set_typed(self, attr: str, typ: str, param: str, origin: str, what: str) -> None:
        if typ == _INT:
            value = _c_int(param)
            if value is None:
                raise SceneError(f"{origin}: {what}: integer expected, found {param!r}")
            self.values[attr] = value
        elif typ == _FLOAT:
            fvalue = _c_float(param)
            if fvalue is None:
                raise SceneError(f"{origin}: {what}: number expected, found {param!r}")
            self.values[attr] = f32(fvalue)
        elif typ == _BOOL:
            if not _is_true(param) and not _is_false(param):
                self.warnings.append(f"{origin}: {what}: {param!r} is read as Off")
            self.values[attr] = _is_true(param)
        elif typ == _STR:
            self.values[attr] = param

    def file_type(self, letter: str, origin: str, what: str) -> str:
        code = letter.upper()
        if code not in _FILE_TYPES:
            raise SceneError(f"{origin}: {what}: unknown output file type {letter!r}")
        return code

    def ini_special(self, keyword: str, attr: str, param: str, origin: str) -> None:
        """``ReadSpecialOptionHandler`` for ``Key=Value`` options."""
        if attr in ("Palette", "Video_Mode"):
            self.values[attr] = param.lstrip(_SPACE)[:1].lower()
        elif attr == "Dither_Method":
            code = param.lstrip(_SPACE)
            if code.upper() not in _DITHER_METHODS:
                raise SceneError(f"{origin}: {keyword}: unknown dither method {code!r}")
            self.values[attr] = code.upper()
        elif attr == "Output_File_Type":
            # Only the letter counts here: "Output_File_Type=N8" is plain PNG.
            self.values[attr] = self.file_type(param.lstrip(_SPACE)[:1], origin, keyword)
        elif attr == "Include_Ini":
            self.read_ini(param, origin, top_level=False, text=f"{keyword}={param}")
        elif attr == "Library_Path":
            self.libs.append(_Lib(param, origin, from_cl=origin == "command line"))
        elif attr == "Declare":
            self.declare(param)
        elif attr in _COMMANDS:
            if keyword.upper().endswith("D"):
                self.commands[attr] = param
        elif attr in ("Display_Gamma", "File_Gamma"):
            value = _atof(param)
            if value <= 0 and param.strip().upper() not in _GAMMA_TYPES:
                raise SceneError(f"{origin}: {keyword}: unknown gamma {param!r}")
            self.values[attr] = param

    def declare(self, param: str) -> None:
        # strtok(param, "=") then strtok(NULL, ""): a missing value is
        # silently dropped by POV-Ray (its error code is overwritten).
        stripped = param.lstrip("=")
        if not stripped:
            return
        name, sep, rest = stripped.partition("=")
        if not sep or rest == "":
            return
        if '"' in rest:
            self.declares.append((name, rest[rest.index('"') + 1 :].split('"', 1)[0]))
        else:
            self.declares.append((name, f32(_atof(rest))))

    def switch_special(self, attr: str, param: str, origin: str, text: str) -> None:
        """``ReadSpecialSwitchHandler`` for ``+X<param>`` switches."""
        if attr == "Display":
            self.values["Video_Mode"] = param[:1].upper()
            if len(param) > 1:
                self.values["Palette"] = param[1].upper()
        elif attr == "Dither_Method":
            if param.upper() not in _DITHER_METHODS:
                raise SceneError(f"{origin}: {text}: unknown dither method {param!r}")
            self.values[attr] = param.upper()
        elif attr == "Output_File_Type":
            code = self.file_type(param[:1], origin, text)
            self.values[attr] = code
            rest = param[1:]
            if rest[:1] > " ":
                if rest[0] in "gG":
                    if not _FILE_TYPES[code][1]:
                        raise SceneError(f"{origin}: {text}: grayscale needs PNG or PPM output")
                    self.values["Grayscale_Output"] = True
                    if rest[1:2] > " ":
                        raise SceneError(f"{origin}: {text}: unexpected {rest[1:]!r}")
                elif rest[0].isdigit():
                    m = re.match(r"\d+", rest)
                    assert m is not None
                    self.values["Bits_Per_Color"] = int(m.group(0))
                    if rest[m.end() : m.end() + 1] > " ":
                        raise SceneError(f"{origin}: {text}: unexpected {rest[m.end() :]!r}")
                else:
                    raise SceneError(f"{origin}: {text}: invalid modifier {rest!r}")
        elif attr == "Library_Path":
            self.libs.append(_Lib(param, origin, from_cl=origin == "command line"))
        elif attr == "Test_Abort_Count":
            value = _c_int(param)
            if value is None:
                raise SceneError(f"{origin}: {text}: integer expected, found {param!r}")
            self.values[attr] = value

    # -- switches and options ---------------------------------------------------

    def switch(self, key: str, value: str | None, token: str, origin: str, text: str) -> _Item:
        """Find and apply a ``+X`` / ``-X`` switch (``Process_Switch``)."""
        for cmd, attr, typ, flag in _SWITCHES:
            n = 0
            while n < len(key) and n < len(cmd) and key[n].upper() == cmd[n]:
                n += 1
            if n != len(cmd):
                continue
            rest = key[n:]
            if value is not None and rest:
                break
            param = value if value is not None else rest
            has_param = param[:1] > " "
            if has_param != (typ != _NONE):
                continue
            on = token != "-"
            keys: list[str] = []
            if flag:
                self.values[flag] = on
                keys.append(flag)
            if attr:
                keys.append(attr)
                if typ == _SPECIAL:
                    self.switch_special(attr, param, origin, text)
                else:
                    self.set_typed(attr, typ, param, origin, text)
            return _Item(origin, text, "switch", tuple(keys), origin == "command line", on, param)
        shown = token + key + (f'"{value}"' if value is not None else "")
        raise SceneError(f"{origin}: unknown switch {shown!r}")

    def option(self, row: tuple[str, str, str], value: str, origin: str, text: str) -> None:
        """``Process_INI_Option``: type errors are fatal (POV-Ray backtracks into an error)."""
        keyword, attr, typ = row
        if typ == _SPECIAL:
            self.ini_special(keyword, attr, value, origin)
        elif typ == _OBSOLETE:
            raise _Backtrack
        else:
            self.set_typed(attr, typ, value, origin, keyword)

    def unknown_string(self, text: str, origin: str, from_cl: bool) -> None:
        """``ProcessUnknownString``: a scene, a library directory or an INI file."""
        dot = text.rfind(".")
        if dot >= 0 and text[dot:].lower() == ".pov":
            self.values["Input_File_Name"] = text
            self.scene_origin = origin
            self.items.append(_Item(origin, text, "scene", ("Input_File_Name",), from_cl))
        elif text.endswith("/"):
            self.libs.append(_Lib(text, origin, from_cl))
            self.items.append(_Item(origin, text, "library", ("Library_Path",), from_cl))
        else:
            self.read_ini(text, origin, top_level=from_cl, text=text)

    # -- INI files --------------------------------------------------------------

    def read_ini(self, spec: str, origin: str, *, top_level: bool, text: str) -> None:
        """``ProcessOptions::ParseFile``."""
        section: str | None = None
        filename = spec
        if "[" in spec:
            start = spec.index("[")
            end = spec.find("]")
            if end < start:
                raise SceneError(f"{origin}: bad INI file section in {spec!r}")
            section, filename = spec[start + 1 : end], spec[:start]
        found = self.find_ini(filename)
        if found is None:
            raise SceneError(
                f"{origin}: INI file {filename!r} not found "
                "(POV-Ray looks in the current directory, then the library path)"
            )
        path, name, lib = found
        if path in self.stack:
            raise SceneError(f"{origin}: INI file {self.display(path)!r} includes itself")
        ini = IniFile(filename, path, section, origin, None, top_level)
        self.inis.append(ini)
        self.ini_found.append((name, lib))
        self.items.append(
            _Item(
                origin,
                text,
                "ini",
                ("Include_Ini",),
                top_level,
                literal=filename,
                section=section,
                ini=ini,
            )
        )
        try:
            content = path.read_bytes().decode("utf-8", errors="surrogateescape")
        except OSError as exc:
            raise SceneError(
                f"{origin}: cannot read INI file {self.display(path)!r}: {exc.strerror}"
            ) from None
        self.stack.append(path)
        try:
            self.parse_ini_text(content, path, section)
        finally:
            self.stack.pop()

    def parse_ini_text(self, content: str, path: Path, section: str | None) -> None:
        f = _Cursor(content)
        active = True
        name = self.display(path)
        while not f.eof():
            self.skip_space(f, newlines=True)
            start = f.i
            token = f.get()
            origin = f"{name}:{f.line_at(start)}"
            if token == "[":
                current = self.ini_string(f, "]")
                active = section is not None and current.lower() == section.lower()
                continue
            if not active:
                self.skip_line(f)
                continue
            if token == "":
                break
            plain = False
            if token in _QUOTES:
                plain = True
            elif token in "+-":
                key = self.ini_string(f)
                value = None
                c = f.get()
                if c in _QUOTES and c:
                    value = self.ini_string(f, c)
                else:
                    f.unget()
                text = content[start : f.i]
                self.items.append(self.switch(key, value, token, origin, text))
            elif token in ";#":
                self.skip_line(f)
            elif _isalnum(token) or token == "_":
                f.unget()
                back = f.i
                try:
                    item = self.ini_option(f, origin, content, start)
                except _Backtrack:
                    f.i = back
                    plain = True
                else:
                    if item is not None:
                        self.items.append(item)
                    self.skip_line(f)
            else:
                plain = True
            if plain:
                if token not in _QUOTES:
                    text = self.ini_string(f, -2, smart=True, origin=origin)
                    if "=" in text:
                        key = text.split("=", 1)[0].strip()
                        raise SceneError(f"{origin}: unknown option {key!r}")
                else:
                    text = self.ini_string(f, token)
                self.unknown_string(text, origin, from_cl=False)

    def ini_option(self, f: _Cursor, origin: str, content: str, start: int) -> _Item | None:
        """``Parse_INI_Option``: ``Key = Value[, Value...]``."""
        key = self.ini_string(f)
        row = _INI_TABLE.get(key.lower())
        if row is None:
            raise _Backtrack
        self.skip_space(f, newlines=False)
        if f.get() != "=":
            raise _Backtrack
        self.skip_space(f, newlines=False)
        keyword, attr, typ = row
        if attr in _COMMANDS and keyword.upper().endswith("D"):
            value = self.raw_string(f)
        else:
            c = f.get()
            if c in _QUOTES and c:
                value = self.ini_string(f, c)
            else:
                f.unget()
                value = self.ini_string(f, -2, smart=True, origin=origin)
        text = content[start : f.i]
        if typ == _OBSOLETE:
            self.warnings.append(f"{origin}: {keyword} is no longer used by POV-Ray 3.7 (ignored)")
            return _Item(origin, text, "option", (), False, param=value)
        self.option(row, value, origin, text)
        self.skip_space(f, newlines=False)
        c = f.get()
        if c == ",":
            while not f.eof():
                self.skip_space(f, newlines=False)
                c = f.get()
                if c in _QUOTES and c:
                    value = self.ini_string(f, c)
                else:
                    f.unget()
                    value = self.ini_string(f, -2)
                self.option(row, value, origin, text)
                self.skip_space(f, newlines=False)
                if f.get() != ",":
                    f.unget()
                    break
            text = content[start : f.i]
        else:
            f.unget()
        keys = (attr,) if attr not in ("Include_Ini", "Library_Path", "Declare") else (keyword,)
        if attr == "Input_File_Name":
            self.scene_origin = origin
        if attr == "Include_Ini":
            return None  # read_ini recorded it
        return _Item(origin, text, "option", keys, False, param=value)

    @staticmethod
    def skip_space(f: _Cursor, *, newlines: bool) -> None:
        while not f.eof():
            c = f.get()
            if c in "\n\r" and newlines:
                c2 = f.get()
                if c2 not in "\n\r" or c2 == c or c2 == "":
                    f.unget()
            elif c not in " \t":
                f.unget()
                break

    @staticmethod
    def skip_line(f: _Cursor) -> None:
        while not f.eof():
            c = f.get()
            if c in "\n\r":
                c2 = f.get()
                if c2 not in "\n\r" or c2 == c or c2 == "":
                    f.unget()
                break

    def ini_string(
        self, f: _Cursor, end: int | str = -1, *, smart: bool = False, origin: str = ""
    ) -> str:
        """``Parse_INI_String``: to a stop character (-1/-2), or to ``end``."""
        out: list[str] = []
        mode = end
        while len(out) < 65535:
            c = f.get()
            if c == "":
                f.unget()
                break
            if mode in (-1, -2):
                if smart and c in " \t":
                    f.unget()
                    if not self.smart_continues(f, origin):
                        break
                    c = f.get()
                    mode = -3
                elif c in _SPACE or c in ",;#\"'" or (mode == -1 and c in "[]="):
                    f.unget()
                    break
            elif mode == -3:
                if c in ";#\n\r":
                    f.unget()
                    break
            elif c == mode:
                break
            out.append(c)
        return "".join(out)

    def smart_continues(self, f: _Cursor, origin: str) -> bool:
        """``Parse_INI_String_Smartmode``: does an unquoted value go on past a space?"""
        back = f.i
        self.skip_space(f, newlines=False)
        c = f.get()
        result = False
        if c == "" or c in ";#,":
            pass
        else:
            if c in "+-":
                if _isalpha(f.get()):
                    f.i = back
                    return False
                f.i = back
            # As in POV-Ray, the word is read from the character after the one
            # just consumed, so "foo Width=30" is one value.
            key = self.ini_string(f)
            if key.lower() not in _INI_TABLE:
                result = True
                self.warnings.append(
                    f"{origin}: unquoted value with spaces; POV-Ray reads it to the end of the line"
                )
        f.i = back
        return result

    @staticmethod
    def raw_string(f: _Cursor) -> str:
        """``Parse_Raw_INI_String`` for shell-out commands."""
        out: list[str] = []
        in_sq = in_dq = escape = False
        while len(out) < 65536:
            c = f.get()
            if escape and c in "\"'\\" and c:
                escape = False
                out.append(c)
                continue
            escape = False
            if c == "":
                f.unget()
                break
            if c in "\r\n":
                f.unget()
                break
            if c in ";#" and not in_sq and not in_dq:
                f.unget()
                break
            if c == "\\":
                escape = True
            elif c == '"':
                in_dq = not in_dq
            elif c == "'":
                in_sq = not in_sq
            out.append(c)
        return "".join(out)

    # -- the command line -------------------------------------------------------

    def parse_argument(self, arg: str) -> None:
        """``ProcessOptions::ParseString`` on one argv element."""
        origin = "command line"
        if arg in _FRONTEND_ARGS:
            raise SceneError(f"{origin}: {arg!r} is a povray program option, not a render option")
        cl = _Cursor(arg)
        while not cl.eof():
            while cl.peek() in (" ", "\t") and cl.peek():
                cl.i += 1
            c = cl.peek()
            if c == "":
                break
            start = cl.i
            plain = False
            if c in _QUOTES:
                plain = True
            elif c in "+-":
                cl.i += 1
                key = self.cl_string(cl)
                value = None
                q = cl.peek()
                if q in _QUOTES and q:
                    cl.i += 1
                    value = self.cl_string(cl, q)
                self.items.append(self.switch(key, value, c, origin, arg[start : cl.i]))
            elif _isalnum(c) or c == "_":
                try:
                    item = self.cl_option(cl, origin, arg, start)
                except _Backtrack:
                    cl.i = start
                    plain = True
                else:
                    if item is not None:
                        self.items.append(item)
            else:
                plain = True
            if plain:
                q = cl.peek()
                if q in _QUOTES and q:
                    cl.i += 1
                    text = self.cl_string(cl, q)
                else:
                    text = self.cl_string(cl, -2)
                    if "=" in text:
                        key = text.split("=", 1)[0]
                        if key.lower() in _INI_TABLE and _INI_TABLE[key.lower()][2] == _OBSOLETE:
                            raise SceneError(
                                f"{origin}: {key} is no longer supported by POV-Ray 3.7"
                            )
                        raise SceneError(f"{origin}: unknown option {key!r}")
                self.unknown_string(text, origin, from_cl=True)

    def cl_option(self, cl: _Cursor, origin: str, arg: str, start: int) -> _Item | None:
        key = self.cl_string(cl)
        row = _INI_TABLE.get(key.lower())
        if row is None or cl.peek() != "=":
            raise _Backtrack
        cl.i += 1
        q = cl.peek()
        if q in _QUOTES and q:
            cl.i += 1
            value = self.cl_string(cl, q)
        else:
            value = self.cl_string(cl, -2)
        keyword, attr, _typ = row
        text = arg[start : cl.i]
        if attr == "Include_Ini":
            self.read_ini(value, origin, top_level=True, text=text)
            return None
        self.option(row, value, origin, text)
        if attr == "Input_File_Name":
            self.scene_origin = origin
        keys = (attr,) if attr not in ("Library_Path", "Declare") else (keyword,)
        return _Item(origin, text, "option", keys, True, param=value)

    @staticmethod
    def cl_string(cl: _Cursor, end: int | str = -1) -> str:
        """``Parse_CL_String``."""
        out: list[str] = []
        while not cl.eof():
            c = cl.peek()
            if isinstance(end, int) and end <= -1:
                if c in _SPACE or c in ";#\"'":
                    break
                if end == -1 and c in "[]=":
                    break
            cl.i += 1
            if c == end:
                break
            out.append(c)
        return "".join(out)

    # -- the default INI file -----------------------------------------------------

    def default_ini(self) -> Path | None:
        """``UnixOptionsProcessor::Process_povray_ini``: the first that exists."""
        home = self.environ.get("HOME", "")
        candidates: list[Path] = []
        povini = self.environ.get("POVINI")
        if povini:
            candidates.append(self.abs(povini))
        candidates.append(self.cwd / "povray.ini")
        if home:
            candidates.append(Path(home) / ".povray" / "3.7" / "povray.ini")
        candidates.append(SYSTEM_INI)
        if home:
            candidates.append(Path(home) / ".povrayrc")
        candidates.append(SYSTEM_INI_OLD)
        for path in candidates:
            if path.is_file():
                return path
        return None


# --- from the raw reading to an Invocation ----------------------------------------


def is_system_path(path: Path) -> bool:
    """Whether ``path`` lies in POV-Ray's own directory (the workers have it)."""
    for p in (path, Path(os.path.realpath(path))):
        if p == SYSTEM_SHARE or SYSTEM_SHARE in p.parents:
            return True
    return False


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


_PLAIN_STOPS = _SPACE + ";#\"'"
_SWITCH_STOPS = _PLAIN_STOPS + "[]="


def _quote(arg: str, stops: str = _PLAIN_STOPS) -> str:
    """Quote a path argument that POV-Ray would otherwise cut short."""
    if any(c in arg for c in stops):
        if '"' in arg and "'" in arg:
            raise SceneError(f"path {arg!r} has both kinds of quote; POV-Ray cannot read it")
        q = "'" if '"' in arg else '"'
        return f"{q}{arg}{q}"
    return arg


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "dir"


def _key(path: str, what: str, origin: str) -> str:
    try:
        return check_relpath(path, what)
    except SpecError as exc:
        raise SceneError(f"{origin}: {exc.message}") from None


def worker_key(
    literal: str, found: Path, base: LibraryDir | None, origin: str, what: str
) -> str | None:
    """The upload name of a file POV-Ray found by ``literal`` in the current
    directory (``base`` None) or in a library directory.

    On the worker the same literal must find the same file, so the name is
    the literal below the working directory (or below the library directory's
    remote name). None for POV-Ray's own files, which the workers have.
    """
    if is_system_path(found) or (base is not None and base.remote is None):
        return None
    if literal.startswith("/"):
        raise SceneError(
            f"{origin}: {what} {literal!r} is an absolute path the workers do not have; "
            "name it relative to the scene directory or add its directory with +L"
        )
    parts = literal.split("/")
    if ".." in parts:
        raise SceneError(
            f"{origin}: {what} {literal!r} leaves the scene directory; the farm uploads only "
            "the scene directory and the library path: add its directory with +L<dir> and "
            "name the file relative to it"
        )
    prefix = "" if base is None or base.remote in (None, ".") else f"{base.remote}/"
    return _key(posixpath.normpath(prefix + literal), what, origin)


def find_file(
    literal: str, extensions: Sequence[str], cwd: Path, libs: Sequence[LibraryDir]
) -> tuple[Path, str, LibraryDir | None] | None:
    """POV-Ray's ``FindFile`` + ``FindFilePath``: the exact name first when its
    extension is one of the type's, then the name with each extension; each
    candidate in the current directory, then (relative names only) in the
    library path. Returns the file, the name that matched and the library
    directory it came from (None: the current directory)."""
    dot = literal.rfind(".")
    exact_first = dot >= 0 and literal[dot:] in extensions
    names = ([literal] if exact_first else []) + [literal + e for e in extensions if e]
    if not exact_first:
        names.append(literal)
    for name in names:
        p = Path(os.path.normpath(os.path.join(cwd, name)))
        if p.is_file():
            return p, name, None
        if name.startswith("/"):
            continue
        for lib in libs:
            q = Path(os.path.normpath(os.path.join(lib.path, name)))
            if q.is_file():
                return q, name, lib
    return None


def parse_invocation(
    argv: Sequence[str], cwd: Path, *, environ: Mapping[str, str] | None = None
) -> Invocation:
    """Read ``povray ARGV`` run in ``cwd`` as POV-Ray 3.7 would.

    ``environ`` supplies POVINI and HOME for the default INI file (default:
    ``os.environ``). Raises ``SceneError`` with one line naming the file and
    line (or "command line") for anything POV-Ray would reject.
    """
    cwd = Path(os.path.abspath(cwd))
    r = _Reader(cwd, os.environ if environ is None else environ)
    default = r.default_ini()
    if default is not None:
        r.read_ini(str(default), "default INI", top_level=False, text=str(default))
    else:
        r.libs.append(_Lib(str(SYSTEM_SHARE / "include"), "default library path", False))
    for arg in argv:
        r.parse_argument(arg)
    return _build(r, tuple(argv), cwd, default)


def _library_dirs(r: _Reader, root: Path) -> list[LibraryDir]:
    """Deduplicated (as vfe does), each with its name on the worker."""
    out: list[LibraryDir] = []
    seen: set[Path] = set()
    outside = 0
    for lib in r.libs:
        path = r.abs(lib.literal)
        if path in seen:
            continue
        seen.add(path)
        if is_system_path(path):
            remote = None
        elif _inside(path, root):
            remote = os.path.relpath(path, root)
        else:
            outside += 1
            remote = f"{LIB_PREFIX}/{outside}-{_safe_name(path.name)}"
        out.append(LibraryDir(lib.literal, path, lib.origin, path.is_dir(), remote))
    return out


def _build(r: _Reader, argv: tuple[str, ...], cwd: Path, default: Path | None) -> Invocation:
    v = r.values
    warnings = r.warnings
    scene_literal = v.get("Input_File_Name")
    if not scene_literal:
        raise SceneError(
            "command line: no scene file given (name a .pov or an INI file that sets Input_File_Name)"
        )
    origin = r.scene_origin or "command line"
    # The library path as the parser sees it, before the scene fixes root.
    provisional = _library_dirs(r, cwd)
    found = find_file(scene_literal, (".pov", ".POV"), cwd, provisional)
    if found is None:
        raise SceneError(
            f"{origin}: scene file {scene_literal!r} not found "
            "(POV-Ray looks in the current directory, then the library path)"
        )
    scene = found[0]
    root = scene.parent
    libs = _library_dirs(r, root)
    for lib in libs:
        if not lib.exists:
            warnings.append(f"{lib.origin}: library directory {lib.literal!r} does not exist")

    width, height = v.get("Width"), v.get("Height")
    if width is None or height is None:
        raise SceneError(
            "command line: image size not set: give +W and +H (POV-Ray 3.7 has no usable default)"
        )
    if width < 1 or height < 1:
        raise SceneError(f"command line: image size {width}x{height} is not positive")

    anim = _animation(v, warnings)
    if v.get("Frame_Step", 1) > 1 and anim["animated"]:
        raise SceneError(
            f"command line: Frame_Step={v['Frame_Step']} is not supported: the farm renders "
            "every frame of the range; narrow it with +SF/+EF instead"
        )

    inis = _ini_keys(r, root, default)
    include_header = v.get("Include_Header")
    farm_args = _farm_args(r, root, scene, inis, libs, width, height, warnings)

    options: dict[str, str] = {}
    for item in r.items:
        if item.kind in ("switch", "option"):
            for k in item.keys:
                if k in v:
                    options[k] = _show(v[k])
    aa = Antialias(
        enabled=bool(v.get("Antialias", False)),
        threshold=v.get("Antialias_Threshold", f32(0.3)),
        depth=v.get("Antialias_Depth", 3),
        method=v.get("Sampling_Method", 1),
        jitter=bool(v.get("Jitter", True)),
        jitter_amount=v.get("Jitter_Amount", 1.0),
        gamma=v.get("Antialias_Gamma", 2.5),
    )
    output_name = v.get("Output_File_Name")
    if output_name in ("-", "stdout", "stderr"):
        warnings.append("command line: output to a stream is replaced by PNG files on the farm")
        output_name = None
    inv = Invocation(
        argv=argv,
        cwd=cwd,
        scene=scene,
        scene_literal=scene_literal,
        root=root,
        scene_key=_key(scene.name, "scene name", origin),
        default_ini=default,
        ini_files=tuple(inis),
        settings=tuple(Setting(i.origin, i.text, i.keys) for i in r.items),
        options=options,
        library_paths=tuple(libs),
        declares=tuple(r.declares),
        include_header=include_header,
        width=width,
        height=height,
        antialias=aa,
        animated=anim["animated"],
        initial_frame=anim["initial_frame"],
        final_frame=anim["final_frame"],
        initial_clock=anim["initial_clock"],
        final_clock=anim["final_clock"],
        cyclic=anim["cyclic"],
        field_render=bool(v.get("Field_Render", False)),
        odd_field=bool(v.get("Odd_Field", False)),
        frames=anim["frames"],
        frame_digits=anim["digits"],
        output_file_name=output_name,
        clock_value=v.get("Clock", 0.0),
        farm_args=tuple(farm_args),
        warnings=tuple(dict.fromkeys(warnings)),
        _clock_delta=anim["delta"],
    )
    if inv.animated:
        inv.output_name(inv.frames[1])  # a frame number too long for the name fails here
    return inv


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "On" if value else "Off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _animation(v: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """``VirtualFrontEnd::Start`` + ``AnimationProcessing``, line by line."""
    first_set, last_set = v.get("Initial_Frame", 0), v.get("Final_Frame", 0)
    if (first_set == 0 and last_set == 0) or (first_set == 1 and last_set == 1):
        if "Subset_Start_Frame" in v or "Subset_End_Frame" in v:
            warnings.append("command line: +SF/+EF are ignored: this is not an animation")
        return {
            "animated": False,
            "initial_frame": 0,
            "final_frame": 0,
            "initial_clock": 0.0,
            "final_clock": 0.0,
            "cyclic": False,
            "frames": (0, 0),
            "digits": 0,
            "delta": 0.0,
        }
    cyclic = bool(v.get("Cyclic_Animation", False))
    initial_frame = max(v.get("Initial_Frame", 1), 0)
    initial_clock = f32(v.get("Initial_Clock", 0.0))
    final_frame = max(v.get("Final_Frame", 1), initial_frame)
    final_clock = f32(v.get("Final_Clock", 1.0))
    user_final = final_frame
    if cyclic:
        final_frame += 1
    span = final_frame - initial_frame + 1

    def subset(value: float) -> int:
        pct = max(float(value), 0.0)
        if pct == 0.0 or pct >= 1.0:
            return int(pct)
        return int(f32(span * pct))

    if "Subset_Start_Frame" in v:
        start = max(subset(v["Subset_Start_Frame"]), initial_frame)
    else:
        start = initial_frame
    if "Subset_End_Frame" in v:
        end = max(subset(v["Subset_End_Frame"]), start)
    else:
        end = final_frame - (1 if cyclic else 0)
    # POV-Ray always renders the first frame of the subset, even past the end.
    end = max(end, start)
    numerator = f32(final_clock - initial_clock)
    denominator = final_frame - initial_frame
    if denominator:
        delta = numerator / denominator
    else:
        delta = math.nan if numerator == 0 else math.copysign(math.inf, numerator)
        warnings.append(
            f"command line: a one-frame animation (frame {initial_frame}): POV-Ray's clock is undefined (NaN)"
        )
    if end > user_final:
        warnings.append(
            f"command line: frames {user_final + 1}..{end} lie beyond Final_Frame={user_final}"
        )
    digits = 1
    n = final_frame
    while n >= 10:
        digits += 1
        n //= 10
    return {
        "animated": True,
        "initial_frame": initial_frame,
        "final_frame": user_final,
        "initial_clock": initial_clock,
        "final_clock": final_clock,
        "cyclic": cyclic,
        "frames": (start, end),
        "digits": digits,
        "delta": delta,
    }


def _ini_keys(r: _Reader, root: Path, default: Path | None) -> list[IniFile]:
    """Give every INI file POV-Ray reads its name in the upload."""
    out: list[IniFile] = []
    outside = 0
    libs = _library_dirs(r, root)
    for ini, (name, lib_literal) in zip(r.inis, r.ini_found, strict=True):
        if is_system_path(ini.path) or ini.path in (SYSTEM_INI, SYSTEM_INI_OLD):
            key = None  # the workers read their own
        elif ini.origin == "default INI":
            # ./povray.ini in the scene directory is the worker's default too.
            if ini.path == root / "povray.ini" and r.cwd == root:
                key = "povray.ini"
            else:
                key = f"{INI_PREFIX}/default-{_safe_name(ini.path.name)}"
        elif ini.top_level:
            if _inside(ini.path, root):
                key = _key(os.path.relpath(ini.path, root), "INI file name", ini.origin)
            else:
                outside += 1
                key = f"{INI_PREFIX}/{outside}-{_safe_name(ini.path.name)}"
        else:
            # Named inside another INI file: the worker reads that name as is.
            base = None
            if lib_literal is not None:
                base = next(lib for lib in libs if lib.path == r.abs(lib_literal))
            key = worker_key(name, ini.path, base, ini.origin, "INI file")
        out.append(IniFile(ini.literal, ini.path, ini.section, ini.origin, key, ini.top_level))
    return out


# Options the farm owns: dropped from the command line, neutralised when an INI
# file sets them. Subsets are the farm's too (it passes +SF/+EF per unit).
_DROP_SILENT = {
    "Display",
    "Video_Mode",
    "Palette",
    "Pause_When_Done",
    "Subset_Start_Frame",
    "Subset_End_Frame",
}


def _farm_args(
    r: _Reader,
    root: Path,
    scene: Path,
    inis: list[IniFile],
    libs: list[LibraryDir],
    width: int,
    height: int,
    warnings: list[str],
) -> list[str]:
    v = r.values
    by_path = {lib.path: lib for lib in libs}
    ini_iter = iter(inis)
    out: list[str] = []
    default = next((i for i in inis if i.origin == "default INI"), None)
    if default is not None and default.key is not None and default.key != "povray.ini":
        out.append(_quote(default.key))
    in_ini: set[str] = set()
    for item in r.items:
        ini = next(ini_iter) if item.kind == "ini" else None
        if not item.from_cl:
            in_ini.update(item.keys)
            continue
        keys = set(item.keys)
        if item.kind == "ini":
            assert ini is not None
            ref = ini.key if ini.key is not None else ini.literal
            out.append(_quote(ref + (f"[{ini.section}]" if ini.section is not None else "")))
        elif item.kind == "scene" or "Input_File_Name" in keys:
            continue  # the farm names the scene at the end
        elif item.kind == "library" or "Library_Path" in keys:
            lit = item.param if item.kind != "library" else item.text
            lib = by_path.get(r.abs(lit or ""))
            if lib is None or not lib.exists:
                continue
            out.append(
                "+L" + _quote(lib.remote if lib.remote is not None else lib.literal, _SWITCH_STOPS)
            )
        elif "Output_File_Name" in keys:
            warnings.append(
                f"command line: {item.text!r} names local frames only: the farm writes its own files"
            )
        elif "Output_File_Type" in keys or keys == {"Output_To_File"}:
            letter = (
                (item.param or "").lstrip(_SPACE)[:1].upper() if "Output_File_Type" in keys else "N"
            )
            if not _turned_on(item, "Output_To_File"):
                warnings.append(
                    f"command line: {item.text!r} dropped: the farm always writes PNG files"
                )
            elif letter != "N":
                warnings.append(f"command line: {item.text!r} dropped: the farm renders PNG")
            else:
                out.append(item.text)
        elif keys & set(_COMMANDS):
            warnings.append(
                f"command line: shell-out {item.text!r} dropped: the farm runs no commands"
            )
        elif keys & {"Create_Ini", "Continue_Trace", "Real_Time_Raytracing"}:
            if any(_turned_on(item, k) for k in keys):
                warnings.append(f"command line: {item.text!r} dropped: not available on the farm")
        elif keys & {name for name, _ in _STREAM_FILES}:
            warnings.append(
                f"command line: {item.text!r}: stream files stay on the worker; console output only"
            )
            if item.kind == "switch":
                out.append(
                    ("+" if item.on else "-") + next(lt for n, lt in _STREAM_FILES if n in keys)
                )
        elif keys & _DROP_SILENT:
            if any(_turned_on(item, k) for k in keys & {"Display", "Pause_When_Done"}):
                warnings.append(f"command line: {item.text!r} dropped: the farm has no display")
        elif "Include_Header" in keys:
            out.append(_include_header_arg(r, libs, item.param or "", item.origin))
        else:
            out.append(item.text)
    # Overrides: after everything, since the last setting wins.
    for lib in libs:
        if lib.origin == "command line" or not lib.exists or lib.remote is None:
            continue
        if os.path.isabs(lib.literal) or posixpath.normpath(lib.literal) != lib.remote:
            out.append("+L" + _quote(lib.remote, _SWITCH_STOPS))
    if "Include_Header" in in_ini and v.get("Include_Header"):
        out.append(_include_header_arg(r, libs, v["Include_Header"], "an INI file"))
    for name in _COMMANDS:
        if r.commands.get(name):
            warnings.append(f"{name}={r.commands[name]!r} neutralised: the farm runs no commands")
            out.append(f"{name}=")
    if "Create_Ini" in in_ini and v.get("Create_Ini"):
        warnings.append("Create_Ini neutralised: the farm writes no INI file")
        out.append("Create_Ini=")
    if v.get("Continue_Trace"):
        if "Continue_Trace" in in_ini:
            warnings.append("Continue_Trace neutralised: each frame renders from scratch")
        out.append("-C")
    if v.get("Real_Time_Raytracing"):
        out.append("-RTR")
    for name, _letter in _STREAM_FILES:
        path = v.get(name)
        if name in in_ini and path and (path.startswith("/") or ".." in path.split("/")):
            warnings.append(f"{name}={path!r} would write outside the working directory: reset")
            out.append(f"{name}=")
    if "Output_File_Type" in in_ini and v.get("Output_File_Type", "N") != "N":
        warnings.append(f"Output_File_Type={v['Output_File_Type']} replaced: the farm renders PNG")
    if "Output_To_File" in in_ini and v.get("Output_To_File") is False:
        warnings.append("Output_To_File=Off replaced: the farm always writes PNG files")
    out += [
        f"+W{width}",
        f"+H{height}",
        "-D",
        "-P",
        "+FN",
        "+I" + _quote(scene.name, _SWITCH_STOPS),
    ]
    return out


def _turned_on(item: _Item, key: str) -> bool:
    """Whether a command-line item switched ``key`` on (or set it to a value)."""
    if item.kind == "switch":
        return bool(item.on)
    row = _INI_TABLE.get(key.lower())
    if row is not None and row[2] == _BOOL:
        return _is_true(item.param or "")
    return bool(item.param)


def _include_header_arg(r: _Reader, libs: list[LibraryDir], literal: str, origin: str) -> str:
    found = find_file(literal, (".inc", ".INC"), r.cwd, libs)
    if found is None:
        raise SceneError(f"{origin}: Include_Header {literal!r} not found")
    key = worker_key(found[1], found[0], found[2], origin, "Include_Header")
    return "+HI" + _quote(key if key is not None else literal, _SWITCH_STOPS)


__all__ = [
    "Antialias",
    "IniFile",
    "Invocation",
    "LibraryDir",
    "Setting",
    "find_file",
    "is_system_path",
    "parse_invocation",
    "worker_key",
]
