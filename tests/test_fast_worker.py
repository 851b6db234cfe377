"""The render worker's domain code without the stack: the input cache and
materialise against a MemoryBlobStore, and handle_work rendering a tiny scene
with real POV-Ray, its outputs landing in the fakes (tests/fakes.py). The
same paths on the emulators are in test_render.py."""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakes import MemoryBlobStore, RecordingPublisher, as_ledger, fake_clients

from povstorm.core.errors import SpecError
from povstorm.core.model import WorkMessage
from povstorm.core.naming import frame_object, input_object, log_object
from povstorm.core.schemas import load_job_spec
from povstorm.core.spec import JobSpec, UnitSpec
from povstorm.ledger.ledger import UnitTicket
from povstorm.povray import process
from povstorm.worker import chunk
from povstorm.worker.inputs import InputCache, materialise
from povstorm.worker.unit import MAX_DELIVERIES, RenderOutcome, handle_work

DATA = Path(__file__).resolve().parent / "data" / "render"
SIZE = ["+W32", "+H24"]


def put_input(blobs: MemoryBlobStore, data: bytes) -> str:
    """Upload content-addressed, as the client does; its sha256."""
    sha = hashlib.sha256(data).hexdigest()
    blobs.upload_bytes(input_object(sha), data)
    return sha


@pytest.fixture
def blobs() -> MemoryBlobStore:
    return MemoryBlobStore()


@pytest.fixture
def cache(tmp_path: Path) -> InputCache:
    return InputCache(tmp_path / "cache")


# --- the input cache -----------------------------------------------------------


def test_an_input_is_downloaded_once_per_cache_directory(
    blobs: MemoryBlobStore, cache: InputCache, tmp_path: Path
) -> None:
    sha = put_input(blobs, b"#declare R = 1;\n")
    first = cache.path(blobs, sha)
    assert cache.path(blobs, sha) == first and first.read_bytes() == b"#declare R = 1;\n"
    assert cache.downloads == 1 and blobs.downloads == [input_object(sha)]
    # Another worker sharing the directory verifies the file instead of fetching it.
    neighbour = InputCache(tmp_path / "cache")
    assert neighbour.path(blobs, sha) == first
    assert neighbour.downloads == 0 and len(blobs.downloads) == 1


def test_a_placed_input_written_through_its_hard_link_is_fetched_again(
    blobs: MemoryBlobStore, cache: InputCache, tmp_path: Path
) -> None:
    sha = put_input(blobs, b"original\n")
    dest = tmp_path / "work" / "ball.inc"
    cache.place(blobs, sha, dest)
    cached = cache.root / sha
    assert dest.stat().st_ino == cached.stat().st_ino  # a hard link, not a copy
    # A scene that writes to its input writes into the cache through the link.
    dest.chmod(0o644)
    dest.write_bytes(b"changed by a scene\n")
    assert cached.read_bytes() == b"changed by a scene\n"

    again = tmp_path / "work2" / "ball.inc"
    cache.place(blobs, sha, again)
    assert again.read_bytes() == b"original\n" and cache.downloads == 2
    assert again.stat().st_ino == (cache.root / sha).stat().st_ino


def test_a_corrupt_or_missing_input_is_refused_and_leaves_nothing(
    blobs: MemoryBlobStore, cache: InputCache
) -> None:
    sha = hashlib.sha256(b"what the client meant").hexdigest()
    blobs.upload_bytes(input_object(sha), b"what the bucket holds")
    with pytest.raises(SpecError, match=r"has digest \w+\.\.\., not its name"):
        cache.path(blobs, sha)
    assert list(cache.root.iterdir()) == []  # no partial or temporary file
    with pytest.raises(SpecError, match="is not in the bucket"):
        cache.path(blobs, "0" * 64)


@pytest.mark.parametrize("bad", ["../x.pov", "/tmp/x.pov", "a/../../x.pov", "shared/./x"])
def test_materialise_refuses_a_bad_inline_name_before_writing_anything(
    blobs: MemoryBlobStore, cache: InputCache, tmp_path: Path, bad: str
) -> None:
    sha = put_input(blobs, b"// shared\n")
    spec = load_job_spec(
        {"inputs": {"shared.inc": sha}, "units": [{"args": ["scene.pov"], "inline": {"s": ""}}]}
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(SpecError):
        materialise(fake_clients(blobs=blobs), cache, spec, UnitSpec(inline={bad: "//"}), workdir)
    assert list(workdir.iterdir()) == [] and blobs.downloads == []
    assert list(tmp_path.rglob("*.pov")) == []


# --- handle_work -------------------------------------------------------------------


@dataclass
class OneCallLedger:
    """The one ledger call handle_work makes: start_chunk hands out a ticket."""

    spec: JobSpec
    deliveries: int = 1
    started: list[tuple[str, int, int, str]] = field(default_factory=list)

    def start_chunk(
        self, job_id: str, unit: int, count: int, attempt: int, worker: str, **_: Any
    ) -> UnitTicket:
        self.started.append((job_id, unit, attempt, worker))
        return UnitTicket(
            job_id,
            unit,
            attempt,
            self.deliveries,
            self.spec,
            self.spec.unit_spec(unit),
            units=tuple(range(unit, unit + count)),
        )


def render(
    spec_body: dict[str, Any],
    unit: int,
    blobs: MemoryBlobStore,
    cache: InputCache,
    count: int = 1,
    **kw: Any,
) -> tuple[RenderOutcome, RecordingPublisher, OneCallLedger]:
    publisher = RecordingPublisher()
    ledger = OneCallLedger(load_job_spec(spec_body), **kw)
    clients = fake_clients(blobs=blobs, publisher=publisher)
    message = WorkMessage("fast-job", unit, 1, count)
    outcome = handle_work(clients, as_ledger(ledger), message, cache=cache)
    return outcome, publisher, ledger


def ball_animation(blobs: MemoryBlobStore) -> dict[str, Any]:
    """The spec body of a 3-frame animation of the ball scene, its inputs uploaded."""
    inputs = {
        name: put_input(blobs, (DATA / name).read_bytes()) for name in ("ball.pov", "ball.inc")
    }
    return {
        "inputs": inputs,
        "povray": {
            "args": ["ball.pov", *SIZE, "+KFI1", "+KFF3"],
            "frames": {"first": 1, "last": 3},
        },
    }


def test_a_scene_frame_is_rendered_and_uploaded_with_its_stats(
    blobs: MemoryBlobStore, cache: InputCache
) -> None:
    body = ball_animation(blobs)
    outcome, publisher, ledger = render(body, 1, blobs, cache)

    assert outcome.status == "rendered", outcome
    assert ledger.started == [("fast-job", 1, 1, "fast-worker")]
    assert outcome.frames == (frame_object("fast-job", 1),)
    info = blobs.info(frame_object("fast-job", 1))
    assert info is not None
    md = info.metadata
    assert (md["worker"], md["attempt"], md["frame"]) == ("fast-worker", "1", "2")
    assert float(md["render_seconds"]) > 0 and int(md["peak_memory_bytes"]) > 0
    assert float(md["trace_seconds"]) >= 0
    assert blobs.objects[frame_object("fast-job", 1)].content_type == "image/png"
    assert blobs.read_bytes(frame_object("fast-job", 1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert "POV-Ray finished" in blobs.read_bytes(log_object("fast-job", 1, 1)).decode()
    assert publisher.messages == [] and cache.downloads == 2


def test_frames_found_after_povrays_exit_share_its_time(
    blobs: MemoryBlobStore, cache: InputCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames POV-Ray wrote before the worker's first look are found only
    after its exit (tiny frames, here a first look past the end): they share
    its time and CPU, not each take all of it, and keep its peak memory."""
    monkeypatch.setattr(chunk, "POLL_SECONDS", 60.0)  # the exit wakes the worker first
    body = ball_animation(blobs)
    body["povray"]["args"] = ["ball.pov", "+W320", "+H240", "+KFI1", "+KFF3"]
    began = time.monotonic()
    outcome, _, _ = render(body, 0, blobs, cache, count=3)
    wall = time.monotonic() - began
    assert outcome.status == "rendered" and len(outcome.frames) == 3, outcome
    metadata = [blobs.info(name).metadata for name in outcome.frames]  # type: ignore[union-attr]
    assert sum(float(md["render_seconds"]) for md in metadata) <= wall
    assert all(int(md["peak_memory_bytes"]) > 0 for md in metadata)


def test_a_chunks_last_frame_and_segment_go_up_before_povray_exits(
    blobs: MemoryBlobStore, cache: InputCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POV-Ray takes some 0.3 s to exit after its last frame, CPU idle; here a
    wrapper (run unconfined) makes it 3 s. The segment and the held last frame
    go up as soon as the frame and its figures are written, and the frame's
    log once more, whole, when POV-Ray has exited."""
    slow_exit = tmp_path / "povray-slow-exit"
    povray = shutil.which("povray")
    slow_exit.write_text(f'#!/bin/sh\n{povray} "$@"\nstatus=$?\nsleep 3\nexit $status\n')
    slow_exit.chmod(0o755)
    monkeypatch.setattr(process, "POVRAY", str(slow_exit))
    # The confinement lets nothing but POV-Ray run: the wrapper runs without.
    monkeypatch.setattr(process, "confined", lambda command, read, write: command)
    finished: list[float] = []
    finish = process.PovrayProcess.finish

    def timed_finish(self: process.PovrayProcess) -> process.PovrayRun:
        finished.append(time.monotonic())
        return finish(self)

    monkeypatch.setattr(process.PovrayProcess, "finish", timed_finish)
    uploaded: dict[str, float] = {}
    upload_file = blobs.upload_file

    def timed_upload(name: str, *args: Any, **kwargs: Any) -> Any:
        result = upload_file(name, *args, **kwargs)
        uploaded[name] = time.monotonic()
        return result

    monkeypatch.setattr(blobs, "upload_file", timed_upload)
    body = ball_animation(blobs)
    outcome, _, _ = render(body, 0, blobs, cache, count=3)

    assert outcome.status == "rendered", outcome
    (segment,) = [name for name in uploaded if name.startswith("segments/")]
    last = frame_object("fast-job", 2)
    assert uploaded[segment] <= uploaded[last] < finished[0] - 2.0
    log = blobs.read_bytes(log_object("fast-job", 2, 1)).decode()
    assert "Rendering frame 3 of 3" in log and log.rstrip().endswith("POV-Ray finished")


def test_a_scene_error_publishes_one_failure_report_with_povrays_error_line(
    blobs: MemoryBlobStore, cache: InputCache
) -> None:
    body = {
        "units": [
            {"args": ["scene.pov", *SIZE], "inline": {"scene.pov": (DATA / "bad.pov").read_text()}}
        ]
    }
    outcome, publisher, _ = render(body, 0, blobs, cache)

    assert outcome.status == "failed"
    (report,) = publisher.payloads("failures")
    assert (report["job_id"], report["unit"], report["attempt"]) == ("fast-job", 0, 1)
    assert report["error"] == (
        "File 'scene.pov' line 5: Parse Error: No matching } in 'pigment', "
        "undeclared identifier 'NoSuchColour' found instead"
    )
    assert report["final"] is False and report["worker"] == "fast-worker"
    assert "Render failed" in report["log_tail"]
    assert "Parse Error" in blobs.read_bytes(log_object("fast-job", 0, 1)).decode()
    assert blobs.info(frame_object("fast-job", 0)) is None


def test_a_unit_that_keeps_losing_its_worker_is_reported_without_rendering(
    blobs: MemoryBlobStore, cache: InputCache
) -> None:
    body = {"units": [{"args": ["scene.pov"], "inline": {"scene.pov": "// never parsed"}}]}
    outcome, publisher, _ = render(body, 0, blobs, cache, deliveries=MAX_DELIVERIES + 1)
    assert outcome.status == "failed"
    (report,) = publisher.payloads("failures")
    assert report["error"] == f"worker lost {MAX_DELIVERIES} times while rendering this unit"
    assert blobs.objects == {}  # no log: POV-Ray never ran
