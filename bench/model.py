"""A discrete-event simulation of the pull-task design (issue 15): the time
from submitting a job to its video, on the local stack or in the cloud.

What it simulates, one event queue (``heapq``) for all of it:

    submit      the client's submission: the submit function writes a unit
                document per frame and publishes one work message per chunk
                (the chunk plan of ``povstorm.core.chunks``), in dispatch order,
                into ONE shared FIFO queue (the work subscription)
    launch      then an execution of ``min(chunks, slots)`` tasks; each task
                starts after its start latency (a cold start in the cloud, a
                fork from the warm task runner locally)
    a task      pulls one message at a time: the pull's latency, the chunk's
                own overhead (the ledger's start, the inputs, the ack), then
                ONE POV-Ray process: its start-up (CPU idle, measured), and the
                frames one after another, each its render time (a per-frame
                list: the hook for a distribution or a slow tail frame), with
                POV-Ray's idle between two frames; each frame is uploaded as
                written, the chunk's last one after the chunk's segment (its
                encode, then the segment's upload). A task whose pull finds
                nothing waits for ``idle_exit`` seconds and exits; one whose
                budget is spent exits; past a chunk's first frame it begins no
                frame that would end beyond its budget (it hands the rest of
                the chunk on, to the back of the queue); the runner kills a
                task past its timeout (and retries it, as a failure).
    CPU         locally, every task's POV-Ray, the segment encodes and the
                stack's own work per frame share ``cores`` (processor
                sharing: k CPU-bound jobs on c cores each progress at
                min(1, c / k)); in the cloud every task has an instance of its
                own, so a frame takes its own time
    ledger      a frame is counted from its finalize event: ``record_latency``
                after its upload a function instance takes it (at most
                ``function_instances`` at once, ``function_seconds`` each), and
                its shard document takes at most one write per
                ``shard_interval`` (the frames of a shard are consecutive
                units, ``povstorm.core.model.shard_block``)
    failure     a task killed part-way through its first chunk: its process
                and uploads in flight die; the frames already uploaded stay;
                its message comes back when its lease lapses (``lease``
                seconds after the last extension, extended every
                ``lease_every``), at the front of the queue, holding only the
                frames not uploaded; the runner retries the task (a new start);
                if no task is alive then (or whenever work waits and no task
                lives), the reconciler launches tasks at its next pass
    stitch      once the last frame is counted: the stitch's launch (a Cloud
                Run Job execution, or a local fork), its fixed cost, a join per
                segment (and its download), the frames without a segment (a
                killed chunk's) encoded by the stitch, the video's upload

Everything is deterministic: the only randomness (the spread of the tasks'
start, the jitter of a chunk's overhead and POV-Ray's idle, the reconciler's
phase) comes from ``Workload.seed``.

``bench/constants.py`` holds the constants, each with its source;
``bench/validate.py`` checks the model against local runs and
``bench/cloud.py`` makes the cloud table. The method and the figures:
docs/bench.md, section 5. Tests: tests/test_model.py.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from povstorm.core.chunks import plan_chunks
from povstorm.core.model import shard_block

Chunk = tuple[int, int]  # (first unit, count), units numbered from 0

# --- parameters -------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """Every time the simulation uses, in seconds. Built from the constants of
    ``bench/constants.py`` (``cloud_params``, ``LocalCalibration.params``)."""

    # Submission and launch.
    submit_fixed: float = 0.0  # the client's submit, beyond the units' documents
    submit_per_unit: float = 0.0  # create_job: a unit document per frame
    launch: float = 0.0  # after the submit: the run_job call (cloud)
    task_start: float = 0.0  # launch -> a task pulls: cold start / fork
    task_start_spread: float = 0.0  # the tasks start over [task_start, + spread]
    retry_start: float | None = None  # a failed task's retry starts (None: task_start)
    reconcile_every: float = 60.0  # the reconciler's period (launches when no task lives)
    # A task.
    pull: float = 0.0  # a pull's latency
    chunk_overhead: float = 0.0  # per chunk: the ledger's start, inputs, ack
    # Each chunk's overhead, POV-Ray's start-up and its idle between two
    # frames times U(1 - jitter, 1 + jitter) (seeded): tasks that start
    # together drift apart, as real ones do.
    jitter: float = 0.0
    idle_exit: float = 10.0  # a task exits once a pull finds nothing this long
    # A task's render budget (POVSTORM_RENDER_TIMEOUT): it pulls while some is
    # left, and past a chunk's first frame begins no frame that would end
    # beyond it (the rest of the chunk is handed on); 0: none.
    task_budget: float = 0.0
    task_timeout: float = 0.0  # the runner kills a task this long after its start (0: never)
    task_retries: int = 3  # a failed task is retried this often (render_task_max_retries)
    max_deliveries: int = 5  # the work subscription's dead-letter policy
    lease: float = 20.0  # a dead task's message comes back this long after its last extension
    lease_every: float = 20.0 / 3  # the lease is extended this often
    # A what-if: a redelivered chunk's frames come back as one message each
    # (spread over the free tasks) rather than as one chunk.
    recut_redelivered: bool = False
    # The reconciler starts tasks for queued work whenever a slot is free
    # (farm/reconcile.py: _start_tasks); False, a what-if: only when no task
    # runs (the first version of the pull design).
    reconcile_fills: bool = True
    # POV-Ray.
    povray_startup: float = 0.0  # per process, CPU idle before its first frame
    povray_exit: float = 0.0  # per process, CPU idle after its last frame
    povray_startup_cpu: float = 0.0  # per process, CPU (0 when the frames' figures hold it)
    povray_between: float = 0.0  # between two frames of one process, CPU idle
    # Uploads and segments.
    frame_upload: float = 0.0  # a frame's upload, after the next frame began
    encode_per_frame: float = 0.0  # the chunk's segment encode, per frame (CPU)
    segment_upload: float = 0.0
    # The ledger.
    record_latency: float = 0.0  # upload -> a function takes the finalize event
    function_seconds: float = 0.0  # one event in a function instance
    function_instances: int = 0  # 0: no limit
    shard_interval: float = 0.0  # between two writes to one shard document (0: no limit)
    # The stitch.
    stitch_launch: float = 0.0  # last frame counted -> the stitch runs
    stitch_fixed: float = 0.0
    join_per_segment: float = 0.0
    segment_download: float = 0.0  # per segment, over the stitch's download threads
    gap_frame: float = 0.0  # per frame without a segment: download and encode
    video_upload: float = 0.0
    after_done: float = 0.0  # the job done -> the client has the video
    # The machine: 0 cores is one instance per task (the cloud).
    cores: float = 0.0
    background_cores: float = 0.0  # cores other processes take meanwhile
    stack_cpu_per_frame: float = 0.0  # the stack's own CPU per frame, sharing the cores


@dataclass(frozen=True)
class Failure:
    """The task launched ``task``-th (from 0) killed ``fraction`` of the way
    through its first chunk (of the chunk's time on an idle CPU, every frame
    of the workload's median time: a slow frame does not move the kill)."""

    task: int = 0
    fraction: float = 0.5


@dataclass(frozen=True)
class Workload:
    frame_seconds: tuple[float, ...]  # per unit: POV-Ray's CPU (shared cores) or wall (an instance)
    chunks: tuple[Chunk, ...]  # in dispatch order
    slots: int  # the most tasks at once
    failure: Failure | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        covered = sorted(u for a, n in self.chunks for u in range(a, a + n))
        if covered != list(range(len(self.frame_seconds))):
            raise ValueError("the chunks must cover every frame exactly once")
        if self.slots < 1:
            raise ValueError("at least one slot")


@dataclass
class Result:
    wall: float  # submit -> video (locally: -> the client has downloaded it)
    submitted: float  # the submit returned; the launch follows
    first_task: float  # the first task pulls
    last_landed: float  # the last frame written by POV-Ray
    last_upload: float
    last_count: float  # the last frame counted: the stitch starts
    stitch: float  # seconds of the stitch (last count -> done)
    done: float
    tasks: int  # task attempts started (with retries and reconciler launches)
    chunks: int
    segments: int
    gap_frames: int  # frames without a segment (a killed chunk's), encoded by the stitch
    redelivered: int  # messages that came back after a lease lapsed
    handed_on: int  # chunks whose rest a task handed on (its budget)
    reconciler_launches: int  # launches by the reconciler (no task alive, work queued)
    ledger_wait_max: float  # the longest a frame waited beyond record_latency + function_seconds
    critical: dict[str, float]  # the path of the last frame counted, in seconds
    landed: list[float] = field(repr=False)  # per unit: when POV-Ray wrote it
    uploaded: list[float] = field(repr=False)  # per unit: when its upload ended
    rendered_by: list[tuple[int, int]] = field(repr=False)  # per unit: (task, its n-th chunk)

    def summary(self) -> dict[str, Any]:
        hidden = ("landed", "uploaded", "rendered_by")
        out = {k: v for k, v in asdict(self).items() if k not in hidden}
        return {k: _round(v) for k, v in out.items()}


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 2)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


# --- the event loop and the CPU ------------------------------------------------


class _Loop:
    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._queue, (max(t, self.now), next(self._seq), fn, args))

    def after(self, dt: float, fn: Callable[..., None], *args: Any) -> None:
        self.at(self.now + max(0.0, dt), fn, *args)

    def run(self) -> None:
        while self._queue:
            t, _, fn, args = heapq.heappop(self._queue)
            self.now = t
            fn(*args)


class _Job:
    __slots__ = ("alive", "done")

    def __init__(self, done: Callable[[], None]) -> None:
        self.alive = True
        self.done = done


class _Dedicated:
    """A machine per task: a job takes exactly its work."""

    def __init__(self, loop: _Loop) -> None:
        self.loop = loop

    def run(self, work: float, done: Callable[[], None]) -> _Job:
        job = _Job(done)
        self.loop.after(work, self._fire, job)
        return job

    def cancel(self, job: _Job) -> None:
        job.alive = False

    @staticmethod
    def _fire(job: _Job) -> None:
        if job.alive:
            job.alive = False
            job.done()


class _SharedCores:
    """Processor sharing: k CPU-bound jobs on c cores each progress at
    min(1, c / k). Kept exact with a virtual clock: every job gets the same
    service, so a job ends when the service given since it started reaches
    its work."""

    def __init__(self, loop: _Loop, cores: float) -> None:
        self.loop = loop
        self.cores = max(0.05, cores)
        self.service = 0.0  # per-job service given so far
        self.t = 0.0
        self.n = 0
        self.heap: list[tuple[float, int, _Job]] = []
        self.seq = itertools.count()
        self.token = 0

    def rate(self) -> float:
        return min(1.0, self.cores / self.n) if self.n else 1.0

    def _advance(self) -> None:
        self.service += (self.loop.now - self.t) * self.rate()
        self.t = self.loop.now

    def run(self, work: float, done: Callable[[], None]) -> _Job:
        self._advance()
        job = _Job(done)
        heapq.heappush(self.heap, (self.service + max(0.0, work), next(self.seq), job))
        self.n += 1
        self._reschedule()
        return job

    def cancel(self, job: _Job) -> None:
        if job.alive:
            self._advance()
            job.alive = False
            self.n -= 1
            self._reschedule()

    def _reschedule(self) -> None:
        while self.heap and not self.heap[0][2].alive:
            heapq.heappop(self.heap)
        self.token += 1
        if self.heap:
            dt = (self.heap[0][0] - self.service) / self.rate()
            self.loop.after(dt, self._tick, self.token)

    def _tick(self, token: int) -> None:
        if token != self.token:
            return
        self._advance()
        finished = []
        eps = 1e-9 * max(1.0, self.service)
        while self.heap and self.heap[0][0] <= self.service + eps:
            job = heapq.heappop(self.heap)[2]
            if job.alive:
                job.alive = False
                self.n -= 1
                finished.append(job)
        self._reschedule()
        for job in finished:
            job.done()


# --- the ledger ------------------------------------------------------------------


class _Ledger:
    """When each frame is counted: a queue for the function instances, and a
    slot per write for each shard document. A function instance is free once
    it has done its work; a write waiting for its shard does not hold it."""

    def __init__(self, p: Params, units: int) -> None:
        self.p = p
        self.free: list[float] = [0.0] * max(0, p.function_instances)
        self.shard_free: dict[int, float] = {}
        self.block = shard_block(units)
        self.wait_max = 0.0

    def count(self, unit: int, uploaded: float) -> float:
        p = self.p
        arrival = uploaded + p.record_latency
        start = max(arrival, heapq.heappop(self.free)) if self.free else arrival
        write = start + p.function_seconds
        if p.function_instances > 0:
            heapq.heappush(self.free, write)
        if p.shard_interval > 0:
            k = unit // self.block
            write = max(write, self.shard_free.get(k, 0.0))
            self.shard_free[k] = write + p.shard_interval
        self.wait_max = max(self.wait_max, write - arrival - p.function_seconds)
        return write


# --- the simulation ------------------------------------------------------------


@dataclass
class _Message:
    chunk: int
    units: list[int]
    leased_at: float = 0.0
    uploaded: int = 0  # how many of its units (a prefix) are up
    pending: int = 0  # uploads in flight
    finishing: bool = False  # the last frame is on its way: done once no upload is in flight
    deliveries: int = 0  # how often it was pulled (its chunk's, over redeliveries)
    rest: list[int] = field(default_factory=list)  # handed on: published once the rest is up


class _Task:
    __slots__ = (
        "attempt",
        "chunks",
        "epoch",
        "index",
        "job",
        "longest",
        "mark",
        "msg",
        "running_since",
        "state",
        "wait_token",
    )

    def __init__(self, index: int, attempt: int = 0) -> None:
        self.index = index
        self.attempt = attempt  # 0, then its retries
        self.epoch = 0  # bumped when it dies: its pending callbacks do nothing
        self.state = "starting"  # starting | waiting | busy | exited | dead
        self.msg: _Message | None = None
        self.job: _Job | None = None
        self.running_since = math.inf
        self.chunks = 0
        self.wait_token = 0
        self.longest = 0.0  # its chunk's longest frame so far (wall, as the worker times it)
        self.mark = 0.0  # when its current frame began


class _Sim:
    def __init__(self, p: Params, w: Workload) -> None:
        self.p, self.w = p, w
        self.loop = _Loop()
        self.rng = random.Random(w.seed)
        self.cpu: _Dedicated | _SharedCores = (
            _SharedCores(self.loop, p.cores - p.background_cores)
            if p.cores > 0
            else _Dedicated(self.loop)
        )
        units = len(w.frame_seconds)
        self.units = units
        self.nominal = statistics.median(w.frame_seconds) if units else 0.0
        self.ledger = _Ledger(p, units)
        self.queue: deque[_Message] = deque(
            _Message(i, list(range(a, a + n))) for i, (a, n) in enumerate(w.chunks)
        )
        self.waiting: deque[_Task] = deque()
        self.tasks: list[_Task] = []
        self.live = 0  # tasks starting, waiting or busy
        self.landed = [math.nan] * units
        self.uploaded = [math.nan] * units
        self.counted = [math.nan] * units
        self.ran_on: list[_Task | None] = [None] * units
        self.rendered_by: list[tuple[int, int]] = [(-1, -1)] * units
        self.segments = 0
        self.gap_frames = 0
        self.redelivered = 0
        self.handed_on = 0
        self.reconciler_launches = 0
        self.reconcile_pending = False
        self.killed = False
        self.submitted = 0.0
        self.first_task = math.inf

    # -- launch and tasks --------------------------------------------------------

    def start(self) -> None:
        p = self.p
        self.submitted = p.submit_fixed + self.units * p.submit_per_unit
        launched = self.submitted + p.launch
        for _ in range(min(len(self.queue), self.w.slots)):
            delay = p.task_start + self.rng.uniform(0.0, p.task_start_spread)
            self._new_task(launched + delay)

    def _new_task(self, at: float, attempt: int = 0) -> _Task:
        task = _Task(len(self.tasks), attempt)
        self.tasks.append(task)
        self.live += 1
        self.loop.at(at, self._running, task, task.epoch)
        return task

    def _running(self, task: _Task, epoch: int) -> None:
        if epoch != task.epoch:
            return
        task.running_since = self.loop.now
        self.first_task = min(self.first_task, self.loop.now)
        if self.p.task_timeout > 0:
            self.loop.after(self.p.task_timeout, self._timeout, task, epoch)
        self._pull(task)

    def _timeout(self, task: _Task, epoch: int) -> None:
        if epoch == task.epoch and task.state == "busy":
            self._kill(task, epoch)  # as a failure: the runner retries the task

    def _pull(self, task: _Task) -> None:
        budget = self.p.task_budget
        if budget > 0 and self.loop.now - task.running_since >= budget:
            self._exit(task)  # its budget is spent
        elif self.queue:
            msg = self.queue.popleft()
            task.state = "busy"
            self._take(task, msg)
        else:
            task.state = "waiting"
            task.wait_token += 1
            self.waiting.append(task)
            self.loop.after(self.p.idle_exit, self._idle_exit, task, task.epoch, task.wait_token)

    def _take(self, task: _Task, msg: _Message) -> None:
        msg.deliveries += 1
        if msg.deliveries > self.p.max_deliveries:
            raise RuntimeError(
                f"units {msg.units[0]}-{msg.units[-1]} dead-lettered after "
                f"{self.p.max_deliveries} deliveries (a frame longer than a task's timeout?)"
            )
        msg.leased_at = self.loop.now
        task.msg = msg
        self.loop.after(self.p.pull, self._begin, task, task.epoch)

    def _idle_exit(self, task: _Task, epoch: int, token: int) -> None:
        if epoch != task.epoch or token != task.wait_token or task.state != "waiting":
            return
        self.waiting.remove(task)
        self._exit(task)

    def _exit(self, task: _Task) -> None:
        task.state = "exited"
        self.live -= 1
        self._orphans()

    def _enqueue(self, msg: _Message, front: bool) -> None:
        if self.waiting:
            task = self.waiting.popleft()
            task.state = "busy"
            task.wait_token += 1
            self._take(task, msg)
            return
        if front:
            self.queue.appendleft(msg)
        else:
            self.queue.append(msg)
        self._orphans()

    def _orphans(self) -> None:
        """Work queued and no task alive to pull it: the reconciler launches
        tasks at its next pass (with ``reconcile_fills``, whenever a slot is
        free)."""
        idle = self.live < self.w.slots if self.p.reconcile_fills else self.live == 0
        if idle and self.queue and not self.reconcile_pending:
            self.reconcile_pending = True
            every = self.p.reconcile_every
            phase = self.rng.uniform(0.0, every)
            at = phase + math.ceil((self.loop.now - phase) / every) * every
            self.loop.at(at, self._reconcile)

    def _reconcile(self) -> None:
        self.reconcile_pending = False
        free = self.w.slots - self.live if self.p.reconcile_fills else self.w.slots
        if self.queue and (self.live == 0 or (self.p.reconcile_fills and free > 0)):
            self.reconciler_launches += 1
            for _ in range(min(len(self.queue), free)):
                self._new_task(self.loop.now + self.p.launch + self.p.task_start)

    # -- one chunk -------------------------------------------------------------------

    def _begin(self, task: _Task, epoch: int) -> None:
        if epoch != task.epoch:
            return
        msg = task.msg
        assert msg is not None
        task.longest = 0.0  # the chunk's longest frame so far
        failure = self.w.failure
        if (
            failure is not None
            and not self.killed
            and task.index == failure.task
            and task.chunks == 0
        ):
            self.killed = True
            self.loop.after(failure.fraction * self._expected(msg), self._kill, task, task.epoch)
        self.loop.after(self.p.chunk_overhead * self._jitter(), self._povray, task, task.epoch)

    def _jitter(self) -> float:
        j = self.p.jitter
        return self.rng.uniform(1.0 - j, 1.0 + j) if j > 0 else 1.0

    def _expected(self, msg: _Message) -> float:
        """A chunk's time on an idle CPU with every frame of the median time."""
        p = self.p
        n = len(msg.units)
        return (
            p.chunk_overhead
            + p.povray_startup
            + p.povray_startup_cpu
            + p.povray_exit
            + n * self.nominal
            + (n - 1) * p.povray_between
        )

    def _povray(self, task: _Task, epoch: int) -> None:
        if epoch != task.epoch:
            return
        task.mark = self.loop.now
        self.loop.after(self.p.povray_startup * self._jitter(), self._startup_cpu, task, epoch)

    def _startup_cpu(self, task: _Task, epoch: int) -> None:
        if epoch != task.epoch:
            return
        if self.p.povray_startup_cpu > 0:
            task.job = self.cpu.run(self.p.povray_startup_cpu, lambda: self._frame(task, epoch, 0))
        else:
            self._frame(task, epoch, 0)

    def _frame(self, task: _Task, epoch: int, i: int) -> None:
        if epoch != task.epoch:
            return
        msg = task.msg
        assert msg is not None
        budget = self.p.task_budget
        if i > 0 and budget > 0 and self.loop.now - task.running_since + task.longest > budget:
            # The next frame would end past the task's budget: the frames
            # rendered make the segment, the rest is handed on, the task exits.
            msg.rest = msg.units[i:]
            msg.units = msg.units[:i]
            self._last_frame(task, epoch, msg)
            return
        unit = msg.units[i]
        task.job = self.cpu.run(self.w.frame_seconds[unit], lambda: self._landed(task, epoch, i))

    def _landed(self, task: _Task, epoch: int, i: int) -> None:
        if epoch != task.epoch:
            return
        msg = task.msg
        assert msg is not None
        now = self.loop.now
        unit = msg.units[i]
        self.landed[unit] = now
        self.ran_on[unit] = task
        self.rendered_by[unit] = (task.index, task.chunks)
        task.longest = max(task.longest, now - task.mark)
        task.mark = now
        p = self.p
        if i + 1 < len(msg.units):
            # Uploaded once its part of POV-Ray's output is complete: when the
            # next frame begins, after POV-Ray's idle between frames.
            msg.pending += 1
            between = p.povray_between * self._jitter()
            self.loop.after(between + p.frame_upload, self._uploaded, task, epoch, msg, i)
            self.loop.after(between, self._frame, task, epoch, i + 1)
        else:
            self._last_frame(task, epoch, msg)

    def _last_frame(self, task: _Task, epoch: int, msg: _Message) -> None:
        """POV-Ray is done: it exits, the segment is encoded and uploaded,
        then the last frame (the stitch then finds the segment)."""
        self.loop.after(self.p.povray_exit, self._encode, task, epoch, msg)

    def _encode(self, task: _Task, epoch: int, msg: _Message) -> None:
        if epoch != task.epoch:
            return
        frames = len(msg.units)
        task.job = self.cpu.run(
            self.p.encode_per_frame * frames, lambda: self._encoded(task, epoch, msg)
        )

    def _encoded(self, task: _Task, epoch: int, msg: _Message) -> None:
        if epoch != task.epoch:
            return
        task.job = None
        msg.pending += 1
        msg.finishing = True
        self.segments += 1
        self.loop.after(
            self.p.segment_upload + self.p.frame_upload,
            self._uploaded,
            task,
            epoch,
            msg,
            len(msg.units) - 1,
        )

    def _uploaded(self, task: _Task, epoch: int, msg: _Message, i: int) -> None:
        if epoch != task.epoch:
            return  # the process died with its upload
        unit = msg.units[i]
        now = self.loop.now
        self.uploaded[unit] = now
        msg.uploaded = max(msg.uploaded, i + 1)
        msg.pending -= 1
        self.counted[unit] = self.ledger.count(unit, now)
        if self.p.stack_cpu_per_frame > 0:
            self.cpu.run(self.p.stack_cpu_per_frame, lambda: None)
        if msg.finishing and msg.pending == 0:
            # Every upload is done: the ack; then the next pull, or the hand-off and exit.
            task.msg = None
            task.chunks += 1
            if msg.rest:
                self.handed_on += 1
                self._enqueue(_Message(msg.chunk, msg.rest), front=False)
            self._pull(task)

    # -- a failure -------------------------------------------------------------------

    def _kill(self, task: _Task, epoch: int) -> None:
        if epoch != task.epoch or task.state in ("exited", "dead"):
            return
        now = self.loop.now
        p = self.p
        if task.job is not None:
            self.cpu.cancel(task.job)
        if task.state == "waiting":
            self.waiting.remove(task)
        msg = task.msg
        task.epoch += 1
        task.state = "dead"
        task.msg = task.job = None
        self.live -= 1
        # The runner retries the task (before anything else, so that it counts as alive).
        if task.attempt < p.task_retries:
            retry = p.task_start if p.retry_start is None else p.retry_start
            self._new_task(now + retry, task.attempt + 1)
        if msg is not None:
            rest = msg.units[msg.uploaded :] + msg.rest
            if msg.uploaded and not msg.finishing:
                # No segment holds the frames up: the stitch encodes them, a piece of its own.
                self.gap_frames += msg.uploaded
                self.segments += 1
            for u in rest:
                self.landed[u] = math.nan
            if rest:
                every = p.lease_every if p.lease_every > 0 else p.lease
                last = msg.leased_at + math.floor((now - msg.leased_at) / every) * every
                self.redelivered += 1
                pieces = [[u] for u in rest] if p.recut_redelivered else [rest]
                for piece in reversed(pieces):  # the first piece ends up at the front
                    back = _Message(msg.chunk, piece, deliveries=msg.deliveries)
                    self.loop.at(last + p.lease, self._enqueue, back, True)
        else:
            self._orphans()

    # -- the result -------------------------------------------------------------------

    def result(self) -> Result:
        p = self.p
        if any(math.isnan(c) for c in self.counted):
            missing = sum(math.isnan(c) for c in self.counted)
            raise RuntimeError(f"{missing} frames were never counted")
        last_count = max(self.counted, default=self.submitted)
        stitch = (
            p.stitch_launch
            + p.stitch_fixed
            + self.segments * (p.join_per_segment + p.segment_download)
            + self.gap_frames * p.gap_frame
            + p.video_upload
        )
        done = last_count + stitch
        unit = max(range(self.units), key=self.counted.__getitem__)
        task = self.ran_on[unit]
        running = task.running_since if task is not None else self.submitted
        critical = {
            "submit": self.submitted,
            "to_task": running - self.submitted,
            "render": self.landed[unit] - running,
            "hold": self.uploaded[unit] - self.landed[unit],
            "count": self.counted[unit] - self.uploaded[unit],
            "stitch": stitch,
            "after": p.after_done,
        }
        return Result(
            wall=done + p.after_done,
            submitted=self.submitted,
            first_task=self.first_task,
            last_landed=max(self.landed),
            last_upload=max(self.uploaded),
            last_count=last_count,
            stitch=stitch,
            done=done,
            tasks=len(self.tasks),
            chunks=len(self.w.chunks),
            segments=self.segments,
            gap_frames=self.gap_frames,
            redelivered=self.redelivered,
            handed_on=self.handed_on,
            reconciler_launches=self.reconciler_launches,
            ledger_wait_max=self.ledger.wait_max,
            critical=critical,
            landed=list(self.landed),
            uploaded=list(self.uploaded),
            rendered_by=list(self.rendered_by),
        )


def simulate(p: Params, w: Workload) -> Result:
    """One run of the job ``w`` with the times ``p``."""
    sim = _Sim(p, w)
    sim.start()
    sim.loop.run()
    return sim.result()


# --- workloads --------------------------------------------------------------


def frames(n: int, seconds: float, *, cv: float = 0.0, seed: int = 0) -> tuple[float, ...]:
    """``n`` frames of ``seconds`` each; with ``cv`` > 0, drawn from a
    lognormal of that coefficient of variation and mean ``seconds`` (seeded)."""
    if cv <= 0:
        return (float(seconds),) * n
    rng = random.Random(seed)
    sigma = math.sqrt(math.log(1 + cv * cv))
    mu = math.log(seconds) - sigma * sigma / 2
    return tuple(rng.lognormvariate(mu, sigma) for _ in range(n))


def slower(times: Sequence[float], unit: int, factor: float) -> tuple[float, ...]:
    out = list(times)
    out[unit] *= factor
    return tuple(out)


def last_to_land(result: Result, avoid: Failure | None = None) -> int:
    """The frame POV-Ray finished last: the worst place for a slow frame;
    with ``avoid``, not one of the chunk the failing task takes first."""
    hit = (avoid.task, 0) if avoid is not None else None
    units = [u for u in range(len(result.landed)) if result.rendered_by[u] != hit]
    return max(units or range(len(result.landed)), key=result.landed.__getitem__)


def with_slow_tail(p: Params, w: Workload, factor: float) -> tuple[Result, Workload, int]:
    """``w`` with one slow frame, ``factor`` times as long, where it hurts
    most: on the frame that lands last without it, without ``w``'s failure,
    and outside the chunk the failure hits (the two are independent events;
    both on one frame would be a third). Returns (result, workload, the frame)."""
    unit = last_to_land(simulate(p, replace(w, failure=None)), w.failure)
    slow = replace(w, frame_seconds=slower(w.frame_seconds, unit, factor))
    return simulate(p, slow), slow, unit


# --- chunk plans ------------------------------------------------------------------


def plan(
    name: str, units: int, slots: int, frame_seconds: float | None = None
) -> tuple[Chunk, ...]:
    """The chunks, in dispatch order, of a plan:

    guided   the farm's plan for a first render (``plan_chunks`` by frame
             counts: ceil(remaining / slots) frames a chunk)
    timed    the farm's plan once the frame time is known (a scene rendered
             before: chunks of equal seconds, at most CHUNK_SECONDS)
    frame    one frame a chunk
    equal    one chunk per slot, ceil(units / slots) frames each (at most
             MAX_FRAMES_PER_UNIT)

    Each laid out coarse to fine, as the farm dispatches them.
    """
    if name == "guided":
        return tuple(plan_chunks(units, slots))
    if name == "timed":
        return tuple(plan_chunks(units, slots, frame_seconds=frame_seconds or 1.0))
    if name == "frame":
        return tuple(plan_chunks(units, slots, frames_per_unit=1))
    if name == "equal":
        return tuple(plan_chunks(units, slots, frames_per_unit=-(-units // max(1, slots))))
    raise ValueError(f"unknown plan {name!r}")


PLANS = ("guided", "timed", "frame", "equal")
