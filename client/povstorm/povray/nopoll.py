"""POV-Ray without its idle polls: ``nopoll.c``, preloaded into every POV-Ray
the farm and the parse check run (``process.confined``: ``confine.py`` sets
``LD_PRELOAD`` for the POV-Ray it becomes, and nothing else).

Why: POV-Ray 3.7's front end, back end and render threads talk through
message queues that they poll. A thread sleeps 10 to 100 ms
(``pov_base::Delay``, a nanosleep) or waits 50 to 200 ms on a condition
nobody signals (boost's ``timed_wait``), then looks again, and each step
from one state to the next waits out such a poll. So a process idles about
0.6 s starting and stopping, and about 0.2 s between two frames, with the
CPU idle (measured with Debian's 3.7.0.10: twelve 32x24 frames in one
process took 3.2 s of wall time and 0.2 s of CPU). On the farm that idle is
paid by every chunk and every frame, and by the parse check before anything
is uploaded.

``nopoll.c``, loaded with ``LD_PRELOAD``, cuts each nanosleep to 2 ms, and
each timed wait of at most 250 ms to 2 ms from now. Every such loop looks
again at what it waits for, so POV-Ray does the same work, only sooner: the
same pixels (the tests compare the farm's frames with ``povray`` run
directly), the same output. The twelve frames then take 0.3 s. Waits
longer than 250 ms are real timeouts (3 s for the back end to start, or to
answer a pause) and stay. The price is about 2,000 more wake-ups a second
of rendering (``/usr/bin/time``'s voluntary waits: a 640x480 frame 1,509
against 404), a few microseconds each.

Built on first use with the system C compiler (``cc``) into the user's cache
(``$XDG_CACHE_HOME/povstorm``, else ``~/.cache/povstorm``), named by the
source's digest so a changed source is built again; the render container
builds it into the image (``python -S -I nopoll.py --out PATH``, this file
alone) and names it in ``POVSTORM_POVRAY_NOPOLL``. That variable set to
``off`` runs POV-Ray as it is; without a compiler it runs as it is too, after
one warning.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("nopoll.c")
# A built library to use, or "off" (ENV["povray_nopoll"] in names.json; this
# file also runs alone, without povstorm, in the render image's build).
VARIABLE = "POVSTORM_POVRAY_NOPOLL"
OFF = "off"


def build(out: Path, cc: str | None = None) -> str:
    """Compile SOURCE into the shared library ``out`` (atomically: a
    concurrent build of the same file is harmless). Returns "" or why not."""
    compiler = cc or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return "no C compiler (cc) on this machine"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        run = subprocess.run(
            [compiler, "-O2", "-Wall", "-shared", "-fPIC", "-o", tmp, str(SOURCE), "-ldl"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if run.returncode != 0:
            lines = (run.stderr or run.stdout).strip().splitlines()
            return f"{compiler} failed: {lines[-1] if lines else run.returncode}"
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
        return ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{compiler} failed: {exc}"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "povstorm"


@functools.cache
def preload() -> Path | None:
    """The library to preload into POV-Ray, built if need be; None to run
    POV-Ray as it is (``POVSTORM_POVRAY_NOPOLL=off``, or it cannot be built)."""
    setting = os.environ.get(VARIABLE, "")
    if setting == OFF:
        return None
    if setting:
        given = Path(setting)
        if given.is_file():
            return given
        log.warning("%s=%s is not a file: POV-Ray runs with its idle polls", VARIABLE, setting)
        return None
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    lib = _cache_dir() / f"nopoll-{digest}.so"
    if lib.is_file():
        return lib
    why = build(lib)
    if why:
        log.warning("POV-Ray runs with its idle polls (about 0.6 s a process): %s", why)
        return None
    return lib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build the POV-Ray preload library")
    parser.add_argument("--out", type=Path, required=True, help="the shared library to write")
    args = parser.parse_args(argv)
    why = build(args.out)
    if why:
        print(f"nopoll: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
