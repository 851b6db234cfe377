"""``python -m bench [--quick] [--json PATH]``: run every benchmark, print the
tables, write every figure (and the raw runs) to a JSON file."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from povstorm.core.names import ENV
from povstorm.core.settings import EMULATOR_VARS

from . import cloud, coldstart, fill, iteration, ledger_load, overhead, still, validate
from ._util import machine, mean, percentile
from .report import render_table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "bench-results.json"
SCENE_DIR = ROOT / "examples" / "spinning"
DEFAULT_SIZES = "320x240,1280x960"
QUICK_SIZES = "160x120,320x240"
# The goals printed beside the figures: the farm within this factor of the
# limit (POV-Ray's CPU seconds / cores), by frame size in pixels (a size's
# goal is that of the largest size listed at or below it), and faster than
# one povray process (c/a < 1) at every size.
LIMIT_GOALS = ((0, 1.25), (1280 * 960, 1.10))
# The segments join (bench/segments.py, written separately): a video of this
# many frames at this size, in segments of `chunk` frames.
SEGMENTS = {"frames": 10_000, "width": 320, "height": 240, "chunk": 100}

# Anything the caller's shell carries that would point us at another stack.
_FOREIGN_PREFIXES = ("POVSTORM_",)
_FOREIGN = EMULATOR_VARS


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """ "320x240,1280x960" -> [(320, 240), (1280, 960)]."""
    sizes = []
    for item in text.split(","):
        w, sep, h = item.strip().lower().partition("x")
        if not (sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
            raise argparse.ArgumentTypeError(f"a size is WxH, like 320x240, not {item!r}")
        sizes.append((int(w), int(h)))
    return sizes


def _counts(text: str) -> list[int]:
    try:
        counts = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"process counts are like 2,3,4,6, not {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"process counts are like 2,3,4,6, not {text!r}")
    return counts


def limit_goal(width: int, height: int) -> float:
    return [goal for pixels, goal in LIMIT_GOALS if width * height >= pixels][-1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Farm overhead against the limit (POV-Ray's CPU seconds / cores) and "
        "against rendering directly, how many POV-Ray processes fill the cores, "
        "orchestration latency, cold start and ledger throughput of povstorm on this "
        "machine, each against a baseline run beside it.",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"write the figures here (default: {DEFAULT_JSON.name} at the repo root)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run of a minute or two: 12 frames at {QUICK_SIZES}, one pair, "
        "one fill repetition of 2 and 4 processes at the first size, 300 ledger units, "
        "a 300-frame join",
    )
    p.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="per-frame/farm pairs per size, run back to back in alternating order between "
        "two direct runs (default 3; --quick 1, with one direct run)",
    )
    p.add_argument("--frames", type=int, default=None, help="frames of the animation (default 48)")
    p.add_argument(
        "--sizes",
        type=parse_sizes,
        default=None,
        metavar="WxH[,WxH...]",
        help=f"frame sizes, each a full set of runs (default {DEFAULT_SIZES}: about 0.35 s "
        "and 3 s of CPU a frame here)",
    )
    p.add_argument(
        "--ledger-units", type=int, default=None, help="units of the ledger load (default 2000)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="render workers of the stack (default: the count the stack chooses itself)",
    )
    p.add_argument(
        "--fill-repeats",
        type=int,
        default=None,
        help="repetitions of the fill section per size (default 2; --quick 1; 0 skips it)",
    )
    p.add_argument(
        "--fill-counts",
        type=_counts,
        default=None,
        metavar="K[,K...]",
        help="concurrent povray processes the fill section tries (default 2,3,4,6; --quick 2,4)",
    )
    p.add_argument(
        "--fill-quiet",
        type=float,
        default=0.0,
        metavar="BUSY",
        help="in the fill section, wait before each run (up to 5 minutes) until the machine "
        "is at most this busy, e.g. 0.3 (default 0: do not wait)",
    )
    p.add_argument(
        "--validate",
        type=validate.parse_configs,
        default=None,
        metavar="FRAMESxWxH@SLOTS[,...]",
        help="local runs the model predicts, each on a fresh stack of SLOTS render task "
        f"slots (default {validate.DEFAULT_CONFIGS}; --quick {validate.QUICK_CONFIGS}; "
        "'none' skips them)",
    )
    p.add_argument(
        "--segment-frames",
        type=int,
        default=None,
        help=f"frames of the segments join, when bench/segments.py exists (default "
        f"{SEGMENTS['frames']:,}; --quick 300; 0 skips it)",
    )
    return p


def _clean_environ() -> None:
    for key in list(os.environ):
        if key in _FOREIGN or key.startswith(_FOREIGN_PREFIXES):
            os.environ.pop(key)


def _on_term(signum: int, _frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def _say(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def schedule(pairs: int, quick: bool) -> list[tuple[str, int]]:
    """(scenario, index): direct first and last, per-frame and farm back to
    back in between, alternating which goes first, so a drift in the load of
    this shared machine hits both sides of each c/b pair alike."""
    order: list[tuple[str, int]] = [("direct", 0)]
    for i in range(pairs):
        pair = [("per-frame", i), ("farm", i)]
        order += pair if i % 2 == 0 else pair[::-1]
    if not quick:
        order.append(("direct", 1))
    return order


def _attribute(b: overhead.Run, c: overhead.Run, ncores: int) -> dict[str, Any]:
    """Where the farm's wall time went, two ways, in wall seconds.

    ``timeline``: the farm run's own phases, from the ledger and the bucket;
    they add up to its wall time but for ``unaccounted`` (clock reads).
    ``vs_limit``: c - limit as the machine's core-seconds during (c) divided
    by the cores: the workers' POV-Ray and segment encodes beyond (b)'s
    POV-Ray CPU, the stack's CPU, this process's
    (the client), other processes' (the stitch among them: it is detached),
    and cores left idle. These add up to c - limit by construction."""
    p = c.profile

    def num(key: str) -> float:
        value = p.get(key)
        return float(value) if isinstance(value, int | float) else 0.0

    timeline = {
        "client_submit": round(c.phases.get("submit", 0.0), 3),
        "created_to_first_start": p.get("created_to_first_start"),
        "first_start_to_last_upload": p.get("first_start_to_last_upload"),
        "last_upload_to_done": p.get("last_upload_to_done"),
        "done_to_client_and_download": round(
            num("done_to_client") + c.phases.get("download", 0.0), 3
        ),
    }
    timeline["unaccounted"] = round(
        c.wall - sum(v for v in timeline.values() if isinstance(v, int | float)), 3
    )
    w = c.window
    limit = b.povray_cpu / ncores
    stack = sum((p.get("stack_cpu_seconds") or {}).values())
    vs_limit = {
        # POV-Ray's CPU in (c) and the workers' segment encodes, beyond (b)'s POV-Ray.
        "render_cpu_beyond_per_frame": round((c.povray_cpu - b.povray_cpu) / ncores, 3),
        "stack_cpu": round(stack / ncores, 3),
        "client_cpu": round(w.own_cpu / ncores, 3),
        "foreign_cpu_incl_stitch": round(w.foreign_cpu / ncores, 3),
        "idle_cores": round((1 - w.busy) * w.wall, 3),
    }
    idle = p.get("worker_idle_between_units") or {}
    beyond = p.get("unit_overhead_beyond_povray") or {}
    workers = max(1, int(num("workers")))
    return {
        "pair": b.index,
        "farm_minus_limit": round(c.wall - limit, 3),
        "farm_minus_per_frame": round(c.wall - b.wall, 3),
        "client_submit": timeline["client_submit"],
        "timeline": timeline,
        "vs_limit": vs_limit,
        # Per worker (spans of work: a unit, or a chunk of units rendered by
        # one process), for the model's per-delivery constant.
        "worker_idle_between_units": round(idle.get("total", 0.0) / workers, 3),
        "unit_overhead_beyond_povray": round(beyond.get("total", 0.0) / workers, 3),
        "spans": int(num("spans")),
        "delivery_overhead_total": round(idle.get("total", 0.0) + beyond.get("total", 0.0), 3),
        # The same split at POV-Ray's start (for the model's calibration):
        # the gaps and what comes before the process, what comes after it.
        "gaps_total": round(idle.get("total", 0.0), 3),
        "before_povray": (p.get("span_before_povray") or {}).get("p50"),
        "split_spans": (p.get("span_before_povray") or {}).get("count", 0),
        "stitch_tail_minus_encode": round(num("last_upload_to_done") - b.phases["encode"], 3),
    }


def _summarise_overhead(
    runs: list[overhead.Run], frames: int, ncores: int, goal: float
) -> dict[str, Any]:
    """One size's direct, per-frame and farm runs: the ratios against the
    limit and the two baselines, and the attribution of each pair."""
    by: dict[str, list[overhead.Run]] = {}
    for r in runs:
        by.setdefault(r.scenario, []).append(r)
    walls = {k: mean(r.wall for r in v) for k, v in by.items()}
    pairs: list[dict[str, Any]] = []
    attribution: list[dict[str, Any]] = []
    for b in by.get("per-frame", []):
        c = next((r for r in by.get("farm", []) if r.index == b.index), None)
        if c is None:
            continue
        limit = b.povray_cpu / ncores
        pairs.append(
            {
                "pair": b.index,
                "b": round(b.wall, 3),
                "c": round(c.wall, 3),
                "limit": round(limit, 3),
                "c_over_limit": round(c.wall / limit, 4) if limit else None,
                "c_over_b": round(c.wall / b.wall, 4),
                "b_over_limit": round(b.wall / limit, 4) if limit else None,
                "foreign_cpu_b": round(b.window.foreign_cpu, 1),
                "foreign_cpu_c": round(c.window.foreign_cpu, 1),
            }
        )
        attribution.append(_attribute(b, c, ncores))

    def spread(key: str) -> dict[str, float]:
        xs = [x[key] for x in pairs if x[key] is not None]
        if not xs:
            return {}
        return {
            key: round(statistics.median(xs), 3),
            f"{key}_mean": round(mean(xs), 3),
            f"{key}_min": round(min(xs), 3),
            f"{key}_max": round(max(xs), 3),
        }

    limits = [x["limit"] for x in pairs]
    out: dict[str, Any] = {
        "wall_seconds": {k: round(v, 3) for k, v in walls.items()},
        "limit_seconds": round(statistics.median(limits), 3) if limits else None,
        "foreign_cpu_seconds": {
            k: round(mean(r.window.foreign_cpu for r in v), 1) for k, v in by.items()
        },
        "povray_cpu_seconds": {k: round(mean(r.povray_cpu for r in v), 2) for k, v in by.items()},
        # The median of the back-to-back pairs' ratios: a burst of someone
        # else's load that hits one pair does not move it (spread alongside).
        **spread("c_over_limit"),
        **spread("c_over_b"),
        **spread("b_over_limit"),
        "c_over_a": round(walls["farm"] / walls["direct"], 3)
        if walls.get("farm") and walls.get("direct")
        else None,
        "goals": {"c_over_limit": goal, "c_over_a": 1.0},
        "pairs": pairs,
        "attribution": attribution,
    }
    out["goals_met"] = {
        "c_over_limit": out.get("c_over_limit") is not None and out["c_over_limit"] <= goal,
        "c_over_a": out["c_over_a"] is not None and out["c_over_a"] < 1.0,
    }
    frame_b = [s for r in by.get("per-frame", []) for s in r.frame_seconds]
    cpu_b = [s for r in by.get("per-frame", []) for s in r.frame_cpu_seconds]
    frame_c = [s for r in by.get("farm", []) for s in r.frame_seconds]
    farm = by.get("farm", [])
    out["frame_seconds"] = {
        "per_frame_mean": round(mean(frame_b), 3),
        "per_frame_cpu_mean": round(mean(cpu_b), 3),
        "farm_mean": round(mean(frame_c), 3),
    }
    out["encode_seconds"] = round(mean(r.phases["encode"] for r in by.get("per-frame", [])), 3)
    # The farm's own CPU (the stack's processes, the stitch, this client)
    # against POV-Ray's (with the workers' segment encodes), per frame.
    if farm:
        own = [
            sum((r.profile.get("stack_cpu_seconds") or {}).values())
            + float(r.profile.get("stitch_cpu_seconds") or 0.0)
            + r.window.own_cpu
            for r in farm
        ]
        out["farm_cpu_per_frame"] = {
            "own": round(mean(own) / frames, 4),
            "render": round(mean(r.povray_cpu for r in farm) / frames, 4),
        }
    if farm:
        names = farm[0].profile.get("stack_cpu_seconds", {})
        out["stack_cpu_seconds_per_farm_run"] = {
            k: round(mean(r.profile.get("stack_cpu_seconds", {}).get(k, 0.0) for r in farm), 2)
            for k in names
        }
        out["povray_cpu_seconds_per_farm_run"] = round(mean(r.povray_cpu for r in farm), 2)
        out["farm_spans_per_run"] = round(mean(r.profile.get("spans", 0) for r in farm), 1)
        out["farm_workers_seen"] = max(r.profile.get("workers", 0) for r in farm)
    return out


def _latency(runs: list[overhead.Run], encode: float, frame_mean: float) -> dict[str, Any]:
    farm = [r for r in runs if r.scenario == "farm"]
    to_record = [x for r in farm for x in r.profile.get("upload_to_record_seconds", [])]

    def avg(key: str) -> float:
        return round(mean(float(r.profile.get(key) or 0.0) for r in farm), 3)

    return {
        "upload_to_record_p50": round(percentile(to_record, 50), 4),
        "upload_to_record_p95": round(percentile(to_record, 95), 4),
        "upload_to_record_max": round(max(to_record, default=0.0), 4),
        "frames": len(to_record),
        "frame_render_mean": frame_mean,
        "last_upload_to_video": avg("last_upload_to_done"),
        "last_upload_to_claim": avg("last_upload_to_claim"),
        "stitch_seconds": avg("stitch_seconds"),
        "ffmpeg_alone": encode,
        "done_to_client": avg("done_to_client"),
    }


def _segments(frames: int) -> dict[str, Any]:
    """The segments join, if bench/segments.py exists: ``measure(frames,
    width, height, chunk) -> dict`` with the join's seconds, one encode's
    seconds and their ratio (``join_seconds``, ``encode_seconds``, ``ratio``;
    other names containing "join" and "encode" are found too)."""
    try:
        module = importlib.import_module(f"{__package__ or 'bench'}.segments")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith("segments"):
            return {"skipped": "bench/segments.py is not there yet"}
        raise
    params = {**SEGMENTS, "frames": frames}
    got = dict(module.measure(**params))

    def find(exact: str, word: str) -> float | None:
        if isinstance(got.get(exact), int | float):
            return float(got[exact])
        for k, v in got.items():
            if word in k and "ratio" not in k and isinstance(v, int | float):
                return float(v)
        return None

    join, encode = find("join_seconds", "join"), find("encode_seconds", "encode")
    ratio = got.get("ratio")
    if not isinstance(ratio, int | float):
        ratio = join / encode if join is not None and encode else None
    segments = -(-frames // params["chunk"])
    return {
        **params,
        "segments": segments,
        "join_seconds": join,
        "encode_seconds": encode,
        "ratio": ratio,
        "join_per_segment_seconds": join / segments if join is not None else 0.0,
        "raw": got,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quick = args.quick
    pairs = args.pairs or (1 if quick else 3)
    frames = args.frames or (12 if quick else 48)
    sizes = sorted(
        args.sizes or parse_sizes(QUICK_SIZES if quick else DEFAULT_SIZES),
        key=lambda s: s[0] * s[1],
    )
    ledger_units = args.ledger_units or (300 if quick else 2000)
    fill_repeats = args.fill_repeats if args.fill_repeats is not None else (1 if quick else 2)
    fill_counts = args.fill_counts or ([2, 4] if quick else list(fill.COUNTS))
    segment_frames = (
        args.segment_frames
        if args.segment_frames is not None
        else (300 if quick else SEGMENTS["frames"])
    )
    ncores = overhead.cores()
    configs = (
        args.validate
        if args.validate is not None
        else validate.parse_configs(validate.QUICK_CONFIGS if quick else validate.DEFAULT_CONFIGS)
    )

    _clean_environ()
    signal.signal(signal.SIGTERM, _on_term)
    tmp = Path(tempfile.mkdtemp(prefix="povstorm-bench-"))
    home, work = tmp / "home", tmp / "work"
    work.mkdir(parents=True)
    os.environ[ENV["home"]] = str(home)  # the stitches the stack starts inherit it
    started = time.monotonic()

    from povstorm_local.stack import LocalStack

    anims = [overhead.Animation(SCENE_DIR, "spinning.ini", w, h, frames) for w, h in sizes]
    results: dict[str, Any] = {
        "machine": machine(),
        "config": {
            "quick": quick,
            "pairs": pairs,
            "frames": frames,
            "sizes": [a.size for a in anims],
            "animations": [a.describe() for a in anims],
            "cores": ncores,
            "workers_override": args.workers,
            "threads": {
                "direct": "POV-Ray default (+WT = all cores)",
                "per-frame": f"+WT1, {ncores} processes at once (one per core)",
                "farm": "the user's arguments only: the farm chooses threads and processes",
            },
            "limit": "sum of POV-Ray's CPU seconds (os.wait4) of the per-frame run / cores",
            "limit_goals": {a.size: limit_goal(a.width, a.height) for a in anims},
            "ledger_units": ledger_units,
            "fill": {
                "repeats": fill_repeats,
                "counts": fill_counts,
                "plans": list(fill.PLANS),
                "quiet": args.fill_quiet,
            },
        },
    }
    stack = LocalStack(home)
    runs: list[overhead.Run] = []
    try:
        _say(
            f"{', '.join(a.describe() for a in anims)}; stack workers "
            f"{args.workers or 'its default'}; {pairs} pair(s) per size"
        )
        fs_alone = coldstart.firestore_alone()
        state, up_seconds = coldstart.stack_up(stack, args.workers)
        results["cold_start"] = {
            "stack_up_seconds": round(up_seconds, 3),
            "firestore_alone_seconds": round(fs_alone, 3),
            "ratio": round(up_seconds / fs_alone, 2),
        }
        # What the stack chose for itself (its worker count, and whatever
        # else about the farm its state records).
        chosen = {
            k: v
            for k, v in state.to_json().items()
            if isinstance(v, int | float | bool) and k not in ("version", "ready")
        }
        results["config"]["stack"] = chosen
        _say(f"stack up in {up_seconds:.1f} s: {chosen}")

        from povstorm.client import Cluster

        cluster = Cluster.local(home=home, start=False)
        pgids = {c.name: c.pgid for c in state.components.values()}
        stitch_fixed = overhead.warm_up(anims[0], work, cluster)
        results["stitch_fixed_seconds"] = round(stitch_fixed, 3)
        for anim in anims:
            for scenario, index in schedule(pairs, quick):
                if scenario == "direct":
                    run = overhead.run_direct(anim, work, index)
                elif scenario == "per-frame":
                    run = overhead.run_per_frame(anim, work, index, ncores)
                else:
                    run = overhead.run_farm(cluster, anim, work, index, pgids, ncores)
                runs.append(run)
                extra = (
                    f", limit {run.povray_cpu / ncores:.2f} s" if scenario == "per-frame" else ""
                )
                _say(
                    f"{anim.size} {scenario:<9} {index + 1} {run.wall:7.2f} s{extra} "
                    f"(machine busy {run.window.busy:.0%}, foreign CPU "
                    f"{run.window.foreign_cpu:.1f} s, load {run.window.loadavg:.2f})"
                )
        results["iteration"] = {}
        for anim in anims:
            _say(f"{anim.size} iteration: a new scene, the same again, a proof failing at frame 40")
            results["iteration"][anim.size] = iteration.run(cluster, anim, work)
            it = results["iteration"][anim.size]
            _say(
                f"{anim.size} first {it['first_seconds']:.2f} s, again {it['again_seconds']:.2f} s "
                f"({it['again_ratio']:.3f}), proof {it['proof_seconds']:.2f} s "
                f"({it['proof_ratio']:.3f}), check {it['check_seconds']:.2f} s"
            )
        _say("a still in tiles on the farm against povray direct")
        results["still"] = still.run(cluster, work / "still")
        _say(still.line(results["still"]))
        results["overhead"], results["latency"] = {}, {}
        for anim in anims:
            mine = [r for r in runs if r.size == anim.size]
            ov = _summarise_overhead(mine, frames, ncores, limit_goal(anim.width, anim.height))
            results["overhead"][anim.size] = ov
            results["latency"][anim.size] = _latency(
                mine, ov["encode_seconds"], ov["frame_seconds"]["per_frame_mean"]
            )
        results["runs"] = [r.as_dict() for r in runs]
        for r in results["runs"]:
            r["profile"].pop("upload_to_record_seconds", None)

        _say(f"ledger load, {ledger_units} units")
        results["ledger"] = ledger_load.run(
            state.components["firestore"].address, ledger_units, threads=16, duplicate_share=0.2
        )
    finally:
        try:
            stack.down(wipe=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # The model's check: local runs on fresh stacks of their own slot count,
    # which the model predicts from the overhead section's runs, each on the
    # slots its job's plan records.
    workers = int((results["config"].get("stack") or {}).get("workers") or 0)
    calibration_runs = []
    for r in runs:
        if r.scenario == "farm":
            width, _, height = r.size.partition("x")
            slots = int((r.plan or {}).get("slots") or workers or 1)
            config = validate.Config(frames, int(width), int(height), slots)
            calibration_runs.append(validate.local_run(config, r))
    local_runs: list[validate.LocalRun] = []
    validation_error = ""
    if configs:
        root = Path(tempfile.mkdtemp(prefix="povstorm-bench-validate-"))
        try:
            _say(f"model validation: {', '.join(c.label for c in configs)}")
            local_runs = validate.run_configs(configs, SCENE_DIR, root, _say)
        except Exception as exc:  # the rest of the bench stands without it
            validation_error = f"{type(exc).__name__}: {exc}"
            _say(f"model validation failed: {validation_error}")
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # With the stack stopped: plain povray and ffmpeg only.
    work = Path(tempfile.mkdtemp(prefix="povstorm-bench-"))
    try:
        if fill_repeats > 0:
            results["fill"] = {
                "povray_idle": fill.povray_idle(SCENE_DIR, work, repeats=1 if quick else 3),
                "sizes": [
                    fill.measure_size(
                        anim,
                        work,
                        counts=fill_counts,
                        repeats=fill_repeats,
                        quiet=args.fill_quiet,
                        quiet_timeout=300.0,
                        log=_say,
                    )
                    # --quick: the smallest size only, to stay a smoke run
                    for anim in (anims[:1] if quick else anims)
                ],
            }
        else:
            results["fill"] = {
                "skipped": "--fill-repeats 0",
                "povray_idle": fill.povray_idle(SCENE_DIR, work, repeats=1),
            }
        if segment_frames > 0:
            _say(f"segments join, {segment_frames:,} frames")
            results["segments"] = _segments(segment_frames)
        else:
            results["segments"] = {"skipped": "--segment-frames 0"}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    _say("model: calibration, validation, the cloud table")
    calibration, fitted = validate.fit(validate.calibrate(results), calibration_runs)
    results["model"] = {
        "calibration_fit": fitted,
        "validation": validate.validate(local_runs, calibration)
        if local_runs
        else {"skipped": validation_error or "--validate none"},
        "cloud": cloud.table(results),
    }
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    print(render_table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nfigures written to {args.json}", file=sys.stderr)
    ok = (
        results["ledger"]["ledger"]["exact"]
        and results["ledger"]["ledger"]["max_single_call_ms"] < 5000
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
