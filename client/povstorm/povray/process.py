"""Run POV-Ray as a process: its own process group, a sandboxed HOME, file
access confined to its sandbox (``confine.py``), its idle polls cut short
(``nopoll.py``), a timeout that kills the whole group, and the CPU and
memory it used, also while it runs (a chunk's frames are measured one by
one)."""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from povstorm.core.errors import PovstormError
from povstorm.povray.nopoll import preload
from povstorm.povray.options import FARM_OPTIONS, SYSTEM_SHARE

POVRAY = "povray"
# Run by path, with the standard library only: it confines, then becomes POV-Ray.
CONFINE = Path(__file__).with_name("confine.py")
_KILL_GRACE_SECONDS = 2.0
_POLL_SECONDS = 0.05
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
    args: tuple[str, ...] | list[str], outdir: Path, library: list[Path], threads: int = 0
) -> list[str]:
    # +WT before the unit's own arguments, so a thread count the job sets
    # wins; the farm's options after them, so they win; +O puts the PNGs
    # into a directory the farm owns.
    lead = [f"+WT{threads}"] if threads > 0 else []
    farm = [*(f"+L{p}" for p in library), *FARM_OPTIONS, f"+O{outdir}/"]
    return [POVRAY, *lead, *args, *farm]


@functools.cache
def povray_version() -> str:
    """The version line of the ``povray`` this machine runs ("POV-Ray
    3.7.0.10.unofficial"): part of every frame cache key (core/framekey.py),
    so a different build never reuses another's frames. "" if it cannot be
    read (the worker then neither reads nor writes the cache)."""
    try:
        run = subprocess.run(
            [POVRAY, "--version"],
            capture_output=True,
            timeout=30,
            check=False,
            env={**os.environ, "HOME": "/nonexistent"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (run.stdout + run.stderr).decode(errors="replace")
    return next((line.strip() for line in text.splitlines() if line.startswith("POV-Ray ")), "")


@functools.cache
def system_reads() -> tuple[Path, ...]:
    """POV-Ray's include library and where its links point: Debian links the
    fonts (timrom.ttf, ...) to /usr/share/fonts, and the kernel checks the
    file a link resolves to."""
    linked = {
        Path(os.path.realpath(p)).parent
        for p in SYSTEM_SHARE.rglob("*")
        if p.is_symlink() and not Path(os.path.realpath(p)).is_relative_to(SYSTEM_SHARE)
    }
    return (SYSTEM_SHARE, *sorted(linked))


def confined(command: list[str], read: list[Path], write: list[Path]) -> list[str]:
    """``command`` run by ``confine.py``: it may read ``read`` and POV-Ray's
    own files, write only in ``write``, and execute nothing else; with its
    idle polls cut (``nopoll.py``) where the library is built."""
    lib = preload()
    dirs = [
        *(a for p in read for a in ("--read", str(p))),
        *(a for p in write for a in ("--write", str(p))),
        *(["--preload", str(lib)] if lib else []),
    ]
    return [sys.executable, "-S", "-I", str(CONFINE), *dirs, "--", *command]


class PovrayProcess:
    """One POV-Ray process: started in its own process group with a
    sandboxed HOME, watched while it runs (its CPU time and peak memory so
    far, read from /proc), killed as a group, reaped with its rusage.

    The render worker (``worker/chunk.py``) drives one to upload each frame
    of a chunk as soon as POV-Ray has written it, to stop it on a frame's
    timeout, a cancel or the end of its budget, and to measure each frame."""

    def __init__(
        self,
        args: tuple[str, ...] | list[str],
        workdir: Path,
        outdir: Path,
        *,
        library: list[Path] | None = None,
        threads: int = 0,
        read: list[Path] | None = None,
    ) -> None:
        # ``read``: more directories POV-Ray may read (the parse check's
        # working directory links to the user's files there).
        outdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.outdir = outdir
        library = library or [workdir]
        self.cmd = confined(
            povray_command(args, outdir, library, threads),
            read=[workdir, *library, *(read or []), *system_reads()],
            write=[workdir, outdir],
        )
        self.logfile = outdir.parent / f"{outdir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._pidfd: int | None = None
        self._killed_at: float | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self) -> PovrayProcess:
        # HOME points into the sandbox so a povray.ini/povray.conf of the worker
        # machine's user cannot change the farm's renders.
        env = {**os.environ, "HOME": str(self.outdir.parent)}
        self.started = time.monotonic()
        with open(self.logfile, "wb") as out:
            try:
                self.proc = subprocess.Popen(
                    self.cmd,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise PovstormError(f"cannot run {POVRAY}: {exc}") from exc
        self._pidfd = _pidfd(self.proc.pid)
        return self

    def exited(self) -> bool:
        """Whether POV-Ray has exited. Checks without reaping (WNOWAIT): until
        it is reaped its pid stays its group's id, so signalling the group can
        never hit a stranger."""
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def wait(self, seconds: float) -> bool:
        """Sleep until POV-Ray exits or ``seconds`` pass; whether it exited."""
        if self.exited():
            return True
        _await_exit(self._pidfd, max(seconds, 0.0))
        return self.exited()

    def kill(self) -> None:
        """SIGTERM to the group now, SIGKILL if it is still there after a grace."""
        now = time.monotonic()
        if self._killed_at is None:
            self._killed_at = now
            _kill_group(self.pid, signal.SIGTERM)
        elif now >= self._killed_at + _KILL_GRACE_SECONDS:
            _kill_group(self.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Kill the group and wait for POV-Ray to go."""
        self.kill()
        while not self.wait(_POLL_SECONDS):
            self.kill()

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the running process, all its threads."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def peak_memory_bytes(self) -> int:
        """Its peak resident memory so far (VmHWM)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def output(self) -> str:
        """What POV-Ray has printed so far."""
        try:
            return self.logfile.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def finish(self) -> PovrayRun:
        """Reap POV-Ray (it must have exited, or be stopping) and say what it did."""
        # Helpers POV-Ray left behind in its group end with it.
        _kill_group(self.pid, signal.SIGKILL)
        # wait4 rather than Popen.wait: it returns this child's own rusage.
        _, status, usage = os.wait4(self.pid, 0)
        assert self.proc is not None
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        killed = self._killed_at is not None
        return PovrayRun(
            returncode=None if killed else self.proc.returncode,
            output=self.output(),
            images=tuple(sorted(self.outdir.glob("*.png"))),
            wall_seconds=time.monotonic() - self.started,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            maxrss_bytes=usage.ru_maxrss * 1024,  # Linux counts it in KiB
            timed_out=killed,
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
