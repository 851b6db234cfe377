"""Previews of a job's frames on the client: a contact sheet and a video of
the whole animation from the frames done so far.

Used by the proof pass (``client/proof.py``: its frames as a sheet), by
``povstorm preview JOB`` (a job still rendering: each missing frame is held
from the nearest done one, so the video already has the animation's length
and timing) and by a parameter sweep (``client/sweep.py``: one cell per
combination, its parameters written under it, as a sheet and as a video).
All run ffmpeg on this machine over files already downloaded.
"""

from __future__ import annotations

import bisect
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from povstorm.core.spec import OutputSpec
from povstorm.stitch.encode import (
    ENCODER_OPTIONS,
    FFMPEG,
    GLOBAL_OPTIONS,
    container_options,
    ffmpeg_command,
    run_ffmpeg,
)

# A sheet of at most this many frames, sampled evenly, each this many pixels wide at most.
SHEET_FRAMES = 64
THUMB_WIDTH = 160


def sample(count: int, most: int) -> list[int]:
    """At most ``most`` indices of ``range(count)``, spread evenly, first and last included."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def contact_sheet(
    frames: Sequence[Path],
    dest: Path,
    *,
    most: int = SHEET_FRAMES,
    labels: Sequence[str] = (),
) -> Path:
    """``frames`` (in order) as one PNG grid of thumbnails, at most ``most``
    of them sampled evenly, each with its label (``labels``, one per frame:
    the frame numbers) in a corner; StitchFailed with ffmpeg's error line.

    One ffmpeg run with one input per thumbnail: each is scaled, labelled and
    framed on its own, then the thumbnails are concatenated and tiled."""
    if not frames:
        raise ValueError("a contact sheet needs at least one frame")
    if labels and len(labels) != len(frames):
        raise ValueError("a contact sheet needs one label per frame")
    picked = sample(len(frames), most)
    columns = min(8, len(picked))
    rows = math.ceil(len(picked) / columns)
    inputs: list[str] = []
    chains: list[str] = []
    for i, index in enumerate(picked):
        inputs += ["-i", str(frames[index])]
        steps = [f"scale='min({THUMB_WIDTH},iw)':-2"]
        if labels:
            steps.append(_label(labels[index]))
        steps.append("pad=iw+4:ih+4:2:2:color=0x303030")
        chains.append(f"[{i}:v]{','.join(steps)}[t{i}]")
    joined = "".join(f"[t{i}]" for i in range(len(picked)))
    graph = ";".join(
        [*chains, f"{joined}concat=n={len(picked)}:v=1:a=0,tile={columns}x{rows}[sheet]"]
    )
    run_ffmpeg(
        [FFMPEG, *GLOBAL_OPTIONS, *inputs, "-filter_complex", graph, "-map", "[sheet]",
         "-frames:v", "1", "-update", "1", str(dest)]
    )  # fmt: skip
    return dest


def _label(text: str) -> str:
    """A drawtext step writing ``text`` (a frame number: digits and signs) in
    the thumbnail's top left corner, white on a dark box, sized to the
    thumbnail; the font is fontconfig's default sans."""
    safe = "".join(c for c in text if c.isalnum() or c in "-+.")
    return (
        f"drawtext=text='{safe}':x=3:y=3:fontsize='max(9,h/9)':fontcolor=white"
        ":box=1:boxcolor=black@0.6:boxborderw=2"
    )


def nearest(known: Sequence[int], unit: int) -> int:
    """The one of ``known`` (sorted, not empty) nearest ``unit``, the earlier
    one on a tie."""
    i = bisect.bisect_left(known, unit)
    if i == len(known):
        return known[-1]
    if known[i] == unit or i == 0:
        return known[i]
    before, after = known[i - 1], known[i]
    return before if unit - before <= after - unit else after


def held(done: Mapping[int, Path], units: int) -> list[Path]:
    """Every unit's frame: a done one's own, a missing one's nearest done
    (the earlier one on a tie). ``done`` must not be empty."""
    known = sorted(done)
    return [done[nearest(known, unit)] for unit in range(units)]


def preview_video(
    done: Mapping[int, Path], units: int, output: OutputSpec, dest: Path, *, most: int = 0
) -> Path:
    """A video of ``units`` frames at the job's fps from the ``done`` ones,
    missing frames held from the nearest done; with ``most``, at most that
    many frames sampled evenly (at a frame rate that keeps the length: the
    exact fraction, below 1 fps if need be)."""
    frames = held(done, units)
    rate = str(output.fps)
    if most and units > most:
        picked = sample(units, most)
        frames = [frames[i] for i in picked]
        rate = str(Fraction(output.fps * len(picked), units))
    with tempfile.TemporaryDirectory(prefix="povstorm-preview-") as tmp:
        for i, frame in enumerate(frames):
            (Path(tmp) / f"{i:06d}.png").symlink_to(Path(frame).resolve())
        cmd = ffmpeg_command(output, Path(tmp) / "%06d.png", dest)
        cmd[cmd.index("-framerate") + 1] = rate
        run_ffmpeg(cmd)
    return dest


# --- grids: a sweep's combinations side by side, each captioned under it -------

# A grid cell is as wide as its image, but at least the first (so a caption
# is readable under a tiny render) and at most the second (so 64 cells, 8 a
# row, stay a sheet a screen can show); no taller than the second either (a
# tall image is fitted inside, centred).
CELL_WIDTH = (160, 320)
CAPTION_FONT = 13  # pixels; smaller, down to CAPTION_FONT_MIN, for a long NAME=value
CAPTION_FONT_MIN = 9
# DejaVu Sans (fontconfig's default sans) advances digits by 0.64 em, most
# letters by less: a line of n characters fits in n * 0.64 * size pixels.
EM_ADVANCE = 0.64
BORDER = 2  # pixels around each cell, as the contact sheet has
CELL_COLOR = "0x303030"
STRIP_COLOR = "0x202020"
FAILED = "failed"


@dataclass(frozen=True)
class Grid:
    """Where a grid's cells go: each cell's image scaled to ``cell`` (even
    sizes, for yuv420p) from ``source`` (the size POV-Ray rendered: a job's
    video is padded to even sizes and is cropped back to it), its caption
    (``captions``: lines joined by newlines, "" for none) in a strip of
    ``strip`` pixels under it, ``columns`` cells a row, in order."""

    source: tuple[int, int]
    cell: tuple[int, int]
    columns: int
    captions: tuple[str, ...]
    font: int
    strip: int

    @classmethod
    def of(cls, source: tuple[int, int], captions: Sequence[str], columns: int) -> Grid:
        """The grid of ``len(captions)`` cells of images ``source`` big, the
        caption font and strip sized so every caption fits its cell's width
        (wrapped between words, ``NAME=value`` each, if it must)."""
        if not captions:
            raise ValueError("a grid needs at least one cell")
        width, height = source
        cell_w = _even(min(max(width, CELL_WIDTH[0]), CELL_WIDTH[1]))
        cell_h = min(CELL_WIDTH[1], max(2, _even(round(cell_w * height / width))))
        font, wrapped = _fit(captions, cell_w)
        lines = max(len(w) for w in wrapped)
        strip = _even(lines * (round(font * 1.17) + 2) + 6) if lines else 0
        return cls(
            source=source,
            cell=(cell_w, cell_h),
            columns=max(1, min(columns, len(captions))),
            captions=tuple("\n".join(w) for w in wrapped),
            font=font,
            strip=strip,
        )

    @property
    def rows(self) -> int:
        return math.ceil(len(self.captions) / self.columns)

    @property
    def pitch(self) -> tuple[int, int]:
        """A cell's size on the grid: its image, its caption strip, its border."""
        return self.cell[0] + 2 * BORDER, self.cell[1] + self.strip + 2 * BORDER

    @property
    def size(self) -> tuple[int, int]:
        return self.columns * self.pitch[0], self.rows * self.pitch[1]

    def origin(self, index: int) -> tuple[int, int]:
        """The top left corner of cell ``index`` (its border's)."""
        row, column = divmod(index, self.columns)
        return column * self.pitch[0], row * self.pitch[1]


def grid_sheet(grid: Grid, cells: Sequence[Path | None], dest: Path) -> Path:
    """One PNG of ``grid``: each cell's image (a PNG; None: a cell that says
    "failed"), its caption under it; StitchFailed with ffmpeg's error line."""
    with tempfile.TemporaryDirectory(prefix="povstorm-grid-") as tmp:
        inputs, graph = _grid_graph(grid, cells, Path(tmp))
        run_ffmpeg(
            [FFMPEG, *GLOBAL_OPTIONS, *inputs, "-filter_complex", graph, "-map", "[grid]",
             "-frames:v", "1", "-update", "1", str(dest)]
        )  # fmt: skip
    return dest


def grid_video(
    grid: Grid, cells: Sequence[Path | None], output: OutputSpec, frames: int, dest: Path
) -> Path:
    """A video of ``grid``: each cell a video of ``frames`` frames at
    ``output.fps`` (None: "failed" for as long), captioned, side by side, as
    many frames long, encoded as ``output`` says (the jobs' own codec and
    crf: stitch/encode.py's options)."""
    with tempfile.TemporaryDirectory(prefix="povstorm-grid-") as tmp:
        inputs, graph = _grid_graph(grid, cells, Path(tmp), fps=output.fps, frames=frames)
        if output.codec == "gif":
            # One palette for the whole clip, as a job's own gif.
            graph += ";[grid]split[a][b];[a]palettegen[p];[b][p]paletteuse[out]"
            encoder: list[str] = ["-map", "[out]"]
        else:
            ext = dest.suffix.lstrip(".")
            encoder = ["-map", "[grid]", *ENCODER_OPTIONS[output.codec], "-crf", str(output.crf),
                       *container_options(output, ext)]  # fmt: skip
        run_ffmpeg(
            [FFMPEG, *GLOBAL_OPTIONS, *inputs, "-filter_complex", graph, *encoder,
             "-frames:v", str(frames), "-an", str(dest)]
        )  # fmt: skip
    return dest


def _grid_graph(
    grid: Grid,
    cells: Sequence[Path | None],
    tmp: Path,
    *,
    fps: int | None = None,
    frames: int | None = None,
) -> tuple[list[str], str]:
    """ffmpeg's inputs and the filter graph drawing ``grid`` into ``[grid]``.

    Each cell on its own: cropped to the rendered size, scaled to fit the
    cell (nearest neighbour when enlarged, so a tiny render's pixels stay
    pixels) and centred in it, the
    caption strip padded under it and the caption drawn from a file (no
    escaping: drawtext reads the file's text as it is, ``expansion=none``),
    the border; then the cells are stacked (xstack) at their origins. A
    failed cell is a colour source saying so. Every cell ends as rgb24: the
    stack needs one pixel format."""
    if len(cells) != len(grid.captions):
        raise ValueError("a grid needs one cell per caption")
    (src_w, src_h), (cell_w, cell_h) = grid.source, grid.cell
    enlarged = cell_w > src_w
    inputs: list[str] = []
    chains: list[str] = []
    for i, cell in enumerate(cells):
        if cell is None:
            timing = f":r={fps}:d={frames / fps}" if fps and frames else ""
            steps = [
                f"color=c={CELL_COLOR}:s={cell_w}x{cell_h}{timing}",
                f"drawtext=text={FAILED}:fontsize={grid.font + 2}:fontcolor=0xff8080"
                ":x=(w-tw)/2:y=(h-th)/2",
            ]
        else:
            steps = [
                f"[{len(inputs) // 2}:v]crop=w='min(iw,{src_w})':h='min(ih,{src_h})':x=0:y=0",
                f"scale={cell_w}:{cell_h}:force_original_aspect_ratio=decrease"
                f":flags={'neighbor' if enlarged else 'area'}",
                "setsar=1",
                f"pad={cell_w}:{cell_h}:(ow-iw)/2:(oh-ih)/2:color={CELL_COLOR}",
            ]
            inputs += ["-i", str(cell)]
        steps.append(f"pad=iw:ih+{grid.strip}:0:0:color={STRIP_COLOR}")
        if grid.captions[i]:
            text = tmp / f"caption-{i}.txt"
            text.write_text(grid.captions[i], encoding="utf-8")
            steps.append(
                f"drawtext=textfile='{text}':expansion=none:fontsize={grid.font}"
                f":fontcolor=white:line_spacing=2:x=(w-tw)/2:y={cell_h}+({grid.strip}-th)/2"
            )
        steps += [f"pad=iw+{2 * BORDER}:ih+{2 * BORDER}:{BORDER}:{BORDER}:color={CELL_COLOR}"]
        steps.append("format=rgb24")
        chains.append(",".join(steps) + f"[c{i}]")
    trim = f",trim=end_frame={frames}" if frames else ""
    if len(cells) == 1:
        stack = f"[c0]null{trim}[grid]"
    else:
        layout = "|".join(f"{x}_{y}" for x, y in map(grid.origin, range(len(cells))))
        joined = "".join(f"[c{i}]" for i in range(len(cells)))
        stack = f"{joined}xstack=inputs={len(cells)}:layout={layout}:fill={CELL_COLOR}{trim}[grid]"
    return inputs, ";".join([*chains, stack])


def _even(n: int) -> int:
    return n + n % 2


def _fit(captions: Sequence[str], width: int) -> tuple[int, list[list[str]]]:
    """The largest font (CAPTION_FONT down to CAPTION_FONT_MIN) at which every
    word of every caption fits ``width``, and each caption wrapped at it
    between words (a word still too long at the smallest font is clipped)."""
    words = [c.split() for c in captions]
    longest = max((len(w) for ws in words for w in ws), default=0)
    font = CAPTION_FONT
    while font > CAPTION_FONT_MIN and longest * font * EM_ADVANCE > width - 4:
        font -= 1
    budget = max(1, int((width - 4) / (font * EM_ADVANCE)))
    wrapped = []
    for ws in words:
        lines: list[str] = []
        for w in ws:
            if lines and len(lines[-1]) + 1 + len(w) <= budget:
                lines[-1] += f" {w}"
            else:
                lines.append(w)
        wrapped.append(lines)
    return font, wrapped
