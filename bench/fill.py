"""Fill: how close K ``povray`` processes rendering contiguous chunks of
frames come to the limit, the CPU seconds POV-Ray needs for the frames
divided by the cores.

Why it is not simply "one process per core": every ``povray`` process idles
about 0.6 s starting and stopping, and about 0.2 s between frames even inside
one process, with the CPU idle. A core with one process on it is therefore
idle part of the time; more processes than cores fill those gaps. This
section measures by how much, to choose the local stack's process count and
the chunk plan ("measure what count is best"):

    limit       one ``povray +WT1 +SF f +EF f`` per frame, one per core at
                once (the bench's (b) without ffmpeg); the sum of each
                process's own CPU seconds (``os.wait4``) / the cores
    equal       K processes at once, each rendering one of K contiguous
                chunks of equal size (``+SF a +EF b``)
    guided      the farm's own plan for K slots (``povstorm.core.chunks``:
                chunks of ceil(remaining / K) frames, cut one after the other
                until none remain), handed in order to whichever of K
                processes finishes first (a shared queue): big chunks first,
                small ones at the end so the processes finish together

Every process gets the animation's own arguments plus ``+WT1 -D -P +FN``.
The figure is wall / limit, paired with the limit measured in the same
repetition (one repetition: the limit's per-frame run, then every plan, the
order reversed from one repetition to the next), and its median over the
repetitions. ``python -m bench.fill`` runs this section alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._util import ProcessRun, Window, machine, measure, run_process, wait_quiet
from .overhead import QUIET, Animation, cores, povray_argv, render_chunks_into
from .plans import PLANNERS, Chunk, frame_chunks

PLANS = ("equal", "guided")
COUNTS = (2, 3, 4, 6)


@dataclass
class ChunkRun:
    """One rendering of the animation as chunks run by ``processes`` at once."""

    plan: str  # per-frame | equal | guided
    processes: int
    chunks: list[Chunk]
    window: Window
    procs: list[ProcessRun]
    quiet_wait: tuple[float, float] | None = None  # (seconds waited, busy fraction then)

    @property
    def wall(self) -> float:
        return self.window.wall

    @property
    def cpu(self) -> float:
        """POV-Ray's own CPU seconds, summed over its processes."""
        return sum(p.cpu for p in self.procs)

    def as_dict(self) -> dict[str, Any]:
        t0 = min((p.started for p in self.procs), default=0.0)
        return {
            "plan": self.plan,
            "processes": self.processes,
            **self.window.as_dict(),
            "povray_cpu_seconds": round(self.cpu, 2),
            **(
                {
                    "waited_for_quiet_seconds": round(self.quiet_wait[0], 1),
                    "machine_busy_before": round(self.quiet_wait[1], 3),
                }
                if self.quiet_wait
                else {}
            ),
            "chunks": [
                {
                    "first": c[0],
                    "last": c[1],
                    "start": round(p.started - t0, 3),
                    "wall": round(p.wall, 3),
                    "cpu": round(p.cpu, 3),
                }
                for c, p in zip(self.chunks, self.procs, strict=True)
            ],
        }


def render_chunks(
    anim: Animation, chunks: list[Chunk], processes: int, work: Path, plan: str
) -> ChunkRun:
    """Render ``chunks`` with ``processes`` POV-Ray processes at once, each
    taking the next chunk in order as it becomes free; checks every frame
    was written."""
    out = work / f"fill-{plan}-{processes}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    with measure() as window:
        procs = render_chunks_into(anim, chunks, processes, out)
    written = len(list(out.glob(f"{Path(anim.ini).stem}*.png")))
    shutil.rmtree(out, ignore_errors=True)
    if written != anim.frames:
        raise RuntimeError(f"{plan} x{processes}: {written} frames written, not {anim.frames}")
    return ChunkRun(plan, processes, chunks, window, procs)


def per_frame(anim: Animation, work: Path, processes: int | None = None) -> ChunkRun:
    """The limit's run: one process per frame, one per core at once."""
    n = processes or cores()
    return render_chunks(anim, frame_chunks(1, anim.frames), n, work, "per-frame")


def povray_idle(scene_dir: Path, work: Path, repeats: int = 3) -> dict[str, Any]:
    """What a ``povray`` process spends with the CPU idle, from frames so
    small (32x24) that rendering them is nothing: starting and stopping
    (wall - CPU of a 1-frame process) and between two frames of one process
    ((wall - CPU of a 9-frame process - the former) / 8); the CPU a
    process's start-up takes (the CPU of the 1-frame process: the model's
    start-up CPU) and how much of its idle comes after its frame (from the
    PNG's last write to the process's exit: the model's POV-Ray exit). One
    process at a time; the median of ``repeats``. Measured as the farm runs
    POV-Ray, its idle polls cut (``povray/nopoll.py``: what the model
    takes), and as POV-Ray is (``plain``)."""
    from povstorm.povray.nopoll import preload

    lib = preload()
    farm = _idle(scene_dir, work, repeats, {"LD_PRELOAD": str(lib)} if lib else None)
    plain = _idle(scene_dir, work, repeats, None) if lib else dict(farm)
    return {**farm, "preload": str(lib) if lib else None, "plain": plain}


def _idle(scene_dir: Path, work: Path, repeats: int, env: dict[str, str] | None) -> dict[str, Any]:
    tiny = Animation(scene_dir, "spinning.ini", 32, 24, 48)
    out = work / "fill-idle"
    out.mkdir(parents=True, exist_ok=True)
    one: list[float] = []
    nine: list[float] = []
    one_cpu: list[float] = []
    exits: list[float] = []
    try:
        for _ in range(repeats):
            for frames, into in ((1, one), (9, nine)):
                for png in out.glob("*.png"):
                    png.unlink()
                argv = povray_argv(tiny, ["+WT1", "+SF1", f"+EF{frames}"], out)
                run = run_process(argv, scene_dir, out / "povray.log", env)
                exited = time.time()
                if run.returncode != 0:
                    raise RuntimeError(f"povray of tiny frames exited {run.returncode}")
                into.append(run.wall - run.cpu)
                if frames == 1:
                    one_cpu.append(run.cpu)
                    written = [png.stat().st_mtime for png in out.glob("*.png")]
                    if written:
                        exits.append(max(0.0, exited - max(written)))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    startup = statistics.median(one)
    return {
        "startup_seconds": round(startup, 3),
        "between_frames_seconds": round(max(0.0, statistics.median(nine) - startup) / 8, 3),
        "startup_cpu_seconds": round(statistics.median(one_cpu), 3),
        "exit_seconds": round(min(startup, statistics.median(exits)), 3) if exits else None,
        "repeats": repeats,
    }


def measure_size(
    anim: Animation,
    work: Path,
    *,
    counts: Sequence[int] = COUNTS,
    plans: Sequence[str] = PLANS,
    repeats: int = 2,
    ncores: int | None = None,
    quiet: float = 0.0,
    quiet_timeout: float = 900.0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every plan x count, ``repeats`` times, each against the limit measured
    at the start of its repetition. With ``quiet`` > 0, each run first waits
    (up to ``quiet_timeout`` s) for the machine to be at most that busy."""
    ncores = ncores or cores()
    say = log or (lambda _line: None)
    combos = [(plan, k) for plan in plans for k in counts]
    reps: list[dict[str, Any]] = []
    size = f"{anim.width}x{anim.height}"

    def settle() -> tuple[float, float] | None:
        if quiet <= 0:
            return None
        waited, busy = wait_quiet(quiet, quiet_timeout)
        if waited > 5:
            say(f"fill {size}: waited {waited:.0f} s for a quiet machine (busy {busy:.0%})")
        return waited, busy

    for rep in range(repeats):
        wait = settle()
        base = per_frame(anim, work, ncores)
        base.quiet_wait = wait
        limit = base.cpu / ncores
        say(
            f"fill {size} rep {rep + 1}: per-frame {base.wall:.2f} s, "
            f"limit {limit:.2f} s ({base.cpu:.1f} CPU s / {ncores}), "
            f"foreign CPU {base.window.foreign_cpu:.1f} s"
        )
        runs = [base]
        for plan, k in combos if rep % 2 == 0 else combos[::-1]:
            wait = settle()
            run = render_chunks(anim, PLANNERS[plan](1, anim.frames, k, 0), k, work, plan)
            run.quiet_wait = wait
            runs.append(run)
            say(
                f"fill {size} rep {rep + 1}: {plan:<6} x{k} "
                f"{run.wall:7.2f} s = {run.wall / limit:.3f} x limit "
                f"(foreign CPU {run.window.foreign_cpu:.1f} s, load {run.window.loadavg:.2f})"
            )
        reps.append({"limit_seconds": limit, "runs": runs})
    return summarise(anim, reps, ncores)


def summarise(anim: Animation, reps: list[dict[str, Any]], ncores: int) -> dict[str, Any]:
    def pick(plan: str, k: int) -> list[tuple[ChunkRun, float]]:
        return [
            (r, rep["limit_seconds"])
            for rep in reps
            for r in rep["runs"]
            if r.plan == plan and r.processes == k
        ]

    keys = sorted({(r.plan, r.processes) for rep in reps for r in rep["runs"]}, key=_order)
    rows = []
    for plan, k in keys:
        got = pick(plan, k)
        ratios = [r.wall / lim for r, lim in got]
        rows.append(
            {
                "plan": plan,
                "processes": k,
                "per_core": round(k / ncores, 2),
                "chunks": len(got[0][0].chunks),
                "wall_over_limit": round(statistics.median(ratios), 3),
                "wall_over_limit_runs": [round(x, 3) for x in ratios],
                # Other processes only ever add time: the quickest run, over
                # the median limit, is the figure of a quiet machine.
                "wall_over_limit_best": round(
                    min(r.wall for r, _ in got) / statistics.median(lim for _, lim in got), 3
                ),
                "wall_seconds": round(statistics.median(r.wall for r, _ in got), 2),
                "cpu_over_limit_cpu": round(
                    statistics.median(r.cpu / (lim * ncores) for r, lim in got), 3
                ),
                # As if other processes' CPU had all come out of ours: a
                # floor for what the run would have taken on a quiet machine.
                "wall_over_limit_foreign_removed": round(
                    statistics.median(
                        max(0.0, r.wall - r.window.foreign_cpu / ncores) / lim for r, lim in got
                    ),
                    3,
                ),
                "foreign_cpu_seconds": [round(r.window.foreign_cpu, 1) for r, _ in got],
            }
        )
    chunked = [r for r in rows if r["plan"] != "per-frame"]
    best = min(chunked, key=lambda r: r["wall_over_limit"]) if chunked else None
    return {
        "animation": anim.describe(),
        "size": f"{anim.width}x{anim.height}",
        "cores": ncores,
        "repeats": len(reps),
        "limit_seconds": [round(rep["limit_seconds"], 3) for rep in reps],
        "limit_seconds_median": round(statistics.median(rep["limit_seconds"] for rep in reps), 3),
        "rows": rows,
        "best": {k: best[k] for k in ("plan", "processes", "per_core", "wall_over_limit")}
        if best
        else None,
        "runs": [{"repeat": i, **r.as_dict()} for i, rep in enumerate(reps) for r in rep["runs"]],
    }


def _order(key: tuple[str, int]) -> tuple[int, int]:
    plan, k = key
    return ((["per-frame", *PLANS].index(plan) if plan in PLANS else 0), k)


def table(sizes: list[dict[str, Any]]) -> str:
    """One Markdown table: a row per plan and process count, a column per size."""
    if not sizes:
        return ""
    header = ["plan", "processes (per core)", *(f"{s['size']}: wall / limit" for s in sizes)]
    keys = sorted({(r["plan"], r["processes"]) for s in sizes for r in s["rows"]}, key=_order)
    ncores = sizes[0]["cores"]
    body = []
    for plan, k in keys:
        label = {
            "per-frame": "one process per frame (the limit's run)",
            "equal": f"{k} equal chunks",
            "guided": "guided (the farm's plan): ceil(remaining / K)",
        }.get(plan, plan)
        cells = [label, f"{k} ({k / ncores:g})"]
        for s in sizes:
            row = next((r for r in s["rows"] if (r["plan"], r["processes"]) == (plan, k)), None)
            if row is None:
                cells.append("-")
                continue
            runs = row["wall_over_limit_runs"]
            cell = f"{row['wall_over_limit']:.3f}"
            if len(runs) > 1:
                cell += (
                    f" ({min(runs):.2f}-{max(runs):.2f}; best {row['wall_over_limit_best']:.3f})"
                )
            best = s["best"] and (s["best"]["plan"], s["best"]["processes"]) == (plan, k)
            cells.append(f"**{cell}**" if best else cell)
        body.append(cells)
    limits = ", ".join(
        f"{s['size']} {s['limit_seconds_median']:.2f} s (median of {s['repeats']})" for s in sizes
    )
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    head = (
        f"fill: {sizes[0]['animation'].split(' ')[0]}, {ncores} cores, +WT1 per process; "
        f"limit = POV-Ray's CPU seconds per frame (one process a frame) / cores: {limits}; "
        "median of the repetitions' ratios (their spread; best: the quickest run over the "
        "median limit), the lowest median in bold"
    )
    return "\n".join([head, "", line(header), sep, *(line(r) for r in body)])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.fill",
        description="The fill section alone: K povray processes on contiguous chunks of "
        "frames against the limit (POV-Ray's CPU seconds / cores).",
    )
    p.add_argument("--sizes", default="320x240,1280x960", help="WxH[,WxH...]")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--counts", default=",".join(map(str, COUNTS)), help="process counts K")
    p.add_argument("--plans", default=",".join(PLANS), help=f"of {', '.join(PLANS)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--quiet",
        type=float,
        default=0.0,
        metavar="BUSY",
        help="before each run, wait until the machine is at most this busy (a fraction of "
        "all cores, e.g. 0.25; default 0: do not wait)",
    )
    p.add_argument("--quiet-timeout", type=float, default=900.0, help="the longest wait (seconds)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here too")
    return p


def _on_term(signum: int, _frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    from .__main__ import SCENE_DIR, parse_sizes

    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    plans = [p for p in args.plans.split(",") if p]
    if unknown := set(plans) - set(PLANS):
        raise SystemExit(f"unknown plan(s): {', '.join(sorted(unknown))}")
    counts = [int(k) for k in args.counts.split(",") if k]
    results: dict[str, Any] = {"machine": machine(), "povray_options": list(QUIET), "sizes": []}
    work = Path(tempfile.mkdtemp(prefix="povstorm-fill-"))
    try:
        for w, h in parse_sizes(args.sizes):
            anim = Animation(SCENE_DIR, "spinning.ini", w, h, args.frames)
            results["sizes"].append(
                measure_size(
                    anim,
                    work,
                    counts=counts,
                    plans=plans,
                    repeats=args.repeats,
                    quiet=args.quiet,
                    quiet_timeout=args.quiet_timeout,
                    log=lambda line: print(line, file=sys.stderr, flush=True),
                )
            )
            if args.json:  # after each size: an interrupted run keeps what it measured
                args.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(results["sizes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
