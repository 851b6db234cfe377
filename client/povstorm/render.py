"""Render one unit: the work behind the render service.

Where it sits in the event flow: a work message (job, unit, attempt) arrives
by Pub/Sub push (Cloud Run, ``render_container.main``) or pull (the local
worker, ``render_container.worker``); ``handle_work`` asks the ledger whether
to render it, materialises the unit's files into a fresh working directory,
runs POV-Ray and uploads what it made:

    logs/<job>/<unit>/attempt-<k>.log   always (POV-Ray's output)
    frames/<job>/<unit>.png             on success, with the render stats as
                                        object metadata; its finalize
                                        notification (not this worker) tells
                                        the ledger the unit is done
    failures topic                      on POV-Ray failure: a FailureReport

Acknowledge or not: every ``RenderOutcome`` means "acknowledge"; a
``TransientError`` escapes so the message is redelivered. A worker that dies
mid-render is noticed through ``UnitTicket.deliveries``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import BlobStore, Clients
from .errors import PoisonMessage, PovstormError, SpecError, UnknownJob
from .model import FailureReport, RenderStats, WorkMessage
from .naming import check_relpath, frame_object, input_object, log_object
from .schemas import encode_message, load_work_message
from .settings import Settings
from .spec import JobSpec, UnitSpec

if TYPE_CHECKING:
    from .ledger import Ledger

log = logging.getLogger(__name__)

# A unit whose attempt was started this many times without an outcome keeps
# killing its worker (out of memory, a crash in POV-Ray): report it failed.
MAX_DELIVERIES = 3
LOG_TAIL_LINES = 50
POVRAY = "povray"
# Appended after the unit's own arguments so they win: no display window, no
# pause at the end, PNG into a directory the farm owns.
FARM_OPTIONS = ("-D", "-P", "+FN")
_KILL_GRACE_SECONDS = 2.0
_POLL_SECONDS = 0.05

_SECONDS_RE = re.compile(
    r"^\s*(Parse|Bounding|Photon|Radiosity|Trace) Time:.*\((\d+(?:\.\d+)?) seconds\)", re.M
)
_PEAK_MEMORY_RE = re.compile(r"Peak memory used:\s*([\d,]+)\s*bytes", re.I)
# A "Possible Parse Error" is a warning in a render that may well succeed.
_ERROR_RE = re.compile(r"^(?!.*Possible Parse Error).*\bError:", re.I)
_FALLBACK_ERROR_RE = re.compile(r"\b(error|failed|cannot|unable)\b", re.I)


@dataclass(frozen=True)
class RenderOutcome:
    """What became of one work message. Every outcome is acknowledged."""

    status: str  # rendered | failed | skipped | poison
    job_id: str = ""
    unit: int = -1
    attempt: int = 0
    detail: str = ""
    seconds: float = 0.0
    stats: RenderStats | None = None
    frame: str = ""  # the frame object, when rendered

    def line(self) -> str:
        """The one log line per unit that workers print."""
        what = (
            f"{self.job_id} unit {self.unit} attempt {self.attempt}" if self.job_id else "message"
        )
        tail = f": {self.detail}" if self.detail else ""
        return f"{what} {self.status} in {self.seconds:.2f}s{tail}"


# --- inputs ------------------------------------------------------------------


class InputCache:
    """Content-addressed inputs, downloaded once per instance.

    Files live at ``<root>/<sha256>`` and are hard-linked (or copied across
    file systems) into each working directory. A download goes to a unique
    temporary name, is verified against its digest and renamed into place, so
    concurrent workers sharing a cache directory never see a partial file.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.downloads = 0  # objects fetched from the bucket (a hit costs none)
        self._lock = threading.Lock()
        # (size, mtime) of each verified file: a scene that writes to one of its
        # inputs writes through the hard link into the cache, even as root,
        # where read-only modes do not stop it; a changed stamp means re-fetch.
        self._stamps: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> InputCache:
        root = settings.cache_dir or tempfile.mkdtemp(prefix="povstorm-cache-")
        return cls(Path(root))

    def path(self, blobs: BlobStore, sha256: str) -> Path:
        """The verified local copy of an input, fetched on the first use."""
        name = input_object(sha256)
        target = self.root / sha256
        with self._lock:
            if self._fresh(target, sha256):
                return target
            # Left by another worker sharing the cache, or changed since we
            # verified it: keep it only if it still matches its name.
            if target.exists() and _sha256_of(target) == sha256:
                self._stamp(target, sha256)
                return target
            if blobs.info(name) is None:
                raise SpecError(f"input {sha256[:12]}... is not in the bucket ({name})")
            tmp = self.root / f".{sha256}.{uuid.uuid4().hex}.tmp"
            try:
                blobs.download_to(name, tmp)
                self.downloads += 1
                got = _sha256_of(tmp)
                if got != sha256:
                    raise SpecError(f"input {name} has digest {got[:12]}..., not its name")
                tmp.chmod(0o444)
                tmp.replace(target)
            finally:
                tmp.unlink(missing_ok=True)
            self._stamp(target, sha256)
            return target

    def _fresh(self, target: Path, sha256: str) -> bool:
        try:
            st = target.stat()
        except FileNotFoundError:
            return False
        return self._stamps.get(sha256) == (st.st_size, st.st_mtime_ns)

    def _stamp(self, target: Path, sha256: str) -> None:
        st = target.stat()
        self._stamps[sha256] = (st.st_size, st.st_mtime_ns)

    def place(self, blobs: BlobStore, sha256: str, dest: Path) -> None:
        src = self.path(blobs, sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(src, dest)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(src, dest)


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _inside(workdir: Path, relpath: str, what: str) -> Path:
    """The destination of a manifest path, checked again here: the spec came
    through the ledger, not straight from the schema that first checked it."""
    check_relpath(relpath, what)
    dest = (workdir / relpath).resolve()
    if not dest.is_relative_to(workdir.resolve()):
        raise SpecError(f"{what} {relpath!r} leaves the working directory")
    return dest


def materialise(
    clients: Clients, cache: InputCache, spec: JobSpec, unit_spec: UnitSpec, workdir: Path
) -> None:
    """Write the job's shared inputs, the unit's inputs and its inline files."""
    prefix = f"{spec.inputs_dir}/" if spec.inputs_dir else ""
    placements = [(f"{prefix}{rel}", sha, "input name") for rel, sha in sorted(spec.inputs.items())]
    placements += [(rel, sha, "input name") for rel, sha in sorted(unit_spec.inputs.items())]
    # Check every name before writing anything.
    dests = [(_inside(workdir, rel, what), sha) for rel, sha, what in placements]
    inline = [
        (_inside(workdir, rel, "inline file name"), text) for rel, text in unit_spec.inline.items()
    ]
    for dest, sha in dests:
        cache.place(clients.blobs, sha, dest)
    for dest, text in inline:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Unlink first: the name may be a hard link into the input cache.
        dest.unlink(missing_ok=True)
        dest.write_text(text)


# --- POV-Ray -----------------------------------------------------------------


@dataclass(frozen=True)
class PovrayRun:
    returncode: int | None  # None: killed on timeout
    output: str
    images: tuple[Path, ...]
    wall_seconds: float
    cpu_seconds: float
    maxrss_bytes: int
    timed_out: bool


def povray_command(
    args: tuple[str, ...] | list[str], outdir: Path, library: list[Path]
) -> list[str]:
    farm = [*(f"+L{p}" for p in library), *FARM_OPTIONS, f"+O{outdir}/"]
    return [POVRAY, *args, *farm]


def run_povray(
    args: tuple[str, ...] | list[str],
    workdir: Path,
    outdir: Path,
    *,
    timeout: float,
    library: list[Path] | None = None,
) -> PovrayRun:
    """Run POV-Ray in ``workdir`` in its own process group; kill the group on timeout."""
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = povray_command(args, outdir, library or [workdir])
    logfile = outdir.parent / "povray.log"
    # HOME points into the sandbox so a povray.ini/povray.conf of the worker
    # machine's user cannot change the farm's renders.
    env = {**os.environ, "HOME": str(outdir.parent)}
    started = time.monotonic()
    with open(logfile, "wb") as out:
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise PovstormError(f"cannot run {POVRAY}: {exc}") from exc
        deadline = started + timeout
        timed_out = False
        pidfd = _pidfd(proc.pid)
        try:
            # Check without reaping (WNOWAIT): until POV-Ray is reaped its pid
            # stays its group's id, so signalling the group can never hit a stranger.
            while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                now = time.monotonic()
                if now >= deadline and not timed_out:
                    timed_out = True
                    _kill_group(proc.pid, signal.SIGTERM)
                elif timed_out and now >= deadline + _KILL_GRACE_SECONDS:
                    _kill_group(proc.pid, signal.SIGKILL)
                wake = deadline + (_KILL_GRACE_SECONDS if timed_out else 0.0)
                _await_exit(pidfd, max(wake - now, _POLL_SECONDS))
        finally:
            if pidfd is not None:
                os.close(pidfd)
        # Helpers POV-Ray left behind in its group end with it.
        _kill_group(proc.pid, signal.SIGKILL)
        # wait4 rather than Popen.wait: it returns this child's own rusage.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    output = logfile.read_bytes().decode("utf-8", errors="replace")
    return PovrayRun(
        returncode=None if timed_out else proc.returncode,
        output=output,
        images=tuple(sorted(outdir.glob("*.png"))),
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        maxrss_bytes=usage.ru_maxrss * 1024,  # Linux counts it in KiB
        timed_out=timed_out,
    )


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or
    None where there is none: the caller then polls."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _await_exit(pidfd: int | None, seconds: float) -> None:
    """Sleep until the child exits or ``seconds`` pass. With a pidfd the wake-up
    is immediate: polling every 50 ms cost each frame 25 ms on average."""
    if pidfd is None:
        time.sleep(_POLL_SECONDS)
    else:
        select.select([pidfd], [], [], seconds)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def parse_stats(output: str) -> tuple[float | None, int | None]:
    """(seconds POV-Ray spent parsing, bounding, shooting photons, radiosity
    and tracing; its peak memory) as it printed them, None where it did not."""
    times = [float(m[2]) for m in _SECONDS_RE.finditer(output)]
    seconds = sum(times) if times else None
    m = _PEAK_MEMORY_RE.search(output)
    peak = int(m[1].replace(",", "")) if m else None
    return seconds, peak


def error_line(output: str) -> str:
    """POV-Ray's own error, on one line: ``File 'x.pov' line 3: Parse Error: ...``.

    POV-Ray wraps its messages at 80 columns, continuing them on lines that
    start with a space; those are joined back."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if _ERROR_RE.search(line):
            parts = [line.strip()]
            for cont in lines[i + 1 : i + 4]:
                if not cont.startswith(" ") or not cont.strip():
                    break
                parts.append(cont.strip())
            return " ".join(parts)
    for line in lines:
        # Skip the option dump, which names streams, not errors.
        if (
            _FALLBACK_ERROR_RE.search(line)
            and "Stream" not in line
            and "configuration file" not in line
        ):
            return line.strip()
    return ""


def tail(output: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(output.splitlines()[-lines:])


# --- the unit ------------------------------------------------------------------


def handle_work(
    clients: Clients, ledger: Ledger, message: bytes | str | WorkMessage, *, cache: InputCache
) -> RenderOutcome:
    """Render the unit a work message names. Raises TransientError when the
    message should be redelivered; every returned outcome is acknowledged."""
    started = time.monotonic()
    try:
        work = message if isinstance(message, WorkMessage) else load_work_message(message)
    except PoisonMessage as exc:
        log.warning("poison work message acknowledged: %s", exc)
        return RenderOutcome("poison", detail=str(exc))

    def done(status: str, detail: str = "", **kw: Any) -> RenderOutcome:
        return RenderOutcome(
            status, work.job_id, work.unit, work.attempt, detail, time.monotonic() - started, **kw
        )

    worker = clients.settings.worker_id or f"{os.uname().nodename}:{os.getpid()}"
    try:
        ticket = ledger.start_unit(work.job_id, work.unit, work.attempt, worker)
    except UnknownJob as exc:
        log.warning("work for an unknown job acknowledged: %s", exc)
        return done("skipped", str(exc))
    if ticket is None:
        return done("skipped", "job finished or cancelled, unit settled, or attempt stale")
    if ticket.deliveries > MAX_DELIVERIES:
        error = f"worker lost {ticket.deliveries - 1} times while rendering this unit"
        _report(clients, work, error, "", worker)
        return done("failed", error)

    spec: JobSpec = ticket.spec
    timeout = min(spec.timeout_seconds, clients.settings.render_timeout or spec.timeout_seconds)
    sandbox = Path(tempfile.mkdtemp(prefix=f"povstorm-{work.job_id}-{work.unit}-"))
    try:
        workdir = sandbox / "work"
        workdir.mkdir()
        try:
            materialise(clients, cache, spec, ticket.unit_spec, workdir)
        except SpecError as exc:
            # A refused name, a missing or corrupt input: no attempt can
            # succeed, so the report says it is final.
            error = f"cannot prepare the unit: {exc}"
            _report(clients, work, error, "", worker, final=True)
            return done("failed", error)
        except OSError as exc:  # a full disk, say: another worker may do better
            error = f"cannot prepare the unit: {exc}"
            _report(clients, work, error, "", worker)
            return done("failed", error)

        library = [workdir] + ([workdir / spec.inputs_dir] if spec.inputs_dir else [])
        run = run_povray(
            ticket.unit_spec.args, workdir, sandbox / "out", timeout=timeout, library=library
        )
        clients.blobs.upload_bytes(
            log_object(work.job_id, work.unit, work.attempt),
            run.output.encode(),
            content_type="text/plain; charset=utf-8",
        )
        failure = _failure(run, timeout)
        if failure:
            _report(clients, work, failure, tail(run.output), worker)
            return done("failed", failure)

        seconds, peak = parse_stats(run.output)
        # A frame's render time is what POV-Ray took as a process (start-up,
        # parse and trace): what rendering the frames one after another costs.
        stats = RenderStats(
            render_seconds=run.wall_seconds,
            cpu_seconds=run.cpu_seconds,
            peak_memory_bytes=peak if peak is not None else run.maxrss_bytes,
            worker=worker,
        )
        frame = (
            spec.povray.frames.frame(work.unit) if spec.povray and spec.povray.animated else None
        )
        metadata = {
            **stats.to_metadata(),
            "attempt": str(work.attempt),
            "frame": "" if frame is None else str(frame),
            # POV-Ray's own parse + trace time, without its start-up.
            "trace_seconds": "" if seconds is None else f"{seconds:.3f}",
        }
        name = frame_object(work.job_id, work.unit)
        clients.blobs.upload_file(name, run.images[0], content_type="image/png", metadata=metadata)
        return done("rendered", f"{stats.render_seconds:.3f}s render", stats=stats, frame=name)
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


def _failure(run: PovrayRun, timeout: float) -> str:
    """The one-line error of a failed run, or "" if it made its one image."""
    if run.timed_out:
        return f"POV-Ray timed out after {timeout:g} s and was killed"
    if run.returncode != 0:
        return error_line(run.output) or f"POV-Ray exited with status {run.returncode}"
    if not run.images:
        return error_line(run.output) or "POV-Ray exited normally but wrote no image"
    if len(run.images) > 1:
        return f"POV-Ray wrote {len(run.images)} images; a unit must render exactly one frame"
    return ""


def _report(
    clients: Clients, work: WorkMessage, error: str, log_tail: str, worker: str, final: bool = False
) -> None:
    report = FailureReport(
        job_id=work.job_id,
        unit=work.unit,
        attempt=work.attempt,
        error=error,
        log_tail=log_tail,
        worker=worker,
        final=final,
    )
    clients.publisher.publish("failures", encode_message(report))
