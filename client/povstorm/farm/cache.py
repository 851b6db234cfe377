"""The frame cache as a whole: what it holds, and keeping it within its limits.

Entries are ``cache/<key>.png`` objects in the deployment's bucket (one cache
per deployment, shared by every job; core/framekey.py says what a key is).
An entry's age is the time it was written: a frame rendered again is written
again. Two limits keep it bounded (``Settings.frame_cache_days`` and
``frame_cache_bytes``):

* in the cloud, a bucket lifecycle rule deletes entries older than
  ``frame_cache_days`` (terraform ``storage.tf``), and the reconciler trims
  the oldest entries past ``frame_cache_bytes``;
* on the local stack, the reconciler applies both.

The reconciler trims at most once an hour (``TRIM_EVERY_SECONDS``): a trim
lists the whole cache, one request per 1,000 entries. ``povstorm cache ls``
and ``povstorm cache clear`` are the user's view of the same functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from povstorm.cloud.blobs import BlobInfo, BlobStore
from povstorm.core.naming import cache_prefix, parse_cache_object

TRIM_EVERY_SECONDS = 3600.0
# The trim's own marker: its time says when the last trim ran.
TRIM_MARKER = f"{cache_prefix()}.trimmed"
DAY = 86400.0


@dataclass(frozen=True)
class CacheSummary:
    entries: int
    bytes: int
    oldest: float  # POSIX times; 0 when empty
    newest: float


@dataclass(frozen=True)
class Removed:
    entries: int = 0
    bytes: int = 0


def entries(blobs: BlobStore) -> list[BlobInfo]:
    """Every cached frame, oldest first."""
    found = [b for b in blobs.list(cache_prefix()) if parse_cache_object(b.name)]
    return sorted(found, key=lambda b: (b.updated, b.name))


def summary(found: list[BlobInfo]) -> CacheSummary:
    return CacheSummary(
        entries=len(found),
        bytes=sum(b.size for b in found),
        oldest=min((b.updated for b in found), default=0.0),
        newest=max((b.updated for b in found), default=0.0),
    )


def clear(
    blobs: BlobStore,
    *,
    older_than_days: float | None = None,
    max_bytes: int | None = None,
    now: float | None = None,
) -> Removed:
    """Delete entries older than ``older_than_days``, then the oldest until
    the rest fit in ``max_bytes``; with neither, every entry."""
    now = time.time() if now is None else now
    found = entries(blobs)
    if older_than_days is None and max_bytes is None:
        doomed = found
    else:
        cutoff = now - older_than_days * DAY if older_than_days is not None else None
        doomed = [b for b in found if cutoff is not None and b.updated < cutoff]
        kept = [b for b in found if b not in doomed]
        total = sum(b.size for b in kept)
        for b in kept:  # oldest first
            if max_bytes is None or total <= max_bytes:
                break
            doomed.append(b)
            total -= b.size
    removed = [b for b in doomed if blobs.delete(b.name)]
    return Removed(len(removed), sum(b.size for b in removed))


def trim_if_due(
    blobs: BlobStore, *, max_days: float, max_bytes: int, now: float | None = None
) -> Removed | None:
    """The reconciler's trim: at most once every TRIM_EVERY_SECONDS (the
    marker's time says when it last ran); None when not due."""
    now = time.time() if now is None else now
    marker = blobs.info(TRIM_MARKER)
    if marker is not None and now - marker.updated < TRIM_EVERY_SECONDS:
        return None
    blobs.upload_bytes(TRIM_MARKER, b"", content_type="text/plain")
    return clear(
        blobs,
        older_than_days=max_days if max_days > 0 else None,
        max_bytes=max_bytes if max_bytes > 0 else None,
        now=now,
    )
