"""The render worker on the real emulators with real POV-Ray: a unit rendered
from its manifest (inputs cached per instance), POV-Ray's failures reported on
the failures topic, the timeout, refused paths, the push handler through
functions-framework's test client and the pull worker as a process."""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import unit_doc
from google.cloud import pubsub_v1

from povstorm.cloud.clients import Clients
from povstorm.core.errors import SpecError
from povstorm.core.model import FailureReport, WorkMessage
from povstorm.core.names import Namespace
from povstorm.core.naming import frame_object, input_object, log_object
from povstorm.core.schemas import encode_message, load_failure_report, load_job_spec
from povstorm.core.settings import Settings
from povstorm.core.spec import JobSpec, UnitSpec
from povstorm.ledger.ledger import Ledger
from povstorm.povray import error_line, parse_stats
from povstorm.worker.inputs import InputCache, materialise
from povstorm.worker.unit import MAX_DELIVERIES, handle_work

# Units publish failure reports and the pull worker pulls work: the test's
# project needs the namespace's topics.
pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("project_topics")]

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "render"
SIZE = ["+W64", "+H48"]


@pytest.fixture
def cache(tmp_path: Path) -> InputCache:
    return InputCache(tmp_path / "cache")


@pytest.fixture
def failures(
    project_topics: Settings, clients: Clients
) -> Iterator[Callable[..., list[FailureReport]]]:
    """A subscription of our own on the failures topic, and a way to read it."""
    settings = clients.settings
    ns = Namespace(settings.namespace)
    subscriber = pubsub_v1.SubscriberClient()
    name = subscriber.subscription_path(settings.project, "test-failures")
    subscriber.create_subscription(
        request={
            "name": name,
            "topic": f"projects/{settings.project}/topics/{ns.topic('failures')}",
        }
    )

    def read(expect: int = 1, wait: float = 20.0) -> list[FailureReport]:
        got: list[FailureReport] = []
        deadline = time.monotonic() + wait
        while len(got) < expect and time.monotonic() < deadline:
            response = subscriber.pull(
                request={"subscription": name, "max_messages": 10}, timeout=5
            )
            if response.received_messages:
                subscriber.acknowledge(
                    request={
                        "subscription": name,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
            got += [load_failure_report(m.message.data) for m in response.received_messages]
            if len(got) < expect:
                time.sleep(0.2)
        return got

    yield read
    subscriber.close()


def job_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def upload(clients: Clients, files: dict[str, bytes]) -> dict[str, str]:
    """Content-addressed inputs, as the client uploads them."""
    out = {}
    for rel, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        clients.blobs.upload_bytes(input_object(sha), data)
        out[rel] = sha
    return out


@dataclass(frozen=True)
class Submitted:
    """A job in the ledger: its spec and its id (which a spec may lack)."""

    spec: JobSpec
    job_id: str


def submit(ledger: Ledger, body: dict[str, Any]) -> Submitted:
    spec = load_job_spec({"job_id": job_id(), **body})
    assert spec.job_id
    ledger.create_job(spec, spec.job_id)
    ledger.mark_dispatched(spec.job_id)
    return Submitted(spec, spec.job_id)


def leftovers(spec: Submitted) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"povstorm-{spec.job_id}-*"))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def scene_job(clients: Clients, ledger: Ledger, frames: int = 2, **extra: Any) -> Submitted:
    """The scene form: the .pov and its include as inputs in the working directory."""
    inputs = upload(
        clients,
        {
            "ball.pov": (DATA / "ball.pov").read_bytes(),
            "ball.inc": (DATA / "ball.inc").read_bytes(),
        },
    )
    return submit(
        ledger,
        {
            "inputs": inputs,
            "povray": {
                "args": ["ball.pov", *SIZE, "+KFI1", f"+KFF{frames}"],
                "frames": {"first": 1, "last": frames},
            },
            **extra,
        },
    )


def units_job(ledger: Ledger, inputs: dict[str, str], scenes: list[str], **extra: Any) -> Submitted:
    """Generated units: each an inline scene, the include shared under ./shared."""
    return submit(
        ledger,
        {
            "inputs": inputs,
            "inputs_dir": "shared",
            "units": [{"args": ["scene.pov", *SIZE], "inline": {"scene.pov": s}} for s in scenes],
            **extra,
        },
    )


def work(spec: Submitted, unit: int, attempt: int = 1) -> bytes:
    return encode_message(WorkMessage(spec.job_id, unit, attempt))


def test_units_render_from_their_manifest_and_inputs_download_once(
    clients: Clients, ledger: Ledger, cache: InputCache
) -> None:
    inputs = upload(clients, {"ball.inc": (DATA / "ball.inc").read_bytes()})
    scene = (DATA / "ball.pov").read_text()
    spec = units_job(ledger, inputs, [scene.replace("clock", str(c)) for c in (0.25, 0.75)])

    outcomes = [handle_work(clients, ledger, work(spec, u), cache=cache) for u in (0, 1)]

    assert [o.status for o in outcomes] == ["rendered", "rendered"], outcomes
    assert cache.downloads == 1  # the second unit found ball.inc in the cache
    images = []
    for u in (0, 1):
        info = clients.blobs.info(frame_object(spec.job_id, u))
        assert info is not None
        md = info.metadata
        assert md["worker"] == "test-worker" and md["attempt"] == "1" and md["frame"] == ""
        assert float(md["render_seconds"]) > 0 and int(md["peak_memory_bytes"]) > 0
        assert float(md["cpu_seconds"]) >= 0
        data = clients.blobs.read_bytes(frame_object(spec.job_id, u))
        assert png_size(data) == (64, 48)
        images.append(data)
        logged = clients.blobs.read_bytes(log_object(spec.job_id, u, 1)).decode()
        assert "POV-Ray finished" in logged
    assert images[0] != images[1]  # the ball moved: each unit rendered its own scene
    assert unit_doc(ledger, spec.job_id, 0)["state"] == "rendering"  # done comes from GCS
    assert leftovers(spec) == []  # the working directories are gone


def test_a_scene_unit_renders_its_own_frame_with_frame_metadata(
    clients: Clients, ledger: Ledger, cache: InputCache
) -> None:
    spec = scene_job(clients, ledger, frames=3)
    outcome = handle_work(clients, ledger, work(spec, 2), cache=cache)
    assert outcome.status == "rendered", outcome
    assert cache.downloads == 2
    info = clients.blobs.info(frame_object(spec.job_id, 2))
    assert info is not None and info.metadata["frame"] == "3"
    # Another unit on the same instance: both inputs come from the cache.
    assert handle_work(clients, ledger, work(spec, 0), cache=cache).status == "rendered"
    assert cache.downloads == 2


def test_a_parse_error_is_reported_with_povrays_error_line(
    clients: Clients,
    ledger: Ledger,
    cache: InputCache,
    failures: Callable[..., list[FailureReport]],
) -> None:
    spec = units_job(ledger, {}, [(DATA / "bad.pov").read_text()])
    outcome = handle_work(clients, ledger, work(spec, 0), cache=cache)
    assert outcome.status == "failed"
    (report,) = failures()
    assert (report.job_id, report.unit, report.attempt) == (spec.job_id, 0, 1)
    assert report.error == (
        "File 'scene.pov' line 5: Parse Error: No matching } in 'pigment', "
        "undeclared identifier 'NoSuchColour' found instead"
    )
    assert "\n" not in report.error and "Render failed" in report.log_tail
    assert len(report.log_tail.splitlines()) <= 50
    assert report.worker == "test-worker" and report.final is False
    assert "Parse Error" in clients.blobs.read_bytes(log_object(spec.job_id, 0, 1)).decode()
    assert clients.blobs.info(frame_object(spec.job_id, 0)) is None


def test_a_render_past_its_timeout_is_killed_and_reported(
    clients: Clients,
    ledger: Ledger,
    cache: InputCache,
    failures: Callable[..., list[FailureReport]],
) -> None:
    marker = f"forever-{uuid.uuid4().hex[:8]}"
    spec = submit(
        ledger,
        {
            "units": [
                {
                    "args": [f"{marker}.pov", *SIZE],
                    "inline": {f"{marker}.pov": (DATA / "forever.pov").read_text()},
                }
            ],
            "timeout_seconds": 5,
        },
    )
    started = time.monotonic()
    outcome = handle_work(clients, ledger, work(spec, 0), cache=cache)
    assert outcome.status == "failed" and time.monotonic() - started < 15
    (report,) = failures()
    assert report.error == "POV-Ray timed out after 5 s and was killed"
    assert clients.blobs.info(log_object(spec.job_id, 0, 1)) is not None
    # The whole process group is gone: no POV-Ray left parsing the scene.
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and marker in _cmdline(p)]
    assert left == [] and leftovers(spec) == []


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_path_traversal_in_an_inline_name_is_refused(
    clients: Clients,
    ledger: Ledger,
    cache: InputCache,
    failures: Callable[..., list[FailureReport]],
    tmp_path: Path,
) -> None:
    spec = units_job(ledger, {}, ["// fine"])
    # The schema refuses such a name at submit; the worker checks again, since
    # it reads the unit from the ledger. Plant one there.
    ledger.unit_ref(spec.job_id, 0).update(
        {"spec": {"args": ["scene.pov"], "inputs": {}, "inline": {"../escaped.pov": "//"}}}
    )
    outcome = handle_work(clients, ledger, work(spec, 0), cache=cache)
    assert outcome.status == "failed"
    (report,) = failures()
    assert "'../escaped.pov' leaves its directory" in report.error and report.final is True

    workdir = tmp_path / "work"
    workdir.mkdir()
    for bad in ("../x.pov", "/tmp/x.pov", "a/../../x.pov", "shared/./x"):
        with pytest.raises(SpecError):
            materialise(clients, cache, spec.spec, UnitSpec(inline={bad: "//"}), workdir)
    assert list(tmp_path.glob("*.pov")) == [] and list(workdir.iterdir()) == []


def test_poison_unknown_and_settled_messages_are_acknowledged(
    clients: Clients, ledger: Ledger, cache: InputCache
) -> None:
    assert handle_work(clients, ledger, b"not json", cache=cache).status == "poison"
    assert handle_work(clients, ledger, b'{"unit": 0}', cache=cache).status == "poison"
    unknown = encode_message(WorkMessage("no-such-job", 0, 1))
    assert handle_work(clients, ledger, unknown, cache=cache).status == "skipped"
    spec = units_job(ledger, {}, ["// fine"])
    ledger.cancel(spec.job_id)
    assert handle_work(clients, ledger, work(spec, 0), cache=cache).status == "skipped"
    assert clients.blobs.info(log_object(spec.job_id, 0, 1)) is None


def test_a_unit_that_keeps_losing_its_worker_is_reported_not_rendered(
    clients: Clients,
    ledger: Ledger,
    cache: InputCache,
    failures: Callable[..., list[FailureReport]],
) -> None:
    spec = units_job(ledger, {}, [(DATA / "bad.pov").read_text()])
    for _ in range(MAX_DELIVERIES):  # three workers died holding attempt 1
        assert ledger.start_unit(spec.job_id, 0, 1, "lost") is not None
    outcome = handle_work(clients, ledger, work(spec, 0), cache=cache)
    assert outcome.status == "failed"
    (report,) = failures()
    assert report.error == f"worker lost {MAX_DELIVERIES} times while rendering this unit"
    assert clients.blobs.info(log_object(spec.job_id, 0, 1)) is None  # never rendered


def test_a_render_task_renders_what_it_pulls_and_ends_once_idle(
    clients: Clients, ledger: Ledger, tmp_path: Path
) -> None:
    """``python -m povstorm.shells.render_task`` as Cloud Run starts it: its
    execution and index name it, it pulls and renders any chunk, and it exits
    0 by itself once a pull has found no work for the idle time."""
    inputs = upload(clients, {"ball.inc": (DATA / "ball.inc").read_bytes()})
    spec = units_job(ledger, inputs, [(DATA / "ball.pov").read_text()])
    env = {
        **os.environ,
        **clients.settings.with_overrides(task_idle=3).to_env(),
        "POVSTORM_CACHE_DIR": str(tmp_path / "cache"),
        "CLOUD_RUN_EXECUTION": "render-test",
        "CLOUD_RUN_TASK_INDEX": "2",
        "CLOUD_RUN_TASK_ATTEMPT": "1",
        "PYTHONPATH": str(REPO),
    }
    clients.publisher.publish("work", b"poison, acknowledged and logged")
    clients.publisher.publish("work", work(spec, 0))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "povstorm.shells.render_task"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        timeout=90,
        check=False,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert f"{spec.job_id} unit 0 attempt 1 rendered" in proc.stderr
    assert "poison" in proc.stderr and "Traceback" not in proc.stderr
    assert "task render-test/2.1 ends: no work for 3s" in proc.stderr
    assert took >= 3
    frame = clients.blobs.info(frame_object(spec.job_id, 0))
    assert frame is not None and frame.metadata["worker"] == "render-test/2.1"
    assert "POV-Ray finished" in clients.blobs.read_bytes(log_object(spec.job_id, 0, 1)).decode()


def test_a_render_task_stops_on_sigterm_between_chunks(clients: Clients, tmp_path: Path) -> None:
    env = {
        **os.environ,
        **clients.settings.to_env(),
        "POVSTORM_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "povstorm.shells.render_task"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(3)  # pulling, finding nothing (the idle time is 10 s)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping after the current chunk" in err and "ends: stopped" in err


# --- POV-Ray's output, no cloud (golden text as POV-Ray 3.7 prints it) ----------

WRAPPED = """\
==== [Parsing...] ==========================================================
File 'scene.pov' line 9: Possible Parse Error: Suspicious identifier found in
 vector.
File 'scene.pov' line 12: Parse Error: Expected 'object or directive', undeclared
 identifier 'Bal' found instead
Fatal error in parser: Cannot parse input.
Render failed
"""
STATS = """\
  Parse Time:       0 hours  0 minutes  1 seconds (1.250 seconds)
              using 1 thread(s) with 1.200 CPU-seconds total
  Bounding Time:    0 hours  0 minutes  0 seconds (0.010 seconds)
  Photon Time:      No photons
  Radiosity Time:   No radiosity
  Trace Time:       0 hours  1 minutes  2 seconds (62.500 seconds)
Peak memory used:         12,345,678 bytes
"""


def test_povrays_error_is_one_line_and_warnings_are_not_errors() -> None:
    assert error_line(WRAPPED) == (
        "File 'scene.pov' line 12: Parse Error: Expected 'object or directive', "
        "undeclared identifier 'Bal' found instead"
    )
    bad_option = "povray: cannot open the user configuration file /x/povray.conf\n"
    assert error_line(
        bad_option + "Problem with option setting\nFailed to parse command-line option\n"
    ) == ("Failed to parse command-line option")


def test_statistics_are_read_from_povrays_output() -> None:
    assert parse_stats(STATS) == (pytest.approx(63.76), 12_345_678)
    assert parse_stats("POV-Ray finished\n") == (None, None)
