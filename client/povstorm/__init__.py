"""povstorm: render POV-Ray animations on Google Cloud (or a local emulator
stack) and get a video back."""

from .client import Cluster, Job, JobResult, WorkUnit
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
