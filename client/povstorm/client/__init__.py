"""The client: the Python API (Cluster, Job, WorkUnit, JobResult), live
progress from Firestore listeners, and the ``povstorm`` command."""

from povstorm.client.api import Cluster, Job, JobResult, WorkUnit

__all__ = ["Cluster", "Job", "JobResult", "WorkUnit"]
