"""The Cloud Functions through functions-framework's test client, on the
emulators (a fresh project per test): what each event maps to (ack, retry,
400) and what it leaves in the ledger and on the topics."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import gcs_notification, push_request, unit_doc
from functions_framework import create_app
from google.api_core import exceptions as gexc
from google.cloud import firestore, pubsub_v1

from povstorm.cloud.blobs import storage_client
from povstorm.core.names import Namespace
from povstorm.core.naming import frame_object, segment_object
from povstorm.ledger.ledger import Ledger

pytestmark = pytest.mark.stack

SOURCE = str(Path(__file__).resolve().parents[1] / "functions" / "main.py")
NS = Namespace("fntest")


@pytest.fixture
def project(
    firestore_env: None, fresh_project: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh project with the namespace's topics, and the functions pointed at it."""
    monkeypatch.setenv("POVSTORM_PROJECT", fresh_project)
    monkeypatch.setenv("POVSTORM_NAMESPACE", NS.name)
    monkeypatch.setenv("POVSTORM_BUCKET", "fn-bucket")
    # One render slot, whatever the stack's environment says (the chunk plan's width).
    monkeypatch.setenv("POVSTORM_RENDER_SLOTS", "1")
    # Submit writes the job's manifest into the bucket.
    with contextlib.suppress(gexc.Conflict):
        storage_client(fresh_project, os.environ["STORAGE_EMULATOR_HOST"]).create_bucket(
            "fn-bucket"
        )
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    for key in ("work", "failures"):
        topic = publisher.topic_path(fresh_project, NS.topic(key))
        publisher.create_topic(name=topic)
        subscriber.create_subscription(
            name=subscriber.subscription_path(fresh_project, f"probe-{key}"), topic=topic
        )
    import povstorm.shells.functions as fn

    fn.clients.cache_clear()
    yield fresh_project
    fn.clients.cache_clear()


def pulled(project: str, key: str, wait: float = 5) -> list[dict[str, Any]]:
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(project, f"probe-{key}")
    reply = subscriber.pull(subscription=path, max_messages=100, timeout=wait)
    if reply.received_messages:
        subscriber.acknowledge(
            subscription=path, ack_ids=[m.ack_id for m in reply.received_messages]
        )
    return [json.loads(m.message.data) for m in reply.received_messages]


def client(target: str) -> Any:
    return create_app(target, SOURCE).test_client()


def push(target: str, data: bytes, attributes: dict[str, str] | None = None) -> int:
    """Deliver a message to a function exactly as the Pub/Sub emulator pushes
    it (the recorded request: path, envelope, no CloudEvent headers), so
    functions-framework builds the messagePublished CloudEvent itself."""
    path, body = push_request(data, attributes)
    reply = client(target).post(path, json=body)
    return int(reply.status_code)


def finalize_event(name: str, generation: int = 1) -> tuple[bytes, dict[str, str]]:
    """The recorded OBJECT_FINALIZE notification, for ``name`` in the functions' bucket."""
    return gcs_notification("fn-bucket", name, generation)


SPEC = {"povray": {"args": ["s.ini"], "frames": {"first": 1, "last": 3}}}


def test_submit_writes_the_job_and_publishes_one_message_per_chunk(project: str) -> None:
    reply = client("submit").post("/", json={**SPEC, "job_id": "fn-job-1"})
    assert reply.status_code == 200 and reply.get_json()["job_id"] == "fn-job-1"
    job = Ledger(firestore.Client(project=project)).get_job("fn-job-1")
    assert job is not None and job["state"] == "rendering" and job["units_expected"] == 3
    # One render slot: one chunk of every frame.
    assert job["plan"] == {"slots": 1, "frame_seconds": None}
    messages = pulled(project, "work")
    assert [(m["unit"], m["count"], m["attempt"]) for m in messages] == [(0, 3, 1)]
    again = client("submit").post("/", json={**SPEC, "job_id": "fn-job-1"})
    assert again.status_code == 200 and again.get_json()["created"] is False


def test_submit_plans_a_scene_it_has_not_rendered_from_the_clients_estimate(
    project: str,
) -> None:
    db = firestore.Client(project=project)
    body = {
        "povray": {"args": ["est.ini"], "frames": {"first": 1, "last": 3}},
        "estimate": {"seconds": [0.5, 0.75, 1.0], "source": "check"},
    }

    def plan(job_id: str) -> dict[str, Any]:
        reply = client("submit").post("/", json={**body, "job_id": job_id})
        assert reply.status_code == 200, reply.get_data(as_text=True)
        job = Ledger(db).get_job(job_id)
        assert job is not None
        return dict(job["plan"])

    assert plan("est-1") == {
        "slots": 1,
        "frame_seconds": None,
        "frame_profile": [0.5, 0.75, 1.0],
        "estimate": "check",
    }
    _finished(db, "est-1", 4.0)  # the scene's own frame times win over an estimate
    assert plan("est-2") == {"slots": 1, "frame_seconds": 4.0}


def _finished(db: Any, job_id: str, frame_seconds: float) -> None:
    """Mark a job done with a median frame time, as its stitch would."""
    db.collection("jobs").document(job_id).update(
        {"state": "done", "stats": {"render_seconds": {"p50": frame_seconds}}}
    )


def test_submit_plans_chunks_from_the_last_finished_job_of_the_scene(project: str) -> None:
    """A scene's frame time comes from its latest finished job with the same
    arguments and files, else from its latest before its files changed; a
    scene with other arguments starts with no frame time."""
    db = firestore.Client(project=project)
    v1 = {"povray": {"args": ["s.ini"], "frames": {"first": 1, "last": 3}}, "inputs": {}}
    digest = "a" * 64

    def plan(job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = client("submit").post("/", json={**body, "job_id": job_id})
        assert reply.status_code == 200, reply.get_data(as_text=True)
        job = Ledger(db).get_job(job_id)
        assert job is not None
        return dict(job["plan"])

    assert plan("fam-1", v1)["frame_seconds"] is None
    _finished(db, "fam-1", 4.0)
    assert plan("fam-2", v1)["frame_seconds"] == 4.0  # the same scene
    edited = {**v1, "inputs": {"tex.png": digest}}
    assert plan("fam-3", edited)["frame_seconds"] is None  # another file: another family
    v2 = {**v1, "inputs": {"tex.png": "b" * 64}}
    _finished(db, "fam-3", 9.0)
    assert plan("fam-4", v2)["frame_seconds"] == 9.0  # tex.png changed: its last version's
    other = {**v1, "povray": {**v1["povray"], "args": ["s.ini", "+W64"]}}
    assert plan("fam-5", other)["frame_seconds"] is None
    # The same scene exactly beats an earlier version of it.
    _finished(db, "fam-4", 2.0)
    assert plan("fam-6", edited)["frame_seconds"] == 9.0
    assert plan("fam-7", v2)["frame_seconds"] == 2.0
    # Each frame's time, when the last job rendered as many frames.
    assert "frame_profile" not in plan("fam-8", v1)
    db.collection("jobs").document("fam-8").update(
        {
            "state": "done",
            "stats": {
                "render_seconds": {"p50": 1.0},
                "frame_profile": {"units": 3, "seconds": [3.0, 1.0, 1.0]},
            },
        }
    )
    assert plan("fam-9", v1)["frame_profile"] == [3.0, 1.0, 1.0]
    longer = {**v1, "povray": {**v1["povray"], "frames": {"first": 1, "last": 4}}}
    assert "frame_profile" not in plan("fam-10", longer)


@pytest.mark.parametrize(
    "body,needle",
    [
        ({**SPEC, "colour": "red"}, "unknown field 'colour'"),
        ({"povray": {"args": [], "frames": {"first": 3, "last": 1}}}, "empty or reversed"),
        ({**SPEC, "inputs": {"../x": "0" * 64}}, "leaves its directory"),
    ],
)
def test_submit_answers_400_with_one_line_and_stores_nothing(
    project: str, body: dict, needle: str
) -> None:
    reply = client("submit").post("/", json=body)
    assert reply.status_code == 400
    error = reply.get_json()["error"]
    assert needle in error and "\n" not in error
    assert pulled(project, "work", wait=1) == []


def test_submit_refuses_other_methods_and_non_json(project: str) -> None:
    assert client("submit").get("/").status_code == 405
    assert client("submit").post("/", data="not json", content_type="text/plain").status_code == 400


def test_invariant_6_poison_events_are_acknowledged(project: str) -> None:
    assert push("frame_finalized", b"not json", {"eventType": "OBJECT_FINALIZE"}) == 200
    assert push("frame_finalized", *finalize_event("frames/Bad Name/1.png")) == 200
    assert push("frame_finalized", *finalize_event(frame_object("no-such-job", 0))) == 200
    assert (
        push("frame_finalized", *finalize_event("inputs/" + "a" * 64)) == 200
    )  # not a frame: ignored
    assert push("frame_failed", b'{"job_id": "no-such-job", "unit": 0, "error": "x"}') == 200
    assert push("frame_failed", b'{"unit": "x"}') == 200
    assert push("frame_failed", b"not json") == 200


def test_a_frame_event_counts_its_unit_and_a_failure_requeues(project: str) -> None:
    client("submit").post("/", json={**SPEC, "job_id": "fn-job-2"})
    pulled(project, "work")
    assert push("frame_finalized", *finalize_event(frame_object("fn-job-2", 0))) == 200
    assert push("frame_finalized", *finalize_event(frame_object("fn-job-2", 0))) == 200  # duplicate
    # A worker's video segment of units 0..1 (the local stack's bucket notifies
    # every object): acknowledged, never counted as a frame.
    assert push("frame_finalized", *finalize_event(segment_object("fn-job-2", 0, 1, "nut"))) == 200
    report = {"job_id": "fn-job-2", "unit": 1, "attempt": 1, "error": "Parse Error: x"}
    assert push("frame_failed", json.dumps(report).encode()) == 200
    assert push("frame_failed", json.dumps(report).encode()) == 200  # duplicate report
    ledger = Ledger(firestore.Client(project=project))
    view = ledger.view("fn-job-2")
    assert (view.done, view.failed) == (1, 0)
    assert [(m["unit"], m["attempt"]) for m in pulled(project, "work")] == [(1, 2)]
    # A dead-lettered work message is a failed attempt too.
    assert (
        push("frame_failed", json.dumps({"job_id": "fn-job-2", "unit": 1, "attempt": 2}).encode())
        == 200
    )
    assert unit_doc(ledger, "fn-job-2", 1)["attempts"] == 3


def test_firestore_unavailable_becomes_a_redelivery_not_a_loss(
    project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client("submit").post("/", json={**SPEC, "job_id": "fn-job-3"})
    import os

    import povstorm.shells.functions as fn

    real = os.environ["FIRESTORE_EMULATOR_HOST"]
    with socket.socket() as s:  # a port with nothing behind it
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", dead)
    fn.clients.cache_clear()
    event = finalize_event(frame_object("fn-job-3", 2))
    assert push("frame_finalized", *event) == 500  # Pub/Sub will redeliver
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", real)
    fn.clients.cache_clear()
    assert push("frame_finalized", *event) == 200  # the redelivery
    ledger = Ledger(firestore.Client(project=project))
    assert unit_doc(ledger, "fn-job-3", 2)["state"] == "done"
