"""The tables ``python -m bench`` prints (Markdown, so they paste into docs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms"


def _ratio(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _size_rows(results: dict[str, Any], size: str) -> list[tuple[str, str, str, str]]:
    cfg, m = results["config"], results["machine"]
    ov, lat = results["overhead"][size], results["latency"][size]
    walls = ov["wall_seconds"]
    goal = ov["goals"]["c_over_limit"]
    anim = f"{size}, {cfg['frames']} frames"
    n = len(ov["pairs"])
    pairs = f"{n} back-to-back pair{'' if n == 1 else 's'}"

    def met(key: str) -> str:
        return "" if ov["goals_met"].get(key) else ", NOT MET"

    def spread(key: str) -> str:
        if ov.get(f"{key}_min") is None or n < 2:
            return ""
        return f"; pairs {ov[f'{key}_min']:.3f}-{ov[f'{key}_max']:.3f}"

    out = []
    if ov.get("limit_seconds"):
        out.append(
            (
                f"{anim}: (c) farm vs the limit, POV-Ray's CPU s / {m['nproc']} cores "
                f"(from (b)'s processes)",
                _s(walls["farm"]),
                _s(ov["limit_seconds"]),
                f"c/limit {_ratio(ov.get('c_over_limit'))} (median{spread('c_over_limit')}; "
                f"goal <= {goal:.2f}{met('c_over_limit')})",
            )
        )
    out += [
        (
            f"{anim}: (c) farm vs (a) povray, one process (+WT{m['nproc']}) + ffmpeg",
            _s(walls["farm"]),
            _s(walls["direct"]),
            f"c/a {_ratio(ov['c_over_a'])} (goal < 1{met('c_over_a')})",
        ),
        (
            f"{anim}: (c) farm vs (b) povray +WT1 per frame, {m['nproc']} at once + ffmpeg "
            f"({pairs})",
            _s(walls["farm"]),
            _s(walls["per-frame"]),
            f"c/b {_ratio(ov.get('c_over_b'))} (median{spread('c_over_b')}); "
            f"b/limit {_ratio(ov.get('b_over_limit'), 2)}",
        ),
        *_cpu_rows(ov, anim),
        (
            f"{anim}: frame upload -> ledger record, p50 / p95 (vs a frame's render in (b))",
            f"{_ms(lat['upload_to_record_p50'])} / {_ms(lat['upload_to_record_p95'])}",
            _s(lat["frame_render_mean"]),
            f"{lat['upload_to_record_p50'] / lat['frame_render_mean']:.3f} / "
            f"{lat['upload_to_record_p95'] / lat['frame_render_mean']:.3f}"
            if lat["frame_render_mean"]
            else "-",
        ),
        (
            f"{anim}: last frame upload -> video ready (vs ffmpeg alone on the frames)",
            _s(lat["last_upload_to_video"]),
            _s(lat["ffmpeg_alone"]),
            f"{lat['last_upload_to_video'] / lat['ffmpeg_alone']:.2f}"
            if lat["ffmpeg_alone"]
            else "-",
        ),
    ]
    return out


def _cpu_rows(ov: dict[str, Any], anim: str) -> list[tuple[str, str, str, str]]:
    cpu = ov.get("farm_cpu_per_frame")
    if not cpu or not cpu["render"]:
        return []
    return [
        (
            f"{anim}: the farm's own CPU a frame (emulators, functions, workers, stitch, "
            "client) vs POV-Ray's and the segments' a frame",
            _s(cpu["own"]),
            _s(cpu["render"]),
            f"{cpu['own'] / cpu['render']:.3f}",
        )
    ]


def _segments_row(results: dict[str, Any]) -> tuple[str, str, str, str]:
    seg = results.get("segments") or {}
    if "skipped" in seg or seg.get("join_seconds") is None:
        why = seg.get("skipped") or "bench/segments.py returned no join seconds"
        return (
            "join segments of a 10,000-frame video vs one encode of the same frames",
            "-",
            "-",
            f"skipped: {why}",
        )
    return (
        f"join segments of a {seg['frames']:,}-frame video ({seg['segments']:,} segments of "
        f"{seg['chunk']} frames, {seg['width']}x{seg['height']}) vs one encode of the same frames",
        _s(seg["join_seconds"]),
        _s(seg["encode_seconds"]) if seg.get("encode_seconds") is not None else "-",
        _ratio(seg.get("ratio")),
    )


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    cold, led = results["cold_start"], results["ledger"]
    out = []
    for size in results["config"]["sizes"]:
        if size in results.get("overhead", {}):
            out += _size_rows(results, size)
    for size, it in (results.get("iteration") or {}).items():
        anim = f"{size}, {results['config']['frames']} frames"
        out += [
            (
                f"{anim}: the same scene again, every frame from the frame cache, until the "
                "video is downloaded (vs its first render)",
                _s(it["again_seconds"]),
                _s(it["first_seconds"]),
                f"{it['again_ratio']:.3f} ({it['again_frames_cached']} frames reused; "
                "goal < 5 s at 320x240)",
            ),
            (
                f"{anim}: --proof of the scene with a parse error in frame "
                f"{it.get('broken_frame', 40)}, until it fails "
                f"({it['proof_frames']} frames, a quarter of the size) (vs the full render)",
                _s(it["proof_seconds"]),
                _s(it["first_seconds"]),
                f"{it['proof_ratio']:.3f} (goal < 0.25)",
            ),
            (
                f"{anim}: the parse check before upload (first and last frame) (vs the full render)",
                _s(it["check_seconds"]),
                _s(it["first_seconds"]),
                f"{it['check_ratio']:.3f}",
            ),
        ]
    out += [
        _segments_row(results),
        (
            "cold start: LocalStack.up() until healthy (vs Firestore emulator alone)",
            _s(cold["stack_up_seconds"]),
            _s(cold["firestore_alone_seconds"]),
            f"{cold['ratio']:.2f}",
        ),
    ]
    lg, pl = led["ledger"], led["plain"]
    checks = lg["checks"]
    out += [
        (
            f"ledger: {lg['units']} units + {checks['duplicates_sent']} duplicates, "
            f"{led['threads']} threads: deliveries/s (vs plain writes/s)",
            f"{lg['calls_per_second']:.0f}/s ({lg['completions_per_second']:.0f} completions/s)",
            f"{pl['calls_per_second']:.0f}/s",
            f"{led['throughput_ratio']:.2f}",
        ),
        (
            "ledger: latency p50 / p95 per delivery (vs plain write)",
            f"{lg['latency_p50_ms']:.0f} / {lg['latency_p95_ms']:.0f} ms",
            f"{pl['latency_p50_ms']:.0f} / {pl['latency_p95_ms']:.0f} ms",
            f"{led['p50_latency_ratio']:.2f} (p50)",
        ),
        (
            "ledger: max single transaction wait (must be < 5 s); exact counts",
            f"{lg['max_single_call_ms']:.0f} ms; done {checks['done']}, "
            f"{checks['stitch_claims']} claim, {lg['redeliveries']} redelivered",
            f"{pl['latency_max_ms']:.0f} ms",
            "exact" if lg["exact"] else "WRONG COUNTS",
        ),
    ]
    return out


def _markdown(header: tuple[str, ...], body: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [line(header), sep, *(line(r) for r in body)]


def render_table(results: dict[str, Any]) -> str:
    from .fill import table as fill_table

    m, cfg = results["machine"], results["config"]
    head = (
        f"povstorm bench, {m['date']}: {m['nproc']} cores ({m['cpu_model']}), "
        f"{m['memory_gib']} GiB, POV-Ray {m['povray']}, ffmpeg {m['ffmpeg']}, "
        f"load {m['loadavg_at_start'][0]:.2f} at start, {results['bench_seconds']:.0f} s in all"
    )
    stack = cfg.get("stack") or {}
    head += (
        f"\nfarm: the stack's {'own default of ' if cfg.get('workers_override') is None else ''}"
        f"{stack.get('workers', '?')} workers, the user's arguments only (no +WT)"
    )
    for size, ov in results.get("overhead", {}).items():
        foreign = ov["foreign_cpu_seconds"]
        head += (
            f"\n{size}: CPU seconds used by other processes on the machine during each "
            "rendering (mean): " + ", ".join(f"{k} {v:.1f}" for k, v in foreign.items())
        )
    lines = [head, "", *_markdown(("figure", "povstorm", "baseline", "ratio"), rows(results))]
    fill = results.get("fill") or {}
    if fill.get("sizes"):
        lines += ["", fill_table(fill["sizes"])]
    elif fill.get("skipped"):
        lines += ["", f"fill: skipped ({fill['skipped']})"]
    idle = fill.get("povray_idle")
    if idle:
        plain = idle.get("plain") or idle
        lines.append(
            f"\nPOV-Ray idle (CPU idle, tiny frames, one process at a time): "
            f"{plain['startup_seconds']:.2f} s starting and stopping a process, "
            f"{plain['between_frames_seconds']:.2f} s between two frames of one process"
        )
        if idle.get("preload"):
            lines.append(
                f"as the farm runs it, its idle polls cut (povray/nopoll.py): "
                f"{idle['startup_seconds']:.2f} s and {idle['between_frames_seconds']:.2f} s"
            )
    if results.get("model"):
        lines += ["", *model_lines(results["model"])]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def _w(seconds: float) -> str:
    return f"{seconds:.0f} s"


def model_lines(model: dict[str, Any]) -> list[str]:
    """The model's validation against local runs, and the cloud table."""
    out: list[str] = []
    fit, val = model.get("calibration_fit") or {}, model.get("validation") or {}
    if "skipped" in val:
        out.append(f"model validation (local): skipped ({val['skipped']})")
    else:
        head = (
            f"model validation (local): predicted vs measured, submit -> video downloaded, "
            f"tolerance {100 * val['tolerance']:.0f} %"
        )
        if "stack_share" in fit:
            head += (
                f"; calibrated on the overhead section's farm runs (stack CPU share "
                f"{fit['stack_share']:.1f}, fitted: mean |error| {100 * fit['mean_abs_error']:.1f} %)"
            )
        out += [head, ""]
        rows_: list[tuple[str, ...]] = [
            (
                r["label"],
                str(r["chunks"]),
                _s(r["measured"]),
                _s(r["predicted"]),
                _pct(r["error"]) + ("" if r["within"] else ", OUTSIDE"),
            )
            for r in val["runs"]
        ]
        out += _markdown(("run", "chunks", "measured", "predicted", "error"), rows_)
        verdict = "all within" if val["all_within"] else "NOT all within"
        out.append(
            f"\nlargest |error| {100 * val['max_abs_error']:.1f} % ({verdict} "
            f"{100 * val['tolerance']:.0f} %)"
        )
    table = model.get("cloud")
    if not table:
        return out
    pert = table["perturbations"]
    out += [
        "",
        "model, cloud (Cloud Run Job tasks pulling chunks, the guided plan of a first "
        f"render): submit -> video, every job with cold starts ({pert['cold_starts']}), a "
        f"failed task ({pert['failure']}) and a slow frame ({pert['slow_frame']})",
        "",
    ]
    body: list[tuple[str, ...]] = []
    for r in table["rows"]:
        plans = r["plans"]
        goal = ""
        if "goal" in r:
            goal = f"<= {r['goal']:.0f} s: " + ("met" if r["met"] else "NOT MET")
        body.append(
            (
                f"{r['frames']:,} x {r['frame_seconds']:.0f} s on {r['instances']:,}",
                f"{r['chunks']:,} (<= {r['max_chunk']})",
                _w(r["ideal"]),
                _w(r["wall"]),
                _w(r["clean_wall"]),
                _w(r["without"]["the slow tail frame"]),
                _w(r["without"]["the failed task"]),
                f"{_w(plans['equal'])} / {_w(plans['timed'])} / {_w(plans['frame'])}",
                _w(r["push_design_before"]) if "push_design_before" in r else "-",
                goal,
            )
        )
    out += _markdown(
        (
            "N frames x T on M tasks",
            "chunks (largest)",
            "N*T/M",
            "wall",
            "without both",
            "without slow frame",
            "without failure",
            "plans: equal / timed / 1 frame",
            "push model before",
            "goal",
        ),
        body,
    )
    out += ["", *table["verdict"]]
    return out
