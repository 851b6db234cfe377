"""End to end on the local stack with real POV-Ray and ffmpeg: the CLI as a
user runs it, frames compared pixel for pixel with ``povray`` itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import BROKEN_ON_FRAME_3, decoded_pixels, run_cli, task_pid, video_frames

from povstorm.client import Cluster

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = Path("/usr/share/doc/povray/examples")


def test_render_writes_a_video_with_every_frame(stack_env: dict[str, str], tmp_path: Path) -> None:
    scene = tmp_path / "spinning"
    shutil.copytree(REPO / "examples" / "spinning", scene)
    result = run_cli(
        stack_env,
        "render",
        "spinning.ini",
        "+W64",
        "+H48",
        "+KFF24",
        "-o",
        str(tmp_path / "out.mp4"),
        "--json",
        cwd=scene,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "done"
    assert summary["units_expected"] == summary["units_done"] == 24 and summary["units_failed"] == 0
    assert set(summary) >= {"job_id", "video", "frames_dir", "stats", "errors"}
    assert video_frames(tmp_path / "out.mp4") == 24
    assert summary["stats"]["render_seconds"]["total"] > 0 and summary["stats"]["units"] == 24


@pytest.mark.parametrize("example", ["clockd", "float1", "vect1"])
def test_farm_frames_are_pixel_identical_to_povray(
    stack_env: dict[str, str], tmp_path: Path, example: str
) -> None:
    src = EXAMPLES / "animations" / example
    work = tmp_path / example
    shutil.copytree(src, work)
    ini = next(p.name for p in work.glob("*.ini"))
    direct = tmp_path / "direct"
    direct.mkdir()
    opts = ["+W48", "+H36", "-D"]
    subprocess.run(
        ["povray", ini, *opts, f"+O{direct}/"],
        cwd=work,
        capture_output=True,
        check=True,
        timeout=300,
    )
    farm = tmp_path / "farm"
    result = run_cli(stack_env, "render", ini, *opts, "--frames-dir", str(farm), "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    want = sorted(p.name for p in direct.glob("*.png"))
    got = sorted(p.name for p in farm.glob("*.png"))
    assert got == want and len(want) > 1
    for name in want:
        assert decoded_pixels(farm / name) == decoded_pixels(direct / name), (
            f"{example}: {name} differs"
        )


def test_a_frame_that_fails_to_parse_fails_the_job_with_its_error(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "broken.pov").write_text(BROKEN_ON_FRAME_3)
    result = run_cli(
        stack_env,
        "render",
        "broken.pov",
        "+W32",
        "+H24",
        "+KFI1",
        "+KFF4",
        "--max-attempts",
        "2",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "frame 3" in result.stderr and "Parse Error" in result.stderr
    job_id = result.stderr.split("job ", 2)[-1].split()[0]
    logs = run_cli(stack_env, "logs", job_id, "--frame", "3", cwd=tmp_path)
    assert logs.returncode == 0 and "Parse Error" in logs.stdout


def test_a_worker_killed_mid_frame_still_ends_with_a_whole_video(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    # Frame 2 is slow, so there is time to kill the worker that holds it.
    (tmp_path / "slow.pov").write_text(
        "camera { location <0,0,-3> look_at 0 }\n"
        "light_source { <0,5,-5> rgb 1 }\n"
        "#if (frame_number = 2)\n"
        "  #declare I = 0; #while (I < 4000000) #declare I = I + 1; #end\n"
        "#end\n"
        "sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
    )
    env = dict(stack_env)
    submit = run_cli(
        env, "render", "slow.pov", "+W32", "+H24", "+KFI1", "+KFF4", "--no-wait", cwd=tmp_path
    )
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip()
    with Cluster.local(start=False) as cluster:
        deadline = time.monotonic() + 120
        pid = None
        while pid is None and time.monotonic() < deadline:
            record: dict[str, Any] = cluster.ledger.unit_record(job_id, 1) or {}
            if record.get("state") == "rendering" and record.get("worker"):
                pid = task_pid(str(record["worker"]))
            else:
                time.sleep(0.2)
        assert pid is not None, "frame 2 never started"
        os.kill(pid, signal.SIGKILL)
        final = cluster.watch(job_id, timeout=300)
        assert final.state.value == "done" and final.done == 4
        cluster.fetch(job_id, video=tmp_path / "slow.mp4")
    assert video_frames(tmp_path / "slow.mp4") == 4
