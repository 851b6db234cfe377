"""The encode: the ffmpeg commands that turn a job's frames into its video.

Called by the stitch (``povstorm.stitch.job``) once every frame is
downloaded; the container is ``povstorm.core.spec.container_for``'s. The
options here are the one source of a job's encoder settings: the full encode
below and the segments of ``povstorm.stitch.segments`` (encoded by the render
workers, joined by the stitch) both take them from ``video_options`` and
``container_options``, so a joined video is encoded exactly as a full one.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from povstorm.core.errors import StitchFailed
from povstorm.core.spec import OutputSpec

FFMPEG = "ffmpeg"
# -xerror: a frame that does not decode fails the encode instead of silently
# leaving a gap in the video.
GLOBAL_OPTIONS = ["-hide_banner", "-nostdin", "-loglevel", "error", "-xerror", "-y"]

_EVEN = "pad=ceil(iw/2)*2:ceil(ih/2)*2"  # yuv420p needs even sizes: pad, never crop
# codec -> ffmpeg's encoder options. Which containers a codec may go in is
# core/spec.py's CONTAINERS; gif needs none (it is encoded through a palette).
# +cgop (closed GOPs) makes every key frame an IDR that nothing before it is
# referenced across; x264 closes its GOPs anyway (the flag changes no bit of
# its output), x265 would open them.
ENCODER_OPTIONS: dict[str, list[str]] = {
    "h264": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "medium", "-flags", "+cgop"],
    # x265 is chatty on stderr otherwise.
    "h265": [
        "-c:v",
        "libx265",
        "-pix_fmt",
        "yuv420p",
        "-x265-params",
        "log-level=error",
        "-flags",
        "+cgop",
    ],
    # -b:v 0 makes -crf a constant quality rather than a cap on a bitrate.
    "vp9": ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "0", "-row-mt", "1"],
    "prores": ["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le"],
    "gif": [],
}
# codec -> options of its stream in an mp4 or mov file: hvc1 is the tag Apple
# players want (a muxer's option: it does not go into a segment).
MOV_TAGS: dict[str, list[str]] = {"h265": ["-tag:v", "hvc1"]}
CONTENT_TYPES = {
    "mp4": "video/mp4",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "mov": "video/quicktime",
    "gif": "image/gif",
}


def input_options(output: OutputSpec, pattern: Path) -> list[str]:
    """Read ``pattern`` (an image2 pattern numbered from 0) at the job's fps:
    frame i has the timestamp i/fps."""
    return ["-framerate", str(output.fps), "-start_number", "0", "-i", str(pattern)]


def video_options(output: OutputSpec) -> list[str]:
    """How frames become the job's video stream: the even-size pad, the
    codec's encoder options and the crf (not for gif)."""
    return ["-vf", _EVEN, *ENCODER_OPTIONS[output.codec], "-crf", str(output.crf)]


def container_options(output: OutputSpec, ext: str) -> list[str]:
    """The final container's options: for mp4 and mov the codec's tag and
    +faststart (the index first, so the video plays while it downloads)."""
    if ext in ("mp4", "mov"):
        return [*MOV_TAGS.get(output.codec, []), "-movflags", "+faststart"]
    return []


def ffmpeg_command(output: OutputSpec, pattern: Path, dest: Path) -> list[str]:
    """Encode ``pattern`` (an image2 pattern numbered from 0) into ``dest``."""
    cmd = [FFMPEG, *GLOBAL_OPTIONS, *input_options(output, pattern)]
    if output.codec == "gif":
        # One palette for the whole clip: GIF has 256 colours per frame.
        cmd += ["-filter_complex", "[0:v]split[a][b];[a]palettegen[p];[b][p]paletteuse"]
    else:
        cmd += [*video_options(output), *container_options(output, dest.suffix.lstrip("."))]
    cmd += ["-an", str(dest)]
    return cmd


def run_ffmpeg(cmd: list[str]) -> None:
    """Run an ffmpeg command; StitchFailed with its last error line if it fails."""
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace"
    )
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exited with status {proc.returncode}"
        # "[png @ 0x55d0...] Invalid PNG signature" -> "png: Invalid PNG signature"
        last = re.sub(r"^\[(\S+) @ 0x[0-9a-f]+\] ", r"\1: ", last)
        raise StitchFailed(f"ffmpeg: {last}")


def encode(output: OutputSpec, pattern: Path, dest: Path) -> None:
    run_ffmpeg(ffmpeg_command(output, pattern, dest))
