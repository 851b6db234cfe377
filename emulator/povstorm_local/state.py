"""What describes a local stack: the names of its components, which of them
listen on a port, its defaults, and the record of a running stack that
``<home>/local/stack.json`` holds (``StackState``). Clients and test harnesses
use ``StackState`` on its own (``state.settings()``, ``state.apply_env()``);
nothing here starts or checks a process."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any

from povstorm.core.settings import Settings

DEFAULT_PROJECT = "povstorm-local"
DEFAULT_BUCKET = "povstorm-local"
HOST = "127.0.0.1"
STATE_VERSION = 1

INFRA = ("firestore", "pubsub", "gcs")
FUNCTION_COMPONENTS = ("submit", "frame_finalized", "frame_failed", "job_event")
FARM = (*FUNCTION_COMPONENTS, "tasks", "reconciler", "stitcher")
COMPONENTS = (*INFRA, *FARM)
PORTED = (*INFRA, *FUNCTION_COMPONENTS)
SIGNATURES = {
    "submit": "http",
    "frame_finalized": "cloudevent",
    "frame_failed": "cloudevent",
    "job_event": "cloudevent",
}


@dataclass(frozen=True)
class Component:
    """One running component: its process group and where it answers."""

    name: str
    pid: int
    pgid: int
    log: str
    port: int | None = None
    url: str = ""
    # Every live member of the group once it was healthy (e.g. gcloud's java child).
    members: tuple[int, ...] = ()
    start_ticks: int | None = None
    command: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}" if self.port else ""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    address: str
    pid: int
    pgid: int
    healthy: bool
    detail: str
    log: str


@dataclass(frozen=True)
class StackState:
    """What ``stack.json`` records about a running stack; how clients use it."""

    home: str
    project: str
    bucket: str
    namespace: str
    submit_url: str
    started: str
    env: dict[str, str]
    components: dict[str, Component] = field(default_factory=dict)
    farm: bool = False
    workers: int = 0
    ready: bool = False
    version: int = STATE_VERSION

    def apply_env(self, environ: MutableMapping[str, str]) -> None:
        """Put this stack's variables into ``environ``: the environment of a
        child process, or a test harness's. Clients in this process use
        ``settings()`` instead, whose endpoints are explicit."""
        environ.update(self.env)

    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["components"] = [asdict(c) for c in self.components.values()]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackState:
        comps = {}
        for c in data.get("components", []):
            c = {
                **c,
                "members": tuple(c.get("members", ())),
                "command": tuple(c.get("command", ())),
            }
            comps[c["name"]] = Component(**c)
        return cls(**{**data, "components": comps})

    def pgids(self, names: tuple[str, ...] = COMPONENTS) -> list[int]:
        return [c.pgid for c in self.components.values() if c.name in names]
