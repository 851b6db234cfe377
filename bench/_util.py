"""Small helpers of the benchmark: percentiles, the machine, the load on it,
and the CPU time that process groups (the stack's components) consume."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.4999)))
    return float(ordered[rank - 1])


def mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else 0.0


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = m[1].strip() if m else ""
    except OSError:
        pass
    mem_gib = 0.0
    try:
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem_gib = int(m[1]) / 2**20 if m else 0.0
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count() or 1,
        "cpu_model": model or platform.processor() or platform.machine(),
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "povray": _version(["povray", "--version"], r"POV-Ray\s+(\S+)"),
        "ffmpeg": _version(["ffmpeg", "-version"], r"ffmpeg version\s+(\S+)"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _version(argv: list[str], pattern: str) -> str:
    if not shutil.which(argv[0]):
        return "missing"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(pattern, proc.stdout + proc.stderr)
    return m[1] if m else "unknown"


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def _own_cpu() -> float:
    """CPU seconds of this process and of the children it has reaped (the
    baselines' povray and ffmpeg)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Window:
    """A timed stretch of the run, with what the whole machine did meanwhile.

    ``busy`` is the fraction of all cores in use, ours and everyone else's;
    ``foreign_cpu`` the CPU seconds that were not ours: the machine's busy
    time minus this process and its reaped children, minus ``extra_own``
    (what the caller knows it used elsewhere: the stack, POV-Ray in the
    workers). Other engineers' tests on this shared machine show up there."""

    wall: float = 0.0
    busy: float = 0.0
    loadavg: float = 0.0
    busy_cpu: float = 0.0
    own_cpu: float = 0.0
    extra_own: float = 0.0

    @property
    def foreign_cpu(self) -> float:
        return max(0.0, self.busy_cpu - self.own_cpu - self.extra_own)

    def as_dict(self) -> dict[str, float]:
        return {
            "wall_seconds": round(self.wall, 3),
            "machine_busy": round(self.busy, 3),
            "loadavg_1m": round(self.loadavg, 2),
            "own_cpu_seconds": round(self.own_cpu + self.extra_own, 2),
            "foreign_cpu_seconds": round(self.foreign_cpu, 2),
        }


class measure:  # a context manager that reads like a verb
    """``with measure() as w: ...`` fills ``w`` (a Window) on exit."""

    def __enter__(self) -> Window:
        self.window = Window()
        self._t0 = time.monotonic()
        self._j0 = _cpu_jiffies()
        self._own0 = _own_cpu()
        return self.window

    def __exit__(self, *_: object) -> None:
        busy1, total1 = _cpu_jiffies()
        self.window.wall = time.monotonic() - self._t0
        dt_total = total1 - self._j0[1]
        self.window.busy = (busy1 - self._j0[0]) / dt_total if dt_total else 0.0
        self.window.busy_cpu = (busy1 - self._j0[0]) / _TICK
        self.window.own_cpu = _own_cpu() - self._own0
        self.window.loadavg = os.getloadavg()[0]


def wait_quiet(max_busy: float, timeout: float, probe: float = 3.0) -> tuple[float, float]:
    """Wait until the whole machine is at most ``max_busy`` busy (a fraction
    of all cores, over ``probe`` seconds in which the caller runs nothing),
    or ``timeout`` seconds have passed. Returns (seconds waited, the last
    probe's busy fraction)."""
    started = time.monotonic()
    while True:
        b0, t0 = _cpu_jiffies()
        time.sleep(probe)
        b1, t1 = _cpu_jiffies()
        busy = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        waited = time.monotonic() - started
        if busy <= max_busy or waited >= timeout:
            return waited, busy
        time.sleep(min(27.0, max(0.0, timeout - waited)))


def group_cpu_seconds(pgids: Iterable[int], reaped: bool = False) -> dict[int, float]:
    """CPU seconds (user + system) of the live members of each process group,
    themselves only; with ``reaped``, of the children they have reaped
    instead (POV-Ray, which a worker runs in its own session and reaps with
    wait4, and the stitcher, which reaps the stitches it forks)."""
    wanted = set(pgids)
    out = dict.fromkeys(wanted, 0.0)
    first = 13 if reaped else 11  # cutime, cstime or utime, stime (proc(5), from field 3)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        pgid = int(fields[2])
        if pgid in wanted:
            out[pgid] += (int(fields[first]) + int(fields[first + 1])) / _TICK
    return out


@dataclass(frozen=True)
class ProcessRun:
    """One child process, timed: its wall time and its own CPU seconds (user
    + system from ``os.wait4``, so exactly this process and what it reaped,
    whatever else this process runs in other threads)."""

    wall: float
    cpu: float
    returncode: int
    started: float  # time.monotonic() at spawn
    ended: float


_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def kill_live() -> None:
    """Kill every process ``run_process`` is waiting for (an interrupted
    run: their threads then see them exit)."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def run_process(
    argv: Sequence[str], cwd: Path, log: Path, env: Mapping[str, str] | None = None
) -> ProcessRun:
    """Run ``argv`` in ``cwd`` with its output in ``log`` (and ``env`` added
    to this process's environment); reap it with ``os.wait4`` for its own
    rusage. Safe to call from several threads."""
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env} if env else None,
        )
        with _LIVE_LOCK:
            _LIVE.add(proc)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
    ended = time.monotonic()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ProcessRun(
        wall=ended - started,
        cpu=usage.ru_utime + usage.ru_stime,
        returncode=proc.returncode,
        started=started,
        ended=ended,
    )


def thread_count(pid: int) -> int:
    try:
        m = re.search(r"^Threads:\s*(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return 0
    return int(m[1]) if m else 0
