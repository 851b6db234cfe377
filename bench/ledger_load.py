"""Ledger throughput: a job's completions delivered as GCS notifications are,
at least once and out of order, from many concurrent function instances.

``Ledger.record_frame`` is called from ``threads`` threads for every unit of
a ``units``-unit job plus ``duplicates`` of them delivered a second time
(same object generation), in a shuffled order, against the Firestore emulator
in a fresh project. A delivery that raises ``TransientError`` is delivered
again, as Pub/Sub would. At the end the counts must be exact: every unit done
once, every duplicate recognised, one stitch claim.

The baseline, run beside it at the same concurrency: the same number of plain
single-document writes (``DocumentReference.set`` on distinct documents), the
cheapest thing Firestore does; ledger / plain is what exactly-once counting
costs on top of it.
"""

from __future__ import annotations

import concurrent.futures as cf
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ._util import percentile


@dataclass
class LoadResult:
    name: str
    calls: int
    wall: float
    latencies: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.calls / self.wall if self.wall else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "wall_seconds": round(self.wall, 3),
            "calls_per_second": round(self.per_second, 1),
            "latency_p50_ms": round(1000 * percentile(self.latencies, 50), 1),
            "latency_p95_ms": round(1000 * percentile(self.latencies, 95), 1),
            "latency_max_ms": round(1000 * max(self.latencies, default=0.0), 1),
            **self.extra,
        }


def _timed_pool(threads: int, work: list[Any], call: Any) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def one(item: Any) -> None:
        t = time.perf_counter()
        call(item)
        took = time.perf_counter() - t
        with lock:
            latencies.append(took)

    started = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(one, item) for item in work]:
            f.result()
    return time.perf_counter() - started, latencies


def plain_writes(db: Any, calls: int, threads: int) -> LoadResult:
    col = db.collection(f"bench-plain-{uuid.uuid4().hex[:8]}")
    payload = {"state": "done", "generation": 1, "render_seconds": 1.0, "worker": "bench"}
    # Random ids: Firestore's own advice, and what a sequential id would not be.
    ids = [uuid.uuid4().hex for _ in range(calls)]
    wall, lat = _timed_pool(threads, ids, lambda i: col.document(i).set(payload))
    return LoadResult("plain", calls, wall, lat)


def ledger_deliveries(
    db: Any, units: int, duplicate_share: float, threads: int, seed: int = 7
) -> LoadResult:
    from povstorm.core.errors import TransientError
    from povstorm.core.model import JobState
    from povstorm.core.naming import frame_object
    from povstorm.core.schemas import load_job_spec
    from povstorm.ledger.ledger import Ledger

    ledger = Ledger(db)
    job_id = f"bench-{uuid.uuid4().hex[:12]}"
    spec = load_job_spec(
        {
            "name": "bench-ledger",
            "povray": {"args": ["s.pov"], "frames": {"first": 1, "last": units}},
        }
    )
    t = time.perf_counter()
    ledger.create_job(spec, job_id)
    create_seconds = time.perf_counter() - t
    ledger.mark_dispatched(job_id)

    rng = random.Random(seed)
    dups = rng.sample(range(units), round(units * duplicate_share))
    deliveries = [*range(units), *dups]
    rng.shuffle(deliveries)
    meta = {"render_seconds": "1.0", "cpu_seconds": "1.0", "worker": "bench"}
    kinds: Counter[str] = Counter()
    claims: list[int] = []
    redeliveries = 0
    lock = threading.Lock()
    attempt_latencies: list[float] = []
    # (seconds, unit, outcome, did it claim, when it began after the first delivery)
    slowest: list[tuple[float, int, str, bool, float]] = []
    began = time.perf_counter()

    def deliver(unit: int) -> None:
        nonlocal redeliveries
        while True:
            t = time.perf_counter()
            try:
                outcome = ledger.record_frame(frame_object(job_id, unit), 1000 + unit, meta)
            except TransientError:
                with lock:
                    redeliveries += 1
                    attempt_latencies.append(time.perf_counter() - t)
                time.sleep(0.1)  # Pub/Sub's minimum push backoff, roughly
                continue
            took = time.perf_counter() - t
            with lock:
                attempt_latencies.append(took)
                slowest.append((took, unit, outcome.kind, outcome.launch_stitch, t - began))
                slowest.sort(reverse=True)
                del slowest[3:]
                kinds[outcome.kind] += 1
                if outcome.launch_stitch:
                    claims.append(unit)
            return

    wall, latencies = _timed_pool(threads, deliveries, deliver)
    view = ledger.view(job_id)
    job = view.doc
    checks = {
        "done": view.done,
        "failed": view.failed,
        "recorded": kinds["recorded"],
        "duplicates_seen": kinds["duplicate"],
        "duplicates_sent": len(dups),
        "stitch_claims": len(claims),
        "job_state": job["state"],
        "units_done_on_job": job.get("units_done"),
    }
    ok = (
        view.done == units
        and view.failed == 0
        and kinds["recorded"] == units
        and kinds["duplicate"] == len(dups)
        and len(claims) == 1
        and job["state"] == JobState.STITCHING.value
        and job.get("units_done") == units
        and bool(job.get("stitch"))
    )
    return LoadResult(
        "ledger",
        len(deliveries),
        wall,
        latencies,
        {
            "units": units,
            "completions_per_second": round(units / wall, 1) if wall else 0.0,
            "redeliveries": redeliveries,
            "max_single_call_ms": round(1000 * max(attempt_latencies, default=0.0), 1),
            "slowest_calls": [
                {
                    "ms": round(1000 * t, 1),
                    "unit": u,
                    "outcome": k,
                    "claimed_stitch": c,
                    "at_s": round(a, 2),
                }
                for t, u, k, c, a in slowest
            ],
            "create_job_seconds": round(create_seconds, 3),
            "checks": checks,
            "exact": ok,
        },
    )


def run(firestore_host: str, units: int, threads: int, duplicate_share: float) -> dict[str, Any]:
    """Both loads in one fresh project of the stack's Firestore emulator."""
    from povstorm.cloud.clients import firestore_client

    db = firestore_client(f"bench-{uuid.uuid4().hex[:10]}", firestore_host)
    calls = units + round(units * duplicate_share)
    plain = plain_writes(db, calls, threads)
    ledger = ledger_deliveries(db, units, duplicate_share, threads)
    return {
        "threads": threads,
        "duplicate_share": duplicate_share,
        "plain": plain.as_dict(),
        "ledger": ledger.as_dict(),
        "throughput_ratio": round(ledger.per_second / plain.per_second, 3)
        if plain.per_second
        else None,
        "p50_latency_ratio": round(
            percentile(ledger.latencies, 50) / percentile(plain.latencies, 50), 2
        )
        if plain.latencies
        else None,
    }
