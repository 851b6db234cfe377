"""`povstorm rm` and `povstorm gc` (issue 16): a job's documents and objects
go, whole, and nothing of any other job does.

Two jobs are rendered through the CLI on the session stack (3 frames at
32x24, sharing an include) for rm, --dry-run, --keep-video, --force and an
unknown job. The others are made in the ledger of a fresh project with a
bucket of its own (so that gc, which reads the whole bucket, sees only the
test's), their objects uploaded where the farm writes them: shared inputs,
gc by age, what Firestore's TTL leaves, and the ledger's expire_at."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import (
    quiet_render_tasks,
    render_execution,
    running_tasks,
    wait_tasks_ended,
    wait_until,
)
from fixtures.common import run_cli as run

from povstorm.client import Cluster
from povstorm.cloud.blobs import storage_client
from povstorm.cloud.clients import Clients
from povstorm.core.digest import sha256_bytes
from povstorm.core.errors import SpecError, TransientError, UnknownJob
from povstorm.core.naming import (
    frame_object,
    input_object,
    log_object,
    poster_object,
    restitch_object,
    segment_object,
    stats_object,
    video_object,
)
from povstorm.core.schemas import load_job_spec
from povstorm.core.settings import Settings
from povstorm.farm import cleanup, operations
from povstorm.farm.cleanup import Removal, collect_garbage, remove_jobs
from povstorm.ledger.docs import TTL_FIELD
from povstorm.ledger.ledger import Ledger, now
from povstorm_local.state import StackState

SCENE = (
    "camera { location <0,0,-3> look_at 0 }\n"
    "light_source { <0,5,-5> rgb 1 }\n"
    "sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
)
DAY = dt.timedelta(days=1)


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("povstorm: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# --- what a job has, read straight from Firestore and the bucket -------------------------


def documents_of(ledger: Ledger, job_id: str) -> set[str]:
    """The paths of the job document and of every document under it."""
    ref = ledger.job_ref(job_id)
    found = {s.reference.path for c in ref.collections() for s in c.stream()}
    return found | ({ref.path} if ref.get().exists else set())


def objects_of(where: Any, job_id: str) -> dict[str, int]:
    """name -> generation of every object named after the job in the bucket
    of ``where`` (Clients or a Cluster)."""
    return {b.name: b.generation for b in where.blobs.list("") if f"/{job_id}/" in b.name}


def input_generations(where: Any, shas: set[str]) -> dict[str, int]:
    """name -> generation of those of these inputs that are in the bucket."""
    found = {sha: where.blobs.info(input_object(sha)) for sha in shas}
    return {input_object(sha): b.generation for sha, b in found.items() if b is not None}


def snapshot(cluster: Any, job_id: str) -> tuple[set[str], dict[str, int]]:
    return documents_of(cluster.ledger, job_id), objects_of(cluster, job_id)


# --- rm on the session stack, through the CLI -----------------------------------------------


def render(env: dict[str, str], cwd: Path, scene: str) -> str:
    done = run(env, "render", scene, "+W32", "+H24", "+KFI1", "+KFF3", "-o", "v.mp4", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stderr.split("job ", 1)[1].split(":")[0]


def test_rm_removes_one_job_whole_and_leaves_the_other_as_it_was(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    # Content of this test's own: no other job of the session names its inputs.
    tag = uuid.uuid4().hex
    (tmp_path / "common.inc").write_text(f"// {tag}\n#declare Size = 1;\n")
    for name in ("a", "b"):
        (tmp_path / f"{name}.pov").write_text(f'// {name} {tag}\n#include "common.inc"\n{SCENE}')
    a, b = render(stack_env, tmp_path, "a.pov"), render(stack_env, tmp_path, "b.pov")

    with Cluster.local(start=False) as cluster:

        def cached() -> bool:  # the stitches' last writes: their frames in the frame cache
            return all(cluster.ledger.require_job(j).get("cache_filled") for j in (a, b))

        wait_until(cached, 60, "the frames stored in the frame cache")
        inputs = {j: set(cluster.ledger.require_job(j)["spec"]["inputs"].values()) for j in (a, b)}
        (shared,) = inputs[a] & inputs[b]
        (own_a,) = inputs[a] - {shared}
        before_a, before_b = snapshot(cluster, a), snapshot(cluster, b)
        inputs_before = input_generations(cluster, inputs[a] | inputs[b])
    assert len(inputs_before) == 3
    docs_a, objects_a = before_a
    kinds = {path.split("/")[2] if path.count("/") > 1 else "job" for path in docs_a}
    assert kinds == {"job", "units", "shards", "completions"}
    assert {name.split("/")[0] for name in objects_a} == {
        "jobs", "frames", "logs", "segments", "videos",
    }  # fmt: skip

    # A dry run lists everything of a, and the input a alone names, and removes nothing.
    dry = run(stack_env, "rm", a, "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    (listed,) = json.loads(dry.stdout)["jobs"]
    assert listed["dry_run"] is True and listed["state"] == "done"
    assert set(listed["removed"]["documents"]) == docs_a
    assert set(listed["removed"]["objects"]) == set(objects_a) | {input_object(own_a)}
    assert listed["kept"] == {input_object(shared): f"an input of job {b}"}
    assert sum(listed["documents"].values()) == len(docs_a)
    assert listed["objects"]["frames"]["count"] == 3 and listed["objects"]["inputs"]["count"] == 1
    with Cluster.local(start=False) as cluster:
        assert snapshot(cluster, a) == before_a and snapshot(cluster, b) == before_b
        assert input_generations(cluster, inputs[a] | inputs[b]) == inputs_before

    # The real thing removes exactly what the dry run listed.
    removed = run(stack_env, "rm", a, "--json", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    (gone,) = json.loads(removed.stdout)["jobs"]
    assert gone["dry_run"] is False and gone["error"] is None
    assert gone["removed"] == listed["removed"] and gone["kept"] == listed["kept"]
    assert gone["bytes"] == listed["bytes"] > 0
    with Cluster.local(start=False) as cluster:
        assert snapshot(cluster, a) == (set(), {})
        assert snapshot(cluster, b) == before_b
        left = input_generations(cluster, inputs[a] | inputs[b])
    assert left == {k: v for k, v in inputs_before.items() if k != input_object(own_a)}
    assert "unknown job: " + a in one_line_error(run(stack_env, "status", a, cwd=tmp_path))
    assert "unknown job: " + a in one_line_error(run(stack_env, "rm", a, cwd=tmp_path))

    # --keep-video keeps exactly what fetch gives as the result, frames
    # aside: the video, the poster and the contact sheet (stats.json goes:
    # fetch writes the ledger's); the shared input goes with the last job
    # that named it.
    kept = run(stack_env, "rm", b, "--keep-video", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    results = {video_object(b, "mp4"), poster_object(b)}
    results |= {f"videos/{b}/contact.png"} & set(before_b[1])  # if the stitch made one
    assert results <= set(before_b[1]) and stats_object(b) in before_b[1]
    assert sorted(kept.stdout.splitlines()[1:]) == [
        f"  kept {n}: --keep-video" for n in sorted(results)
    ]
    assert kept.stdout.startswith(f"removed job {b} (done): {len(before_b[0])} document(s) (")
    with Cluster.local(start=False) as cluster:
        assert documents_of(cluster.ledger, b) == set()
        assert objects_of(cluster, b) == {k: before_b[1][k] for k in results}
        assert input_generations(cluster, inputs[a] | inputs[b]) == {}


def test_an_unknown_job_is_one_line_and_nothing_is_removed(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    assert one_line_error(run(stack_env, "rm", "no-such-job", cwd=tmp_path)) == (
        "povstorm: error: unknown job: no-such-job"
    )
    assert "invalid job id" in one_line_error(run(stack_env, "rm", "No_Such", cwd=tmp_path))
    assert "--older-than 3x: an age like 30d" in one_line_error(
        run(stack_env, "gc", "--older-than", "3x", cwd=tmp_path)
    )


def test_rm_refuses_a_job_still_rendering_and_force_cancels_it_first(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    # About 0.1 s of parsing a frame: the 200 frames outlast the commands below.
    loop = "#declare I = 0; #while (I < 100000) #declare I = I + 1; #end"
    (tmp_path / "long.pov").write_text(f"// {uuid.uuid4().hex}\n{loop}\n{SCENE}")
    quiet_render_tasks()  # so that the job gets an execution of its own
    submitted = run(
        stack_env, "render", "long.pov", "+W32", "+H24", "+KFI1", "+KFF200", "--no-wait",
        cwd=tmp_path,
    )  # fmt: skip
    job = submitted.stdout.strip()
    refused = one_line_error(run(stack_env, "rm", job, cwd=tmp_path))
    assert f"job {job} is rendering: cancel it first" in refused and "--force" in refused
    with Cluster.local(start=False) as cluster:
        assert cluster.ledger.require_job(job)["state"] == "rendering"
        (execution,) = cluster.ledger.require_job(job)["executions"]

    forced = run(stack_env, "rm", job, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.startswith(f"removed job {job} (rendering, cancelled first): ")

    # Its execution is cancelled. A task of another execution may hold one
    # of its chunks: it sees the job gone within 5 s, and uploads the frames
    # it wrote then; rm again removes whatever landed after the removal. A
    # task started since can only acknowledge the job's chunks (unknown job).
    wait_until(lambda: render_execution(f"{execution}/0")["cancelled"], 30, "the cancel")
    wait_tasks_ended(running_tasks(), 90, "the render tasks running at the removal to exit")
    again = run(stack_env, "rm", job, cwd=tmp_path)
    assert again.returncode == 0 or "unknown job" in one_line_error(again)
    with Cluster.local(start=False) as cluster:
        assert snapshot(cluster, job) == (set(), {})


# --- the library, in a project and a bucket of the test's own --------------------------------


@pytest.fixture
def own(infra_stack: StackState, settings: Settings) -> Clients:
    """Clients of a fresh project with a bucket of its own, whose jobs keep
    30 days once ended."""
    mine = settings.with_overrides(bucket=settings.project, jobs_retention_days=30.0)
    storage_client(mine.project, mine.endpoints.storage).create_bucket(mine.bucket)
    return Clients.from_settings(mine)


def make_job(
    clients: Clients,
    end: str = "done",
    *,
    inputs: tuple[bytes, ...] = (),
    unit_inputs: tuple[bytes, ...] = (),
    frames: int = 2,
) -> str:
    """A job made as the farm makes one, its objects where the farm writes
    them: its manifest and inputs, then (unless ``end`` is "rendering") each
    frame and its log, a segment, and ending ``end``: done (video, poster,
    stats.json), failed (the stitch failed) or cancelled. ``unit_inputs``
    makes it a job of generated units, each naming these."""
    ledger, blobs = Ledger(clients.db), clients.blobs
    job_id = f"c-{uuid.uuid4().hex[:12]}"

    def upload(data: bytes) -> str:
        sha = sha256_bytes(data)
        blobs.upload_bytes(input_object(sha), data)
        return sha

    named = {f"in{i}.inc": upload(data) for i, data in enumerate(inputs)}
    body: dict[str, Any] = {"job_id": job_id, "inputs": named, "max_attempts": 1}
    if unit_inputs:
        unit = {
            "args": ["+Iu.pov"],
            "inputs": {f"u{i}.inc": upload(d) for i, d in enumerate(unit_inputs)},
        }
        body["units"] = [unit] * frames
    else:
        body["povray"] = {"args": ["s.pov"], "frames": {"first": 1, "last": frames}}
    spec = load_job_spec(body)
    operations.write_manifest(clients, job_id, spec, {}, now())
    ledger.create_job(spec, job_id, retention_days=clients.settings.jobs_retention_days)
    ledger.mark_dispatched(job_id)
    if end == "rendering":
        return job_id
    for u in range(frames):
        blobs.upload_bytes(log_object(job_id, u, 1), b"POV-Ray says hello")
        ledger.record_frame(
            frame_object(job_id, u), blobs.upload_bytes(frame_object(job_id, u), b"png")
        )
    blobs.upload_bytes(segment_object(job_id, 0, frames - 1, "nut"), b"segment")
    if end == "done":
        for name in (video_object(job_id), poster_object(job_id), stats_object(job_id)):
            blobs.upload_bytes(name, b"result")
        assert ledger.finish_stitch(job_id, video=video_object(job_id), poster=None, stats={})
    elif end == "failed":
        assert ledger.fail_stitch(job_id, "ffmpeg failed")
    else:
        assert operations.cancel(clients, job_id) == "cancelled"
    assert ledger.require_job(job_id)["state"] == end
    return job_id


def ended(clients: Clients, job_id: str, ago: dt.timedelta) -> None:
    """Make the job have ended ``ago``."""
    Ledger(clients.db).job_ref(job_id).update({"finished_at": now() - ago})


def whole(clients: Clients, job_id: str) -> tuple[set[str], dict[str, int]]:
    return documents_of(Ledger(clients.db), job_id), objects_of(clients, job_id)


def test_an_input_stays_while_a_job_that_stays_names_it(own: Clients) -> None:
    tag = uuid.uuid4().bytes
    shared, own_a, by_unit, pending = (tag + bytes([i]) for i in range(4))
    a = make_job(own, inputs=(shared, own_a))
    b = make_job(own, inputs=(shared,))
    c = make_job(own, unit_inputs=(by_unit,))  # a generated unit names it
    d = make_job(own, inputs=(by_unit, pending))
    # A job submitted this moment: its manifest is written, its ledger entry not yet.
    e = "c-" + uuid.uuid4().hex[:12]
    e_spec = load_job_spec(
        {
            "job_id": e,
            "povray": {"args": ["s.pov"], "frames": {"first": 1, "last": 1}},
            "inputs": {"p.inc": sha256_bytes(pending)},
        }
    )
    operations.write_manifest(own, e, e_spec, {}, now())

    (ra,) = remove_jobs(own, [a])
    assert ra.kept == {input_object(sha256_bytes(shared)): f"an input of job {b}"}
    assert [blob.name for blob in ra.objects if blob.name.startswith("inputs/")] == [
        input_object(sha256_bytes(own_a))
    ]
    (rd,) = remove_jobs(own, [d])
    assert rd.kept == {
        input_object(sha256_bytes(by_unit)): f"an input of job {c}",
        input_object(sha256_bytes(pending)): f"an input of job {e}",
    }
    assert own.blobs.exists(input_object(sha256_bytes(shared)))
    # Removed together, two jobs take the input they share with the second.
    rb, rc = remove_jobs(own, [b, c])
    assert rb.kept == {} and rc.kept == {}
    assert [o.name for o in rb.objects if o.name.startswith("inputs/")] == [
        input_object(sha256_bytes(shared))
    ]
    assert [o.name for o in rc.objects if o.name.startswith("inputs/")] == [
        input_object(sha256_bytes(by_unit))
    ]
    assert not own.blobs.exists(input_object(sha256_bytes(by_unit)))
    assert own.blobs.exists(input_object(sha256_bytes(pending)))


def test_nothing_is_removed_when_a_job_is_unknown_or_still_active(
    own: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cleanup, "FORCE_GRACE_SECONDS", 0.0)  # no render task here to wait for
    done, rendering = make_job(own), make_job(own, "rendering")
    before = {j: whole(own, j) for j in (done, rendering)}
    with pytest.raises(UnknownJob, match="unknown job: no-such-job"):
        remove_jobs(own, [done, "no-such-job"])
    with pytest.raises(SpecError, match=f"job {rendering} is rendering: cancel it first"):
        remove_jobs(own, [done, rendering])
    assert {j: whole(own, j) for j in (done, rendering)} == before

    # --force --dry-run says it would cancel, and changes nothing.
    (dry,) = remove_jobs(own, [rendering], force=True, dry_run=True)
    assert (dry.state, dry.cancelled, dry.dry_run) == ("rendering", True, True)
    assert dry.lines()[0].startswith(f"would remove job {rendering} (rendering, would be cancelled")
    assert whole(own, rendering) == before[rendering]
    reported: list[Removal] = []
    (forced,) = remove_jobs(own, [rendering], force=True, on_removed=reported.append)
    assert reported == [forced] and (forced.state, forced.cancelled) == ("rendering", True)
    # The cancel wrote its marker, which went with the rest.
    assert f"jobs/{rendering}/cancelled" in {o.name for o in forced.objects}
    assert whole(own, rendering) == (set(), {})
    assert whole(own, done) == before[done]


def test_gc_removes_only_the_finished_jobs_older_than_its_age(own: Clients) -> None:
    old = [make_job(own, end) for end in ("done", "failed", "cancelled")]
    for job in old:
        ended(own, job, 31 * DAY)
    recent = make_job(own)
    ended(own, recent, 29 * DAY)
    rendering = make_job(own, "rendering")
    keep = {j: whole(own, j) for j in (recent, rendering)}
    doomed = {j: whole(own, j) for j in old}

    # A dry run lists what the real one removes, and removes nothing.
    dry = collect_garbage(own, 30 * DAY, dry_run=True)
    assert sorted(r.job_id for r in dry) == sorted(old)
    assert {j: whole(own, j) for j in old} == doomed
    reported: list[Removal] = []
    removed = collect_garbage(own, 30 * DAY, on_removed=reported.append)
    assert reported == removed
    assert [r.as_dict()["removed"] for r in removed] == [r.as_dict()["removed"] for r in dry]
    for r in removed:
        docs, objects = doomed[r.job_id]
        assert {d.path for d in r.documents} == docs and r.state in ("done", "failed", "cancelled")
        assert {o.name for o in r.objects} == set(objects)
        assert whole(own, r.job_id) == (set(), {})
    assert {j: whole(own, j) for j in (recent, rendering)} == keep
    assert collect_garbage(own, 30 * DAY) == []


def test_the_ledger_writes_expire_at_when_a_job_ends_and_clears_it_on_retry(
    own: Clients,
) -> None:
    ledger = Ledger(own.db)
    job = make_job(own, "cancelled")
    doc = ledger.require_job(job)
    assert doc["retention_days"] == 30 and doc[TTL_FIELD] == doc["finished_at"] + 30 * DAY

    # A failed job that is retried no longer expires, and expires again once it ends.
    spec = load_job_spec({"povray": {"args": ["s.pov"], "frames": {"first": 1, "last": 2}}})
    ledger.create_job(spec, "c-retried", retention_days=30)
    ledger.mark_dispatched("c-retried")
    ledger.record_frame(frame_object("c-retried", 0), 1)
    ledger.record_failure("c-retried", 1, 1, "boom", final=True)
    failed = ledger.require_job("c-retried")
    assert failed["state"] == "failed" and failed[TTL_FIELD] == failed["finished_at"] + 30 * DAY
    assert len(ledger.retry("c-retried")) == 1
    assert ledger.require_job("c-retried")[TTL_FIELD] is None
    ledger.record_frame(frame_object("c-retried", 1), 1)
    assert ledger.finish_stitch("c-retried", video=None, poster=None, stats={})
    done = ledger.require_job("c-retried")
    assert done[TTL_FIELD] == done["finished_at"] + 30 * DAY

    # A deployment that keeps its jobs (the local stack's default) writes none.
    keeping = Clients.from_settings(own.settings.with_overrides(jobs_retention_days=0.0))
    assert Settings().jobs_retention_days == 0
    kept = make_job(keeping)
    assert TTL_FIELD not in ledger.require_job(kept)


def test_submit_makes_jobs_expire_as_the_deployment_says(
    project_topics: Settings, own: Clients
) -> None:
    # The functions' environment, as terraform sets it (POVSTORM_JOBS_RETENTION_DAYS).
    environ = {**own.settings.to_env(), "POVSTORM_JOBS_RETENTION_DAYS": "7.5"}
    deployment = Clients.from_settings(Settings.from_env(environ))
    job = operations.submit(
        deployment, {"povray": {"args": ["s.pov"], "frames": {"first": 1, "last": 2}}}
    )["job_id"]
    assert Ledger(own.db).require_job(job)["retention_days"] == 7.5
    operations.cancel(deployment, job)
    doc = Ledger(own.db).require_job(job)
    assert doc[TTL_FIELD] == doc["finished_at"] + dt.timedelta(days=7.5)


def test_gc_removes_what_firestores_ttl_left_of_an_expired_job(own: Clients) -> None:
    expired = make_job(own, unit_inputs=(uuid.uuid4().bytes,))
    _, objects = whole(own, expired)
    # What the TTL policy does at expire_at: the job document goes, alone.
    Ledger(own.db).job_ref(expired).delete()
    left = whole(own, expired)
    assert left[0] and left[1] == objects
    rendering = make_job(own, "rendering")
    before = whole(own, rendering)

    # Its newest document and object are seconds old: not older than an hour.
    assert collect_garbage(own, dt.timedelta(hours=1)) == []
    assert whole(own, expired) == left
    (removed,) = collect_garbage(own, dt.timedelta(0))
    assert removed.job_id == expired and removed.state is None
    assert {d.path for d in removed.documents} == left[0]
    assert "job" not in removed.document_counts() and removed.document_counts()["units"] == 2
    assert {o.name for o in removed.objects} >= set(objects)
    assert removed.lines()[0].startswith(f"removed job {expired} (its job document already gone)")
    assert whole(own, expired) == (set(), {}) and whole(own, rendering) == before

    # rm of such a job removes what is left as well.
    other = make_job(own)
    Ledger(own.db).job_ref(other).delete()
    (r,) = remove_jobs(own, [other])
    assert r.state is None and whole(own, other) == (set(), {})


def test_keep_video_keeps_every_video_of_the_job_and_its_poster(own: Clients) -> None:
    job = make_job(own)
    restitched = restitch_object(job, "h264-12fps-crf20-mp4")
    own.blobs.upload_bytes(restitched, b"another video")
    _, objects = whole(own, job)
    results = {video_object(job), restitched, poster_object(job)}

    (removed,) = remove_jobs(own, [job], keep_video=True)
    assert removed.kept == {name: "--keep-video" for name in sorted(results)}
    assert {o.name for o in removed.objects} == set(objects) - results
    assert stats_object(job) in {o.name for o in removed.objects}
    assert whole(own, job) == (set(), {name: objects[name] for name in results})


class FailingDeletes:
    """The bucket of ``blobs``, unavailable for deleting frames."""

    def __init__(self, blobs: Any) -> None:
        self._blobs = blobs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)

    def delete(self, name: str) -> bool:
        if name.startswith("frames/"):
            raise TransientError("storage unavailable")
        return bool(self._blobs.delete(name))


def test_a_removal_stopped_part_way_says_what_went_and_runs_again_to_its_end(
    own: Clients,
) -> None:
    job = make_job(own, inputs=(uuid.uuid4().bytes,))
    docs, objects = whole(own, job)
    reported: list[Removal] = []
    outage = replace(own, blobs=FailingDeletes(own.blobs))
    with pytest.raises(TransientError):
        remove_jobs(outage, [job], on_removed=reported.append)
    (partial,) = reported
    # The input and the manifest went first; the documents are all still there.
    assert partial.error == "storage unavailable" and partial.documents == []
    assert [kind for kind in partial.object_counts()] == ["inputs", "manifest"]
    assert partial.lines()[0].startswith(f"removed part of job {job} (done): 0 document(s), 2 ")
    assert partial.lines()[0].endswith(
        f"stopped by: storage unavailable (`povstorm rm {job}` removes the rest)"
    )
    assert whole(own, job) == (
        docs,
        {k: v for k, v in objects.items() if not k.startswith("jobs/")},
    )

    (rest,) = remove_jobs(own, [job])
    assert rest.error == "" and {d.path for d in rest.documents} == docs
    assert whole(own, job) == (set(), {})
