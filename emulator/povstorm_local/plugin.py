"""The local stack as the client sees it: the entry point ``povstorm.stacks``
/ ``local`` (pyproject.toml) names ``PLUGIN``, through which
``povstorm.client.Cluster.local()`` and the ``povstorm local`` subcommand
reach this package without povstorm importing it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from povstorm.core.errors import StackError
from povstorm.core.settings import Settings, povstorm_home

from . import procs as _procs
from .stack import LocalStack


class LocalStackPlugin:
    def connect(
        self, home: Path | None, *, start: bool, workers: int | None
    ) -> tuple[Settings, Callable[[], object] | None]:
        stack = LocalStack(home or povstorm_home())
        state = stack.load()
        stop = None
        if state is None or not stack.healthy(state):
            if not start:
                stopped = [
                    c.name
                    for c in (state.components.values() if state is not None else ())
                    if not _procs.group_members(c.pgid)
                ]
                what = (
                    f"the local stack's {', '.join(stopped)} stopped"
                    if stopped
                    else "the local stack is not running"
                    if state is None
                    else "the local stack is not healthy (`povstorm local status` says why)"
                )
                raise StackError(f"{what}: start it with `povstorm local up`")
            state = stack.up(workers=workers)
            stop = stack.down
        return state.settings(), stop

    def watchdog(self, home: Path | None, settings: Settings) -> Callable[[], str]:
        stack = LocalStack(home or povstorm_home())
        firestore = settings.endpoints.firestore

        def check() -> str:
            try:
                state = stack.read_state()
            except StackError as exc:
                return str(exc)
            if state is None or "firestore" not in state.components:
                return "the local stack is not running"
            if state.components["firestore"].address != firestore:
                return "the local stack was restarted at another address"
            stopped = [
                c.name for c in state.components.values() if not _procs.group_members(c.pgid)
            ]
            return f"the local stack's {', '.join(stopped)} stopped" if stopped else ""

        return check

    def add_cli(self, subparsers: Any) -> None:
        from .cli import add_parser

        add_parser(subparsers)


PLUGIN = LocalStackPlugin()
