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
                raise StackError(
                    "the local stack is not running: start it with `povstorm local up`"
                )
            state = stack.up(workers=workers)
            stop = stack.down
        return state.settings(), stop

    def add_cli(self, subparsers: Any) -> None:
        from .cli import add_parser

        add_parser(subparsers)


PLUGIN = LocalStackPlugin()
