"""Configuration, read once at the edge and passed down.

Precedence: flag > environment > file (the local stack's state file, or the
terraform outputs JSON) > default. Entry points call ``Settings.from_env()``
(optionally ``.with_overrides(...)`` for flags); nothing below them reads the
environment.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from povstorm.core.names import DEFAULTS, ENV

EMULATOR_VARS = ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")


def povstorm_home(environ: dict[str, str] | None = None) -> Path:
    """The client's state directory (the local stack lives in its ``local/``)."""
    env = os.environ if environ is None else environ
    return Path(env.get(ENV["home"]) or Path.home() / ".povstorm")


def local_logs(home: Path | None = None) -> Path:
    """Where the local stack's processes, and the stitches they start, log."""
    return (home or povstorm_home()) / "local" / "logs"


def local_run(home: Path | None = None) -> Path:
    """Where the local stack keeps its state, heartbeats and sockets."""
    return (home or povstorm_home()) / "local" / "run"


@dataclass(frozen=True)
class Endpoints:
    """Where the clients connect: the emulators of a local stack, or Google
    Cloud where a field is empty. Read from the standard variables at the
    edge and then handed to the client factories (``povstorm.cloud.clients``),
    so no code has to put them into ``os.environ`` for a library to find."""

    firestore: str = ""  # host:port of the Firestore emulator
    pubsub: str = ""  # host:port of the Pub/Sub emulator
    storage: str = ""  # URL of fake-gcs-server

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Endpoints:
        firestore, pubsub, storage = (environ.get(var, "") for var in EMULATOR_VARS)
        return cls(firestore=firestore, pubsub=pubsub, storage=storage)

    def to_env(self) -> dict[str, str]:
        values = (self.firestore, self.pubsub, self.storage)
        return {var: value for var, value in zip(EMULATOR_VARS, values, strict=True) if value}


@dataclass(frozen=True)
class Settings:
    project: str = "povstorm-local"
    namespace: str = DEFAULTS["namespace"]
    bucket: str = "povstorm-local"
    region: str = "us-central1"
    submit_url: str = ""
    # "local": a process on this machine; "cloud-run": a Cloud Run Job execution.
    stitch_launcher: str = "local"
    stitch_job: str = ""
    # Who starts render tasks (cloud/launchers.py: RenderLauncher): "local",
    # the local stack's task runner; "cloud-run", executions of the render
    # Cloud Run Job ``render_job``; "none", nobody: workers started by other
    # means pull the work subscription (and tests that drive work by hand).
    render_launcher: str = "local"
    render_job: str = ""
    # A render task exits once a pull has found no work for this long.
    task_idle: float = 10.0
    worker_id: str = ""
    cache_dir: str = ""
    # A render task's budget, seconds from its start: no frame is begun that
    # would end past it (the chunk's rest is handed on), and the task exits.
    # terraform sets the render job's task timeout minus an upload margin.
    render_timeout: int = 3600
    # How many render tasks (each one POV-Ray process at a time) the
    # deployment runs at once: the local task runner's capacity, the render
    # job's parallelism. The chunk plan's width (core/chunks.py) and the
    # most tasks a launch asks for.
    render_slots: int = 1
    # +WT for each POV-Ray process, unless the job's own options set it; 0
    # leaves POV-Ray's default (a thread per core). The local stack runs more
    # processes than cores and sets 1, so threads never oversubscribe by accident.
    povray_threads: int = 0
    # The frame cache's limits (farm/cache.py): entries older than this many
    # days, then the oldest past this many bytes, are deleted; 0: no limit.
    frame_cache_days: float = 30.0
    frame_cache_bytes: int = 10 << 30
    # A job that ends expires this many days later: the ledger writes its
    # ``expire_at``, the field of Firestore's TTL policy on jobs (terraform
    # ``jobs_retention_days``); 0: jobs never expire (the local stack).
    jobs_retention_days: float = 0.0
    # The size of a render task and of the stitch's (terraform's
    # render_service_cpus/_ram, stitch_job_cpus/_ram; memory in Cloud Run's
    # syntax): a job records them at submit, and its cost (core/cost.py) is
    # computed with them. The local stack keeps the defaults, terraform's.
    render_cpus: float = 2.0
    render_memory: str = "2Gi"
    stitch_cpus: float = 2.0
    stitch_memory: str = "4Gi"
    # The deployment's key for signing job notifications (farm/notify.py):
    # only the job_event function is given it (terraform from Secret Manager,
    # the local stack from its state directory), so to_env leaves it out.
    notify_secret: str = field(default="", repr=False)
    endpoints: Endpoints = Endpoints()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        d = cls()

        def get(key: str, default: Any) -> Any:
            return env.get(ENV[key]) or default

        project = get("project", "") or env.get("GOOGLE_CLOUD_PROJECT") or d.project
        return cls(
            project=project,
            namespace=get("namespace", d.namespace),
            bucket=get("bucket", d.bucket),
            region=get("region", d.region),
            submit_url=get("submit_url", d.submit_url),
            stitch_launcher=get("stitch_launcher", d.stitch_launcher),
            stitch_job=get("stitch_job", d.stitch_job),
            render_launcher=get("render_launcher", d.render_launcher),
            render_job=get("render_job", d.render_job),
            task_idle=max(0.0, float(get("task_idle", d.task_idle))),
            worker_id=get("worker_id", "") or f"{socket.gethostname()}:{os.getpid()}",
            cache_dir=get("cache_dir", d.cache_dir),
            render_timeout=int(get("render_timeout", d.render_timeout)),
            render_slots=max(1, int(get("render_slots", d.render_slots))),
            povray_threads=max(0, int(get("povray_threads", d.povray_threads))),
            frame_cache_days=max(0.0, float(get("frame_cache_days", d.frame_cache_days))),
            frame_cache_bytes=max(0, int(get("frame_cache_bytes", d.frame_cache_bytes))),
            jobs_retention_days=max(0.0, float(get("jobs_retention_days", d.jobs_retention_days))),
            render_cpus=float(get("render_cpus", d.render_cpus)),
            render_memory=get("render_memory", d.render_memory),
            stitch_cpus=float(get("stitch_cpus", d.stitch_cpus)),
            stitch_memory=get("stitch_memory", d.stitch_memory),
            notify_secret=get("notify_secret", ""),
            endpoints=Endpoints.from_env(env),
        )

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """The environment that hands these settings to a child process."""
        return {
            ENV["project"]: self.project,
            ENV["namespace"]: self.namespace,
            ENV["bucket"]: self.bucket,
            ENV["region"]: self.region,
            ENV["submit_url"]: self.submit_url,
            ENV["stitch_launcher"]: self.stitch_launcher,
            ENV["stitch_job"]: self.stitch_job,
            ENV["render_launcher"]: self.render_launcher,
            ENV["render_job"]: self.render_job,
            ENV["task_idle"]: f"{self.task_idle:g}",
            ENV["render_timeout"]: str(self.render_timeout),
            ENV["render_slots"]: str(self.render_slots),
            ENV["povray_threads"]: str(self.povray_threads),
            ENV["frame_cache_days"]: f"{self.frame_cache_days:g}",
            ENV["frame_cache_bytes"]: str(self.frame_cache_bytes),
            ENV["jobs_retention_days"]: f"{self.jobs_retention_days:g}",
            ENV["render_cpus"]: f"{self.render_cpus:g}",
            ENV["render_memory"]: self.render_memory,
            ENV["stitch_cpus"]: f"{self.stitch_cpus:g}",
            ENV["stitch_memory"]: self.stitch_memory,
            **self.endpoints.to_env(),
        }
