"""Parameter sweeps (client/sweep.py, ``povstorm sweep``): the declarations,
their product and refusals with no stack at all; then sweeps of a tiny still
and a tiny animation on the session's stack, checked on the grid they make."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import cast

import pytest
from fixtures.common import decoded_pixels, probe_video, video_frames, wait_until
from fixtures.common import run_cli as run

from povstorm.client import Cluster, Sweep, cli
from povstorm.client.sweep import (
    Combination,
    Declare,
    columns,
    combinations,
    combined,
    estimate_of,
    parse_declares,
)
from povstorm.client.watch import Progress
from povstorm.core.framekey import frame_key
from povstorm.core.model import JobState
from povstorm.core.spec import JobSpec
from povstorm.povray import parse_invocation
from povstorm.stitch.preview import Grid, grid_sheet

# A flat sphere whose colour is the declared values: each cell's own.
SCENE = (
    "camera { location <0,0,-3> look_at 0 }\n"
    "background { rgb <0, 0.3, 0> }\n"
    "sphere { 0, 1.2 pigment { rgb <R, clock, Metal> } finish { ambient 1 diffuse 0 } }\n"
)


# --- declarations, product, refusals (no stack) ------------------------------------


def test_declares_parse_into_their_product_last_name_fastest() -> None:
    declares = parse_declares(["R=0.5, 1,2", "Metal=0,1"])
    assert declares == (Declare("R", ("0.5", "1", "2")), Declare("Metal", ("0", "1")))
    combos = combinations(declares)
    assert [c.label for c in combos] == [
        "R=0.5 Metal=0", "R=0.5 Metal=1", "R=1 Metal=0", "R=1 Metal=1", "R=2 Metal=0", "R=2 Metal=1",
    ]  # fmt: skip
    assert combos[1].dirname == "R=0.5_Metal=1"
    # POV-Ray's own option, in name order whatever the declared order.
    assert combos[1].args == ("Declare=Metal=1", "Declare=R=0.5")
    assert columns(declares) == 2  # a table: one row per R, one column per Metal
    # The Python form: numbers (or their text) by name.
    assert parse_declares({"R": [0.5, 1, -2e-3], "On": [True]}) == (
        Declare("R", ("0.5", "1", "-0.002")),
        Declare("On", ("1",)),
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [([3], 3), ([12], 8), ([3, 1], 3), ([2, 12], 8), ([4, 3], 3)],
)
def test_the_grid_has_a_column_per_value_of_the_last_name_or_rows_of_eight(
    values: list[int], expected: int
) -> None:
    declares = [Declare(f"N{i}", tuple(map(str, range(n)))) for i, n in enumerate(values)]
    assert columns(declares) == expected


@pytest.mark.parametrize(
    ("declares", "error"),
    [
        ([], "a sweep needs at least one --declare NAME=VALUE,VALUE,..."),
        (["R"], "--declare R: NAME=VALUE,VALUE,... expected"),
        (["=1,2"], "--declare =1,2: NAME=VALUE,VALUE,... expected"),
        (["R="], "--declare R=: no values after R="),
        (["R=1,,2"], "--declare R=1,,2: an empty value"),
        (["2R=1"], "'2R' is not a POV-Ray identifier"),
        (["R-G=1"], "'R-G' is not a POV-Ray identifier"),
        (["R=abc"], "--declare R=abc: abc is not a number"),
        (["R=0x10"], "0x10 is not a number"),
        (['T="gold"'], '"gold" is a string; POV-Ray 3.7 declares only numbers'),
        (["R=1,1.0"], "--declare R=1,1.0: 1 and 1.0 are the same value"),
        (["R=1", "Metal=0", "R=2"], "--declare R is given twice"),
    ],
)
def test_a_malformed_declaration_is_refused_in_one_line(
    declares: list[str], error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ball.pov").write_text(SCENE)
    flags = [f for d in declares for f in ("--declare", d)]
    # --cluster names no deployment: a check that let it through would fail
    # there, with another line, rather than start a stack.
    code = cli.main(["sweep", str(tmp_path / "ball.pov"), *flags, "+W8", "+H8",
                     "--cluster", str(tmp_path / "none.json")])  # fmt: skip
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("povstorm: error: "), stderr
    assert error in stderr


def test_more_than_64_combinations_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ball.pov").write_text(SCENE)
    code = cli.main(["sweep", str(tmp_path / "ball.pov"), "--declare", "A=1,2,3,4,5",
                     "--declare", "B=" + ",".join(map(str, range(24))), "+W8",
                     "--cluster", str(tmp_path / "none.json")])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err == (
        "povstorm: error: --declare gives 120 combinations; at most 64\n"
    )
    assert (
        len(combinations(parse_declares(["A=1,2,3,4", "B=" + ",".join(map(str, range(16)))]))) == 64
    )


def test_each_combination_has_frame_cache_keys_of_its_own(tmp_path: Path) -> None:
    """The docstring's claim: the Declare options are in the arguments every
    frame key hashes, so combinations never share frames, and the same
    combination (declared in any order) finds its own again."""
    (tmp_path / "ball.pov").write_text(SCENE)

    def key(*declares: str) -> str | None:
        combo = combinations(parse_declares(list(declares)))[0]
        inv = parse_invocation(["ball.pov", "+W8", "+H8", *combo.args], tmp_path, environ={})
        return frame_key(JobSpec(povray=inv.povray_spec()), 0, "POV-Ray 3.7")

    keys = {key("R=0.5", "Metal=0"), key("R=1", "Metal=0"), key("R=0.5", "Metal=1")}
    assert len(keys) == 3 and None not in keys
    assert key("Metal=0", "R=0.5") == key("R=0.5", "Metal=0")


def test_each_combination_is_planned_from_the_checked_ends_estimates(tmp_path: Path) -> None:
    """The parse check of the first and last combinations times their frames:
    each of them gets its own estimate, one in between the larger of the two,
    frame by frame; without both, none."""
    ends = {0: (1.0, 4.0), 2: (3.0, 2.0)}
    combos = combinations(parse_declares(["R=0.2,0.6,1"]))
    assert [estimate_of(c, ends) for c in combos] == [(1.0, 4.0), (3.0, 4.0), (3.0, 2.0)]
    assert estimate_of(combos[1], {0: (1.0, 4.0), 2: ()}) == ()
    (tmp_path / "ball.pov").write_text(SCENE)
    argv = ["ball.pov", "+W32", "+H24", "+KFF3"]
    sweep = Sweep.from_ini(cast(Cluster, None), argv, ["R=0.2,0.6,1", "Metal=1"], cwd=tmp_path)
    estimates = [job.estimate for _, job in sweep.jobs]
    assert all(e is not None and e.source == "check" and len(e.seconds) == 3 for e in estimates)


def progress(job_id: str, state: JobState, total: int, done: int, rate: float) -> Progress:
    return Progress(job_id, state, total, done, 0, 1.0, rate, None, {})


def test_one_progress_line_sums_the_jobs() -> None:
    expected = {"a": 3, "b": 3, "c": 3}
    latest = {
        "a": progress("a", JobState.DONE, 3, 3, 1.0),
        "b": progress("b", JobState.RENDERING, 3, 1, 0.5),
    }
    # c not heard from yet: its 3 frames count all the same.
    p = combined("sweep ball (3 jobs)", latest, expected, 1.5)
    assert (p.state, p.total, p.done, p.rate, p.eta) == (JobState.RENDERING, 9, 4, 1.5, 5 / 1.5)
    assert not p.finished and p.line().startswith("rendering  4/9 done")
    latest["c"] = progress("c", JobState.FAILED, 3, 0, 0.0)
    latest["b"] = progress("b", JobState.DONE, 3, 3, 0.5)
    assert combined("s", latest, expected, 0.0).state == JobState.FAILED
    latest["c"] = progress("c", JobState.DONE, 3, 3, 0.5)
    assert combined("s", latest, expected, 0.0).finished


def test_a_grid_fits_its_captions_under_cells_of_160_to_320_pixels() -> None:
    tiny = Grid.of((32, 24), ["R=0.5 Metal=0"] * 4, 2)
    assert (tiny.cell, tiny.font, tiny.rows, tiny.size) == ((160, 120), 13, 2, (328, 296))
    assert tiny.origin(3) == (164, 148)
    big = Grid.of((1920, 1080), ["A_rather_long_name=0.000125 Another_name=1"] * 3, 8)
    assert big.cell == (320, 180) and big.columns == 3
    assert big.captions[0] == "A_rather_long_name=0.000125\nAnother_name=1"  # between words
    assert big.strip > tiny.strip


# --- on the stack --------------------------------------------------------------------


def rgb(image: Path) -> tuple[int, int, bytes]:
    """An image's (or a video's first frame's) width, height and rgb24 pixels."""
    stream = probe_video(image)
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(image), "-frames:v", "1", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return int(stream["width"]), int(stream["height"]), raw


def region(image: tuple[int, int, bytes], x: int, y: int, w: int, h: int) -> bytes:
    width, _, raw = image
    return b"".join(
        raw[3 * ((y + r) * width + x) : 3 * ((y + r) * width + x + w)] for r in range(h)
    )


def cells_of(image: tuple[int, int, bytes], grid: Grid) -> list[bytes]:
    """Each cell's picture (its image, not its caption) on a grid image."""
    return [
        region(image, x + 2, y + 2, *grid.cell)
        for x, y in map(grid.origin, range(len(grid.captions)))
    ]


def assert_captioned(sheet: Path, plain: Path, grid: Grid) -> None:
    """``sheet`` differs from the same grid made without captions in every
    cell's caption strip, and nowhere else."""
    captioned, uncaptioned = rgb(sheet), rgb(plain)
    assert captioned[:2] == uncaptioned[:2] == grid.size
    for x, y in map(grid.origin, range(len(grid.captions))):
        picture = (x + 2, y + 2, *grid.cell)
        strip = (x + 2, y + 2 + grid.cell[1], grid.cell[0], grid.strip)
        assert region(captioned, *picture) == region(uncaptioned, *picture)
        assert region(captioned, *strip) != region(uncaptioned, *strip), (x, y)


@pytest.mark.stack
@pytest.mark.e2e
def test_a_2x2_sweep_of_a_still_makes_a_captioned_grid_of_distinct_cells(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "ball.pov").write_text(SCENE)
    swept = run(stack_env, "sweep", "ball.pov", "--declare", "R=0.5,1", "--declare", "Metal=0,1",
                "+W32", "+H24", "-o", "wedge", cwd=tmp_path)  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    assert "sweep ball: 4 of 4 combination(s) done" in swept.stdout
    assert "sweep ball (4 jobs)" in swept.stderr  # the one combined progress line
    out = tmp_path / "wedge"
    manifest = json.loads((out / "sweep.json").read_text())
    labels = ["R=0.5 Metal=0", "R=0.5 Metal=1", "R=1 Metal=0", "R=1 Metal=1"]
    assert [c["label"] for c in manifest["cells"]] == labels
    assert {c["state"] for c in manifest["cells"]} == {"done"}
    assert len({c["job_id"] for c in manifest["cells"]}) == 4
    assert manifest["dir"] == str(out) and manifest["sheet"] == "sweep.png"
    # Paths relative to the sweep's directory.
    images = [out / c["outputs"]["image"] for c in manifest["cells"]]
    assert images[1] == out / "R=0.5_Metal=1" / "ball.png" and all(p.exists() for p in images)

    grid = Grid.of((32, 24), labels, 2)
    sheet = rgb(out / "sweep.png")
    assert sheet[:2] == grid.size  # 2 columns, 2 rows
    pictures = cells_of(sheet, grid)
    assert len(set(pictures)) == 4  # every declared value changes the image
    # ... in the right cell: the centre's red follows R, its blue Metal.
    centre = [region(sheet, x + 82, y + 62, 1, 1) for x, y in map(grid.origin, range(4))]
    assert centre[0][0] < centre[2][0] and centre[1][0] < centre[3][0]
    assert centre[0][2] < centre[1][2] and centre[2][2] < centre[3][2]
    plain = grid_sheet(
        dataclasses.replace(grid, captions=("",) * 4), images, tmp_path / "plain.png"
    )
    assert_captioned(out / "sweep.png", plain, grid)

    # Again, with one more value of R and the names the other way round:
    # only the two new combinations render, the four others come from the
    # frame cache (the Declares are in every key, in name order).
    with Cluster.local(start=False) as cluster:
        ids = [c["job_id"] for c in manifest["cells"]]
        wait_until(
            lambda: all(cluster.status(j).get("cache_filled") is not None for j in ids),
            30,
            "the sweep's frames in the frame cache",
        )
    again = run(stack_env, "sweep", "ball.pov", "--declare", "Metal=0,1", "--declare",
                "R=0.5,1,2", "+W32", "+H24", "-o", "again", "--json", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    cells = json.loads(again.stdout)["cells"]
    cached = {c["label"]: c["frames_cached"] for c in cells}
    assert cached == {
        "Metal=0 R=0.5": 1, "Metal=0 R=1": 1, "Metal=0 R=2": 0,
        "Metal=1 R=0.5": 1, "Metal=1 R=1": 1, "Metal=1 R=2": 0,
    }  # fmt: skip
    # The 2x3 sweep's sheet: 6 cells, each its own combination's image (R=2
    # saturates red as R=1 does: 4 different pictures), each captioned.
    six = Grid.of((32, 24), list(cached), 3)
    sheet6 = rgb(tmp_path / "again" / "sweep.png")
    assert sheet6[:2] == six.size and six.columns == 3
    images6 = [rgb(tmp_path / "again" / c["outputs"]["image"])[2] for c in cells]
    pictures6 = cells_of(sheet6, six)
    assert len(set(pictures6)) == len(set(images6)) == 4
    pairs = itertools.combinations(range(6), 2)
    assert all((pictures6[i] == pictures6[j]) == (images6[i] == images6[j]) for i, j in pairs)
    plain6 = grid_sheet(
        dataclasses.replace(six, captions=("",) * 6),
        [tmp_path / "again" / c["outputs"]["image"] for c in cells],
        tmp_path / "plain6.png",
    )
    assert_captioned(tmp_path / "again" / "sweep.png", plain6, six)


@pytest.mark.stack
@pytest.mark.e2e
def test_a_sweep_of_an_animation_makes_a_grid_video_of_the_jobs_frames(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "ball.pov").write_text(SCENE)
    swept = run(stack_env, "sweep", "ball.pov", "--declare", "R=0.2,1", "--declare", "Metal=1",
                "+W32", "+H24", "+KFI1", "+KFF3", "--fps", "12", "-o", "wedge", "--json",
                cwd=tmp_path)  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    manifest = json.loads(swept.stdout)
    out = tmp_path / "wedge"
    assert manifest == json.loads((out / "sweep.json").read_text())
    assert manifest["animated"] and manifest["frames"] == 3
    for cell in manifest["cells"]:
        assert video_frames(out / cell["outputs"]["video"]) == 3
        assert cell["outputs"]["poster"] == f"{cell['dir']}/poster.png"
    grid = Grid.of((32, 24), ["R=0.2 Metal=1", "R=1 Metal=1"], 2)
    assert manifest["video"] == "sweep.mp4"
    video = out / "sweep.mp4"
    stream = probe_video(video)
    assert int(stream["nb_read_frames"]) == 3 and stream["r_frame_rate"] == "12/1"
    assert (int(stream["width"]), int(stream["height"])) == grid.size  # 1 row of 2
    first = rgb(video)
    a, b = cells_of(first, grid)
    assert a != b
    # Each cell of the video is captioned: light text in its dark strip.
    for x, y in map(grid.origin, range(2)):
        strip = region(first, x + 2, y + 2 + grid.cell[1], grid.cell[0], grid.strip)
        assert max(strip) > 200
    # The sheet: the posters (middle frames), captioned.
    posters = [out / c["outputs"]["poster"] for c in manifest["cells"]]
    plain = grid_sheet(dataclasses.replace(grid, captions=("", "")), posters, tmp_path / "p.png")
    assert_captioned(out / "sweep.png", plain, grid)


@pytest.mark.stack
@pytest.mark.e2e
def test_a_combination_that_fails_leaves_a_failed_cell_and_exit_1(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    # R=1 is the middle value: the parse check (first and last) does not see it.
    broken = SCENE + '#if (R = 1)\n  #error "R=1 breaks the scene"\n#end\n'
    (tmp_path / "ball.pov").write_text(broken)
    swept = run(stack_env, "sweep", "ball.pov", "--declare", "R=0.5,1,2", "--declare", "Metal=0",
                "+W32", "+H24", "--max-attempts", "1", "-o", "wedge", cwd=tmp_path)  # fmt: skip
    assert swept.returncode == 1, swept.stderr
    assert "1 of 3 combination(s) failed" in swept.stderr
    assert "R=1 breaks the scene" in swept.stderr and "Traceback" not in swept.stderr
    manifest = json.loads((tmp_path / "wedge" / "sweep.json").read_text())
    assert [c["state"] for c in manifest["cells"]] == ["done", "failed", "done"]
    assert manifest["cells"][1]["outputs"]["image"] is None
    out = tmp_path / "wedge"
    images = [out / c["outputs"]["image"] if c["outputs"]["image"] else None
              for c in manifest["cells"]]  # fmt: skip
    # The sheet is the two done cells and a cell that says "failed".
    labels = ["R=0.5 Metal=0", "R=1 Metal=0", "R=2 Metal=0"]
    grid = Grid.of((32, 24), labels, columns(parse_declares(["R=0.5,1,2", "Metal=0"])))
    assert grid.columns == 3
    expected = grid_sheet(grid, images, tmp_path / "expected.png")
    assert rgb(tmp_path / "wedge" / "sweep.png") == rgb(expected)
    failed = grid_sheet(grid, [None, None, None], tmp_path / "failed.png")
    assert cells_of(rgb(expected), grid)[1] == cells_of(rgb(failed), grid)[1]


@pytest.mark.stack
@pytest.mark.e2e
def test_a_sweep_of_tiled_stills_renders_each_combination_in_bands_as_povray_does(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "ball.pov").write_text(SCENE)
    swept = run(stack_env, "sweep", "ball.pov", "--declare", "R=0.5,1", "--declare", "Metal=0", "+W32", "+H24",
                "--tiles", "2", "-o", "wedge", "--json", cwd=tmp_path)  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    cells = json.loads(swept.stdout)["cells"]
    with Cluster.local(start=False) as cluster:
        units = [cluster.ledger.require_job(c["job_id"])["units_expected"] for c in cells]
    assert units == [2, 2]
    for cell, r in zip(cells, ("0.5", "1"), strict=True):
        direct = tmp_path / f"direct-{r}.png"
        subprocess.run(
            ["povray", "-D", "-GA", "+WT1", "ball.pov", "+W32", "+H24", f"Declare=R={r}",
             "Declare=Metal=0", f"+O{direct.name}"],
            cwd=tmp_path, check=True,
        )  # fmt: skip
        assert rgb(tmp_path / "wedge" / cell["outputs"]["image"]) == rgb(direct), cell["label"]
    # More bands than the image has rows: one line before anything starts.
    refused = run(stack_env, "sweep", "ball.pov", "--declare", "R=0.5,1", "--declare", "Metal=0", "+W32", "+H24",
                  "--tiles", "25", cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "povstorm: error: --tiles 25 is more than the image's 24 rows"
    )


@pytest.mark.skipif(shutil.which("povray") is None, reason="needs the local povray")
def test_the_sweeps_declare_wins_over_one_in_an_ini_file(tmp_path: Path) -> None:
    """POV-Ray 3.7 keeps the first Declare of a name: the combination's go
    first, so a Declare the user's INI file makes does not hide the sweep."""
    (tmp_path / "ball.pov").write_text(SCENE)
    (tmp_path / "ball.ini").write_text("Input_File_Name=ball.pov\nDeclare=R=0.1\n")
    combo = combinations(parse_declares(["R=0.9", "Metal=0"]))[0]

    def render(argv: list[str], name: str) -> bytes:
        subprocess.run(["povray", *argv, "+W8", "+H8", "-D", "-GA", f"+O{name}"],
                       cwd=tmp_path, capture_output=True, check=True)  # fmt: skip
        return decoded_pixels(tmp_path / name)

    swept = render(combo.argv(["ball.ini"]), "swept.png")
    assert swept == render(["ball.pov", "Declare=R=0.9", "Declare=Metal=0"], "plain.png")
    assert swept != render(["ball.ini", *combo.args], "late.png")  # appended: the INI's wins


def test_combination_labels_keep_the_values_as_typed() -> None:
    combo = Combination(0, (("R", ".5"), ("Metal", "+1")))
    assert (combo.label, combo.args) == ("R=.5 Metal=+1", ("Declare=Metal=+1", "Declare=R=.5"))
    assert combo.argv(["ball.ini", "+W8"]) == [
        "Declare=Metal=+1",
        "Declare=R=.5",
        "ball.ini",
        "+W8",
    ]
