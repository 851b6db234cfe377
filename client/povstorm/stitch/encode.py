"""The encode: the ffmpeg command that turns a job's frames into its video.

Called by the stitch (``povstorm.stitch.job``) once every frame is
downloaded; the container is ``povstorm.core.spec.container_for``'s.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from povstorm.core.errors import StitchFailed
from povstorm.core.spec import OutputSpec

FFMPEG = "ffmpeg"

_EVEN = "pad=ceil(iw/2)*2:ceil(ih/2)*2"  # yuv420p needs even sizes: pad, never crop
# codec -> ffmpeg's encoder options. Which containers a codec may go in is
# core/spec.py's CONTAINERS; gif needs none (it is encoded through a palette).
ENCODER_OPTIONS: dict[str, list[str]] = {
    "h264": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "medium"],
    # hvc1 is the tag Apple players want; x265 is chatty on stderr otherwise.
    "h265": [
        "-c:v",
        "libx265",
        "-pix_fmt",
        "yuv420p",
        "-tag:v",
        "hvc1",
        "-x265-params",
        "log-level=error",
    ],
    # -b:v 0 makes -crf a constant quality rather than a cap on a bitrate.
    "vp9": ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "0", "-row-mt", "1"],
    "prores": ["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le"],
    "gif": [],
}
CONTENT_TYPES = {
    "mp4": "video/mp4",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "mov": "video/quicktime",
    "gif": "image/gif",
}


def ffmpeg_command(output: OutputSpec, pattern: Path, dest: Path) -> list[str]:
    """Encode ``pattern`` (an image2 pattern numbered from 0) into ``dest``."""
    # -xerror: a frame that does not decode fails the encode instead of
    # silently leaving a gap in the video.
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-xerror", "-y"]
    cmd += ["-framerate", str(output.fps), "-start_number", "0", "-i", str(pattern)]
    if output.codec == "gif":
        # One palette for the whole clip: GIF has 256 colours per frame.
        cmd += ["-filter_complex", "[0:v]split[a][b];[a]palettegen[p];[b][p]paletteuse"]
    else:
        cmd += ["-vf", _EVEN, *ENCODER_OPTIONS[output.codec], "-crf", str(output.crf)]
        if dest.suffix in (".mp4", ".mov"):
            cmd += ["-movflags", "+faststart"]  # playable while it downloads
    cmd += ["-an", str(dest)]
    return cmd


def encode(output: OutputSpec, pattern: Path, dest: Path) -> None:
    proc = subprocess.run(
        ffmpeg_command(output, pattern, dest),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
    )
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exited with status {proc.returncode}"
        # "[png @ 0x55d0...] Invalid PNG signature" -> "png: Invalid PNG signature"
        last = re.sub(r"^\[(\S+) @ 0x[0-9a-f]+\] ", r"\1: ", last)
        raise StitchFailed(f"ffmpeg: {last}")
