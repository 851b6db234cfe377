"""Render frames whose scene text is generated in Python, one work unit each.

Each frame is a different arrangement of spheres (a "bouncing" row whose
phase moves with the frame index), written as POV-Ray text here rather than
animated with ``clock``. The camera, lights and floor are shared files.

    .venv/bin/python examples/generated.py --frames 30 -o generated.mp4
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from povstorm.client import Cluster, Job, WorkUnit

HERE = Path(__file__).resolve().parent


def scene(frame: int, frames: int, balls: int = 7) -> str:
    """The POV-Ray text of one frame."""
    lines = ['#include "shared/stage.inc"']
    for b in range(balls):
        phase = 2 * math.pi * (frame / frames + b / balls)
        x = (b - (balls - 1) / 2) * 1.1
        y = 0.45 + 1.6 * abs(math.sin(phase))
        hue = b / balls
        r, g, bl = (0.5 + 0.5 * math.cos(2 * math.pi * (hue + k / 3)) for k in range(3))
        lines.append(
            f"sphere {{ <{x:.4f}, {y:.4f}, 0>, 0.45 pigment {{ rgb <{r:.3f}, {g:.3f}, {bl:.3f}> }} "
            "finish { specular 0.6 reflection 0.15 } }"
        )
    return "\n".join(lines) + "\n"


def build(cluster: Cluster, frames: int, width: int, height: int, fps: int) -> Job:
    job = Job(cluster, shared=HERE / "generated" / "shared", name="generated", fps=fps)
    for i in range(frames):
        job.add(
            WorkUnit(
                inline={"scene.pov": scene(i, frames)},
                args=["+Iscene.pov", f"+W{width}", f"+H{height}", "+A0.3"],
                label=f"frame {i}",
            )
        )
    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("-o", "--output", type=Path, default=Path("generated.mp4"))
    args = parser.parse_args()
    with Cluster.local() as cluster:
        job = build(cluster, args.frames, args.width, args.height, args.fps)
        job.submit()
        job.wait(on_progress=lambda p: print(p.line(), flush=True))
        result = job.result(video=args.output)
        print(result.state.value, result.video)


if __name__ == "__main__":
    main()
