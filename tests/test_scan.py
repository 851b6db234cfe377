"""scan: the files a scene needs, found as POV-Ray finds them.

The strongest check renders on the real POV-Ray: the collected inputs, copied
alone into a fresh directory under their upload names, must render with
``farm_args`` exactly as the scene renders where it lives.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from povstorm.core.errors import SceneError
from povstorm.povray import collect_inputs, parse_invocation, references

DATA = Path(__file__).parent / "data" / "povini"
DRUMS = Path("/usr/share/doc/povray/examples/advanced/drums2")
ENV = {"POVINI": "", "HOME": "/nonexistent"}  # the system povray.ini, as on a worker


def png(path: Path, rgb: tuple[int, int, int] = (200, 40, 40)) -> Path:
    """A 2x2 PNG, written without any imaging library."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    raw = b"".join(b"\x00" + bytes(rgb) * 2 for _ in range(2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


SCENE = """\
#version 3.7;
global_settings { assumed_gamma 1 }
#include "colors.inc"          // POV-Ray's own: not uploaded
#include "parts.inc"
// #include "commented_out.inc"
/* #include "also_commented.inc" /* nested */ still a comment */
#declare Tex = "tex/checker.png"
camera { location <0, 0, -3> look_at 0 }
light_source { <2, 3, -4> color White }
sphere { 0, 1 pigment { image_map { png Tex } } }
box { -1, 1 translate 3*x pigment { image_map { "tex/plain" } } }
text { ttf "cyrvetic.ttf", "x", 0.1, 0 }
#fopen Data "data.txt" read
#read (Data, Value)
#fclose Data
"""


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    root = tmp_path / "scene"
    (root / "deep").mkdir(parents=True)
    (root / "scene.pov").write_text(SCENE)
    (root / "parts.inc").write_text('#include "deep/more.inc"\n#declare P = 1;\n')
    (root / "deep" / "more.inc").write_text("#declare M = 2;\n")
    png(root / "tex" / "checker.png")
    png(root / "tex" / "plain.png", (20, 200, 20))
    (root / "data.txt").write_text("0.5,\n")
    (root / "unused.png").write_bytes(b"not referenced")
    return root


def render(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["povray", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", **ENV, "HOME": str(cwd)},
        stdin=subprocess.DEVNULL,
    )


def materialise(files: dict[str, Path], dest: Path) -> Path:
    for key, src in files.items():
        assert ".." not in key.split("/") and not key.startswith("/")
        (dest / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / key)
    return dest


def test_references_found_in_text() -> None:
    refs = references(SCENE)
    found = [(r.kind, r.literal, r.line) for r in refs]
    assert ("include", "colors.inc", 3) in found and ("include", "parts.inc", 4) in found
    assert not any(lit and "commented" in lit for _, lit, _ in found)
    assert ("png", "tex/checker.png", 10) in found  # through #declare Tex = "..."
    assert ("bitmap", "tex/plain", 11) in found and ("ttf", "cyrvetic.ttf", 12) in found
    assert ("fopen", "data.txt", 13) in found


def test_scene_files_are_collected_recursively(scene: Path) -> None:
    inv = parse_invocation(["scene.pov", "+W16", "+H12"], scene, environ=ENV)
    inputs = collect_inputs(inv)
    assert set(inputs) == {
        "scene.pov",
        "parts.inc",
        "deep/more.inc",
        "tex/checker.png",
        "tex/plain.png",
        "data.txt",
    }
    assert inputs.total_bytes == sum(p.stat().st_size for p in inputs.files.values())
    assert inputs.warnings == ()
    # The inputs alone, under their names, render as the scene does in place.
    unit = materialise(dict(inputs), scene.parent / "unit")
    assert render([*inv.farm_args, "-F"], unit).returncode == 0
    assert render(["scene.pov", "+W16", "+H12", "-D", "-F"], scene).returncode == 0


def test_drums_example_local_include_and_image_map(tmp_path: Path) -> None:
    src = tmp_path / "drums2"
    shutil.copytree(DRUMS, src)
    inputs = collect_inputs(parse_invocation(["drums.pov", "+W16", "+H12"], src, environ=ENV))
    # colors.inc, shapes.inc, textures.inc come from POV-Ray's include directory.
    assert dict(inputs) == {
        "drums.inc": src / "drums.inc",
        "drums.pov": src / "drums.pov",
        "rednewt.png": src / "rednewt.png",
    }


def test_missing_include_names_file_and_line(scene: Path) -> None:
    (scene / "parts.inc").write_text('#declare P = 1;\n\n#include "missing.inc"\n')
    inv = parse_invocation(["scene.pov", "+W16", "+H12"], scene, environ=ENV)
    with pytest.raises(SceneError) as err:
        collect_inputs(inv)
    assert str(err.value) == (
        "parts.inc:3: #include 'missing.inc' not found "
        "(POV-Ray looks in the current directory, then the library path)"
    )
    assert "missing.inc" in render(["scene.pov", "+W16", "+H12", "-D", "-F"], scene).stderr


def test_expressions_and_missing_images_are_warnings(scene: Path) -> None:
    (scene / "scene.pov").write_text(
        SCENE
        + '#include concat("pa", "rts.inc")\nplane { y, 0 pigment { image_map { png "gone.png" } } }\n'
    )
    inputs = collect_inputs(parse_invocation(["scene.pov", "+W8", "+H6"], scene, environ=ENV))
    assert any(
        w.startswith("scene.pov:16: #include named by an expression") for w in inputs.warnings
    )
    assert any(w.startswith("scene.pov:17: png file 'gone.png' not found") for w in inputs.warnings)


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("../textures/x.png", "leaves the scene directory"),
        ("{abs}", "is an absolute path the workers do not have"),
    ],
)
def test_paths_escaping_the_working_directory_are_refused(
    scene: Path, tmp_path: Path, literal: str, message: str
) -> None:
    png(tmp_path / "textures" / "x.png")
    literal = literal.format(abs=tmp_path / "textures" / "x.png")
    (scene / "scene.pov").write_text(
        f'sphere {{ 0, 1 pigment {{ image_map {{ png "{literal}" }} }} }}\n'
    )
    inv = parse_invocation(["scene.pov", "+W8", "+H6"], scene, environ=ENV)
    with pytest.raises(SceneError, match=rf"^scene\.pov:1: png file .*{message}.*\+L"):
        collect_inputs(inv)


def test_library_directory_outside_root_is_uploaded_under_lib(scene: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    png(shared / "x.png", (10, 10, 250))
    (shared / "lights.inc").write_text("#declare L = 1;\n")
    (scene / "scene.pov").write_text(
        '#version 3.7;\nglobal_settings { assumed_gamma 1 }\n#include "lights.inc"\n'
        "camera { location <0, 0, -3> look_at 0 }\nlight_source { <2, 3, -4> color rgb 1 }\n"
        'sphere { 0, 1 pigment { image_map { png "x" } } }\n'
    )
    inv = parse_invocation(["scene.pov", "+W8", "+H6", "+L../shared"], scene, environ=ENV)
    inputs = collect_inputs(inv)
    assert dict(inputs) == {
        "scene.pov": scene / "scene.pov",
        "_lib/1-shared/lights.inc": shared / "lights.inc",
        "_lib/1-shared/x.png": shared / "x.png",
    }
    assert "+L_lib/1-shared" in inv.farm_args
    unit = materialise(dict(inputs), tmp_path / "unit")
    assert render([*inv.farm_args, "-F"], unit).returncode == 0


def test_ini_files_are_inputs_but_not_povrays_own(tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(DATA, work)
    inv = parse_invocation(["main.ini"], work, environ={"POVINI": str(work / "defaults.ini")})
    inputs = collect_inputs(inv)
    assert {"main.ini", "common/base.ini", "_ini/default-defaults.ini", "scene.pov"} <= set(inputs)
    inv = parse_invocation(["main.ini"], work, environ=ENV)
    assert not any("povray.ini" in k for k in collect_inputs(inv))


def test_extra_files_and_directories(scene: Path, tmp_path: Path) -> None:
    inv = parse_invocation(["scene.pov", "+W8", "+H6"], scene, environ=ENV)
    inputs = collect_inputs(inv, extra=[Path("tex"), scene / "unused.png"])
    assert inputs["unused.png"] == scene / "unused.png" and "tex/plain.png" in inputs
    png(tmp_path / "elsewhere" / "y.png")
    with pytest.raises(SceneError, match="outside the current directory and the library path"):
        collect_inputs(inv, extra=[tmp_path / "elsewhere"])
    with pytest.raises(SceneError, match="no such file or directory"):
        collect_inputs(inv, extra=[Path("nope")])


def test_size_limit(scene: Path) -> None:
    inv = parse_invocation(["scene.pov", "+W8", "+H6"], scene, environ=ENV)
    total = collect_inputs(inv).total_bytes
    with pytest.raises(SceneError) as err:
        collect_inputs(inv, limit_bytes=total - 1)
    assert str(err.value) == (
        f"the scene's files total {total} bytes, over the limit of {total - 1} bytes"
    )


def test_include_header_is_uploaded_and_scanned(scene: Path, tmp_path: Path) -> None:
    (scene / "header.inc").write_text('#include "deep/more.inc"\n')
    inv = parse_invocation(["scene.pov", "+W8", "+H6", "+HIheader"], scene, environ=ENV)
    assert "+HIheader.inc" in inv.farm_args  # the name POV-Ray found, extension added
    inputs = collect_inputs(inv)
    assert inputs["header.inc"] == scene / "header.inc" and "deep/more.inc" in inputs
    unit = materialise(dict(inputs), tmp_path / "unit")
    assert render([*inv.farm_args, "-F"], unit).returncode == 0


def test_run_from_the_parent_directory(scene: Path, tmp_path: Path) -> None:
    # POV-Ray resolves includes from the current directory, so a scene run from
    # its parent names them "scene/...": the upload keeps those names and the
    # worker, whose working directory stands in for the current one, finds them.
    (scene / "scene.pov").write_text(
        SCENE.replace('"parts.inc"', '"scene/parts.inc"')
        .replace('"deep/more.inc"', '"scene/deep/more.inc"')
        .replace('"tex/', '"scene/tex/')
        .replace('"data.txt"', '"scene/data.txt"')
    )
    (scene / "parts.inc").write_text('#include "scene/deep/more.inc"\n')
    argv = ["scene/scene.pov", "+W8", "+H6"]
    assert render([*argv, "-D", "-F"], scene.parent).returncode == 0
    inv = parse_invocation(argv, scene.parent, environ=ENV)
    assert inv.root == scene and inv.farm_args[-1] == "+Iscene.pov"
    inputs = collect_inputs(inv)
    assert {"scene.pov", "scene/parts.inc", "scene/deep/more.inc", "scene/tex/checker.png"} <= set(
        inputs
    )
    unit = materialise(dict(inputs), tmp_path / "unit")
    assert render([*inv.farm_args, "-F"], unit).returncode == 0
