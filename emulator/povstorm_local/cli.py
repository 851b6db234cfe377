"""``povstorm local ...``: start, inspect and stop the local stack.

Thin over ``povstorm_local.stack.LocalStack``; the stack lives in
``$POVSTORM_HOME/local`` (default ``~/.povstorm/local``). Errors are raised as
povstorm exceptions and turned into one line and an exit code by
``povstorm.client.cli.main``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections import deque
from typing import Any

from povstorm.core.errors import StackError, UserError
from povstorm.core.settings import povstorm_home

from .stack import LocalStack
from .state import PORTED, StackState

EPILOG = """\
examples:
  povstorm local up                     emulators, functions, one render worker per core
  povstorm local up --infra-only        the emulators and their wiring only
  eval "$(povstorm local env)"          point this shell's clients at the stack
  povstorm local logs tasks -f          follow the task runner (render-EXEC-N for each task)
  povstorm local down                   stop; the next `up` continues every job
  povstorm local down --wipe            stop, and delete every job, frame and video
"""


def add_parser(subparsers: Any) -> None:
    local = subparsers.add_parser(
        "local",
        help="start, inspect and stop the local emulator stack",
        description="The local stack: Firestore and Pub/Sub emulators, fake-gcs-server, "
        "the functions, a render task runner and the reconciler, under $POVSTORM_HOME/local.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = local.add_subparsers(dest="local_command", required=True, metavar="SUBCOMMAND")

    up = sub.add_parser("up", help="start the stack (a running one is left as it is)")
    up.add_argument(
        "--workers",
        type=int,
        help="render tasks at once, each running one single-threaded POV-Ray "
        "(default: two per CPU core, which keeps the cores busy while POV-Ray starts and "
        "moves between frames)",
    )
    up.add_argument(
        "--infra-only",
        action="store_true",
        help="start only the emulators, the bucket, topics and subscriptions",
    )
    up.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="COMPONENT=PORT",
        help=f"a fixed port ({', '.join(PORTED)}); default: free ports picked at start",
    )
    up.add_argument("--project", help="project id on the emulators (default povstorm-local)")
    up.add_argument("--bucket", help="bucket name (default povstorm-local)")
    up.add_argument("--namespace", help="prefix of topic and subscription names (default povstorm)")
    up.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for health (default 120)"
    )
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="each component with its address, pid and health")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(func=cmd_status)

    logs = sub.add_parser("logs", help="print (or follow) one component's log")
    logs.add_argument(
        "component",
        help="firestore, pubsub, gcs, submit, frame_finalized, ..., tasks, render-EXEC-N "
        "(a render task), or stitch-JOB (a job's stitch)",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument(
        "-n", "--lines", type=int, default=50, help="last lines to print (default 50)"
    )
    logs.set_defaults(func=cmd_logs)

    down = sub.add_parser("down", help="stop every process of the stack")
    down.add_argument(
        "--wipe",
        action="store_true",
        help="also delete the data (ledger, bucket contents, caches); logs are kept",
    )
    down.set_defaults(func=cmd_down)

    env = sub.add_parser("env", help="shell exports that point clients at the running stack")
    env.set_defaults(func=cmd_env)


def _stack() -> LocalStack:
    return LocalStack(povstorm_home())


def _ports(specs: list[str]) -> dict[str, int]:
    ports = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not value.isdigit():
            raise UserError(f"--port {spec!r}: write COMPONENT=PORT, e.g. pubsub=8085")
        ports[name] = int(value)
    return ports


def cmd_up(args: argparse.Namespace) -> int:
    stack = _stack()
    before = stack.load()
    started = time.monotonic()
    state = stack.up(
        args.workers,
        farm=not args.infra_only,
        ports=_ports(args.port),
        project=args.project,
        bucket=args.bucket,
        namespace=args.namespace,
        timeout=args.timeout,
    )
    restarted = [
        name
        for name, comp in (before.components.items() if before is not None else ())
        if name in state.components and state.components[name].pid != comp.pid
    ]
    if restarted:
        print(f"restarted {', '.join(restarted)} of the local stack in {stack.dir}")
    elif before is not None and before.components.keys() == state.components.keys():
        print(f"the local stack is already running in {stack.dir}")
    else:
        print(f"the local stack is up in {stack.dir} ({time.monotonic() - started:.1f}s)")
    print(
        f"project {state.project}, bucket {state.bucket}, namespace {state.namespace}"
        + (f", {state.workers} workers" if state.farm else " (infrastructure only)")
    )
    _print_table(stack)
    if stack.resumed:
        print(_resumed_line(stack.resumed))
    print('point a shell at it with: eval "$(povstorm local env)"')
    return 0


def _resumed_line(resumed: dict[str, list[str]]) -> str:
    """One line of what a restart repaired, e.g. ``resumed after the restart:
    1 job rebuilt from its manifest, 3 frames counted from the bucket``."""
    what = {
        "rebuilt": "job(s) rebuilt from their manifests",
        "cancelled": "job(s) cancelled again",
        "redispatched": "job(s) dispatched",
        "recovered": "frame(s) counted from the bucket",
        "republished": "unit(s) of lost work published again",
        "relaunched": "stitch(es) launched again",
    }
    parts = [f"{len(v)} {what[k]}" for k, v in resumed.items() if k in what]
    errors = resumed.get("errors") or []
    if errors:
        parts.append(f"{len(errors)} job(s) not resumed (the reconciler tries again): {errors[0]}")
    return "resumed after the restart: " + ", ".join(parts)


def cmd_status(args: argparse.Namespace) -> int:
    stack = _stack()
    statuses = stack.status()
    if args.json:
        print(json.dumps([dataclasses.asdict(s) for s in statuses], indent=2))
    else:
        _print_table(stack, statuses)
    return 0 if all(s.healthy for s in statuses) else 1


def _print_table(stack: LocalStack, statuses: list[Any] | None = None) -> None:
    statuses = stack.status() if statuses is None else statuses
    for s in statuses:
        health = "healthy" if s.healthy else "UNHEALTHY"
        print(f"  {s.name:<16} {s.address or '-':<21} pid {s.pid:<8} {health:<9} {s.detail}")


def cmd_logs(args: argparse.Namespace) -> int:
    if args.lines < 0:
        raise UserError("-n/--lines must not be negative")
    path = _stack().log_path(args.component)
    try:
        fh = path.open("r", errors="replace")
    except FileNotFoundError:
        raise StackError(f"no log for {args.component} yet ({path})") from None
    with fh:
        tail = deque(fh, maxlen=args.lines)
        sys.stdout.writelines(tail if args.lines else ())
        sys.stdout.flush()
        while args.follow:
            line = fh.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.3)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stack = _stack()
    state = stack.down(wipe=args.wipe)
    if state is None:
        print(f"no local stack was running in {stack.dir}")
    else:
        print(f"stopped the local stack in {stack.dir}")
    if args.wipe:
        print("deleted its data")
    elif state is not None:
        print("its jobs, frames and videos are kept for the next `povstorm local up`")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    state: StackState | None = _stack().load()
    if state is None:
        raise StackError("no local stack is running; start one with `povstorm local up`")
    for key, value in sorted(state.env.items()):
        print(f"export {key}={shlex.quote(value)}")
    return 0
