"""Adapters: the small interfaces the domain code talks to, with the
implementations that talk to Google Cloud (or, unchanged, to the emulators,
which the client libraries find through the standard *_EMULATOR_HOST
variables).

    BlobStore       GCS bucket (fake-gcs-server locally)
    Publisher       Pub/Sub topics of the namespace
    StitchLauncher  local process | Cloud Run Job execution

Clients are built by ``Clients.from_settings`` at an entry point and passed
down; nothing here is built at import time.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ._names import Namespace
from .errors import PovstormError, TransientError, from_google
from .settings import Settings, local_logs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobInfo:
    name: str
    generation: int
    size: int
    metadata: dict[str, str]


class BlobStore(Protocol):
    def exists(self, name: str) -> bool: ...
    def info(self, name: str) -> BlobInfo | None: ...
    def upload_bytes(
        self, name: str, data: bytes, content_type: str = ..., metadata: dict[str, str] | None = ...
    ) -> int: ...
    def upload_file(
        self, name: str, path: Path, content_type: str = ..., metadata: dict[str, str] | None = ...
    ) -> int: ...
    def read_bytes(self, name: str) -> bytes: ...
    def download_to(self, name: str, path: Path) -> None: ...
    def list(self, prefix: str) -> Iterator[BlobInfo]: ...


class Publisher(Protocol):
    def publish(self, topic_key: str, data: bytes, **attributes: str) -> None: ...
    def publish_many(self, topic_key: str, payloads: list[bytes]) -> None: ...


class StitchLauncher(Protocol):
    def launch(self, job_id: str) -> None: ...


# --- GCS ---------------------------------------------------------------------


def storage_client(project: str) -> Any:
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client(project=project)


class GcsBlobStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = client.bucket(bucket)
        self.bucket_name = bucket

    @staticmethod
    def _info(blob: Any) -> BlobInfo:
        return BlobInfo(
            name=blob.name,
            generation=int(blob.generation or 0),
            size=int(blob.size or 0),
            metadata=dict(blob.metadata or {}),
        )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return fn(*args, **kwargs)
        except gexc.NotFound:
            raise
        except gexc.GoogleAPICallError as exc:
            raise from_google(exc) from exc
        except (ConnectionError, OSError) as exc:
            raise TransientError(f"storage unreachable: {exc}") from exc

    def exists(self, name: str) -> bool:
        return bool(self._call(self._bucket.blob(name).exists))

    def info(self, name: str) -> BlobInfo | None:
        blob = self._call(self._bucket.get_blob, name)
        return self._info(blob) if blob is not None else None

    def upload_bytes(
        self,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> int:
        blob = self._bucket.blob(name)
        if metadata:
            blob.metadata = metadata
        self._call(blob.upload_from_string, data, content_type=content_type)
        return int(blob.generation or 0)

    def upload_file(
        self,
        name: str,
        path: Path,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> int:
        blob = self._bucket.blob(name)
        if metadata:
            blob.metadata = metadata
        self._call(blob.upload_from_filename, str(path), content_type=content_type)
        return int(blob.generation or 0)

    def read_bytes(self, name: str) -> bytes:
        return bytes(self._call(self._bucket.blob(name).download_as_bytes))

    def download_to(self, name: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        self._call(self._bucket.blob(name).download_to_filename, str(tmp))
        tmp.replace(path)

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        for blob in self._call(self._client.list_blobs, self._bucket, prefix=prefix):
            yield self._info(blob)


# --- Pub/Sub -----------------------------------------------------------------


class PubSubPublisher:
    def __init__(self, client: Any, project: str, namespace: Namespace) -> None:
        self._client = client
        self._project = project
        self._ns = namespace

    def _path(self, topic_key: str) -> str:
        return self._client.topic_path(self._project, self._ns.topic(topic_key))

    def publish(self, topic_key: str, data: bytes, **attributes: str) -> None:
        self.publish_many(topic_key, [data], **attributes)

    def publish_many(self, topic_key: str, payloads: list[bytes], **attributes: str) -> None:
        """Publish and wait for every message id: a publish is a side effect
        that must be confirmed before the caller acknowledges its own event."""
        from google.api_core import exceptions as gexc

        path = self._path(topic_key)
        futures = [self._client.publish(path, p, **attributes) for p in payloads]
        try:
            for f in futures:
                f.result(timeout=60)
        except gexc.GoogleAPICallError as exc:
            raise from_google(exc) from exc
        except Exception as exc:  # the publisher's own timeout and batch errors
            raise TransientError(f"publish to {path} failed: {exc}") from exc


def publisher_client() -> Any:
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.01)
    )


# --- Stitch launchers --------------------------------------------------------


STITCH_MODULE = "stitch_container.main"


class LocalStitchLauncher:
    """Runs the stitch container's entry point as a detached local process,
    with the same settings the caller has, logging to
    ``log_dir/stitch-JOB.log`` (by default the local stack's logs, where
    ``povstorm local logs stitch-JOB`` reads it). The stitch is idempotent,
    so a second launch of the same job is harmless. It inherits the caller's
    POVSTORM_HOME, by which ``povstorm local down`` finds and stops it."""

    def __init__(self, settings: Settings, log_dir: Path | None = None) -> None:
        self._settings = settings
        self._log_dir = log_dir or local_logs()

    def launch(self, job_id: str) -> None:
        env = {**os.environ, **self._settings.to_env()}
        root = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
        try:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            with open(self._log_dir / f"stitch-{job_id}.log", "ab") as out:
                subprocess.Popen(
                    [sys.executable, "-m", STITCH_MODULE, job_id],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise TransientError(f"cannot start the stitch for {job_id}: {exc}") from exc


class CloudRunStitchLauncher:
    """Starts an execution of the stitch Cloud Run Job with the job id as its
    argument. run_job has no idempotency key: the ledger claims the stitch
    first, and the stitch itself is idempotent."""

    def __init__(self, client: Any, job_name: str) -> None:
        self._client = client
        self._job_name = job_name

    def launch(self, job_id: str) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import run_v2

        request = run_v2.RunJobRequest(
            name=self._job_name,
            overrides=run_v2.RunJobRequest.Overrides(
                container_overrides=[
                    run_v2.RunJobRequest.Overrides.ContainerOverride(args=[job_id])
                ]
            ),
        )
        try:
            # Do not wait for the execution: the stitch reports into the ledger.
            self._client.run_job(request=request)
        except gexc.GoogleAPICallError as exc:
            raise from_google(exc) from exc


def stitch_launcher(settings: Settings, log_dir: Path | None = None) -> StitchLauncher:
    if settings.stitch_launcher == "local":
        return LocalStitchLauncher(settings, log_dir)
    if settings.stitch_launcher == "cloud-run":
        from google.cloud import run_v2

        return CloudRunStitchLauncher(run_v2.JobsClient(), settings.stitch_job)
    raise PovstormError(f"unknown stitch launcher {settings.stitch_launcher!r}")


def firestore_client(project: str) -> Any:
    from google.cloud import firestore

    return firestore.Client(project=project)


@dataclass
class Clients:
    """The cloud clients of one process, built once at its entry point."""

    settings: Settings
    db: Any
    blobs: BlobStore
    publisher: Publisher
    launcher: StitchLauncher

    @classmethod
    def from_settings(cls, settings: Settings, log_dir: Path | None = None) -> Clients:
        return cls(
            settings=settings,
            db=firestore_client(settings.project),
            blobs=GcsBlobStore(storage_client(settings.project), settings.bucket),
            publisher=PubSubPublisher(
                publisher_client(), settings.project, Namespace(settings.namespace)
            ),
            launcher=stitch_launcher(settings, log_dir),
        )


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str).encode()
