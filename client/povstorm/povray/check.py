"""The parse check: run the local ``povray`` on a scene before anything is
uploaded, so a scene POV-Ray cannot parse fails on the client in about a
second, with POV-Ray's own error line, instead of on every frame of the farm.

Where it sits: after ``parse.parse_invocation`` and ``scan.collect_inputs``,
before the client uploads (``client/job.py: Job.from_ini``, and the CLI's
``render`` before it connects to a stack); ``--no-check`` (``check=False``)
skips it.

What it runs is what a worker runs, made cheap: a working directory in a
temporary directory holding a link to each file of the upload under its name
there (so POV-Ray sees exactly the files the farm would, and nothing it
writes lands beside the user's scene), ``Invocation.farm_args`` with the
frame's ``+SF f +EF f``, then a small size (``check_size``), ``-A +WT1
+GA`` (no antialiasing, one thread, every console stream on so the markers
below are printed), through ``PovrayProcess``: confined as on the farm (it may read
the linked files' directories, write only in the temporary directory), no
display, no pause, output into the temporary directory.

Which frames: the first, and the last too, at the same time (each POV-Ray
idles most of its start). A clock-dependent error often shows at an end of
the clock (an index ``clock * N`` out of range at clock 1, a division by
zero at clock 0); one in between is left to the farm (the proof pass). A
frame is *parsed* as soon as POV-Ray prints its parser statistics, starts
rendering, writes the image or exits 0.

The estimate: a still is checked at 8x8 and killed once parsed. The frames of
an animation are rendered to the end of their trace at about ESTIMATE_PIXELS
pixels (the frame's shape kept: 113x85 for 320x240 or 1280x960), which POV-Ray
prints some 0.06 s after its parse at examples/spinning's, and that render is
scaled to the frame's full size (``output.full_size_seconds``: the trace by
the pixels and the antialiasing the frame has more, the parse as it was). It
is the first render of a scene the farm has not seen: the chunk plan of such
a job starts from it (``Job.estimate``, core/chunks.py), where it would
otherwise know nothing, and a factor of two either way is all the plan
needs: it decides between one chunk a slot and a guided plan (measured on
examples/spinning at 320x240: 0.19-0.27 s a frame against 0.37-0.45 s of
POV-Ray's own time for the frame rendered whole; antialiasing costs that
small image 4 times a plain trace, not the 1.6 of 640x480). Frames not traced within the budget give no
estimate, and neither does an animation rendering a part of its frame
(``+SR/+ER/+SC/+EC``), whose small render might hang on bounds that do not
fit it.

Verdicts: a frame whose POV-Ray prints ``Fatal error in parser`` fails the
check: ``SceneError`` with POV-Ray's error line (its file names given as the
user's paths). Everything else passes: every frame parsed; the budget
(``CHECK_SECONDS``) spent while a heavy scene still parses (never block a
valid scene); POV-Ray ending for another reason (the farm will say); no
``povray`` on this machine, or one of another version than the farm's (its
verdict might not be the farm's). Those are logged at debug level only.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from povstorm.core.errors import PovstormError, SceneError
from povstorm.povray.invocation import Invocation
from povstorm.povray.output import error_line, full_size_seconds
from povstorm.povray.process import POVRAY, PovrayProcess
from povstorm.povray.tiles import SUBSET_OPTIONS

log = logging.getLogger(__name__)

# Wall seconds the check may take before it lets a scene still parsing pass.
CHECK_SECONDS = 2.5
# After the farm's arguments and the size, so they win: no antialiasing, one
# thread, every console stream on (an INI's All_Console=off would hide the
# markers and the error).
CHECK_OPTIONS = ("-A", "+WT1", "+GA")
STILL_SIZE = (8, 8)  # a still's check is a parse: the smallest image
# About how many pixels an animation's frames are rendered at for the
# estimate: 0.008-0.015 s of trace for examples/spinning, in POV-Ray's
# milliseconds; 0.06 s more than a parse alone.
ESTIMATE_PIXELS = 9600
# The farm's POV-Ray (options.py): another version's verdict is not the farm's.
FARM_VERSION = "3.7"
_POLL_SECONDS = 0.05
_EXIT_SECONDS = 1.0  # for a POV-Ray that has failed to exit by itself

_PARSE_FAILED = "Fatal error in parser"
_TRACED = "Trace Time:"  # the last of a frame's figures, printed as its image is written
# What POV-Ray prints once a frame's parse is over (bounding included).
_PARSED = ("Parser Statistics", "Parse Time:", "==== [Rendering")
_VERSION_RE = re.compile(r"Ray Tracer Version (\d+\.\d+)")
_FILE_RE = re.compile(r"File '([^']*)'")


@dataclass(frozen=True)
class ParseCheck:
    """What the check found when it did not fail.

    ``outcome``: "parsed" (every frame checked got past its parse),
    "undecided" (a frame was still parsing when the budget was spent, or its
    POV-Ray ended with no verdict) or "skipped" (no local ``povray``, or another
    version than the farm's)."""

    outcome: str
    frames: tuple[int, ...]
    seconds: float
    detail: str = ""
    # Each checked frame's seconds at its full size, in the order of
    # ``frames``: () unless every one was traced within the budget.
    estimate: tuple[float, ...] = ()


def check_size(inv: Invocation) -> tuple[int, int]:
    """The size the check renders at: a still's, tiny; an animation's, about
    ESTIMATE_PIXELS in the frame's shape, never larger than the frame."""
    if not _timed(inv):
        return STILL_SIZE
    scale = min(1.0, (ESTIMATE_PIXELS / (inv.width * inv.height)) ** 0.5)
    return max(1, round(inv.width * scale)), max(1, round(inv.height * scale))


def _timed(inv: Invocation) -> bool:
    """Whether the check times its frames for an estimate (see the module's doc)."""
    return inv.animated and not any(k in inv.options for k in SUBSET_OPTIONS)


def check_frames(inv: Invocation) -> tuple[int, ...]:
    """The frames the check parses: the first and the last (one for a still)."""
    frames = inv.frame_range()
    first, last = frames.first, frames.frame(len(frames) - 1)
    return (first,) if first == last else (first, last)


def check_parse(
    inv: Invocation, files: Mapping[str, Path], *, budget: float = CHECK_SECONDS
) -> ParseCheck:
    """Parse the scene of ``inv`` with the local ``povray``, with the files of
    the upload (``files``: name in the working directory -> local file).
    Raises ``SceneError`` with POV-Ray's error line if it cannot parse a frame
    checked; otherwise says what it found (see ``ParseCheck``)."""
    started = time.monotonic()
    frames = check_frames(inv)
    if shutil.which(POVRAY) is None:
        log.debug("parse check skipped: no %s on this machine", POVRAY)
        return ParseCheck("skipped", (), 0.0, f"no {POVRAY}")
    tmp = Path(tempfile.mkdtemp(prefix="povstorm-check-"))
    runs: list[_Run] = []
    width, height = check_size(inv)
    ratio = (inv.width * inv.height) / (width * height) if _timed(inv) else 0.0
    try:
        workdir = tmp / "work"
        try:
            reads = _link_inputs(files, workdir)
            for frame in frames:
                args = [*inv.farm_args]
                if inv.animated:
                    args += [f"+SF{frame}", f"+EF{frame}"]
                args += [f"+W{width}", f"+H{height}", *CHECK_OPTIONS]
                proc = PovrayProcess(args, workdir, tmp / f"out-{frame}", read=reads)
                runs.append(_Run(frame, proc.start(), ratio, inv.antialias.enabled))
        except (OSError, PovstormError) as exc:
            log.debug("parse check skipped: cannot run %s: %s", POVRAY, exc)
            return ParseCheck("skipped", (), time.monotonic() - started, str(exc))
        deadline = started + budget
        while True:
            for run in runs:
                run.look()
            failed = next((r for r in runs if r.verdict == "error"), None)
            pending = [r for r in runs if r.verdict is None or r.timing]
            now = time.monotonic()
            if failed is not None or not pending or now >= deadline:
                break
            pending[0].proc.wait(min(_POLL_SECONDS, deadline - now))
        if failed is not None:
            # POV-Ray prints its error and its fatal line through two streams:
            # let it exit by itself so that all of it is in the log.
            failed.proc.wait(_EXIT_SECONDS)
        for run in runs:
            run.stop()
            run.time(ended=True)  # what it printed until it was stopped
        seconds = time.monotonic() - started
        if failed is not None:
            version = failed.version()
            if version and version != FARM_VERSION:
                log.debug(
                    "parse check skipped: the local POV-Ray is %s, the farm's %s; it said %s",
                    version,
                    FARM_VERSION,
                    failed.error(),
                )
                return ParseCheck("skipped", frames, seconds, f"local POV-Ray {version}")
            where = f" at frame {failed.frame}" if inv.animated else ""
            message = _user_names(failed.error(), files, workdir, inv.cwd)
            raise SceneError(f"POV-Ray cannot parse {_shown(inv.scene, inv.cwd)}{where}: {message}")
        open_runs = [r for r in runs if r.verdict != "parsed"]
        if not open_runs:
            timed = [r.estimate for r in runs]
            # (0.0 is an estimate: POV-Ray prints 0.000 s for a tiny frame.)
            estimate = tuple(t for t in timed if t is not None) if None not in timed else ()
            log.debug(
                "parse check passed in %.2f s (frames %s, estimate %s)", seconds, frames, estimate
            )
            return ParseCheck("parsed", frames, seconds, estimate=estimate)
        detail = "; ".join(f"frame {r.frame}: {r.why}" for r in open_runs)
        log.debug("parse check passed undecided in %.2f s: %s", seconds, detail)
        return ParseCheck("undecided", frames, seconds, detail)
    finally:
        for run in runs:
            run.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class _Run:
    """One POV-Ray process of the check, watched until it has a verdict:
    None (still parsing), "parsed", "error" or "ended" (exited otherwise);
    with a ``ratio`` of pixels, a parsed frame then until its trace ends,
    for its ``estimate`` (seconds at the full size)."""

    def __init__(self, frame: int, proc: PovrayProcess, ratio: float, antialias: bool) -> None:
        self.frame = frame
        self.proc = proc
        self.ratio = ratio
        self.antialias = antialias
        self.estimate: float | None = None
        self._traced = False  # its "Trace Time:" seen (the line may not be whole yet)
        self.verdict: str | None = None
        self.why = "still parsing when the budget was spent"
        self._offset = 0
        self._seen = ""  # the end of what was read, for a marker cut in two
        self._output = ""
        self._reaped = False

    @property
    def timing(self) -> bool:
        """Parsed, and still to be timed: its trace has not ended yet."""
        return self.verdict == "parsed" and self.ratio > 0 and self.estimate is None

    def look(self) -> None:
        if self.verdict is not None and not self.timing:
            return
        exited = self.proc.exited()  # before reading: all it printed is then read
        new = self._read()
        text = self._seen + new
        self._seen = text[-64:]
        if self.verdict is None:
            if _PARSE_FAILED in text:
                self.verdict = "error"
            elif any(m in text for m in _PARSED) or any(self.proc.outdir.glob("*.png")):
                self.verdict = "parsed"
            elif exited:
                self.stop()
                if self.proc.proc is not None and self.proc.proc.returncode == 0:
                    self.verdict = "parsed"
                else:
                    self.verdict = "ended"
                    tail = self._output.strip().splitlines()[-1:] or ["no output"]
                    self.why = f"POV-Ray ended without a parse verdict ({tail[0].strip()})"
        if self.timing and _TRACED in text:
            self._traced = True
        self.time(exited)

    def time(self, ended: bool) -> None:
        """Its estimate, once its trace time's line is whole; none if it ended
        without one (``ended``: it exited, or it was stopped)."""
        if self.timing and (self._traced or ended):
            self.estimate = full_size_seconds(self._output, self.ratio, self.antialias)
            if self.estimate is None and ended:
                self.ratio = 0.0

    def _read(self) -> str:
        try:
            with open(self.proc.logfile, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return ""
        self._offset += len(data)
        text = data.decode("utf-8", errors="replace")
        self._output += text
        return text

    def stop(self) -> None:
        """Kill the process group at once (a check has no frame to finish) and reap it."""
        if not self._reaped:
            self._reaped = True
            self.proc.kill()  # SIGTERM; finish() follows with SIGKILL and reaps
            self.proc.finish()
            self._read()

    def version(self) -> str:
        m = _VERSION_RE.search(self._output)
        return m[1] if m else ""

    def error(self) -> str:
        return parse_error(self._output)


def parse_error(output: str) -> str:
    """POV-Ray's parse error on one line, from what one check run printed.

    Its ``Error:`` line is searched in the whole log, not only after the
    "Parsing" banner: the front end prints the banner and the parser's
    messages as they reach it, and under load the banner can land after the
    error. Only a log with no such line falls back to the fatal line."""
    strict = error_line(output, fallback=False)
    if strict:
        return strict
    lines = [line.strip() for line in output.splitlines() if _PARSE_FAILED in line]
    return lines[0] if lines else error_line(output) or _PARSE_FAILED


def _link_inputs(files: Mapping[str, Path], workdir: Path) -> list[Path]:
    """Link each file under its name in ``workdir``; returns the directories
    POV-Ray must be allowed to read for the links to open (the kernel checks
    the file a link resolves to)."""
    workdir.mkdir(parents=True)
    dirs: set[Path] = set()
    for name, path in files.items():
        real = Path(os.path.realpath(path))
        link = workdir / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(real)
        dirs.add(real.parent)
    ordered = sorted(dirs, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for d in ordered:
        if not any(d.is_relative_to(k) for k in kept):
            kept.append(d)
    return kept


def _shown(path: Path, cwd: Path) -> str:
    """``path`` as the user would name it: relative to ``cwd`` when inside it."""
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


def _user_names(message: str, files: Mapping[str, Path], workdir: Path, cwd: Path) -> str:
    """POV-Ray names files by their names in the working directory; give the
    user's paths instead (``File 'top.inc'`` -> ``File 'scenes/top.inc'``)."""
    message = message.replace(f"{workdir}/", "")

    def local(m: re.Match[str]) -> str:
        path = files.get(m[1])
        return f"File '{_shown(Path(path).absolute(), cwd)}'" if path is not None else m[0]

    return _FILE_RE.sub(local, message)


__all__ = [
    "CHECK_OPTIONS",
    "CHECK_SECONDS",
    "ParseCheck",
    "check_frames",
    "check_parse",
    "check_size",
    "parse_error",
]
