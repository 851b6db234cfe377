"""How the client reaches a local stack without importing one.

The local stack (``povstorm_local``, in emulator/) imports povstorm; povstorm
never imports it. It plugs in through a Python entry point in the group
``povstorm.stacks`` (declared in pyproject.toml), which gives ``Cluster.local()``
the settings of a running stack and gives ``povstorm`` its ``local``
subcommand. An installation without the local stack still has a working
client for a cloud deployment.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from povstorm.core.errors import StackError
from povstorm.core.settings import Settings

GROUP = "povstorm.stacks"


class StackPlugin(Protocol):
    def connect(
        self, home: Path | None, *, start: bool, workers: int | None
    ) -> tuple[Settings, Callable[[], object] | None]:
        """The settings of a running stack (started if ``start`` and it is not
        running), and what stops it again if this call started it."""
        ...

    def watchdog(self, home: Path | None, settings: Settings) -> Callable[[], str]:
        """A quick check of the stack ``settings`` came from, for a client
        waiting on it: "" while every process of it runs, else one line
        saying what stopped (or that another stack replaced it)."""
        ...

    def add_cli(self, subparsers: Any) -> None:
        """Add the stack's own subcommand to ``povstorm``'s parser."""
        ...


def find(name: str = "local") -> StackPlugin | None:
    found = entry_points(group=GROUP, name=name)
    return next((ep.load() for ep in found), None)


def require(name: str = "local") -> StackPlugin:
    plugin = find(name)
    if plugin is None:
        raise StackError(
            f"no {name} stack is installed (the povstorm_local package): "
            "install povstorm with its local stack, or pass --cluster OUTPUTS.json"
        )
    return plugin


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    for ep in entry_points(group=GROUP):
        ep.load().add_cli(subparsers)
