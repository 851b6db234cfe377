"""Render tasks on the local stack, as the cloud runs them: executions of the
render job started by a RenderLauncher, tasks that pull the work
subscription, keep a lease on their chunk while POV-Ray runs, and end.

Each test renders in the stack's own project (its frame events reach the
stack's functions only there), submitting through ``farm/operations.py``
with ``render_launcher = "none"`` so that the test, not the submit
function, decides which tasks start; it first waits until the tasks of
earlier tests have ended (idle), so no other task can pull its chunks."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import (
    SLOW_FRAME,
    loops_for,
    quiet_render_tasks,
    render_execution,
    wait_until,
)

from povstorm.client import Cluster
from povstorm.cloud.clients import Clients
from povstorm.cloud.launchers import TASK_TIMEOUT_MARGIN
from povstorm.core.naming import input_object
from povstorm.farm import operations
from povstorm.farm.reconcile import Deadlines, reconcile
from povstorm.ledger.ledger import Ledger
from povstorm_local.resources import WORK_ACK_DEADLINE
from povstorm_local.state import StackState

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

BUDGET = 150  # the task's render budget in the long-frame test, seconds


def _submit(clients: Clients, frames: int, loops: int) -> str:
    """A scene job in the ledger and its chunks published, no task started."""
    scene = SLOW_FRAME.format(salt=uuid.uuid4().hex, loops=loops).encode()
    sha = hashlib.sha256(scene).hexdigest()
    clients.blobs.upload_bytes(input_object(sha), scene)
    payload: dict[str, Any] = {
        "job_id": f"tasks-{uuid.uuid4().hex[:10]}",
        "inputs": {"slow.pov": sha},
        "povray": {
            "args": ["slow.pov", "+W16", "+H12", "+KFI1", f"+KFF{frames}"],
            "frames": {"first": 1, "last": frames},
        },
        "output": {"fps": 4},
        "cache": "off",
    }
    return str(operations.submit(clients, payload)["job_id"])


@pytest.fixture
def stack_clients(stack: StackState) -> Clients:
    """The stack's own project, with no render launcher: the test starts tasks."""
    return Clients.from_settings(stack.settings().with_overrides(render_launcher="none"))


def test_a_frame_longer_than_the_ack_deadline_renders_under_the_task_timeout(
    stack: StackState, stack_clients: Clients, tmp_path: Path
) -> None:
    """A push could hold a frame only for the ack deadline (600 s in the
    cloud); a task holds its chunk with a lease it extends, for as long as
    its task timeout allows. Scaled down: a frame of ~45 s, longer than the
    work subscription's 20 s ack deadline (even should the machine become
    twice as fast), in a task of budget 150 s (even should it become three
    times as slow)."""
    quiet_render_tasks()
    job_id = _submit(stack_clients, frames=1, loops=loops_for(45, tmp_path))
    budget = stack.settings().with_overrides(render_timeout=BUDGET)
    tasks = Clients.from_settings(budget)
    execution = operations.start_tasks(tasks, Ledger(tasks.db), job_id, 1)
    assert execution is not None
    assert render_execution(f"{execution}/0")["tasks"] == 1
    with Cluster.local(start=False) as cluster:
        final = cluster.watch(job_id, timeout=180)
        assert final.state.value == "done" and final.done == 1
        (record,) = cluster.ledger.unit_records(job_id)
    # One delivery: the lease held the chunk past the ack deadline, so
    # Pub/Sub never gave it to another task; the task's own timeout was above it.
    assert record["deliveries"] == 1 and record["worker"] == f"{execution}/0"
    assert record["render_seconds"] > WORK_ACK_DEADLINE
    assert record["render_seconds"] < BUDGET + TASK_TIMEOUT_MARGIN
    assert render_execution(f"{execution}/0")["retries"] == 0


def test_the_reconciler_starts_tasks_for_a_job_nobody_renders(
    stack: StackState, stack_clients: Clients
) -> None:
    """Chunks published while no task runs (a launch that failed, tasks
    that gave up): the reconciler's pass starts an execution for them."""
    quiet_render_tasks()
    job_id = _submit(stack_clients, frames=3, loops=1)
    ledger = Ledger(stack_clients.db)
    assert (ledger.get_job(job_id) or {}).get("executions") is None
    local = Clients.from_settings(stack.settings())
    report = reconcile(local, Deadlines(dispatch=dt.timedelta(0)))
    assert report.tasks_started == [job_id], report.as_dict()
    with Cluster.local(start=False) as cluster:
        final = cluster.watch(job_id, timeout=120)
    assert final.state.value == "done" and final.done == 3
    (execution,) = (ledger.get_job(job_id) or {})["executions"]
    assert execution.startswith("render-")
    # A second pass while the job is done starts nothing.
    assert reconcile(local, Deadlines(dispatch=dt.timedelta(0))).tasks_started == []


def test_tasks_exit_once_the_work_is_done(stack: StackState, stack_clients: Clients) -> None:
    """A task serves while there is work and ends by itself (exit 0) once a
    pull has found none for the idle time: nothing of an execution is left."""
    quiet_render_tasks()
    job_id = _submit(stack_clients, frames=2, loops=1)
    tasks = Clients.from_settings(stack.settings().with_overrides(task_idle=2))
    execution = operations.start_tasks(tasks, Ledger(tasks.db), job_id, 2)
    assert execution is not None
    with Cluster.local(start=False) as cluster:
        assert cluster.watch(job_id, timeout=120).state.value == "done"

    def ended() -> dict[str, Any] | None:
        e = render_execution(f"{execution}/0")
        return e if e["running"] == 0 and e["pending"] == 0 else None

    finished = wait_until(ended, 30, "the tasks to end")
    assert finished["succeeded"] == finished["tasks"] and finished["failed"] == 0
