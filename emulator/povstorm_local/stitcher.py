"""The local stack's stitches, started warm: a fork server.

A stitch is a process of its own (in the cloud an execution of the stitch
Cloud Run Job; locally ``python -m povstorm.shells.stitch_job JOB``), and a
fresh Python spends about 0.8 s importing the Firestore, Storage and gRPC
libraries before the stitch does anything: most of the time between a job's
last frame and its video. This process imports the stitch once and forks a
child for each launch. The child is a new process like the one it replaces:
its own session, the launcher's environment, its log
(``logs/stitch-JOB.log``) and the title ``python -m
povstorm.shells.stitch_job JOB``, by which ``povstorm local down`` and the
tests find a stitch. It runs the same ``main``. The server creates no client
and starts no thread, so a child starts clean.

``povstorm.cloud.launchers.LocalStitchLauncher`` connects to
``<home>/local/run/stitcher.sock``, sends one JSON line (job_id, env, log,
root, and ``video`` for another video of a done job: ``JOB --video KEY``) and reads ``{"pid": N}`` back. When nothing answers, or the launcher
runs other sources than the ones imported here (``root``), it starts a plain
process as before.

    python -m povstorm_local.stitcher --socket PATH [--heartbeat FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .procs import listen_unix, reap_children, reply_line, run_as_child, write_heartbeat

log = logging.getLogger("povstorm.stitcher")

MAX_REQUEST_BYTES = 1 << 20
WAKE_SECONDS = 0.25  # how often the loop reaps children and checks for a stop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m povstorm_local.stitcher",
        description="Start the local stack's stitches from a warm process.",
    )
    parser.add_argument("--socket", type=Path, required=True, help="the Unix socket to listen on")
    parser.add_argument("--heartbeat", type=Path, help="rewrite this status file every second")
    args = parser.parse_args(argv)
    # setproctitle otherwise reuses the environment's memory for a long title,
    # and /proc/PID/environ (where `local down` reads POVSTORM_HOME) would be gone.
    os.environ["SPT_NOENV"] = "1"
    try:
        import setproctitle

        from povstorm.cloud.launchers import STITCH_MODULE, package_root, stitch_args
        from povstorm.core.logs import setup_logging
        from povstorm.shells import stitch_job
    except ImportError as exc:
        print(f"stitcher: cannot start: {exc}", file=sys.stderr)
        return 2
    setup_logging(stream=sys.stdout)
    # setproctitle finds the memory of the title when first used, reading
    # SPT_NOENV and the environment; a child changes both before it titles
    # itself, so it is set up here, once, with the server's own title.
    setproctitle.setproctitle(setproctitle.getproctitle())

    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _: stopping.append(signum))
    try:
        listener = listen_unix(args.socket)
    except OSError as exc:
        print(f"stitcher: cannot listen on {args.socket}: {exc}", file=sys.stderr)
        return 1
    root = package_root()
    started = 0
    beat_at = 0.0

    def child(request: dict[str, Any], conn: socket.socket) -> NoReturn:
        job_id = str(request["job_id"])
        argv = stitch_args(job_id, request.get("video"))
        listener.close()
        conn.close()
        os.setsid()
        setproctitle.setproctitle(f"python -m {STITCH_MODULE} {' '.join(argv)}")
        run_as_child(request["env"], Path(request["log"]), lambda: stitch_job.main(argv))

    try:
        while not stopping:
            if time.monotonic() >= beat_at and args.heartbeat:
                write_heartbeat(args.heartbeat, summary=f"{started} stitches started")
                beat_at = time.monotonic() + 1.0
            reap_children()
            ready, _, _ = select.select([listener], [], [], WAKE_SECONDS)
            if not ready:
                continue
            conn, _ = listener.accept()
            with conn:
                request, error = _read(conn, root)
                if request is None:
                    reply_line(conn, {"error": error})
                    continue
                pid = os.fork()
                if pid == 0:
                    child(request, conn)
                started += 1
                log.info("stitch of %s started: pid %d", request["job_id"], pid)
                reply_line(conn, {"pid": pid})
    finally:
        listener.close()
        args.socket.unlink(missing_ok=True)
    return 0


def _read(conn: socket.socket, root: str) -> tuple[dict[str, Any] | None, str]:
    """The launch request on ``conn``, or (None, why it is refused)."""
    from povstorm.core.errors import UserError
    from povstorm.core.naming import check_job_id, check_video_key

    conn.settimeout(5.0)
    try:
        line = conn.makefile("rb").readline(MAX_REQUEST_BYTES)
        request = json.loads(line)
        check_job_id(str(request["job_id"]))
        if request.get("video") is not None:
            check_video_key(request["video"])
        if not isinstance(request["env"], dict) or not str(request["log"]):
            raise ValueError("env and log are required")
    except (OSError, ValueError, KeyError, TypeError, UserError) as exc:
        return None, f"bad request: {exc}"
    if request.get("root") != root:
        return None, f"this stitcher runs the sources in {root}"
    return request, ""


if __name__ == "__main__":
    sys.exit(main())
