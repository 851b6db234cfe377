"""The client: the Python API (Cluster, Job, WorkUnit, JobResult, Sweep),
live progress from Firestore listeners, and the ``povstorm`` command."""

from povstorm.client.cluster import Cluster, JobResult, Preview
from povstorm.client.job import Job, WorkUnit
from povstorm.client.proof import Proof, ProofFailed
from povstorm.client.sweep import Sweep, SweepResult
from povstorm.farm.cleanup import Removal

__all__ = [
    "Cluster",
    "Job",
    "JobResult",
    "Preview",
    "Proof",
    "ProofFailed",
    "Removal",
    "Sweep",
    "SweepResult",
    "WorkUnit",
]
