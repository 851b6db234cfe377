"""One still in parts on the local farm against ``povray`` rendering it
directly: ``python -m bench.still`` (on a local stack of its own; ``make
bench`` runs it on the bench's warm stack).

The still is POV-Ray's ``chess2.pov`` (Debian's povray-examples: glass,
metal and wood, no radiosity) at 704x528 with ``+A0.3``: about 70 CPU
seconds here. Both ways end with the PNG on this machine:

    direct  ``povray +WT<cores>`` on the whole image: POV-Ray's own threads
            share its render blocks, the baseline
    farm    ``povstorm render --tiles 8`` as a user submits it: 8 bands of
            the render blocks (32 rows), the stack's workers (one POV-Ray
            process per core), merged by the stitch; from building the job
            until the image is downloaded

The scene is salted, so no band comes from the frame cache; the merged
image must equal the direct render's pixels (``identical``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .radiosity import pixels

SCENE = Path("/usr/share/doc/povray/examples/advanced/chess2.pov")
WIDTH, HEIGHT, TILES = 704, 528, 8
OPTIONS = [f"+W{WIDTH}", f"+H{HEIGHT}", "+A0.3"]


def run(cluster: Any, work: Path) -> dict[str, Any]:
    from povstorm.client import Job

    work.mkdir(parents=True, exist_ok=True)
    pov = work / SCENE.name
    pov.write_text(SCENE.read_text() + f'\n#declare Salt = "{uuid.uuid4().hex}";\n')
    cores = os.cpu_count() or 1

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(
        ["povray", "-D", "-GA", f"+WT{cores}", pov.name, *OPTIONS, "+Odirect.png"],
        cwd=work, check=True, capture_output=True,
    )  # fmt: skip
    direct = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    t0 = time.monotonic()
    job = Job.from_ini(cluster, [pov.name, *OPTIONS], cwd=work, tiles=TILES, name="bench-still")
    job.submit()
    job.watch()
    result = job.result(image=work / "farm.png")
    farm = time.monotonic() - t0
    if not result.ok:
        raise RuntimeError(f"still job {job.job_id} ended {result.state}: {result.errors[:2]}")
    return {
        "scene": f"{SCENE.name} {WIDTH}x{HEIGHT} +A0.3",
        "tiles": TILES,
        "cores": cores,
        "povray_cpu_seconds": round(cpu, 2),
        "direct_seconds": round(direct, 2),
        "farm_seconds": round(farm, 2),
        "farm_vs_direct": round(farm / direct, 3),
        "limit_seconds": round(cpu / cores, 2),
        "farm_vs_limit": round(farm / (cpu / cores), 3),
        "identical": pixels(work / "farm.png") == pixels(work / "direct.png"),
    }


def line(r: dict[str, Any]) -> str:
    return (
        f"still {r['scene']} in {r['tiles']} tiles: farm {r['farm_seconds']:.1f} s vs povray "
        f"+WT{r['cores']} {r['direct_seconds']:.1f} s (farm/direct {r['farm_vs_direct']:.3f}; "
        f"limit {r['limit_seconds']:.1f} s, farm/limit {r['farm_vs_limit']:.3f}); "
        f"{'pixel-identical' if r['identical'] else 'NOT identical'}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    from povstorm.client import Cluster

    ap = argparse.ArgumentParser(prog="python -m bench.still", description=__doc__)
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="povstorm-still-") as tmp:
        os.environ["POVSTORM_HOME"] = str(Path(tmp) / "home")
        with Cluster.local(start=True) as cluster:
            results = run(cluster, Path(tmp) / "work")
    print(line(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if results["identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
