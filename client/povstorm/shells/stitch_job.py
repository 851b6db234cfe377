"""The stitch: ``python -m povstorm.shells.stitch_job JOB_ID``.

Launched by the ledger's claim when a job's last unit lands (a Cloud Run Job
execution; locally a process). A thin shell over ``povstorm.stitch.job.stitch``:
exit 0 when the job is stitched or there is nothing to do, 1 when the stitch
failed (recorded on the job) or an outage stopped it (the reconciler launches
it again), 2 for a bad job id.

``python -m povstorm.shells.stitch_job JOB --video KEY`` makes another video
of a done job from its frames instead (``povstorm stitch JOB``; KEY is
``core.naming.video_key``'s, its settings in the job's ``videos`` map):
``povstorm.stitch.job.restitch``, which records its result on that entry and
leaves the job as it is. The same exit codes.
"""

from __future__ import annotations

import argparse
import sys

from povstorm.cloud.clients import Clients
from povstorm.core.errors import PovstormError, UserError, verdict
from povstorm.core.logs import setup_logging
from povstorm.core.settings import Settings
from povstorm.ledger.ledger import Ledger
from povstorm.stitch.job import restitch, stitch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="povstorm.shells.stitch_job",
        description="Stitch a job's frames into a video, a poster and stats (idempotent).",
    )
    parser.add_argument("job_id", help="the job to stitch; it must be in state 'stitching'")
    parser.add_argument(
        "--video",
        metavar="KEY",
        help="make this video of the job's videos map again from its frames (a done job)",
    )
    args = parser.parse_args(argv)
    setup_logging()
    try:
        clients = Clients.from_settings(Settings.from_env())
        ledger = Ledger(clients.db)
        outcome = (
            stitch(clients, ledger, args.job_id)
            if args.video is None
            else restitch(clients, ledger, args.job_id, args.video)
        )
    except PovstormError as exc:
        # A bad job id is the caller's; anything else names the job it stopped.
        where = "stitch" if isinstance(exc, UserError) else f"stitch {args.job_id}"
        print(f"{where}: {exc}", file=sys.stderr)
        return verdict(exc).exit_code
    print(outcome.line(), file=sys.stderr if outcome.exit_code else sys.stdout)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
