"""The frame cache (core/framekey.py, worker/cache.py, farm/cache.py) on the
local stack with real POV-Ray: a frame rendered before is copied into the
next job that needs it, and counted by its own finalize event; anything that
can change its pixels (a scene file, a unit's inline file, POV-Ray itself)
renders it again; a scene whose frames depend on one another is not cached.

The cache is shared by the whole deployment, so every test renders a scene
of its own (a salt nobody else uses): no test sees another's frames."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fakes import MemoryBlobStore
from fixtures.common import decoded_pixels, run_cli, video_frames, wait_until

from povstorm.client import Cluster, Job, WorkUnit
from povstorm.cloud.clients import Clients
from povstorm.core.framekey import frame_key
from povstorm.core.model import WorkMessage
from povstorm.core.naming import cache_object, frame_object, input_object
from povstorm.core.schemas import load_job_spec
from povstorm.farm import cache as frame_cache
from povstorm.ledger.ledger import Ledger
from povstorm.povray import collect_inputs, parse_invocation, povray_version
from povstorm.stitch.job import store_frames
from povstorm.worker import cache as worker_cache
from povstorm.worker.inputs import InputCache
from povstorm.worker.unit import handle_work

SCENE = """#version 3.7;
#include "colors.inc"
#include "look.inc"
#declare Salt = "{salt}";
camera {{ location <0, 1, -4> look_at <0, 0, 0> }}
light_source {{ <2, 4, -3> color White }}
sphere {{ <0, 0, 0>, 1 pigment {{ color Look }} rotate y * 360 * clock translate x * clock }}
{extra}
"""


def make_scene(root: Path, *, extra: str = "", look: str = "Red") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scene.pov").write_text(SCENE.format(salt=uuid.uuid4().hex, extra=extra))
    (root / "look.inc").write_text(f"#declare Look = {look};\n")
    return root


def render(env: dict[str, str], scene: Path, out: Path, *extra: str) -> dict[str, Any]:
    result = run_cli(
        env,
        "render",
        "scene.pov",
        "+W32",
        "+H24",
        "+KFI1",
        "+KFF8",
        "-o",
        str(out / "video.mp4"),
        "--frames-dir",
        str(out / "frames"),
        "--json",
        *extra,
        cwd=scene,
    )
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    summary["stderr"] = result.stderr
    assert summary["state"] == "done" and summary["units_done"] == 8, summary
    with Cluster.local(start=False) as cluster:
        wait_cache_filled(cluster, summary["job_id"])
    return summary


def wait_cache_filled(cluster: Cluster, job_id: str) -> None:
    """The stitch stores the rendered frames once the video is made, and says
    so on the job: the next render of the scene finds them all."""
    wait_until(
        lambda: cluster.status(job_id).get("cache_filled") is not None,
        30,
        "the job's frames in the frame cache",
    )


def pixels(frames: Path) -> list[bytes]:
    return [decoded_pixels(p) for p in sorted(frames.glob("*.png"))]


@pytest.mark.stack
def test_the_same_scene_rendered_twice_renders_no_frame_the_second_time(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    scene = make_scene(tmp_path / "scene")
    first = render(stack_env, scene, tmp_path / "first")
    assert first["stats"]["frames_cached"] == 0
    assert first["stats"]["render_seconds"]["total"] > 0

    second = render(stack_env, scene, tmp_path / "second")
    assert second["stats"]["frames_cached"] == 8
    assert second["stats"]["render_seconds"]["total"] == 0  # nothing rendered
    assert video_frames(tmp_path / "second" / "video.mp4") == 8
    assert pixels(tmp_path / "second" / "frames") == pixels(tmp_path / "first" / "frames")

    # --no-cache renders every frame again, and stores them.
    forced = render(stack_env, scene, tmp_path / "forced", "--no-cache")
    assert forced["stats"]["frames_cached"] == 0
    assert forced["stats"]["render_seconds"]["total"] > 0


@pytest.mark.stack
def test_changing_a_shared_include_renders_every_frame_again(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    scene = make_scene(tmp_path / "scene")
    render(stack_env, scene, tmp_path / "first")
    (scene / "look.inc").write_text("#declare Look = Blue;\n")
    changed = render(stack_env, scene, tmp_path / "changed")
    assert changed["stats"]["frames_cached"] == 0
    assert pixels(tmp_path / "changed" / "frames") != pixels(tmp_path / "first" / "frames")
    # A different size is a different frame too.
    result = run_cli(
        stack_env, "render", "scene.pov", "+W40", "+H30", "+KFI1", "+KFF8", "--json", cwd=scene
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["frames_cached"] == 0


@pytest.mark.stack
def test_a_scene_that_writes_a_file_is_not_cached(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    writes = '#fopen Log "log.txt" write\n#write (Log, clock, "\\n")\n#fclose Log'
    scene = make_scene(tmp_path / "scene", extra=writes)
    first = render(stack_env, scene, tmp_path / "first")
    warning = [line for line in first["stderr"].splitlines() if "not cached" in line]
    assert warning == [
        "povstorm: warning: frames not cached: scene.pov:8: #fopen ... write writes a file, "
        "so a frame may depend on the frames before it"
    ]
    again = render(stack_env, scene, tmp_path / "again")
    assert again["stats"]["frames_cached"] == 0
    assert again["stats"]["render_seconds"]["total"] > 0


@pytest.mark.stack
def test_a_generated_job_renders_again_only_the_unit_whose_inline_file_changed(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    salt = uuid.uuid4().hex
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "look.inc").write_text("#declare Look = Green;\n")

    def scene(k: int, color: str = "White") -> str:
        return (
            f'#version 3.7;\n#include "colors.inc"\n#include "shared/look.inc"\n'
            f'#declare Salt = "{salt}";\n'
            "camera { location <0, 1, -4> look_at 0 }\nlight_source { <2, 4, -3> color White }\n"
            f"sphere {{ <{k - 1.5}, 0, 0>, 0.5 pigment {{ color Look }} }}\n"
            f"plane {{ y, -1 pigment {{ color {color} }} }}\n"
        )

    def run(changed: int | None) -> dict[int, Any]:
        with Cluster.local(start=False) as cluster:
            job = Job(cluster, shared=shared, name="generated")
            for k in range(4):
                color = "Yellow" if k == changed else "White"
                job.add(WorkUnit(inline={"s.pov": scene(k, color)}, args=["s.pov", "+W32", "+H24"]))
            job_id = job.submit()
            result = job.wait(timeout=120)
            assert result.state == "done", result.summary()
            wait_cache_filled(cluster, job_id)
            return {u: cluster.ledger.unit_record(job_id, u) for u in range(4)}

    first = run(None)
    assert not any(r.get("cached") for r in first.values())
    second = run(2)
    assert [bool(second[u].get("cached")) for u in range(4)] == [True, True, False, True]


@pytest.mark.stack
@pytest.mark.usefixtures("project_topics")
def test_another_povray_version_misses_the_cache(
    clients: Clients, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's POV-Ray version is in every key: a worker with another
    build renders the frame rather than reusing this build's."""
    text = SCENE.format(salt=uuid.uuid4().hex, extra="").encode()
    inputs = {}
    for name, data in {"scene.pov": text, "look.inc": b"#declare Look = Red;\n"}.items():
        digest = hashlib.sha256(data).hexdigest()
        clients.blobs.upload_bytes(input_object(digest), data)
        inputs[name] = digest

    def job() -> tuple[str, str]:
        spec = load_job_spec(
            {
                "job_id": f"t-{uuid.uuid4().hex[:12]}",
                "inputs": inputs,
                "povray": {
                    "args": ["scene.pov", "+W32", "+H24", "+KFI1", "+KFF2"],
                    "frames": {"first": 1, "last": 2},
                },
            }
        )
        assert spec.job_id
        ledger.create_job(spec, spec.job_id)
        ledger.mark_dispatched(spec.job_id)
        outcome = handle_work(
            clients, ledger, WorkMessage(spec.job_id, 0), cache=InputCache(tmp_path / "in")
        )
        assert outcome.status == "rendered", outcome
        return spec.job_id, outcome.detail

    first, detail = job()
    assert detail == "1 rendered"
    key = frame_key(ledger.get_spec(first), 0, povray_version())
    assert key is not None and not clients.blobs.exists(cache_object(key))
    assert store_frames(clients, first) == 1  # what the job's stitch does
    assert clients.blobs.exists(cache_object(key))
    second, detail = job()
    assert detail == "1 from the cache"
    reused = clients.blobs.info(frame_object(second, 0))
    assert reused is not None and reused.metadata["cached"] == key

    monkeypatch.setattr(worker_cache, "povray_version", lambda: "POV-Ray 3.8.0.beta")
    _, detail = job()
    assert detail == "1 rendered"


def test_the_scanner_flags_a_scene_that_writes_a_file(tmp_path: Path) -> None:
    (tmp_path / "a.pov").write_text(
        '#include "b.inc"\n#fopen In "data.txt" read\nsphere { 0, 1 }\n'
    )
    (tmp_path / "b.inc").write_text('// notes\n#fopen Out concat("f", str(clock, 0, 2)) append\n')
    (tmp_path / "data.txt").write_text("1\n")
    found = collect_inputs(parse_invocation(["a.pov"], tmp_path))
    assert found.uncacheable == (
        "b.inc:2: #fopen ... append writes a file, so a frame may depend on the frames before it",
    )
    (tmp_path / "b.inc").write_text("// reads only\n")
    assert collect_inputs(parse_invocation(["a.pov"], tmp_path)).uncacheable == ()


def test_clear_deletes_the_oldest_past_a_size_and_everything_past_an_age() -> None:
    blobs = MemoryBlobStore()
    keys = [f"{k:064x}" for k in range(4)]
    for age, key in zip((40, 3, 2, 1), keys, strict=True):
        blobs.upload_bytes(cache_object(key), b"x" * 100)
        blobs.objects[cache_object(key)].updated = 1_000_000 - age * frame_cache.DAY
    blobs.upload_bytes("frames/j-1/000000.png", b"not the cache")
    summary = frame_cache.summary(frame_cache.entries(blobs))
    assert (summary.entries, summary.bytes) == (4, 400)

    removed = frame_cache.clear(blobs, older_than_days=30, max_bytes=150, now=1_000_000)
    assert removed == frame_cache.Removed(3, 300)  # 40 days old, then the oldest of the rest
    assert [b.name for b in frame_cache.entries(blobs)] == [cache_object(keys[3])]
    assert frame_cache.clear(blobs) == frame_cache.Removed(1, 100)
    assert blobs.exists("frames/j-1/000000.png")


def test_the_reconciler_trims_at_most_once_an_hour() -> None:
    blobs = MemoryBlobStore()
    blobs.upload_bytes(cache_object("a" * 64), b"x" * 100)
    assert frame_cache.trim_if_due(blobs, max_days=30, max_bytes=50) == frame_cache.Removed(1, 100)
    blobs.upload_bytes(cache_object("b" * 64), b"x" * 100)
    assert frame_cache.trim_if_due(blobs, max_days=30, max_bytes=50) is None  # not due yet
    later = blobs.info(frame_cache.TRIM_MARKER)
    assert later is not None
    due = frame_cache.trim_if_due(
        blobs, max_days=30, max_bytes=50, now=later.updated + frame_cache.TRIM_EVERY_SECONDS
    )
    assert due == frame_cache.Removed(1, 100)


@pytest.mark.stack
def test_cache_ls_and_clear_show_and_delete_what_the_cache_holds(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    scene = make_scene(tmp_path / "scene")
    render(stack_env, scene, tmp_path / "first")
    listed = run_cli(stack_env, "cache", "ls", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["entries"] >= 8
    cleared = run_cli(stack_env, "cache", "clear", cwd=tmp_path)
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed "), cleared
    assert (
        json.loads(run_cli(stack_env, "cache", "ls", "--json", cwd=tmp_path).stdout)["entries"] == 0
    )
    again = render(stack_env, scene, tmp_path / "again")
    assert again["stats"]["frames_cached"] == 0
    bad = run_cli(stack_env, "cache", "clear", "--older-than", "-3", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad
