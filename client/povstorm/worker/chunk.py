"""Render the units of one ticket: a chunk of frames in one POV-Ray process,
each frame uploaded as soon as POV-Ray has written it, or one still or
generated unit.

Where it sits: ``worker.unit.handle_work`` prepares the working directory
and hands the ticket here. For a chunk (the frames ``a..b`` of an animation,
core/chunks.py) POV-Ray runs its own animation loop (``+SF fa +EF fb``), so
every frame is the one ``povray`` renders directly; while it runs:

* a frame whose PNG is complete (it ends with IEND) and whose part of
  POV-Ray's output is complete (the next frame began, or POV-Ray exited) is
  uploaded at once with its stats (wall and CPU time since the previous
  frame, peak memory) and its own log: its finalize event counts it in the
  ledger, so progress moves frame by frame;
* a frame that fails (POV-Ray's error, or longer than the job's timeout a
  frame) is reported with its error and log, and the frames after it go on in
  a fresh POV-Ray process;
* a cancelled job stops the process within CANCEL_CHECK_SECONDS;
* when the task's time budget (what is left of ``Settings.render_timeout``,
  which the deployment keeps below the render job's task timeout) would run
  out before the next frame, the frames not yet rendered are handed on in a
  new work message (``Ledger.hand_off``) rather than killed at the timeout.

The frames a process rendered are encoded as a video segment
(``povstorm.stitch.segments``) when the job's codec can be joined, so the
stitch joins segments instead of encoding every frame. The segment, and the
run's last frame (held back until the segment is up), go up as soon as
POV-Ray has written that frame and printed its figures, not when it exits:
POV-Ray takes some 0.3 s more to end, CPU idle, and for the job's last chunk
that was 0.3 s more before the video.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from povstorm.cloud.clients import Clients
from povstorm.core.chunks import chunkable, runs
from povstorm.core.digest import sha256_file
from povstorm.core.errors import StitchFailed
from povstorm.core.model import FailureReport, JobState, RenderStats, WorkMessage
from povstorm.core.naming import frame_object, log_object, radiosity_object, segment_object
from povstorm.core.schemas import encode_message
from povstorm.core.spec import RADIOSITY_OUT
from povstorm.ledger.views import UnitTicket
from povstorm.povray import (
    GrowingOutput,
    PovrayProcess,
    PovrayRun,
    error_line,
    frame_sections,
    parse_seconds,
    parse_stats,
    png_complete,
    tail,
)
from povstorm.stitch.segments import SEGMENT_CONTENT_TYPE, encode_segment, segment_ext

if TYPE_CHECKING:
    from povstorm.ledger.ledger import Ledger
    from povstorm.worker.cache import FrameCache

log = logging.getLogger(__name__)

# How often the worker looks for a finished frame while POV-Ray runs (its
# exit wakes the worker at once): every 50 ms at first, then a twentieth of
# the last frame's time, so a frame is seen within 5 % of its render and a
# 4 s frame costs the worker 20 looks, not 80 (measured at 1280x960: the
# four workers' own CPU fell from 10-12 s to 2.4 s a 48-frame job).
POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 0.5
CANCEL_CHECK_SECONDS = 5.0
UPLOAD_THREADS = 4


@dataclass
class Landed:
    """A frame POV-Ray finished writing."""

    unit: int
    path: Path
    stats: RenderStats


@dataclass
class ChunkResult:
    rendered: list[int] = field(default_factory=list)
    cached: list[int] = field(default_factory=list)  # copied from the frame cache
    failed: list[tuple[int, str]] = field(default_factory=list)
    handed_on: list[int] = field(default_factory=list)
    cancelled: bool = False
    segments: int = 0


class ChunkRender:
    def __init__(
        self,
        clients: Clients,
        ledger: Ledger,
        ticket: UnitTicket,
        *,
        worker: str,
        sandbox: Path,
        workdir: Path,
        library: list[Path],
        frame_cache: FrameCache | None = None,
        budget: float | None = None,
    ) -> None:
        self.clients = clients
        self.frame_cache = frame_cache
        self.ledger = ledger
        self.ticket = ticket
        self.spec = ticket.spec
        self.worker = worker
        self.sandbox = sandbox
        self.workdir = workdir
        self.library = library
        settings = clients.settings
        # A frame's limit is the job's; the whole chunk's is what is left of
        # the task's budget.
        self.budget = float(
            budget if budget is not None else settings.render_timeout or self.spec.timeout_seconds
        )
        self.frame_timeout = min(float(self.spec.timeout_seconds), self.budget)
        self.stream = chunkable(self.spec)
        self.began = time.monotonic()
        self.result = ChunkResult()
        self._runs = 0
        self._longest = 0.0  # the longest frame so far
        self._pool: cf.ThreadPoolExecutor | None = None
        self._uploads: list[cf.Future[None]] = []

    @property
    def job_id(self) -> str:
        return self.ticket.job_id

    @property
    def attempt(self) -> int:
        return self.ticket.attempt

    # --- the chunk -------------------------------------------------------------

    def render(self, units: list[int]) -> ChunkResult:
        """Render ``units`` (sorted): each contiguous run in one POV-Ray process,
        a failed frame's successors in a fresh one. Raises what an upload raised
        (the message is then redelivered and resumes where the bucket ends)."""
        self._pool = cf.ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload")
        try:
            pending = list(units)
            while pending:
                if self.result.rendered and self._spent(self._longest):
                    self._hand_on(pending)  # no time left for a fresh process
                    break
                _, count = runs(pending)[0]
                run_units, pending = pending[:count], pending[count:]
                left, stop = self._run(run_units)
                if stop == "cancelled":
                    self.result.cancelled = True
                    break
                if stop == "handoff":
                    self._hand_on(left + pending)
                    break
                pending = left + pending
            for future in self._uploads:
                future.result()
        finally:
            self._pool.shutdown(wait=True)
        return self.result

    def _run(self, run_units: list[int]) -> tuple[list[int], str]:
        """One POV-Ray process over ``run_units``; returns (the units after a
        failed frame, to render next; why it stopped early, or "")."""
        self._runs += 1
        outdir = self.sandbox / f"out-{self._runs}"
        if self.stream:
            args = self.spec.unit_args(run_units[0], len(run_units))
        else:
            args = self.ticket.unit_spec.args
        proc = PovrayProcess(
            args,
            self.workdir,
            outdir,
            library=self.library,
            threads=self.clients.settings.povray_threads,
        ).start()
        output = GrowingOutput(proc.logfile)
        landed: list[Landed] = []
        uploaded = 0
        mark, mark_cpu = proc.started, 0.0
        walls: list[float] = []
        stop = ""
        # Every frame of the run written and uploaded before POV-Ray's exit.
        ended = False
        # A pre-pass's samples are written as POV-Ray ends, and go up before
        # the run's last frame (_upload_radiosity): that run waits for the exit.
        prepass = bool(self.spec.povray and self.spec.povray.prepass)
        next_check = time.monotonic() + CANCEL_CHECK_SECONDS
        while True:
            poll = (
                min(MAX_POLL_SECONDS, max(POLL_SECONDS, walls[-1] / 20)) if walls else POLL_SECONDS
            )
            exited = proc.wait(poll)
            now = time.monotonic()
            # Once POV-Ray has exited, /proc says nothing more of it: its
            # frames land below, measured by its rusage.
            if self.stream and not ended and not exited:
                for path in self._new_images(outdir, landed):
                    if len(landed) == len(run_units):
                        break
                    cpu = proc.cpu_seconds()
                    stats = RenderStats(
                        now - mark, cpu - mark_cpu, proc.peak_memory_bytes(), self.worker
                    )
                    landed.append(Landed(run_units[len(landed)], path, stats))
                    walls.append(now - mark)
                    mark, mark_cpu = now, cpu
                # The run's last frame waits for the segment (below).
                limit = len(run_units) - 1
                output.read(final=exited)
                uploaded = self._upload_landed(output, landed, uploaded, exited, limit)
                if (
                    not exited
                    and not stop
                    and not prepass
                    and len(landed) == len(run_units)
                    and output.last_frame_ended
                ):
                    # POV-Ray takes some 0.3 s more to exit, CPU idle: the
                    # segment and the last frame need not wait for it.
                    self._end_run(output, landed, uploaded, stop)
                    ended = True
            if exited:
                break
            if stop:
                proc.kill()  # SIGKILL once the grace is over
                continue
            if now - mark > self.frame_timeout:
                stop = "timeout"
            elif self.stream and walls and len(landed) < len(run_units) and self._spent(max(walls)):
                # The next frame would end past the budget: hand the rest on.
                stop = "handoff"
            if not stop and now >= next_check:
                next_check = now + CANCEL_CHECK_SECONDS
                job = self.ledger.get_job(self.job_id)
                if job is None or JobState(job["state"]).terminal:
                    stop = "cancelled"
            if stop:
                proc.kill()
        run = proc.finish()
        self._longest = max([self._longest, *walls])
        if prepass and stop != "cancelled":
            self._upload_radiosity()  # before the run's last frame can end the job
        if self.stream and not ended:
            # Frames found only after the exit share what POV-Ray spent since
            # the last one found before it (tiny frames: a whole chunk).
            late = self._new_images(outdir, landed)[: len(run_units) - len(landed)]
            if late:
                share = RenderStats(
                    (time.monotonic() - mark) / len(late),
                    (run.cpu_seconds - mark_cpu) / len(late),
                    run.maxrss_bytes,
                    self.worker,
                )
                landed += [Landed(run_units[len(landed) + i], p, share) for i, p in enumerate(late)]
            output.read(final=True)
            self._end_run(output, landed, uploaded, stop, whole=len(landed) == len(run_units))
        elif self.stream:
            # The last frame's log went up with its figures; again, whole.
            output.read(final=True)
            preamble, sections = output.sections()
            self._upload_log(landed[-1].unit, preamble + sections[len(landed) - 1])
        else:
            landed = self._single(run_units[0], run)
        self.result.rendered += [f.unit for f in landed]
        left = run_units[len(landed) :]
        if not left or stop in ("cancelled", "handoff"):
            return left, stop
        failed = left[0]
        error = self._error(run, stop, failed)
        preamble, sections = frame_sections(run.output)
        own = run.output
        if self.stream and len(sections) > len(landed):
            own = preamble + sections[len(landed)]
        self._upload_log(failed, own)
        for future in self._uploads:  # the report names the log: it must be there
            future.result()
        self.report(failed, error, tail(own))
        self.result.failed.append((failed, error))
        return left[1:], ""

    def _end_run(
        self,
        output: GrowingOutput,
        landed: list[Landed],
        uploaded: int,
        stop: str,
        whole: bool = True,
    ) -> None:
        """The frames of a run still to go up, every frame's part of the output
        complete: its segment first, then a ``whole`` run's last frame, which
        was held back: the stitch starts when the last frame is counted, and
        finds the segment."""
        limit = len(landed) - 1 if whole else len(landed)
        uploaded = self._upload_landed(output, landed, uploaded, True, limit)
        try:
            if landed and stop != "cancelled":
                self._segment(landed)
        finally:
            self._upload_landed(output, landed, uploaded, True, len(landed))

    def _spent(self, frame_seconds: float) -> bool:
        """Whether one more frame would end past the worker's budget."""
        return time.monotonic() - self.began + frame_seconds > self.budget

    # --- what POV-Ray wrote ----------------------------------------------------------

    @staticmethod
    def _new_images(outdir: Path, landed: list[Landed]) -> list[Path]:
        """The PNGs POV-Ray finished since the last look, in frame order. POV-Ray
        writes the frames of a run one after another, all with names of one
        length, so the name order is the frame order."""
        seen = {f.path for f in landed}
        out = []
        for path in sorted(outdir.glob("*.png")):
            if path in seen:
                continue
            if not png_complete(path):
                break
            out.append(path)
        return out

    def _upload_landed(
        self, output: GrowingOutput, landed: list[Landed], uploaded: int, ended: bool, limit: int
    ) -> int:
        """Upload the frames (up to ``limit``) whose part of POV-Ray's output is
        complete (the next frame has begun, or POV-Ray has ended); returns how
        many are uploaded now."""
        split: tuple[str, list[str]] | None = None
        while uploaded < min(len(landed), limit) and (ended or uploaded + 1 < output.frames_begun):
            preamble, sections = split = split or output.sections()
            own = preamble + sections[uploaded] if uploaded < len(sections) else output.text()
            self._upload_frame(landed[uploaded], own)
            uploaded += 1
        return uploaded

    def _single(self, unit: int, run: PovrayRun) -> list[Landed]:
        """A still or a generated unit: exactly one image once POV-Ray is done."""
        if run.returncode != 0 or len(run.images) != 1:
            return []
        _, peak = parse_stats(run.output)
        stats = RenderStats(
            render_seconds=run.wall_seconds,
            cpu_seconds=run.cpu_seconds,
            peak_memory_bytes=peak if peak is not None else run.maxrss_bytes,
            worker=self.worker,
        )
        frame = Landed(unit, run.images[0], stats)
        self._upload_frame(frame, run.output)
        return [frame]

    def _error(self, run: PovrayRun, stop: str, unit: int) -> str:
        if stop == "timeout":
            return f"POV-Ray timed out after {self.frame_timeout:g} s and was killed"
        if not self.stream and len(run.images) > 1:
            return f"POV-Ray wrote {len(run.images)} images; a unit must render exactly one frame"
        if run.returncode not in (0, None):
            return error_line(run.output) or f"POV-Ray exited with status {run.returncode}"
        what = f"frame {self._frame(unit)}" if self.stream else "the unit"
        return error_line(run.output) or f"POV-Ray exited normally but wrote no image for {what}"

    def _frame(self, unit: int) -> int | None:
        povray = self.spec.povray
        return self.spec.frame_of(unit) if povray and povray.animated else None

    # --- uploads and reports ---------------------------------------------------------

    def _upload_frame(self, frame: Landed, output: str) -> None:
        seconds, peak = parse_stats(output)
        parsed = parse_seconds(output)
        stats = frame.stats
        if peak is not None and self.stream:
            stats = RenderStats(stats.render_seconds, stats.cpu_seconds, peak, stats.worker)
        number = self._frame(frame.unit)
        metadata = {
            **stats.to_metadata(),
            "attempt": str(self.attempt),
            "frame": "" if number is None else str(number),
            # POV-Ray's own parse + trace time, without its start-up.
            "trace_seconds": "" if seconds is None else f"{seconds:.3f}",
            # Its parse alone: what a bigger render of the frame would not scale.
            "parse_seconds": "" if parsed is None else f"{parsed:.3f}",
        }
        key = self.frame_cache.keys.get(frame.unit) if self.frame_cache else None
        if key:
            # The stitch stores the frame under its key (stitch/job.py: store_frames).
            metadata["cache_key"] = key
        name = frame_object(self.job_id, frame.unit)
        blobs = self.clients.blobs

        def upload() -> None:
            blobs.upload_file(name, frame.path, content_type="image/png", metadata=metadata)

        self._submit(upload)
        self._upload_log(frame.unit, output)

    def _submit(self, upload: Callable[[], None]) -> None:
        assert self._pool is not None, "uploads happen inside render()"
        self._uploads.append(self._pool.submit(upload))

    def _upload_radiosity(self) -> None:
        """A radiosity pre-pass's samples (client/prepass.py), the file its
        POV-Ray appended to frame after frame, with their sha256: the client
        copies them to an input once the job is done."""
        path = self.workdir / RADIOSITY_OUT
        if path.is_file():
            self.clients.blobs.upload_file(
                radiosity_object(self.job_id),
                path,
                "application/octet-stream",
                metadata={"sha256": sha256_file(path)},
            )

    def _upload_log(self, unit: int, output: str) -> None:
        name = log_object(self.job_id, unit, self.attempt)
        data = output.encode()
        blobs = self.clients.blobs

        def upload() -> None:
            blobs.upload_bytes(name, data, content_type="text/plain; charset=utf-8")

        self._submit(upload)

    def _segment(self, landed: list[Landed]) -> None:
        """The frames of one process as a video segment, when the codec joins.
        Best effort: without it the stitch encodes these frames itself."""
        output = self.spec.output
        ext = segment_ext(output)
        if ext is None:
            return
        dest = self.sandbox / f"segment-{self._runs}.{ext}"
        try:
            encode_segment(output, [f.path for f in landed], dest)
        except StitchFailed as exc:
            log.warning(
                "%s: no segment for units %d-%d: %s",
                self.job_id,
                landed[0].unit,
                landed[-1].unit,
                exc,
            )
            return
        name = segment_object(self.job_id, landed[0].unit, landed[-1].unit, ext)
        self.clients.blobs.upload_file(name, dest, content_type=SEGMENT_CONTENT_TYPE)
        self.result.segments += 1

    def report(self, unit: int, error: str, log_tail: str = "", final: bool = False) -> None:
        report = FailureReport(
            job_id=self.job_id,
            unit=unit,
            attempt=self.attempt,
            error=error,
            log_tail=log_tail,
            worker=self.worker,
            final=final,
        )
        self.clients.publisher.publish("failures", encode_message(report))

    def _hand_on(self, units: list[int]) -> None:
        """Give the units not rendered back to the farm in new work messages."""
        handed = self.ledger.hand_off(self.job_id, units, self.attempt, self.worker)
        messages = [WorkMessage(self.job_id, a, self.attempt, n) for a, n in runs(sorted(handed))]
        if messages:
            self.clients.publisher.publish_many("work", [encode_message(m) for m in messages])
            for message in messages:
                self.ledger.mark_queued(message)
        self.result.handed_on = handed
        log.info("%s: budget spent, handed on %d units", self.job_id, len(handed))
