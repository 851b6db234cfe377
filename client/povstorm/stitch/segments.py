"""Video segments: runs of a job's frames, encoded where they were rendered
and joined by the stitch without re-encoding.

A render worker that has rendered units a..b of a job encodes their frames
with ``encode_segment`` and uploads the file as
``core.naming.segment_object(job, a, b, segment_ext(spec.output))``. The
stitch (``stitch.job``) lists the job's segments, chooses with ``cover``
which of them make up units 0..units-1 (encoding what no segment covers from
the frames, as a segment too) and ``join_segments`` them into the video:
ffmpeg's concat demuxer with stream copy, which moves packets and decodes
none: a fraction of a second for 10,000 frames (``python -m bench.segments``).

Why the joined video is exactly the full encode's
-------------------------------------------------
* Each segment is its own encoder run with the full encode's options
  (``encode.video_options``: the pad, the codec's options, the crf). It starts
  on a key frame (an IDR for x264 and x265) and, GOPs being closed, none of
  its frames refers outside it: the joined stream decodes to the frames of
  the segments, in order.
* Segments are NUT files, ffmpeg's own container, chosen by measuring (ffmpeg
  5.1; 30 frames in segments of 10, 1, 12 and 7 frames, fps 1, 7, 24 and 240):
  NUT keeps each stream's time base as a fraction (the fps times a power of
  two), both pts and dts (B-frames) and every codec here, so frame i of the
  joined video is at exactly i/fps, and the joined mp4, mov, mkv and webm
  carry the full encode's timestamps to the tick. The others lose it:
  Matroska and WebM segments round every timestamp to a millisecond, so a
  later segment's frames land up to 1 ms off; MPEG-TS counts 90 kHz ticks,
  inexact at 7 fps, and takes neither vp9 nor prores; MP4 and MOV keep exact
  tracks but state the file's length in the movie header's milliseconds,
  which the concat demuxer takes as the offset of the next file.
* No container states a length the concat demuxer can use as is (a NUT
  file's is its last frame's pts: one frame short, and the join then lost two
  frames), so the join states each file's ``duration``: its frame count over
  the fps, in microseconds rounded on the running total, so rounding never
  adds up and every offset rescales to a whole tick of the stream.
* ``-avoid_negative_ts disabled``: a segment's first frame is at pts 0 (by
  default NUT shifts a segment by its B-frame delay so that dts starts at 0).
* The join states what NUT does not carry, as the full encode writes it:
  progressive frames, limited ("tv") colour range and, in mp4 and mov, the
  track timescale the mov muxer gives an encode (the fps doubled up to 10000
  or more), with the container's own options (``encode.container_options``:
  h265's hvc1 tag, +faststart). ffprobe then describes the joined stream as
  the full encode's.
* The join reads back the timestamp of every packet it wrote (demuxing only,
  no frame is decoded) and fails unless frame i is at i/fps, each once: a
  segment that does not hold the frames its name says cannot go unnoticed.

GIF is never joined: its palette is computed over the whole clip, so a
segment's would differ (``segment_ext`` is None and the stitch encodes a GIF
from the frames). The joined stream keeps the first segment's codec headers
(h264's SPS and PPS), which every encoder run of the same ffmpeg build writes
alike: the render and stitch images pin the same Debian ffmpeg.
"""

from __future__ import annotations

import concurrent.futures as cf
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

from povstorm.core.errors import StitchFailed
from povstorm.core.spec import OutputSpec, container_for
from povstorm.stitch.encode import (
    FFMPEG,
    GLOBAL_OPTIONS,
    container_options,
    input_options,
    run_ffmpeg,
    video_options,
)

FFPROBE = "ffprobe"
SEGMENT_FORMAT = "nut"
SEGMENT_CONTENT_TYPE = "application/octet-stream"
# The codecs whose segments join exactly (gif's palette is the whole clip's).
JOINABLE = frozenset({"h264", "h265", "vp9", "prores"})
# container_for's extensions -> ffmpeg's muxer names.
MUXERS = {"mp4": "mp4", "mov": "mov", "mkv": "matroska", "webm": "webm"}
COUNT_THREADS = 4


def segment_ext(output: OutputSpec) -> str | None:
    """The extension (and container) of a job's segments; None when the job
    has no segments: no video, or a codec that cannot be joined exactly (gif)."""
    if not output.video or output.codec not in JOINABLE:
        return None
    return SEGMENT_FORMAT


def encode_segment(output: OutputSpec, frames: Sequence[Path], dest: Path) -> None:
    """Encode ``frames`` (PNG files in display order, any names) into the
    segment ``dest`` with the job's encoder settings: a closed GOP from a key
    frame, frame i at i/fps. StitchFailed with ffmpeg's error line on failure."""
    if segment_ext(output) is None:
        raise ValueError(f"{output.codec} video is not joined from segments")
    if not frames:
        raise ValueError("a segment needs at least one frame")
    with tempfile.TemporaryDirectory(prefix="povstorm-segment-") as tmp:
        pattern = Path(tmp) / "%06d.png"
        for i, frame in enumerate(frames):
            (Path(tmp) / f"{i:06d}.png").symlink_to(Path(frame).resolve())
        run_ffmpeg(
            [FFMPEG, *GLOBAL_OPTIONS, *input_options(output, pattern), *video_options(output),
             "-avoid_negative_ts", "disabled", "-an", "-f", SEGMENT_FORMAT, str(dest)]
        )  # fmt: skip


def _probe(video: Path, *args: str) -> list[str]:
    """ffprobe's csv lines about a video's first video stream."""
    proc = subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", "v:0", *args, "-of", "csv", str(video)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
    )  # fmt: skip
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        raise StitchFailed(f"ffprobe: {lines[-1] if lines else f'cannot read {video.name}'}")
    return proc.stdout.splitlines()


def frame_count(video: Path) -> int:
    """The frames of a video, counted from its packets (demuxing only: no
    frame is decoded)."""
    for line in _probe(video, "-count_packets", "-show_entries", "stream=nb_read_packets"):
        kind, _, value = line.partition(",")
        if kind == "stream" and value.isdigit():
            return int(value)
    raise StitchFailed(f"ffprobe: cannot count the frames of {video.name}")


def packet_times(video: Path) -> tuple[Fraction, list[int]]:
    """(time base, every packet's pts in file order) of a video's stream:
    demuxing only."""
    time_base, pts = Fraction(0), []
    for line in _probe(video, "-show_entries", "stream=time_base:packet=pts"):
        kind, _, value = line.partition(",")
        if kind == "packet":
            pts.append(int(value) if value.lstrip("-").isdigit() else -1)
        elif kind == "stream":
            time_base = Fraction(value)
    return time_base, pts


def frame_ticks(frames: int, fps: int, time_base: Fraction) -> list[int]:
    """The pts of frames 0..frames-1 at ``fps`` in ``time_base``: i/fps, to
    the nearest tick (half up, as ffmpeg rescales), exactly i/fps when the
    time base divides 1/fps."""
    num, den = time_base.numerator, time_base.denominator
    return [(2 * i * den + fps * num) // (2 * fps * num) for i in range(frames)]


def mov_timescale(fps: int) -> int:
    """The track timescale ffmpeg's mov muxer gives an encode at ``fps``:
    the fps doubled until it reaches 10000."""
    scale = fps
    while scale < 10000:
        scale *= 2
    return scale


def _micros(frames: int, fps: int) -> int:
    """frames/fps seconds in microseconds, rounded half up."""
    return (frames * 2_000_000 + fps) // (2 * fps)


def _quoted(path: Path) -> str:
    """A path as an ffconcat string."""
    return "'" + str(path).replace("'", "'\\''") + "'"


def join_segments(
    output: OutputSpec,
    segments: Sequence[Path],
    dest: Path,
    frames: Sequence[int] | None = None,
) -> None:
    """Join ``segments`` (``encode_segment``'s files, in order) into the
    video ``dest`` in the container ``core.spec.container_for(output)``,
    without re-encoding. ``frames`` is each segment's frame count when the
    caller knows it (the stitch does, from the names); otherwise each
    segment's packets are counted. StitchFailed if ffmpeg fails or the video
    does not hold every frame."""
    if not segments:
        raise ValueError("nothing to join")
    if frames is None:
        with cf.ThreadPoolExecutor(COUNT_THREADS) as pool:
            frames = list(pool.map(frame_count, segments))
    if len(frames) != len(segments):
        raise ValueError(f"{len(frames)} frame counts for {len(segments)} segments")
    ext = container_for(output)
    lines = ["ffconcat version 1.0"]
    total = 0
    for segment, count in zip(segments, frames, strict=True):
        start = _micros(total, output.fps)
        total += count
        lines += [
            f"file {_quoted(segment.resolve())}",
            f"duration {_micros(total, output.fps) - start}us",
        ]
    with tempfile.TemporaryDirectory(prefix="povstorm-join-") as tmp:
        listing = Path(tmp) / "segments.ffconcat"
        listing.write_text("\n".join(lines) + "\n")
        cmd = [FFMPEG, *GLOBAL_OPTIONS, "-f", "concat", "-safe", "0", "-i", str(listing),
               "-map", "0:v", "-c", "copy", "-field_order", "progressive", "-color_range", "tv"]  # fmt: skip
        if ext in ("mp4", "mov"):
            cmd += ["-video_track_timescale", str(mov_timescale(output.fps))]
        cmd += [*container_options(output, ext), "-an", "-f", MUXERS[ext], str(dest)]
        run_ffmpeg(cmd)
    time_base, pts = packet_times(dest)
    if len(pts) != total:
        raise StitchFailed(f"the joined video has {len(pts)} frames, its segments {total}")
    if time_base <= 0 or sorted(pts) != frame_ticks(total, output.fps, time_base):
        raise StitchFailed(f"the joined video's frames are not each at i/{output.fps} s")


def cover(available: Iterable[tuple[int, int]], units: int) -> list[tuple[int, int, bool]]:
    """Cover units 0..units-1 exactly once, in order, with the (first, last)
    ranges of ``available`` segments (True) and the gaps between them (False:
    the stitch encodes those from frames).

    Segments may overlap (a duplicate delivery, a chunk resumed after its
    worker died: (0, 11), (5, 11), (0, 4)); only whole segments are used, and
    a range outside 0..units-1 is ignored. Of all covers, the one with the
    fewest units in gaps, then the fewest pieces: a shortest path over the
    places where a segment starts or ends."""
    if units <= 0:
        return []
    ranges = sorted({(f, la) for f, la in available if 0 <= f <= la < units})
    ending: dict[int, list[int]] = {}  # end (last + 1) -> the firsts of the segments ending there
    for first, last in ranges:
        ending.setdefault(last + 1, []).append(first)
    points = sorted({0, units} | {f for f, _ in ranges} | set(ending))
    # best[p] = (units in gaps, pieces) covering 0..p-1, and the piece that ends at p.
    best: dict[int, tuple[tuple[int, int], tuple[int, bool]]] = {0: ((0, 0), (0, True))}
    # The best place to start a gap from, keyed so that a gap p..q-1 costs
    # (gap_key[0] + q, gap_key[1] + 1) whatever q.
    gap_from, gap_key = 0, (0, 0)
    for point in points[1:]:
        options = [((gap_key[0] + point, gap_key[1] + 1), (gap_from, False))]
        for first in ending.get(point, []):
            (gaps, pieces), _ = best[first]
            options.append(((gaps, pieces + 1), (first, True)))
        best[point] = min(options, key=lambda o: (o[0], not o[1][1]))
        (gaps, pieces), _ = best[point]
        if (gaps - point, pieces) < gap_key:
            gap_from, gap_key = point, (gaps - point, pieces)
    out: list[tuple[int, int, bool]] = []
    point = units
    while point > 0:
        _, (start, segment) = best[point]
        out.append((start, point - 1, segment))
        point = start
    out.reverse()
    return out
