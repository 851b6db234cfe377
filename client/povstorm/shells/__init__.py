"""The shells: the entry points the platform calls, each thin over the domain.

``functions`` holds the Cloud Functions (submit, frame_finalized,
frame_failed, reconcile), ``render_task`` a render task's command (a task of
the render Cloud Run Job, pulling work), ``stitch_job`` the stitch's command. Each parses its event, calls
``povstorm.farm``, ``povstorm.worker`` or ``povstorm.stitch``, and lets
``povstorm.core.errors.verdict`` say what an error means to its caller; each
sets up logging with ``povstorm.core.logs.setup_logging``.
"""
