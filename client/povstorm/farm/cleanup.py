"""Removing jobs: every document and object of a job (``povstorm rm``), and
every job that ended longer ago than an age (``povstorm gc``).

A job is, in Firestore, jobs/{job} and its subcollections (units, shards,
completions: ledger/ledger.py) and, in the bucket, the objects under its own
prefixes (core/naming.py: ``job_prefixes``): its manifest and cancel
marker, frames, logs, segments, videos, poster and stats.json. Its inputs
are content-addressed and may be other jobs' too: one goes only once no job
that stays names it (in its spec, a generated unit's, or the manifest of a
job the ledger does not have). The frame cache belongs to every job and
stays: its own limits age it (farm/cache.py).

The order of the deletes lets a removal that stopped part-way (an outage,
Ctrl-C) be run again to its end, and never brings a job back: the inputs
first, while the job document or manifest still says which they are; then
the manifest (the local stack rebuilds a job whose manifest has no ledger
entry); then the other objects; the documents last, the job document after
its subcollections, so that until the end the job is there to remove again.

Firestore's TTL policy (terraform ``jobs_retention_days``, on the job's
``expire_at``) deletes an expired job document alone: its subcollections
and objects stay. ``rm`` of such a job removes what is left; ``gc`` finds
them (subcollections or a manifest with no job document) and removes them
once their newest document and object are older than its age.

Nothing goes silently: each job's ``Removal`` lists the documents and
objects removed and what was kept and why. It reaches ``on_removed`` as soon
as the job is removed, or when its removal stopped part-way (with the error,
listing what went before it).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from povstorm.cloud.blobs import BlobInfo, BlobStore
from povstorm.cloud.clients import Clients
from povstorm.core.errors import PoisonMessage, SpecError, UnknownJob
from povstorm.core.names import PREFIXES
from povstorm.core.naming import (
    input_object,
    is_result_object,
    job_prefixes,
    manifest_object,
    manifests_prefix,
    parse_manifest_object,
)
from povstorm.farm import operations
from povstorm.ledger.docs import JobDoc
from povstorm.ledger.ledger import BATCH_LIMIT, Ledger, now
from povstorm.ledger.views import StoredDoc

log = logging.getLogger(__name__)

DELETE_THREADS = 8
# How long a forced removal waits after the cancel before it lists the job:
# a render task reads its job every 5 s (worker/chunk.py:
# CANCEL_CHECK_SECONDS), then stops POV-Ray and uploads the frames it wrote.
FORCE_GRACE_SECONDS = 6.0
# The kinds of a job's objects, in the order they are deleted (see above).
OBJECT_KINDS = ("inputs", "manifest", "frames", "logs", "segments", "videos")
KEEP_VIDEO = "--keep-video"

OnRemoved = Callable[["Removal"], object]


@dataclass
class Removal:
    """What was removed of one job (or, in a dry run, would be)."""

    job_id: str
    state: str | None  # the job's; None when its document was already gone (Firestore's TTL)
    documents: list[StoredDoc] = field(default_factory=list)
    objects: list[BlobInfo] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # object -> why it stays
    dry_run: bool = False
    cancelled: bool = False  # it was still active: cancelled first (--force)
    error: str = ""  # the removal stopped here: the lists say what went before

    @property
    def bytes(self) -> int:
        return sum(b.size for b in self.objects)

    def document_counts(self) -> dict[str, int]:
        return dict(Counter(d.kind for d in self.documents))

    def object_counts(self) -> dict[str, dict[str, int]]:
        """kind -> {count, bytes}, in OBJECT_KINDS' order."""
        out: dict[str, dict[str, int]] = {}
        for blob in self.objects:
            entry = out.setdefault(object_kind(self.job_id, blob.name), {"count": 0, "bytes": 0})
            entry["count"] += 1
            entry["bytes"] += blob.size
        return {k: out[k] for k in OBJECT_KINDS if k in out}

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "dry_run": self.dry_run,
            "cancelled": self.cancelled,
            "error": self.error or None,
            "documents": self.document_counts(),
            "objects": self.object_counts(),
            "bytes": self.bytes,
            "kept": dict(self.kept),
            "removed": {
                "documents": [d.path for d in self.documents],
                "objects": [b.name for b in self.objects],
            },
        }

    def lines(self) -> list[str]:
        """One line of what went, then one per object kept."""
        verb = "would remove" if self.dry_run else "removed"
        state = self.state or "its job document already gone"
        if self.cancelled:
            state += ", would be cancelled first" if self.dry_run else ", cancelled first"
        docs = ", ".join(f"{k} {n}" for k, n in self.document_counts().items())
        objects = ", ".join(f"{k} {v['count']}" for k, v in self.object_counts().items())
        head = (
            f"{'removed part of' if self.error else verb} job {self.job_id} ({state}): "
            f"{len(self.documents)} document(s)"
            + (f" ({docs})" if docs else "")
            + f", {len(self.objects)} object(s) of {human_bytes(self.bytes)}"
            + (f" ({objects})" if objects else "")
        )
        if self.error:
            head += f"; stopped by: {self.error} (`povstorm rm {self.job_id}` removes the rest)"
        keep = "would keep" if self.dry_run else "kept"
        return [head, *(f"  {keep} {name}: {why}" for name, why in self.kept.items())]


def object_kind(job_id: str, name: str) -> str:
    """The kind of one of a job's objects (OBJECT_KINDS)."""
    if name.startswith(PREFIXES["inputs"]):
        return "inputs"
    return next(k for k, prefix in job_prefixes(job_id).items() if name.startswith(prefix))


def human_bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def totals(removals: list[Removal]) -> dict[str, int]:
    return {
        "jobs": len(removals),
        "documents": sum(len(r.documents) for r in removals),
        "objects": sum(len(r.objects) for r in removals),
        "bytes": sum(r.bytes for r in removals),
        "kept": sum(len(r.kept) for r in removals),
    }


# --- the two operations -----------------------------------------------------------------


def remove_jobs(
    clients: Clients,
    job_ids: Iterable[str],
    *,
    keep_video: bool = False,
    force: bool = False,
    dry_run: bool = False,
    on_removed: OnRemoved | None = None,
) -> list[Removal]:
    """Remove each job whole, in turn (``povstorm rm``); with ``keep_video``
    what ``fetch`` gives as its result stays (``is_result_object``: its
    videos, poster and contact sheet). Before anything is
    removed: UnknownJob for a job with neither documents nor objects, and a
    SpecError for one still submitted, rendering or stitching, unless
    ``force``, which cancels it first as ``povstorm cancel`` does (a frame
    its workers were uploading may still land: rm it again). ``dry_run``
    lists what would go and removes nothing."""
    ledger = Ledger(clients.db)
    found = [_Found.of(clients, ledger, job_id) for job_id in dict.fromkeys(job_ids)]
    for f in found:
        if f.job is None and not f.documents and not f.objects:
            raise UnknownJob(f.job_id)
        if f.job is not None and f.active and not force:
            raise SpecError(
                f"job {f.job_id} is {f.job.state}: cancel it first "
                f"(povstorm cancel {f.job_id}) or remove it with --force"
            )
    if not dry_run:
        found = [f.cancelled(clients, ledger) if f.active else f for f in found]
    return _remove(clients, ledger, found, keep_video, dry_run, on_removed)


def collect_garbage(
    clients: Clients,
    older_than: dt.timedelta,
    *,
    keep_video: bool = False,
    dry_run: bool = False,
    on_removed: OnRemoved | None = None,
    at: dt.datetime | None = None,
) -> list[Removal]:
    """Remove every job that ended (done, failed or cancelled) more than
    ``older_than`` before ``at`` (now), and what Firestore's TTL left of
    expired jobs once its newest document and object are that old
    (``povstorm gc``). A job that became active again meanwhile (a retry)
    or is already gone is passed over."""
    cutoff = (at or now()) - older_than
    ledger = Ledger(clients.db)
    ended = [job.job_id for job in ledger.finished_before(cutoff)]
    leftovers = (ledger.leftover_job_ids() | _manifest_ids(clients.blobs)) - ledger.job_ids()
    found = []
    for job_id in [*ended, *sorted(leftovers)]:
        f = _Found.of(clients, ledger, job_id)
        if f.job is not None:
            end = f.job.finished_at
            if f.job.state.terminal and end is not None and end < cutoff:
                found.append(f)
        elif (f.documents or f.objects) and f.newest < cutoff.timestamp():
            found.append(f)
    return _remove(clients, ledger, found, keep_video, dry_run, on_removed)


# --- what a job has ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """A job's documents and objects as they are now (its inputs aside)."""

    job_id: str
    job: JobDoc | None
    documents: list[StoredDoc]
    objects: list[BlobInfo]
    was_active: bool = False

    @classmethod
    def of(cls, clients: Clients, ledger: Ledger, job_id: str) -> _Found:
        prefixes = job_prefixes(job_id)  # a SpecError for a malformed id, first
        documents = ledger.job_documents(job_id)
        data = ledger.get_job(job_id)
        objects = [blob for prefix in prefixes.values() for blob in clients.blobs.list(prefix)]
        return cls(job_id, JobDoc.from_dict(data) if data else None, documents, objects)

    @property
    def active(self) -> bool:
        return self.job is not None and not self.job.state.terminal

    @property
    def newest(self) -> float:
        """When anything of the job was last written (a POSIX time)."""
        return max([d.updated for d in self.documents] + [b.updated for b in self.objects])

    def cancelled(self, clients: Clients, ledger: Ledger) -> _Found:
        """The job, cancelled (``operations.cancel``), found again once its
        render tasks have seen it: the cancel wrote its marker, and the
        frames they were rendering landed."""
        operations.cancel(clients, self.job_id)
        time.sleep(FORCE_GRACE_SECONDS)
        again = _Found.of(clients, ledger, self.job_id)
        return _Found(again.job_id, self.job, again.documents, again.objects, was_active=True)


def _manifest_ids(blobs: BlobStore) -> set[str]:
    ids = set()
    for blob in blobs.list(manifests_prefix()):
        try:
            ids.add(parse_manifest_object(blob.name))
        except PoisonMessage:
            continue  # a cancel marker
    return ids


def _input_users(clients: Clients, ledger: Ledger) -> dict[str, set[str]]:
    """sha256 -> the jobs that name it as an input: the ledger's, and those
    whose manifest the bucket has and the ledger not (a job between its
    manifest and its job document, one whose document expired)."""
    users = ledger.input_references()
    for job_id in _manifest_ids(clients.blobs) - ledger.job_ids():
        try:
            spec = json.loads(clients.blobs.read_bytes(manifest_object(job_id)))["spec"]
        except (KeyError, TypeError, ValueError):
            log.warning("unreadable manifest of job %s: its inputs are not known", job_id)
            continue
        for part in [spec, *(spec.get("units") or [])]:
            for sha in (part.get("inputs") or {}).values():
                users.setdefault(sha, set()).add(job_id)
    return users


# --- removing ------------------------------------------------------------------------------


def _remove(
    clients: Clients,
    ledger: Ledger,
    found: list[_Found],
    keep_video: bool,
    dry_run: bool,
    on_removed: OnRemoved | None,
) -> list[Removal]:
    """Each job in turn: what goes and what stays, then (unless a dry run)
    the deletes. An input shared by two jobs removed together goes with the
    later one."""
    users = _input_users(clients, ledger) if found else {}
    removed: set[str] = set()
    out = []
    for f in found:
        removed.add(f.job_id)
        plan = _plan(clients.blobs, f, users, removed, keep_video, dry_run)
        result = plan if dry_run else _carry_out(clients, ledger, plan, on_removed)
        log.info("%s", result.lines()[0])
        if on_removed is not None:
            on_removed(result)
        out.append(result)
    return out


def _plan(
    blobs: BlobStore,
    f: _Found,
    users: dict[str, set[str]],
    removed: set[str],
    keep_video: bool,
    dry_run: bool,
) -> Removal:
    """What removing the job deletes, in the order it deletes them, and what
    it keeps: the inputs a job not ``removed`` names, and with
    ``keep_video`` the job's result."""
    plan = Removal(
        f.job_id,
        f.job.state.value if f.job else None,
        documents=f.documents,
        dry_run=dry_run,
        cancelled=f.was_active or f.active,
    )
    inputs = []
    for sha in sorted(sha for sha, jobs in users.items() if f.job_id in jobs):
        blob = blobs.info(input_object(sha))
        others = sorted(users[sha] - removed)
        if blob is not None and others:
            more = f" and {len(others) - 1} more" if len(others) > 1 else ""
            plan.kept[blob.name] = f"an input of job {others[0]}{more}"
        elif blob is not None:
            inputs.append(blob)
    objects = []
    for blob in f.objects:
        if keep_video and is_result_object(f.job_id, blob.name):
            plan.kept[blob.name] = KEEP_VIDEO
        else:
            objects.append(blob)
    rank = {kind: i for i, kind in enumerate(OBJECT_KINDS)}
    plan.objects = inputs + sorted(objects, key=lambda b: rank[object_kind(f.job_id, b.name)])
    return plan


def _carry_out(
    clients: Clients, ledger: Ledger, plan: Removal, on_removed: OnRemoved | None
) -> Removal:
    """Delete what ``plan`` lists, objects kind by kind in its order, then
    the documents; the Removal of what went. If a delete fails, what went
    before it is reported to ``on_removed`` and the error raised."""
    done = Removal(plan.job_id, plan.state, kept=plan.kept, cancelled=plan.cancelled)
    try:
        for _, group in groupby(plan.objects, key=lambda b: object_kind(plan.job_id, b.name)):
            gone, error = _delete_objects(clients.blobs, list(group))
            done.objects += gone
            if error is not None:
                raise error
        for i in range(0, len(plan.documents), BATCH_LIMIT):
            batch = plan.documents[i : i + BATCH_LIMIT]
            ledger.delete_documents([d.path for d in batch])
            done.documents += batch
    except BaseException as exc:
        done.error = str(exc) or type(exc).__name__
        if on_removed is not None:
            on_removed(done)
        raise
    return done


def _delete_objects(
    blobs: BlobStore, objects: list[BlobInfo]
) -> tuple[list[BlobInfo], BaseException | None]:
    """Delete ``objects``, DELETE_THREADS at a time: those that were there,
    and the first error once every delete has been tried."""
    with cf.ThreadPoolExecutor(DELETE_THREADS) as pool:
        futures = [(pool.submit(blobs.delete, blob.name), blob) for blob in objects]
    gone, error = [], None
    for future, blob in futures:
        exc = future.exception()
        if exc is not None:
            error = error or exc
        elif future.result():
            gone.append(blob)
    return gone, error
