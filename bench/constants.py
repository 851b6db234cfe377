"""The model's constants (``bench/model.py``), each with its value and its
source: a page of Google's documentation, this repository's own deployment
(its code or terraform), a measurement of this benchmark, or an assumption
with its reason. docs/bench.md, section 5, has the same table.

``measured(results)`` reads the measured ones from a bench run's results
(``python -m bench`` builds them); without a run, the figures of the last
full run (2026-11-30, docs/bench.md) stand in, marked so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from .model import Params

DOCUMENTED = "documented"
DEPLOYMENT = "deployment"
MEASURED = "measured"
ASSUMED = "assumed"

# Google's pages the documented constants come from.
PUBSUB_OVERVIEW = "https://cloud.google.com/pubsub/docs/overview"
PUBSUB_LEASE = "https://cloud.google.com/pubsub/docs/lease-management"
PUBSUB_QUOTAS = "https://cloud.google.com/pubsub/quotas"
GCS_NOTIFICATIONS = "https://cloud.google.com/storage/docs/pubsub-notifications"
GCS_REQUEST_RATE = "https://cloud.google.com/storage/docs/request-rate"
FIRESTORE_COUNTERS = "https://firebase.google.com/docs/firestore/solutions/counters"
FIRESTORE_PRACTICES = "https://cloud.google.com/firestore/docs/best-practices"
RUN_QUOTAS = "https://cloud.google.com/run/quotas"
RUN_PARALLELISM = "https://cloud.google.com/run/docs/configuring/parallelism"
RUN_TASK_TIMEOUT = "https://cloud.google.com/run/docs/configuring/task-timeout"
FUNCTIONS_CONCURRENCY = "https://cloud.google.com/functions/docs/configuring/concurrency"


@dataclass(frozen=True)
class Constant:
    name: str
    value: float
    unit: str
    kind: str  # documented | deployment | measured | assumed
    source: str  # a URL, the file that sets or measures it, or the reason

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "value": round(self.value, 4)}


# --- measured here ----------------------------------------------------------------

# The last full run's figures (2026-11-30 16:50, docs/bench.md), used when a
# run did not measure one (and by the tests): name -> (value, where measured).
LAST_RUN: dict[str, tuple[float, str]] = {
    "povray_startup": (
        0.66,
        "bench/fill.py povray_idle: wall - CPU of a 1-frame 32x24 process (start and exit)",
    ),
    "povray_exit": (
        0.0,
        "bench/fill.py povray_idle: the 1-frame process's exit after its PNG's last write "
        "(part of povray_startup; not measured before 2026-12: 0, all of it at the start)",
    ),
    "povray_between": (
        0.212,
        "bench/fill.py povray_idle: (9-frame process - 1-frame) / 8, wall - CPU",
    ),
    "povray_startup_cpu": (
        0.06,
        "bench/fill.py povray_idle: CPU of a 1-frame 32x24 process (2026-11-30: estimated as "
        "(b)'s CPU a frame at 320x240, 0.386 s, minus the farm's chunked 0.32 s)",
    ),
    "encode_per_frame": (
        0.040,
        "bench/overhead.py: ffmpeg alone on (b)'s 48 frames at 1280x960 / 48 (a segment's encode)",
    ),
    "join_per_segment": (
        0.0039,
        "bench/segments.py: joining 100 segments of a 10,000-frame video / 100",
    ),
    "stitch_fixed": (0.289, "bench/overhead.py warm_up: a 2-frame stitch"),
    "create_per_unit": (
        0.00046,
        "bench/ledger_load.py: create_job of 2,000 units / 2,000 (Firestore emulator)",
    ),
    "submit_fixed": (
        0.05,
        "bench/overhead.py: the farm's client submit minus its units' create_job",
    ),
}


def measured(results: Mapping[str, Any] | None = None) -> dict[str, Constant]:
    """The measured constants, from a bench run's ``results`` where it has
    them, else the last full run's (their source says which)."""
    r = results or {}
    got: dict[str, float] = {}
    idle = (r.get("fill") or {}).get("povray_idle") or {}
    if "startup_seconds" in idle:
        got["povray_startup"] = float(idle["startup_seconds"])
    if "between_frames_seconds" in idle:
        got["povray_between"] = float(idle["between_frames_seconds"])
    if "startup_cpu_seconds" in idle:
        got["povray_startup_cpu"] = float(idle["startup_cpu_seconds"])
    if idle.get("exit_seconds") is not None:
        got["povray_exit"] = float(idle["exit_seconds"])
    overhead = r.get("overhead") or {}
    frames = int((r.get("config") or {}).get("frames") or 0)
    if overhead and frames:
        largest = list(overhead)[-1]
        got["encode_per_frame"] = float(overhead[largest]["encode_seconds"]) / frames
        submits = [
            a["client_submit"] for size in overhead.values() for a in size.get("attribution", [])
        ]
    else:
        submits = []
    seg = r.get("segments") or {}
    if seg.get("join_per_segment_seconds"):
        got["join_per_segment"] = float(seg["join_per_segment_seconds"])
    if r.get("stitch_fixed_seconds"):
        got["stitch_fixed"] = float(r["stitch_fixed_seconds"])
    ledger = ((r.get("ledger") or {}).get("ledger")) or {}
    if ledger.get("units"):
        got["create_per_unit"] = float(ledger["create_job_seconds"]) / int(ledger["units"])
    if submits and frames:
        per_unit = got.get("create_per_unit", LAST_RUN["create_per_unit"][0])
        got["submit_fixed"] = max(0.0, sum(submits) / len(submits) - frames * per_unit)
    units = {
        "povray_startup": "s",
        "povray_exit": "s",
        "povray_between": "s",
        "povray_startup_cpu": "s",
        "encode_per_frame": "s/frame",
        "join_per_segment": "s/segment",
        "stitch_fixed": "s",
        "create_per_unit": "s/unit",
        "submit_fixed": "s",
    }
    out = {}
    for name, (value, source) in LAST_RUN.items():
        if name in got:
            out[name] = Constant(name, got[name], units[name], MEASURED, source)
        else:
            out[name] = Constant(
                name, value, units[name], MEASURED, f"{source} (the 2026-11-30 run's figure)"
            )
    return out


# --- the cloud ---------------------------------------------------------------------


def cloud_constants(results: Mapping[str, Any] | None = None) -> list[Constant]:
    """Every constant of the cloud model, documented, deployed, measured or
    assumed, with its source."""
    m = measured(results)
    download_threads = 8
    segment_get = 0.05
    return [
        # Documented by Google.
        Constant(
            "pull",
            0.1,
            "s",
            DOCUMENTED,
            f"{PUBSUB_OVERVIEW}: Pub/Sub delivers 'with latencies typically on the order of "
            "100 milliseconds'",
        ),
        Constant(
            "record_latency",
            0.2,
            "s",
            DOCUMENTED,
            f"{GCS_NOTIFICATIONS}: a notifying event takes 'on the order of 0.1 seconds' longer; "
            f"plus Pub/Sub's ~0.1 s delivery to the event function ({PUBSUB_OVERVIEW})",
        ),
        Constant(
            "shard_interval",
            1.0,
            "s",
            DOCUMENTED,
            f"{FIRESTORE_COUNTERS}: a document cannot be updated at an unlimited rate, the "
            "throughput of a distributed counter grows with its shards, ~1 sustained write/s "
            f"per document (soft; {FIRESTORE_PRACTICES}); taken as a hard 1/s per shard",
        ),
        Constant(
            "function_concurrency",
            1,
            "events",
            DOCUMENTED,
            f"{FUNCTIONS_CONCURRENCY}: 'By default, function instances handle only one request "
            "at a time'; the module sets no other",
        ),
        Constant(
            "max_tasks",
            10_000,
            "tasks",
            DOCUMENTED,
            f"{RUN_QUOTAS}: at most 10,000 tasks in one job execution; tasks running in "
            "parallel are a quota that depends on region, CPU and memory (1,000 needs an "
            f"increase); tasks are 'started as quickly as possible' ({RUN_PARALLELISM})",
        ),
        Constant(
            "max_task_retries",
            10,
            "retries",
            DOCUMENTED,
            f"{RUN_QUOTAS}: at most 10 retries of a task; a retry is a new attempt "
            f"(its own timeout, {RUN_TASK_TIMEOUT})",
        ),
        Constant(
            "gcs_writes_per_second",
            1000,
            "writes/s",
            DOCUMENTED,
            f"{GCS_REQUEST_RATE}: a bucket starts at ~1,000 object writes/s and scales up "
            "(a check: the model's peak of frame, log and segment uploads stays below it)",
        ),
        # This deployment.
        Constant(
            "lease",
            20.0,
            "s",
            DEPLOYMENT,
            "client/povstorm/shells/render_task.py LEASE_SECONDS: a render task leases its "
            f"message for 20 s ({PUBSUB_LEASE}: a lapsed deadline redelivers the message)",
        ),
        Constant(
            "lease_every",
            20.0 / 3,
            "s",
            DEPLOYMENT,
            "client/povstorm/shells/render_task.py EXTEND_EVERY = LEASE_SECONDS / 3",
        ),
        Constant(
            "task_budget",
            3540.0,
            "s",
            DEPLOYMENT,
            "POVSTORM_RENDER_TIMEOUT: terraform render_task_timeout_seconds (3600) minus "
            "render_upload_margin_seconds (60); a task pulls while some is left, and past a "
            "chunk's first frame begins no frame that would end beyond it (the rest is handed on)",
        ),
        Constant(
            "task_timeout",
            3600.0,
            "s",
            DEPLOYMENT,
            "terraform render_task_timeout_seconds: Cloud Run stops the task attempt and "
            f"retries it (up to 168 h allowed: {RUN_TASK_TIMEOUT})",
        ),
        Constant(
            "idle_exit",
            10.0,
            "s",
            DEPLOYMENT,
            "POVSTORM_TASK_IDLE_SECONDS default (client/povstorm/core/settings.py task_idle)",
        ),
        Constant(
            "function_instances",
            20,
            "instances",
            DEPLOYMENT,
            "terraform function_max_instance_count default (frame_finalized)",
        ),
        Constant(
            "reconcile_every",
            60.0,
            "s",
            DEPLOYMENT,
            "terraform reconcile_schedule default '* * * * *'",
        ),
        Constant(
            "download_threads",
            download_threads,
            "threads",
            DEPLOYMENT,
            "client/povstorm/stitch/job.py DOWNLOAD_THREADS",
        ),
        # Measured here.
        *(m[k] for k in ("povray_startup", "povray_exit", "povray_startup_cpu", "povray_between")),
        m["encode_per_frame"],
        m["join_per_segment"],
        m["stitch_fixed"],
        m["create_per_unit"],
        m["submit_fixed"],
        # Assumed: Google documents no figure.
        Constant(
            "launch",
            1.0,
            "s",
            ASSUMED,
            "the run_job call of the submit function (an Admin API request returning an "
            "operation); no documented latency",
        ),
        Constant(
            "task_start",
            10.0,
            "s",
            ASSUMED,
            "a render task's cold start (scheduling, image, Python and the clients); Cloud Run "
            "documents no figure; 30 s as a sensitivity",
        ),
        Constant(
            "task_start_spread",
            5.0,
            "s",
            ASSUMED,
            "the tasks of one execution start over this many seconds rather than at once "
            "(undocumented); seeded uniform",
        ),
        Constant(
            "chunk_overhead",
            1.0,
            "s",
            ASSUMED,
            "per chunk: the ledger's start transaction, the scene's inputs from GCS, the ack "
            "(locally ~0.7-1.1 s under a 2x CPU contention, bench/overhead.py)",
        ),
        Constant(
            "frame_upload",
            0.5,
            "s",
            ASSUMED,
            "a frame's PNG to GCS from the task (a few MB); no documented latency",
        ),
        Constant("segment_upload", 0.5, "s", ASSUMED, "a chunk's segment to GCS, as a frame"),
        Constant(
            "function_seconds",
            0.3,
            "s",
            ASSUMED,
            "one finalize event in frame_finalized (docs/deploy.md's cost estimate)",
        ),
        Constant(
            "stitch_launch",
            11.0,
            "s",
            ASSUMED,
            "the last count's run_job call (1 s) and the stitch task's cold start "
            "(as a render task's, 10 s)",
        ),
        Constant(
            "segment_download",
            segment_get / download_threads,
            "s/segment",
            ASSUMED,
            f"one GCS GET of a segment ~{segment_get} s (undocumented), {download_threads} at once",
        ),
        Constant(
            "video_upload",
            2.0,
            "s",
            ASSUMED,
            "the video and its poster to GCS",
        ),
    ]


def by_name(constants: list[Constant]) -> dict[str, float]:
    return {c.name: float(c.value) for c in constants}


def cloud_params(constants: list[Constant]) -> Params:
    """The simulation's times for the cloud: a task per instance."""
    c = by_name(constants)
    return Params(
        submit_fixed=c["submit_fixed"],
        submit_per_unit=c["create_per_unit"],
        launch=c["launch"],
        task_start=c["task_start"],
        task_start_spread=c["task_start_spread"],
        reconcile_every=c["reconcile_every"],
        pull=c["pull"],
        chunk_overhead=c["chunk_overhead"],
        idle_exit=c["idle_exit"],
        task_budget=c["task_budget"],
        task_timeout=c["task_timeout"],
        lease=c["lease"],
        lease_every=c["lease_every"],
        povray_startup=max(0.0, c["povray_startup"] - c["povray_exit"]),
        povray_exit=c["povray_exit"],
        povray_startup_cpu=c["povray_startup_cpu"],
        povray_between=c["povray_between"],
        frame_upload=c["frame_upload"],
        encode_per_frame=c["encode_per_frame"],
        segment_upload=c["segment_upload"],
        record_latency=c["record_latency"],
        function_seconds=c["function_seconds"],
        function_instances=int(c["function_instances"] * c["function_concurrency"]),
        shard_interval=c["shard_interval"],
        stitch_launch=c["stitch_launch"],
        stitch_fixed=c["stitch_fixed"],
        join_per_segment=c["join_per_segment"],
        segment_download=c["segment_download"],
        gap_frame=c["segment_download"] + c["encode_per_frame"],
        video_upload=c["video_upload"],
        after_done=0.0,
        cores=0.0,
    )


def with_value(constants: list[Constant], name: str, value: float) -> list[Constant]:
    return [replace(c, value=value) if c.name == name else c for c in constants]
