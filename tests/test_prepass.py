"""The radiosity pre-pass (client/prepass.py): one pretrace whose samples
every tile of a still, or every frame of an animation, loads.

Its plan and spec here without a farm; then on the local farm, POV-Ray's own
``cornell.pov`` in tiles with and without it, against a direct render, and
an animation whose pre-pass spans its frames in one POV-Ray process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.radiosity import SCENE, mean_abs, pixels, seam_step
from povstorm.client import Cluster
from povstorm.client.prepass import PREPASS_FRAMES, plan_prepass, prepass_body
from povstorm.core.digest import sha256_bytes
from povstorm.core.errors import SpecError
from povstorm.core.naming import radiosity_object
from povstorm.core.schemas import dump_job_spec, load_job_spec
from povstorm.core.spec import LOAD_RADIOSITY, PREPASS_OPTIONS, RADIOSITY_IN

BODY: dict[str, Any] = {
    "name": "cornell",
    "job_id": "20261201-000000-aaaaaa",
    "inputs": {"cornell.pov": "a" * 64},
    "povray": {
        "args": ["cornell.pov", "+W1280", "+H960", "+KFI1", "+KFF48"],
        "frames": {"first": 1, "last": 48, "step": 1},
        "animated": True,
    },
    "output": {"fps": 24, "codec": "h264", "crf": 20, "video": True},
    "notify": "https://example.com/hook",
}


def test_the_plan_is_a_quarter_size_of_at_least_320_and_frames_centred_in_the_range() -> None:
    still = plan_prepass(7680, 4320, 1, False)
    assert (still.width, still.height, still.frames) == (1920, 1080, 1)
    small = plan_prepass(320, 240, 1, False)
    assert (small.width, small.height) == (320, 240)  # never below 320, never above the image
    tiny = plan_prepass(64, 48, 3, True)
    assert (tiny.width, tiny.height, tiny.frames, tiny.step, tiny.offset) == (64, 48, 3, 1, 0)
    for count in (2, 5, 12, 48, 1000):
        plan = plan_prepass(1280, 960, count, True)
        frames = [plan.offset + i * plan.step for i in range(plan.frames)]
        assert 2 <= plan.frames <= PREPASS_FRAMES and frames[-1] <= count - 1, (count, plan)
        # As far from the first frame as the last one is from the end, give or take one.
        assert abs(frames[0] - (count - 1 - frames[-1])) <= 1, (count, plan)


def test_the_prepass_job_renders_its_frames_in_one_process_writing_the_samples() -> None:
    plan = plan_prepass(1280, 960, 48, True)
    body = prepass_body(BODY, plan, BODY["job_id"])
    spec = load_job_spec(body)
    assert spec.povray and spec.povray.prepass and spec.cache == "off" and not spec.output.video
    assert spec.job_id != BODY["job_id"] and spec.extra["prepass_for"] == BODY["job_id"]
    assert not spec.notify and spec.max_attempts == 1 and spec.fail_fast
    assert spec.unit_count == plan.frames == spec.frames_per_unit == 4
    args = spec.unit_args(0, spec.unit_count)
    assert args[-6:] == (*PREPASS_OPTIONS, "+SF6", "+EF42", "+STP12")
    assert args[: len(BODY["povray"]["args"]) + 2] == (*BODY["povray"]["args"], "+W320", "+H240")
    # What the ledger stores and the workers read back keeps it.
    assert load_job_spec(dump_job_spec(spec)).povray == spec.povray


def test_a_prepass_of_a_tiled_spec_is_refused() -> None:
    body = {**BODY, "povray": {**BODY["povray"], "animated": False, "prepass": True}}
    body["povray"]["tiles"] = {"edges": [0, 480, 960]}
    with pytest.raises(SpecError, match="a radiosity pre-pass renders the whole image"):
        load_job_spec(body)


# --- on the local farm ---------------------------------------------------------


def _render(env: dict[str, str], cwd: Path, *args: str) -> tuple[str, str]:
    result = run_cli(env, "render", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def test_tiles_that_load_the_prepass_show_no_step_at_the_cut(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    """cornell.pov at 160x120 in 2 tiles: with the pre-pass, the step across
    the cut (beyond the direct render's own) is a fraction of what it is
    without, and the image is closer to the direct render; the tiles load
    the pre-pass's samples, the input the job names."""
    (tmp_path / SCENE.name).write_text(SCENE.read_text())
    size = [SCENE.name, "+W160", "+H120", "--tiles", "2"]
    _render(stack_env, tmp_path, *size, "-o", "without.png")
    _, err = _render(stack_env, tmp_path, *size, "--radiosity-prepass", "-o", "with.png")
    prepass_line = next(x for x in err.splitlines() if x.startswith("radiosity pre-pass "))
    assert "the image at 160x120" in prepass_line, err
    prepass_id = prepass_line.split()[2].rstrip(":")
    job_id = re.search(r"job (\S+): 2 tile\(s\)", err)[1]  # type: ignore[index]
    subprocess.run(
        ["povray", "-D", "-GA", "+WT1", SCENE.name, "+W160", "+H120", "+Odirect.png"],
        cwd=tmp_path, check=True,
    )  # fmt: skip
    direct, without, with_ = (pixels(tmp_path / f"{n}.png") for n in ("direct", "without", "with"))
    step_without, step_with = (seam_step(img, direct, 160, 60) for img in (without, with_))
    assert step_with < step_without / 2, (step_with, step_without)
    assert mean_abs(with_, direct) < mean_abs(without, direct)

    with Cluster.local(start=False) as cluster:
        samples = cluster.blobs.read_bytes(radiosity_object(prepass_id))
        spec = cluster.ledger.get_spec(job_id)
        prepass = cluster.ledger.require_job(prepass_id)
    assert prepass["state"] == "done" and prepass["units_expected"] == 1
    assert spec.inputs[RADIOSITY_IN] == sha256_bytes(samples) and len(samples) > 1000
    assert spec.povray and spec.povray.args[-2:] == LOAD_RADIOSITY


def test_an_animation_s_prepass_spans_its_frames_and_every_frame_loads_it(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    scene = SCENE.read_text().replace(
        "location  <27.8, 27.3,-80.0>", "location  <27.8 + frame_number, 27.3, -80.0>"
    )
    (tmp_path / "moving.pov").write_text(scene)
    out, err = _render(
        stack_env, tmp_path, "moving.pov", "+W48", "+H36", "+KFI1", "+KFF3",
        "--radiosity-prepass", "-o", "moving.mp4",
    )  # fmt: skip
    assert "radiosity pre-pass " in err and ": 3 frame(s) at 48x36 in " in err, err
    prepass_id = err.split("radiosity pre-pass ", 1)[1].split(":")[0]
    assert "video moving.mp4" in out
    with Cluster.local(start=False) as cluster:
        records = cluster.ledger.unit_records(prepass_id)
        samples = cluster.blobs.info(radiosity_object(prepass_id))
    # One delivery rendered the three frames: one POV-Ray process, one file.
    assert sorted(r["unit"] for r in records) == [0, 1, 2]
    assert {r["deliveries"] for r in records} == {1} and samples is not None


def test_a_scene_without_radiosity_is_one_line_and_no_job_is_started(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "plain.pov").write_text(
        "camera { location <0, 0, -3> look_at 0 }\nlight_source { <2, 4, -3> rgb 1 }\n"
        "sphere { 0, 1 pigment { rgb <1, 0, 0> } }\n"
    )
    result = run_cli(
        stack_env, "render", "plain.pov", "+W32", "+H24", "--radiosity-prepass", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "povstorm: error: --radiosity-prepass: the scene computed no radiosity "
        "(no radiosity block in its global_settings?)"
    )
    assert "\njob " not in result.stderr and not (tmp_path / "plain.png").exists()
