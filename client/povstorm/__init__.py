"""povstorm: render POV-Ray animations on Google Cloud (or a local emulator
stack) and get a video back.

The client API (Cluster, Job, WorkUnit) lives in ``povstorm.client``; it is
not imported here because the functions and containers import this package
and must not pull in the client and the local stack it can start.
"""

from povstorm.core.errors import (
    PovstormError,
    RenderError,
    SceneError,
    SpecError,
    StackError,
    TransientError,
    UnknownJob,
    UserError,
)
from povstorm.core.model import JobState, UnitState
from povstorm.core.settings import Settings

__all__ = [
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
]
__version__ = "0.1.0"
