"""Stitch launchers: a local process, or an execution of the stitch Cloud Run Job."""

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
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(5.0)
                conn.connect(str(path))
                conn.sendall(json.dumps(request).encode() + b"\n")
                reply = json.loads(conn.makefile("rb").readline() or b"{}")
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


def stitch_launcher(settings: Settings, log_dir: Path | None = None) -> StitchLauncher:
    if settings.stitch_launcher == "local":
        return LocalStitchLauncher(settings, log_dir)
    if settings.stitch_launcher == "cloud-run":
        from google.cloud import run_v2

        return CloudRunStitchLauncher(run_v2.JobsClient(), settings.stitch_job)
    raise PovstormError(f"unknown stitch launcher {settings.stitch_launcher!r}")
