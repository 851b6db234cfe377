"""The reconciler (``povstorm.farm.reconcile.reconcile``) on the real emulators,
with real frames in the bucket and the real local stitch launcher, one fresh
project per test. Each test leaves behind what a crash or a lost message
leaves, checks that a pass before the deadline repairs nothing, that a pass
after it repairs exactly that, and that the next pass finds nothing to do.

Deadlines are set per test (zero where the deadline itself is not the point);
"past a deadline" for a unit stuck in rendering is its ``started_at`` moved
back in time, as the clock would have done.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fakes import RecordingRenderLauncher
from fixtures.common import video_frames
from fixtures.faultkit import Farm, render_frames

from povstorm.cloud.clients import Clients
from povstorm.core.errors import TransientError
from povstorm.core.model import FailureReport, JobState, UnitState
from povstorm.core.naming import video_object
from povstorm.farm import operations as farm_ops
from povstorm.farm.reconcile import Deadlines, Report, Restart, reconcile, resume
from povstorm.ledger.ledger import now
from povstorm_local.state import StackState

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

ZERO = dt.timedelta(0)
# Every repair due at once (the stitch-run deadline stays long: a pass must
# not relaunch a stitch that is running right now).
DUE = Deadlines(dispatch=ZERO, requeue_publish=ZERO, lost_event=ZERO, stitch_launch=ZERO)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return render_frames(tmp_path_factory.mktemp("reconcile-frames"), 4)


@pytest.fixture
def farm(
    infra_stack: StackState, fresh_project: str, tmp_path: Path, frames: list[Path]
) -> Iterator[Farm]:
    f = Farm.create(infra_stack, fresh_project, tmp_path / "stitch-logs", frames)
    yield f
    assert f.close() == [], "a stitch process was still running at the end of the test"


def nothing_done(report: Report) -> bool:
    return not any(report.as_dict().values())


def test_a_claimed_stitch_is_launched_after_its_deadline_and_only_once(farm: Farm) -> None:
    job = farm.make_job()
    for unit in range(4):  # the events land; whoever claimed the stitch died before launching
        farm.land(job, unit)
    claim = farm.ledger.require_job(job)["stitch"]
    assert farm.state(job) == "stitching" and claim["launched_at"] is None

    assert nothing_done(reconcile(farm.clients, Deadlines(lost_event=ZERO)))  # a fresh claim
    assert not farm.stitch_in_flight(job)

    report = reconcile(farm.clients, Deadlines(stitch_launch=ZERO))
    assert report.relaunched == [job] and report.errors == []
    stitch = farm.ledger.require_job(job)["stitch"]
    assert stitch["launches"] == 1 and stitch["claim"] == claim["claim"]
    # Launched a moment ago: a pass does not launch it again while it may run.
    assert reconcile(farm.clients, Deadlines(stitch_launch=ZERO)).relaunched == []

    done = farm.wait_settled(job)
    assert farm.stitch_results(job) == ["done"]
    assert done["state"] == "done" and done["stats"]["units"] == 4
    assert nothing_done(reconcile(farm.clients, DUE))  # a done job is not active


def test_a_stitch_that_launched_and_never_finished_is_launched_again_after_its_run_deadline(
    farm: Farm, tmp_path: Path
) -> None:
    job = farm.make_job(2)
    for unit in range(2):
        farm.land(job, unit)
    # The launch was confirmed, but the execution died before doing anything
    # (a Cloud Run Job task killed at start-up): nothing will ever finish it.
    farm.ledger.mark_launched(job)
    assert reconcile(farm.clients, DUE).relaunched == []  # it may still be running

    report = reconcile(farm.clients, Deadlines(stitch_run=ZERO))
    assert report.relaunched == [job]
    done = farm.wait_settled(job)
    assert farm.stitch_results(job) == ["done"]
    assert done["state"] == "done" and done["stitch"]["launches"] == 2
    video = tmp_path / "video.mp4"
    farm.clients.blobs.download_to(video_object(job), video)
    assert video_frames(video) == 2


def test_units_stuck_in_rendering_past_their_deadline_are_republished_once(farm: Farm) -> None:
    job = farm.make_job(3, timeout_seconds=5)
    ledger = farm.ledger
    assert ledger.start_unit(job, 0, 1, "worker-that-died") is not None
    assert ledger.start_unit(job, 1, 1, "worker-still-rendering") is not None
    # Unit 0's worker died a minute ago; the render timeout is 5 s, so its
    # deadline (a chunk's unit has its own) passed 55 s ago.
    started = now() - dt.timedelta(seconds=60)
    ledger.unit_ref(job, 0).update(
        {"started_at": started, "deadline_at": started + dt.timedelta(seconds=5)}
    )
    margin = dt.timedelta(seconds=10)

    # Deadline + margin: unit 0 is past it, unit 1 is not,
    # unit 2 is pending in the queue (its first message is still there).
    report = reconcile(farm.clients, Deadlines(lost_event=ZERO, render_margin=margin))
    assert report.republished == [(job, 0)] and report.errors == []
    assert farm.work(job, expect=1) == [(0, 1)]  # the same attempt, sent again
    assert farm.unit(job, 0)["queued_at"] is not None

    again = reconcile(farm.clients, Deadlines(lost_event=ZERO, render_margin=margin))
    assert again.republished == [] and farm.work(job) == []
    # The redelivered attempt reaches a worker as a second delivery of attempt 1:
    # the worker's delivery limit turns a unit that keeps killing workers into a failure.
    ticket = ledger.start_unit(job, 0, 1, "worker-2")
    assert ticket is not None and ticket.deliveries == 2
    assert farm.unit(job, 1)["state"] == UnitState.RENDERING


def test_units_handed_on_whose_message_was_lost_are_republished_once_as_a_chunk(
    farm: Farm,
) -> None:
    job = farm.make_job(4)
    ticket = farm.ledger.start_chunk(job, 0, 4, 1, "worker-out-of-budget")
    assert ticket is not None and ticket.units == (0, 1, 2, 3)
    # It rendered unit 0, handed 1-3 back and died before publishing them.
    assert farm.ledger.hand_off(job, [1, 2, 3], 1, "worker-out-of-budget") == [1, 2, 3]
    assert reconcile(farm.clients, Deadlines(lost_event=ZERO)).republished == []  # not yet due
    report = reconcile(farm.clients, Deadlines(lost_event=ZERO, requeue_publish=ZERO))
    assert report.republished == [(job, 1), (job, 2), (job, 3)]
    assert farm.work(job, expect=3) == [(1, 1), (2, 1), (3, 1)]  # one chunk, attempt 1
    assert all(farm.unit(job, u)["queued_at"] is not None for u in (1, 2, 3))
    assert reconcile(farm.clients, DUE).republished == [] and farm.work(job) == []
    # Unit 0 is still its worker's: it rendered it.
    assert farm.unit(job, 0)["state"] == UnitState.RENDERING


def test_a_requeued_unit_whose_publish_was_lost_is_republished_once(farm: Farm) -> None:
    job = farm.make_job(2, max_attempts=3)
    # Unit 0: the failure went through the whole path (requeue published and confirmed).
    farm_ops.on_failure(farm.clients, FailureReport(job, 0, 1, "Parse Error: a"))
    assert farm.work(job, expect=1) == [(0, 2)]
    # Unit 1: the requeue committed, and the process died before publishing.
    assert farm.ledger.record_failure(job, 1, 1, "Parse Error: b").kind == "requeued"

    assert reconcile(farm.clients, Deadlines(lost_event=ZERO)).republished == []  # not yet due
    report = reconcile(farm.clients, Deadlines(lost_event=ZERO, requeue_publish=ZERO))
    assert report.republished == [(job, 1)]
    assert farm.work(job, expect=1) == [(1, 2)]
    assert reconcile(farm.clients, DUE).republished == [] and farm.work(job) == []
    assert [farm.unit(job, u)["attempts"] for u in (0, 1)] == [2, 2]


def test_a_job_stuck_in_submitted_is_dispatched_once(farm: Farm) -> None:
    job = farm.make_job(3, dispatch=False)  # the submitter died after writing the job
    assert nothing_done(reconcile(farm.clients, Deadlines()))  # it may still be dispatching
    assert farm.work(job) == []

    render = RecordingRenderLauncher()  # and render tasks for it, as submit starts them
    report = reconcile(replace(farm.clients, render=render), Deadlines(dispatch=ZERO))
    assert report.redispatched == [job]
    assert [j for j, _ in render.launched] == [job]
    assert farm.work(job, expect=3) == [(0, 1), (1, 1), (2, 1)]
    assert farm.state(job) == JobState.RENDERING
    assert reconcile(farm.clients, DUE).redispatched == [] and farm.work(job) == []


def test_a_job_whose_last_event_was_lost_is_completed_and_stitched_once(farm: Farm) -> None:
    job = farm.make_job()
    for unit in range(3):
        farm.land(job, unit)
    farm.upload(job, 3)  # the frame is in the bucket; its finalize event never came

    assert nothing_done(reconcile(farm.clients, Deadlines()))  # the event may be on its way
    report = reconcile(farm.clients, Deadlines(lost_event=ZERO))
    assert report.recovered == [(job, 3)] and report.errors == []
    assert farm.unit(job, 3)["state"] == UnitState.DONE

    done = farm.wait_settled(job)
    assert farm.stitch_results(job) == ["done"] and done["state"] == "done"
    assert (done["units_done"], done["units_failed"], done["shards_complete"]) == (4, 0, 1)
    assert farm.counts(job) == (4, 0)
    assert nothing_done(reconcile(farm.clients, DUE))


def test_a_complete_shard_a_crash_left_unfolded_is_folded_once(farm: Farm) -> None:
    job = farm.make_job()
    for unit in range(3):
        farm.land(job, unit)
    farm.crash("fold", job, 3)  # counted, completing the job's one shard, then killed
    shard = farm.ledger.view(job).shards[0]
    assert (shard["done"], shard["complete"]) == (4, False)
    before = farm.ledger.require_job(job)
    assert (before["state"], before["shards_complete"], before["units_done"]) == ("rendering", 0, 0)

    assert nothing_done(reconcile(farm.clients, Deadlines()))
    report = reconcile(farm.clients, Deadlines(lost_event=ZERO))
    assert report.recovered == [(job, -1)]  # shard 0, reported as -1 - 0
    done = farm.wait_settled(job)
    assert farm.stitch_results(job) == ["done"]
    assert (done["state"], done["units_done"], done["shards_complete"]) == ("done", 4, 1)
    assert done["stitch"]["launches"] == 1
    assert nothing_done(reconcile(farm.clients, DUE))


def test_two_reconcilers_at_once_repair_everything_once(
    farm: Farm, infra_stack: StackState
) -> None:
    lost = farm.make_job()  # its last event was lost
    for unit in range(3):
        farm.land(lost, unit)
    farm.upload(lost, 3)
    unfolded = [farm.make_job(), farm.make_job()]  # a crash left a shard unfolded in each
    for job in unfolded:
        for unit in range(3):
            farm.land(job, unit)
        farm.crash("fold", job, 3)
    submitted = farm.make_job(2, dispatch=False)
    requeued = farm.make_job(2, max_attempts=3)
    farm.ledger.record_failure(requeued, 1, 1, "boom")  # requeue committed, never published

    # Two schedulers firing together, each with clients of its own.
    others = [farm.clients, Clients.from_settings(farm.settings, log_dir=farm.log_dir)]
    with cf.ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda c: reconcile(c, DUE), others))
    assert [r.errors for r in reports] == [[], []]

    for job in [lost, *unfolded]:
        done = farm.wait_settled(job)
        # Both passes read these jobs while they were rendering: whichever lost
        # the race to record, fold or claim launched nothing.
        assert farm.stitch_results(job) == ["done"] and done["stitch"]["launches"] == 1
        assert (done["state"], done["units_done"], done["units_failed"]) == ("done", 4, 0)
        assert (done["shards_complete"], farm.counts(job)) == (1, (4, 0))
    assert farm.state(submitted) == "rendering"
    assert sorted(set(farm.work(submitted, expect=2))) == [(0, 1), (1, 1)]
    assert set(farm.work(requeued, expect=1)) == {(1, 2)}
    assert farm.unit(requeued, 1)["attempts"] == 2

    # Once repaired, a further pass finds nothing to do.
    assert nothing_done(reconcile(farm.clients, DUE))


# --- resume: the pass after the stack restarted -----------------------------------


@pytest.fixture
def own_bucket_farm(
    infra_stack: StackState, fresh_project: str, tmp_path: Path, frames: list[Path]
) -> Iterator[Farm]:
    """A farm with a bucket of its own: resume reads every manifest in the bucket."""
    f = Farm.create(
        infra_stack, fresh_project, tmp_path / "stitch-logs", frames, bucket=fresh_project
    )
    yield f
    assert f.close() == [], "a stitch process was still running at the end of the test"


def _submitted(farm: Farm, units: int) -> str:
    job = f"r-{uuid.uuid4().hex[:12]}"
    payload = {
        "job_id": job,
        "povray": {"args": ["scene.pov"], "frames": {"first": 1, "last": units}},
        "output": {"fps": 4},
    }
    farm_ops.submit(farm.clients, payload)
    farm.jobs.append(job)
    farm.work(job, expect=units)  # the submission's messages, consumed
    return job


def _forget(farm: Farm, job: str) -> None:
    """What a ledger restored from a snapshot older than the job lacks."""
    farm.clients.db.recursive_delete(farm.ledger.job_ref(job))
    assert farm.ledger.get_job(job) is None


def test_resume_rebuilds_a_job_the_ledger_lost_and_its_stitch_keeps_the_video_made_before(
    own_bucket_farm: Farm, tmp_path: Path
) -> None:
    farm = own_bucket_farm
    job = _submitted(farm, 4)
    created = farm.ledger.require_job(job)["created_at"]
    for unit in range(4):  # rendered; the events were counted by the ledger that was lost
        farm.upload(job, unit)
    _forget(farm, job)

    report = resume(farm.clients, Restart(work_lost=False))
    assert report.rebuilt == [job] and report.errors == []
    assert sorted(u for _, u in report.recovered) == [0, 1, 2, 3] and report.republished == []
    first = farm.wait_settled(job)
    assert first["state"] == "done" and first["created_at"] == created
    video = farm.clients.blobs.info(video_object(job))
    assert video is not None

    # Lost again after its video was made: rebuilt, and the stitch keeps it.
    _forget(farm, job)
    report = resume(farm.clients, Restart(work_lost=False))
    assert report.rebuilt == [job] and len(report.recovered) == 4
    again = farm.wait_settled(job, runs=2)
    assert again["state"] == "done" and again["video"] == video_object(job)
    assert "kept the video made before" in farm.stitch_log(job).read_text()
    assert farm.clients.blobs.info(video_object(job)) == video  # same generation
    assert nothing_done(resume(farm.clients, Restart(work_lost=True)))


def test_resume_publishes_open_units_again_only_when_the_queue_lost_them(
    own_bucket_farm: Farm,
) -> None:
    farm = own_bucket_farm
    job = _submitted(farm, 3)
    farm.land(job, 0)
    assert farm.ledger.start_unit(job, 1, 1, "worker-lost-in-the-restart") is not None

    kept = resume(farm.clients, Restart(work_lost=False))
    assert nothing_done(kept) and farm.work(job) == []
    lost = resume(farm.clients, Restart(work_lost=True))
    assert sorted(u for _, u in lost.republished) == [1, 2] and lost.errors == []
    assert farm.work(job, expect=2) == [(1, 1), (2, 1)]


def test_a_submit_starts_tasks_only_for_free_slots(farm: Farm) -> None:
    """As many tasks as chunks and free slots; none while every slot is
    taken, so many jobs submitted at once (a sweep) queue no idle tasks: the
    running ones pull the new chunks as they finish their own."""
    render = RecordingRenderLauncher()
    clients = replace(
        farm.clients, settings=farm.settings.with_overrides(render_slots=4), render=render
    )
    first, second, third = (farm.make_job(8) for _ in range(3))
    assert farm_ops.start_tasks(clients, farm.ledger, first, 3) == "execution-1"
    assert farm_ops.start_tasks(clients, farm.ledger, second, 3) == "execution-2"
    assert farm_ops.start_tasks(clients, farm.ledger, third, 3) is None
    assert render.launched == [(first, 3), (second, 1)] and render.running == 4
    assert farm.ledger.require_job(third).get("executions", []) == []
    render.running = 2  # one task idled out, one requeued frame waits
    assert farm_ops.start_tasks(clients, farm.ledger, third, 1, only_if_idle=True) is None
    assert farm_ops.start_tasks(clients, farm.ledger, third, 3) == "execution-3"
    assert render.launched[-1] == (third, 2)


def test_the_reconciler_starts_tasks_for_work_nobody_pulls_and_fills_free_slots(
    farm: Farm,
) -> None:
    """No task running: every open unit gets tasks. Tasks running but slots
    free: only units pending past the dispatch deadline do (the rest of a
    chunk a task handed on as its budget ran out). Every slot busy: none."""
    render = RecordingRenderLauncher()
    clients = replace(
        farm.clients, settings=farm.settings.with_overrides(render_slots=4), render=render
    )
    job = farm.make_job(4)
    assert farm.ledger.start_chunk(job, 0, 2, 1, "busy") is not None  # units 0-1 rendering
    assert reconcile(clients, Deadlines()).tasks_started == []  # started too recently
    report = reconcile(clients, DUE)
    # As many tasks as the plan's chunks holding open units: this job's plan
    # (one slot) is one chunk of the 4 frames.
    assert report.tasks_started == [job] and render.launched == [(job, 1)]
    assert farm.ledger.require_job(job)["executions"] == ["execution-1"]

    render.running = 3  # one slot free: the pending units 2-3 get a task
    render.launched.clear()
    assert reconcile(clients, DUE).tasks_started == [job]
    assert render.launched == [(job, 1)]
    assert reconcile(clients, Deadlines()).tasks_started == []  # pending, but not for long

    render.running = 4  # every slot busy
    assert reconcile(clients, DUE).tasks_started == []
    render.running = 0
    render.error = TransientError("Cloud Run is unavailable")
    assert reconcile(clients, DUE).errors == ["render tasks: Cloud Run is unavailable"]
