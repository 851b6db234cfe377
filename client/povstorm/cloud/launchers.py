"""Launchers: what starts the farm's Cloud Run Job executions, or their local
stand-ins. The stitch: a local process, or an execution of the stitch job.
Render tasks: the local stack's task runner (``povstorm_local.tasks``), or
executions of the render job, each of N tasks that pull the work
subscription (``povstorm.shells.render_task``)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

from povstorm.core.errors import PovstormError, TransientError, translate
from povstorm.core.names import ENV
from povstorm.core.settings import Settings, local_logs, local_run

log = logging.getLogger(__name__)


class StitchLauncher(Protocol):
    """Starts ``python -m povstorm.shells.stitch_job JOB``: the stitch of a job
    (``video`` None) or, with ``video`` (a ``core.naming.video_key``), another
    video of a done job (``JOB --video KEY``)."""

    def launch(self, job_id: str, video: str | None = None) -> None: ...


def stitch_args(job_id: str, video: str | None = None) -> list[str]:
    """The stitch's arguments: the job id, and the video to make again if any."""
    return [job_id] if video is None else [job_id, "--video", video]


def unix_request(path: Path, request: dict[str, Any]) -> Any:
    """Send one JSON line to the local server listening at ``path`` and read
    its one-line JSON answer (OSError, ValueError when that fails)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5.0)
        conn.connect(str(path))
        conn.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(conn.makefile("rb").readline() or b"{}")


# --- Stitch launchers --------------------------------------------------------


STITCH_MODULE = "povstorm.shells.stitch_job"
# Where the local stack's warm stitch starter listens (povstorm_local.stitcher).
STITCHER_SOCKET = "stitcher.sock"


def package_root() -> str:
    """The directory this povstorm package is imported from."""
    return str(Path(__file__).resolve().parents[2])


class LocalStitchLauncher:
    """Runs the stitch container's entry point as a detached local process,
    with the same settings the caller has, logging to
    ``log_dir/stitch-JOB.log`` (by default the local stack's logs, where
    ``povstorm local logs stitch-JOB`` reads it). The stitch is idempotent,
    so a second launch of the same job is harmless. It inherits the caller's
    POVSTORM_HOME, by which ``povstorm local down`` finds and stops it.

    The local stack's stitcher forks it from a process that has imported
    the stitch already (0.8 s sooner); without one, a plain process starts."""

    def __init__(self, settings: Settings, log_dir: Path | None = None) -> None:
        self._settings = settings
        self._log_dir = log_dir or local_logs()

    def launch(self, job_id: str, video: str | None = None) -> None:
        env = {**os.environ, **self._settings.to_env()}
        root = package_root()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
        log_path = self._log_dir / f"stitch-{job_id}.log"
        try:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            if self._forked(job_id, video, env, log_path, root):
                return
            with open(log_path, "ab") as out:
                subprocess.Popen(
                    [sys.executable, "-m", STITCH_MODULE, *stitch_args(job_id, video)],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise TransientError(f"cannot start the stitch for {job_id}: {exc}") from exc

    @staticmethod
    def _forked(
        job_id: str, video: str | None, env: dict[str, str], log_path: Path, root: str
    ) -> bool:
        """Whether the local stack's stitcher started the stitch."""
        path = local_run() / STITCHER_SOCKET
        if not path.exists():
            return False
        request = {"job_id": job_id, "env": env, "log": str(log_path), "root": root}
        if video is not None:
            request["video"] = video
        try:
            reply = unix_request(path, request)
        except (OSError, ValueError) as exc:
            log.info("no stitcher at %s (%s): starting a process", path, exc)
            return False
        if isinstance(reply, dict) and isinstance(reply.get("pid"), int):
            return True
        log.info("the stitcher declined (%s): starting a process", reply)
        return False


class CloudRunStitchLauncher:
    """Starts an execution of the stitch Cloud Run Job with the job id (and,
    for another video of a done job, ``--video KEY``) as its arguments.
    run_job has no idempotency key: the ledger claims the stitch (or records
    the video's request) first, and the stitch itself is idempotent."""

    def __init__(self, client: Any, job_name: str) -> None:
        self._client = client
        self._job_name = job_name

    def launch(self, job_id: str, video: str | None = None) -> None:
        from google.cloud import run_v2

        request = run_v2.RunJobRequest(
            name=self._job_name,
            overrides=run_v2.RunJobRequest.Overrides(
                container_overrides=[
                    run_v2.RunJobRequest.Overrides.ContainerOverride(
                        args=stitch_args(job_id, video)
                    )
                ]
            ),
        )
        # Do not wait for the execution: the stitch reports into the ledger.
        with translate():
            self._client.run_job(request=request)


# --- Render launchers ---------------------------------------------------------


RENDER_TASK_MODULE = "povstorm.shells.render_task"
# Where the local stack's task runner listens (povstorm_local.tasks).
TASKS_SOCKET = "tasks.sock"
# Time a task gets beyond its render budget (Settings.render_timeout) before
# the runner kills it: its last uploads, the segment, the idle wait.
TASK_TIMEOUT_MARGIN = 60
# Retries of a task that fails (exits non-zero, is killed, times out), as the
# render job's max_retries in terraform.
TASK_RETRIES = 3


class RenderLauncher(Protocol):
    """Starts render tasks: executions of the render job (Cloud Run), each of
    ``tasks`` tasks that pull the shared work subscription until it is empty,
    so a task serves whichever job's chunks it pulls."""

    def launch(self, job_id: str, tasks: int) -> str:
        """Start an execution of ``tasks`` tasks for ``job_id``'s work; its name."""
        ...

    def active(self) -> int:
        """Render tasks started and not yet finished (running or waiting to)."""
        ...

    def cancel(self, execution: str) -> None:
        """Stop an execution's tasks (a chunk they held is redelivered)."""
        ...


def tasks_request(request: dict[str, Any]) -> dict[str, Any]:
    """One request to the local task runner, and its answer. TransientError
    when no runner answers (the reconciler launches again later)."""
    path = local_run() / TASKS_SOCKET
    try:
        reply = unix_request(path, request)
    except (OSError, ValueError) as exc:
        raise TransientError(f"no local task runner at {path}: {exc}") from None
    if not isinstance(reply, dict) or "error" in reply:
        raise TransientError(f"the local task runner refused: {reply}")
    return reply


class LocalRenderLauncher:
    """Asks the local stack's task runner (``povstorm_local.tasks``, the
    local Cloud Run Jobs) for an execution of ``python -m
    povstorm.shells.render_task``: ``tasks`` tasks, each with the caller's
    settings, retried up to TASK_RETRIES times, killed past its timeout (the
    render budget plus TASK_TIMEOUT_MARGIN), logging to
    ``logs/render-EXECUTION-INDEX.log``. The runner runs at most its capacity
    (the stack's ``--workers``) at once, over all executions."""

    def __init__(self, settings: Settings, log_dir: Path | None = None) -> None:
        self._settings = settings
        self._log_dir = log_dir or local_logs()

    def launch(self, job_id: str, tasks: int) -> str:
        env = {**os.environ, **self._settings.to_env()}
        if self._settings.cache_dir:
            env[ENV["cache_dir"]] = self._settings.cache_dir
        reply = tasks_request(
            {
                "op": "run",
                "job": "render",
                "for": job_id,
                "tasks": tasks,
                "timeout": self._settings.render_timeout + TASK_TIMEOUT_MARGIN,
                "max_retries": TASK_RETRIES,
                "env": env,
                "log_dir": str(self._log_dir),
            }
        )
        return str(reply["execution"])

    def active(self) -> int:
        reply = tasks_request({"op": "list"})
        return sum(int(e["running"]) + int(e["pending"]) for e in reply["executions"])

    def cancel(self, execution: str) -> None:
        tasks_request({"op": "cancel", "execution": execution})


class CloudRunRenderLauncher:
    """Executions of the render Cloud Run Job (``Settings.render_job``), with
    the task count overridden per launch; the job's own settings (parallelism
    = the most tasks at once, task timeout, retries, image, environment) are
    terraform's."""

    def __init__(self, jobs: Any, executions: Any, job_name: str) -> None:
        self._jobs = jobs
        self._executions = executions
        self._job_name = job_name

    def launch(self, job_id: str, tasks: int) -> str:
        from google.cloud import run_v2

        request = run_v2.RunJobRequest(
            name=self._job_name, overrides=run_v2.RunJobRequest.Overrides(task_count=tasks)
        )
        with translate():
            operation = self._jobs.run_job(request=request)
            # The operation's metadata is the execution, there from the start;
            # the tasks report into the ledger, so nothing waits for them.
            return str(operation.metadata.name)

    def active(self) -> int:
        """Tasks of unfinished executions not yet succeeded, failed or cancelled."""
        with translate():
            total = 0
            for e in self._executions.list_executions(parent=self._job_name):
                if e.completion_time:
                    continue
                total += max(
                    0, e.task_count - e.succeeded_count - e.failed_count - e.cancelled_count
                )
            return total

    def cancel(self, execution: str) -> None:
        from google.api_core import exceptions as gexc

        try:
            with translate():
                self._executions.cancel_execution(name=execution)
        except PovstormError as exc:
            # An execution that finished (FAILED_PRECONDITION, which the REST
            # transport reports as a plain 400) or is gone has nothing to stop.
            finished = (gexc.FailedPrecondition, gexc.BadRequest, gexc.NotFound)
            if not isinstance(exc.__cause__, finished):
                raise


def render_launcher(settings: Settings, log_dir: Path | None = None) -> RenderLauncher | None:
    """The deployment's render launcher; None when something else starts the
    workers (``render_launcher = "none"``)."""
    if settings.render_launcher == "local":
        return LocalRenderLauncher(settings, log_dir)
    if settings.render_launcher == "cloud-run":
        from google.cloud import run_v2

        return CloudRunRenderLauncher(
            run_v2.JobsClient(), run_v2.ExecutionsClient(), settings.render_job
        )
    if settings.render_launcher == "none":
        return None
    raise PovstormError(f"unknown render launcher {settings.render_launcher!r}")


def stitch_launcher(settings: Settings, log_dir: Path | None = None) -> StitchLauncher:
    if settings.stitch_launcher == "local":
        return LocalStitchLauncher(settings, log_dir)
    if settings.stitch_launcher == "cloud-run":
        from google.cloud import run_v2

        return CloudRunStitchLauncher(run_v2.JobsClient(), settings.stitch_job)
    raise PovstormError(f"unknown stitch launcher {settings.stitch_launcher!r}")
