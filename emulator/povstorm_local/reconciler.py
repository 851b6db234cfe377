"""The reconciler loop of the local stack.

On GCP, Cloud Scheduler calls the ``reconcile`` function every few minutes;
locally this process calls ``povstorm.farm.reconcile.reconcile`` every
``--interval`` seconds with clients built from the environment the stack gives
it. A failed pass is logged and the next one tried: the reconciler exists to
repair what crashes leave behind, so it must not be the thing that stops.

With ``--snapshots DIR`` a thread of this process also exports the ledger
into DIR soon after a job changes (``snapshots.Snapshotter``).

    python -m povstorm_local.reconciler --interval SECONDS [--log-dir DIR]
        [--heartbeat FILE] [--snapshots DIR]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .procs import write_heartbeat
from .snapshots import Snapshots, Snapshotter

log = logging.getLogger("povstorm.reconciler")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m povstorm_local.reconciler",
        description="Run povstorm's reconciler periodically.",
    )
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between passes (default 10)"
    )
    parser.add_argument("--log-dir", type=Path, help="where a relaunched stitch writes its log")
    parser.add_argument("--heartbeat", type=Path, help="rewrite this status file every second")
    parser.add_argument("--once", action="store_true", help="run one pass and exit")
    parser.add_argument("--snapshots", type=Path, help="export the ledger into this directory")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be positive")
    try:
        from povstorm.cloud.clients import Clients
        from povstorm.core.errors import PovstormError
        from povstorm.core.logs import setup_logging
        from povstorm.core.settings import Settings
        from povstorm.farm.reconcile import reconcile
        from povstorm.ledger.ledger import Ledger
    except ImportError as exc:
        print(f"reconciler: cannot start: {exc}", file=sys.stderr)
        return 2
    setup_logging(stream=sys.stdout)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    settings = Settings.from_env()
    clients = Clients.from_settings(settings, log_dir=args.log_dir)
    passes, last = 0, "no pass yet"
    snapshotter = None
    if args.snapshots and not args.once:
        snapshotter = Snapshotter(
            Snapshots(args.snapshots),
            f"http://{settings.endpoints.firestore}",
            settings.project,
            Ledger(clients.db).changed_since,
        )
        threading.Thread(target=snapshotter.run, args=(stop,), daemon=True).start()

    def beat() -> None:
        if args.heartbeat:
            summary = f"{passes} passes, last: {last}"
            if snapshotter is not None:
                summary += f"; {snapshotter.exports} ledger snapshots"
                if snapshotter.last_error:
                    summary += f" (last: {snapshotter.last_error[:200]})"
            write_heartbeat(args.heartbeat, summary=summary, passes=passes)

    beat()
    while not stop.is_set():
        started = time.monotonic()
        try:
            report = reconcile(clients).as_dict()
            repaired = {k: v for k, v in report.items() if v}
            last = "nothing to repair" if not repaired else f"{repaired}"
            if repaired:
                log.info("reconciled: %s", repaired)
        except PovstormError as exc:
            last = f"error: {exc}"
            log.warning("reconcile pass failed: %s", exc)
        except Exception as exc:
            last = f"error: {type(exc).__name__}: {exc}"
            log.exception("reconcile pass failed")
        passes += 1
        beat()
        if args.once:
            break
        # Wake every second to keep the heartbeat fresh and to stop promptly.
        while not stop.wait(1.0) and time.monotonic() - started < args.interval:
            beat()
    return 0


if __name__ == "__main__":
    sys.exit(main())
