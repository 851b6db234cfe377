"""Read what POV-Ray printed: its own time and memory figures, and its error
on one line."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

LOG_TAIL_LINES = 50

_SECONDS_RE = re.compile(
    r"^\s*(Parse|Bounding|Photon|Radiosity|Trace) Time:.*\((\d+(?:\.\d+)?) seconds\)", re.M
)
_PEAK_MEMORY_RE = re.compile(r"Peak memory used:\s*([\d,]+)\s*bytes", re.I)
# A "Possible Parse Error" is a warning in a render that may well succeed.
_ERROR_RE = re.compile(r"^(?!.*Possible Parse Error).*\bError:", re.I)
_FALLBACK_ERROR_RE = re.compile(r"\b(error|failed|cannot|unable)\b", re.I)


def parse_stats(output: str) -> tuple[float | None, int | None]:
    """(seconds POV-Ray spent parsing, bounding, shooting photons, radiosity
    and tracing; its peak memory) as it printed them, None where it did not."""
    times = [float(m[2]) for m in _SECONDS_RE.finditer(output)]
    seconds = sum(times) if times else None
    m = _PEAK_MEMORY_RE.search(output)
    peak = int(m[1].replace(",", "")) if m else None
    return seconds, peak


def parse_seconds(output: str) -> float | None:
    """The seconds POV-Ray spent parsing, as it printed them: the part of a
    frame's time that does not grow with its size (client/proof.py)."""
    for m in _SECONDS_RE.finditer(output):
        if m[1] == "Parse":
            return float(m[2])
    return None


# What antialiasing costs on top of a plain trace, for the estimates scaled
# from a render without it (the parse check's, a proof's): POV-Ray's adaptive
# supersampling took 1.6 times a plain trace on examples/spinning at 640x480
# (0.81 s against 0.50 s of trace); more on sharper scenes.
AA_FACTOR = 1.6


def full_size_seconds(output: str, pixel_ratio: float, antialias: bool) -> float | None:
    """A frame's seconds at its full size, from POV-Ray's output of its render
    at ``1 / pixel_ratio`` of the pixels without antialiasing: the parse,
    bounding and photons as they were (they do not grow with the pixels), its
    radiosity and trace times the pixels, and the antialiasing, the full frame
    has more. None if the output has no trace time (the frame did not end)."""
    times = {m[1]: float(m[2]) for m in _SECONDS_RE.finditer(output)}
    if "Trace" not in times:
        return None
    fixed = sum(times.get(k, 0.0) for k in ("Parse", "Bounding", "Photon"))
    return scaled_seconds(
        fixed, times.get("Radiosity", 0.0) + times["Trace"], pixel_ratio, antialias
    )


def scaled_seconds(fixed: float, grows: float, pixel_ratio: float, antialias: bool) -> float:
    """A frame's seconds at ``pixel_ratio`` times the pixels of a render
    without antialiasing that took ``fixed`` seconds that do not grow with
    the pixels and ``grows`` that do; with ``antialias``, AA_FACTOR on top."""
    return fixed + grows * pixel_ratio * (AA_FACTOR if antialias else 1.0)


def error_line(output: str, *, fallback: bool = True) -> str:
    """POV-Ray's own error, on one line: ``File 'x.pov' line 3: Parse Error: ...``.

    POV-Ray wraps its messages at 80 columns, continuing them on lines that
    start with a space; those are joined back. With no ``Error:`` line, the
    first line that speaks of a failure (unless ``fallback`` is False)."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if _ERROR_RE.search(line):
            parts = [line.strip()]
            for cont in lines[i + 1 : i + 4]:
                if not cont.startswith(" ") or not cont.strip():
                    break
                parts.append(cont.strip())
            return " ".join(parts)
    if not fallback:
        return ""
    for line in lines:
        # Skip the option dump, which names streams, not errors.
        if (
            _FALLBACK_ERROR_RE.search(line)
            and "Stream" not in line
            and "configuration file" not in line
        ):
            return line.strip()
    return ""


def tail(output: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(output.splitlines()[-lines:])


_FRAME_MARK_RE = re.compile(r"^Rendering frame (\d+) of \d+", re.M)


def frame_sections(output: str) -> tuple[str, list[str]]:
    """POV-Ray's output of an animation, split by frame: (what it printed
    before the first frame, [what it printed for each frame of the run, in
    order]). POV-Ray numbers the frames of a run from 1 ("Rendering frame 2
    of 12") and prints the mark twice; a frame's part runs to the next
    frame's mark. Output with no mark is all preamble."""
    starts: list[int] = []
    for m in _FRAME_MARK_RE.finditer(output):
        if int(m[1]) == len(starts) + 1:
            starts.append(m.start())
    return _split(output, starts)


def _split(output: str, starts: list[int]) -> tuple[str, list[str]]:
    if not starts:
        return output, []
    ends = [*starts[1:], len(output)]
    return output[: starts[0]], [output[a:b] for a, b in zip(starts, ends, strict=True)]


class GrowingOutput:
    """POV-Ray's output of a running animation, read from its log file a piece
    at a time and split by frame as ``frame_sections`` splits it. Each look
    reads only what POV-Ray wrote since the last one and finds the frame marks
    in that: at 1280x960 POV-Ray prints some 50 kB of progress a frame, and
    splitting the whole output again at every look (20 a second) cost the
    worker about as much CPU as a tenth of the render."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0  # bytes read so far
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []
        self._size = 0  # characters read so far
        self._line = ""  # the last line, not ended yet: a mark in it is not scanned yet
        self._starts: list[int] = []
        self._ended = 0  # where the last frame-end line was found (0: none)

    @property
    def frames_begun(self) -> int:
        """How many frames of the run POV-Ray has begun so far."""
        return len(self._starts)

    @property
    def last_frame_ended(self) -> bool:
        """Whether POV-Ray has printed the figures of the latest frame it began
        (its trace time): that frame's part of the output is complete."""
        return bool(self._starts) and self._ended > self._starts[-1]

    def read(self, final: bool = False) -> None:
        """Take in what POV-Ray wrote since the last look; ``final``: it has
        exited, so its last line is complete even without a newline."""
        try:
            with open(self._path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            data = b""
        self._offset += len(data)
        text = self._decoder.decode(data, final=final)
        base = self._size - len(self._line)
        scan = self._line + text
        cut = len(scan) if final else scan.rfind("\n") + 1
        for m in _FRAME_MARK_RE.finditer(scan, 0, cut):
            if int(m[1]) == len(self._starts) + 1:
                self._starts.append(base + m.start())
        # A frame's "Trace Time" is the last of its own figures, printed as its
        # image is written; POV-Ray's exit comes some 0.3 s later.
        for m in _SECONDS_RE.finditer(scan, 0, cut):
            if m[1] == "Trace":
                self._ended = base + m.start()
        self._line = scan[cut:]
        if text:
            self._parts.append(text)
            self._size += len(text)

    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def sections(self) -> tuple[str, list[str]]:
        """(preamble, [each begun frame's part]) of what has been read so far."""
        return _split(self.text(), self._starts)


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def png_complete(path: Path) -> bool:
    """Whether POV-Ray has finished writing a PNG: it ends with the IEND chunk."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() < 8 + len(_PNG_END):
                return False
            f.seek(-len(_PNG_END), 2)
            return f.read() == _PNG_END
    except OSError:
        return False
