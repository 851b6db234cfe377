"""The blob store: the work bucket (GCS; fake-gcs-server locally).

Inputs, frames, logs and videos live here (see ``povstorm.core.naming``).
Every call raises povstorm's errors (``povstorm.core.errors.translate``): a
missing object is ``NotFound`` (``info`` returns None instead), an outage or
an unreachable endpoint ``TransientError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from povstorm.core.errors import NotFound, translate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobInfo:
    name: str
    generation: int
    size: int
    metadata: dict[str, str]
    updated: float = 0.0  # when it was last written, as a POSIX time


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
    def copy(
        self, source: str, name: str, content_type: str = ..., metadata: dict[str, str] | None = ...
    ) -> int: ...
    def delete(self, name: str) -> bool: ...


# --- GCS ---------------------------------------------------------------------


def storage_client(project: str, emulator_url: str = "") -> Any:
    """A GCS client; with ``emulator_url``, one for fake-gcs-server (no credentials)."""
    from google.cloud import storage

    if emulator_url:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": emulator_url},
        )
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
            updated=blob.updated.timestamp() if blob.updated else 0.0,
        )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # The HTTP-based storage client lets connection errors through as OSError.
        with translate("storage", network=True):
            return fn(*args, **kwargs)

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
        return self._upload(name, metadata, "upload_from_string", data, content_type)

    def upload_file(
        self,
        name: str,
        path: Path,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> int:
        return self._upload(name, metadata, "upload_from_filename", str(path), content_type)

    def _upload(
        self,
        name: str,
        metadata: dict[str, str] | None,
        method: str,
        source: Any,
        content_type: str,
    ) -> int:
        """Upload through the blob's ``method``; the new object's generation."""
        blob = self._bucket.blob(name)
        if metadata:
            blob.metadata = metadata
        self._call(getattr(blob, method), source, content_type=content_type)
        return int(blob.generation or 0)

    def read_bytes(self, name: str) -> bytes:
        return bytes(self._call(self._bucket.blob(name).download_as_bytes))

    def download_to(self, name: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        self._call(self._bucket.blob(name).download_to_filename, str(tmp))
        tmp.replace(path)

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        # The listing fetches its pages as it is iterated: translate those calls too.
        with translate("storage", network=True):
            for blob in self._client.list_blobs(self._bucket, prefix=prefix):
                yield self._info(blob)

    def copy(
        self,
        source: str,
        name: str,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> int:
        """A server-side copy of ``source`` to ``name`` with this content type
        and metadata (not the source's); the new object's generation. It is a
        new object like an upload: its OBJECT_FINALIZE notification fires."""
        blob = self._bucket.blob(name)
        blob.content_type = content_type
        blob.metadata = metadata or {}
        src = self._bucket.blob(source)
        token, _, _ = self._call(blob.rewrite, src)
        while token is not None:  # a large object takes several calls
            token, _, _ = self._call(blob.rewrite, src, token=token)
        return int(blob.generation or 0)

    def delete(self, name: str) -> bool:
        """Delete an object; False if it was not there."""
        try:
            self._call(self._bucket.blob(name).delete)
        except NotFound:
            return False
        return True
