"""The ledger's invariants on the real Firestore emulator, one fresh project
per test. Each test names the invariant (ARCHITECTURE.md) it holds."""

from __future__ import annotations

import concurrent.futures as cf
import random
from collections import Counter
from typing import Any

import pytest
from fixtures.common import job_doc, unit_doc
from google.cloud import firestore

from povstorm.core.errors import (
    IllegalTransition,
    PoisonMessage,
    SpecError,
    UnknownJob,
    verdict,
)
from povstorm.core.model import JobState, UnitState
from povstorm.core.naming import frame_object
from povstorm.core.schemas import load_job_spec
from povstorm.ledger.docs import JobDoc, ShardDoc, UnitDoc
from povstorm.ledger.ledger import Ledger, Outcome, now
from povstorm.ledger.views import OutcomeKind

pytestmark = pytest.mark.stack


def make_job(ledger: Ledger, job_id: str, frames: int, **extra: Any) -> None:
    spec = load_job_spec(
        {"povray": {"args": ["s.ini"], "frames": {"first": 1, "last": frames}}, **extra}
    )
    _, created = ledger.create_job(spec, job_id)
    assert created
    ledger.mark_dispatched(job_id)


def finalize(ledger: Ledger, job_id: str, unit: int, generation: int = 1) -> Outcome:
    return ledger.record_frame(frame_object(job_id, unit), generation, {"render_seconds": "0.5"})


def counts(ledger: Ledger, job_id: str) -> tuple[int, int]:
    view = ledger.view(job_id)
    return view.done, view.failed


def test_create_is_idempotent_and_a_taken_id_is_refused(ledger: Ledger) -> None:
    spec = load_job_spec({"povray": {"args": ["s.ini"], "frames": {"first": 1, "last": 3}}})
    assert ledger.create_job(spec, "job-a")[1] is True
    assert ledger.create_job(spec, "job-a")[1] is False  # a retried submit
    other = load_job_spec({"povray": {"args": ["t.ini"], "frames": {"first": 1, "last": 3}}})
    with pytest.raises(SpecError, match="taken"):
        ledger.create_job(other, "job-a")
    assert len(ledger.unit_records("job-a")) == 3


def test_invariant_1_duplicates_in_a_row_count_once(ledger: Ledger) -> None:
    make_job(ledger, "job-dup", 5)
    kinds = [finalize(ledger, "job-dup", u).kind for u in (0, 0, 1, 1, 1)]
    assert kinds == ["recorded", "duplicate", "recorded", "duplicate", "duplicate"]
    assert counts(ledger, "job-dup") == (2, 0)


def test_invariant_1_and_2_concurrent_duplicates_count_once_and_claim_once(ledger: Ledger) -> None:
    units = 300
    make_job(ledger, "job-conc", units)
    deliveries = list(range(units)) * 2  # every event delivered twice
    random.Random(7).shuffle(deliveries)
    with cf.ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda u: finalize(ledger, "job-conc", u), deliveries))
    kinds = Counter(o.kind for o in outcomes)
    assert kinds[OutcomeKind.RECORDED] == units and kinds[OutcomeKind.DUPLICATE] == units
    assert sum(o.launch_stitch for o in outcomes) == 1
    view = ledger.view("job-conc")
    assert (view.done, view.failed) == (units, 0)
    assert view.state == JobState.STITCHING and view.doc["units_done"] == units
    assert view.doc["shards_complete"] == view.doc["shard_count"]


def test_invariant_2_the_stitch_waits_for_the_last_unit_even_reordered(ledger: Ledger) -> None:
    make_job(ledger, "job-order", 4)
    assert not finalize(ledger, "job-order", 3).launch_stitch  # the last frame first
    for u in (1, 0):
        assert not finalize(ledger, "job-order", u).launch_stitch
    assert job_doc(ledger, "job-order")["state"] == JobState.RENDERING
    assert finalize(ledger, "job-order", 2).launch_stitch
    assert job_doc(ledger, "job-order")["state"] == JobState.STITCHING


def test_invariant_2_one_stitch_result(ledger: Ledger) -> None:
    make_job(ledger, "job-res", 1)
    finalize(ledger, "job-res", 0)
    with cf.ThreadPoolExecutor(4) as pool:
        recorded = list(
            pool.map(
                lambda i: ledger.finish_stitch(
                    "job-res", video=f"v{i}", poster=None, stats={"i": i}
                ),
                range(4),
            )
        )
    assert recorded.count(True) == 1
    job = job_doc(ledger, "job-res")
    assert job["state"] == JobState.DONE and job["video"] == f"v{recorded.index(True)}"
    assert ledger.fail_stitch("job-res", "too late") is False


def test_invariant_1_an_overwrite_counts_nothing_and_keeps_the_newest(ledger: Ledger) -> None:
    make_job(ledger, "job-over", 2)
    finalize(ledger, "job-over", 0, generation=10)
    assert finalize(ledger, "job-over", 0, generation=11).kind == "overwrite"
    assert finalize(ledger, "job-over", 0, generation=9).kind == "stale"
    assert unit_doc(ledger, "job-over", 0)["generation"] == 11
    assert counts(ledger, "job-over") == (1, 0)


def test_invariant_1_a_late_failure_after_success_changes_nothing(ledger: Ledger) -> None:
    make_job(ledger, "job-late", 2)
    finalize(ledger, "job-late", 0)
    assert ledger.record_failure("job-late", 0, 1, "boom").kind == "late"
    assert unit_doc(ledger, "job-late", 0)["state"] == UnitState.DONE
    assert counts(ledger, "job-late") == (1, 0)


def test_duplicate_failure_reports_requeue_once(ledger: Ledger) -> None:
    make_job(ledger, "job-fdup", 1, max_attempts=3)
    first = ledger.record_failure("job-fdup", 0, 1, "boom")
    assert first.kind == "requeued" and first.requeue is not None and first.requeue.attempt == 2
    assert ledger.record_failure("job-fdup", 0, 1, "boom").requeue is None  # redelivered report
    record = unit_doc(ledger, "job-fdup", 0)
    assert record["attempts"] == 2 and len(record["errors"]) == 1


def test_attempts_run_out_then_the_job_fails_listing_every_error(ledger: Ledger) -> None:
    make_job(ledger, "job-fail", 3, max_attempts=2)
    assert ledger.record_failure("job-fail", 1, 1, "Parse Error: one").kind == "requeued"
    assert ledger.record_failure("job-fail", 1, 2, "Parse Error: two").kind == "failed"
    finalize(ledger, "job-fail", 0)
    assert job_doc(ledger, "job-fail")["state"] == JobState.RENDERING  # renders all it can
    out = finalize(ledger, "job-fail", 2)
    assert out.job_state == JobState.FAILED and not out.launch_stitch
    job = job_doc(ledger, "job-fail")
    assert job["state"] == JobState.FAILED and job["units_failed"] == 1
    assert [e["error"] for e in unit_doc(ledger, "job-fail", 1)["errors"]] == [
        "Parse Error: one",
        "Parse Error: two",
    ]
    assert job["errors"][0]["frame"] == 2 and "two" in job["errors"][0]["error"]


def test_fail_fast_ends_the_job_at_the_first_final_failure(ledger: Ledger) -> None:
    make_job(ledger, "job-ff", 5, fail_fast=True)
    out = ledger.record_failure("job-ff", 2, 1, "boom")
    assert out.kind == "failed" and out.job_state == JobState.FAILED
    assert job_doc(ledger, "job-ff")["state"] == JobState.FAILED
    assert ledger.start_unit("job-ff", 3, 1, "w") is None  # workers skip what is left


def test_retry_requeues_only_failed_units_and_completes_the_same_job(ledger: Ledger) -> None:
    make_job(ledger, "job-retry", 4, max_attempts=1)
    for u in (0, 1, 3):
        finalize(ledger, "job-retry", u)
    ledger.record_failure("job-retry", 2, 1, "boom")
    assert job_doc(ledger, "job-retry")["state"] == JobState.FAILED
    messages = ledger.retry("job-retry")
    assert [(m.unit, m.attempt) for m in messages] == [(2, 2)]
    assert job_doc(ledger, "job-retry")["state"] == JobState.RENDERING
    assert ledger.start_unit("job-retry", 2, 2, "w") is not None
    assert finalize(ledger, "job-retry", 2).launch_stitch
    job = job_doc(ledger, "job-retry")
    assert (
        job["state"] == JobState.STITCHING and job["units_done"] == 4 and job["units_failed"] == 0
    )
    with pytest.raises(SpecError, match="only a failed job"):
        ledger.retry("job-retry")


def test_retry_after_fail_fast_resends_the_units_never_rendered(ledger: Ledger) -> None:
    make_job(ledger, "job-ffr", 3, fail_fast=True)
    finalize(ledger, "job-ffr", 0)
    ledger.record_failure("job-ffr", 1, 1, "boom")
    messages = ledger.retry("job-ffr")
    assert sorted((m.unit, m.attempt) for m in messages) == [(1, 2), (2, 1)]
    for m in messages:
        finalize(ledger, "job-ffr", m.unit)
    assert job_doc(ledger, "job-ffr")["state"] == JobState.STITCHING


def test_cancel_stops_dispatch_and_is_final(ledger: Ledger) -> None:
    make_job(ledger, "job-cancel", 3)
    assert ledger.start_unit("job-cancel", 0, 1, "w") is not None
    assert ledger.cancel("job-cancel") == JobState.CANCELLED
    assert ledger.start_unit("job-cancel", 1, 1, "w") is None
    for u in range(3):  # frames still landing are counted, but the job stays cancelled
        assert not finalize(ledger, "job-cancel", u).launch_stitch
    assert job_doc(ledger, "job-cancel")["state"] == JobState.CANCELLED
    assert ledger.cancel("job-cancel") == JobState.CANCELLED


def test_start_unit_counts_deliveries_and_skips_stale_attempts(ledger: Ledger) -> None:
    make_job(ledger, "job-start", 1, max_attempts=3)
    first = ledger.start_unit("job-start", 0, 1, "w1")
    again = ledger.start_unit("job-start", 0, 1, "w2")  # redelivered after a crash
    assert first is not None and first.deliveries == 1
    assert again is not None and again.deliveries == 2
    ledger.record_failure("job-start", 0, 1, "crash")
    assert ledger.start_unit("job-start", 0, 1, "w3") is None  # the old attempt's message
    ticket = ledger.start_unit("job-start", 0, 2, "w3")
    assert (
        ticket is not None
        and ticket.deliveries == 1
        and ticket.unit_spec.args[-2:] == ("+SF1", "+EF1")
    )


def test_invariant_6_unknown_jobs_and_malformed_names(ledger: Ledger) -> None:
    with pytest.raises(UnknownJob):
        ledger.record_frame(frame_object("no-such-job", 0), 1)
    with pytest.raises(UnknownJob):
        ledger.start_unit("no-such-job", 0, 1, "w")
    with pytest.raises(PoisonMessage):
        ledger.record_frame("frames/not a job/1.png", 1)


def test_generated_units_keep_their_spec_on_the_unit(ledger: Ledger) -> None:
    spec = load_job_spec({"units": [{"args": ["+Ia.pov"], "inline": {"a.pov": "sphere{0,1}"}}] * 2})
    ledger.create_job(spec, "job-units")
    ticket = ledger.start_unit("job-units", 1, 1, "w")
    assert ticket is not None and ticket.unit_spec.inline == {"a.pov": "sphere{0,1}"}
    assert "units" not in job_doc(ledger, "job-units")["spec"]


# --- invariant 5 as code: the transition tables refuse a move ---------------------


def test_invariant_5_a_done_unit_cannot_move_back_to_rendering_through_the_ledger(
    ledger: Ledger,
) -> None:
    make_job(ledger, "job-back", 2)
    finalize(ledger, "job-back", 0)
    uref = ledger.unit_ref("job-back", 0)

    def restart(transaction: Any) -> None:
        # What start_unit would write if its terminal check were gone.
        doc = ledger._unit(uref, transaction)
        assert doc is not None and doc.state == UnitState.DONE
        transaction.update(uref, doc.moved(UnitState.RENDERING, worker="w", updated_at=now()))

    with pytest.raises(IllegalTransition, match="unit 0: illegal transition done -> rendering"):
        ledger._run(restart)
    # A bug, not contention: acknowledged and logged, never redelivered.
    assert verdict(IllegalTransition("x")).ack
    record = unit_doc(ledger, "job-back", 0)
    assert record is not None and record["state"] == UnitState.DONE and "worker" in record
    assert record["worker"] == ""  # the frame's stats wrote it; the refused move wrote nothing
    assert counts(ledger, "job-back") == (1, 0)


def test_invariant_5_a_done_job_takes_no_second_result_through_the_ledger(
    ledger: Ledger,
) -> None:
    make_job(ledger, "job-twice", 1)
    finalize(ledger, "job-twice", 0)
    assert ledger.finish_stitch("job-twice", video="v1", poster=None, stats={})
    jref = ledger.job_ref("job-twice")

    def record_again(transaction: Any) -> None:
        # What _finish would write if its stitching check were gone.
        job = ledger._job("job-twice", transaction)
        assert job is not None and job.state == JobState.DONE
        transaction.update(jref, job.moved(JobState.DONE, video="v2", updated_at=now()))

    with pytest.raises(IllegalTransition, match="job job-twice: illegal transition done -> done"):
        ledger._run(record_again)
    job = ledger.require_job("job-twice")
    assert (job["state"], job["video"]) == (JobState.DONE, "v1")
    # Retry is the one way back, and only from failed.
    with pytest.raises(IllegalTransition):
        ledger.job("job-twice").retried(JobState.RENDERING)


def test_the_documents_refuse_illegal_moves_and_unknown_fields() -> None:
    done = UnitDoc(unit=3, shard=3, state=UnitState.DONE)
    for new in UnitState:
        with pytest.raises(IllegalTransition):
            done.moved(new)
    with pytest.raises(IllegalTransition):
        done.retried(UnitState.PENDING)  # only a failed unit is retried
    failed = UnitDoc(unit=3, shard=3, state=UnitState.FAILED)
    assert failed.retried(UnitState.PENDING, attempts=2) == {"state": "pending", "attempts": 2}
    with pytest.raises(IllegalTransition):
        failed.moved(UnitState.PENDING)  # no event may take the retry's path
    rendering = UnitDoc(unit=3, shard=3, state=UnitState.RENDERING)
    assert rendering.toward(UnitState.RENDERING, deliveries=2) == {"deliveries": 2}
    assert rendering.toward(UnitState.PENDING, attempts=2) == {"state": "pending", "attempts": 2}
    with pytest.raises(IllegalTransition):
        done.toward(UnitState.DONE)  # a settled unit is never "kept" by a move
    with pytest.raises(IllegalTransition):
        rendering.update_fields(state=UnitState.DONE)  # a state only changes by a move
    with pytest.raises(TypeError, match="no field colour"):
        rendering.update_fields(colour="red")
    with pytest.raises(IllegalTransition):
        ShardDoc(shard=0, expected=1, done=1, complete=True).folded()

    job = JobDoc(job_id="j", state=JobState.STITCHING)
    assert job.moved(JobState.DONE, video="v") == {"state": "done", "video": "v"}
    for terminal in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
        with pytest.raises(IllegalTransition):
            JobDoc(job_id="j", state=terminal).moved(JobState.RENDERING)
    with pytest.raises(IllegalTransition):
        job.moved(JobState.RENDERING)  # stitching never goes back
    # Firestore sentinels pass through as given.
    increment = firestore.Increment(1)
    assert JobDoc.update_fields(units_done=increment) == {"units_done": increment}


def test_created_documents_keep_their_field_names(ledger: Ledger) -> None:
    make_job(ledger, "job-fields", 2)
    job = ledger.require_job("job-fields")
    assert set(job) == {
        "job_id", "name", "state", "spec", "spec_hash", "kind", "units_expected",
        "shard_count", "shards_complete", "units_done", "units_failed", "max_attempts",
        "fail_fast", "created_at", "updated_at", "started_at", "finished_at", "stitch",
        "video", "poster", "stats", "errors", "retries", "plan", "scene_key", "scene_family",
    }  # fmt: skip
    assert set(ledger.unit_records("job-fields")[0]) == {
        "unit", "shard", "state", "attempts", "attempt_limit", "deliveries", "frame",
        "label", "generation", "errors", "updated_at",
    }  # fmt: skip
    assert set(ledger.view("job-fields").shards[0]) == {
        "shard", "expected", "done", "failed", "complete",
    }  # fmt: skip
    assert JobDoc.from_dict(job).to_fields() == job  # typed and back, unchanged
