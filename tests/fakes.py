"""In-memory fakes at the adapter interfaces of povstorm.cloud, for fast tests
that run domain code (worker, stitch, farm operations) without the stack.

    MemoryBlobStore     BlobStore (cloud/blobs.py), dict-backed
    RecordingPublisher  Publisher (cloud/pubsub.py), records what was published
    RecordingLauncher   StitchLauncher (cloud/launchers.py), records launches
    RecordingRenderLauncher  RenderLauncher, records launches and cancels
    fake_clients        a Clients built from these

The ledger has no interface of its own (domain code takes the concrete
``Ledger``), so a test fakes only the calls the code under test makes and
hands it over with ``as_ledger``. POV-Ray and ffmpeg are never faked.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from povstorm.cloud.blobs import BlobInfo, BlobStore
from povstorm.cloud.clients import Clients
from povstorm.cloud.launchers import RenderLauncher, StitchLauncher
from povstorm.cloud.pubsub import Publisher
from povstorm.core.errors import NotFound, PovstormError
from povstorm.core.settings import Settings
from povstorm.ledger.ledger import Ledger


@dataclass
class StoredObject:
    data: bytes
    generation: int
    content_type: str
    metadata: dict[str, str]
    updated: float = 0.0


class MemoryBlobStore:
    """A bucket in a dict. Every write makes a new, larger generation (as GCS
    does), so a test can tell an overwrite from the original."""

    def __init__(self, bucket_name: str = "memory-bucket") -> None:
        self.bucket_name = bucket_name
        self.objects: dict[str, StoredObject] = {}
        self.downloads: list[str] = []  # names, in the order they were downloaded
        # GCS generations are microsecond timestamps: large and increasing.
        self._generations = itertools.count(1_700_000_000_000_000)
        self._lock = threading.Lock()  # the stitch downloads from several threads

    def _info(self, name: str, obj: StoredObject) -> BlobInfo:
        return BlobInfo(name, obj.generation, len(obj.data), dict(obj.metadata), obj.updated)

    def _get(self, name: str) -> StoredObject:
        with self._lock:
            obj = self.objects.get(name)
        if obj is None:
            raise NotFound(f"not found: gs://{self.bucket_name}/{name}")
        return obj

    def exists(self, name: str) -> bool:
        return name in self.objects

    def info(self, name: str) -> BlobInfo | None:
        obj = self.objects.get(name)
        return None if obj is None else self._info(name, obj)

    def upload_bytes(
        self,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> int:
        with self._lock:
            generation = next(self._generations)
            self.objects[name] = StoredObject(
                bytes(data), generation, content_type, dict(metadata or {}), time.time()
            )
        return generation

    def upload_file(
        self,
        name: str,
        path: Path,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> int:
        return self.upload_bytes(name, Path(path).read_bytes(), content_type, metadata)

    def read_bytes(self, name: str) -> bytes:
        return self._get(name).data

    def download_to(self, name: str, path: Path) -> None:
        data = self._get(name).data
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        with self._lock:
            self.downloads.append(name)

    def copy(
        self,
        source: str,
        name: str,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> int:
        return self.upload_bytes(name, self._get(source).data, content_type, metadata)

    def delete(self, name: str) -> bool:
        with self._lock:
            return self.objects.pop(name, None) is not None

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        with self._lock:
            found = sorted((n, o) for n, o in self.objects.items() if n.startswith(prefix))
        for name, obj in found:
            yield self._info(name, obj)


@dataclass(frozen=True)
class Published:
    topic_key: str
    data: bytes
    attributes: dict[str, str]

    @property
    def payload(self) -> Any:
        """The message decoded as JSON (every povstorm message is JSON)."""
        return json.loads(self.data)


@dataclass
class RecordingPublisher:
    """Keeps every message and every ``publish_many`` batch, in order."""

    messages: list[Published] = field(default_factory=list)
    batches: list[tuple[str, int]] = field(default_factory=list)  # (topic key, size)

    def publish(self, topic_key: str, data: bytes, **attributes: str) -> None:
        self.messages.append(Published(topic_key, data, dict(attributes)))

    def publish_many(self, topic_key: str, payloads: list[bytes]) -> None:
        self.batches.append((topic_key, len(payloads)))
        self.messages += [Published(topic_key, p, {}) for p in payloads]

    def payloads(self, topic_key: str) -> list[Any]:
        return [m.payload for m in self.messages if m.topic_key == topic_key]


@dataclass
class RecordingLauncher:
    """Records each launch; raises ``error`` instead when one is set (an
    outage of Cloud Run, say)."""

    launched: list[str] = field(default_factory=list)
    error: PovstormError | None = None

    def launch(self, job_id: str, video: str | None = None) -> None:
        if self.error is not None:
            raise self.error
        self.launched.append(job_id if video is None else f"{job_id} --video {video}")


@dataclass
class RecordingRenderLauncher:
    """A RenderLauncher that records each launch and cancel; ``running``
    stands for the tasks the deployment runs now."""

    launched: list[tuple[str, int]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    running: int = 0
    error: PovstormError | None = None

    def launch(self, job_id: str, tasks: int) -> str:
        if self.error is not None:
            raise self.error
        self.launched.append((job_id, tasks))
        self.running += tasks
        return f"execution-{len(self.launched)}"

    def active(self) -> int:
        if self.error is not None:
            raise self.error
        return self.running

    def cancel(self, execution: str) -> None:
        self.cancelled.append(execution)


def fake_clients(
    settings: Settings | None = None,
    *,
    blobs: MemoryBlobStore | None = None,
    publisher: RecordingPublisher | None = None,
    launcher: RecordingLauncher | None = None,
    render: RecordingRenderLauncher | None = None,
) -> Clients:
    """Clients on the fakes, with no database: the ledger is passed apart."""
    return Clients(
        settings=settings or Settings(worker_id="fast-worker"),
        db=None,
        blobs=blobs or MemoryBlobStore(),
        publisher=publisher or RecordingPublisher(),
        launcher=launcher or RecordingLauncher(),
        render=render,
    )


def as_ledger(fake: object) -> Ledger:
    """A ledger fake, typed as what domain code takes (the concrete Ledger)."""
    return cast(Ledger, fake)


# mypy checks here that the fakes satisfy the protocols they stand in for.
_blobs: BlobStore = MemoryBlobStore()
_publisher: Publisher = RecordingPublisher()
_launcher: StitchLauncher = RecordingLauncher()
_render: RenderLauncher = RecordingRenderLauncher()
