"""povstorm: render POV-Ray animations on Google Cloud (or a local emulator
stack) and get a video back."""

from .errors import (
    PovstormError,
    RenderError,
    SceneError,
    SpecError,
    StackError,
    TransientError,
    UnknownJob,
    UserError,
)
from .model import JobState, UnitState
from .settings import Settings

__all__ = [
    "Cluster",
    "Job",
    "JobResult",
    "JobState",
    "PovstormError",
    "RenderError",
    "SceneError",
    "Settings",
    "SpecError",
    "StackError",
    "TransientError",
    "UnitState",
    "UnknownJob",
    "UserError",
    "WorkUnit",
]
__version__ = "0.1.0"

_CLIENT_API = ("Cluster", "Job", "JobResult", "WorkUnit")


def __getattr__(name: str) -> object:
    # The client API is loaded on first use: the functions and containers
    # import povstorm too, and need neither it nor what it imports.
    if name in _CLIENT_API:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'povstorm' has no attribute {name!r}")
