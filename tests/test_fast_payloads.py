"""The recorded GCS notification (tests/data/payloads, recorded on the real
stack by tests/fixtures/record_payloads.py) read by povstorm's schemas, and
functions-framework turning the recorded push into the recorded CloudEvent:
if either drifts, the tests that deliver these payloads stand on sand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.common import (
    RECORDED_CLOUDEVENT,
    RECORDED_PUSH,
    gcs_notification,
    push_request,
    recorded,
)
from fixtures.record_payloads import FRAME, METADATA, tiny_png
from functions_framework import create_app

from povstorm.core.schemas import load_frame_event, pubsub_data

ECHO = Path(__file__).resolve().parent / "fixtures" / "echo_function.py"


def test_the_recorded_notification_parses_into_the_frame_event_it_announces() -> None:
    push = recorded(RECORDED_PUSH)
    data, attributes = pubsub_data(push["body"])
    assert attributes["eventType"] == "OBJECT_FINALIZE"
    assert attributes["payloadFormat"] == "JSON_API_V1"
    event = load_frame_event(data, attributes)
    assert event is not None
    assert (event.bucket, event.name) == ("povstorm-local", FRAME)
    assert event.generation == int(attributes["objectGeneration"]) > 0
    assert event.metadata == METADATA and event.size == len(tiny_png())


def test_the_recorded_cloud_event_carries_the_same_message() -> None:
    cloudevent = recorded(RECORDED_CLOUDEVENT)
    push = recorded(RECORDED_PUSH)
    assert cloudevent["attributes"]["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert cloudevent["attributes"]["source"] == "//pubsub.googleapis.com" + push["path"]
    assert pubsub_data(cloudevent["data"]) == pubsub_data(push["body"])


def test_functions_framework_builds_the_recorded_cloud_event_from_the_recorded_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "events.jsonl"
    monkeypatch.setenv("ECHO_OUT", str(out))
    push = recorded(RECORDED_PUSH)
    app = create_app("echo", str(ECHO), "cloudevent")
    reply = app.test_client().post(push["path"], json=push["body"])
    assert reply.status_code == 200
    (line,) = out.read_text().splitlines()
    assert json.loads(line) == recorded(RECORDED_CLOUDEVENT)


def test_a_substituted_notification_announces_the_object_a_test_names() -> None:
    data, attributes = gcs_notification("a-bucket", "frames/job-x/000007.png", 42, {"k": "v"})
    _, body = push_request(data, attributes)
    event = load_frame_event(*pubsub_data(body))
    assert event is not None
    assert (event.bucket, event.name, event.generation) == (
        "a-bucket",
        "frames/job-x/000007.png",
        42,
    )
    assert event.metadata == {"k": "v"}
