"""The proof pass (client/proof.py): every Nth frame at a quarter of the size
without antialiasing, rendered on the farm before the full job; a frame the
proof cannot render stops the job before the full render starts."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from fixtures.common import probe_video, run_cli, video_frames

from povstorm.client import Cluster, Job, ProofFailed
from povstorm.client.proof import plan_proof, proof_body
from povstorm.core.schemas import load_job_spec
from povstorm.povray import parse_invocation

REPO = Path(__file__).resolve().parents[1]
# The example with a parse error in frame 40 only: the parse check before
# upload (first and last frame) lets it through; the proof renders frame 40.
BROKEN_AT_40 = "\n#if (frame_number = 40)\n  sphere { 0, 1 pigment { rgb <1, 0, 0> }\n#end\n"


def example(tmp_path: Path, *, broken: bool = False) -> Path:
    scene = tmp_path / "spinning"
    shutil.copytree(REPO / "examples" / "spinning", scene)
    pov = scene / "spinning.pov"
    # A salt of its own: the frame cache never answers for another test.
    pov.write_text(pov.read_text() + f'\n#declare Salt = "{uuid.uuid4().hex}";\n')
    if broken:
        pov.write_text(pov.read_text() + BROKEN_AT_40)
    return scene


def test_the_proof_renders_every_third_of_48_frames_at_a_quarter_size(tmp_path: Path) -> None:
    scene = example(tmp_path)
    inv = parse_invocation(["spinning.ini", "+W320", "+H240"], scene)
    plan = plan_proof(inv)
    assert (plan.step, plan.width, plan.height, plan.frames) == (3, 80, 60, 16)
    body = {
        "name": "spinning",
        "job_id": "full-1",
        "inputs": {},
        "povray": {"args": list(inv.farm_args), "frames": {"first": 1, "last": 48}},
        "output": {"fps": 24, "codec": "h264", "crf": 20, "video": True},
        "estimate": {"seconds": [0.3, 0.4], "source": "check"},  # the full job's frames
    }
    spec = load_job_spec(proof_body(body, plan, "full-1"))
    assert spec.estimate is None
    assert spec.povray is not None
    frames = [spec.povray.frames.frame(u) for u in range(spec.unit_count)]
    assert frames == list(range(1, 49, 3)) and 40 in frames
    assert spec.povray.args[-3:] == ("+W80", "+H60", "-A")  # last: they win
    assert (spec.output.fps, spec.max_attempts, spec.fail_fast) == (8, 1, True)
    assert spec.extra["proof_for"] == "full-1" and spec.job_id != "full-1"


@pytest.mark.stack
def test_a_proof_stops_a_job_whose_frame_40_fails_before_the_full_render(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    scene = example(tmp_path, broken=True)
    out = tmp_path / "out.mp4"
    result = run_cli(
        stack_env, "render", "spinning.ini", "+W64", "+H48", "--proof", "-o", str(out), cwd=scene
    )
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("proof failed")]
    assert len(failed) == 1 and failed[0].startswith("proof failed at frame 40: File ")
    assert "Parse Error" in failed[0], failed
    assert "the full job was not started" in result.stderr
    assert not out.exists()
    with Cluster.local(start=False) as cluster:
        names = [j["name"] for j in cluster.jobs(limit=5)]
    assert names[0] == "spinning-proof" and "spinning" not in names[:1]


@pytest.mark.stack
def test_proof_only_makes_a_contact_sheet_a_preview_and_an_estimate(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    scene = example(tmp_path)
    out = tmp_path / "out.mp4"
    with Cluster.local(start=False) as cluster:
        before = {j["job_id"] for j in cluster.jobs(limit=50)}
    result = run_cli(
        stack_env,
        "render",
        "spinning.ini",
        "+W64",
        "+H48",
        "+KFF24",
        "--proof-only",
        "-o",
        str(out),
        cwd=scene,
    )
    assert result.returncode == 0, result.stderr
    assert "proof " in result.stderr and "full job estimate: ~" in result.stderr
    video = tmp_path / "out-proof.mp4"
    assert video_frames(video) == 12  # 24 frames, every 2nd
    stream = probe_video(video)
    assert (stream["width"], stream["height"], stream["r_frame_rate"]) == (16, 12, "12/1")
    sheet = probe_video(tmp_path / "out-proof.png")
    assert sheet["width"] > 16 * 7 and sheet["height"] > 12  # 8 thumbnails a row, 2 rows
    assert not out.exists()  # no full job
    with Cluster.local(start=False) as cluster:
        new = [j for j in cluster.jobs(limit=50) if j["job_id"] not in before]
    assert [j["name"] for j in new] == ["spinning-proof"]


@pytest.mark.stack
def test_the_python_api_raises_proof_failed_and_keep_going_submits_anyway(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    scene = example(tmp_path, broken=True)
    with Cluster.local(start=False) as cluster:
        # Arguments of their own: no job of the farm has this scene's frame times.
        argv = ["spinning.ini", "+W32", "+H24", f"Declare=Run={uuid.uuid4().int % 10**9}"]
        job = Job.from_ini(cluster, argv, cwd=scene, proof=True)
        with pytest.raises(ProofFailed, match="frame 40"):
            job.submit()
        assert job.job_id is None and job.proof is not None and not job.proof.ok

        going = Job.from_ini(cluster, argv, cwd=scene, proof=True, keep_going=True)
        job_id = going.submit()
        assert going.proof is not None and not going.proof.ok
        status = cluster.status(job_id)
        assert status["units_expected"] == 48
        # A failed proof estimates nothing: the full job is planned by the check's.
        assert status["plan"]["estimate"] == "check"
        cluster.cancel(job_id)
