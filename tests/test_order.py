"""Frames dispatched coarse to fine, and ``povstorm preview`` of a job at any time.

Without a cloud: the plan keeps the sizes of the chunks and their dispatch
order exactly as the plan made them before it was laid out coarse to fine
(compared with that plan, frozen below), places the first chunk at the start,
the second at the end, the third in the middle, tiles the range once, and a
half-dispatched plan covers the whole range; the reconciler rebuilds the same
messages in the same order. On the stack with real POV-Ray and ffmpeg:
``povstorm preview`` of a job done, of one with frames that failed (each
missing frame held from its nearest done one, compared decoded frame by
decoded frame) and of an unknown job."""

from __future__ import annotations

import json
import math
import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from fixtures.common import decoded_md5s, decoded_pixels, run_cli, video_frames, wait_until

from povstorm.client import Cluster
from povstorm.core.chunks import (
    CHUNK_SECONDS,
    EQUAL_SECONDS,
    GUIDED_SHARE,
    MAX_FRAMES_PER_UNIT,
    MIN_CHUNK_SECONDS,
    _times,
    dispatch_ranks,
    plan_chunks,
)
from povstorm.core.model import JobState, WorkMessage
from povstorm.core.naming import frame_object
from povstorm.core.schemas import load_job_spec
from povstorm.farm.operations import chunk_messages
from povstorm.ledger.docs import JobDoc
from povstorm.ledger.ledger import now
from povstorm.stitch.preview import held

# --- the plan as it was before its layout (commit 1267218), frozen ---------------------


def old_plan_chunks(
    units: int,
    slots: int,
    frames_per_unit: int = 0,
    frame_seconds: float | None = None,
    profile: Sequence[float] | None = None,
) -> list[tuple[int, int]]:
    slots = max(1, slots)
    if frames_per_unit > 0:
        size = min(frames_per_unit, MAX_FRAMES_PER_UNIT)
        return [(a, min(size, units - a)) for a in range(0, units, size)]
    if profile and units > 0 and all(t > 0 for t in profile):
        return _old_timed_chunks(_times(profile, units), slots)
    if frame_seconds and frame_seconds > 0:
        return _old_timed_chunks([frame_seconds] * units, slots)
    out: list[tuple[int, int]] = []
    first = 0
    while first < units:
        size = min(MAX_FRAMES_PER_UNIT, math.ceil((units - first) / (GUIDED_SHARE * slots)))
        out.append((first, size))
        first += size
    return out


def _old_timed_chunks(times: list[float], slots: int) -> list[tuple[int, int]]:
    total = sum(times)
    equal = total / slots <= EQUAL_SECONDS
    out: list[tuple[int, int]] = []
    first, left = 0, total
    while first < len(times):
        if equal:
            target = total / slots
        else:
            target = min(CHUNK_SECONDS, max(MIN_CHUNK_SECONDS, left / (GUIDED_SHARE * slots)))
        size = _old_cut(times, first, target)
        spent = sum(times[first : first + size])
        if equal and left - spent < target / 2:
            size = min(len(times) - first, MAX_FRAMES_PER_UNIT)
            spent = sum(times[first : first + size])
        out.append((first, size))
        first, left = first + size, left - spent
    return out


def _old_cut(times: list[float], first: int, target: float) -> int:
    size, spent = 0, 0.0
    while first + size < len(times) and size < MAX_FRAMES_PER_UNIT:
        t = times[first + size]
        if size and spent + t / 2 > target:
            break
        size, spent = size + 1, spent + t
    return size


def tiles(plan: list[tuple[int, int]], units: int) -> bool:
    """Whether the chunks cover 0..units-1, each unit once."""
    return sorted(u for a, n in plan for u in range(a, a + n)) == list(range(units))


UNITS = (1, 2, 3, 5, 7, 12, 48, 96, 100, 101, 250, 800, 1000, 5000)
SLOTS = (1, 2, 4, 8, 10, 1000)


# --- the order (no cloud) -------------------------------------------------------------


def test_dispatch_ranks_are_start_end_middle_then_quarters_then_eighths() -> None:
    assert dispatch_ranks(0) == [] and dispatch_ranks(1) == [0] and dispatch_ranks(2) == [0, 1]
    assert dispatch_ranks(5) == [0, 4, 2, 1, 3]  # 0, 1, 1/2, 1/4, 3/4
    assert dispatch_ranks(8) == [0, 7, 4, 2, 6, 1, 5, 3]
    for n in range(3, 300):
        ranks = dispatch_ranks(n)
        assert sorted(ranks) == list(range(n))
        assert ranks[0] == 0 and ranks[1] == n - 1 and ranks[2] == n // 2


@pytest.mark.parametrize(
    ("units", "slots", "fpu", "seconds"),
    [(96, 4, 4, None), (96, 4, 0, None), (48, 4, 0, None), (1000, 8, 10, None),
     (48, 4, 0, 0.5), (800, 4, 0, 0.5), (5000, 10, 0, 2.0)],
)  # fmt: skip
def test_the_first_chunk_is_at_the_start_the_second_at_the_end_the_third_in_the_middle(
    units: int, slots: int, fpu: int, seconds: float | None
) -> None:
    plan = plan_chunks(units, slots, fpu, seconds)
    assert tiles(plan, units) and len(plan) >= 3
    assert plan[0][0] == 0
    assert plan[1][0] + plan[1][1] == units
    assert plan[2][0] <= units // 2 < plan[2][0] + plan[2][1]


@pytest.mark.parametrize("fpu", [0, 1, 3, 4, 24, 100, 250])
@pytest.mark.parametrize("seconds", [None, 0.05, 0.5, 3.0, 60.0, 400.0])
def test_the_chunks_keep_their_sizes_and_their_dispatch_order(
    fpu: int, seconds: float | None
) -> None:
    """Only where each chunk lies changes: the sequence of sizes sent, first
    to last, is the plan's before its layout, for every size of job and of
    deployment; and every frame is in exactly one chunk."""
    for units in UNITS:
        for slots in SLOTS:
            new = plan_chunks(units, slots, fpu, seconds)
            old = old_plan_chunks(units, slots, fpu, seconds)
            assert [n for _, n in new] == [n for _, n in old], (units, slots)
            assert tiles(new, units), (units, slots)


@pytest.mark.parametrize("seed", range(8))
def test_with_a_profile_each_chunk_keeps_its_seconds(seed: int) -> None:
    """Frames that differ in cost: the chunks, sent in the same order, get
    the seconds they had (each within a frame's time: a chunk ends at a frame
    boundary) wherever they now lie."""
    rng = random.Random(seed)
    for units in (12, 48, 96, 300, 1000):
        for slots in (1, 2, 4, 16):
            # Smooth costs (a camera move) with a costly burst (an explosion).
            base = rng.uniform(4.0, 8.0)
            burst = rng.randrange(units)
            times = [
                base + 3.0 * math.sin(u / 7.0) + (4.0 if abs(u - burst) < units // 10 else 0.0)
                for u in range(units)
            ]
            profile = [round(t, 3) for t in times[:256]] if units <= 256 else None
            profile = profile or [
                round(sum(times[i * units // 256 : (i + 1) * units // 256]) * 256 / units, 3)
                for i in range(256)
            ]
            per_frame = _times(profile, units)
            new = plan_chunks(units, slots, profile=profile)
            old = old_plan_chunks(units, slots, profile=profile)
            assert tiles(new, units) and len(new) == len(old)
            worst = max(per_frame)
            for (a, n), (b, m) in zip(new, old, strict=True):
                assert abs(sum(per_frame[a : a + n]) - sum(per_frame[b : b + m])) <= worst


def test_the_step_profile_puts_equal_time_chunks_at_start_end_middle_and_quarter() -> None:
    seconds = [1.5] * 12 + [0.5] * 36
    plan = plan_chunks(48, 4, profile=seconds)
    assert plan == [(0, 6), (30, 18), (12, 18), (6, 6)]
    assert [sum(seconds[a : a + n]) for a, n in plan] == [9.0] * 4


@pytest.mark.parametrize(("units", "slots", "fpu"), [(96, 4, 4), (96, 4, 0), (1000, 8, 0),
                                                     (1000, 8, 10), (240, 2, 0), (48, 4, 0)])  # fmt: skip
def test_the_first_chunks_sent_spread_over_the_whole_range(
    units: int, slots: int, fpu: int
) -> None:
    """Once 2^k + 1 chunks are sent (start, end, middle, quarters...), no
    stretch of frames longer than 1/2^k of the range is left without one."""
    plan = plan_chunks(units, slots, fpu)
    k = 1
    while 2**k + 1 <= len(plan):
        sent = sorted(plan[: 2**k + 1])
        ends = [0] + [a + n for a, n in sent]
        starts = [a for a, _ in sent] + [units]
        assert max(s - e for s, e in zip(starts, ends, strict=True)) <= units / 2**k, k
        k += 1


def test_the_reconciler_rebuilds_the_same_messages_in_the_same_order() -> None:
    """A job the submitter left in ``submitted``: the reconciler's
    ``chunk_messages`` from the job document's plan is the submission's, and
    for the units still pending the same chunks cut to them, in dispatch order."""
    spec = load_job_spec(
        {"povray": {"args": ["s.pov"], "frames": {"first": 1, "last": 96}}, "job_id": "job-o"}
    )
    job = JobDoc(job_id="job-o", state=JobState.SUBMITTED, plan={"slots": 4})
    plan = plan_chunks(96, 4)
    assert chunk_messages(job, spec) == [WorkMessage("job-o", a, 1, n) for a, n in plan]
    pending = set(range(96)) - set(range(10, 20)) - {47, 90}
    again = chunk_messages(job, spec, pending)
    assert sorted(u for m in again for u in m.units) == sorted(pending)
    index = [next(i for i, (a, n) in enumerate(plan) if a <= m.unit < a + n) for m in again]
    assert index == sorted(index)
    timed = JobDoc(job_id="job-o", state=JobState.SUBMITTED, plan={"slots": 2, "frame_seconds": 3})
    assert chunk_messages(timed, spec) == [
        WorkMessage("job-o", a, 1, n) for a, n in plan_chunks(96, 2, frame_seconds=3)
    ]


def test_held_takes_the_nearest_done_frame_the_earlier_on_a_tie() -> None:
    done = {1: Path("b"), 6: Path("g"), 11: Path("l")}
    assert [p.name for p in held(done, 12)] == list("bbbbggggglll")
    assert [p.name for p in held({5: Path("x")}, 3)] == ["x"] * 3


# --- povstorm preview on the stack ----------------------------------------------------

# Frames 3 to 6 of 1..12 fail to parse; the others are a sphere whose colour
# moves with the clock, so every done frame differs from the others.
BROKEN_3_TO_6 = (
    "camera { location <0,0,-3> look_at 0 }\n"
    "light_source { <0,5,-5> rgb 1 }\n"
    "#if (frame_number >= 3 & frame_number <= 6)\n"
    "  sphere { 0, 1 pigment { rgb <1,0,0> } \n"
    "#else\n"
    "  sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
    "#end\n"
)


def _size(png: Path) -> tuple[int, int]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height", "-of", "csv=p=0", str(png)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    width, height = out.strip().split(",")
    return int(width), int(height)


@pytest.mark.stack
@pytest.mark.e2e
def test_preview_of_a_job_with_failed_frames_holds_each_from_the_nearest_done_one(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "broken.pov").write_text(BROKEN_3_TO_6)
    render = run_cli(
        stack_env, "render", "broken.pov", "+W32", "+H24", "+KFI1", "+KFF12",
        "--max-attempts", "1", "--codec", "prores", "--json", cwd=tmp_path,
    )  # fmt: skip
    summary = json.loads(render.stdout)
    assert render.returncode == 1 and summary["units_failed"] == 4, render.stderr
    job_id = summary["job_id"]
    out = tmp_path / "pv"
    preview = run_cli(stack_env, "preview", job_id, "-o", str(out), cwd=tmp_path)
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.count("\n") == 1 and "8 of 12 frames done" in preview.stdout
    sheet, video = out / "contact.png", out / "preview.mov"  # prores goes in a mov
    assert str(sheet) in preview.stdout and str(video) in preview.stdout
    width, height = _size(sheet)
    assert width > 0 and height > 0
    # The whole animation's length: 12 frames, each missing one (units 2..5)
    # the picture of its nearest done one (units 1 and 6; prores encodes each
    # frame on its own, so equal pictures decode equal).
    assert video_frames(video) == 12
    md5 = decoded_md5s(video)
    assert md5[2] == md5[3] == md5[1] and md5[4] == md5[5] == md5[6]
    done = [0, 1, 6, 7, 8, 9, 10, 11]
    assert len({md5[u] for u in done}) == len(done)  # each done frame its own picture
    # The frames it used are the farm's own, pixel for pixel.
    with Cluster.local(start=False) as cluster:
        for unit in (1, 6):
            own = tmp_path / f"own-{unit}.png"
            cluster.blobs.download_to(frame_object(job_id, unit), own)
            assert decoded_pixels(out / "frames" / f"{unit:06d}.png") == decoded_pixels(own)
    assert sorted(p.name for p in (out / "frames").glob("*.png")) == [f"{u:06d}.png" for u in done]


@pytest.mark.stack
@pytest.mark.e2e
def test_preview_while_a_job_renders_and_once_it_is_done(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "s.pov").write_text(
        "camera { location <0,0,-3> look_at 0 }\n"
        "light_source { <0,5,-5> rgb 1 }\n"
        "#declare I = 0; #while (I < 300000) #declare I = I + 1; #end\n"
        "sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
    )
    submit = run_cli(
        stack_env, "render", "s.pov", "+W32", "+H24", "+KFI1", "+KFF12", "--no-wait", cwd=tmp_path
    )
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip()
    out = tmp_path / "pv"
    with Cluster.local(start=False) as cluster:
        wait_until(lambda: cluster.status(job_id)["units_done"] >= 1, 120, "a frame done")
        first = run_cli(stack_env, "preview", job_id, "-o", str(out), cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert "of 12 frames done" in first.stdout
        assert video_frames(out / "preview.mp4") == 12 and _size(out / "contact.png")[0] > 0
        wait_until(lambda: cluster.status(job_id)["state"] == "done", 180, "the job done")
    again = run_cli(stack_env, "preview", job_id, "-o", str(out), "--max-frames", "6", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "12 of 12 frames done" in again.stdout
    # At most 6 frames, sampled evenly, at a rate that keeps the length.
    assert video_frames(out / "preview.mp4") == 6


@pytest.mark.stack
def test_preview_of_an_unknown_job_or_of_one_with_nothing_done_is_one_line(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    unknown = run_cli(stack_env, "preview", "no-such-job", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.count("\n") == 1 and "no-such-job" in unknown.stderr
    assert "Traceback" not in unknown.stderr and not (tmp_path / "no-such-job-preview").exists()
    # A job the ledger has but no worker was sent (as a submitter that died
    # before it published): nothing done yet.
    job_id = f"job-none-{int(time.time() * 1000)}"
    spec = load_job_spec(
        {"povray": {"args": ["s.pov"], "frames": {"first": 1, "last": 4}}, "job_id": job_id}
    )
    with Cluster.local(start=False) as cluster:
        cluster.ledger.create_job(spec, job_id, {"slots": 1}, now())
        nothing = run_cli(stack_env, "preview", job_id, cwd=tmp_path)
        cluster.cancel(job_id)
    assert nothing.returncode == 1
    assert nothing.stderr.count("\n") == 1 and "no frame done yet" in nothing.stderr
    assert not (tmp_path / f"{job_id}-preview").exists()
