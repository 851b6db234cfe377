"""Video segments without the stack: their names, the cover the stitch
chooses, and real ffmpeg encoding segments of unequal lengths for every
joinable codec and container and joining them into exactly the full encode's
timing and frames. The stitch joining them on the emulators is in
test_stitch.py."""

from __future__ import annotations

import itertools
import random
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from fixtures.common import decoded_md5s, frame_times, probe_video, top_level_boxes

from povstorm.core.errors import PoisonMessage, SpecError, StitchFailed
from povstorm.core.naming import (
    parse_segment_object,
    segment_object,
    segments_prefix,
)
from povstorm.core.spec import CONTAINERS, OutputSpec, container_for
from povstorm.stitch.encode import encode, ffmpeg_command, video_options
from povstorm.stitch.segments import (
    cover,
    encode_segment,
    frame_ticks,
    join_segments,
    segment_ext,
)

FRAMES = 30
LENGTHS = (10, 1, 12, 7)  # unequal, one of a single frame


# --- names ---------------------------------------------------------------------------------------


def test_segment_names_round_trip_and_sort_in_unit_order() -> None:
    name = segment_object("20261123-084512-3fa9c1", 12, 23, "nut")
    assert name == "segments/20261123-084512-3fa9c1/000012-000023.nut"
    assert name.startswith(segments_prefix("20261123-084512-3fa9c1"))
    assert parse_segment_object(name) == ("20261123-084512-3fa9c1", 12, 23)
    assert parse_segment_object(segment_object("job-1", 5, 5, "nut")) == ("job-1", 5, 5)
    assert parse_segment_object("segments/job-1/1234567-1234568.mkv") == ("job-1", 1234567, 1234568)
    names = [segment_object("job-1", f, f + 9, "nut") for f in (100, 0, 10)]
    assert sorted(names) == [segment_object("job-1", f, f + 9, "nut") for f in (0, 10, 100)]


@pytest.mark.parametrize(
    "name",
    [
        "frames/job-1/000001.png",
        "segments/job-1/000001.nut",
        "segments/job-1/000005-000004.nut",  # reversed
        "segments/job-1/000001-000004",
        "segments/job-1/000001-000004.NUT",
        "segments/Job 1/000001-000004.nut",
        "segments/job-1/x/000001-000004.nut",
        "segments/job-1/1-4.nut",
        "",
    ],
)
def test_anything_but_a_segment_name_is_a_poison_message(name: str) -> None:
    with pytest.raises(PoisonMessage):
        parse_segment_object(name)


@pytest.mark.parametrize(("first", "last", "ext"), [(5, 4, "nut"), (-1, 3, "nut"), (0, 3, ".nut")])
def test_a_segment_name_refuses_a_reversed_range_or_a_bad_extension(
    first: int, last: int, ext: str
) -> None:
    with pytest.raises(SpecError):
        segment_object("job-1", first, last, ext)


# --- cover ---------------------------------------------------------------------------------------


def test_cover_of_segments_that_fit_exactly_uses_each_once() -> None:
    assert cover([(4, 7), (0, 3), (8, 11)], 12) == [(0, 3, True), (4, 7, True), (8, 11, True)]
    assert cover([(0, 0)], 1) == [(0, 0, True)]


def test_cover_takes_the_longest_of_overlapping_duplicates() -> None:
    # A chunk resumed after its worker died, and a duplicate delivery.
    assert cover([(0, 11), (5, 11), (0, 4), (0, 11)], 12) == [(0, 11, True)]
    assert cover([(0, 4), (5, 11), (5, 9)], 12) == [(0, 4, True), (5, 11, True)]


def test_cover_leaves_gaps_where_no_segment_starts() -> None:
    assert cover([(2, 3), (6, 6), (8, 20)], 10) == [
        (0, 1, False),
        (2, 3, True),
        (4, 5, False),
        (6, 6, True),
        (7, 9, False),  # (8, 20) reaches past the last unit: ignored
    ]
    # Overlapping segments cannot be cut: the shorter gap wins (3 units, not 5).
    assert cover([(0, 4), (3, 9)], 10) == [(0, 2, False), (3, 9, True)]
    assert cover([(0, 7), (3, 9)], 10) == [(0, 7, True), (8, 9, False)]


def test_cover_prefers_segments_to_gaps_over_the_longest_first_segment() -> None:
    # Greedy-longest would take (0, 4) and encode 5..9 itself.
    assert cover([(0, 4), (0, 2), (3, 9)], 10) == [(0, 2, True), (3, 9, True)]


def test_cover_of_nothing() -> None:
    assert cover([], 5) == [(0, 4, False)]
    assert cover([], 0) == []
    assert cover([(0, 3)], 0) == []
    assert cover([(-1, 2), (3, 1)], 4) == [(0, 3, False)]


def _best(ranges: list[tuple[int, int]], units: int) -> tuple[int, int]:
    """(units in gaps, pieces) of the best cover, by trying every set of
    disjoint segments."""
    best = (units + 1, 0)
    for k in range(len(ranges) + 1):
        for chosen in itertools.combinations(sorted(ranges), k):
            if any(a[1] >= b[0] for a, b in itertools.pairwise(chosen)):
                continue
            covered, gaps, at = 0, 0, 0
            for first, last in chosen:
                gaps += first > at
                covered += last - first + 1
                at = last + 1
            gaps += at < units
            best = min(best, (units - covered, k + gaps))
    return best


def test_cover_is_an_ordered_partition_with_the_fewest_gap_units_then_pieces() -> None:
    rng = random.Random(12)
    for _ in range(300):
        units = rng.randint(1, 16)
        ranges = []
        for _ in range(rng.randint(0, 7)):
            first = rng.randint(0, units - 1)
            ranges.append((first, rng.randint(first, units - 1)))
        pieces = cover(ranges, units)
        assert [p[0] for p in pieces] == [0] + [p[1] + 1 for p in pieces[:-1]]
        assert pieces[-1][1] == units - 1 and all(a <= b for a, b, _ in pieces)
        assert all((a, b) in ranges for a, b, used in pieces if used)
        assert not any(not x[2] and not y[2] for x, y in itertools.pairwise(pieces))
        gaps = sum(b - a + 1 for a, b, used in pieces if not used)
        assert (gaps, len(pieces)) == _best(sorted(set(ranges)), units), (ranges, units)


# --- ffmpeg ------------------------------------------------------------------------------------------


def test_a_segment_is_made_only_of_a_codec_that_joins_exactly() -> None:
    for codec in ("h264", "h265", "vp9", "prores"):
        assert segment_ext(OutputSpec(codec=codec, format=CONTAINERS[codec][0])) == "nut"
    # GIF's palette is the whole clip's: the stitch encodes it from frames.
    assert segment_ext(OutputSpec(codec="gif", format="gif")) is None
    assert segment_ext(OutputSpec(video=False)) is None
    assert set(CONTAINERS) - {"gif"} == {"h264", "h265", "vp9", "prores"}


def test_the_segment_and_the_full_encode_share_the_encoder_options() -> None:
    output = OutputSpec(fps=9, codec="h265", format="mp4", crf=33)
    cmd = ffmpeg_command(output, Path("%06d.png"), Path("v.mp4"))
    options = video_options(output)
    assert any(cmd[i : i + len(options)] == options for i in range(len(cmd)))
    assert options[options.index("-flags") + 1] == "+cgop"  # closed GOPs
    assert "-tag:v" not in options  # a container's option: given at the join
    assert cmd[cmd.index("-tag:v") + 1] == "hvc1"
    assert "-tag:v" not in ffmpeg_command(output, Path("%06d.png"), Path("v.mkv"))


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], list[Path]]:
    """FRAMES synthetic PNGs of testsrc, at an odd and an even size, with
    names that are not a numbered sequence."""
    out: dict[tuple[int, int], list[Path]] = {}
    for width, height in ((63, 47), (64, 48)):
        folder = tmp_path_factory.mktemp(f"frames-{width}x{height}")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc=s={width}x{height}:r=25",
             "-frames:v", str(FRAMES), "-pix_fmt", "rgb24", str(folder / "f%03d.png")],
            check=True, capture_output=True,
        )  # fmt: skip
        pngs = sorted(folder.glob("f*.png"))
        assert len(pngs) == FRAMES
        renamed = [
            png.rename(folder / f"render-{i * 7 % 101}-{i}.png") for i, png in enumerate(pngs)
        ]
        out[width, height] = renamed
    return out


def _segments(output: OutputSpec, pngs: list[Path], work: Path) -> list[Path]:
    paths, at = [], 0
    for k, length in enumerate(LENGTHS):
        path = work / f"piece-{k}.seg"  # any name: the container is nut whatever it is called
        encode_segment(output, pngs[at : at + length], path)
        paths.append(path)
        at += length
    assert at == FRAMES
    return paths


def _packets(video: Path) -> list[tuple[str, str]]:
    """(pts, flags) of a video's packets, in file order."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "packet=pts,flags", "-of", "csv=p=0", str(video)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [tuple(line.split(",")[:2]) for line in out.splitlines()]  # type: ignore[misc]


def _described(video: Path) -> dict[str, str]:
    """What ffprobe says of a video's stream, but its size and bit rate."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,codec_tag_string,profile,pix_fmt,width,height,time_base,"
         "field_order,color_range,has_b_frames,level", "-of", "default=nw=1", str(video)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split("=", 1) for line in out.splitlines())


def _extradata_md5(video: Path) -> str:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_data_hash", "md5",
         "-show_entries", "stream=extradata_hash", "-of", "csv=p=0", str(video)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.strip()


@pytest.mark.parametrize(
    ("codec", "fmt", "fps", "size"),
    [
        ("h264", "mp4", 24, (63, 47)),
        ("h264", "mkv", 7, (64, 48)),
        ("h264", "mov", 30, (63, 47)),
        ("h265", "mp4", 7, (63, 47)),
        ("vp9", "webm", 24, (63, 47)),
        ("prores", "mov", 12, (64, 48)),
    ],
)
def test_segments_join_into_the_full_encodes_frames_and_timestamps(
    frames: dict[tuple[int, int], list[Path]],
    tmp_path: Path,
    codec: str,
    fmt: str,
    fps: int,
    size: tuple[int, int],
) -> None:
    output = OutputSpec(fps=fps, codec=codec, format=fmt, crf=30)
    ext = container_for(output)
    assert ext == fmt
    pngs = frames[size]
    segments = _segments(output, pngs, tmp_path)

    for segment, length in zip(segments, LENGTHS, strict=True):
        packets = _packets(segment)
        assert len(packets) == length
        assert packets[0][1].startswith("K"), "a segment starts on a key frame"
        assert min(int(pts) for pts, _ in packets) == 0, "a segment's timestamps start at 0"
        assert probe_video(segment)["codec_name"] == probe_video(segments[0])["codec_name"]
    # The joined stream keeps the first segment's codec headers: all alike.
    assert len({_extradata_md5(s) for s in segments}) == 1

    joined = tmp_path / f"joined.{ext}"
    join_segments(output, segments, joined, list(LENGTHS))

    # Every frame, once, in order: the decoded pictures are the segments'.
    expected = [md5 for segment in segments for md5 in decoded_md5s(segment)]
    assert len(expected) == FRAMES
    assert decoded_md5s(joined) == expected
    stream = probe_video(joined)
    assert int(stream["nb_read_frames"]) == FRAMES
    assert (stream["width"], stream["height"]) == (64, 48)  # padded to even sizes

    # Frame i at i/fps, as in a full encode of the same frames.
    direct_dir = tmp_path / "direct"
    direct_dir.mkdir()
    for i, png in enumerate(pngs):
        (direct_dir / f"{i:06d}.png").symlink_to(png)
    direct = tmp_path / f"direct.{ext}"
    encode(output, direct_dir / "%06d.png", direct)
    time_base, pts, duration = frame_times(joined)
    assert (time_base, pts, duration) == frame_times(direct)
    assert pts == frame_ticks(FRAMES, fps, time_base)
    if ext in ("mp4", "mov"):
        # The track's time base divides 1/fps: exactly i/fps, and n/fps long.
        assert [p * time_base for p in pts] == [Fraction(i, fps) for i in range(FRAMES)]
        assert abs(Fraction(duration) - Fraction(FRAMES, fps)) < Fraction(1, 10**6)
        # +faststart: the index (moov) before the media data (mdat).
        boxes = top_level_boxes(joined)
        assert boxes.index("moov") < boxes.index("mdat"), boxes
    else:
        # Matroska counts milliseconds: each frame at i/fps to the nearest one.
        assert time_base == Fraction(1, 1000)
        assert all(
            abs(p * time_base - Fraction(i, fps)) <= Fraction(1, 2000) for i, p in enumerate(pts)
        )
    # And the container describes the stream as it does a full encode's.
    assert _described(joined) == _described(direct)


def test_the_join_counts_the_frames_when_not_told(
    frames: dict[tuple[int, int], list[Path]], tmp_path: Path
) -> None:
    output = OutputSpec(fps=10, codec="h264", format="mp4", crf=35)
    segments = _segments(output, frames[63, 47], tmp_path)
    joined = tmp_path / "joined.mp4"
    join_segments(output, segments, joined)
    time_base, pts, _ = frame_times(joined)
    assert pts == frame_ticks(FRAMES, 10, time_base) and len(pts) == FRAMES


def test_a_join_told_the_wrong_frame_counts_fails_instead_of_mistiming_frames(
    frames: dict[tuple[int, int], list[Path]], tmp_path: Path
) -> None:
    output = OutputSpec(fps=10, codec="h264", format="mp4", crf=35)
    segments = _segments(output, frames[63, 47], tmp_path)
    for wrong, error in (
        ([9, 1, 12, 7], "Non-monotonous DTS"),  # overlapping timestamps: ffmpeg refuses
        ([11, 1, 12, 6], "frames are not each at i/10 s"),  # a hole in the timestamps
        ([10, 1, 12, 6], "has 30 frames, its segments 29"),
    ):
        with pytest.raises(StitchFailed, match=error):
            join_segments(output, segments, tmp_path / "joined.mp4", wrong)


def test_a_segment_of_a_frame_ffmpeg_cannot_decode_fails_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(StitchFailed) as raised:
        encode_segment(OutputSpec(fps=5), [broken], tmp_path / "s.nut")
    message = str(raised.value)
    assert message.startswith("ffmpeg: png: ") and "\n" not in message and "@ 0x" not in message


def test_a_gif_is_not_made_of_segments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gif"):
        encode_segment(OutputSpec(codec="gif", format="gif"), [tmp_path / "x.png"], tmp_path / "s")
