"""Process groups and heartbeats for the local stack.

Every component of the stack runs in its own process group. gcloud's emulator
commands are wrappers that spawn a ``java`` child, and signalling the wrapper
alone leaves the emulator running, so everything here works on whole groups,
and "stopped" means that no live (non-zombie) member of the group is left.

The supervisor and the reconciler have no port to probe; they prove they are
alive by rewriting a small heartbeat file, which ``povstorm local status``
reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

_PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgid, start ticks) of a process, or None if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name in parentheses may contain spaces: split after it.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[19])


def is_alive(pid: int) -> bool:
    """True for a running process; a zombie has finished and only awaits its reaper."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot): tells a reused pid apart."""
    st = _stat(pid)
    return st[2] if st else None


def group_members(pgid: int) -> list[int]:
    """Live members of a process group, including children that outlived their parent."""
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return sorted(members)


def cmdline(pid: int) -> str:
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def environ(pid: int) -> dict[str, str]:
    """A process's environment as it started ({} if it is gone or not ours)."""
    try:
        raw = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}


def processes(match: Callable[[int], bool]) -> list[int]:
    """Live processes for which ``match(pid)`` holds."""
    pids = (int(e.name) for e in _PROC.iterdir() if e.name.isdigit())
    return sorted(pid for pid in pids if pid != os.getpid() and is_alive(pid) and match(pid))


def owns_group(pgid: int, leader_ticks: int | None) -> bool:
    """Whether the group recorded as ``pgid`` is still ours. If its leader's pid
    now belongs to a process that started at another time (after a reboot, say),
    the group is someone else's and must not be signalled."""
    if leader_ticks is None:
        return True
    ticks = start_ticks(pgid)
    return ticks is None or ticks == leader_ticks


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen:
    """Start a component in a new session (hence its own process group), its
    output appended to its log and no inherited descriptors: the caller (often a
    short-lived ``povstorm local up``) must be able to exit and leave it running."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_groups(
    pgids: Iterable[int], grace: float = 10.0, reap: Callable[[], None] | None = None
) -> list[int]:
    """SIGTERM every group, wait up to ``grace`` seconds for all of them to
    empty, SIGKILL what is left. Returns the pids still alive after that (none,
    unless a process is stuck in the kernel). ``reap`` lets a caller that is the
    parent collect its zombies while waiting."""
    pgids = [p for p in pgids if group_members(p)]
    for pgid in pgids:
        _signal_group(pgid, signal.SIGTERM)
    left = _wait_empty(pgids, grace, reap)
    for pgid in left:
        _signal_group(pgid, signal.SIGKILL)
    left = _wait_empty(left, 5.0, reap)
    return [pid for pgid in left for pid in group_members(pgid)]


def _wait_empty(pgids: list[int], timeout: float, reap: Callable[[], None] | None) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        if reap:
            reap()
        left = [p for p in pgids if group_members(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


# --- heartbeats ----------------------------------------------------------------


def write_heartbeat(path: Path, **data: Any) -> None:
    """Atomically replace the heartbeat file, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time(), **data}))
    tmp.replace(path)


def read_heartbeat(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- forked children ---------------------------------------------------------


def listen_unix(path: Path, backlog: int = 16) -> socket.socket:
    """A Unix socket listening at ``path`` (replacing a stale one), for this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A Unix socket's path has a limit of ~107 bytes: bind by a name relative
    # to its directory.
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        listener.bind(path.name)
    finally:
        os.chdir(cwd)
    os.chmod(path, 0o600)
    listener.listen(backlog)
    return listener


def run_as_child(
    env: Mapping[str, str], log_path: Path, main: Callable[[], int | None]
) -> NoReturn:
    """In a forked child: become a new process running ``main`` as
    ``python -m ...`` would (default signal handlers, only ``env`` in the
    environment, output appended to ``log_path``, logging set up by ``main``
    itself), then exit with its status, never returning into the server."""
    import logging
    import sys
    import traceback

    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
        redirect_stdio(log_path)
        logging.getLogger().handlers.clear()
        code = main() or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


def reap_children(exited: Callable[[int, int], None] | None = None) -> None:
    """Collect every child that has exited, without waiting; ``exited(pid,
    status)`` for each (a forked stitch's or task's exit is in its own log)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if exited is not None:
            exited(pid, status)


def reply_line(conn: socket.socket, body: dict[str, Any]) -> None:
    """Answer a local server's request with one JSON line; a client that gave
    up waiting changes nothing (what it asked for happens anyway)."""
    try:
        conn.sendall(json.dumps(body).encode() + b"\n")
    except OSError as exc:
        logging.getLogger("povstorm.local").warning("could not answer a request: %s", exc)


def redirect_stdio(log_path: Path) -> None:
    """stdin from /dev/null, stdout and stderr appended to ``log_path`` (a
    forked stitch's or task's own log)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
