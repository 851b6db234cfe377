"""Every CLI verb, as a user types it, on the session's local stack; and the
Python API on a generated job. Bad input: one line, a non-zero exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.common import (
    POVSTORM_CLI,
    povray_of_frame,
    quiet_render_tasks,
    render_execution,
    video_frames,
    wait_until,
)
from fixtures.common import run_cli as run

from povstorm.client import Cluster, Job, WorkUnit

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[1]
SCENE = (
    "camera { location <0,0,-3> look_at 0 }\n"
    "light_source { <0,5,-5> rgb 1 }\n"
    "sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
)


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("povstorm: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_render_then_jobs_status_watch_fetch_logs(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "ball.pov").write_text(SCENE)
    rendered = run(
        stack_env,
        "render",
        "ball.pov",
        "+W32",
        "+H24",
        "+KFI1",
        "+KFF3",
        "-o",
        "ball.mp4",
        cwd=tmp_path,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert (
        "done: 3 frame(s)" in rendered.stdout
        and "speed-up" in rendered.stdout
        and "render time" in rendered.stdout
    )
    assert (tmp_path / "ball.mp4").stat().st_size > 0
    job_id = rendered.stderr.split("job ", 1)[1].split(":")[0]

    jobs = run(stack_env, "jobs", cwd=tmp_path)
    assert jobs.returncode == 0 and job_id in jobs.stdout and "done" in jobs.stdout
    listed = json.loads(run(stack_env, "jobs", "--json", cwd=tmp_path).stdout)
    assert any(j["job_id"] == job_id and j["units_done"] == 3 for j in listed)

    status = json.loads(run(stack_env, "status", job_id, "--json", cwd=tmp_path).stdout)
    assert status["state"] == "done" and status["units_done"] == 3 and status["video"]
    assert "3/3 done" in run(stack_env, "status", job_id, cwd=tmp_path).stdout

    watched = run(stack_env, "watch", job_id, cwd=tmp_path)
    assert watched.returncode == 0 and "3/3 done" in watched.stderr

    out = tmp_path / "fetched"
    with Cluster.local(start=False) as cluster:  # made after the video: it may lag
        wait_until(lambda: cluster.ledger.require_job(job_id).get("sheet"), 60, "the sheet")
    fetched = run(stack_env, "fetch", job_id, "-o", str(out), cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        "ball1.png",
        "ball2.png",
        "ball3.png",
    ]
    assert (out / "video.mp4").exists() and (out / "poster.png").exists()
    assert (out / "contact.png").stat().st_size > 0
    assert json.loads((out / "stats.json").read_text())["units_done"] == 3

    logs = run(stack_env, "logs", job_id, "--frame", "2", cwd=tmp_path)
    assert logs.returncode == 0 and "attempt-1.log" in logs.stdout and "POV-Ray" in logs.stdout


def test_cancel_stops_a_job(stack_env: dict[str, str], tmp_path: Path) -> None:
    # About 0.1 s of parsing a frame: the 200 frames outlast the cancel.
    (tmp_path / "ball.pov").write_text(
        "#declare I = 0; #while (I < 100000) #declare I = I + 1; #end\n" + SCENE
    )
    quiet_render_tasks()  # so that the job gets an execution of its own
    result = run(
        stack_env,
        "render",
        "ball.pov",
        "+W32",
        "+H24",
        "+KFI1",
        "+KFF200",
        "--no-wait",
        cwd=tmp_path,
    )
    job_id = result.stdout.strip()
    cancelled = run(stack_env, "cancel", job_id, cwd=tmp_path)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    status = json.loads(run(stack_env, "status", job_id, "--json", cwd=tmp_path).stdout)
    assert status["state"] == "cancelled" and status["units_done"] < 200
    assert run(stack_env, "watch", job_id, cwd=tmp_path).returncode == 1
    # The render execution started for the job is stopped, as Cloud Run
    # cancels an execution: no task of it runs or waits any more.
    with Cluster.local(start=False) as cluster:
        (execution,) = (cluster.ledger.get_job(job_id) or {})["executions"]

    def stopped() -> dict | None:
        e = render_execution(f"{execution}/0")
        return e if e["running"] == e["pending"] == 0 else None

    assert wait_until(stopped, 30, "the execution to stop")["cancelled"] >= 1


def test_retry_requeues_failed_frames_and_completes_the_same_job(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    # Frame 2 fails once: its POV-Ray is killed while it parses (a slow loop),
    # a transient fault (a lost machine, say) from outside the job. The scene
    # cannot see outside its sandbox, so the fault cannot come from a file.
    slow = (
        "#if (frame_number = 2)\n#local I = 0;\n#while (I < 3000000) #local I = I + 1; #end\n#end\n"
    )
    (tmp_path / "flaky.pov").write_text(SCENE + slow)
    render = subprocess.Popen(
        [*POVSTORM_CLI, "render", "flaky.pov", "+W32", "+H24", "+KFI1", "+KFF3",
         "--max-attempts", "1", "--frames-per-unit", "1", "-o", "f.mp4"],
        cwd=tmp_path, env=stack_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        pid = wait_until(lambda: povray_of_frame("flaky.pov", 2), 120, "frame 2's POV-Ray")
        os.kill(pid, signal.SIGKILL)
        _out, err = render.communicate(timeout=120)
    finally:
        if render.poll() is None:
            render.kill()
    assert render.returncode == 1 and "frame 2" in err, err
    job_id = err.split("job ", 1)[1].split(":")[0]
    retried = run(stack_env, "retry", job_id, "--wait", cwd=tmp_path)
    assert retried.returncode == 0 and "requeued 1 unit(s)" in retried.stdout
    status = json.loads(run(stack_env, "status", job_id, "--json", cwd=tmp_path).stdout)
    assert status["state"] == "done" and status["units_done"] == 3 and status["units_failed"] == 0
    assert status["video"]


@pytest.mark.parametrize(
    "files,args,needle",
    [
        ({"bad.ini": "Width=64\nWdth=48\n"}, ["bad.ini"], "bad.ini:2: unknown option 'Wdth'"),
        ({"s.pov": SCENE}, ["s.pov", "+W32", "+Q"], "unknown switch"),
        ({}, ["missing.ini"], "missing.ini"),
        ({"s.pov": '#include "nowhere.inc"\n' + SCENE}, ["s.pov", "+W32", "+H24"], "nowhere.inc"),
        ({"s.pov": SCENE}, ["s.pov", "--frobnicate"], "--frobnicate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    stack_env: dict[str, str], tmp_path: Path, files: dict[str, str], args: list[str], needle: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert needle in one_line_error(run(stack_env, "render", *args, cwd=tmp_path))


@pytest.mark.parametrize("verb", ["status", "watch", "logs", "fetch", "preview", "cancel", "retry"])
def test_an_unknown_job_is_one_line_and_exit_2(
    stack_env: dict[str, str], tmp_path: Path, verb: str
) -> None:
    assert "unknown job: no-such-job" in one_line_error(
        run(stack_env, verb, "no-such-job", cwd=tmp_path)
    )


def test_a_30_frame_job_built_with_the_python_api(stack: object, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "examples"))
    try:
        from generated import build
    finally:
        sys.path.remove(str(REPO / "examples"))
    with Cluster.local(start=False) as cluster:
        job = build(cluster, frames=30, width=32, height=24, fps=10)
        assert isinstance(job, Job) and all(isinstance(u, WorkUnit) for u in job.units)
        job.submit()
        seen: list[int] = []
        job.wait(on_progress=lambda p: seen.append(p.done), timeout=300)
        result = job.result(video=tmp_path / "generated.mp4", frames_dir=tmp_path / "frames")
    assert result.ok and result.units_done == 30 and seen[-1] == 30
    assert len(result.frames) == 30 and (tmp_path / "generated.mp4").stat().st_size > 0
    assert video_frames(tmp_path / "generated.mp4") == 30
