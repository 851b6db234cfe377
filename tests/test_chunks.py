"""Chunks: a unit of work is a run of frames rendered by one POV-Ray process.

On the real stack with real POV-Ray: chunked frames are pixel-identical to
``povray`` run directly (a subset the user gave, a cyclic animation, a chunk
that spans the job's last frame); a frame that fails inside a chunk is
reported and the frames after it go on; a worker killed mid-chunk and a
duplicate delivery of a half-done chunk still count every frame once and
resume where the bucket ends; a cancel stops a chunk; a worker whose budget
runs out hands the rest on. Without a cloud: the plan, the message schema,
POV-Ray's output split by frame."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import (
    BROKEN_ON_FRAME_3,
    SLOW_FRAME,
    decoded_pixels,
    loops_for,
    render_execution,
    run_cli,
    task_pid,
    video_frames,
    wait_until,
)
from google.cloud import pubsub_v1

from povstorm.client import Cluster
from povstorm.cloud.clients import Clients
from povstorm.core.chunks import frame_profile, plan_chunks, plan_line, runs, sample_profile
from povstorm.core.errors import PoisonMessage
from povstorm.core.model import UnitState, WorkMessage
from povstorm.core.names import Namespace
from povstorm.core.naming import frame_object, input_object, log_object
from povstorm.core.schemas import encode_message, load_job_spec, load_work_message
from povstorm.core.spec import MAX_FRAME_SECONDS
from povstorm.farm.operations import coalesce
from povstorm.ledger.ledger import Ledger
from povstorm.povray import GrowingOutput, frame_sections, png_complete
from povstorm.worker.inputs import InputCache
from povstorm.worker.unit import handle_work

EXAMPLES = Path("/usr/share/doc/povray/examples/animations")

# A frame that takes about a second of parsing, so a test can act mid-chunk.
SLOW = (
    "camera { location <0,0,-3> look_at 0 }\n"
    "light_source { <0,5,-5> rgb 1 }\n"
    "#declare I = 0; #while (I < 600000) #declare I = I + 1; #end\n"
    "sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
)


# --- the plan and the messages (no cloud) ---------------------------------------------


def test_the_guided_plan_shrinks_to_single_frames_and_covers_every_frame_once() -> None:
    plan = plan_chunks(48, slots=4)
    sizes = [n for _, n in plan]
    assert sizes == [12, 9, 7, 5, 4, 3, 2, 2, 1, 1, 1, 1]
    # (Placed coarse to fine: tests/test_order.py.)
    assert sorted(u for a, n in plan for u in range(a, a + n)) == list(range(48))
    assert sum(sizes) == 48
    # A known frame time caps a chunk at CHUNK_SECONDS of rendering...
    assert max(n for _, n in plan_chunks(10_000, slots=10, frame_seconds=60.0)) == 5
    # ...cuts a job of at most EQUAL_SECONDS a slot into one chunk a slot...
    assert [n for _, n in plan_chunks(48, slots=4, frame_seconds=0.5)] == [12, 12, 12, 12]
    assert [n for _, n in plan_chunks(400, slots=4, frame_seconds=0.5)] == [100] * 4
    # ...and a longer one into guided chunks of at least MIN_CHUNK_SECONDS
    # (and at most MAX_FRAMES_PER_UNIT frames).
    assert [n for _, n in plan_chunks(800, slots=4, frame_seconds=0.5)] == [
        100, 100, 100, 100, 100, 75, 56, 42, 32, 24, 20, 20, 20, 11
    ]  # fmt: skip
    # The user's size; the rest of the job is the last chunk sent, in the middle.
    assert plan_chunks(10, slots=4, frames_per_unit=4) == [(0, 4), (6, 4), (4, 2)]
    assert plan_chunks(3, slots=1000) == [(0, 1), (2, 1), (1, 1)]


def test_a_known_profile_cuts_chunks_of_equal_time_not_of_equal_frames() -> None:
    """The first quarter of the frames costs three times the rest: four
    chunks of 12 frames would leave the first running alone at the end."""
    seconds = [1.5] * 12 + [0.5] * 36
    plan = plan_chunks(48, slots=4, profile=frame_profile(seconds))
    assert plan == [(0, 6), (30, 18), (12, 18), (6, 6)]  # start, end, middle, quarter
    assert {sum(seconds[a : a + n]) for a, n in plan} == {9.0}
    # Longer than EQUAL_SECONDS a slot: guided in seconds (the first chunk a
    # quarter of the time), never shorter than MIN_CHUNK_SECONDS.
    longer = [20.0] * 12 + [5.0] * 36
    plan = plan_chunks(48, slots=4, profile=longer)
    assert plan[0] == (0, 5) and sum(n for _, n in plan) == 48
    assert plan[1] == (32, 16) and sum(longer[32:]) == 80.0  # the end: its 80 s, cheap frames
    assert all(sum(longer[a : a + n]) >= 10.0 for a, n in plan)
    # The user's size wins; a profile with an unknown (0) time is not used.
    assert plan_chunks(48, 4, frames_per_unit=24, profile=seconds) == [(0, 24), (24, 24)]
    assert plan_chunks(48, 4, profile=[0.0, *seconds[1:]]) == plan_chunks(48, 4)


def test_a_frame_profile_keeps_at_most_256_slices_and_fills_unknown_frames() -> None:
    assert frame_profile([1.0] * 6 + [None] * 6 + [3.0] * 6) == [1.0] * 6 + [2.0] * 6 + [3.0] * 6
    assert frame_profile([None, None]) == []
    slices = frame_profile([1.0] * 500 + [3.0] * 500)
    assert len(slices) == 256 and slices[0] == 1.0 and slices[-1] == 3.0
    # Read back per frame, the slices map to the frames they came from.
    plan = plan_chunks(1000, 2, profile=slices)
    assert sum(n for _, n in plan) == 1000


# 48 frames of equal cost (examples/spinning at 320x240) as a job on 6
# processes over 2 cores recorded them, after a job of 12 chunks: each one's
# wall seconds, and its CPU seconds, higher for a chunk's first frame (its
# POV-Ray's start-up).
NOISY_WALL = [
    1.04, 1.03, 1.63, 0.93, 0.46, 0.73, 0.86, 1.86, 0.86, 0.86, 1.23, 0.82, 0.72, 0.53, 0.56, 0.67,
    1.03, 0.7, 1.29, 0.59, 1.28, 0.84, 1.07, 1.77, 1.09, 0.56, 1.15, 1.08, 0.84, 0.66, 0.77, 1.19,
    0.99, 1.48, 0.82, 1.11, 0.94, 0.54, 0.43, 0.55, 1.96, 1.57, 1.11, 0.81, 0.51, 0.56, 0.79, 0.6,
]  # fmt: skip
STARTUP_CPU = [
    0.27, 0.24, 0.37, 0.23, 0.23, 0.23, 0.23, 0.34, 0.28, 0.28, 0.34, 0.23, 0.23, 0.22, 0.23, 0.22,
    0.3, 0.24, 0.31, 0.23, 0.34, 0.22, 0.23, 0.42, 0.24, 0.23, 0.32, 0.22, 0.23, 0.22, 0.23, 0.44,
    0.26, 0.36, 0.23, 0.23, 0.23, 0.22, 0.23, 0.22, 0.32, 0.4, 0.35, 0.24, 0.22, 0.23, 0.23, 0.22,
]  # fmt: skip


def test_a_profile_takes_its_shape_from_cpu_seconds_without_the_start_ups() -> None:
    """Frames of equal cost make chunks of equal frame counts, whatever shared
    the cores while they were timed; cut on their wall seconds they did not."""
    profile = frame_profile(NOISY_WALL, STARTUP_CPU)
    for slots in (4, 6):
        assert [n for _, n in plan_chunks(48, slots, profile=profile)] == [48 // slots] * slots
    assert len({n for _, n in plan_chunks(48, 4, profile=frame_profile(NOISY_WALL))}) > 1
    # The level is the wall seconds' mean: the plan's limits are in wall time.
    assert abs(sum(profile) / 48 - sum(NOISY_WALL) / 48) < 0.01
    # A change of cost that lasts keeps its edge: the first 12 frames cost 3x.
    lasting = frame_profile([1.0] * 48, [0.9] * 12 + [0.3] * 36)
    assert plan_chunks(48, 4, profile=lasting) == [(0, 6), (30, 18), (12, 18), (6, 6)]
    # A frame without CPU seconds: the wall seconds give the shape.
    assert frame_profile([1.0] * 6 + [3.0] * 6, [0.5] * 11 + [None]) == [1.0] * 6 + [3.0] * 6


def test_an_estimate_plans_equal_chunks_only_for_a_short_job() -> None:
    """The client's estimate of a scene the farm has not rendered (its parse
    check's first and last frames) is drawn as a line between them, or flat
    where they are within the noise of timing small renders; it plans one
    chunk a slot only where an error in it cannot cost much."""
    assert sample_profile([1.0, 3.0], 5) == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert sample_profile([2.0], 3) == [2.0] * 3
    assert sample_profile([0.0001, 0.0], 2) == [0.001, 0.001]  # what a spec takes
    assert sample_profile([1e9], 1) == [MAX_FRAME_SECONDS]
    line = sample_profile([1.0, 3.0], 10_000)
    assert len(line) == 256 and line[0] == 1.0 and line[-1] == 3.0
    # The same frames timed 1.2 x apart (examples/spinning's first and last
    # at 320x240): one cost, so 6 slots get 6 chunks of 8, not 7s and 9s.
    noisy = sample_profile([0.12, 0.10], 48)
    assert noisy == [0.11] * 48
    assert [n for _, n in plan_chunks(48, 6, profile=noisy, estimated=True)] == [8] * 6
    assert sample_profile([0.1, 0.15, 0.19], 3) == [0.147] * 3
    # examples/spinning at 320x240 (about 0.2 s a frame): one chunk a slot,
    # where a plan without any times has 12 (each a POV-Ray start-up).
    cheap = sample_profile([0.2, 0.2], 48)
    assert [n for _, n in plan_chunks(48, 4, profile=cheap, estimated=True)] == [12] * 4
    assert len(plan_chunks(48, 4)) == 12
    # 24 s a slot: equal chunks if measured, guided in seconds if estimated.
    costly = sample_profile([2.0, 2.0], 48)
    assert [n for _, n in plan_chunks(48, 4, profile=costly)] == [12] * 4
    guided = plan_chunks(48, 4, profile=costly, estimated=True)
    assert sorted(n for _, n in guided) == [5, 5, 5, 5, 7, 9, 12]
    # A rising cost: fewer of the costly last frames a chunk.
    rising = plan_chunks(48, 4, profile=sample_profile([0.1, 0.5], 48), estimated=True)
    assert sorted(rising)[0][1] > sorted(rising)[-1][1]


def test_status_says_what_a_plan_was_made_from() -> None:
    scene = load_job_spec({"povray": {"args": ["s.ini"], "frames": {"first": 1, "last": 48}}})
    assert plan_line(scene, {"slots": 4}) == (
        "12 chunk(s) of 1-12 frame(s) on 4 slot(s), guided: no frame time was known"
    )
    estimated = {"slots": 4, "frame_profile": [0.2, 0.3], "estimate": "check"}
    assert plan_line(scene, estimated) == (
        "4 chunk(s) of 10-15 frame(s) on 4 slot(s), from the parse check's estimate (~0.25 s a frame)"
    )
    measured = {"slots": 4, "frame_seconds": 2.0}
    assert plan_line(scene, measured).endswith(
        "from the frame times of the scene's last job (~2.00 s a frame)"
    )
    fixed = load_job_spec({"povray": {"args": ["s.ini"], "frames": {"first": 1, "last": 48}},
                           "frames_per_unit": 10})  # fmt: skip
    assert plan_line(fixed, measured) == (
        "5 chunk(s) of 8-10 frame(s) on 4 slot(s), as asked (--frames-per-unit 10)"
    )
    prepass = load_job_spec({"povray": {"args": ["s.ini"], "frames": {"first": 1, "last": 5},
                                        "prepass": True}, "frames_per_unit": 5})  # fmt: skip
    assert plan_line(prepass, {"slots": 4}).endswith(": a radiosity pre-pass, one POV-Ray process")


def test_runs_and_coalesce_group_contiguous_units_by_attempt() -> None:
    assert runs([0, 1, 2, 5, 7, 8]) == [(0, 3), (5, 1), (7, 2)]
    spec = load_job_spec(
        {"povray": {"args": ["s.pov"], "frames": {"first": 1, "last": 300}}, "job_id": "job-c"}
    )
    singles = [WorkMessage("job-c", u, 2) for u in (3, 4, 5, 9)] + [WorkMessage("job-c", 6, 3)]
    assert coalesce(singles, spec) == [
        WorkMessage("job-c", 3, 2, 3),
        WorkMessage("job-c", 9, 2, 1),
        WorkMessage("job-c", 6, 3, 1),
    ]
    many = [WorkMessage("job-c", u, 2) for u in range(250)]
    # Coarse to fine, as a plan: the first, the last, the middle.
    assert [(m.unit, m.count) for m in coalesce(many, spec)] == [(0, 100), (200, 50), (100, 100)]


def test_a_work_message_carries_its_chunk_and_refuses_a_bad_one() -> None:
    message = WorkMessage("job-m", 10, 2, 5)
    assert load_work_message(encode_message(message)) == message
    assert list(message.units) == [10, 11, 12, 13, 14]
    assert load_work_message(b'{"job_id": "job-m", "unit": 3}').count == 1  # older messages
    for bad in (0, 101):
        with pytest.raises(PoisonMessage):
            load_work_message(json.dumps({"job_id": "job-m", "unit": 0, "count": bad}))


def test_povrays_output_splits_by_frame_and_a_png_is_complete_at_its_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _scene(tmp_path, "s.pov", SLOW.replace("600000", "10"))
    run = subprocess.run(
        ["povray", "-D", "-P", "+FN", "+W16", "+H12", "+KFI1", "+KFF9", "+SF4", "+EF6",
         f"+O{out}/", "+Is.pov"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    preamble, sections = frame_sections(run.stdout + run.stderr)
    assert len(sections) == 3 and "Rendering frame" not in preamble
    assert all("Trace Time" in s for s in sections)
    assert sections[1].startswith("Rendering frame 2 of 3")
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["s4.png", "s5.png", "s6.png"]
    assert all(png_complete(p) for p in pngs)
    cut = tmp_path / "cut.png"
    cut.write_bytes(pngs[0].read_bytes()[:-5])
    assert not png_complete(cut)

    # Read as it grows, in pieces that cut lines, marks and UTF-8 characters
    # anywhere, the output splits as it does whole, and a frame counts as
    # begun only once its mark's line is complete.
    whole = (run.stdout + run.stderr + "\u00e9 tail without newline").encode()
    log_path = tmp_path / "growing.log"
    log_path.write_bytes(b"")
    growing = GrowingOutput(log_path)
    begun = []
    for piece in _pieces(whole, random.Random(5)):
        with log_path.open("ab") as f:
            f.write(piece)
        growing.read()
        begun.append(growing.frames_begun)
        seen = log_path.read_bytes().decode(errors="replace")
        lines_done = seen[: seen.rfind("\n") + 1]
        assert growing.frames_begun == len(frame_sections(lines_done)[1])
    growing.read(final=True)
    assert begun == sorted(begun) and begun[-1] == 3
    assert growing.sections() == frame_sections(whole.decode())
    assert growing.text() == whole.decode()


def _pieces(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(60, len(data) - 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _scene(directory: Path, name: str, text: str) -> Path:
    (directory / name).write_text(text)
    return directory


# --- chunks on the real stack -------------------------------------------------------


@pytest.mark.stack
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("example", "extra", "chunks"),
    [
        # a subset given by the user; chunks of 7 and one of 5, the second
        # chunk sent (of 7) ending on the job's last frame
        ("float1", ["+SF5", "+EF23", "--frames-per-unit", "7"], 3),
        # a cyclic animation, chunks of 6 and one of 2 (sent last, in the middle)
        ("clockd", ["--frames-per-unit", "6"], 4),
    ],
)
def test_chunked_frames_are_pixel_identical_to_povray(
    stack_env: dict[str, str], tmp_path: Path, example: str, extra: list[str], chunks: int
) -> None:
    work = tmp_path / example
    shutil.copytree(EXAMPLES / example, work)
    ini = next(p.name for p in work.glob("*.ini"))
    povray_args = [a for a in extra if a.startswith("+")]
    opts = ["+W48", "+H36", "-D"]
    direct = tmp_path / "direct"
    direct.mkdir()
    subprocess.run(
        ["povray", ini, *opts, *povray_args, f"+O{direct}/"],
        cwd=work,
        capture_output=True,
        check=True,
        timeout=300,
    )
    farm = tmp_path / "farm"
    result = run_cli(
        stack_env, "render", ini, *opts, *extra, "--frames-dir", str(farm), "--json", cwd=work
    )
    assert result.returncode == 0, result.stderr
    want = sorted(p.name for p in direct.glob("*.png"))
    got = sorted(p.name for p in farm.glob("*.png"))
    assert got == want and len(want) > 7
    for name in want:
        assert decoded_pixels(farm / name) == decoded_pixels(direct / name), f"{name} differs"
    summary = json.loads(result.stdout)
    # Each chunk's segment was there before its last frame: the stitch joined
    # them all and encoded nothing itself.
    assert (summary["stats"]["segments_joined"], summary["stats"]["segments_encoded"]) == (
        chunks,
        0,
    )
    job_id = summary["job_id"]
    with Cluster.local(start=False) as cluster:
        starts = {r["started_at"] for r in cluster.ledger.unit_records(job_id)}
        logs = cluster.logs(job_id, unit=len(want) - 1)
    # One POV-Ray process a chunk (its frames start together), and each frame
    # has its own part of POV-Ray's output as its log.
    assert len(starts) == chunks
    ((_, text),) = logs
    assert text.count("Rendering frame") == 1 and text.count("Trace Time") == 1


@pytest.mark.stack
@pytest.mark.e2e
def test_a_frame_failing_inside_a_chunk_is_reported_and_the_chunk_goes_on(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    _scene(tmp_path, "broken.pov", BROKEN_ON_FRAME_3)
    args = ["broken.pov", "+W32", "+H24", "+KFI1", "+KFF6", "--frames-per-unit", "6"]
    result = run_cli(
        stack_env, "render", *args, "--max-attempts", "2", "--timeout", "120", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "frame 3" in result.stderr and "Parse Error" in result.stderr
    job_id = result.stderr.split("job ", 2)[-1].split()[0]
    with Cluster.local(start=False) as cluster:
        records = {r["unit"]: r for r in cluster.ledger.unit_records(job_id)}
        assert {u: r["state"] for u, r in records.items()} == {
            0: "done", 1: "done", 2: "failed", 3: "done", 4: "done", 5: "done"
        }  # fmt: skip
        # Frames 4-6 came from a fresh process after frame 3 failed; frame 3
        # alone was tried again.
        assert all(records[u]["attempts"] == 1 for u in (0, 1, 3, 4, 5))
        assert records[2]["attempts"] == 2
        generations = {u: records[u]["generation"] for u in (0, 1, 3, 4, 5)}
        # retry renders the failed frame only.
        assert cluster.retry(job_id) == 1
        final = cluster.watch(job_id, timeout=120)
        assert final.state.value == "failed"
        again = {r["unit"]: r for r in cluster.ledger.unit_records(job_id)}
        # The retry gave frame 3 the job's two attempts again; no other frame moved.
        assert again[2]["attempts"] == 4 and cluster.blobs.exists(log_object(job_id, 2, 4))
        assert {u: again[u]["generation"] for u in generations} == generations
        assert not any(cluster.blobs.exists(log_object(job_id, u, 2)) for u in generations)


def _submit_slow(stack_env: dict[str, str], tmp_path: Path, frames: int) -> str:
    _scene(tmp_path, "slow.pov", SLOW)
    submit = run_cli(
        stack_env,
        "render",
        "slow.pov",
        "+W32",
        "+H24",
        "+KFI1",
        f"+KFF{frames}",
        "--frames-per-unit",
        str(frames),
        "--no-wait",
        cwd=tmp_path,
    )
    assert submit.returncode == 0, submit.stderr
    return submit.stdout.strip()


def _record(cluster: Cluster, job_id: str, unit: int) -> dict[str, Any]:
    return cluster.ledger.unit_record(job_id, unit) or {}


@pytest.mark.stack
@pytest.mark.e2e
def test_a_worker_killed_mid_chunk_resumes_where_the_bucket_ends(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    job_id = _submit_slow(stack_env, tmp_path, 5)
    with Cluster.local(start=False) as cluster:
        wait_until(lambda: _record(cluster, job_id, 1).get("state") == "done", 120, "frame 2")
        worker = str(_record(cluster, job_id, 2)["worker"])
        os.kill(task_pid(worker), signal.SIGKILL)
        before = {u: _record(cluster, job_id, u)["generation"] for u in (0, 1)}
        final = cluster.watch(job_id, timeout=300)
        assert final.state.value == "done" and final.done == 5
        records = {r["unit"]: r for r in cluster.ledger.unit_records(job_id)}
        # Frames already in the bucket were not rendered again...
        assert {u: records[u]["generation"] for u in (0, 1)} == before
        assert all(records[u]["deliveries"] == 1 for u in (0, 1))
        # ...and the redelivery counted a delivery on the frame it resumed at
        # (the one the lost worker was rendering), and on no other.
        (resumed,) = (u for u in range(5) if records[u]["deliveries"] == 2)
        assert resumed in (2, 3) and records[resumed]["worker"] != worker
        assert all(records[u]["deliveries"] == 1 for u in range(resumed + 1, 5))
        # The task runner retried the killed task, as Cloud Run retries a task.
        assert render_execution(worker)["retries"] >= 1
        cluster.fetch(job_id, video=tmp_path / "slow.mp4")
    assert video_frames(tmp_path / "slow.mp4") == 5


@pytest.mark.stack
@pytest.mark.e2e
def test_a_duplicate_delivery_of_a_half_done_chunk_counts_each_frame_once(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    job_id = _submit_slow(stack_env, tmp_path, 5)
    project = stack_env["POVSTORM_PROJECT"]
    topic = Namespace(stack_env.get("POVSTORM_NAMESPACE") or "povstorm").topic("work")
    publisher = pubsub_v1.PublisherClient()
    with Cluster.local(start=False) as cluster:
        wait_until(lambda: _record(cluster, job_id, 1).get("state") == "done", 120, "frame 2")
        first = _record(cluster, job_id, 0)["generation"]
        # Pub/Sub delivers at least once: the same chunk again, while it renders.
        publisher.publish(
            publisher.topic_path(project, topic), encode_message(WorkMessage(job_id, 0, 1, 5))
        ).result(timeout=30)
        final = cluster.watch(job_id, timeout=300)
        view = cluster.ledger.view(job_id)
        assert final.state.value == "done" and view.done == 5 and view.failed == 0
        assert view.doc["units_done"] == 5
        assert _record(cluster, job_id, 0)["generation"] == first
        cluster.fetch(job_id, video=tmp_path / "dup.mp4")
    assert video_frames(tmp_path / "dup.mp4") == 5


@pytest.mark.stack
@pytest.mark.e2e
def test_a_cancel_stops_a_chunk_within_seconds(stack_env: dict[str, str], tmp_path: Path) -> None:
    job_id = _submit_slow(stack_env, tmp_path, 30)
    with Cluster.local(start=False) as cluster:
        wait_until(lambda: _record(cluster, job_id, 0).get("state") == "done", 120, "frame 1")
        assert cluster.cancel(job_id) == "cancelled"

        def frames() -> int:
            return sum(1 for _ in cluster.blobs.list(f"frames/{job_id}/"))

        time.sleep(8)  # the worker looks at the job every 5 s
        stopped = frames()
        time.sleep(4)
        assert frames() == stopped < 30


# --- the worker's budget ------------------------------------------------------------


@pytest.mark.stack
@pytest.mark.usefixtures("project_topics")
def test_a_worker_out_of_budget_hands_the_rest_of_its_chunk_on(
    clients: Clients, ledger: Ledger, tmp_path: Path
) -> None:
    # Frames of about 2 s (measured here, now) against a budget of 8 s, which
    # is one frame's limit too: 12 frames overrun it even should the machine
    # get 3 times faster, and the first frame fits even 3.5 times slower.
    frames = 12
    data = SLOW_FRAME.format(salt=uuid.uuid4().hex, loops=loops_for(2, tmp_path)).encode()
    sha = hashlib.sha256(data).hexdigest()
    clients.blobs.upload_bytes(input_object(sha), data)
    job_id = f"t-{uuid.uuid4().hex[:12]}"
    spec = load_job_spec(
        {
            "job_id": job_id,
            "inputs": {"slow.pov": sha},
            "povray": {
                "args": ["slow.pov", "+W16", "+H12", "+KFI1", f"+KFF{frames}"],
                "frames": {"first": 1, "last": frames},
            },
        }
    )
    ledger.create_job(spec, job_id)
    ledger.mark_dispatched(job_id)
    budget = clients.settings.with_overrides(render_timeout=8)
    tight = Clients(budget, clients.db, clients.blobs, clients.publisher, clients.launcher)
    outcome = handle_work(
        tight, ledger, WorkMessage(job_id, 0, 1, frames), cache=InputCache(tmp_path / "cache")
    )
    assert outcome.status == "rendered" and "handed on" in outcome.detail, outcome
    done = [u for u in range(frames) if clients.blobs.exists(frame_object(job_id, u))]
    assert done and done == list(range(len(done))) and len(done) < frames
    # The rest is pending again, no delivery counted, its message confirmed.
    # (This project's ledger gets no finalize events: the rendered ones stay
    # rendering.)
    rest = ledger.units(job_id, (UnitState.PENDING,))
    assert [u.unit for u in rest] == list(range(len(done), frames))
    assert all(u.deliveries == 0 and u.queued_at is not None for u in rest)
    # The rest is on the work topic as one chunk that starts where this one stopped.
    subscriber = pubsub_v1.SubscriberClient()
    sub = subscriber.subscription_path(
        clients.settings.project, Namespace(clients.settings.namespace).subscription("work")
    )
    pulled = subscriber.pull(request={"subscription": sub, "max_messages": 10}, timeout=10)
    messages = [load_work_message(m.message.data) for m in pulled.received_messages]
    assert WorkMessage(job_id, len(done), 1, frames - len(done)) in messages
