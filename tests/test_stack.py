"""The local stack on the real emulators: the wiring that carries a GCS
notification to a function, the ``povstorm local`` commands as a user runs
them, and the supervisor and reconciler processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import live_group_members, live_pids, recorded_processes
from fixtures.common import wait_until
from google.cloud import pubsub_v1

from povstorm.cloud.blobs import GcsBlobStore, storage_client
from povstorm.cloud.launchers import TASKS_SOCKET, LocalRenderLauncher, tasks_request
from povstorm.core.errors import TransientError
from povstorm.core.names import Namespace
from povstorm.core.naming import frame_object
from povstorm.core.schemas import load_frame_event, pubsub_data
from povstorm.core.settings import Settings, local_logs, local_run
from povstorm_local.net import answers, free_port
from povstorm_local.resources import WORK_ACK_DEADLINE, push_endpoint
from povstorm_local.stack import LocalStack
from povstorm_local.state import StackState

pytestmark = pytest.mark.stack

FIXTURES = Path(__file__).parent / "fixtures"
POVSTORM = str(Path(sys.executable).parent / "povstorm")


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A fresh user's environment: no emulator variables, nothing of the test's."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(home)),
        "LANG": "C.UTF-8",
        "POVSTORM_HOME": str(home),
        **extra,
    }


def povstorm(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [POVSTORM, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def processes_of_home(home: Path) -> list[int]:
    """Every process started for a stack in ``home`` (they all carry its POVSTORM_HOME)."""
    needle = f"POVSTORM_HOME={home}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return sorted(live_pids(set(found)))


@pytest.fixture
def echo_function(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """functions-framework serving tests/fixtures/echo_function.py: (url, events file)."""
    out = tmp_path / "events.jsonl"
    port = free_port()
    with open(tmp_path / "echo.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "functions_framework",
                "--source", str(FIXTURES / "echo_function.py"), "--target", "echo",
                "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port),
            ],
            env={**os.environ, "ECHO_OUT": str(out)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url + "/robots.txt"), 30, "the echo function")
        yield url, out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_a_finalized_object_reaches_a_function_as_a_cloud_event_through_push(
    infra_stack: StackState, echo_function: tuple[str, Path]
) -> None:
    url, events = echo_function
    project, topic = infra_stack.project, Namespace(infra_stack.namespace).topic("frame_events")
    subscriber = pubsub_v1.SubscriberClient()
    subscription = f"projects/{project}/subscriptions/test-echo-{uuid.uuid4().hex[:8]}"
    subscriber.create_subscription(
        request={
            "name": subscription,
            "topic": f"projects/{project}/topics/{topic}",
            "push_config": {"push_endpoint": push_endpoint(url, project, topic)},
        }
    )
    try:
        blobs = GcsBlobStore(storage_client(project), infra_stack.bucket)
        # As terraform's notification: frames/ only (a log, a segment: no event).
        other = f"logs/echo-{uuid.uuid4().hex[:8]}/000000/attempt-1.log"
        blobs.upload_bytes(other, b"not a frame", content_type="text/plain")
        name = f"frames/echo-{uuid.uuid4().hex[:8]}/000000.png"
        generation = blobs.upload_bytes(
            name, b"hello", content_type="text/plain", metadata={"render_seconds": "1.5"}
        )

        def arrived(object_id: str) -> dict | None:
            lines = events.read_text().splitlines() if events.exists() else []
            for record in map(json.loads, lines):
                if record["data"]["message"]["attributes"].get("objectId") == object_id:
                    return record
            return None

        record = wait_until(lambda: arrived(name), 60, f"the finalize event of {name}")
        assert arrived(other) is None
    finally:
        subscriber.delete_subscription(subscription=subscription)

    assert record["attributes"]["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert (
        record["attributes"]["source"]
        == f"//pubsub.googleapis.com/projects/{project}/topics/{topic}"
    )
    data, attributes = pubsub_data(record["data"])
    assert attributes["eventType"] == "OBJECT_FINALIZE"
    assert attributes["bucketId"] == infra_stack.bucket
    assert attributes["objectId"] == name
    assert int(attributes["objectGeneration"]) == generation
    assert attributes["payloadFormat"] == "JSON_API_V1"
    event = load_frame_event(data, attributes)
    assert event is not None
    assert (event.bucket, event.name, event.generation) == (infra_stack.bucket, name, generation)
    assert event.metadata == {"render_seconds": "1.5"}
    assert event.size == 5


def test_the_work_subscription_dead_letters_after_the_delivery_limit(
    infra_stack: StackState,
) -> None:
    ns = Namespace(infra_stack.namespace)
    subscriber = pubsub_v1.SubscriberClient()
    work = subscriber.get_subscription(
        subscription=f"projects/{infra_stack.project}/subscriptions/{ns.subscription('work')}"
    )
    assert not work.push_config.push_endpoint
    assert work.ack_deadline_seconds == WORK_ACK_DEADLINE
    assert work.dead_letter_policy.dead_letter_topic == (
        f"projects/{infra_stack.project}/topics/{ns.topic('work_dead_letter')}"
    )
    assert work.dead_letter_policy.max_delivery_attempts == 5


def test_starting_twice_returns_the_running_stack(infra_stack: StackState) -> None:
    stack = LocalStack(Path(infra_stack.home))
    started = time.monotonic()
    again = stack.up(farm=False)
    assert time.monotonic() - started < 5
    assert {n: c.pid for n, c in again.components.items()} == {
        n: c.pid
        for n, c in stack.read_state().components.items()  # type: ignore[union-attr]
    }
    assert infra_stack.components.keys() <= again.components.keys()
    assert all(c.pid == again.components[n].pid for n, c in infra_stack.components.items())
    assert stack.healthy(again)
    assert stack.load() == again


def test_the_farm_is_wired_a_frame_event_reaches_frame_finalized(stack: StackState) -> None:
    statuses = {s.name: s for s in LocalStack(Path(stack.home)).status()}
    assert list(statuses) == [
        "firestore", "pubsub", "gcs", "submit", "frame_finalized", "frame_failed",
        "job_event", "tasks", "reconciler", "stitcher",
    ]  # fmt: skip
    assert [n for n, s in statuses.items() if not s.healthy] == []
    assert "/2 tasks running" in statuses["tasks"].detail
    assert stack.submit_url == stack.components["submit"].url
    assert stack.settings().submit_url == stack.submit_url
    # A frame of a job the ledger does not know: the function acknowledges it
    # and logs the job id, which proves GCS -> Pub/Sub -> push -> function.
    job_id = f"nojob-{uuid.uuid4().hex[:8]}"
    GcsBlobStore(storage_client(stack.project), stack.bucket).upload_bytes(
        frame_object(job_id, 1), b"png", content_type="image/png"
    )
    log = Path(stack.components["frame_finalized"].log)
    wait_until(lambda: job_id in log.read_text(), 60, "frame_finalized to log the event")


def test_cli_up_status_down_from_a_fresh_environment_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = user_env(home)
    up = povstorm(env, "local", "up", "--infra-only")
    try:
        assert up.returncode == 0, up.stderr
        state = LocalStack(home).read_state()
        assert state is not None and state.ready
        assert list(state.components) == ["firestore", "pubsub", "gcs"]
        # gcloud's wrappers leave the emulators to java children: recorded too.
        for name in ("firestore", "pubsub"):
            members = state.components[name].members
            assert any(b"java" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in members), (
                name
            )

        status = povstorm(env, "local", "status", "--json")
        assert status.returncode == 0, status.stderr
        rows = json.loads(status.stdout)
        assert {r["name"]: r["healthy"] for r in rows} == {
            "firestore": True,
            "pubsub": True,
            "gcs": True,
        }
        assert all(r["address"].startswith("127.0.0.1:") for r in rows)

        again = povstorm(env, "local", "up", "--infra-only")
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        assert LocalStack(home).read_state() == state

        exports = povstorm(env, "local", "env")
        assert f"export PUBSUB_EMULATOR_HOST={state.components['pubsub'].address}" in exports.stdout
    finally:
        down = povstorm(env, "local", "down")
    assert down.returncode == 0, down.stderr
    assert not (home / "local" / "stack.json").exists()
    pids, pgids = recorded_processes(state)
    assert live_pids(pids) == set()
    assert live_group_members(pgids) == set()
    assert processes_of_home(home) == []
    status = povstorm(env, "local", "status")
    assert status.returncode == 1
    assert status.stderr.startswith("povstorm: error: no local stack")


def test_a_busy_configured_port_is_a_one_line_error_and_starts_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = povstorm(user_env(home), "local", "up", "--infra-only", "--port", f"pubsub={port}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"povstorm: error: port {port} for pubsub is already in use")
    assert not (home / "local" / "stack.json").exists()
    assert processes_of_home(home) == []


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (
            "gcloud",
            "gcloud not found: install the Google Cloud CLI (apt-get install google-cloud-cli)",
        ),
        (
            "java",
            "java not found: install a Java runtime for the gcloud emulators (apt-get install",
        ),
        (
            "firestore",
            "the Firestore emulator is not installed: apt-get install google-cloud-cli-firestore-emulator",
        ),
    ],
)
def test_a_missing_prerequisite_is_a_one_line_error_saying_what_to_install(
    tmp_path: Path, missing: str, message: str
) -> None:
    # A PATH with only what the case leaves: an SDK without components is a
    # bare <root>/bin/gcloud beside an empty <root>/platform.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if missing == "java":
        (bin_dir / "gcloud").symlink_to(shutil.which("gcloud"))  # type: ignore[arg-type]
    if missing == "firestore":
        sdk = tmp_path / "sdk"
        (sdk / "platform").mkdir(parents=True)
        (sdk / "bin").mkdir()
        (sdk / "bin" / "gcloud").write_text("#!/bin/sh\nexit 1\n")
        (sdk / "bin" / "gcloud").chmod(0o755)
        (bin_dir / "gcloud").symlink_to(sdk / "bin" / "gcloud")
        (bin_dir / "java").symlink_to(shutil.which("java"))  # type: ignore[arg-type]
    home = tmp_path / "home"
    path = f"{bin_dir}:{Path(sys.executable).parent}"
    result = povstorm(user_env(home, PATH=path), "local", "up")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"povstorm: error: {message}")
    assert processes_of_home(home) == []


def test_the_task_runner_runs_executions_as_cloud_run_jobs_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local Cloud Run Jobs: tasks named by execution, index, count and
    attempt; at most the capacity at once; a failed task retried; a task past
    its timeout killed and, out of retries, failed; a cancelled execution's
    tasks stopped; SIGTERM stops every task."""
    home = tmp_path / "home"
    monkeypatch.setenv("POVSTORM_HOME", str(home))
    logs = local_logs(home)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "povstorm_local.tasks", "--capacity", "1",
            "--module", "flaky_task", "--socket", str(local_run(home) / TASKS_SOCKET),
        ],
        env={**os.environ, "PYTHONPATH": str(FIXTURES)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    launcher = LocalRenderLauncher(Settings(), logs)

    def execution(name: str) -> dict:
        return next(e for e in tasks_request({"op": "list"})["executions"] if e["name"] == name)

    def settled(name: str, **counts: int) -> dict:
        def reached() -> dict | None:
            e = execution(name)
            return e if all(e[k] == v for k, v in counts.items()) else None

        return wait_until(reached, 20, f"{name} to reach {counts}")

    try:
        wait_until(lambda: (local_run(home) / TASKS_SOCKET).exists(), 20, "the runner to listen")
        monkeypatch.setenv("FLAKY_MODE", "crash-first")
        first = launcher.launch("job-a", 2)
        # One at a time (capacity 1): task 1 waits while task 0 runs.
        assert execution(first)["running"] + execution(first)["succeeded"] <= 1
        assert launcher.active() >= 1
        assert settled(first, succeeded=2)["retries"] == 2
        assert launcher.active() == 0
        task0 = (logs / f"{first}-0.log").read_text()
        assert f"{first} task 0 of 2, attempt 0" in task0
        assert f"{first} task 0 of 2, attempt 1" in task0

        monkeypatch.setenv("FLAKY_MODE", "hang")
        env = {**os.environ}
        hung = tasks_request(
            {"op": "run", "job": "render", "tasks": 1, "timeout": 1, "max_retries": 1,
             "env": env, "log_dir": str(logs)}
        )["execution"]  # fmt: skip
        assert settled(hung, failed=1)["retries"] == 1
        cancelled = launcher.launch("job-b", 1)
        settled(cancelled, running=1)
        launcher.cancel(cancelled)
        settled(cancelled, cancelled=1)
        last = launcher.launch("job-c", 1)
        settled(last, running=1)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output
    assert f"{first} task 0 exited with 3; retrying (attempt 1)" in output
    assert f"{hung} task 0 past its 1s timeout" in output
    assert f"{hung} task 0 failed after 2 attempts" in output
    assert live_group_members({proc.pid}) == set()
    with pytest.raises(TransientError, match="no local task runner"):
        launcher.active()


def test_the_reconciler_runs_a_pass_and_reports_it(
    firestore_env: None, fresh_project: str, tmp_path: Path
) -> None:
    heartbeat = tmp_path / "reconciler.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "povstorm_local.reconciler",
            "--once",
            "--heartbeat",
            str(heartbeat),
        ],
        env={**os.environ, "POVSTORM_PROJECT": fresh_project},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    beat = json.loads(heartbeat.read_text())
    assert beat["passes"] == 1
    assert beat["summary"] == "1 passes, last: nothing to repair"


def test_down_stops_a_stitch_still_running_and_its_log_is_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stitch runs detached (its own session), so no recorded group holds
    it: ``down`` finds it by module and POVSTORM_HOME. Here it is stuck
    waiting on a Firestore that does not answer, as one would be mid-outage.
    A stitch of another home is not ours to stop."""
    from povstorm.cloud.launchers import LocalStitchLauncher
    from povstorm.core.settings import Settings, local_logs

    home, other = tmp_path / "home", tmp_path / "other"
    env = user_env(home)
    up = povstorm(env, "local", "up", "--infra-only")
    assert up.returncode == 0, up.stderr
    try:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nobody there
        for h in (home, other):
            monkeypatch.setenv("POVSTORM_HOME", str(h))
            LocalStitchLauncher(Settings(project="stuck")).launch("job-stuck")
        stack = LocalStack(home)
        ours = wait_until(stack.stitches, 30, "the stitch to start")
        theirs = wait_until(LocalStack(other).stitches, 30, "the other home's stitch to start")
        assert len(ours) == 1 and set(ours).isdisjoint(theirs)
        assert stack.stitches() == ours  # alive until down (a stuck stitch gives up after ~15 s)
        assert (local_logs(home) / "stitch-job-stuck.log").exists()
        logs = povstorm(env, "local", "logs", "stitch-job-stuck")
        assert logs.returncode == 0, logs.stderr
        bad = povstorm(env, "local", "logs", "stitch-../x")
        assert bad.returncode != 0 and bad.stderr.count("\n") == 1
        assert "unknown component 'stitch-../x'" in bad.stderr
    finally:
        down = povstorm(env, "local", "down")
    assert down.returncode == 0, down.stderr
    assert live_pids(set(ours)) == set()
    assert processes_of_home(home) == []
    for pid in live_pids(set(theirs)):
        os.kill(pid, signal.SIGKILL)


def _ask_stitcher(sock: Path, request: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(sock))
        conn.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(conn.makefile("rb").readline())


def _ppid_and_session(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[3])


def test_the_stitcher_forks_stitches_that_look_and_log_like_plain_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack's stitcher starts a launched stitch as its child: a process
    in its own session, titled and environed as a plain stitch (so ``down``
    finds it), logging to the launcher's log. It refuses a bad job id and a
    launcher running other sources (which then starts a plain process), and
    serves on after both; SIGTERM stops it and removes its socket."""
    from povstorm.cloud.launchers import LocalStitchLauncher, package_root
    from povstorm.core.settings import Settings, local_logs, local_run

    home = tmp_path / "home"
    sock = local_run(home) / "stitcher.sock"
    server = subprocess.Popen(
        [sys.executable, "-m", "povstorm_local.stitcher", "--socket", str(sock)],
        env={**os.environ, "POVSTORM_HOME": str(home)},
        start_new_session=True,
    )
    stitches: list[int] = []
    try:
        wait_until(sock.exists, 30, "the stitcher to listen")
        monkeypatch.setenv("POVSTORM_HOME", str(home))
        # Nobody answers there: the stitch waits for Firestore, long enough to look at it.
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
        LocalStitchLauncher(Settings.from_env()).launch("job-forked")
        stitches = wait_until(LocalStack(home).stitches, 30, "the forked stitch")
        assert len(stitches) == 1
        (pid,) = stitches
        ppid, session = _ppid_and_session(pid)
        assert ppid == server.pid and session == pid  # forked, then a session of its own
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
        assert cmdline[-2:] == [b"povstorm.shells.stitch_job", b"job-forked"]
        assert (local_logs(home) / "stitch-job-forked.log").is_file()

        bad = _ask_stitcher(sock, {"job_id": "../x", "env": {}, "log": str(tmp_path / "x.log")})
        assert "bad request" in bad["error"] and "pid" not in bad
        other = {"job_id": "job-other", "env": {}, "log": str(tmp_path / "o.log")}
        assert (
            "runs the sources in" in _ask_stitcher(sock, {**other, "root": "/elsewhere"})["error"]
        )
        # Still serving: a well-formed request from these sources gets a stitch.
        served = _ask_stitcher(sock, {**other, "env": dict(os.environ), "root": package_root()})
        stitches.append(served["pid"])
        assert _ppid_and_session(served["pid"])[0] == server.pid
    finally:
        for pid in stitches:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.terminate()
        assert server.wait(10) == 0
    assert not sock.exists()


def test_a_render_whose_stack_is_stopped_exits_1_with_one_line_within_15_s(
    tmp_path: Path,
) -> None:
    """`povstorm render` in one shell, `povstorm local down` in another: the
    render stops waiting within 15 s, exit 1, its last line says what stopped
    and what to do, instead of printing progress forever."""
    home = tmp_path / "home"
    env = user_env(home)
    scene = tmp_path / "scene"
    shutil.copytree(Path(__file__).parents[1] / "examples" / "spinning", scene)
    up = povstorm(env, "local", "up", "--workers", "1")
    assert up.returncode == 0, up.stderr
    render = subprocess.Popen(
        # Long enough (48 frames of 1280x960 on one worker) to be mid-render.
        [POVSTORM, "render", "spinning.ini", "+W1280", "+H960", "+KFI1", "+KFF48"],
        env=env, cwd=scene, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert render.stderr is not None
        first = render.stderr.readline()  # "job JOB: 48 frame(s)", once it is submitted
        assert first.startswith("job "), first
        job_id = first.split()[1].rstrip(":")
        down = povstorm(env, "local", "down")
        assert down.returncode == 0, down.stderr
        stopped = time.monotonic()
        _out, err = render.communicate(timeout=30)
        waited = time.monotonic() - stopped
    finally:
        if render.poll() is None:
            render.kill()
        povstorm(env, "local", "down")
    assert render.returncode == 1 and waited < 15, (render.returncode, waited, err)
    last = err.strip().splitlines()[-1]
    assert "the local stack" in last and "povstorm local up" in last, err
    assert f"povstorm watch {job_id}" in last and "Traceback" not in err
