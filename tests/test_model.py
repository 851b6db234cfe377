"""The time model of bench/model.py: the simulation against closed forms,
processor sharing, a killed task, a slow tail frame, the ledger's caps, the
task budget; the constants' sources; the local validation hook and the cloud
table on small jobs. Fast: no stack, no POV-Ray."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest

# bench/ lives at the repository's root, beside tests/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import cloud, constants, validate
from bench.model import (
    PLANS,
    Failure,
    Params,
    Workload,
    frames,
    last_to_land,
    plan,
    simulate,
    with_slow_tail,
)

# Every term non-zero and distinct, so the closed form checks each one.
P = Params(
    submit_fixed=0.5,
    submit_per_unit=0.01,
    launch=1.0,
    task_start=10.0,
    pull=0.1,
    chunk_overhead=1.0,
    povray_startup=0.6,
    povray_exit=0.05,
    povray_startup_cpu=0.07,
    povray_between=0.2,
    frame_upload=0.5,
    encode_per_frame=0.04,
    segment_upload=0.3,
    record_latency=0.2,
    function_seconds=0.3,
    stitch_launch=11.0,
    stitch_fixed=0.3,
    join_per_segment=0.004,
    segment_download=0.006,
    video_upload=2.0,
    after_done=0.25,
)


def closed_form(p: Params, n: int, t: float) -> float:
    """One task, one chunk of ``n`` frames of ``t`` seconds, nothing shared."""
    return (
        p.submit_fixed
        + n * p.submit_per_unit
        + p.launch
        + p.task_start
        + p.pull
        + p.chunk_overhead
        + p.povray_startup
        + p.povray_startup_cpu
        + n * t
        + (n - 1) * p.povray_between
        + p.povray_exit
        + n * p.encode_per_frame
        + p.segment_upload
        + p.frame_upload
        + p.record_latency
        + p.function_seconds
        + p.stitch_launch
        + p.stitch_fixed
        + (p.join_per_segment + p.segment_download)
        + p.video_upload
        + p.after_done
    )


def one_chunk(n: int, t: float, slots: int = 1) -> Workload:
    return Workload(frames(n, t), ((0, n),), slots)


def test_one_task_one_chunk_is_the_closed_form() -> None:
    r = simulate(P, one_chunk(10, 30.0))
    assert r.wall == pytest.approx(closed_form(P, 10, 30.0))
    assert (r.tasks, r.chunks, r.segments, r.gap_frames) == (1, 1, 1, 0)
    # The critical path adds up to the wall.
    assert sum(r.critical.values()) == pytest.approx(r.wall)


def test_one_core_shared_by_one_task_is_the_same() -> None:
    p = replace(P, cores=1.0)
    assert simulate(p, one_chunk(10, 30.0)).wall == pytest.approx(closed_form(P, 10, 30.0))


def test_two_tasks_on_two_cores_halve_the_render() -> None:
    p = Params(cores=2.0)
    one = simulate(p, Workload(frames(20, 3.0), ((0, 20),), 1))
    two = simulate(p, Workload(frames(20, 3.0), ((0, 10), (10, 10)), 2))
    assert one.last_landed == pytest.approx(60.0)
    assert two.last_landed == pytest.approx(30.0)


def test_more_processes_than_cores_share_them() -> None:
    chunks = ((0, 10), (10, 10), (20, 10), (30, 10))
    # Four CPU-bound processes on two cores: the CPU seconds over two.
    r = simulate(Params(cores=2.0), Workload(frames(40, 1.0), chunks, 4))
    assert r.last_landed == pytest.approx(20.0)
    # Two on one core: each at half speed.
    r = simulate(Params(cores=1.0), Workload(frames(2, 1.0), ((0, 1), (1, 1)), 2))
    assert r.last_landed == pytest.approx(2.0)
    # Unequal: the short one ends at 2 (half speed), the long one alone after.
    r = simulate(Params(cores=1.0), Workload((1.0, 2.0), ((0, 1), (1, 1)), 2))
    assert sorted(r.landed) == pytest.approx([2.0, 3.0])


def test_idle_between_frames_is_filled_by_other_processes() -> None:
    lone = Params(cores=1.0, povray_between=0.5)
    r = simulate(lone, Workload(frames(4, 1.0), ((0, 4),), 1))
    assert r.last_landed == pytest.approx(4.0 + 3 * 0.5)
    # Beside a process that never idles (one long frame), the other's idle
    # is no loss: the core is busy until the work is done.
    r = simulate(lone, Workload((1.0, 1.0, 1.0, 1.0, 4.0), ((0, 4), (4, 1)), 2))
    assert r.last_landed == pytest.approx(8.0, abs=0.5)
    assert r.last_landed < 8.0 + 3 * 0.5


def test_the_stacks_cpu_takes_from_povray() -> None:
    base = Params(cores=1.0)
    w = Workload(frames(10, 1.0), ((0, 10),), 1)
    assert simulate(replace(base, stack_cpu_per_frame=0.5), w).last_landed > 10.0


def test_a_killed_task_costs_about_one_lease() -> None:
    p = replace(P, idle_exit=60.0)  # the retried task waits for the message
    w = one_chunk(1, 30.0)
    clean = simulate(p, w)
    # Killed early in its chunk, before the lease's first extension: the
    # message comes back `lease` after it was pulled, and starts again.
    killed = simulate(p, replace(w, failure=Failure(task=0, fraction=0.1)))
    assert killed.redelivered == 1
    assert killed.tasks == 2  # the runner's retry
    assert killed.wall - clean.wall == pytest.approx(p.lease)


def test_a_killed_chunk_resumes_after_its_uploaded_frames() -> None:
    p = replace(P, idle_exit=600.0)
    w = one_chunk(10, 30.0)
    killed = simulate(p, replace(w, failure=Failure(task=0, fraction=0.55)))
    # About five frames went up before the kill: the stitch encodes them.
    assert 4 <= killed.gap_frames <= 5
    assert killed.segments == 2
    assert all(math.isfinite(c) for c in killed.uploaded)
    # Not all ten frames again: less than one lease and half the chunk more.
    clean = simulate(p, w)
    assert clean.wall < killed.wall < clean.wall + p.lease + 6 * 30.0 + p.task_start


def test_a_redelivered_chunk_recut_spreads_over_the_free_tasks() -> None:
    # Task 0 takes the 8-frame chunk and dies half-way; three tasks wait.
    w = Workload(
        frames(11, 10.0), ((0, 8), (8, 1), (9, 1), (10, 1)), 4, Failure(task=0, fraction=0.5)
    )
    p = Params(idle_exit=600.0)
    whole = simulate(p, w)
    recut = simulate(replace(p, recut_redelivered=True), w)
    assert whole.redelivered == recut.redelivered == 1
    assert recut.last_landed < whole.last_landed - 20.0


def test_nobody_alive_the_reconciler_launches() -> None:
    # The retried task gives up before the lease lapses: the reconciler
    # starts a task at its next pass.
    p = replace(P, idle_exit=1.0, reconcile_every=60.0)
    r = simulate(p, replace(one_chunk(1, 30.0), failure=Failure(task=0, fraction=0.1)))
    assert r.reconciler_launches == 1
    assert all(math.isfinite(c) for c in r.uploaded)


def test_a_slow_tail_frame_sets_the_end() -> None:
    p = Params(povray_between=0.2)
    w = Workload(frames(100, 10.0), plan("guided", 100, 10), 10)
    base = simulate(p, w)
    slow, _, unit = with_slow_tail(p, w, 3.0)
    assert unit == last_to_land(base)
    assert slow.last_landed == pytest.approx(base.last_landed + 2 * 10.0)
    assert last_to_land(slow) == unit


def test_the_slow_frame_avoids_the_failing_chunk() -> None:
    w = Workload(frames(40, 10.0), plan("equal", 40, 4), 4, Failure(task=0, fraction=0.5))
    _, _, unit = with_slow_tail(Params(), w, 3.0)
    clean = simulate(Params(), replace(w, failure=None))
    assert clean.rendered_by[unit][0] != 0


def test_the_ledger_cap_binds_with_short_frames_on_many_tasks() -> None:
    capped = replace(P, function_instances=20, function_seconds=0.3, shard_interval=1.0)
    free = replace(capped, function_instances=0, shard_interval=0.0)
    # 1,000 frames land together: counted at most ~64/s (63 shards of 16).
    w = Workload(frames(1000, 2.0), plan("frame", 1000, 1000), 1000)
    r = simulate(capped, w)
    assert r.last_count - r.last_upload > 14.0
    assert r.ledger_wait_max > 14.0
    r = simulate(free, w)
    assert r.last_count - r.last_upload == pytest.approx(
        free.record_latency + free.function_seconds
    )
    # Long frames on few tasks: a frame every few seconds, no queue.
    w = Workload(frames(1000, 30.0), plan("guided", 1000, 100), 100)
    r = simulate(replace(capped, task_start_spread=5.0), w)
    assert r.ledger_wait_max < 2.0


def test_the_function_instances_alone_cap_the_count() -> None:
    p = Params(function_instances=10, function_seconds=1.0)
    r = simulate(p, Workload(frames(100, 1.0), plan("frame", 100, 100), 100))
    assert r.last_count - r.last_upload == pytest.approx(10.0)


def test_a_task_hands_its_chunk_on_at_its_budget() -> None:
    p = Params(task_budget=10.0, idle_exit=5.0, reconcile_every=30.0)
    r = simulate(p, one_chunk(5, 3.0))
    # Frames at 3, 6, 9: the fourth would end past 10 s, so the rest goes
    # on; the task takes it back (budget left), renders one frame (a
    # chunk's first always renders), hands the last on and exits: nobody
    # lives, the reconciler starts a task.
    assert r.handed_on == 2
    assert r.reconciler_launches == 1
    assert r.segments == 3
    assert all(math.isfinite(c) for c in r.uploaded)


def test_a_task_past_its_timeout_is_killed_and_retried() -> None:
    p = Params(task_timeout=25.0, idle_exit=60.0, lease=5.0, lease_every=5.0 / 3)
    r = simulate(p, one_chunk(3, 10.0))
    # Killed at 25 s with two frames up: the third comes back after the
    # lease, to the retried task.
    assert (r.redelivered, r.tasks, r.gap_frames) == (1, 2, 2)
    assert all(math.isfinite(c) for c in r.uploaded)


def test_a_frame_longer_than_the_timeout_is_dead_lettered() -> None:
    p = Params(task_timeout=20.0, idle_exit=60.0, lease=5.0, lease_every=5.0 / 3)
    with pytest.raises(RuntimeError, match="dead-lettered"):
        simulate(p, one_chunk(1, 30.0))


def test_deterministic_with_its_seed() -> None:
    p = replace(P, task_start_spread=5.0, jitter=0.5, cores=2.0)
    w = Workload(frames(60, 1.0, cv=0.3, seed=4), plan("guided", 60, 4), 4, Failure())
    assert simulate(p, w).wall == simulate(p, w).wall
    assert frames(5, 1.0, cv=0.3, seed=1) == frames(5, 1.0, cv=0.3, seed=1)
    assert sum(frames(2000, 1.0, cv=0.3, seed=1)) / 2000 == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("name", PLANS)
def test_every_plan_covers_every_frame(name: str) -> None:
    chunks = plan(name, 97, 8, 30.0)
    assert sorted(u for a, n in chunks for u in range(a, a + n)) == list(range(97))


def test_workload_rejects_a_plan_with_holes() -> None:
    with pytest.raises(ValueError):
        Workload(frames(4, 1.0), ((0, 2),), 1)


# --- the constants ---------------------------------------------------------------------


def test_every_cloud_constant_has_a_source() -> None:
    table = constants.cloud_constants()
    names = [c.name for c in table]
    assert len(names) == len(set(names))
    for c in table:
        assert c.kind in (
            constants.DOCUMENTED,
            constants.DEPLOYMENT,
            constants.MEASURED,
            constants.ASSUMED,
        )
        assert len(c.source) > 20, c.name
        if c.kind == constants.DOCUMENTED:
            assert "https://" in c.source, c.name
    params = constants.cloud_params(table)
    assert params.cores == 0.0 and params.task_start > 0 and params.shard_interval == 1.0


def test_measured_constants_come_from_a_run_when_it_has_them() -> None:
    results = {
        "fill": {"povray_idle": {"startup_seconds": 0.5, "between_frames_seconds": 0.1}},
        "segments": {"join_per_segment_seconds": 0.002},
    }
    m = constants.measured(results)
    assert m["povray_startup"].value == 0.5
    assert m["join_per_segment"].value == 0.002
    assert "2026-11-30" not in m["povray_startup"].source
    assert "2026-11-30" in m["encode_per_frame"].source  # not in this run


# --- the local validation --------------------------------------------------------------


def _size(frames_: int, spans: int, encode: float, stack: float) -> dict[str, object]:
    attribution = {
        "client_submit": 0.1,
        "timeline": {"created_to_first_start": 0.1},
        "spans": spans,
        "delivery_overhead_total": 0.5 * spans,
        "gaps_total": 0.1 * spans,
        "before_povray": 0.4,
        "split_spans": spans,
        "vs_limit": {"client_cpu": 0.05},
    }
    return {
        "attribution": [attribution, attribution],
        "encode_seconds": encode,
        "stack_cpu_seconds_per_farm_run": {"firestore": stack},
        "farm_spans_per_run": spans,
    }


RESULTS = {
    "machine": {"nproc": 2},
    "config": {"frames": 48, "cores": 2},
    "overhead": {"320x240": _size(48, 4, 0.3, 2.0), "1280x960": _size(48, 12, 1.9, 3.0)},
    "latency": {
        s: {
            "upload_to_record_p50": 0.08,
            "last_upload_to_video": 0.6,
            "stitch_seconds": 0.4,
            "done_to_client": 0.02,
        }
        for s in ("320x240", "1280x960")
    },
    "runs": [],
    "ledger": {"ledger": {"units": 2000, "create_job_seconds": 1.0}},
    "fill": {"povray_idle": {"startup_seconds": 0.6, "between_frames_seconds": 0.2}},
}


def test_calibration_interpolates_between_sizes() -> None:
    cal = validate.calibrate(RESULTS)
    assert cal.cores == 2 and len(cal.points) == 2
    lo, hi, mid = cal.at(320 * 240), cal.at(1280 * 960), cal.at(640 * 480)
    assert lo["encode_per_frame"] < mid["encode_per_frame"] < hi["encode_per_frame"]
    assert cal.at(10)["encode_per_frame"] == lo["encode_per_frame"]  # clamped
    p = cal.params(640 * 480, foreign_cores=0.3)
    assert p.cores == 2.0 and p.background_cores == 0.3
    assert p.chunk_overhead == pytest.approx(0.1 + 0.4 - 0.2)  # gaps + before - between
    assert p.povray_startup_cpu == 0.0  # the ledger's frame CPU holds it


def _run(wall: float, slots: int = 4, cpu: float = 0.4) -> validate.LocalRun:
    return validate.LocalRun(
        label="48 frames 320x240",
        frames=48,
        width=320,
        height=240,
        slots=slots,
        wall=wall,
        frame_cpu=frames(48, cpu, cv=0.1, seed=2),
        plan={"slots": slots},
    )


def test_validation_gives_the_error_of_each_run() -> None:
    cal = validate.calibrate(RESULTS)
    predicted = validate.predict(_run(10.0), cal).wall
    out = validate.validate([_run(predicted), _run(predicted * 1.25)], cal)
    errors = [r["error"] for r in out["runs"]]
    assert errors[0] == pytest.approx(0.0, abs=1e-3)
    assert errors[1] == pytest.approx(1 / 1.25 - 1, abs=1e-3)
    assert [r["within"] for r in out["runs"]] == [True, False]
    assert out["all_within"] is False
    # Fewer slots on the same cores: longer.
    assert validate.predict(_run(10.0, slots=2), cal).wall > predicted


def test_fit_picks_the_stack_share_that_predicts_best() -> None:
    cal = validate.calibrate(RESULTS)
    target = validate.predict(_run(1.0), replace(cal, stack_share=0.3)).wall
    fitted, report = validate.fit(cal, [_run(target)])
    assert fitted.stack_share == pytest.approx(0.3)
    assert report["mean_abs_error"] == pytest.approx(0.0, abs=1e-6)


def test_configs_parse() -> None:
    assert validate.parse_configs("48x320x240@2, 96x640x480@4") == [
        validate.Config(48, 320, 240, 2),
        validate.Config(96, 640, 480, 4),
    ]
    assert validate.parse_configs("none") == []
    with pytest.raises(Exception, match="FRAMESxWxH@SLOTS"):
        validate.parse_configs("48x320@2")


# --- the cloud table ---------------------------------------------------------------------


def test_a_cloud_row_with_its_goal() -> None:
    params = constants.cloud_params(constants.cloud_constants())
    row = cloud.row(200, 20.0, 50, params, goal=60.0)
    assert row["wall"] > row["clean_wall"] >= row["ideal"]
    assert row["met"] is False
    # The ladder ends at or below the goal, or has taken everything away.
    ladder = row["to_meet_goal"]
    assert ladder and ladder[0]["without"] == "the slow tail frame"
    assert [s["wall"] for s in ladder] == sorted((s["wall"] for s in ladder), reverse=True)
    assert row["bound_with_slow_frame_last"] == pytest.approx(200 * 20 / 50 + 2 * 20.0)
    assert set(row["plans"]) == set(PLANS)


def test_a_met_goal_says_so() -> None:
    params = constants.cloud_params(constants.cloud_constants())
    row = cloud.row(100, 10.0, 20, params, goal=10_000.0)
    assert row["met"] is True and row["held_back_by"] == [] and row["to_meet_goal"] == []
    assert cloud.verdict([row])[0].endswith("met")
