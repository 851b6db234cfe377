"""povini: a POV-Ray invocation read as POV-Ray 3.7 reads it.

Unit tests run on the golden INI files in tests/data/povini (copied to a
temporary directory, since POV-Ray resolves every path from the current
directory). The comparison tests run the real ``povray`` on tiny images
(8x6 to 16x12) and check that the frames it renders, the names it gives them
and the clock values it computes are exactly the ones predicted here.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from povstorm.core.errors import SceneError
from povstorm.core.schemas import load_job_spec
from povstorm.povray import FARM_OPTIONS, Invocation, collect_inputs, f32, parse_invocation
from povstorm.povray.options import FARM_OPTION_KEYS

DATA = Path(__file__).parent / "data" / "povini"
EXAMPLES = Path("/usr/share/doc/povray/examples/animations")
POVRAY = "povray"
_CLK = re.compile(r"^CLK f=(\d+) c=(\S+)$", re.M)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    dst = tmp_path / "work"
    shutil.copytree(DATA, dst)
    return dst


def env_of(work: Path) -> dict[str, str]:
    """POVINI points at the golden defaults, for us and for povray alike."""
    return {"POVINI": str(work / "defaults.ini"), "HOME": str(work)}


def parse(argv: list[str], cwd: Path) -> Invocation:
    return parse_invocation(argv, cwd, environ=env_of(cwd))


def povray(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POVRAY, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or env_of(cwd))},
        stdin=subprocess.DEVNULL,
    )


def pixels(png: Path) -> bytes:
    """A PNG's header and decompressed image data (not its text chunks)."""
    data = png.read_bytes()
    pos, ihdr, idat = 8, b"", b""
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return ihdr + zlib.decompress(idat)


# --- INI syntax ------------------------------------------------------------------


def test_nested_include_comments_and_case_insensitive_keys(work: Path) -> None:
    inv = parse(["main.ini"], work)
    assert inv.scene == work / "scene.pov"
    assert inv.root == work
    # base.ini sets +W48 +H36 through a path relative to the current directory;
    # the [Preview]/[Final] sections are skipped without a section name.
    assert (inv.width, inv.height) == (48, 36)
    assert inv.animated and inv.frames == (1, 6) and inv.frame_digits == 1
    assert inv.antialias.enabled and inv.antialias.depth == 2 and inv.antialias.method == 2
    assert inv.antialias.threshold == f32(0.2) and inv.antialias.jitter is False
    origins = {s.text: s.origin for s in inv.settings}
    assert origins["FINAL_FRAME = 6"] == "main.ini:6"
    assert origins["+W48"] == "common/base.ini:2"
    assert [i.literal for i in inv.ini_files] == [
        str(work / "defaults.ini"),
        "main.ini",
        "common/base.ini",
    ]
    assert inv.options["Final_Frame"] == "6" and inv.options["Jitter"] == "Off"


def test_section_named_on_the_command_line(work: Path) -> None:
    inv = parse(["main.ini[final]"], work)  # section names ignore case
    assert (inv.width, inv.height) == (64, 48)
    assert inv.frames == (1, 12) and inv.frame_digits == 2
    assert "main.ini[final]" in inv.farm_args


def test_one_option_per_line_and_comma_lists(work: Path) -> None:
    (work / "t.ini").write_text(
        "Input_File_Name=scene.pov\nHeight=7 Width=9\nWidth= 13 ,14\nAntialias=o\nJitter=maybe\n"
    )
    inv = parse(["t.ini"], work)
    assert (inv.width, inv.height) == (14, 7)  # "Width=9" after Height on one line is ignored
    assert inv.antialias.enabled  # POV-Ray's Matches: "o" is a prefix of "on"
    assert inv.antialias.jitter is False
    assert any("'maybe' is read as Off" in w for w in inv.warnings)


def test_unquoted_value_with_spaces_runs_to_end_of_line(work: Path) -> None:
    (work / "t.ini").write_text("Input_File_Name=scene.pov\nOutput_File_Name=foo Width=30\n")
    inv = parse(["t.ini", "+KFF2"], work)
    assert inv.output_file_name == "foo Width=30"
    assert inv.output_name(1) == "foo Width=301.png"
    assert inv.width == 320


def test_declares(work: Path) -> None:
    inv = parse(["declare.ini"], work)
    assert inv.declares == (("Speed", 2.5), ("Label", "hello"))


# --- switches ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "check"),
    [
        (["+A0.3"], lambda i: i.antialias.enabled and i.antialias.threshold == f32(0.3)),
        (["-A0.3"], lambda i: not i.antialias.enabled and i.antialias.threshold == f32(0.3)),
        (["+A"], lambda i: i.antialias.enabled and i.antialias.threshold == f32(0.3)),
        (["+AM2", "+R4"], lambda i: i.antialias.method == 2 and i.antialias.depth == 4),
        (["+J0.5"], lambda i: i.antialias.jitter and i.antialias.jitter_amount == 0.5),
        (["-J"], lambda i: not i.antialias.jitter),
        (
            ["Antialias_Threshold=0.1", "Jitter_Amount=0.25"],
            lambda i: i.antialias.threshold == f32(0.1),
        ),
        (["+W64", "+H48"], lambda i: (i.width, i.height) == (64, 48)),
        (["width=13", "HEIGHT=5"], lambda i: (i.width, i.height) == (13, 5)),
        (
            ["+kfi5", "+kff9"],
            lambda i: i.frames == (5, 9) and (i.initial_frame, i.final_frame) == (5, 9),
        ),
        (["+KFF4", "+KI0.5", "+KF2"], lambda i: i.clock_range == (0.5, 2.0) and i.clock(4) == 2.0),
        (["+KFF4", "+KC"], lambda i: i.cyclic and i.frames == (1, 4) and i.clock(4) == 0.75),
        (["+KFF4", "+KC", "-KC"], lambda i: not i.cyclic and i.clock(4) == 1.0),
        (["+KFF2", "+UF", "+UO"], lambda i: i.field_render and i.odd_field),
        (["+KFF2", "Field_Render=on"], lambda i: i.field_render and not i.odd_field),
        (["+K0.25"], lambda i: not i.animated and i.clock(0) == 0.25),
        (["Clock=0.5"], lambda i: i.clock_value == 0.5),
        (["+W10 +H7"], lambda i: (i.width, i.height) == (10, 7)),  # one argv element, two switches
        (["Declare=N=3"], lambda i: i.declares == (("N", 3.0),)),
        (["Library_Path=sub/"], lambda i: i.library_paths[-1].remote == "sub"),
    ],
)
def test_switches_and_options(work: Path, args: list[str], check: Callable[[Any], Any]) -> None:
    assert check(parse(["scene.pov", *args], work))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+A1.0"], "unknown switch '+A1.0'"),  # 3.7 reads a threshold only after "A0"
        (["+A0"], "unknown switch '+A0'"),
        (["+Wabc"], "+Wabc: integer expected, found 'abc'"),
        (["Wdth=3"], "unknown option 'Wdth'"),
        (["Width=abc"], "Width: integer expected, found 'abc'"),
        (["+SF.5"], "+SF.5: integer expected, found '.5'"),
        (["+CC"], "unknown switch '+CC'"),
        (["+FS"], "+FS: unknown output file type 'S'"),
        (["+FTg"], "+FTg: grayscale needs PNG or PPM output"),
        (["Histogram_Type=C"], "Histogram_Type is no longer supported by POV-Ray 3.7"),
        (["-h"], "'-h' is a povray program option, not a render option"),
        (
            ["nothere.ini"],
            "INI file 'nothere.ini' not found "
            "(POV-Ray looks in the current directory, then the library path)",
        ),
        (["File_Gamma=bt709"], "File_Gamma: unknown gamma 'bt709'"),
    ],
)
def test_rejected_like_povray(work: Path, args: list[str], message: str) -> None:
    with pytest.raises(SceneError) as err:
        parse(["scene.pov", "+W8", "+H6", *args], work)
    assert str(err.value) == f"command line: {message}"
    # The real POV-Ray refuses the same command line.
    if args != ["-h"]:
        assert povray(["scene.pov", "+W8", "+H6", "-D", "-F", *args], work).returncode != 0


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("bad_key.ini", "bad_key.ini:7: unknown option 'Wdth'"),
        ("bad_value.ini", "bad_value.ini:3: Width: integer expected, found 'abc'"),
        ("bad_switch.ini", "bad_switch.ini:2: +Wdth: integer expected, found 'dth'"),
        (
            "missing_include.ini",
            "missing_include.ini:2: INI file 'nothere.ini' not found "
            "(POV-Ray looks in the current directory, then the library path)",
        ),
    ],
)
def test_ini_errors_name_file_and_line(work: Path, ini: str, message: str) -> None:
    with pytest.raises(SceneError) as err:
        parse([ini], work)
    assert str(err.value) == message
    assert povray([ini, "-D", "-F"], work).returncode != 0


def test_missing_scene_names_where_it_was_set(work: Path) -> None:
    (work / "t.ini").write_text("Width=8\nHeight=6\nInput_File_Name=gone.pov\n")
    with pytest.raises(SceneError, match=r"^t\.ini:3: scene file 'gone\.pov' not found"):
        parse(["t.ini"], work)
    with pytest.raises(SceneError, match="no scene file given"):
        parse(["+W8", "+H6"], work)


def test_obsolete_option_in_ini_is_a_warning(work: Path) -> None:
    (work / "t.ini").write_text("Input_File_Name=scene.pov\nBuffer_Output=on\n")
    inv = parse(["t.ini"], work)
    assert "t.ini:2: Buffer_Output is no longer used by POV-Ray 3.7 (ignored)" in inv.warnings


def test_frame_step_renders_every_nth_frame_from_the_first(work: Path) -> None:
    inv = parse(["scene.pov", "+KFF9", "+STP3"], work)
    frames = inv.frame_range()
    assert (len(frames), [frames.frame(u) for u in range(len(frames))]) == (3, [1, 4, 7])
    spec = load_job_spec(
        {"povray": {"args": list(inv.farm_args), "frames": {"first": 1, "last": 9, "step": 3}}}
    )
    # A chunk of units 1-2 is frames 4 and 7: POV-Ray counts its step from +SF.
    assert spec.unit_args(1, 2)[-3:] == ("+SF4", "+EF7", "+STP3")


# --- where files are found ---------------------------------------------------------


def test_scene_without_extension_and_through_the_library_path(work: Path) -> None:
    assert parse(["+Iscene"], work).scene == work / "scene.pov"
    other = work / "elsewhere"
    other.mkdir()
    inv = parse_invocation(["+Iscene.pov", "+L../sub"], other, environ=env_of(work))
    assert inv.scene == work / "sub" / "scene.pov" and inv.root == work / "sub"
    assert inv.output_name(0) == "scene.png"  # in the current directory, as POV-Ray writes it


def test_paths_in_ini_files_are_relative_to_the_current_directory(work: Path) -> None:
    # Run from the parent: main.ini names common/base.ini and scene.pov from
    # the current directory, so POV-Ray (and we) cannot find them.
    with pytest.raises(
        SceneError, match=r"work/main\.ini:4: INI file 'common/base\.ini' not found"
    ):
        parse_invocation(["work/main.ini"], work.parent, environ=env_of(work))
    assert povray(["work/main.ini", "-D", "-F"], work.parent, env_of(work)).returncode != 0


def test_default_ini_precedence(work: Path) -> None:
    (work / "povray.ini").write_text("Width=22\nHeight=11\n")
    home = work / "home"
    (home / ".povray" / "3.7").mkdir(parents=True)
    (home / ".povray" / "3.7" / "povray.ini").write_text("Width=33\nHeight=44\n")
    # POVINI first, then ./povray.ini, then the user's.
    assert parse_invocation(["scene.pov"], work, environ=env_of(work)).width == 320
    inv = parse_invocation(["scene.pov"], work, environ={"HOME": str(home)})
    assert (inv.width, inv.height) == (22, 11) and inv.default_ini == work / "povray.ini"
    # ./povray.ini in the scene directory is the worker's default too: not in farm_args.
    assert not any("povray.ini" in a for a in inv.farm_args)
    (work / "povray.ini").unlink()
    inv = parse_invocation(["scene.pov"], work, environ={"HOME": str(home)})
    assert (inv.width, inv.height) == (33, 44)
    assert inv.farm_args[0] == "_ini/default-povray.ini"


def test_unquoted_path_with_a_space_splits_like_povray(work: Path) -> None:
    with pytest.raises(SceneError, match="INI file 'lib' not found"):
        parse(["scene.pov", "+L/tmp/shared lib"], work)


def test_library_paths_inside_outside_and_system(work: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared lib"
    shared.mkdir()
    # A path with a space must be quoted, as for povray itself.
    inv = parse(["scene.pov", "+Lsub", f'+L"{shared}"', "+L/usr/share/povray-3.7/include"], work)
    remotes = {lib.literal: lib.remote for lib in inv.library_paths}
    assert remotes["sub"] == "sub"
    assert remotes[str(shared)] == "_lib/1-shared_lib"
    assert remotes["/usr/share/povray-3.7/include"] is None
    assert "+Lsub" in inv.farm_args and '+L"_lib/1-shared_lib"' not in inv.farm_args
    assert "+L_lib/1-shared_lib" in inv.farm_args
    # POV-Ray's own directory is on every worker: kept as typed, never uploaded.
    assert "+L/usr/share/povray-3.7/include" in inv.farm_args


def test_library_path_named_in_an_ini_is_appended_when_the_worker_cannot_see_it(
    work: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "textures"
    shared.mkdir()
    (work / "t.ini").write_text(f"Input_File_Name=scene.pov\nLibrary_Path={shared}\n")
    inv = parse(["t.ini"], work)
    assert "+L_lib/1-textures" in inv.farm_args
    assert inv.farm_args.index("+L_lib/1-textures") > inv.farm_args.index("t.ini")


# --- frames, names, clocks ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "frames"),
    [
        (["+KFF20", "+SF0.5"], (10, 20)),  # fraction of the range, not offset by the start
        (["+KFI11", "+KFF30", "+SF0.5"], (11, 30)),
        (["+KFI11", "+KFF30", "+EF0.5"], (11, 11)),
        (["+KFF10", "+SF0.25", "+EF0.75"], (2, 7)),
        (["+KFF10", "+SF0.0", "+EF1.0"], (1, 1)),  # 0 and 1.0 are frame numbers
        (["+KFF5", "+SF3", "+EF2"], (3, 3)),
        (["+KFF5", "+SF8"], (8, 8)),
        (["+KFF5", "+EF8"], (1, 8)),
        (["+KFF5", "+SF-2"], (1, 5)),
        (["+KFF5", "+KC", "+SF0.5"], (3, 5)),
        (["+KFF5", "+KC", "+EF0.99"], (1, 5)),
        (["+KFI-3", "+KFF2"], (0, 2)),
        (["Subset_Start_Frame=2.7", "+KFF5"], (2, 5)),
    ],
)
def test_subsets(work: Path, args: list[str], frames: tuple[int, int]) -> None:
    assert parse(["scene.pov", *args], work).frames == frames


def test_frames_beyond_final_frame_warn(work: Path) -> None:
    inv = parse(["scene.pov", "+KFF5", "+EF8"], work)
    assert any("frames 6..8 lie beyond Final_Frame=5" in w for w in inv.warnings)


@pytest.mark.parametrize(
    ("args", "digits", "name"),
    [
        (["+KFF9"], 1, "scene3.png"),
        (["+KFF9", "+KC"], 2, "scene03.png"),  # the cyclic extra frame counts
        (["+KFF10"], 2, "scene03.png"),
        (["+KFF100"], 3, "scene003.png"),
        (["+KFF20", "+Oout/"], 2, "out/scene03.png"),
        (["+KFF20", "+Ofoo.png"], 2, "foo03.png"),
        (["+KFF20", "+Ofoo"], 2, "foo03.png"),
        (["+KFF20", "+Ofoo.tga"], 2, "foo.tga03.png"),
        (["+KFF20", "+Ofoo."], 2, "foo03.png"),
        (["+KFF20", "+O.png"], 2, "scene03.png"),
        (["+KFF20", "+FT"], 2, "scene03.png"),  # the farm renders PNG whatever was asked
    ],
)
def test_output_names(work: Path, args: list[str], digits: int, name: str) -> None:
    inv = parse(["scene.pov", *args], work)
    assert inv.frame_digits == digits
    assert inv.output_name(3) == name


def test_output_name_of_a_scene_in_a_subdirectory_and_a_still(work: Path) -> None:
    assert parse(["sub/scene.pov", "+KFF12"], work).output_name(7) == "sub/scene07.png"
    still = parse(["sub/scene.pov"], work)
    assert not still.animated and still.frames == (0, 0) and still.frame_digits == 0
    assert still.output_name(0) == "sub/scene.png"
    assert parse(["scene.pov", "+KFI1", "+KFF1"], work).animated is False


def test_frame_number_longer_than_its_digits_overwrites_the_name(work: Path) -> None:
    # POV-Ray writes the digits from the right, over the name (seen: s12.png -> 12.png).
    assert parse(["scene.pov", "+KFF5", "+SF12"], work).output_name(12) == "scen12.png"


def test_one_frame_animation_has_a_nan_clock(work: Path) -> None:
    inv = parse(["scene.pov", "+KFI5"], work)
    assert inv.animated and inv.frames == (5, 5)
    assert math.isnan(inv.clock(5))
    assert any("clock is undefined" in w for w in inv.warnings)


def test_clock_is_single_precision(work: Path) -> None:
    inv = parse(["scene.pov", "+KFI3", "+KFF9", "+KI0.1", "+KF0.7"], work)
    assert inv.clock(3) == 0.10000000149011612
    assert inv.clock(4) == 0.19999998807907104
    assert inv.clock(9) == 0.699999988079071


# --- farm_args ------------------------------------------------------------------------


def test_farm_args_keep_the_ini_and_neutralise_what_the_farm_owns(work: Path) -> None:
    inv = parse(["farm_owned.ini", "+KFF3"], work)
    args = list(inv.farm_args)
    assert args[:2] == ["_ini/default-defaults.ini", "farm_owned.ini"]
    after = args[args.index("+KFF3") + 1 :]
    for override in (
        "Pre_Scene_Command=",
        "Post_Frame_Command=",
        "Create_Ini=",
        "-C",
        "Statistic_File=",
        "+W8",
        "+H6",
        "-D",
        "-P",
        "+FN",
        "+Iscene.pov",
    ):
        assert override in after
    text = " ".join(inv.warnings)
    for word in (
        "Pre_Scene_Command",
        "Create_Ini",
        "Continue_Trace",
        "Statistic_File",
        "Output_File_Type=T",
    ):
        assert word in text
    assert (
        "farm_owned.ini:13: Create_Histogram is no longer used by POV-Ray 3.7 (ignored)"
        in inv.warnings
    )


def test_farm_args_drop_owned_options_from_the_command_line(work: Path) -> None:
    argv = ["scene.pov", "+W32", "+H24", "+Oout.png", "+FT", "+D", "+P", "+GIx.ini", "+C"]
    argv += ["+GSstats.txt", "+SF2", "+KFF4", "+A0.3", "Declare=Speed=2", "+FN16"]
    inv = parse(argv, work)
    kept = [a for a in inv.farm_args[:-6] if a in argv]
    assert kept == ["+W32", "+H24", "+KFF4", "+A0.3", "Declare=Speed=2", "+FN16"]
    assert "+GS" in inv.farm_args  # the console part of +GSstats.txt stays
    assert inv.farm_args[-6:] == ("+W32", "+H24", "-D", "-P", "+FN", "+Iscene.pov")
    assert inv.frames == (2, 4)  # the subset is honoured by the frame range, not the args
    for text in ("+Oout.png", "+FT", "+D", "+GIx.ini", "+C", "+GSstats.txt"):
        assert any(repr(text) in w for w in inv.warnings), text
    assert inv.output_name(3) == "out3.png"


def test_farm_option_keys_are_the_keys_the_farm_options_set(work: Path) -> None:
    """farm_args derives what it drops from FARM_OPTION_KEYS: each key a farm
    option sets, as the reader applies it, must be listed there."""
    inv = parse(["scene.pov", "+W8", "+H6", *FARM_OPTIONS], work)
    applied = {s.text: set(s.keys) for s in inv.settings if s.text in FARM_OPTIONS}
    assert set(applied) == set(FARM_OPTIONS)
    for option, keys in applied.items():
        assert keys, option
        assert keys <= set(FARM_OPTION_KEYS[option]), option
    # The user's copies of -D and -P are dropped; FARM_OPTIONS closes the line.
    assert inv.farm_args[-4:] == (*FARM_OPTIONS, "+Iscene.pov")
    assert inv.farm_args.count("-D") == inv.farm_args.count("-P") == 1


def test_farm_args_rewrite_paths_relative_to_root(work: Path, tmp_path: Path) -> None:
    outside = tmp_path / "presets"
    outside.mkdir()
    (outside / "fast.ini").write_text("+A0.5\n")
    inv = parse_invocation([str(outside / "fast.ini"), "sub/scene.pov"], work, environ=env_of(work))
    assert inv.root == work / "sub" and inv.scene_key == "scene.pov"
    assert "_ini/1-fast.ini" in inv.farm_args and inv.farm_args[-1] == "+Iscene.pov"
    assert {i.key for i in inv.ini_files if i.top_level} == {"_ini/1-fast.ini"}


def test_povray_spec(work: Path) -> None:
    spec = parse(["subset.ini"], work).povray_spec()
    assert (spec.frames.first, spec.frames.last, spec.animated) == (5, 15, True)
    assert spec.args[-1] == "+Iscene.pov"


# --- against the real POV-Ray ----------------------------------------------------------


def rendered(proc: subprocess.CompletedProcess[str]) -> dict[int, float]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {int(f): float(c) for f, c in _CLK.findall(proc.stderr + proc.stdout)}


@pytest.mark.parametrize(
    "argv",
    [
        ["subset.ini"],
        ["cyclic.ini"],
        ["field.ini"],
        ["scene.pov", "+W8", "+H6", "+KFI3", "+KFF9", "+KI0.1", "+KF0.7", "+SF0.5", "+EF7"],
        ["scene.pov", "+W8", "+H6", "+KFF5", "+KC", "+SF0.5"],
        ["scene.pov", "+W8", "+H6", "+KFI5", "+KFF6", "+KI-2.5", "+KF3", "+Ofr/"],
        ["scene.pov", "+W8", "+H6", "+K0.375"],
    ],
)
def test_frames_names_and_clocks_match_povray(work: Path, argv: list[str]) -> None:
    inv = parse(argv, work)
    (work / "fr").mkdir()
    before = set(work.rglob("*.png"))
    clocks = rendered(povray([*argv, "-D"], work))
    first, last = inv.frames
    assert sorted(clocks) == list(range(first, last + 1))
    for frame, clock in clocks.items():
        assert f32(clock) == inv.clock(frame), frame
    made = {p.relative_to(work).as_posix() for p in set(work.rglob("*.png")) - before}
    assert made == {inv.output_name(f) for f in range(first, last + 1)}


def test_declares_match_povray(work: Path) -> None:
    out = povray(["declare.ini", "-D", "-F"], work)
    assert "DECL Speed=2.500000" in out.stderr and "DECL Label=hello" in out.stderr
    assert parse(["declare.ini"], work).declares == (("Speed", 2.5), ("Label", "hello"))


def farm_render(inv: Invocation, frame: int, dest: Path) -> Path:
    """Render one unit the way a worker does: a fresh directory holding only
    the collected inputs, povray run there with farm_args + the unit's options."""
    dest.mkdir(parents=True)
    for key, src in collect_inputs(inv).items():
        (dest / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / key)
    out = dest / "_out"
    out.mkdir()
    args = [*inv.farm_args]
    if inv.animated:
        args += [f"+SF{frame}", f"+EF{frame}"]
    proc = povray([*args, f"+O{out}/"], dest, {"HOME": str(dest), "POVINI": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (png,) = out.glob("*.png")
    return png


@pytest.mark.parametrize(
    ("example", "ini", "extra", "frames"),
    [
        # 20 frames, not cyclic: 2 digits, subset by frame numbers.
        ("ambient", "ambient.ini", ["+SF19"], (19, 20)),
        # 60 frames, cyclic (61 for the clock and the digits), subset by fraction.
        ("vect1", "vect1.ini", ["+SF0.97"], (59, 60)),
    ],
)
def test_examples_render_like_povray(
    tmp_path: Path, example: str, ini: str, extra: list[str], frames: tuple[int, int]
) -> None:
    src = tmp_path / example
    shutil.copytree(EXAMPLES / example, src)
    argv = [ini, "+W16", "+H12", *extra]
    env = {"POVINI": "", "HOME": str(tmp_path)}
    inv = parse_invocation(argv, src, environ=env)
    assert inv.frames == frames
    proc = povray([*argv, "-D"], src, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    made = sorted(p.name for p in src.glob("*.png"))
    assert made == [inv.output_name(f) for f in range(frames[0], frames[1] + 1)]
    # The farm's way (inputs only, farm_args, +SF/+EF per unit) makes the same image.
    farm = farm_render(inv, frames[1], tmp_path / "unit")
    assert pixels(farm) == pixels(src / inv.output_name(frames[1]))


def test_field_render_per_unit_matches_a_full_render(work: Path, tmp_path: Path) -> None:
    inv = parse(["field.ini"], work)
    assert rendered(povray(["field.ini", "-D"], work)) == {1: 0.0, 2: 1.0}
    for frame in (1, 2):
        farm = farm_render(inv, frame, tmp_path / f"unit{frame}")
        assert pixels(farm) == pixels(work / inv.output_name(frame))


def test_neutralised_ini_renders_on_the_farm(work: Path, tmp_path: Path) -> None:
    # Locally the shell-outs make POV-Ray fail (Debian forbids them); the farm
    # arguments neutralise them, keep the INI, and render a PNG.
    assert povray(["farm_owned.ini", "-D"], work).returncode != 0
    inv = parse(["farm_owned.ini"], work)
    png = farm_render(inv, 0, tmp_path / "unit")
    assert png.name == "scene.png"
    assert not (tmp_path / "unit" / "saved.ini").exists()
    assert not (tmp_path / "unit" / "pre_scene_ran").exists()
