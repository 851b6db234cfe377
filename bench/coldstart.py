"""Cold start: ``LocalStack.up()`` until every component answers its health
check, against the baseline of the slowest thing it starts, the Firestore
emulator alone (a JVM), timed the same way just before."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from povstorm_local import procs as _procs
from povstorm_local.net import free_port, http_ok


def _reap(proc: subprocess.Popen) -> None:
    proc.poll()


def firestore_alone(timeout: float = 120.0) -> float:
    """Seconds from spawning ``gcloud emulators firestore start`` to its
    first 200 on ``/``; the emulator is stopped again before returning."""
    port = free_port()
    logdir = Path(tempfile.mkdtemp(prefix="povstorm-bench-fs-"))
    env = {
        **os.environ,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
    }
    started = time.monotonic()
    proc = _procs.spawn(
        ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}"],
        env=env,
        log_path=logdir / "firestore.log",
    )
    try:
        while not http_ok(f"http://127.0.0.1:{port}/", any_status=False)[0]:
            if proc.poll() is not None:
                raise RuntimeError(f"the Firestore emulator exited; see {logdir}/firestore.log")
            if time.monotonic() - started > timeout:
                raise RuntimeError("the Firestore emulator did not answer in time")
            time.sleep(0.1)
        return time.monotonic() - started
    finally:
        _procs.stop_groups([proc.pid], grace=10.0, reap=lambda: _reap(proc))
        shutil.rmtree(logdir, ignore_errors=True)


def stack_up(stack: Any, workers: int | None = None) -> tuple[Any, float]:
    """Start the stack (its home must hold none) with ``workers`` render
    workers, or as many as it chooses itself; returns (state, seconds)."""
    started = time.monotonic()
    state = stack.up(workers=workers)
    return state, time.monotonic() - started
