"""The stitch's tail with and without segments: ``python -m bench.segments``.

Both ways consume the same synthetic frames (ffmpeg's testsrc as PNGs, the
stitch's input) with the job defaults (h264 in mp4, 24 fps, crf 20):

1. encode: one ffmpeg encode of every frame, as the stitch does without
   segments (``povstorm.stitch.encode.encode``);
2. join: the same frames first encoded as segments of ``chunk`` frames, as
   the render workers do (``encode_segment``; not timed: the workers pay it
   in parallel, while they render), then joined as the stitch joins them
   (``join_segments``: the concat demuxer with stream copy, +faststart, and
   the check of every frame's timestamp).

Neither figure includes the downloads and uploads around them. The join is
timed three times (its median is the figure); the encode once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from povstorm.core.spec import OutputSpec, container_for
from povstorm.stitch.encode import encode
from povstorm.stitch.segments import encode_segment, frame_count, join_segments

from ._util import machine

JOIN_RUNS = 3


def make_frames(frames: int, width: int, height: int, fps: int, folder: Path) -> list[Path]:
    """``frames`` PNGs of ffmpeg's test pattern, numbered from 0."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi",
         "-i", f"testsrc=s={width}x{height}:r={fps}", "-frames:v", str(frames),
         "-pix_fmt", "rgb24", "-start_number", "0", str(folder / "%06d.png")],
        check=True, capture_output=True,
    )  # fmt: skip
    pngs = [folder / f"{i:06d}.png" for i in range(frames)]
    assert all(p.exists() for p in pngs), "ffmpeg made fewer frames than asked"
    return pngs


def measure(
    frames: int = 10_000,
    width: int = 320,
    height: int = 240,
    chunk: int = 100,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Seconds of one full encode and of joining the segments, and their ratio."""
    output = OutputSpec()
    ext = container_for(output)
    root = Path(tempfile.mkdtemp(prefix="povstorm-bench-segments-", dir=workdir))
    try:
        t0 = time.monotonic()
        pngs = make_frames(frames, width, height, output.fps, root / "frames")
        made_frames = time.monotonic() - t0

        t0 = time.monotonic()
        segments, counts = [], []
        for first in range(0, frames, chunk):
            run = pngs[first : first + chunk]
            segment = root / "segments" / f"{first:06d}-{first + len(run) - 1:06d}.nut"
            segment.parent.mkdir(exist_ok=True)
            encode_segment(output, run, segment)
            segments.append(segment)
            counts.append(len(run))
        made_segments = time.monotonic() - t0

        encoded = root / f"encoded.{ext}"
        t0 = time.monotonic()
        encode(output, root / "frames" / "%06d.png", encoded)
        encode_seconds = time.monotonic() - t0

        joined = root / f"joined.{ext}"
        joins = []
        for _ in range(JOIN_RUNS):
            t0 = time.monotonic()
            join_segments(output, segments, joined, counts)
            joins.append(time.monotonic() - t0)
        join_seconds = statistics.median(joins)

        if not frame_count(encoded) == frame_count(joined) == frames:
            raise RuntimeError("the encoded and joined videos do not hold every frame")
        return {
            "frames": frames,
            "width": width,
            "height": height,
            "chunk": chunk,
            "segments": len(segments),
            "codec": output.codec,
            "container": ext,
            "encode_seconds": round(encode_seconds, 3),
            "join_seconds": round(join_seconds, 3),
            "join_runs": [round(s, 3) for s in joins],
            "ratio": round(join_seconds / encode_seconds, 4),
            "speedup": round(encode_seconds / join_seconds, 1),
            "encoded_bytes": encoded.stat().st_size,
            "joined_bytes": joined.stat().st_size,
            "make_frames_seconds": round(made_frames, 3),
            "make_segments_seconds": round(made_segments, 3),
            "machine": machine(),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.segments",
        description="the stitch's join of segments against one encode",
    )
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    result = measure(args.frames, args.width, args.height, args.chunk)
    print(
        f"{result['frames']} frames {result['width']}x{result['height']} "
        f"{result['codec']}/{result['container']}: one encode {result['encode_seconds']:.2f} s, "
        f"join of {result['segments']} segments of {result['chunk']} "
        f"{result['join_seconds']:.3f} s (runs {result['join_runs']}); "
        f"join/encode {result['ratio']:.4f} ({result['speedup']}x faster)"
    )
    print(
        f"(not in the figures: making the frames {result['make_frames_seconds']:.1f} s, "
        f"the segments {result['make_segments_seconds']:.1f} s, the workers' share)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
