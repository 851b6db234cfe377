"""`povstorm stitch JOB`: another video of a done job, made on the farm from
its frames (or its segments) with no render, kept beside the job's own.

One job is rendered (8 frames at 32x24); the others are made in the ledger
alone (no frame rendered), for bad input and a stitch that cannot succeed."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import run_cli as run
from fixtures.common import video_frames, wait_until

from povstorm.client import Cluster
from povstorm.core.errors import SpecError
from povstorm.core.naming import frame_object, video_key
from povstorm.core.schemas import load_job_spec
from povstorm.core.settings import local_logs
from povstorm.core.spec import OutputSpec
from povstorm.farm.operations import restitch_output
from povstorm.ledger.ledger import Ledger

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

SCENE = (
    "camera { location <0,0,-3> look_at 0 }\n"
    "light_source { <0,5,-5> rgb 1 }\n"
    "sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
)
FRAMES = 8


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line a failed command prints, with no traceback."""
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("povstorm: error: "), result.stderr
    return lines[0]


def frame_rate(path: Path) -> str:
    return subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=r_frame_rate,codec_name", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def ledger_job(ledger: Ledger, frames: int = 2, *, done: bool = True) -> str:
    """A scene job made in the ledger alone: its frames counted (none is in
    the bucket), then done, or cancelled before anything."""
    job_id = f"rs-{uuid.uuid4().hex[:12]}"
    spec = load_job_spec({"povray": {"args": ["s.ini"], "frames": {"first": 1, "last": frames}}})
    ledger.create_job(spec, job_id)
    ledger.mark_dispatched(job_id)
    if not done:
        ledger.cancel(job_id)
        return job_id
    for unit in range(frames):
        ledger.record_frame(frame_object(job_id, unit), 1, {})
    assert ledger.require_job(job_id)["state"] == "stitching"
    assert ledger.finish_stitch(job_id, video=None, poster=None, stats={})
    return job_id


def without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in keys}


def test_a_done_job_is_stitched_again_at_12_fps_with_no_render_and_keeps_its_video(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "ball.pov").write_text(SCENE)
    rendered = run(
        stack_env, "render", "ball.pov", "+W32", "+H24", "+KFI1", f"+KFF{FRAMES}",
        "-o", "ball.mp4", cwd=tmp_path,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    job_id = rendered.stderr.split("job ", 1)[1].split(":")[0]
    with Cluster.local(start=False) as cluster:
        ledger = cluster.ledger

        # What the stitch writes once the job is done (the sheet, the frame
        # cache's fill) lands first: the job is compared with itself after.
        def settled() -> bool:
            job = ledger.require_job(job_id)
            return bool(job.get("sheet")) and job.get("cache_filled") is not None

        wait_until(settled, 60, "the sheet and the frame cache's fill")
        job_before = ledger.require_job(job_id)
        units_before = ledger.unit_records(job_id)
        main_video = cluster.blobs.info(job_before["video"])
    assert main_video is not None

    made = run(stack_env, "stitch", job_id, "--fps", "12", "-o", "x.mp4", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    name = f"videos/{job_id}/video-h264-12fps-crf20.mp4"
    assert made.stdout.strip().splitlines() == [f"job {job_id}: video {name} -> x.mp4"]
    assert video_frames(tmp_path / "x.mp4") == FRAMES
    assert frame_rate(tmp_path / "x.mp4") == "h264,12/1"
    assert frame_rate(tmp_path / "ball.mp4") == "h264,24/1"

    with Cluster.local(start=False) as cluster:
        ledger = cluster.ledger
        job = ledger.require_job(job_id)
        # Nothing rendered: every unit document is as it was, the job's state,
        # video, stats and counts too; its own video is the same object.
        assert ledger.unit_records(job_id) == units_before
        assert without(job, "videos", "updated_at") == without(job_before, "updated_at")
        assert cluster.blobs.info(job["video"]) == main_video
        entry = job["videos"]["h264-12fps-crf20-mp4"]
        assert (entry["state"], entry["object"], entry["fps"], entry["error"]) == (
            "done", name, 12, None,
        )  # fmt: skip
        made_once = cluster.blobs.info(name)

        # The same settings again make nothing new; the job's own settings in
        # another container join the workers' segments instead of encoding.
        again = cluster.restitch(job_id, fps=12, out=tmp_path / "again.mp4")
        assert again.object == name and cluster.blobs.info(name) == made_once
        mkv = cluster.restitch(job_id, format="mkv", out=tmp_path / "joined.mkv")
        assert mkv.object == f"videos/{job_id}/video-h264-24fps-crf20.mkv"
        assert video_frames(tmp_path / "joined.mkv") == FRAMES
        assert frame_rate(tmp_path / "joined.mkv") == "h264,24/1"
        assert ledger.unit_records(job_id) == units_before
    log = (local_logs() / f"stitch-{job_id}.log").read_text()
    assert f"{name} (every frame encoded)" in log
    assert "segments joined)" in log and "video-h264-24fps-crf20.mkv" in log

    status = json.loads(run(stack_env, "status", job_id, "--json", cwd=tmp_path).stdout)
    assert status["state"] == "done" and status["video"] == job_before["video"]
    assert {v["object"] for v in status["videos"].values() if v["state"] == "done"} == {
        name, mkv.object,
    }  # fmt: skip
    assert name in run(stack_env, "status", job_id, cwd=tmp_path).stdout

    out = tmp_path / "fetched"
    fetched = run(stack_env, "fetch", job_id, "-o", str(out), "--no-frames", cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert {p.name for p in out.glob("video*")} == {
        "video.mp4", "video-h264-12fps-crf20.mp4", "video-h264-24fps-crf20.mkv",
    }  # fmt: skip
    assert video_frames(out / "video.mp4") == FRAMES


def test_bad_input_is_one_line_and_exit_2_and_records_nothing(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    with Cluster.local(start=False) as cluster:
        done = ledger_job(cluster.ledger)
        cancelled = ledger_job(cluster.ledger, done=False)

        unknown = one_line(run(stack_env, "stitch", "no-such-job", cwd=tmp_path), 2)
        assert unknown == "povstorm: error: unknown job: no-such-job"
        not_done = one_line(run(stack_env, "stitch", cancelled, "--fps", "12", cwd=tmp_path), 2)
        assert "is cancelled" in not_done and "only a done job" in not_done

        for args, says in [
            (["--codec", "vp9", "--format", "mp4"], "--format mp4 does not fit --codec vp9"),
            (["--fps", "0"], "--fps 0"),
            (["--fps", "241"], "--fps 241"),
            (["--crf", "52"], "--crf 52"),
            (["--codec", "mpeg2"], "--codec mpeg2"),
        ]:
            line = one_line(run(stack_env, "stitch", done, *args, cwd=tmp_path), 2)
            assert says in line, line
        # Nothing was asked of the farm: the jobs are as they were.
        assert "videos" not in cluster.ledger.require_job(done)
        assert cluster.ledger.require_job(done)["state"] == "done"
        assert "videos" not in cluster.ledger.require_job(cancelled)


def test_a_stitch_that_cannot_make_the_video_is_one_line_and_exit_1(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    with Cluster.local(start=False) as cluster:
        job_id = ledger_job(cluster.ledger)  # its frames were never in the bucket
        failed = run(stack_env, "stitch", job_id, "--fps", "12", "-o", "x.mp4", cwd=tmp_path)
        line = one_line(failed, 1)
        assert "missing frames for 2 of 2 units" in line, line
        assert not (tmp_path / "x.mp4").exists()
        job = cluster.ledger.require_job(job_id)
        assert job["state"] == "done" and job["video"] is None
        entry = job["videos"]["h264-12fps-crf20-mp4"]
        assert entry["state"] == "failed" and "missing frames" in entry["error"]


def test_settings_not_given_are_the_jobs_own_and_the_container_follows_the_codec() -> None:
    own = OutputSpec(fps=30, codec="h264", crf=18, format="mkv")
    assert restitch_output(own, fps=12) == OutputSpec(fps=12, codec="h264", crf=18, format="mkv")
    # The job's container if the codec goes in it, else the codec's first.
    assert restitch_output(own, codec="vp9").format == "mkv"
    assert restitch_output(OutputSpec(), codec="vp9").format == "webm"
    assert restitch_output(OutputSpec(), codec="gif").format == "gif"
    with pytest.raises(SpecError, match="does not fit"):
        restitch_output(OutputSpec(), codec="gif", format="mp4")
    assert video_key(restitch_output(own, crf=0)) == "h264-30fps-crf0-mkv"
