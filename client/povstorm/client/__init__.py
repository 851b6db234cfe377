"""The client: the Python API (Cluster, Job, WorkUnit, JobResult), live
progress from Firestore listeners, and the ``povstorm`` command."""

from povstorm.client.cluster import Cluster, JobResult, Preview
from povstorm.client.job import Job, WorkUnit
from povstorm.client.proof import Proof, ProofFailed
from povstorm.farm.cleanup import Removal

__all__ = [
    "Cluster",
    "Job",
    "JobResult",
    "Preview",
    "Proof",
    "ProofFailed",
    "Removal",
    "WorkUnit",
]
