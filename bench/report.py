"""The one table ``python -m bench`` prints (Markdown, so it pastes into docs)."""

from __future__ import annotations

from typing import Any


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    cfg, ov, lat = results["config"], results["overhead"], results["latency"]
    cold, led = results["cold_start"], results["ledger"]
    walls = ov["wall_seconds"]
    out = [
        (
            f"(c) farm vs (a) povray, one process (+WT{results['machine']['nproc']}) + ffmpeg: "
            f"{cfg['animation']}",
            _s(walls["farm"]),
            _s(walls["direct"]),
            f"c/a {ov['c_over_a']:.3f}",
        ),
        (
            f"(c) farm vs (b) povray +WT1 per frame, {cfg['workers']} at once + ffmpeg "
            f"({len(ov['pairs'])} back-to-back pair{'' if len(ov['pairs']) == 1 else 's'})",
            _s(walls["farm"]),
            _s(walls["per-frame"]),
            f"c/b {ov['c_over_b']:.3f} (median; pairs {ov['c_over_b_min']:.3f}-"
            f"{ov['c_over_b_max']:.3f}; goal <= 1.10)",
        ),
        (
            "frame upload -> ledger record, p50 / p95 (vs a frame's render)",
            f"{_ms(lat['upload_to_record_p50'])} / {_ms(lat['upload_to_record_p95'])}",
            _s(lat["frame_render_mean"]),
            f"{lat['upload_to_record_p50'] / lat['frame_render_mean']:.3f} / "
            f"{lat['upload_to_record_p95'] / lat['frame_render_mean']:.3f}",
        ),
        (
            "last frame upload -> video ready (vs ffmpeg alone on the frames)",
            _s(lat["last_upload_to_video"]),
            _s(lat["ffmpeg_alone"]),
            f"{lat['last_upload_to_video'] / lat['ffmpeg_alone']:.2f}",
        ),
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
    for est in results["model"]["estimates"]:
        out.append(
            (
                f"model, cloud: {est['frames']:,} frames x {est['frame_seconds']:.0f} s "
                f"on {est['instances']:,} instances (vs N*T/M)",
                _s(est["wall"]),
                _s(est["ideal"]),
                f"{est['wall'] / est['ideal']:.2f}",
            )
        )
    return out


def render_table(results: dict[str, Any]) -> str:
    m = results["machine"]
    head = (
        f"povstorm bench, {m['date']}: {m['nproc']} cores ({m['cpu_model']}), "
        f"{m['memory_gib']} GiB, POV-Ray {m['povray']}, ffmpeg {m['ffmpeg']}, "
        f"load {m['loadavg_at_start'][0]:.2f} at start, {results['bench_seconds']:.0f} s in all"
    )
    foreign = results["overhead"]["foreign_cpu_seconds"]
    head += (
        "\nCPU seconds used by other processes on the machine during each rendering "
        "(mean): " + ", ".join(f"{k} {v:.1f}" for k, v in foreign.items())
    )
    body = rows(results)
    header = ("figure", "povstorm", "baseline", "ratio")
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([head, "", line(header), sep, *(line(r) for r in body)])
