"""What a job costs at Cloud Run list prices (core/cost.py, the table of
core/prices.py), and the budget that cancels a job whose projected cost
passes it (farm/operations.py: enforce_budget).

Three tiers: the model on known jobs, its dollar figures worked out by hand
from the price table (no stack); the ledger's sums and the budget check
through the frame event on the Firestore emulator (side effects on fakes);
and renders on the session's stack through the CLI, where ``status --json``
must show the model applied to the times the frames recorded.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from fakes import MemoryBlobStore, RecordingLauncher, RecordingPublisher
from fixtures.common import run_cli as run

from povstorm.client import Cluster
from povstorm.client.cli import main
from povstorm.cloud.clients import Clients
from povstorm.core import cost
from povstorm.core.errors import SpecError
from povstorm.core.model import FrameEvent, JobState, UnitState
from povstorm.core.naming import frame_object
from povstorm.core.prices import PRICES
from povstorm.core.schemas import dump_job_spec, load_job_spec
from povstorm.core.settings import Settings
from povstorm.farm import operations as farm_ops
from povstorm.ledger.ledger import Ledger

MIB = 1 << 20
# The deployment's default tasks (terraform's): render 2 vCPU / 2 GiB, stitch 2 vCPU / 4 GiB.
RENDER = cost.TaskShape(vcpus=2, memory_gib=2)
STITCH = cost.TaskShape(vcpus=2, memory_gib=4)
# One frame of 10 s and 1 MiB, by hand from the table (2026-11-30, us-central1):
#   render  10 s x (2 vCPU x $0.000018 + 2 GiB x $0.000002)       = $0.0004
#   event   $0.40 / 1e6 + 0.3 s x (0.333 x $0.000024 + 0.5 x $0.0000025)
#           = $0.0000004 + $0.0000027726                          = $0.0000031726
#   ledger  4 x $0.03 / 1e5 + 3 x $0.09 / 1e5                     = $0.0000039
#   ops     3 x $0.005 / 1e3 + 1 x $0.0004 / 1e3                  = $0.0000154
#   storage 1/1024 GiB x $0.020 for a month                       = $0.00001953125
TEN_SECOND_FRAME = 0.00044200385

SCENE = (
    "camera { location <0,0,-3> look_at 0 }\n"
    "light_source { <0,5,-5> rgb 1 }\n"
    "sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
)


def exactly(value: float) -> Any:
    """A dollar figure worked out by hand: equal up to float rounding."""
    return pytest.approx(value, rel=1e-12, abs=1e-15)


# --- the model, by hand ----------------------------------------------------------------------


def test_a_known_jobs_cost_by_hand_from_the_price_table() -> None:
    # Three frames of 10, 20 and 30 s, 1 MiB each; a 60 s stitch; a 2 MiB video.
    usage = cost.Usage(
        frames=3, render_seconds=60.0, frame_bytes=3 * MIB, stitch_seconds=60.0, video_bytes=2 * MIB
    )
    parts = cost.job_cost(usage, RENDER, STITCH).components
    assert parts == {
        "render_cpu": exactly(60 * 2 * 0.000018),  # $0.00216
        "render_memory": exactly(60 * 2 * 0.000002),  # $0.00024
        "frame_events": exactly(3 * 0.0000031726),  # $0.0000095178
        "ledger": exactly(3 * 0.0000039),  # $0.0000117
        "storage_operations": exactly(3 * 0.0000154),  # $0.0000462
        "storage": exactly(5 / 1024 * 0.020),  # 5 MiB for a month: $0.00009765625
        "stitch": exactly(60 * (2 * 0.000018 + 4 * 0.000002)),  # $0.00264
    }
    assert cost.job_cost(usage, RENDER, STITCH).total == exactly(0.00520507405)


def test_a_frame_is_billed_for_its_wall_seconds_at_its_tasks_size() -> None:
    assert cost.frame_cost(10.0, MIB, RENDER).total == exactly(TEN_SECOND_FRAME)
    # 30 s: three times the render, the rest the same.
    assert cost.frame_cost(30.0, MIB, RENDER).total == exactly(0.00124200385)
    # Twice the vCPUs and memory for the same wall time: twice the render.
    big = cost.TaskShape(vcpus=4, memory_gib=4)
    assert cost.frame_cost(10.0, MIB, big).total == exactly(TEN_SECOND_FRAME + 0.0004)
    # A frame from the frame cache rendered nothing: it costs its event, ledger,
    # operations and storage only.
    assert cost.frame_cost(0.0, MIB, RENDER).total == exactly(TEN_SECOND_FRAME - 0.0004)


def test_the_projection_waits_for_enough_frames_then_passes_the_budget() -> None:
    one = cost.Usage(frames=1, render_seconds=10.0, frame_bytes=MIB)
    five = cost.Usage(frames=5, render_seconds=50.0, frame_bytes=5 * MIB)
    assert cost.projected(five, 100, RENDER, STITCH) == exactly(100 * TEN_SECOND_FRAME)
    # 1 of 100 frames is too few to project from (5 % is 5 frames): the $0.0442
    # projection does not count yet, and $0.000442 spent is under $0.04.
    assert not cost.can_project(1, 100)
    assert cost.over_budget(one, 100, 0.04, RENDER, STITCH) is None
    assert cost.over_budget(five, 100, 0.04, RENDER, STITCH) == (
        "projected $0.0442 passes the budget $0.04 after 5 of 100 frames"
    )
    assert cost.over_budget(five, 100, 0.05, RENDER, STITCH) is None
    # Spent already past the budget: no projection needed.
    assert cost.over_budget(one, 100, 0.0004, RENDER, STITCH) == (
        "projected $0.0442 passes the budget $0.0004 after 1 of 100 frames"
    )
    # A small job projects from 3 frames, a job of 2 from both.
    assert [cost.can_project(n, 4) for n in (2, 3)] == [False, True]
    assert [cost.can_project(n, 2) for n in (1, 2)] == [False, True]


def test_dollars_read_as_people_read_them() -> None:
    figures = [1234.5, 1.0, 0.5, 0.0442004, 0.000183, 0.000001, 0.0]
    assert [cost.usd(v) for v in figures] == [
        "$1,234.50",
        "$1.00",
        "$0.50",
        "$0.0442",
        "$0.000183",
        "$0.000001",
        "$0.00",
    ]


def test_task_sizes_come_from_the_deployment_and_default_to_terraforms() -> None:
    assert [cost.memory_gib(m) for m in ("2Gi", "512Mi", "4096Mi", "1G")] == [
        2.0,
        0.5,
        4.0,
        pytest.approx(10**9 / 2**30),
    ]
    with pytest.raises(ValueError):
        cost.memory_gib("lots")
    sized = Settings.from_env({"POVSTORM_RENDER_CPUS": "4", "POVSTORM_RENDER_MEMORY": "8Gi"})
    recorded = cost.resources(sized)
    assert recorded == {
        "render": {"vcpus": 4.0, "memory_gib": 8.0},
        "stitch": {"vcpus": 2.0, "memory_gib": 4.0},
    }
    assert cost.shapes(recorded) == (cost.TaskShape(4, 8), STITCH)
    # A job from before jobs recorded them is costed at the defaults.
    assert cost.shapes(None) == (RENDER, STITCH)


def test_a_jobs_usage_is_read_from_its_shards_and_its_stats() -> None:
    job = {"stats": {"stitch_seconds": 2.5, "video_bytes": 4096}}
    shards = [
        {"done": 8, "render_seconds": 12.5, "frame_bytes": 8000},
        {"done": 2, "render_seconds": 3.0, "frame_bytes": 2000},
    ]
    assert cost.usage_of(job, shards) == cost.Usage(10, 15.5, 10000, 2.5, 4096)
    # Shards written before they summed times: a done job's stats have the total.
    old = {"stats": {"render_seconds": {"total": 15.5}}}
    assert cost.usage_of(old, [{"done": 8}, {"done": 2}]).render_seconds == 15.5


def test_the_cost_object_adds_up_and_says_what_it_is() -> None:
    job = {
        "units_expected": 4,
        "spec": {"budget_usd": 0.5},
        "resources": cost.resources(Settings()),
    }
    records = [
        {"unit": u, "frame": u + 1, "render_seconds": 10.0 * (u + 1), "frame_bytes": MIB}
        for u in range(3)
    ]
    usage = cost.Usage(3, 60.0, 3 * MIB, stitch_seconds=0.0)
    local = cost.summary(job, usage, local=True, records=records)
    assert local["currency"] == "USD" and local["prices"]["date"] == PRICES.date == "2026-11-30"
    assert local["prices"]["free_tier"] == "not deducted" and local["assumptions"]
    assert local["basis"] == "what it would have cost on Cloud Run"
    assert set(local["components"]) == {
        "render_cpu",
        "render_memory",
        "frame_events",
        "ledger",
        "storage_operations",
        "storage",
        "stitch",
    }
    assert local["total_usd"] == pytest.approx(sum(local["components"].values()), abs=1e-7)
    # Each frame's own cost; together, the job's (no stitch or video yet).
    per_frame = [f["usd"] for f in local["frames_detail"]]
    assert per_frame == [
        pytest.approx(cost.frame_cost(s, MIB, RENDER).total, abs=1e-8) for s in (10, 20, 30)
    ]
    assert sum(per_frame) == pytest.approx(local["total_usd"], abs=1e-7)
    # 3 of 4 frames done: one more at their average.
    assert local["projected_usd"] == pytest.approx(local["total_usd"] * 4 / 3, abs=1e-7)
    # A job that ended (cancelled here) renders nothing more: its cost is all.
    ended = cost.summary({**job, "state": "cancelled"}, usage, local=True)
    assert ended["projected_usd"] == ended["total_usd"] == local["total_usd"]
    assert cost.line(local).startswith(f"would cost {cost.usd(local['total_usd'])} on Cloud Run")
    assert "budget $0.50" in cost.line(local)
    cloud = cost.summary(job, usage, local=False)
    assert cloud["basis"] == "Cloud Run list prices" and "frames_detail" not in cloud
    assert cost.line(cloud, detail=False) == (
        f"cost {cost.usd(cloud['total_usd'])} at Cloud Run list prices of 2026-11-30"
    )


def test_a_budget_that_is_not_a_positive_amount_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["render", "scene.pov", "--budget", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "povstorm: error: --budget 0: a positive amount of USD"
    )
    spec = {"povray": {"args": ["+Iscene.pov"], "frames": {"first": 1, "last": 2}}}
    with pytest.raises(SpecError, match="budget_usd"):
        load_job_spec({**spec, "budget_usd": -1})
    assert dump_job_spec(load_job_spec({**spec, "budget_usd": 2.5}))["budget_usd"] == 2.5
    # Absent when unset: a job without a budget keeps the spec hash it had.
    assert load_job_spec(spec).budget_usd is None
    assert "budget_usd" not in dump_job_spec(load_job_spec(spec))


# --- the ledger's sums and the budget check, on the Firestore emulator -----------------------


def farm_clients(settings: Settings) -> Clients:
    """The stack's Firestore in the test's own project; every side effect
    (bucket, publishes, launches) on fakes, so the test sees them."""
    return Clients(
        settings=settings,
        db=Clients.from_settings(settings).db,
        blobs=MemoryBlobStore(settings.bucket),
        publisher=RecordingPublisher(),
        launcher=RecordingLauncher(),
    )


def submit_scene(clients: Clients, frames: int, **extra: Any) -> str:
    payload = {
        "name": "cost",
        "povray": {"args": ["+Iscene.pov"], "frames": {"first": 1, "last": frames}},
        "job_id": f"cost-{uuid.uuid4().hex[:12]}",
        **extra,
    }
    return str(farm_ops.submit(clients, payload)["job_id"])


def land(clients: Clients, job_id: str, unit: int, seconds: float, size: int = MIB) -> None:
    """The frame's finalize event, as GCS sends it: its stats and its size."""
    farm_ops.on_frame_event(
        clients,
        FrameEvent(
            bucket=clients.settings.bucket,
            name=frame_object(job_id, unit),
            generation=1,
            metadata={"render_seconds": f"{seconds:.3f}"},
            size=size,
        ),
    )


@pytest.mark.stack
def test_counted_frames_sum_their_time_and_size_on_their_shards(settings: Settings) -> None:
    clients = farm_clients(settings)
    job_id = submit_scene(clients, 20)  # shards of 8, 8 and 4 frames
    for unit, seconds in ((0, 1.5), (9, 2.0), (17, 3.25)):
        land(clients, job_id, unit, seconds, size=1000 + unit)
    land(clients, job_id, 9, 2.0)  # a duplicate event counts nothing
    ledger = Ledger(clients.db)
    assert ledger.usage(job_id) == (3, 6.75, 3026)
    view = ledger.view(job_id)
    assert cost.usage_of(view.doc, view.shards) == cost.Usage(3, 6.75, 3026)
    assert ledger.unit_record(job_id, 17)["frame_bytes"] == 1017  # type: ignore[index]
    # submit recorded the deployment's task sizes, which the cost is computed with.
    assert view.doc["resources"] == cost.resources(settings)


@pytest.mark.stack
def test_the_budget_cancels_a_job_once_its_projection_passes_with_the_reason(
    settings: Settings,
) -> None:
    clients = farm_clients(settings)
    # 40 frames of 10 s: $0.000442 each, $0.0177 in all, against $0.01.
    job_id = submit_scene(clients, 40, budget_usd=0.01)
    ledger = Ledger(clients.db)
    for unit in (0, 1):  # too few to project from; $0.000884 spent
        land(clients, job_id, unit, 10.0)
        assert ledger.require_job(job_id)["state"] == JobState.RENDERING
    land(clients, job_id, 2, 10.0)
    job = ledger.require_job(job_id)
    assert job["state"] == JobState.CANCELLED
    assert job["cancel_reason"] == "projected $0.0177 passes the budget $0.01 after 3 of 40 frames"
    assert clients.blobs.exists(f"jobs/{job_id}/cancelled")  # the cancel path's own marker
    # A frame landing after the cancel is counted, and cancels nothing again.
    land(clients, job_id, 3, 10.0)
    assert ledger.require_job(job_id)["cancel_reason"] == job["cancel_reason"]


@pytest.mark.stack
def test_a_job_within_its_budget_or_without_one_renders_on(settings: Settings) -> None:
    clients = farm_clients(settings)
    within = submit_scene(clients, 4, budget_usd=0.01)  # 4 x $0.000442
    without = submit_scene(clients, 4)
    for unit in range(3):
        land(clients, within, unit, 10.0)
        land(clients, without, unit, 1000.0)  # $0.04 a frame: no budget, no limit
    ledger = Ledger(clients.db)
    assert [ledger.require_job(j)["state"] for j in (within, without)] == ["rendering"] * 2
    assert [ledger.require_job(j).get("cancel_reason") for j in (within, without)] == [None] * 2


# --- renders on the session's stack -----------------------------------------------------------


@pytest.mark.stack
@pytest.mark.e2e
def test_status_json_shows_the_model_applied_to_the_frames_recorded_times(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "ball.pov").write_text(SCENE)
    rendered = run(
        stack_env, "render", "ball.pov", "+W32", "+H24", "+KFI1", "+KFF3", "-o", "ball.mp4",
        cwd=tmp_path,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    job_id = rendered.stderr.split("job ", 1)[1].split(":")[0]
    assert (
        "; would cost $" in rendered.stdout and "on Cloud Run at list prices of" in rendered.stdout
    )

    status = json.loads(run(stack_env, "status", job_id, "--json", cwd=tmp_path).stdout)
    with Cluster.local(start=False) as cluster:
        records = cluster.ledger.unit_records(job_id, (UnitState.DONE,))
    stats = status["stats"]
    recorded = cost.Usage(
        frames=len(records),
        render_seconds=sum(float(r["render_seconds"]) for r in records),
        frame_bytes=sum(int(r["frame_bytes"]) for r in records),
        stitch_seconds=float(stats["stitch_seconds"]),
        video_bytes=int(stats["video_bytes"]),
    )
    assert len(records) == 3 and recorded.render_seconds > 0 and recorded.frame_bytes > 0
    assert recorded.video_bytes == (tmp_path / "ball.mp4").stat().st_size
    expected = cost.job_cost(recorded, RENDER, STITCH)
    shown = status["cost"]
    assert shown["total_usd"] == pytest.approx(expected.total, abs=2e-8)
    assert shown["components"] == {
        k: pytest.approx(v, abs=1e-8) for k, v in expected.components.items()
    }
    assert shown["currency"] == "USD" and shown["prices"]["date"] == PRICES.date
    assert shown["basis"] == "what it would have cost on Cloud Run"
    assert shown["tasks"]["render"] == {"vcpus": 2.0, "memory_gib": 2.0}
    text = run(stack_env, "status", job_id, cwd=tmp_path).stdout
    assert f"would cost {cost.usd(shown['total_usd'])} on Cloud Run" in text

    # fetch's stats.json: the same cost, and each frame's, from its own record.
    out = tmp_path / "fetched"
    assert (
        run(stack_env, "fetch", job_id, "-o", str(out), "--no-frames", cwd=tmp_path).returncode == 0
    )
    fetched = json.loads((out / "stats.json").read_text())["cost"]
    assert fetched["total_usd"] == shown["total_usd"]
    by_unit = {int(r["unit"]): r for r in records}
    assert [f["usd"] for f in fetched["frames_detail"]] == [
        pytest.approx(
            cost.frame_cost(
                float(by_unit[f["unit"]]["render_seconds"]),
                int(by_unit[f["unit"]]["frame_bytes"]),
                RENDER,
            ).total,
            abs=1e-8,
        )
        for f in fetched["frames_detail"]
    ]


@pytest.mark.stack
@pytest.mark.e2e
def test_a_tiny_budget_cancels_the_render_and_says_why(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "ball.pov").write_text(SCENE)
    rendered = run(
        stack_env, "render", "ball.pov", "+W32", "+H24", "+KFI1", "+KFF48",
        "--budget", "0.000001", cwd=tmp_path,
    )  # fmt: skip
    assert rendered.returncode == 1, rendered.stderr
    reason = re.search(
        r"cancelled: (projected \$[0-9.]+ passes the budget \$0\.000001 after (\d+) of 48 frames)",
        rendered.stderr,
    )
    assert reason is not None, rendered.stderr
    assert 1 <= int(reason[2]) < 48  # the first frames' cost already passes it
    job_id = rendered.stderr.split("job ", 1)[1].split(":")[0]
    status = json.loads(run(stack_env, "status", job_id, "--json", cwd=tmp_path).stdout)
    assert status["state"] == "cancelled" and status["cancel_reason"] == reason[1]
    assert status["cost"]["budget_usd"] == 0.000001
    assert status["cost"]["total_usd"] > 0.000001
    text = run(stack_env, "status", job_id, cwd=tmp_path).stdout
    assert f"cancelled by the farm: {reason[1]}" in text and "budget $0.000001" in text
