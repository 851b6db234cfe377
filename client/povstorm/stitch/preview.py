"""Previews of a job's frames on the client: a contact sheet and a video of
the whole animation from the frames done so far.

Used by the proof pass (``client/proof.py``: its frames as a sheet) and by
``povstorm preview JOB`` (a job still rendering: each missing frame is held
from the nearest done one, so the video already has the animation's length
and timing). Both run ffmpeg on this machine over frames already downloaded.
"""

from __future__ import annotations

import bisect
import math
import tempfile
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

from povstorm.core.spec import OutputSpec
from povstorm.stitch.encode import FFMPEG, GLOBAL_OPTIONS, ffmpeg_command, run_ffmpeg

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
