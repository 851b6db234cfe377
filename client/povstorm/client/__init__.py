"""The client: the Python API (Cluster, Job, WorkUnit, JobResult), live
progress from Firestore listeners, and the ``povstorm`` command."""

from povstorm.client.cluster import Cluster, JobResult
from povstorm.client.job import Job, WorkUnit

__all__ = ["Cluster", "Job", "JobResult", "WorkUnit"]
