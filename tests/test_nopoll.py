"""POV-Ray's idle polls cut by a preload library (povray/nopoll.py): the
waits it shortens and the ones it keeps, POV-Ray run with it by the farm's
PovrayProcess, and the same pixels as POV-Ray run as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from povstorm.core.names import ENV
from povstorm.povray import nopoll
from povstorm.povray.process import PovrayProcess

SCENE = Path(__file__).resolve().parents[1] / "examples" / "spinning"

# In a child with the library preloaded (or not): how long a nanosleep of
# 300 ms, a timed wait of 100 ms (a poll) and one of 1 s (a real timeout) on
# a condition nobody signals take, and what the waits return.
_WAITS = r"""
import ctypes, json, time
# The process's own symbols, as POV-Ray calls them: the preloaded ones first.
libc = ctypes.CDLL(None, use_errno=True)
class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]
def timed_wait(seconds):
    cond, mutex = ctypes.create_string_buffer(64), ctypes.create_string_buffer(64)
    now = time.time_ns() + int(seconds * 1e9)
    until = Timespec(now // 10**9, now % 10**9)  # a default condition waits on CLOCK_REALTIME
    libc.pthread_mutex_lock(mutex)
    began = time.monotonic()
    code = libc.pthread_cond_timedwait(cond, mutex, ctypes.byref(until))
    return time.monotonic() - began, code
began = time.monotonic()
libc.nanosleep(ctypes.byref(Timespec(0, 300_000_000)), None)
slept = time.monotonic() - began
poll, poll_code = timed_wait(0.1)
timeout, timeout_code = timed_wait(1.0)
print(json.dumps([slept, poll, poll_code, timeout, timeout_code]))
"""


def _waits(preload: Path | None) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = str(preload)
    run = subprocess.run(
        [sys.executable, "-c", _WAITS], env=env, capture_output=True, text=True, check=True
    )
    return list(json.loads(run.stdout))


def test_the_library_cuts_polls_and_keeps_real_timeouts() -> None:
    lib = nopoll.preload()
    assert lib is not None and lib.is_file()
    slept, poll, poll_code, timeout, timeout_code = _waits(lib)
    assert slept < 0.15  # 300 ms asked, at most 2 ms slept
    assert poll < 0.05 and poll_code == 110  # ETIMEDOUT, as POV-Ray's polls expect
    assert timeout >= 0.95 and timeout_code == 110  # a 1 s timeout is a timeout
    # As the C library has them, without it.
    slept, poll, _, _, _ = _waits(None)
    assert slept >= 0.29 and poll >= 0.09


def test_povray_runs_with_it_and_writes_the_same_pixels(tmp_path: Path) -> None:
    args = ["spinning.ini", "+W160", "+H120", "+SF1", "+EF3", "-A"]
    proc = PovrayProcess(args, SCENE, tmp_path / "farm", threads=1).start()
    mapped = False
    while not mapped and not proc.exited():
        try:
            mapped = "nopoll" in Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            break
        time.sleep(0.005)
    assert proc.wait(60)
    run = proc.finish()
    assert run.returncode == 0 and len(run.images) == 3
    assert mapped, "the library was not loaded into POV-Ray"
    # Into POV-Ray alone: confine.py sets it as it becomes POV-Ray.
    assert proc.cmd[proc.cmd.index("--preload") + 1] == str(nopoll.preload())
    plain = tmp_path / "plain"
    plain.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    subprocess.run(
        ["povray", *args, "+WT1", "-D", "-P", "+FN", f"+O{plain}/"],
        cwd=SCENE,
        env=env,
        capture_output=True,
        check=True,
    )
    for image in run.images:
        with Image.open(image) as a, Image.open(plain / image.name) as b:
            assert a.tobytes() == b.tobytes(), image.name


def test_off_a_missing_library_or_no_compiler_run_povray_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert ENV["povray_nopoll"] == nopoll.VARIABLE
    try:
        monkeypatch.setenv(nopoll.VARIABLE, nopoll.OFF)
        nopoll.preload.cache_clear()
        assert nopoll.preload() is None
        assert "--preload" not in PovrayProcess(["x.pov"], tmp_path, tmp_path / "o").cmd
        monkeypatch.setenv(nopoll.VARIABLE, str(tmp_path / "missing.so"))
        nopoll.preload.cache_clear()
        assert nopoll.preload() is None
        assert "missing.so is not a file" in caplog.text
    finally:
        nopoll.preload.cache_clear()
    why = nopoll.build(tmp_path / "lib.so", cc=str(tmp_path / "no-cc"))
    assert why.startswith(f"{tmp_path / 'no-cc'} failed") and not (tmp_path / "lib.so").exists()
    # The standalone build the render image runs.
    built = subprocess.run(
        [
            sys.executable,
            "-S",
            "-I",
            str(nopoll.SOURCE.with_suffix(".py")),
            "--out",
            str(tmp_path / "n.so"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "n.so").read_bytes()[:4] == b"\x7fELF"
