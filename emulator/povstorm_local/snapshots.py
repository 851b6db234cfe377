"""Snapshots of the local ledger: what lets it outlive the Firestore emulator.

The emulator keeps its data in memory. It can export a project to a
directory (``POST /emulator/v1/projects/P:export``) and load such an export
when it starts (``--import-data``). The stack exports

* when ``povstorm local down`` stops it, after the farm and before the emulators;
* while it runs, whenever a job document changed (a job submitted, a shard
  of frames folded into its counts, a state change), within about a second
  of a job finishing and every few seconds otherwise (``Snapshotter``, a
  thread of the local reconciler process);

and starts the emulator from the newest snapshot. A crash or a reboot loses
at most what changed after the last snapshot, and the stack's restart
(``LocalStack.up``) rebuilds that from the bucket, which holds every frame,
video and job manifest (``povstorm.farm.reconcile.resume``).

Each export goes into a directory of its own and becomes the newest by an
atomic rename of the ``current`` link, so an export cut short by a crash is
never the one imported.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("povstorm.snapshots")

CURRENT = "current"
KEEP = 3
# How soon a changed ledger is exported: a finished job within FINISHED_EVERY,
# anything else within CHANGED_EVERY (an export costs the emulator CPU in
# proportion to the whole ledger, and POV-Ray shares the cores with it).
FINISHED_EVERY = 1.0
CHANGED_EVERY = 5.0
EXPORT_TIMEOUT = 60.0


class Snapshots:
    """The snapshots of one stack's ledger, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def latest(self) -> Path | None:
        """The export metadata file of the newest complete snapshot (what
        ``--import-data`` takes), or None."""
        link = self.dir / CURRENT
        try:
            target = self.dir / os.readlink(link)
        except OSError:
            return None
        found = sorted(target.glob("*/*.overall_export_metadata"))
        return found[-1] if found else None

    def taken_at(self) -> dt.datetime | None:
        """When the newest snapshot's export began (its name's timestamp)."""
        latest = self.latest()
        if latest is None:
            return None
        name = latest.parents[1].name  # snapshot-<ns>/firestore_export_<s>/<metadata>
        return dt.datetime.fromtimestamp(int(name.split("-", 1)[1]) / 1e9, dt.UTC)

    def export(self, url: str, project: str) -> Path:
        """Export ``project`` from the emulator at ``url`` into a new snapshot
        and make it the newest; returns its metadata file."""
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"snapshot-{time.time_ns()}"
        out = self.dir / name
        out.mkdir()
        request = urllib.request.Request(
            f"{url}/emulator/v1/projects/{project}:export",
            data=json.dumps(
                {
                    "database": f"projects/{project}/databases/(default)",
                    "export_directory": str(out),
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            urllib.request.urlopen(request, timeout=EXPORT_TIMEOUT).close()
        except (OSError, urllib.error.URLError):
            shutil.rmtree(out, ignore_errors=True)
            raise
        metadata = sorted(out.glob("*/*.overall_export_metadata"))
        if not metadata:
            shutil.rmtree(out, ignore_errors=True)
            raise OSError(f"the Firestore emulator wrote no export into {out}")
        link = self.dir / f".{CURRENT}-{name}"
        os.symlink(name, link)
        os.replace(link, self.dir / CURRENT)
        self._prune()
        return metadata[-1]

    def _prune(self) -> None:
        """Keep the newest KEEP snapshots (an emulator starting now may be
        reading the one before the newest)."""
        snapshots = sorted(
            (p for p in self.dir.glob("snapshot-*") if p.is_dir()),
            key=lambda p: int(p.name.split("-", 1)[1]),
        )
        for old in snapshots[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)


class Snapshotter:
    """Exports the ledger soon after a job document changes.

    ``changes(since)`` answers whether any job changed after ``since`` (a
    UTC datetime) and whether one of them finished; it is a query of the
    ledger (``Ledger.changed_since``), cheap next to an export.
    """

    def __init__(
        self,
        snapshots: Snapshots,
        url: str,
        project: str,
        changes: Callable[[Any], tuple[bool, bool]],
        *,
        poll: float = 0.5,
    ) -> None:
        self.snapshots = snapshots
        self.url = url
        self.project = project
        self.changes = changes
        self.poll = poll
        self.exports = 0
        self.last_error = ""

    def run(self, stop: threading.Event) -> None:
        # Anything that changed after the newest snapshot began (a reconciler
        # started again after a crash has missed what changed meanwhile).
        since = self.snapshots.taken_at() or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        changed_at: float | None = None
        exported_at = 0.0
        while not stop.wait(self.poll):
            try:
                changed, finished = self.changes(since)
            except Exception as exc:  # an outage of the emulator: try again
                self.last_error = f"{type(exc).__name__}: {exc}"
                continue
            if not changed:
                continue
            at = time.monotonic()
            changed_at = changed_at if changed_at is not None else at
            due = (finished and at - exported_at >= FINISHED_EVERY) or (
                at - changed_at >= CHANGED_EVERY
            )
            if not due:
                continue
            started = dt.datetime.now(dt.UTC)
            try:
                self.snapshots.export(self.url, self.project)
            except OSError as exc:
                self.last_error = f"export failed: {exc}"
                log.warning("ledger snapshot failed: %s", exc)
                continue
            self.exports += 1
            self.last_error = ""
            since, changed_at, exported_at = started, None, time.monotonic()
