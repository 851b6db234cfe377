"""Adapters: the small interfaces the domain code talks to, with the
implementations that talk to Google Cloud, or unchanged to the emulators,
whose endpoints come from ``Settings.endpoints`` (read from the standard
*_EMULATOR_HOST variables at the edge, never written to ``os.environ``).

    BlobStore       GCS bucket (fake-gcs-server locally)
    Publisher       Pub/Sub topics of the namespace
    StitchLauncher  local process | Cloud Run Job execution
    RenderLauncher  the local task runner | render Cloud Run Job executions
                    (None: workers started by other means pull the work)

Clients are built by ``Clients.from_settings`` at an entry point and passed
down; nothing here is built at import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from povstorm.cloud.blobs import BlobStore, GcsBlobStore, storage_client
from povstorm.cloud.launchers import (
    RenderLauncher,
    StitchLauncher,
    render_launcher,
    stitch_launcher,
)
from povstorm.cloud.pubsub import Publisher, PubSubPublisher, publisher_client
from povstorm.core.names import Namespace
from povstorm.core.settings import Settings

log = logging.getLogger(__name__)


def firestore_client(project: str, emulator_host: str = "") -> Any:
    """A Firestore client; with ``emulator_host``, one for the Firestore emulator.

    firestore.Client takes its emulator from FIRESTORE_EMULATOR_HOST in
    os.environ and nowhere else. Rather than write that variable (global
    state every other client in the process would see), the endpoint is set
    on the client itself: ``_emulator_host`` is private, read by the client for
    its channel and its auth header, and the reason google-cloud-firestore is
    pinned to its major version in pyproject.toml.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    if emulator_host:
        client = firestore.Client(project=project, credentials=AnonymousCredentials())
        client._emulator_host = emulator_host
        return client
    return firestore.Client(project=project)


@dataclass
class Clients:
    """The cloud clients of one process, built once at its entry point."""

    settings: Settings
    db: Any
    blobs: BlobStore
    publisher: Publisher
    launcher: StitchLauncher
    render: RenderLauncher | None = None

    @classmethod
    def from_settings(cls, settings: Settings, log_dir: Path | None = None) -> Clients:
        return cls(
            settings=settings,
            db=firestore_client(settings.project, settings.endpoints.firestore),
            blobs=GcsBlobStore(
                storage_client(settings.project, settings.endpoints.storage), settings.bucket
            ),
            publisher=PubSubPublisher(
                publisher_client(settings.endpoints.pubsub),
                settings.project,
                Namespace(settings.namespace),
            ),
            launcher=stitch_launcher(settings, log_dir),
            render=render_launcher(settings, log_dir),
        )
