"""The stitch's pure parts without the stack: the ffmpeg command, encoding
two tiny PNGs with real ffmpeg, and the job's stats. The whole stitch on the
emulators is in test_stitch.py."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from fixtures.common import probe_video

from povstorm.core.errors import StitchFailed
from povstorm.core.spec import OutputSpec
from povstorm.stitch.encode import encode, ffmpeg_command
from povstorm.stitch.job import summarise


@pytest.fixture
def two_frames(tmp_path: Path) -> Path:
    """Two 15x9 PNGs (odd on purpose) numbered from 0, as the stitch lays them out."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, colour in enumerate(("red", "blue")):
        subprocess.run(
            # lavfi's colour source rounds to even sizes; the scale makes it odd.
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"color=c={colour}:s=16x10",
             "-vf", "scale=15:9,format=rgb24", "-frames:v", "1", str(frames / f"{i:06d}.png")],
            check=True, capture_output=True,
        )  # fmt: skip
    return frames


def test_the_ffmpeg_command_reads_the_pattern_from_zero_and_pads_to_even_sizes() -> None:
    cmd = ffmpeg_command(OutputSpec(fps=12, crf=28), Path("f/%06d.png"), Path("v.mp4"))
    assert cmd[0] == "ffmpeg" and cmd[-2:] == ["-an", "v.mp4"]
    assert cmd[cmd.index("-framerate") + 1] == "12" and cmd[cmd.index("-start_number") + 1] == "0"
    assert cmd[cmd.index("-i") + 1] == "f/%06d.png" and "-xerror" in cmd
    assert cmd[cmd.index("-vf") + 1] == "pad=ceil(iw/2)*2:ceil(ih/2)*2"
    assert cmd[cmd.index("-c:v") + 1] == "libx264" and cmd[cmd.index("-crf") + 1] == "28"
    assert cmd[cmd.index("-movflags") + 1] == "+faststart"
    gif = ffmpeg_command(OutputSpec(codec="gif", format="gif"), Path("%06d.png"), Path("v.gif"))
    assert "-filter_complex" in gif and "-crf" not in gif and "-movflags" not in gif


def test_two_frames_encode_into_a_two_frame_video_padded_to_even_sizes(
    two_frames: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "video.mp4"
    encode(OutputSpec(fps=2), two_frames / "%06d.png", dest)
    stream = probe_video(dest)
    assert int(stream["nb_read_frames"]) == 2
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 16, 10)


def test_a_frame_ffmpeg_cannot_decode_fails_the_encode_with_one_line(
    two_frames: Path, tmp_path: Path
) -> None:
    (two_frames / "000001.png").write_bytes(b"not a png at all")
    with pytest.raises(StitchFailed) as raised:
        encode(OutputSpec(fps=2), two_frames / "%06d.png", tmp_path / "video.mp4")
    message = str(raised.value)
    assert message.startswith("ffmpeg: png: ") and "\n" not in message and "@ 0x" not in message


def test_summarise_reports_render_times_the_slowest_units_and_the_speedup() -> None:
    created = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    records = [
        {"unit": u, "frame": u + 1, "render_seconds": s, "cpu_seconds": 0.5,
         "peak_memory_bytes": 100 * (u + 1), "worker": f"w{u % 2}"}
        for u, s in enumerate([2.0, 1.0, 4.0, 3.0, 6.0, 5.0])
    ]  # fmt: skip
    records.append({"unit": 6, "render_seconds": None, "worker": ""})  # never stamped
    stats = summarise(records, created, created + dt.timedelta(seconds=7))
    assert stats["units"] == 7 and stats["wall_seconds"] == 7.0
    assert stats["render_seconds"] == {"total": 21.0, "min": 0.0, "p50": 3.0, "max": 6.0}
    assert [s["unit"] for s in stats["slowest"]] == [4, 5, 2, 3, 0]
    assert stats["slowest"][0] == {"unit": 4, "frame": 5, "render_seconds": 6.0, "worker": "w0"}
    assert stats["cpu_seconds"] == 3.0 and stats["peak_memory_bytes"] == 600
    assert stats["workers"] == 2 and stats["speedup"] == 3.0


def test_summarise_of_nothing_is_zeros_not_an_error() -> None:
    stats = summarise([], None, dt.datetime.now(dt.UTC))
    assert stats["units"] == 0 and stats["wall_seconds"] == 0.0 and stats["speedup"] == 0.0
    assert stats["render_seconds"] == {"total": 0.0, "min": 0.0, "p50": 0.0, "max": 0.0}
    assert stats["slowest"] == [] and stats["workers"] == 0
