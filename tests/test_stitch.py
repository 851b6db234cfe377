"""The stitch on the real emulators with real ffmpeg: N frames into an
N-frame video with a poster and stats, one result however often it runs, a
clean failure for a missing or broken frame, and the entry point's exit codes;
the workers' segments joined with the gaps between them, each frame once."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import decoded_md5s, frame_times, job_doc, mean_levels, probe_video

from povstorm.cloud.clients import Clients
from povstorm.core.model import RenderStats
from povstorm.core.naming import (
    frame_object,
    poster_object,
    segment_object,
    sheet_object,
    stats_object,
    video_object,
)
from povstorm.core.schemas import load_job_spec
from povstorm.core.settings import Settings
from povstorm.core.spec import CONTAINERS, FORMATS, OutputSpec, container_for
from povstorm.ledger.ledger import Ledger
from povstorm.stitch.encode import CONTENT_TYPES, ENCODER_OPTIONS, encode
from povstorm.stitch.job import stitch
from povstorm.stitch.preview import contact_sheet
from povstorm.stitch.segments import SEGMENT_CONTENT_TYPE, encode_segment, segment_ext

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "render"
FRAMES = 5
# Odd on purpose: yuv420p needs even sizes, so the stitch must pad.
WIDTH, HEIGHT = 63, 47


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real POV-Ray frames, rendered once for the module."""
    out = tmp_path_factory.mktemp("frames")
    for f in range(1, FRAMES + 1):
        subprocess.run(
            ["povray", "-D", "-P", "+FN", f"+W{WIDTH}", f"+H{HEIGHT}", "ball.pov",
             "+KFI1", f"+KFF{FRAMES}", f"+SF{f}", f"+EF{f}", f"+O{out}/"],
            cwd=DATA, capture_output=True, check=True, timeout=60,
        )  # fmt: skip
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == FRAMES
    return pngs


def make_job(
    clients: Clients,
    ledger: Ledger,
    frames: list[Path],
    *,
    upload: set[int] | None = None,
    output: dict[str, Any] | None = None,
) -> str:
    """A scene job whose units have all landed, as the frame_finalized
    function records them; frames outside ``upload`` are counted but absent."""
    job_id = f"t-{uuid.uuid4().hex[:12]}"
    spec = load_job_spec(
        {
            "povray": {"args": ["ball.pov"], "frames": {"first": 1, "last": len(frames)}},
            "output": output or {"fps": 12},
        }
    )
    ledger.create_job(spec, job_id)
    ledger.mark_dispatched(job_id)
    for unit, png in enumerate(frames):
        md = RenderStats(
            render_seconds=0.5 + unit,
            cpu_seconds=0.25 * unit,
            peak_memory_bytes=1000 * (unit + 1),
            worker=f"w{unit % 2}",
        ).to_metadata()
        generation = 1
        if upload is None or unit in upload:
            generation = clients.blobs.upload_file(frame_object(job_id, unit), png, "image/png", md)
        ledger.record_frame(frame_object(job_id, unit), generation or 1, md)
    assert job_doc(ledger, job_id)["state"] == "stitching"
    return job_id


def test_frames_become_a_video_with_a_poster_and_stats(
    clients: Clients, ledger: Ledger, frames: list[Path], tmp_path: Path
) -> None:
    job_id = make_job(clients, ledger, frames)
    outcome = stitch(clients, ledger, job_id)
    assert outcome.status == "done" and outcome.exit_code == 0, outcome

    video = tmp_path / "video.mp4"
    clients.blobs.download_to(video_object(job_id, "mp4"), video)
    stream = probe_video(video)
    assert int(stream["nb_read_frames"]) == FRAMES
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 64, 48)
    assert clients.blobs.read_bytes(poster_object(job_id)) == frames[FRAMES // 2].read_bytes()

    stats = json.loads(clients.blobs.read_bytes(stats_object(job_id)))
    assert stats["job_id"] == job_id and stats["units"] == FRAMES
    assert stats["render_seconds"] == {"total": 12.5, "min": 0.5, "p50": 2.5, "max": 4.5}
    assert [s["unit"] for s in stats["slowest"]] == [4, 3, 2, 1, 0]
    assert stats["slowest"][0]["frame"] == 5
    assert stats["cpu_seconds"] == 2.5 and stats["peak_memory_bytes"] == 5000
    assert stats["workers"] == 2 and stats["wall_seconds"] > 0
    assert stats["speedup"] == pytest.approx(12.5 / stats["wall_seconds"], rel=1e-2)

    job = job_doc(ledger, job_id)
    assert job["state"] == "done"
    assert job["video"] == video_object(job_id, "mp4") and job["poster"] == poster_object(job_id)
    assert job["stats"]["units"] == FRAMES and job["stats_object"] == stats_object(job_id)

    # Beside the poster, once the job is done, the contact sheet: every frame,
    # labelled with its number.
    assert job["sheet"] == sheet_object(job_id) and "sheet" not in stats
    sheet = tmp_path / "contact.png"
    clients.blobs.download_to(sheet_object(job_id), sheet)
    plain = contact_sheet(frames, tmp_path / "plain.png")
    assert labelled_tiles(sheet, plain, FRAMES) == list(range(FRAMES))


def gray(image: Path) -> tuple[int, int, bytes]:
    """An image's width, height and 8-bit grey pixels, row by row."""
    stream = probe_video(image)
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(image), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return int(stream["width"]), int(stream["height"]), raw


def labelled_tiles(sheet: Path, plain: Path, tiles: int) -> list[int]:
    """The tiles of one row of ``tiles`` thumbnails in which ``sheet`` differs
    from the same sheet made without labels, asserting it differs only in
    their top left corners (the label's box)."""
    width, height, labelled = gray(sheet)
    assert gray(plain)[:2] == (width, height)
    unlabelled = gray(plain)[2]
    tile = width // tiles
    changed = [
        (i % width, i // width)
        for i, (a, b) in enumerate(zip(labelled, unlabelled, strict=True))
        if a != b
    ]
    assert changed, "the sheet has no label"
    assert all(x % tile < tile // 2 and y < height // 2 for x, y in changed), (
        "a label is off its corner"
    )
    return sorted({x // tile for x, _ in changed})


def test_a_contact_sheet_labels_each_sampled_frame_with_its_number(
    frames: list[Path], tmp_path: Path
) -> None:
    many = [frames[i % FRAMES] for i in range(100)]
    sheet = contact_sheet(many, tmp_path / "sheet.png", most=8, labels=[str(n) for n in range(100)])
    plain = contact_sheet(many, tmp_path / "plain.png", most=8)
    # 8 of the 100 sampled evenly, first and last included, in one row of 8.
    assert labelled_tiles(sheet, plain, 8) == list(range(8))
    with pytest.raises(ValueError, match="one label per frame"):
        contact_sheet(many, tmp_path / "x.png", labels=["1"])


def test_the_stitch_is_idempotent(clients: Clients, ledger: Ledger, frames: list[Path]) -> None:
    job_id = make_job(clients, ledger, frames[:3])
    # Two launches at once (a relaunch racing the first): one records the result.
    with cf.ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: stitch(clients, ledger, job_id), range(2)))
    assert sorted(o.status for o in outcomes) in (["done", "duplicate"], ["done", "skipped"])
    first = job_doc(ledger, job_id)
    # And again later: nothing to do, nothing changes.
    again = stitch(clients, ledger, job_id)
    assert again.status == "skipped" and again.exit_code == 0
    assert job_doc(ledger, job_id)["finished_at"] == first["finished_at"]
    assert [b.name for b in clients.blobs.list(f"videos/{job_id}/")] == [
        sheet_object(job_id),
        poster_object(job_id),
        stats_object(job_id),
        video_object(job_id, "mp4"),
    ]


def test_a_missing_frame_fails_the_stitch_cleanly(
    clients: Clients, ledger: Ledger, frames: list[Path]
) -> None:
    job_id = make_job(clients, ledger, frames, upload={0, 1, 3})
    outcome = stitch(clients, ledger, job_id)
    assert outcome.status == "failed" and outcome.exit_code == 1
    job = job_doc(ledger, job_id)
    assert job["state"] == "failed"
    assert job["stitch_error"] == "missing frames for 2 of 5 units: 2, 4"
    assert list(clients.blobs.list(f"videos/{job_id}/")) == []


def test_a_frame_ffmpeg_cannot_decode_fails_with_its_error_line(
    clients: Clients, ledger: Ledger, frames: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    job_id = make_job(clients, ledger, [frames[0], broken, frames[2]])
    outcome = stitch(clients, ledger, job_id)
    assert outcome.status == "failed"
    error = job_doc(ledger, job_id)["stitch_error"]
    assert error.startswith("ffmpeg: png: ") and "\n" not in error, error


def test_units_that_are_not_frames_record_stats_without_a_video(
    clients: Clients, ledger: Ledger, frames: list[Path]
) -> None:
    job_id = make_job(clients, ledger, frames[:2], output={"video": False})
    outcome = stitch(clients, ledger, job_id)
    assert outcome.status == "done" and outcome.video is None
    job = job_doc(ledger, job_id)
    assert job["state"] == "done" and job["video"] is None and job["poster"] is None
    assert job["stats"]["units"] == 2
    assert [b.name for b in clients.blobs.list(f"videos/{job_id}/")] == [stats_object(job_id)]


def test_the_stitch_can_encode_and_upload_every_codec_and_container_the_spec_accepts() -> None:
    # The schema takes its codecs and formats from core/spec.py's CONTAINERS;
    # a codec or container added there without the stitch's half fails here.
    assert set(ENCODER_OPTIONS) == set(CONTAINERS)
    assert set(CONTENT_TYPES) == set(FORMATS)


@pytest.mark.parametrize(
    ("codec", "fmt", "ext", "name"),
    [
        ("h264", "mkv", "mkv", "h264"),
        ("h265", "mp4", "mp4", "hevc"),
        ("vp9", "mp4", "webm", "vp9"),  # vp9 does not go in the default mp4
        ("prores", "mov", "mov", "prores"),
        ("gif", "gif", "gif", "gif"),
    ],
)
def test_each_codec_encodes_every_frame(
    frames: list[Path], tmp_path: Path, codec: str, fmt: str, ext: str, name: str
) -> None:
    output = OutputSpec(fps=10, codec=codec, format=fmt, crf=30)
    assert container_for(output) == ext
    for i, png in enumerate(frames):
        (tmp_path / f"{i:06d}.png").symlink_to(png)
    dest = tmp_path / f"out.{ext}"
    encode(output, tmp_path / "%06d.png", dest)
    stream = probe_video(dest)
    assert int(stream["nb_read_frames"]) == FRAMES and stream["codec_name"] == name


def run_entry_point(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "povstorm.shells.stitch_job", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_entry_point_exit_codes(
    clients: Clients, ledger: Ledger, frames: list[Path], settings: Settings
) -> None:
    job_id = make_job(clients, ledger, frames[:2])
    done = run_entry_point(settings, job_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"stitch {job_id}: done: {video_object(job_id, 'mp4')}"
    again = run_entry_point(settings, job_id)
    assert again.returncode == 0 and "skipped: job is done, not stitching" in again.stdout

    missing = make_job(clients, ledger, frames[:2], upload={0})
    failed = run_entry_point(settings, missing)
    assert failed.returncode == 1
    assert failed.stderr.strip().endswith(
        f"stitch {missing}: failed: missing frames for 1 of 2 units: 1"
    )

    for bad, message in (("no-such-job", "unknown job: no-such-job"), ("../x", "invalid job id")):
        result = run_entry_point(settings, bad)
        assert result.returncode == 2 and message in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- segments -------------------------------------------------------------------------------------

UNITS = 12


def level(unit: int) -> int:
    """The grey of unit ``unit``'s frame: far enough apart to tell frames apart."""
    return 24 + 16 * unit


@pytest.fixture(scope="module")
def greys(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """UNITS solid grey 63x47 frames, each a lighter grey than the one before."""
    out = tmp_path_factory.mktemp("greys")
    for unit in range(UNITS):
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"color=c=0x{level(unit):02x}{level(unit):02x}{level(unit):02x}:s=64x48",
             "-vf", "scale=63:47,format=rgb24", "-frames:v", "1", str(out / f"{unit:06d}.png")],
            check=True, capture_output=True,
        )  # fmt: skip
    return sorted(out.glob("*.png"))


def upload_segment(
    clients: Clients, job_id: str, greys: list[Path], first: int, last: int, work: Path
) -> Path:
    """What a worker does after rendering units first..last: encode, upload."""
    output = OutputSpec(fps=12)
    ext = segment_ext(output)
    assert ext is not None
    path = work / f"worker-{first}-{last}.{ext}"
    encode_segment(output, greys[first : last + 1], path)
    clients.blobs.upload_file(segment_object(job_id, first, last, ext), path, SEGMENT_CONTENT_TYPE)
    return path


def assert_every_grey_in_order(video: Path) -> None:
    """Frame u of the video is unit u's grey (padded with black to even sizes)."""
    stream = probe_video(video)
    shown = 63 * 47 / (int(stream["width"]) * int(stream["height"]))
    levels = mean_levels(video)
    assert len(levels) == UNITS
    assert all(abs(got - level(u) * shown) < 3 for u, got in enumerate(levels)), levels


def test_segments_and_a_gap_encoded_from_frames_join_into_every_frame_once(
    clients: Clients, ledger: Ledger, greys: list[Path], tmp_path: Path
) -> None:
    job_id = make_job(clients, ledger, greys, output={"fps": 12})
    made = {
        (first, last): upload_segment(clients, job_id, greys, first, last, tmp_path)
        # (2, 5) overlaps; (9, 11) is a chunk resumed after its worker died;
        # (8, 11) arrives twice; nothing covers 6..7.
        for first, last in ((0, 3), (2, 5), (4, 5), (9, 11), (8, 11), (8, 11))
    }
    # Not segments of this job's codec: never read.
    clients.blobs.upload_bytes(f"segments/{job_id}/000006-000007.mkv", b"junk", "video/x-matroska")
    clients.blobs.upload_bytes(f"segments/{job_id}/notes.txt", b"junk", "text/plain")

    outcome = stitch(clients, ledger, job_id)
    assert outcome.status == "done", outcome
    assert (outcome.stats["segments_joined"], outcome.stats["segments_encoded"]) == (3, 1)
    video = tmp_path / "video.mp4"
    clients.blobs.download_to(video_object(job_id, "mp4"), video)

    # The pictures are the workers' segments and the gap the stitch encoded
    # (as a worker would have), each once, in order.
    gap = tmp_path / "gap.nut"
    encode_segment(OutputSpec(fps=12), greys[6:8], gap)
    pieces = [made[0, 3], made[4, 5], gap, made[8, 11]]
    assert decoded_md5s(video) == [md5 for piece in pieces for md5 in decoded_md5s(piece)]
    assert_every_grey_in_order(video)
    # Timed as a full encode of the same frames, and described alike.
    direct = tmp_path / "direct.mp4"
    encode(OutputSpec(fps=12), greys[0].parent / "%06d.png", direct)
    assert frame_times(video) == frame_times(direct)
    assert probe_video(video) == probe_video(direct)
    assert clients.blobs.read_bytes(poster_object(job_id)) == greys[UNITS // 2].read_bytes()
    job = job_doc(ledger, job_id)
    assert job["state"] == "done" and job["stats"]["segments_joined"] == 3


def test_the_join_needs_only_the_frames_of_the_gaps_and_the_poster(
    clients: Clients, ledger: Ledger, greys: list[Path], tmp_path: Path
) -> None:
    # Counted by the ledger, but only the gap's frames and the poster (unit 6) are there.
    job_id = make_job(clients, ledger, greys, upload={6, 7})
    upload_segment(clients, job_id, greys, 0, 5, tmp_path)
    upload_segment(clients, job_id, greys, 8, 11, tmp_path)
    outcome = stitch(clients, ledger, job_id)
    assert outcome.status == "done", outcome
    assert (outcome.stats["segments_joined"], outcome.stats["segments_encoded"]) == (2, 1)
    video = tmp_path / "video.mp4"
    clients.blobs.download_to(video_object(job_id, "mp4"), video)
    assert_every_grey_in_order(video)
    assert clients.blobs.read_bytes(poster_object(job_id)) == greys[6].read_bytes()


def test_a_gap_whose_frames_are_missing_fails_listing_those_units(
    clients: Clients, ledger: Ledger, greys: list[Path], tmp_path: Path
) -> None:
    job_id = make_job(clients, ledger, greys, upload={0, 1, 6})
    upload_segment(clients, job_id, greys, 0, 5, tmp_path)
    upload_segment(clients, job_id, greys, 9, 11, tmp_path)
    outcome = stitch(clients, ledger, job_id)
    assert outcome.status == "failed"
    assert job_doc(ledger, job_id)["stitch_error"] == "missing frames for 2 of 12 units: 7, 8"
    assert list(clients.blobs.list(f"videos/{job_id}/")) == []


def test_a_segment_ffmpeg_cannot_read_leaves_the_stitch_to_encode_every_frame(
    clients: Clients, ledger: Ledger, greys: list[Path], tmp_path: Path
) -> None:
    job_id = make_job(clients, ledger, greys, output={"fps": 12})
    upload_segment(clients, job_id, greys, 0, 5, tmp_path)
    clients.blobs.upload_bytes(
        segment_object(job_id, 6, 11, "nut"), b"not a video", SEGMENT_CONTENT_TYPE
    )
    outcome = stitch(clients, ledger, job_id)
    assert outcome.status == "done", outcome
    assert (outcome.stats["segments_joined"], outcome.stats["segments_encoded"]) == (0, 0)
    video = tmp_path / "video.mp4"
    clients.blobs.download_to(video_object(job_id, "mp4"), video)
    assert_every_grey_in_order(video)


def test_a_gif_is_encoded_from_every_frame_whatever_segments_there_are(
    clients: Clients, ledger: Ledger, greys: list[Path], tmp_path: Path
) -> None:
    output = {"fps": 12, "codec": "gif", "format": "gif"}
    job_id = make_job(clients, ledger, greys, output=output)
    assert segment_ext(ledger.get_spec(job_id).output) is None
    # A segment the stitch would choke on, if it read it.
    clients.blobs.upload_bytes(
        segment_object(job_id, 0, UNITS - 1, "nut"), b"junk", SEGMENT_CONTENT_TYPE
    )
    outcome = stitch(clients, ledger, job_id)
    assert outcome.status == "done", outcome
    assert (outcome.stats["segments_joined"], outcome.stats["segments_encoded"]) == (0, 0)
    gif = tmp_path / "video.gif"
    clients.blobs.download_to(video_object(job_id, "gif"), gif)
    assert probe_video(gif)["codec_name"] == "gif"
    assert_every_grey_in_order(gif)
