"""The local stack's Cloud Run Jobs: a task runner for the render job.

In the cloud a launch of render work starts an execution of the render Cloud
Run Job: N tasks, each ``python -m povstorm.shells.render_task`` with
``CLOUD_RUN_EXECUTION``, ``CLOUD_RUN_TASK_INDEX``, ``CLOUD_RUN_TASK_COUNT`` and
``CLOUD_RUN_TASK_ATTEMPT`` set, at most ``parallelism`` at once, each retried
up to ``max_retries`` times when it fails (exits non-zero, is killed, or
outlives the task timeout), and a cancelled execution's tasks sent SIGTERM,
then SIGKILL. This process does the same on one machine, behind
``povstorm.cloud.launchers.LocalRenderLauncher``, so the code the tests and
the local stack run is the code the cloud runs:

* at most ``--capacity`` tasks run at once over all executions (the stack's
  ``--workers``: the role of the render job's parallelism and the region's
  quota); the others wait their turn, oldest execution first;
* a task is forked from this process, which has imported the task's code
  already (a fresh Python spends ~0.8 s importing the Google clients: the
  cold start a local task does not need), and stays in this process group,
  so stopping the stack stops it; it logs to ``logs/render-EXEC-INDEX.log``;
* a task past its timeout gets SIGTERM, and SIGKILL KILL_GRACE seconds later.

Requests are JSON lines on a Unix socket (``<home>/local/run/tasks.sock``):

    {"op": "run", "job": "render", "for": JOB, "tasks": N, "timeout": S,
     "max_retries": R, "env": {...}, "log_dir": DIR}   -> {"execution": NAME}
    {"op": "list"}        -> {"executions": [{name, for, tasks, pending, running,
                              succeeded, failed, cancelled, retries, pids}, ...]}
    {"op": "cancel", "execution": NAME}                 -> {"cancelled": NAME}

    python -m povstorm_local.tasks --socket PATH --capacity N [--heartbeat FILE] [--module M]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import select
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from .procs import listen_unix, reap_children, reply_line, run_as_child, write_heartbeat

log = logging.getLogger("povstorm.tasks")

MAX_REQUEST_BYTES = 1 << 20
WAKE_SECONDS = 0.1  # how often the loop reaps tasks, starts waiting ones, checks timeouts
KILL_GRACE = 10.0  # SIGTERM, then SIGKILL this much later (Cloud Run's grace period)
KEEP_FINISHED = 200  # finished executions still listed


@dataclass
class Task:
    index: int
    attempt: int = 0
    state: str = "pending"  # pending, running, succeeded, failed, cancelled
    pid: int | None = None
    started: float = 0.0
    kill_at: float | None = None  # SIGKILL due (after a SIGTERM)
    timed_out: bool = False


@dataclass
class Execution:
    name: str
    job: str
    for_job: str
    timeout: float
    max_retries: int
    env: dict[str, str]
    log_dir: Path
    tasks: list[Task] = field(default_factory=list)
    cancelled: bool = False

    @property
    def finished(self) -> bool:
        return all(t.state in ("succeeded", "failed", "cancelled") for t in self.tasks)

    def summary(self) -> dict[str, Any]:
        counts = {s: 0 for s in ("pending", "running", "succeeded", "failed", "cancelled")}
        for t in self.tasks:
            counts[t.state] += 1
        return {
            "name": self.name,
            "for": self.for_job,
            "tasks": len(self.tasks),
            "retries": sum(t.attempt for t in self.tasks),
            "pids": {str(t.index): t.pid for t in self.tasks if t.pid is not None},
            **counts,
        }


class Runner:
    """The executions and their tasks; ``fork`` starts one task's process."""

    def __init__(self, capacity: int, fork: Callable[[Execution, Task], int]) -> None:
        self.capacity = capacity
        self.fork = fork
        self.executions: list[Execution] = []
        self.started = 0

    # -- requests ---------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "run":
            return {"execution": self.run(request).name}
        if op == "list":
            return {"executions": [e.summary() for e in self.executions]}
        if op == "cancel":
            name = str(request.get("execution"))
            for e in self.executions:
                if e.name == name:
                    self.cancel(e, time.monotonic())
                    return {"cancelled": name}
            return {"error": f"no execution {name}"}
        return {"error": f"unknown op {op!r}"}

    def run(self, request: dict[str, Any]) -> Execution:
        count = int(request["tasks"])
        if request.get("job") != "render" or not 1 <= count <= 10_000:
            raise ValueError("job must be render and tasks 1-10000")
        env = request["env"]
        if not isinstance(env, dict):
            raise ValueError("env must be an object")
        execution = Execution(
            name=f"render-{uuid.uuid4().hex[:8]}",
            job="render",
            for_job=str(request.get("for", "")),
            timeout=float(request["timeout"]),
            max_retries=int(request.get("max_retries", 0)),
            env={str(k): str(v) for k, v in env.items()},
            log_dir=Path(str(request["log_dir"])),
            tasks=[Task(i) for i in range(count)],
        )
        self.executions.append(execution)
        log.info("%s: %d tasks for %s", execution.name, count, execution.for_job)
        return execution

    def cancel(self, execution: Execution, now: float) -> None:
        execution.cancelled = True
        for t in execution.tasks:
            if t.state == "pending":
                t.state = "cancelled"
            elif t.state == "running" and t.pid is not None and t.kill_at is None:
                _signal(t.pid, signal.SIGTERM)
                t.kill_at = now + KILL_GRACE
        log.info("%s cancelled", execution.name)

    # -- the loop's step --------------------------------------------------------

    def exited(self, pid: int, status: int) -> None:
        for e in self.executions:
            for t in e.tasks:
                if t.pid == pid and t.state == "running":
                    self._ended(e, t, os.waitstatus_to_exitcode(status))
                    return

    def _ended(self, e: Execution, t: Task, code: int) -> None:
        t.pid, t.kill_at = None, None
        if e.cancelled:
            t.state = "cancelled"
        elif code == 0 and not t.timed_out:
            t.state = "succeeded"
        elif t.attempt < e.max_retries:
            why = "timed out" if t.timed_out else f"exited with {code}"
            log.warning("%s task %d %s; retrying (attempt %d)", e.name, t.index, why, t.attempt + 1)
            t.attempt += 1
            t.state, t.timed_out = "pending", False
        else:
            t.state = "failed"
            log.warning("%s task %d failed after %d attempts", e.name, t.index, t.attempt + 1)

    def step(self, now: float) -> None:
        running = 0
        for e in self.executions:
            for t in e.tasks:
                if t.state != "running" or t.pid is None:
                    continue
                running += 1
                if t.kill_at is not None and now >= t.kill_at:
                    _signal(t.pid, signal.SIGKILL)
                    t.kill_at = now + KILL_GRACE  # again, should it linger
                elif t.kill_at is None and now - t.started > e.timeout:
                    log.warning("%s task %d past its %gs timeout", e.name, t.index, e.timeout)
                    t.timed_out = True
                    _signal(t.pid, signal.SIGTERM)
                    t.kill_at = now + KILL_GRACE
        for e in self.executions:
            for t in e.tasks:
                if running >= self.capacity:
                    break
                if t.state == "pending":
                    t.pid, t.started, t.state = self.fork(e, t), now, "running"
                    self.started += 1
                    running += 1
        done = [e for e in self.executions if e.finished]
        if len(done) > KEEP_FINISHED:
            drop = {id(e) for e in done[: len(done) - KEEP_FINISHED]}
            self.executions = [e for e in self.executions if id(e) not in drop]

    def running(self) -> int:
        return sum(t.state == "running" for e in self.executions for t in e.tasks)

    def stop(self) -> None:
        """SIGTERM to every task (a chunk in progress is redelivered once its
        lease lapses), SIGKILL to one still there after KILL_GRACE."""
        pids = [t.pid for e in self.executions for t in e.tasks if t.pid is not None]
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if not _reaped(p)]
            time.sleep(0.05)
        for pid in pids:
            _signal(pid, signal.SIGKILL)
            _reaped(pid, block=True)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reaped(pid: int, *, block: bool = False) -> bool:
    try:
        done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return True
    return done != 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m povstorm_local.tasks",
        description="Run the local stack's render tasks, as Cloud Run Jobs runs the cloud's.",
    )
    parser.add_argument("--socket", type=Path, required=True, help="the Unix socket to listen on")
    parser.add_argument("--capacity", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--heartbeat", type=Path, help="rewrite this status file every second")
    parser.add_argument(
        "--module",
        help="the module whose main() a task runs (default: povstorm.shells.render_task)",
    )
    args = parser.parse_args(argv)
    if args.capacity < 1:
        parser.error("--capacity must be at least 1")
    # setproctitle otherwise reuses the environment's memory for a long title.
    os.environ["SPT_NOENV"] = "1"
    try:
        import setproctitle

        from povstorm.cloud.launchers import RENDER_TASK_MODULE
        from povstorm.core.logs import setup_logging
        from povstorm.povray.process import povray_version

        module = args.module or RENDER_TASK_MODULE
        task_main = importlib.import_module(module).main
    except ImportError as exc:
        print(f"tasks: cannot start: {exc}", file=sys.stderr)
        return 2
    setup_logging(stream=sys.stdout)
    setproctitle.setproctitle(setproctitle.getproctitle())
    povray_version()  # once here, inherited by every task (part of the frame cache key)

    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _: stopping.append(signum))
    try:
        listener = listen_unix(args.socket, backlog=64)
    except OSError as exc:
        print(f"tasks: cannot listen on {args.socket}: {exc}", file=sys.stderr)
        return 1

    def fork(e: Execution, t: Task) -> int:
        pid = os.fork()
        if pid == 0:
            child(e, t)
        log.info("%s task %d attempt %d: pid %d", e.name, t.index, t.attempt, pid)
        return pid

    def child(e: Execution, t: Task) -> NoReturn:
        listener.close()
        setproctitle.setproctitle(f"python -m {module}")
        env = {
            **e.env,
            "CLOUD_RUN_JOB": e.job,
            "CLOUD_RUN_EXECUTION": e.name,
            "CLOUD_RUN_TASK_INDEX": str(t.index),
            "CLOUD_RUN_TASK_COUNT": str(len(e.tasks)),
            "CLOUD_RUN_TASK_ATTEMPT": str(t.attempt),
        }
        run_as_child(env, e.log_dir / f"{e.name}-{t.index}.log", task_main)

    runner = Runner(args.capacity, fork)
    beat_at = 0.0
    try:
        while not stopping:
            now = time.monotonic()
            reap_children(runner.exited)
            runner.step(now)
            if now >= beat_at and args.heartbeat:
                write_heartbeat(
                    args.heartbeat,
                    summary=f"{runner.running()}/{runner.capacity} tasks running, "
                    f"{runner.started} started",
                    running=runner.running(),
                    capacity=runner.capacity,
                    pids=[t.pid for e in runner.executions for t in e.tasks if t.pid],
                )
                beat_at = now + 1.0
            ready, _, _ = select.select([listener], [], [], WAKE_SECONDS)
            if ready:
                conn, _ = listener.accept()
                with conn:
                    _serve(conn, runner)
                runner.step(time.monotonic())  # start a new execution's tasks at once
    finally:
        listener.close()
        args.socket.unlink(missing_ok=True)
        runner.stop()
    return 0


def _serve(conn: socket.socket, runner: Runner) -> None:
    conn.settimeout(5.0)
    try:
        request = json.loads(conn.makefile("rb").readline(MAX_REQUEST_BYTES))
        if not isinstance(request, dict):
            raise ValueError("a request is a JSON object")
        reply = runner.handle(request)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reply = {"error": f"bad request: {exc}"}
    reply_line(conn, reply)


if __name__ == "__main__":
    sys.exit(main())
