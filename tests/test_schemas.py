"""Pure tests of the job spec schema, object naming and the state model: no cloud."""

from __future__ import annotations

import pytest

from povstorm.core.errors import PoisonMessage, SpecError
from povstorm.core.model import (
    JOB_TRANSITIONS,
    UNIT_TRANSITIONS,
    IllegalTransition,
    JobState,
    UnitState,
    check_move,
    shard_count_for,
    shard_of,
    shard_sizes,
)
from povstorm.core.naming import (
    check_relpath,
    frame_object,
    log_object,
    new_job_id,
    parse_frame_object,
)
from povstorm.core.schemas import (
    MAX_INLINE_BYTES_PER_UNIT,
    MAX_UNITS,
    dump_job_spec,
    load_failure_report,
    load_frame_event,
    load_job_spec,
    load_work_message,
)

SCENE = {"povray": {"args": ["scene.ini"], "frames": {"first": 1, "last": 24}}}


def reject(payload: object) -> str:
    with pytest.raises(SpecError) as info:
        load_job_spec(payload)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_scene_spec_loads_and_round_trips() -> None:
    spec = load_job_spec({**SCENE, "output": {"fps": 30}, "max_attempts": 5})
    assert spec.unit_count == 24
    assert spec.unit_args(0) == ("scene.ini", "+SF1", "+EF1")
    assert spec.unit_args(23) == ("scene.ini", "+SF24", "+EF24")
    assert spec.output.fps == 30 and spec.max_attempts == 5
    assert load_job_spec(dump_job_spec(spec)) == spec


def test_a_still_scene_gets_no_subset_options() -> None:
    spec = load_job_spec(
        {"povray": {"args": ["+Ia.pov"], "frames": {"first": 1, "last": 1}, "animated": False}}
    )
    assert spec.unit_args(0) == ("+Ia.pov",)


def test_generated_units_load_and_round_trip() -> None:
    spec = load_job_spec(
        {
            "units": [{"args": ["+Is.pov"], "inline": {"s.pov": "sphere{0,1}"}}],
            "inputs_dir": "shared",
        }
    )
    assert spec.unit_count == 1 and spec.unit_spec(0).inline == {"s.pov": "sphere{0,1}"}
    assert load_job_spec(dump_job_spec(spec)) == spec


def test_unknown_fields_are_named() -> None:
    assert "unknown field 'bogus'" in reject({**SCENE, "bogus": 1})
    assert "unknown field 'povray.colour'" in reject({"povray": {**SCENE["povray"], "colour": 1}})


@pytest.mark.parametrize("first,last", [(5, 1), (10, 9)])
def test_reversed_frame_ranges_are_rejected(first: int, last: int) -> None:
    message = reject({"povray": {"args": [], "frames": {"first": first, "last": last}}})
    assert "empty or reversed" in message and "povray.frames.last" in message


def test_a_job_needs_exactly_one_form() -> None:
    assert "exactly one" in reject({})
    assert "exactly one" in reject({**SCENE, "units": [{"args": []}]})
    assert "exactly one" in reject({"units": []})


@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "/etc/passwd", "C:/x", "a//b", "./a", "a\\b", ""]
)
def test_traversal_and_absolute_resource_names_are_rejected(name: str) -> None:
    assert "inputs" in reject({**SCENE, "inputs": {name: "0" * 64}})
    assert "inline" in reject({"units": [{"inline": {name: "x"}}]})


def test_inline_files_over_the_limit_are_rejected() -> None:
    big = "x" * (MAX_INLINE_BYTES_PER_UNIT + 1)
    assert "over the limit" in reject({"units": [{"inline": {"a.pov": big}}]})


def test_too_many_units_are_rejected() -> None:
    assert f"more than {MAX_UNITS} frames" in reject(
        {"povray": {"args": [], "frames": {"first": 0, "last": MAX_UNITS}}}
    )
    assert "over the limit" in reject({"units": [{}] * (MAX_UNITS + 1)})


def test_bad_values_are_named() -> None:
    assert "output.fps" in reject({**SCENE, "output": {"fps": 0}})
    assert "output.codec" in reject({**SCENE, "output": {"codec": "divx"}})
    assert "inputs" in reject({**SCENE, "inputs": {"a.pov": "not-a-hash"}})
    assert "job_id" in reject({**SCENE, "job_id": "Bad Id!"})
    assert "must be a JSON object" in reject([1, 2])


def test_a_clients_estimate_round_trips_and_a_bad_one_is_named() -> None:
    estimate = {"seconds": [0.2, 0.25], "source": "check"}
    spec = load_job_spec({**SCENE, "estimate": estimate})
    assert spec.estimate is not None and spec.estimate.seconds == (0.2, 0.25)
    assert dump_job_spec(spec)["estimate"] == estimate
    assert "estimate" not in dump_job_spec(load_job_spec(SCENE))  # the spec hash as before
    assert "estimate.seconds.0" in reject({**SCENE, "estimate": {**estimate, "seconds": [0]}})
    assert "estimate.seconds.0" in reject({**SCENE, "estimate": {**estimate, "seconds": [1e9]}})
    assert "estimate.seconds" in reject({**SCENE, "estimate": {**estimate, "seconds": []}})
    assert "estimate.seconds" in reject({**SCENE, "estimate": {**estimate, "seconds": [1] * 257}})
    assert "estimate.source" in reject({**SCENE, "estimate": {**estimate, "source": "guess"}})


def test_frame_objects_round_trip_and_others_are_poison() -> None:
    job = new_job_id()
    assert parse_frame_object(frame_object(job, 42)) == (job, 42)
    assert log_object(job, 3, 2).endswith("/000003/attempt-2.log")
    for bad in [
        "inputs/abc",
        f"frames/{job}/x.png",
        f"frames/{job}/000001.jpg",
        "frames/UPPER/000001.png",
        "",
    ]:
        with pytest.raises(PoisonMessage):
            parse_frame_object(bad)


def test_relpath_accepts_nested_names() -> None:
    assert check_relpath("textures/wood.png") == "textures/wood.png"


def test_wire_messages_are_validated() -> None:
    assert load_work_message(b'{"job_id":"abc-1","unit":3,"attempt":2}').unit == 3
    with pytest.raises(PoisonMessage):
        load_work_message(b"not json")
    with pytest.raises(PoisonMessage):
        load_work_message(b'{"job_id":"abc-1","unit":-1}')
    report = load_failure_report(b'{"job_id":"abc-1","unit":0,"attempt":1,"error":"Parse Error"}')
    assert report.error == "Parse Error" and not report.final


def test_gcs_notifications_become_frame_events() -> None:
    body = b'{"bucket":"b","name":"frames/job-1/000001.png","generation":"17","metadata":{"render_seconds":"1.5"}}'
    event = load_frame_event(body, {"eventType": "OBJECT_FINALIZE"})
    assert (
        event is not None and event.generation == 17 and event.metadata["render_seconds"] == "1.5"
    )
    assert load_frame_event(body, {"eventType": "OBJECT_DELETE"}) is None
    with pytest.raises(PoisonMessage):
        load_frame_event(b'{"bucket":"b","name":"x"}', {"eventType": "OBJECT_FINALIZE"})


def test_states_only_move_forward() -> None:
    for state in UnitState:
        if state.terminal:
            assert not UNIT_TRANSITIONS[state], f"{state} is terminal but can move"
    for job_state in JobState:
        if job_state.terminal:
            assert not JOB_TRANSITIONS[job_state], f"{job_state} is terminal but can move"
    check_move(UNIT_TRANSITIONS, UnitState.PENDING, UnitState.RENDERING)
    check_move(JOB_TRANSITIONS, JobState.RENDERING, JobState.STITCHING)
    with pytest.raises(IllegalTransition):
        check_move(UNIT_TRANSITIONS, UnitState.DONE, UnitState.FAILED)
    with pytest.raises(IllegalTransition):
        check_move(JOB_TRANSITIONS, JobState.DONE, JobState.RENDERING)
    with pytest.raises(IllegalTransition):
        check_move(JOB_TRANSITIONS, JobState.STITCHING, JobState.RENDERING)


def test_shards_are_blocks_of_consecutive_units_that_partition_the_job() -> None:
    for units in (1, 7, 8, 9, 48, 512, 513, 2000, 10_000):
        count = shard_count_for(units)
        sizes = shard_sizes(units)
        assert len(sizes) == count and sum(sizes) == units and min(sizes) >= 1
        assert count <= 64 and (units < 8 or min(sizes[:-1] or sizes) >= 8)
        owners = [shard_of(u, units) for u in range(units)]
        assert owners == sorted(owners) and sorted(set(owners)) == list(range(count))
        assert [owners.count(k) for k in range(count)] == sizes
    assert shard_count_for(48) == 6  # a 48-frame job folds into its job document 6 times
