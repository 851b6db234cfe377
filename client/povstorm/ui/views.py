"""What the web view shows, as JSON-ready dicts built from what the client
already returns: a job's status (``Cluster.status_of``) with its shards, a
unit of one page of its grid, a row of the jobs list.

The pages (templates/) and the event streams (live.py) send the same dicts,
so the browser's script (static/ui.js) draws a job from one shape, whoever
brought it. URLs are built here with ``url_for``: a caller needs a request
context (the streams keep theirs with ``stream_with_context``).
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import url_for

from povstorm.client.watch import Progress, fmt_clock
from povstorm.core import cost
from povstorm.core.model import JobState, UnitState, shard_block

# Units on one page of the grid: what a page reads, and what its event
# stream listens to, whatever the job's size.
PAGE_SIZE = 200
# The stats a job page leaves out: per-frame detail for the chunk planner.
_STATS_LEFT_OUT = frozenset({"frame_profile", "frames_digest"})


@dataclass(frozen=True)
class Page:
    """One page of a job's grid: units ``first`` to ``end - 1``."""

    number: int  # from 1
    count: int  # pages in the job
    first: int
    end: int
    size: int = PAGE_SIZE

    @classmethod
    def of(cls, units: int, number: int, size: int = PAGE_SIZE) -> Page:
        """Page ``number`` of a job of ``units`` units (clamped to the pages it has)."""
        count = max(1, -(-units // size))
        number = min(max(1, number), count)
        first = (number - 1) * size
        return cls(number, count, first, min(first + size, units), size)

    def as_dict(self) -> dict[str, int]:
        return {
            "number": self.number,
            "count": self.count,
            "first": self.first,
            "end": self.end,
            "size": self.size,
        }


def to_json(data: Any) -> str:
    """JSON of a payload; Firestore's timestamps as ISO 8601."""
    return json.dumps(data, default=_plain, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def unit_row(job_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """A unit as a cell of the grid and a bar of the chart. A done frame
    has a thumbnail and an image, both named by its generation, so a
    browser keeps each for good and a new render of it is a new URL."""
    unit = int(record["unit"])
    generation = record.get("generation")
    shown = record.get("state") == UnitState.DONE and generation is not None
    errors = record.get("errors") or []
    return {
        "unit": unit,
        "frame": record.get("frame"),
        "state": record.get("state"),
        "attempts": int(record.get("attempts") or 1),
        "seconds": record.get("render_seconds"),
        "cached": bool(record.get("cached")),
        "error": errors[-1].get("error") if errors else None,
        "thumb": url_for("ui.thumbnail", job_id=job_id, unit=unit, g=generation) if shown else None,
        "image": url_for("ui.frame", job_id=job_id, unit=unit, g=generation) if shown else None,
    }


def unit_detail(
    job_id: str, record: Mapping[str, Any], logs: Iterable[tuple[str, str]]
) -> dict[str, Any]:
    """A unit opened from the grid: its row, every attempt's error, where
    and how it rendered, and POV-Ray's output of each attempt (``Cluster.logs``)."""
    return {
        **unit_row(job_id, record),
        "label": record.get("label") or "",
        "worker": record.get("worker"),
        "cpu_seconds": record.get("cpu_seconds"),
        "peak_memory_bytes": record.get("peak_memory_bytes"),
        "errors": [{k: _iso(v) for k, v in e.items()} for e in record.get("errors") or []],
        "logs": [{"object": name, "text": text} for name, text in logs],
    }


def job_payload(
    status: Mapping[str, Any], shards: Iterable[Mapping[str, Any]], progress: Progress | None = None
) -> dict[str, Any]:
    """A job as its page draws it, from ``Cluster.status_of`` and its shards;
    with a ``progress`` (a stream's), its rate and ETA too."""
    job_id = str(status["job_id"])
    state = JobState(status["state"])
    total = int(status.get("units_expected") or 0)
    # Rate and ETA while it runs: once it has ended, the rate of a watch only decays.
    running = progress if progress is not None and not state.terminal else None
    stitch_error = status.get("stitch_error")
    return {
        "job_id": job_id,
        "name": status.get("name") or "",
        "state": state.value,
        "finished": state.terminal,
        "total": total,
        "done": int(status.get("units_done") or 0),
        "failed": int(status.get("units_failed") or 0),
        "rate": round(running.rate, 3) if running is not None else None,
        "eta": fmt_clock(running.eta) if running is not None and running.eta is not None else "",
        "created_at": _iso(status.get("created_at")),
        "finished_at": _iso(status.get("finished_at")),
        "cancel_reason": status.get("cancel_reason"),
        "errors": [{k: _iso(v) for k, v in e.items()} for e in status.get("errors") or []],
        "stats": {k: v for k, v in (status.get("stats") or {}).items() if k not in _STATS_LEFT_OUT},
        "cost": status.get("cost"),
        "cost_line": cost.line(status["cost"]) if status.get("cost") else "",
        "projected": cost.usd(status["cost"]["projected_usd"]) if status.get("cost") else "",
        "video": url_for("ui.video", job_id=job_id) if status.get("video") else None,
        "video_name": posixpath.basename(str(status["video"])) if status.get("video") else None,
        "poster": url_for("ui.poster", job_id=job_id) if status.get("poster") else None,
        "videos": _videos(job_id, status.get("videos") or {}),
        "shards": _strip(shards, total),
        "actions": {
            "cancel": not state.terminal,
            "retry": state == JobState.FAILED and not stitch_error,
            "restitch": state == JobState.DONE,
        },
    }


def _videos(job_id: str, entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The videos made again from the job's frames (``povstorm stitch``)."""
    return [
        {
            "key": key,
            "state": e.get("state"),
            "settings": f"{e.get('fps')} fps, {e.get('codec')}, crf {e.get('crf')}",
            "error": e.get("error"),
            "url": url_for("ui.restitched", job_id=job_id, key=key)
            if e.get("state") == "done"
            else None,
        }
        for key, e in sorted(entries.items())
    ]


def _strip(shards: Iterable[Mapping[str, Any]], total: int) -> list[dict[str, int]]:
    """Each shard as a block of consecutive units with its counts: the
    overview of a job of any size, from the documents a watch reads anyway."""
    block = shard_block(total)
    return [
        {
            "first": int(s.get("shard", 0)) * block,
            "expected": int(s.get("expected") or 0),
            "done": int(s.get("done") or 0),
            "failed": int(s.get("failed") or 0),
        }
        for s in sorted(shards, key=lambda s: int(s.get("shard", 0)))
    ]


def job_row(job: Mapping[str, Any], counts: tuple[int, int] | None = None) -> dict[str, Any]:
    """A job as a row of the jobs page. ``counts``: (done, failed) summed
    from its shards while it runs; else the job's folded counts, exact
    once it has ended."""
    done, failed = counts or (job.get("units_done") or 0, job.get("units_failed") or 0)
    job_id = str(job.get("job_id"))
    return {
        "job_id": job_id,
        "name": job.get("name") or "",
        "state": job.get("state"),
        "total": int(job.get("units_expected") or 0),
        "done": int(done),
        "failed": int(failed),
        "created_at": _iso(job.get("created_at")),
        "url": url_for("ui.job_page", job_id=job_id),
    }
