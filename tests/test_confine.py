"""A scene's file access is confined to its sandbox (povray/confine.py).

Real POV-Ray, run as the worker runs it (``PovrayProcess``), on scenes that
reach out of their working directory: each fails with POV-Ray's own error,
and nothing outside the sandbox changes. The kernel's Landlock does the
confining (POV-Ray 3.7's own povray.conf restrictions are not enforced on
Unix); every machine of this project has it (ABI >= 1), and the first test
says so rather than pass on a machine where nothing would be confined.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from povstorm.povray.confine import landlock_abi
from povstorm.povray.process import CONFINE, PovrayProcess

SPHERE = """#include "colors.inc"
camera { location <0, 0, -3> look_at 0 }
light_source { <2, 4, -3> White }
sphere { 0, 1 pigment { Red } }
"""


def _render(sandbox: Path, scene: str) -> tuple[int | None, str, list[Path]]:
    work = sandbox / "work"
    work.mkdir(parents=True, exist_ok=True)
    (work / "s.pov").write_text(scene)
    proc = PovrayProcess(["+Is.pov", "+W16", "+H12"], work, sandbox / "out").start()
    while not proc.wait(0.2):
        pass
    run = proc.finish()
    return run.returncode, run.output, list(run.images)


def test_this_kernel_confines() -> None:
    assert landlock_abi() >= 1


def test_a_scene_reads_its_directory_the_include_library_and_its_fonts_and_writes_its_directory(
    tmp_path: Path,
) -> None:
    # A font of POV-Ray's library is a link into /usr/share/fonts on Debian.
    text = 'text { ttf "timrom.ttf" "A" 0.1, 0 pigment { White } }\n'
    scene = '#fopen F "made.txt" write\n#write (F, "x")\n#fclose F\n' + SPHERE + text
    code, output, images = _render(tmp_path / "sb", scene)
    assert code == 0, output
    assert [p.name for p in images] == ["s.png"]
    assert (tmp_path / "sb" / "work" / "made.txt").read_text() == "x"


@pytest.mark.parametrize(
    "target,mode,what",
    [
        ("{outside}/secret.txt", "read", "a file in /tmp outside the sandbox"),
        ("/etc/hostname", "read", "a file in /etc"),
        ("../escaped.txt", "write", "../x"),
        ("{outside}/escaped.txt", "write", "a file in /tmp"),
    ],
)
def test_a_scene_reaching_out_of_its_sandbox_fails_with_povrays_error(
    tmp_path: Path, target: str, mode: str, what: str
) -> None:
    outside = Path("/tmp") / f"povstorm-confine-{uuid.uuid4().hex[:8]}"
    outside.mkdir()
    try:
        (outside / "secret.txt").write_text("42")
        path = target.format(outside=outside)
        if mode == "read":
            scene = f'#fopen F "{path}" read\n#read (F, X)\n#fclose F\n' + SPHERE
        else:
            scene = f'#fopen F "{path}" write\n#write (F, "x")\n#fclose F\n' + SPHERE
        sandbox = tmp_path / "sb"
        code, output, images = _render(sandbox, scene)
        assert code not in (0, None) and images == [], what
        assert "Parse Error: Cannot open user file" in output, output
        # Nothing changed outside the sandbox.
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        assert not (tmp_path / "escaped.txt").exists()
        assert sorted(p.name for p in sandbox.iterdir()) == ["out", "out.log", "work"]
    finally:
        for p in outside.iterdir():
            p.unlink()
        outside.rmdir()


def test_a_confined_program_can_run_no_other_program(tmp_path: Path) -> None:
    """What a scene's shell-out would do: the confined process may execute
    only the program it became."""
    marker = tmp_path / "ran.txt"
    run = subprocess.run(
        [sys.executable, "-S", "-I", str(CONFINE), "--write", str(tmp_path), "--",
         "/bin/sh", "-c", f"/usr/bin/touch {marker}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0 and "Permission denied" in run.stderr, run.stderr
    assert not marker.exists()
