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

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from povstorm.cloud.blobs import BlobStore, GcsBlobStore, storage_client
from povstorm.cloud.launchers import StitchLauncher, stitch_launcher
from povstorm.cloud.pubsub import Publisher, PubSubPublisher, publisher_client
from povstorm.core.names import Namespace
from povstorm.core.settings import Settings

log = logging.getLogger(__name__)


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
