"""Cloud Functions (2nd gen) source root: Cloud Functions loads ``main.py``.
The handlers live in ``povstorm.shells.functions``."""

from povstorm.shells.functions import frame_failed, frame_finalized, job_event, reconcile, submit

__all__ = ["frame_failed", "frame_finalized", "job_event", "reconcile", "submit"]
