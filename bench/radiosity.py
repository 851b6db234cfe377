"""Radiosity across tiles and frames, with and without the shared pre-pass:
``python -m bench.radiosity [--json F]``.

It renders as the farm does, with ``povray`` directly (one thread: POV-Ray's
radiosity is deterministic only so), the farm's own options and merge:

* **seam**: POV-Ray's ``cornell.pov`` (Debian's povray-examples, radiosity
  with ``pretrace_end 0.01``) at 640x480 in 4 tiles (``core/tiles.py``'s
  bands and options, merged by the stitch's ``stitch/still.py``), without
  and with the pre-pass (``client/prepass.py``'s plan and options), each
  against a direct render of the whole image. The seam figure is the step
  across each cut beyond the direct render's own: the mean over the cuts'
  pixels of |(m[r-1] - m[r]) - (d[r-1] - d[r])|, 0-255 per channel;
* **flicker**: the same scene with its camera drifting a twentieth of a
  pixel a frame, 12 frames at 320x240, without and with the pre-pass (its
  frames spread over the animation): the mean absolute difference between
  consecutive frames, nearly all of it the radiosity's shimmer.

It prints each figure against its baseline (without the pre-pass) and the
CPU seconds each way costs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from povstorm.client.prepass import plan_prepass
from povstorm.core.spec import LOAD_RADIOSITY, PREPASS_OPTIONS, RADIOSITY_IN, RADIOSITY_OUT
from povstorm.core.tiles import Tiles
from povstorm.stitch.still import merge

from ._util import machine

SCENE = Path("/usr/share/doc/povray/examples/radiosity/cornell.pov")
SEAM_SIZE, SEAM_TILES = (640, 480), 4
FLICKER_SIZE, FLICKER_FRAMES = (320, 240), 12
# The camera of the flicker run: cornell.pov's own, drifting 0.01 units right
# a frame (the box is 55 units wide: a twentieth of a pixel at 320x240), so
# that what changes between frames is the radiosity, hardly the picture.
CAMERA = "location  <27.8, 27.3,-80.0>"
MOVING = "location  <27.8 + 0.01 * frame_number, 27.3, -80.0>"


def povray(args: Sequence[str], cwd: Path) -> float:
    """Run ``povray`` (one thread, no display); its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["povray", "-D", "+WT1", "-GA", *args], cwd=cwd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pixels(png: Path) -> bytes:
    """The RGB bytes of an image, row after row (ffmpeg decodes)."""
    return subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(png), "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip


def mean_abs(a: bytes, b: bytes) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def seam_step(merged: bytes, direct: bytes, width: int, row: int) -> float:
    """The step across the cut above ``row`` beyond the direct render's own."""
    w = 3 * width
    m0, m1 = merged[(row - 1) * w : row * w], merged[row * w : (row + 1) * w]
    d0, d1 = direct[(row - 1) * w : row * w], direct[row * w : (row + 1) * w]
    return sum(abs((a - b) - (c - d)) for a, b, c, d in zip(m0, m1, d0, d1, strict=True)) / w


def prepass(work: Path, args: Sequence[str], width: int, height: int, frames: int) -> float:
    """The pre-pass as client/prepass.py plans it, its samples where the
    job's units load them; its CPU seconds."""
    plan = plan_prepass(width, height, frames, frames > 1)
    anim: list[str] = []
    if frames > 1:
        first = 1 + plan.offset
        anim = [f"+SF{first}", f"+EF{first + plan.step * (plan.frames - 1)}"]
        anim += [f"+STP{plan.step}"] if plan.step > 1 else []
    cpu = povray(
        [*args, f"+W{plan.width}", f"+H{plan.height}", *PREPASS_OPTIONS, *anim, "+Opre.png"],
        work,
    )
    (work / RADIOSITY_IN).parent.mkdir(exist_ok=True)
    (work / RADIOSITY_OUT).rename(work / RADIOSITY_IN)
    return cpu


def seam(work: Path) -> dict[str, Any]:
    width, height = SEAM_SIZE
    size = [SCENE.name, f"+W{width}", f"+H{height}"]
    (work / SCENE.name).write_text(SCENE.read_text())
    direct_cpu = povray([*size, "+Odirect.png"], work)
    direct = pixels(work / "direct.png")
    tiles = Tiles.plan(height, SEAM_TILES)
    out: dict[str, Any] = {
        "scene": f"{SCENE.name} {width}x{height}, {SEAM_TILES} tiles",
        "direct_cpu_seconds": round(direct_cpu, 2),
    }
    for name, load in (("without", []), ("with", list(LOAD_RADIOSITY))):
        pre_cpu = prepass(work, size, width, height, 1) if load else 0.0
        cpu, parts = 0.0, []
        for i in range(len(tiles.bands)):
            part = work / f"{name}-{i}.png"
            cpu += povray([*size, *load, *tiles.options(i), f"+O{part.name}"], work)
            parts.append(part)
        merged = pixels(merge(parts, tiles.bands, work / f"{name}.png"))
        cuts = [b.top for b in tiles.bands[1:]]
        out[name] = {
            "seam_step": round(
                sum(seam_step(merged, direct, width, r) for r in cuts) / len(cuts), 3
            ),
            "mean_abs_vs_direct": round(mean_abs(merged, direct), 3),
            "max_abs_vs_direct": max(abs(a - b) for a, b in zip(merged, direct, strict=True)),
            "tiles_cpu_seconds": round(cpu, 2),
            "prepass_cpu_seconds": round(pre_cpu, 2),
        }
    return out


def flicker(work: Path) -> dict[str, Any]:
    width, height = FLICKER_SIZE
    scene = SCENE.read_text()
    assert CAMERA in scene, f"{SCENE} has no camera line {CAMERA!r}"
    (work / "moving.pov").write_text(scene.replace(CAMERA, MOVING))
    anim = ["moving.pov", f"+W{width}", f"+H{height}", "+KFI1", f"+KFF{FLICKER_FRAMES}"]
    out: dict[str, Any] = {"scene": f"{SCENE.name}, camera moving, {FLICKER_FRAMES} frames"}
    for name, load in (("without", []), ("with", list(LOAD_RADIOSITY))):
        pre_cpu = prepass(work, anim, width, height, FLICKER_FRAMES) if load else 0.0
        cpu = povray([*anim, *load, f"+Oanim-{name}-.png"], work)
        frames = [pixels(p) for p in sorted(work.glob(f"anim-{name}-*.png"))]
        steps = [mean_abs(a, b) for a, b in itertools.pairwise(frames)]
        out[name] = {
            "frame_to_frame": round(sum(steps) / len(steps), 3),
            "frames_cpu_seconds": round(cpu, 2),
            "prepass_cpu_seconds": round(pre_cpu, 2),
        }
    return out


def _print_pair(
    title: str, pair: dict[str, Any], figure: str, describe: Callable[[dict[str, Any]], str]
) -> None:
    """One figure without and with the pre-pass, and their ratio."""
    print(title)
    for name in ("without", "with"):
        print(f"  {name:7} pre-pass: {describe(pair[name])}")
    print(f"  ratio with/without ({figure}): {pair['with'][figure] / pair['without'][figure]:.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.radiosity", description=__doc__)
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="povstorm-radiosity-") as tmp:
        work = Path(tmp)
        results: dict[str, Any] = {
            "machine": machine(),
            "seam": seam(work),
            "flicker": flicker(work),
        }
    results["seconds"] = round(time.time() - started, 1)
    s, f = results["seam"], results["flicker"]
    _print_pair(
        f"radiosity, {s['scene']}, vs a direct render (0-255 a channel):",
        s,
        "seam_step",
        lambda r: (
            f"step across the cuts {r['seam_step']:.3f}, mean diff "
            f"{r['mean_abs_vs_direct']:.3f}, max {r['max_abs_vs_direct']}; CPU: tiles "
            f"{r['tiles_cpu_seconds']:.1f} s + pre-pass {r['prepass_cpu_seconds']:.1f} s"
        ),
    )
    _print_pair(
        f"flicker, {f['scene']}, mean difference between consecutive frames:",
        f,
        "frame_to_frame",
        lambda r: (
            f"{r['frame_to_frame']:.3f}; CPU: frames "
            f"{r['frames_cpu_seconds']:.1f} s + pre-pass {r['prepass_cpu_seconds']:.1f} s"
        ),
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
