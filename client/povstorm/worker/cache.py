"""The frame cache, as a render worker uses it.

Before POV-Ray starts, every unit of the chunk whose key (core/framekey.py)
has a cached frame (``cache/<key>.png``) is *reused*: the cached object is
copied, server-side, to the job's frame object. The copy is a new object like
any upload, so its OBJECT_FINALIZE event counts the unit in the ledger
exactly as a rendered frame's does: there is no second path to "done". Its
metadata says so (``cached``: the key; no render or CPU time), so the stats
tell reused frames from rendered ones. Only the misses are rendered, in
contiguous runs as before. A rendered frame carries its key in its metadata
(``cache_key``); the job's stitch copies it to the cache while it encodes
(``stitch/job.py: store_frames``), so the copies cost the render nothing.

Reuse is best effort: a cache that cannot be read costs a render, never a
frame. A worker whose POV-Ray version it cannot read uses no cache at all
(the version is part of every key).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging

from povstorm.cloud.clients import Clients
from povstorm.core.errors import NotFound, PovstormError
from povstorm.core.framekey import frame_keys
from povstorm.core.model import RenderStats
from povstorm.core.naming import cache_object, frame_object
from povstorm.ledger.views import UnitTicket
from povstorm.povray import povray_version

log = logging.getLogger(__name__)

COPY_THREADS = 8


class FrameCache:
    """The keys of one ticket's units, and the copies out of the cache."""

    def __init__(self, clients: Clients, ticket: UnitTicket, worker: str) -> None:
        self.clients = clients
        self.ticket = ticket
        self.worker = worker
        spec = ticket.spec
        version = povray_version() if spec.cache != "off" else ""
        self.keys = (
            frame_keys(spec, list(ticket.units), version, ticket.unit_spec) if version else {}
        )
        self.reading = spec.cache == "use"

    def reuse(self, units: list[int]) -> list[int]:
        """Copy the cached frame of each of ``units`` that has one into the
        job; returns the units reused (their finalize events count them)."""
        wanted = [u for u in units if u in self.keys] if self.reading else []
        if not wanted:
            return []
        with cf.ThreadPoolExecutor(min(COPY_THREADS, len(wanted)), "cache-copy") as pool:
            copied = list(pool.map(self._reuse_one, wanted))
        return [u for u, ok in zip(wanted, copied, strict=True) if ok]

    def _reuse_one(self, unit: int) -> bool:
        key = self.keys[unit]
        spec = self.ticket.spec
        frame = spec.frame_of(unit) if spec.povray and spec.povray.animated else None
        metadata = {
            **RenderStats(worker=self.worker, cached=key).to_metadata(),
            "attempt": str(self.ticket.attempt),
            "frame": "" if frame is None else str(frame),
            "trace_seconds": "",
            "parse_seconds": "",
        }
        try:
            self.clients.blobs.copy(
                cache_object(key),
                frame_object(self.ticket.job_id, unit),
                content_type="image/png",
                metadata=metadata,
            )
        except NotFound:
            return False  # not cached (or cleared a moment ago): render it
        except PovstormError as exc:
            log.warning("%s unit %d: frame cache not read: %s", self.ticket.job_id, unit, exc)
            return False
        return True
