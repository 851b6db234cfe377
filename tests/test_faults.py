"""Fault injection on the emulator stack: the ledger holds under duplicate,
reordered, late and poisoned events, contention, outages and crashes.

What is real here: the Firestore, Pub/Sub and GCS emulators; the functions
(functions/main.py served by functions-framework, two processes of this
module's own, fed by push subscriptions in a project of the module's own);
GCS notifications (a frame uploaded to the stack's bucket makes fake-gcs-server
publish a real OBJECT_FINALIZE notification; a capture subscription takes it
and the test publishes copies of it to the functions' frame-events topic, so
duplicates and reordering are in the test's hands); POV-Ray frames, the local
stitch launcher and ffmpeg. Faults are injected from outside the code under
test: a process killed with SIGKILL at a chosen point, a real transaction
holding locks, a Firestore address with nothing behind it, a launcher whose
reply is lost after the stitch started, a Firestore emulator restarted.

Where a test needs the function in-process (contention and outages, to shorten
the retry budget the function would spend before answering 500), it goes
through functions-framework's test client, as tests/test_functions.py does.
docs/fault-suite.md lists the ledger breakages each test catches.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import video_frames, wait_until
from fixtures.faultkit import REPO, Farm, render_frames
from functions_framework import create_app
from google.api_core.retry import Retry
from google.cloud import firestore, pubsub_v1

import povstorm.ledger.ledger as ledger_module
from povstorm.client.watch import JobWatcher, Progress
from povstorm.core.errors import StackError, TransientError, UnknownJob
from povstorm.core.model import FailureReport, FrameEvent, JobState
from povstorm.core.names import ENV, Namespace
from povstorm.core.naming import frame_object, poster_object, video_object
from povstorm.core.schemas import encode_message, load_job_spec
from povstorm.core.settings import EMULATOR_VARS
from povstorm.farm import operations as farm_ops
from povstorm.farm.reconcile import Deadlines, reconcile
from povstorm.ledger.ledger import Ledger
from povstorm_local import procs as _procs
from povstorm_local.net import answers, free_port
from povstorm_local.resources import Admin
from povstorm_local.snapshots import Snapshots
from povstorm_local.stack import LocalStack
from povstorm_local.state import StackState

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

SOURCE = REPO / "functions" / "main.py"
ZERO = dt.timedelta(0)
Notification = tuple[bytes, dict[str, str]]


# --- the functions, fed by push ----------------------------------------------------


class PushFunctions:
    """frame_finalized and frame_failed as processes, each behind the push
    subscriptions the stack wires (Admin.ensure_push_subscriptions), in a
    project of their own; and a capture subscription on the stack's real
    frame-events topic, where fake-gcs-server publishes notifications."""

    def __init__(self, infra: StackState, project: str, logs: Path) -> None:
        self.infra = infra
        self.project = project
        self.ns = Namespace(infra.namespace)
        self.logs = {
            "frame_finalized": logs / "frame_finalized.log",
            "frame_failed": logs / "frame_failed.log",
        }
        self.urls: dict[str, str] = {}
        self.pgids: list[int] = []
        self.capture_path = (
            f"projects/{infra.project}/subscriptions/faults-capture-{uuid.uuid4().hex[:8]}"
        )
        self._held: dict[tuple[str, str], Notification] = {}

    def start(self) -> None:
        foreign = {*ENV.values(), *EMULATOR_VARS, "POVSTORM_HOME", "GOOGLE_CLOUD_PROJECT"}
        env = {k: v for k, v in os.environ.items() if k not in foreign}
        env.update(self.infra.env)
        # The tests play the render tasks: a requeue must not start real ones
        # (they would pull the work the test reads back).
        env.update(
            {ENV["project"]: self.project, ENV["render_launcher"]: "none", "PYTHONUNBUFFERED": "1"}
        )
        for target, log in self.logs.items():
            port = free_port()
            proc = _procs.spawn(
                [sys.executable, "-m", "functions_framework", "--source", str(SOURCE),
                 "--target", target, "--signature-type", "cloudevent",
                 "--host", "127.0.0.1", "--port", str(port)],
                env=env, log_path=log,
            )  # fmt: skip
            self.pgids.append(proc.pid)
            self.urls[target] = f"http://127.0.0.1:{port}"
        admin = self._admin(self.project)
        try:
            admin.ensure_topics()
            admin.ensure_work_subscription()
            admin.ensure_push_subscriptions(self.urls)
        finally:
            admin.close()
        stack_admin = self._admin(self.infra.project)
        try:
            stack_admin.subscriber.create_subscription(
                request={
                    "name": self.capture_path,
                    "topic": stack_admin.topic_path("frame_events"),
                    "ack_deadline_seconds": 10,
                }
            )
        finally:
            stack_admin.close()
        for target, url in self.urls.items():
            wait_until(functools.partial(answers, url + "/robots.txt"), 60, f"{target} to serve")

    def stop(self) -> None:
        stack_admin = self._admin(self.infra.project)
        try:
            with contextlib.suppress(Exception):  # never created if start failed early
                stack_admin.subscriber.delete_subscription(
                    request={"subscription": self.capture_path}
                )
        finally:
            stack_admin.close()
        left = _procs.stop_groups(self.pgids, grace=10)
        assert not left, f"function processes would not stop: {left}"

    def _admin(self, project: str) -> Admin:
        return Admin.connect(
            project,
            self.infra.namespace,
            self.infra.components["pubsub"].address,
            self.infra.components["gcs"].url,
        )

    # --- notifications -----------------------------------------------------------

    def notification(self, name: str, generation: int) -> Notification:
        """The real notification fake-gcs-server published for this object
        generation, taken off the capture subscription."""
        key = (name, str(generation))
        subscriber = pubsub_v1.SubscriberClient()

        def arrived() -> bool:
            reply = subscriber.pull(
                request={"subscription": self.capture_path, "max_messages": 100}, timeout=1
            )
            if reply.received_messages:
                subscriber.acknowledge(
                    request={
                        "subscription": self.capture_path,
                        "ack_ids": [m.ack_id for m in reply.received_messages],
                    }
                )
            for m in reply.received_messages:
                attrs = dict(m.message.attributes)
                self._held[(attrs.get("objectId", ""), attrs.get("objectGeneration", ""))] = (
                    bytes(m.message.data),
                    attrs,
                )
            return key in self._held

        try:
            wait_until(arrived, 30, f"the notification of {name}#{generation}")
        finally:
            subscriber.close()
        return self._held[key]

    def capture(self, farm: Farm, job_id: str, unit: int, png: Path | None = None) -> Notification:
        """Upload a unit's frame as a worker does and return its real notification."""
        return self.notification(frame_object(job_id, unit), farm.upload(job_id, unit, png))

    def publish(self, topic_key: str, messages: list[Notification]) -> None:
        """Publish all at once (the push subscription delivers them concurrently)."""
        publisher = pubsub_v1.PublisherClient()
        topic = publisher.topic_path(self.project, self.ns.topic(topic_key))
        futures = [publisher.publish(topic, data, **attrs) for data, attrs in messages]
        for f in futures:
            f.result(timeout=30)

    def deliver(self, *notes: Notification) -> None:
        self.publish("frame_events", list(notes))

    def report(self, *bodies: Any) -> None:
        """Failure reports (FailureReport) or dead letters (dicts) to frame_failed."""
        reports = [encode_message(b) for b in bodies if isinstance(b, FailureReport)]
        letters = [json.dumps(b).encode() for b in bodies if isinstance(b, dict)]
        if reports:
            self.publish("failures", [(r, {}) for r in reports])
        if letters:
            self.publish("work_dead_letter", [(d, {}) for d in letters])

    # --- what the functions did (their logs) -------------------------------------

    def log(self, target: str, since: int = 0) -> str:
        return self.logs[target].read_bytes()[since:].decode(errors="replace")

    def mark(self) -> dict[str, int]:
        return {t: p.stat().st_size for t, p in self.logs.items()}

    def kinds(self, note: Notification) -> list[str]:
        """What frame_finalized made of each delivery of this notification."""
        attrs = note[1]
        pattern = rf"frame {re.escape(attrs['objectId'])} gen {attrs['objectGeneration']}: (\w+)"
        return re.findall(pattern, self.log("frame_finalized"))

    def failure_kinds(self, job_id: str, unit: int, attempt: int) -> list[str]:
        pattern = rf"failure {re.escape(job_id)}/{unit} attempt {attempt}: (\w+)"
        return re.findall(pattern, self.log("frame_failed"))

    def wait_kinds(self, note: Notification, count: int, timeout: float = 30) -> list[str]:
        return wait_until(
            lambda: (k := self.kinds(note)) and len(k) >= count and k,
            timeout,
            f"{count} deliveries of {note[1]['objectId']} to be handled",
        )


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return render_frames(tmp_path_factory.mktemp("fault-frames"), 4)


@pytest.fixture(scope="module")
def fns(
    infra_stack: StackState, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PushFunctions]:
    functions = PushFunctions(
        infra_stack, f"faults-{uuid.uuid4().hex[:10]}", tmp_path_factory.mktemp("fn-logs")
    )
    try:
        functions.start()
        yield functions
    finally:
        functions.stop()


@pytest.fixture
def farm(
    infra_stack: StackState, fns: PushFunctions, tmp_path: Path, frames: list[Path]
) -> Iterator[Farm]:
    """This test's view of the functions' project (jobs are named per test)."""
    f = Farm.create(infra_stack, fns.project, tmp_path / "stitch-logs", frames)
    yield f
    assert f.close() == [], "a stitch process was still running at the end of the test"


def settled_by_function(farm: Farm, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job done by the stitch the function launched, its process gone."""
    wait_until(lambda: farm.state(job_id) == "done", timeout, f"{job_id} to be done")
    wait_until(lambda: not farm.stitch_in_flight(job_id), 30, f"the stitch of {job_id} to exit")
    return farm.ledger.require_job(job_id)


# --- duplicates ----------------------------------------------------------------------


def test_duplicate_notifications_in_a_row_count_once_and_stitch_once(
    farm: Farm, fns: PushFunctions
) -> None:
    job = farm.make_job(2)
    notes = [fns.capture(farm, job, u) for u in range(2)]
    for note in notes:
        for n in range(1, 4):  # the same notification three times, one after another
            fns.deliver(note)
            fns.wait_kinds(note, n)
    for note in notes:
        assert fns.kinds(note) == ["recorded", "duplicate", "duplicate"]
    done = settled_by_function(farm, job)
    assert farm.counts(job) == (2, 0)
    # A 2-frame job is one shard: it folds into the job once.
    assert (done["units_done"], done["shards_complete"], done["stitch"]["launches"]) == (2, 1, 1)
    generation = int(notes[0][1]["objectGeneration"])
    assert farm.unit(job, 0)["generation"] == generation


def test_concurrent_duplicate_notifications_count_once_and_stitch_once(
    farm: Farm, fns: PushFunctions
) -> None:
    job = farm.make_job(4)
    notes = [fns.capture(farm, job, u) for u in range(4)]
    copies = [n for n in notes for _ in range(3)]
    random.Random(11).shuffle(copies)
    fns.deliver(*copies)  # twelve messages at once, each notification three times
    for note in notes:
        kinds = fns.wait_kinds(note, 3)
        # A contended delivery may be answered 500 and come again: still one count.
        assert kinds.count("recorded") == 1 and set(kinds) == {"recorded", "duplicate"}, kinds
    done = settled_by_function(farm, job)
    assert farm.counts(job) == (4, 0)
    assert (done["units_done"], done["shard_count"], done["shards_complete"]) == (4, 1, 1)
    assert done["stitch"]["launches"] == 1 and done["stats"]["units"] == 4


# --- reordering -----------------------------------------------------------------------


def test_the_last_frame_first_the_stitch_waits_for_every_frame(
    farm: Farm, fns: PushFunctions, tmp_path: Path, frames: list[Path]
) -> None:
    job = farm.make_job(3)
    notes = [fns.capture(farm, job, u) for u in range(3)]
    for unit in (2, 0):  # the last frame's event first
        fns.deliver(notes[unit])
        assert fns.wait_kinds(notes[unit], 1) == ["recorded"]
        job_doc = farm.ledger.require_job(job)
        assert job_doc["state"] == "rendering" and job_doc["stitch"] is None
        assert not farm.stitch_in_flight(job)
    fns.deliver(notes[1])
    settled_by_function(farm, job)
    video = tmp_path / "video.mp4"
    farm.clients.blobs.download_to(video_object(job), video)
    assert video_frames(video) == 3
    # The poster is the middle unit's frame: frames go in unit order, not arrival order.
    assert farm.clients.blobs.read_bytes(poster_object(job)) == frames[1].read_bytes()


def test_an_event_before_its_job_exists_is_acknowledged_then_recovered_from_the_bucket(
    farm: Farm, fns: PushFunctions
) -> None:
    job = f"f-{uuid.uuid4().hex[:12]}"
    early = fns.capture(farm, job, 0)  # the frame and its event, before the job document
    fns.deliver(early)
    unknown = f"acknowledged without effect: unknown job: {job}"
    wait_until(lambda: unknown in fns.log("frame_finalized"), 30, "the early event to be handled")

    farm.make_job(2, job_id=job)
    late = fns.capture(farm, job, 1)
    fns.deliver(late)
    assert fns.wait_kinds(late, 1) == ["recorded"]
    assert farm.state(job) == "rendering" and farm.counts(job) == (1, 0)

    report = reconcile(farm.clients, Deadlines(lost_event=ZERO))
    assert report.recovered == [(job, 0)] and report.errors == []
    done = farm.wait_settled(job)
    assert farm.stitch_results(job) == ["done"] and done["units_done"] == 2
    # Acknowledged once: the early event was not redelivered meanwhile.
    assert fns.log("frame_finalized").count(unknown) == 1


def test_an_overwritten_frame_counts_nothing_and_keeps_the_newest_generation(
    farm: Farm, fns: PushFunctions, frames: list[Path]
) -> None:
    job = farm.make_job(2)
    first = [fns.capture(farm, job, u) for u in range(2)]
    fns.deliver(*first)
    before = settled_by_function(farm, job)

    # A worker presumed dead uploads unit 0 again: a new generation of a done frame.
    newer = fns.capture(farm, job, 0, png=frames[3])
    assert int(newer[1]["objectGeneration"]) > int(first[0][1]["objectGeneration"])
    fns.deliver(newer)
    assert fns.wait_kinds(newer, 1) == ["overwrite"]
    fns.deliver(first[0])  # and the old generation's notification, redelivered late
    assert fns.wait_kinds(first[0], 2) == ["recorded", "stale"]

    assert farm.unit(job, 0)["generation"] == int(newer[1]["objectGeneration"])
    after = farm.ledger.require_job(job)
    assert farm.counts(job) == (2, 0) and after["units_done"] == 2
    assert (after["state"], after["finished_at"]) == ("done", before["finished_at"])
    assert after["stitch"]["launches"] == 1 and not farm.stitch_in_flight(job)


# --- crashes ------------------------------------------------------------------------


def test_a_redelivered_event_finishes_what_a_crash_after_the_count_left(
    farm: Farm, fns: PushFunctions
) -> None:
    job = farm.make_job(2)
    farm.land(job, 0)
    # The function counts unit 1, completing the job's one shard, and is
    # killed before folding it; it
    # never acknowledged the event, so Pub/Sub delivers it again, here to four
    # instances at once (a redelivery and copies of it): they race to fold the
    # shard and to claim the end of the job.
    generation = farm.crash("fold", job, 1)
    assert farm.ledger.require_job(job)["shards_complete"] == 0
    note = fns.notification(frame_object(job, 1), generation)
    fns.deliver(note, note, note, note)
    assert fns.wait_kinds(note, 4) == ["duplicate"] * 4
    done = settled_by_function(farm, job)  # no reconciler needed
    assert (done["units_done"], done["shards_complete"], done["stitch"]["launches"]) == (2, 1, 1)


def _at_once(n: int, call: Any) -> list[Any]:
    """``call()`` from ``n`` threads released together; what each returned."""
    barrier = threading.Barrier(n)
    results: list[Any] = []

    def one() -> None:
        barrier.wait()
        results.append(call())

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == n, f"{n - len(results)} of {n} calls did not return"
    return results


def test_concurrent_folds_of_the_last_shard_claim_the_end_of_the_job_once(farm: Farm) -> None:
    """Eight deliveries that all found the last shard complete fold it and
    claim the end of the job at the same instant (a barrier releases them):
    one folds, one claims, whatever the interleaving of their reads and
    commits. Five jobs, so an unguarded claim cannot hide behind one lucky
    ordering."""
    jobs = [farm.make_job(2) for _ in range(5)]
    for job in jobs:
        farm.land(job, 0)
        farm.crash("fold", job, 1)  # counted, its shard complete, nothing folded or claimed
    for job in jobs:
        shard = int(farm.unit(job, 1)["shard"])
        outcomes = _at_once(8, functools.partial(farm.ledger.complete_shard, job, shard))
        claims = [o for o in outcomes if o.launch_stitch]
        after = farm.ledger.require_job(job)
        assert len(claims) == 1, f"{job}: {len(claims)} claims of one job's end"
        assert (after["state"], after["units_done"], after["shards_complete"]) == (
            "stitching",
            2,
            1,
        )


def test_a_redelivered_failure_report_finishes_what_a_crash_after_the_count_left(
    farm: Farm, fns: PushFunctions
) -> None:
    job = farm.make_job(2, max_attempts=1)
    farm.land(job, 0)
    farm.crash_failing("fold", job, 1, 1)  # unit 1 failed for good; killed before the fold
    assert farm.counts(job) == (1, 1) and farm.state(job) == "rendering"
    fns.report(FailureReport(job, 1, 1, "Parse Error: crash test", final=True))
    wait_until(lambda: fns.failure_kinds(job, 1, 1) == ["late"], 30, "the redelivery")
    wait_until(lambda: farm.state(job) == "failed", 30, f"{job} to fail")
    failed = farm.ledger.require_job(job)
    assert (failed["units_done"], failed["units_failed"], failed["shards_complete"]) == (1, 1, 1)
    assert failed["stitch"] is None and not farm.stitch_in_flight(job)


def test_a_redelivered_failure_report_ends_a_fail_fast_job_a_crash_left_running(
    farm: Farm, fns: PushFunctions
) -> None:
    job = farm.make_job(3, fail_fast=True)
    farm.crash_failing("fold", job, 1, 1)  # unit 1 failed for good; killed before fold and fail
    assert farm.state(job) == "rendering"
    fns.report(FailureReport(job, 1, 1, "Parse Error: crash test", final=True))
    wait_until(lambda: fns.failure_kinds(job, 1, 1) == ["late"], 30, "the redelivery")
    # Fail-fast: the job ends now, with units 0 and 2 never rendered.
    wait_until(lambda: farm.state(job) == "failed", 30, f"{job} to fail fast")
    failed = farm.ledger.require_job(job)
    # The job's own counts are folded shards; its one shard never completes.
    assert (failed["failed_by"], farm.counts(job), failed["shards_complete"]) == (1, (0, 1), 0)
    assert [(e["unit"], e["attempt"]) for e in failed["errors"]] == [(1, 1)]
    assert failed["stitch"] is None and not farm.stitch_in_flight(job)


def test_a_redelivered_chunk_skips_a_frame_in_the_bucket_whose_event_is_not_counted_yet(
    farm: Farm,
) -> None:
    """A worker uploaded frame 0 of its chunk and was lost before the frame's
    finalize event was counted: the redelivery leaves frame 0 to its event and
    renders from frame 1, and the late event then counts frame 0 once."""
    job = farm.make_job(3)
    lost = farm.ledger.start_chunk(job, 0, 3, 1, "worker-lost", present=lambda _: False)
    assert lost is not None and lost.units == (0, 1, 2)
    generation = farm.upload(job, 0)  # in the bucket; its event still on its way

    def present(unit: int) -> bool:
        return farm.clients.blobs.exists(frame_object(job, unit))

    again = farm.ledger.start_chunk(job, 0, 3, 1, "worker-2", present=present)
    assert again is not None and again.units == (1, 2)
    assert farm.unit(job, 0)["worker"] == "worker-lost"
    farm.ledger.record_frame(frame_object(job, 0), generation, {})
    assert farm.counts(job) == (1, 0) and farm.unit(job, 0)["generation"] == generation


def test_a_crash_between_the_stitch_claim_and_its_launch_is_launched_by_the_reconciler(
    farm: Farm,
) -> None:
    job = farm.make_job(2)
    farm.land(job, 0)
    generation = farm.crash("launch", job, 1)  # claimed, then killed before the launch
    claimed = farm.ledger.require_job(job)
    assert claimed["state"] == "stitching" and claimed["stitch"]["launched_at"] is None
    assert not farm.stitch_in_flight(job)
    # The redelivered event is a duplicate: it cannot tell a dead claimer from
    # a slow one, so it launches nothing.
    event = FrameEvent(farm.settings.bucket, frame_object(job, 1), generation)
    outcome = farm_ops.on_frame_event(farm.clients, event)
    assert outcome is not None and outcome.kind == "duplicate" and not outcome.launch_stitch

    report = reconcile(farm.clients, Deadlines(stitch_launch=ZERO))
    assert report.relaunched == [job]
    done = farm.wait_settled(job)
    assert farm.stitch_results(job) == ["done"]
    assert done["state"] == "done" and done["stitch"]["launches"] == 1


@dataclasses.dataclass
class LostReplyLauncher:
    """Starts the real stitch, then the reply is lost (run_job timed out on
    the way back): the caller sees an error although the stitch runs."""

    real: Any

    def launch(self, job_id: str, video: str | None = None) -> None:
        self.real.launch(job_id, video)
        raise TransientError(f"deadline exceeded waiting for run_job({job_id})")


def test_a_launch_whose_reply_is_lost_is_launched_again_and_records_one_result(
    farm: Farm, tmp_path: Path
) -> None:
    job = farm.make_job(3)
    for unit in range(2):
        farm.land(job, unit)
    generation = farm.upload(job, 2)
    lossy = dataclasses.replace(farm.clients, launcher=LostReplyLauncher(farm.clients.launcher))
    outcome = farm_ops.on_frame_event(
        lossy, FrameEvent(farm.settings.bucket, frame_object(job, 2), generation)
    )
    assert outcome is not None and outcome.launch_stitch
    assert farm.ledger.require_job(job)["stitch"]["launched_at"] is None  # never confirmed

    # The reconciler sees a claim that never launched and launches it again,
    # while the first stitch may well be running.
    assert reconcile(farm.clients, Deadlines(stitch_launch=ZERO)).relaunched == [job]
    done = farm.wait_settled(job, runs=2)
    results = farm.stitch_results(job)
    assert sorted(results) in (["done", "duplicate"], ["done", "skipped"]), results
    assert done["state"] == "done" and done["stats"]["units"] == 3
    assert sorted(b.name for b in farm.clients.blobs.list(f"videos/{job}/")) == [
        f"videos/{job}/contact.png",
        f"videos/{job}/poster.png",
        f"videos/{job}/stats.json",
        video_object(job),
    ]
    video = tmp_path / "video.mp4"
    farm.clients.blobs.download_to(video_object(job), video)
    assert video_frames(video) == 3


# --- failure reports ----------------------------------------------------------------


def test_duplicate_and_late_failure_reports_change_nothing(farm: Farm, fns: PushFunctions) -> None:
    job = farm.make_job(2, max_attempts=3)
    report = FailureReport(job, 0, 1, "Parse Error: once", worker="w1")
    fns.report(report, report, report)  # one report delivered three times at once
    kinds = wait_until(
        lambda: (k := fns.failure_kinds(job, 0, 1)) and len(k) >= 3 and k, 30, "3 reports"
    )
    # The first requeues (attempts becomes 2); the copies find attempt 1 stale.
    assert sorted(kinds) == ["requeued", "stale", "stale"], kinds
    assert farm.work(job, expect=1) == [(0, 2)]  # one requeue
    record = farm.unit(job, 0)
    assert record["attempts"] == 2 and len(record["errors"]) == 1

    # Attempt 2 renders, unit 1 too: the job is done.
    fns.deliver(*[fns.capture(farm, job, u) for u in range(2)])
    before = settled_by_function(farm, job)

    # Then reports of attempt 2 arrive after its success: a crash report, a
    # dead letter and a final failure; and attempt 1's report once more.
    fns.report(
        FailureReport(job, 0, 2, "worker lost"),
        FailureReport(job, 0, 2, "Parse Error: final", final=True),
        {"job_id": job, "unit": 0, "attempt": 2},
        report,
    )
    wait_until(
        lambda: len(fns.failure_kinds(job, 0, 2)) >= 3 and len(fns.failure_kinds(job, 0, 1)) >= 4,
        30,
        "the late reports to be handled",
    )
    assert set(fns.failure_kinds(job, 0, 2)) == {"late"}
    assert fns.failure_kinds(job, 0, 1)[3:] == ["late"]
    after = farm.ledger.require_job(job)
    assert farm.counts(job) == (2, 0) and after["units_failed"] == 0
    assert (after["state"], after["finished_at"], after["errors"]) == (
        "done",
        before["finished_at"],
        [],
    )
    assert farm.unit(job, 0)["state"] == "done"
    assert farm.work(job) == []  # nothing requeued


# --- transient errors: contention and outages ----------------------------------------


@pytest.fixture
def in_process(fns: PushFunctions, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Push a CloudEvent to a function served in this process (the test
    client), configured as the function processes are."""
    import povstorm.shells.functions as fn

    monkeypatch.setenv(ENV["project"], fns.project)
    monkeypatch.setenv(ENV["render_launcher"], "none")
    fn.clients.cache_clear()

    def push(target: str, note: Notification) -> int:
        data, attributes = note
        reply = (
            create_app(target, str(SOURCE))
            .test_client()
            .post(
                "/",
                json={
                    "message": {
                        "data": base64.b64encode(data).decode(),
                        "attributes": attributes,
                        "messageId": uuid.uuid4().hex,
                    }
                },
                headers={
                    "ce-id": uuid.uuid4().hex,
                    "ce-source": f"//pubsub.googleapis.com/projects/{fns.project}/topics/t",
                    "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
                    "ce-specversion": "1.0",
                },
            )
        )
        return int(reply.status_code)

    yield push
    fn.clients.cache_clear()


@contextlib.contextmanager
def locks_held(db: Any, refs: list[Any]) -> Iterator[None]:
    """A real transaction elsewhere that has read ``refs`` and not finished:
    the emulator (like Firestore) makes a writer of those documents wait for
    it, and aborts the writer when the wait times out."""
    ready, release = threading.Event(), threading.Event()

    @firestore.transactional
    def hold(transaction: Any) -> None:
        for ref in refs:
            ref.get(transaction=transaction)
        ready.set()
        release.wait(60)

    thread = threading.Thread(target=hold, args=(db.transaction(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the holding transaction did not start"
    try:
        yield
    finally:
        release.set()
        thread.join(30)


def test_contention_becomes_a_redelivery_and_the_redelivery_counts_once(
    farm: Farm,
    fns: PushFunctions,
    in_process: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One attempt, one round: the function gives up at the first lock timeout
    # (~2 s) instead of after its whole budget (~30 s); the path is the same.
    monkeypatch.setattr(ledger_module, "TX_ATTEMPTS", 1)
    monkeypatch.setattr(ledger_module, "TX_ROUNDS", 1)
    caplog.set_level(logging.WARNING, logger="povstorm.functions")
    job = farm.make_job(2, max_attempts=3)
    note = fns.capture(farm, job, 0)
    failure: Notification = (encode_message(FailureReport(job, 1, 1, "Parse Error: contended")), {})
    ledger = farm.ledger

    with locks_held(farm.clients.db, [ledger.unit_ref(job, 0), ledger.unit_ref(job, 1)]):
        assert in_process("frame_finalized", note) == 500
        assert in_process("frame_failed", failure) == 500
    assert caplog.text.count("will be redelivered: transaction contended") == 2
    assert farm.counts(job) == (0, 0) and farm.unit(job, 1)["attempts"] == 1
    assert farm.work(job) == []  # nothing published for the aborted attempt

    # Pub/Sub redelivers both.
    assert in_process("frame_finalized", note) == 200
    assert in_process("frame_failed", failure) == 200
    assert farm.counts(job) == (1, 0)
    assert farm.unit(job, 1)["attempts"] == 2
    assert farm.work(job, expect=1) == [(1, 2)]  # one requeue


@pytest.mark.timeout(60)
def test_firestore_unavailable_becomes_a_quick_redelivery(
    farm: Farm,
    fns: PushFunctions,
    in_process: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import povstorm.shells.functions as fn

    # The ledger's bound on an outage, shortened from 15 s to 1 s for the test.
    monkeypatch.setattr(ledger_module, "RPC_RETRY", Retry(initial=0.05, maximum=0.2, timeout=1.0))
    caplog.set_level(logging.WARNING, logger="povstorm.functions")
    job = farm.make_job(1)
    note = fns.capture(farm, job, 0)
    real = os.environ["FIRESTORE_EMULATOR_HOST"]
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing there
    fn.clients.cache_clear()
    started = time.monotonic()
    assert in_process("frame_finalized", note) == 500
    elapsed = time.monotonic() - started
    assert "will be redelivered: Firestore unavailable" in caplog.text
    # One bounded wait, not the client's minutes of retries.
    assert elapsed < 4, f"the function held the event {elapsed:.1f}s"

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", real)
    fn.clients.cache_clear()
    assert in_process("frame_finalized", note) == 200  # the redelivery
    assert farm.counts(job) == (1, 0)
    assert settled_by_function(farm, job)["stitch"]["launches"] == 1


# --- poison ------------------------------------------------------------------------


def test_poison_messages_are_acknowledged_once_through_the_push_path(
    fns: PushFunctions, infra_stack: StackState
) -> None:
    tag = uuid.uuid4().hex[:8]
    mark = fns.mark()
    bucket = infra_stack.bucket

    def event(body: dict[str, Any]) -> Notification:
        return json.dumps(body).encode(), {"eventType": "OBJECT_FINALIZE"}

    fns.deliver(
        (f"not json {tag}".encode(), {"eventType": "OBJECT_FINALIZE"}),
        event({"bucket": bucket, "name": f"frames/Bad Name {tag}/1.png", "generation": "1"}),
        event({"bucket": bucket, "name": frame_object(f"nojob-{tag}", 0), "generation": "1"}),
        event({"bucket": f"elsewhere-{tag}", "name": frame_object("abc", 0), "generation": "1"}),
        event({"bucket": bucket, "name": frame_object(f"nogen-{tag}", 0)}),
    )
    fns.report(
        FailureReport(f"nojobf-{tag}", 0, 1, "boom"),
        {"job_id": f"nojobd-{tag}", "unit": 0, "attempt": 1},
    )
    fns.publish("failures", [(json.dumps({"unit": "x", "error": tag}).encode(), {})])
    fns.publish("work_dead_letter", [(json.dumps({"unit": "x"}).encode(), {})])
    fns.publish("failures", [(f"not json {tag}".encode(), {})])
    expected = {
        "frame_finalized": [
            "message is not JSON",
            f"not a frame object: 'frames/Bad Name {tag}/1.png'",
            f"unknown job: nojob-{tag}",
            f"event for another bucket: elsewhere-{tag}",
            f"without a generation for 'frames/nogen-{tag}/000000.png'",
        ],
        "frame_failed": [
            f"unknown job: nojobf-{tag}",
            f"unknown job: nojobd-{tag}",
            "malformed failure report",
            "malformed work message",
            "failure message is not JSON",
        ],
    }

    def acknowledged(target: str) -> list[int]:
        lines = [ln for ln in fns.log(target, mark[target]).splitlines() if "acknowledged" in ln]
        return [sum(needle in ln for ln in lines) for needle in expected[target]]

    def all_acknowledged() -> bool:
        return all(0 not in acknowledged(target) for target in expected)

    wait_until(all_acknowledged, 30, "every poison message to be acknowledged")
    # A 5xx would come back within the push retry policy's 1 s minimum backoff.
    time.sleep(3)
    for target, needles in expected.items():
        assert acknowledged(target) == [1] * len(needles), (target, needles)
        assert "will be redelivered" not in fns.log(target, mark[target])


# --- a Firestore restart while a client watches ---------------------------------------


class RestartableFirestore:
    """The Firestore emulator of a stack of this module's own (restarting the
    session's would pull the ground from under every other test), stopped
    and started again on the same port."""

    def __init__(self, state: StackState, logs: Path) -> None:
        self.comp = state.components["firestore"]
        self.pgid = self.comp.pgid
        self.logs = logs
        self.own: list[int] = []
        self.restarts = 0

    def export(self, project: str) -> Path:
        """The emulator's own export of a project, as the local stack's
        snapshots take it; returns what ``--import-data`` takes."""
        return Snapshots(self.logs / f"export-{self.restarts}").export(self.comp.url, project)

    def restart(self, import_data: Path | None = None) -> None:
        self.stop()
        self.start(import_data)

    def stop(self) -> None:
        left = _procs.stop_groups([self.pgid], grace=10)
        assert not left, left

    def start(self, import_data: Path | None = None) -> None:
        self.restarts += 1
        argv = list(self.comp.command)
        if import_data is not None:
            argv.append(f"--import-data={import_data}")
        env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        proc = _procs.spawn(argv, env=env, log_path=self.logs / f"firestore-{self.restarts}.log")
        self.pgid = proc.pid
        self.own.append(proc.pid)
        wait_until(lambda: answers(self.comp.url + "/"), 60, "the Firestore emulator to restart")

    def stop_own(self) -> None:
        assert not _procs.stop_groups(self.own, grace=10)


@pytest.fixture(scope="module")
def lone_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableFirestore]:
    home = tmp_path_factory.mktemp("restart-home")
    stack = LocalStack(home)
    try:
        state = stack.up(farm=False)
    except StackError as exc:
        pytest.fail(f"the second stack did not start: {exc}", pytrace=False)
    firestore_ = RestartableFirestore(state, home / "restarts")
    try:
        yield firestore_
    finally:
        firestore_.stop_own()
        stack.down(wipe=True)


def _watch_in_background(db: Any, job_id: str) -> tuple[list[Progress], list[BaseException], Any]:
    seen: list[Progress] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            # Polls give up on an outage after 1 s (not 10), so the restart,
            # which takes longer, is an outage the watcher must ride out.
            watcher = JobWatcher(db, job_id, poll_seconds=0.5, retry=Retry(timeout=1.0))
            for progress in watcher.follow(timeout=90):
                seen.append(progress)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return seen, errors, thread


def _scene_job(ledger: Ledger, job_id: str, units: int) -> None:
    spec = load_job_spec({"povray": {"args": ["s.ini"], "frames": {"first": 1, "last": units}}})
    ledger.create_job(spec, job_id)
    ledger.mark_dispatched(job_id)


def test_a_watcher_rides_out_a_firestore_restart_and_reaches_the_final_state(
    lone_stack: RestartableFirestore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Firestore itself never loses data: an outage is the emulator going
    away and coming back with its data (exported, then imported)."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", lone_stack.comp.address)
    project, job = f"watch-{uuid.uuid4().hex[:8]}", "job-restart"
    ledger = Ledger(firestore.Client(project=project))
    _scene_job(ledger, job, 4)
    for unit in range(2):
        ledger.record_frame(frame_object(job, unit), 1)
    seen, errors, thread = _watch_in_background(firestore.Client(project=project), job)
    wait_until(lambda: seen and seen[-1].done == 2, 30, "the watcher to see 2 units done")

    saved = lone_stack.export(project)
    lone_stack.stop()
    time.sleep(2.5)  # an outage longer than the watcher's poll bound: it polls into it
    lone_stack.start(import_data=saved)
    for unit in range(2, 4):
        ledger.record_frame(frame_object(job, unit), 1)
    assert ledger.finish_stitch(job, video="videos/x.mp4", poster=None, stats={"units": 4})
    thread.join(60)
    assert not thread.is_alive() and errors == []
    final = seen[-1]
    assert final.state == JobState.DONE and (final.done, final.failed, final.total) == (4, 0, 4)


@pytest.mark.timeout(90)
def test_an_outage_between_a_transactions_read_and_its_commit_becomes_a_quick_redelivery(
    lone_stack: RestartableFirestore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Firestore goes away after record_frame has read the unit and before
    it commits: the commit and the rollback give up within the ledger's bound
    (the library's own retry would hold the event 2 minutes), the event goes
    back to Pub/Sub, and its redelivery after the outage counts the unit once."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", lone_stack.comp.address)
    bound = ledger_module.RPC_RETRY
    monkeypatch.setattr(ledger_module, "RPC_RETRY", Retry(initial=0.05, maximum=0.2, timeout=1.0))
    project, job = f"outage-{uuid.uuid4().hex[:8]}", "job-outage"
    ledger = Ledger(firestore.Client(project=project))
    _scene_job(ledger, job, 1)
    read = ledger._get
    exported: list[Path] = []
    gone: list[float] = []

    def read_then_outage(ref: Any, transaction: Any = None) -> dict[str, Any] | None:
        doc = read(ref, transaction)
        if transaction is not None and not gone:
            exported.append(lone_stack.export(project))
            lone_stack.stop()
            gone.append(time.monotonic())
        return doc

    monkeypatch.setattr(ledger, "_get", read_then_outage)
    with pytest.raises(TransientError, match="Firestore unavailable"):
        ledger.record_frame(frame_object(job, 0), 1)
    held = time.monotonic() - gone[0]
    assert held < 8, f"the outage held the event {held:.1f}s after Firestore went away"

    lone_stack.start(import_data=exported[0])  # Firestore back with its data
    monkeypatch.setattr(ledger, "_get", read)

    # Back means serving this client's reads: the restarted emulator answers
    # HTTP before it does, and on a loaded machine its first gRPC calls took
    # longer than one call's timeout (504 on the redelivery, 1 run in 3).
    def serves() -> bool:
        try:
            return ledger.get_job(job) is not None
        except TransientError:
            return False

    wait_until(serves, 60, "the restarted Firestore to serve reads")
    # The redelivery, with the production bound.
    monkeypatch.setattr(ledger_module, "RPC_RETRY", bound)
    assert ledger.record_frame(frame_object(job, 0), 1).kind == "recorded"  # the redelivery
    assert ledger.record_frame(frame_object(job, 0), 1).kind == "duplicate"
    after = ledger.require_job(job)
    assert (after["state"], after["units_done"], ledger.view(job).done) == ("stitching", 1, 1)


def test_a_watcher_whose_job_a_restart_erased_says_so_instead_of_hanging(
    lone_stack: RestartableFirestore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local stack's emulator keeps nothing across a restart: the job is
    gone, and the watcher must end with UnknownJob, not wait forever."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", lone_stack.comp.address)
    project, job = f"watch-{uuid.uuid4().hex[:8]}", "job-erased"
    ledger = Ledger(firestore.Client(project=project))
    _scene_job(ledger, job, 3)
    ledger.record_frame(frame_object(job, 0), 1)
    seen, errors, thread = _watch_in_background(firestore.Client(project=project), job)
    wait_until(lambda: seen and seen[-1].done == 1, 30, "the watcher to see 1 unit done")

    lone_stack.restart()
    restarted = time.monotonic()
    thread.join(60)
    assert not thread.is_alive(), "the watcher still waits for a job that no longer exists"
    assert len(errors) == 1 and isinstance(errors[0], UnknownJob), errors
    assert job in str(errors[0]) and time.monotonic() - restarted < 30
    assert all(p.state == JobState.RENDERING for p in seen)  # never a made-up final state
