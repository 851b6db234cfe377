"""How ``render`` and ``watch`` show a job's progress (cli.ProgressPrinter):
on a terminal a live bar drawn by rich that ends as the final line; piped,
plain lines, at most one every few seconds, and always the final one. The
terminal case also runs ``povstorm watch`` under a real pseudo-terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest
from fixtures.common import POVSTORM_CLI
from fixtures.common import run_cli as run

from povstorm.client.cli import ProgressPrinter
from povstorm.client.watch import Progress
from povstorm.core.model import JobState

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def progress(done: int, state: JobState = JobState.RENDERING, failed: int = 0) -> Progress:
    return Progress(
        job_id="job-1",
        state=state,
        total=10,
        done=done,
        failed=failed,
        elapsed=float(done),
        rate=0.5,
        eta=float(10 - done) * 2 if done else None,
        job={},
    )


def test_piped_progress_is_plain_lines_throttled_and_always_the_last() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out, every=3600)
    for done in range(10):
        printer(progress(done))
    printer(progress(10, JobState.DONE))
    lines = out.getvalue().splitlines()
    # The first change, then nothing for an hour but the end.
    assert [ln.split()[:3] for ln in lines] == [
        ["job-1", "rendering", "0/10"],
        ["job-1", "done", "10/10"],
    ]
    assert not ANSI.search(out.getvalue())

    out = io.StringIO()
    printer = ProgressPrinter(out, every=0)
    for p in (progress(1), progress(1), progress(2, failed=1)):
        printer(p)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "2/10 done" in lines[1] and "1 failed" in lines[1]
    assert "ETA 0:16" in lines[1] and "frames/s" in lines[1]

    # A tiled job's units are parts of frames, and say so.
    out = io.StringIO()
    ProgressPrinter(out, every=0, unit="parts")(progress(2))
    assert "2/10 parts done" in out.getvalue() and "parts/s" in out.getvalue()


def test_on_a_terminal_a_live_bar_redraws_and_ends_as_the_final_line() -> None:
    out = io.StringIO()
    with ProgressPrinter(out, tty=True) as printer:
        printer(progress(3))
        printer(progress(7, failed=1))
        printer(progress(10, JobState.DONE, failed=1))
    text = out.getvalue()
    assert ANSI.search(text), "no terminal control: the bar was not redrawn in place"
    assert "━" in text  # rich's bar
    plain = ANSI.sub("", text)
    final = [ln for ln in plain.splitlines() if ln.strip()][-1]
    assert final.split()[:2] == ["job-1", "done"] and "10/10" in final and "1 failed" in final
    assert "ETA" not in final
    assert plain.endswith("\n")  # what follows starts a line of its own


def test_a_watch_ended_early_on_a_terminal_ends_its_line() -> None:
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt), ProgressPrinter(out, tty=True) as printer:
        printer(progress(4))
        raise KeyboardInterrupt
    plain = ANSI.sub("", out.getvalue())
    assert "4/10" in plain and plain.endswith("\n")


@pytest.mark.stack
def test_watch_on_a_real_terminal_draws_the_bar(stack_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "ball.pov").write_text(
        "camera { location <0,0,-3> look_at 0 }\nlight_source { <0,5,-5> rgb 1 }\n"
        "sphere { 0, 1 pigment { rgb <clock, 0.5, 1> } }\n"
    )
    rendered = run(stack_env, "render", "ball.pov", "+W32", "+H24", "+KFF2", "--json", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    job_id = json.loads(rendered.stdout)["job_id"]

    # The watch's stderr is a terminal: the bar, not the piped line.
    leader, follower = pty.openpty()
    try:
        watched = subprocess.run(
            [*POVSTORM_CLI, "watch", job_id],
            cwd=tmp_path, env=stack_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=follower, timeout=120, check=False,
        )  # fmt: skip
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer has closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert watched.returncode == 0, text
    assert "━" in text and ANSI.search(text)
    assert f"{job_id}" in text and "2/2" in ANSI.sub("", text)
