"""The render-worker supervisor of the local stack.

In the cloud the render service scales itself and Cloud Run replaces a crashed
instance; locally this process plays that part: it keeps N
``python -m povstorm_local.pull_worker`` processes pulling from the ``work``
subscription, restarts one that dies (after a short, growing backoff, and says
so in its log), and stops them all on SIGTERM. ``povstorm local up`` starts it
in its own process group, so ``down`` reaches the workers too.

    python -m povstorm_local.workers --count N [--log-dir DIR] [--heartbeat FILE]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from povstorm.core.logs import setup_logging

from .procs import write_heartbeat

log = logging.getLogger("povstorm.workers")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
# A worker that ran this long before dying crashed on a unit, not at startup:
# restart it promptly instead of backing off further.
STABLE_AFTER = 60.0
STOP_GRACE = 8.0


@dataclass
class Slot:
    index: int
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_FIRST
    next_start: float = 0.0


class Supervisor:
    def __init__(self, count: int, module: str, log_dir: Path | None, heartbeat: Path | None):
        self.slots = [Slot(i) for i in range(1, count + 1)]
        self.module = module
        self.log_dir = log_dir
        self.heartbeat = heartbeat
        self.stopping = threading.Event()

    def _start(self, slot: Slot) -> None:
        out = None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"worker-{slot.index}.log", "ab")  # noqa: SIM115
        try:
            # Same process group as the supervisor: killpg on the group stops all.
            slot.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
            )
        except OSError as exc:
            log.error("cannot start worker-%d: %s", slot.index, exc)
            slot.proc = None
            self._schedule_restart(slot, time.monotonic(), ran=0.0)
            return
        finally:
            if out:
                out.close()
        slot.started = time.monotonic()
        log.info("worker-%d started (pid %d)", slot.index, slot.proc.pid)

    def _schedule_restart(self, slot: Slot, now: float, ran: float) -> float:
        """Wait 1, 2, 4... up to 30 s between restarts of a worker that keeps
        dying; the delay returns to 1 s once a worker has run for a while."""
        if ran >= STABLE_AFTER:
            slot.backoff = BACKOFF_FIRST
        delay = slot.backoff
        slot.backoff = min(slot.backoff * 2, BACKOFF_MAX)
        slot.next_start = now + delay
        slot.restarts += 1
        return delay

    def step(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is not None:
                ran = now - slot.started
                code = slot.proc.returncode
                slot.proc = None
                if self.stopping.is_set():
                    continue
                delay = self._schedule_restart(slot, now, ran)
                log.warning(
                    "worker-%d exited with %s after %.1fs; restarting in %.0fs (restart %d)",
                    slot.index,
                    code,
                    ran,
                    delay,
                    slot.restarts,
                )
            if slot.proc is None and now >= slot.next_start and not self.stopping.is_set():
                self._start(slot)
        self._beat()

    def _beat(self) -> None:
        if not self.heartbeat:
            return
        running = sum(1 for s in self.slots if s.proc is not None)
        restarts = sum(s.restarts for s in self.slots)
        write_heartbeat(
            self.heartbeat,
            summary=f"{running}/{len(self.slots)} workers running, {restarts} restarts",
            running=running,
            workers=[
                {"slot": s.index, "pid": s.proc.pid if s.proc else None, "restarts": s.restarts}
                for s in self.slots
            ],
        )

    def run(self) -> int:
        while not self.stopping.is_set():
            self.step()
            self.stopping.wait(0.5)
        self.stop()
        return 0

    def stop(self) -> None:
        """SIGTERM to every worker (a unit in progress is redelivered by Pub/Sub),
        SIGKILL to one that does not exit within the grace period."""
        procs = [s.proc for s in self.slots if s.proc is not None and s.proc.poll() is None]
        for p in procs:
            p.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d ignored SIGTERM; killing it", p.pid)
                p.kill()
                p.wait()
        log.info("all workers stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m povstorm_local.workers", description="Keep N render workers running."
    )
    parser.add_argument(
        "--count", type=int, default=os.cpu_count() or 1, help="workers to run (default: CPUs)"
    )
    parser.add_argument(
        "--module",
        default="povstorm_local.pull_worker",
        help="the worker module, run as `python -m MODULE` (default: povstorm_local.pull_worker)",
    )
    parser.add_argument("--log-dir", type=Path, help="write worker-N.log here (default: inherit)")
    parser.add_argument("--heartbeat", type=Path, help="rewrite this status file every 0.5 s")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    setup_logging(stream=sys.stdout)
    sup = Supervisor(args.count, args.module, args.log_dir, args.heartbeat)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping the workers", signum)
        sup.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("supervising %d x python -m %s", args.count, args.module)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
