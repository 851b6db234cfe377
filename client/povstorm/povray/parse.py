"""Read a POV-Ray invocation exactly as POV-Ray 3.7 does, for the farm.

Where it sits: the client turns ``povstorm render SCENE.ini|SCENE.pov
[options]`` into an ``Invocation`` with ``parse_invocation``, ``scan.py``
collects the files it needs, and the job spec carries ``farm_args`` plus the
frame range (``farm_args.py``).

Fidelity. The option reader is a port of POV-Ray 3.7.0's own
(``frontend/processoptions.cpp``, ``processrenderoptions.cpp`` and the unix
``vfe`` front end: ``lexer.py`` and ``reader.py`` read the text, ``apply.py``
applies each option, ``options.py`` holds the tables), quirks included, and
every rule was checked against the installed ``povray`` 3.7.0.10. What is
left for this module is ``VirtualFrontEnd::Start`` and
``AnimationProcessing``:

* floats are C ``float`` (``cfloat.py``): clock values are computed in single
  precision the way ``AnimationProcessing`` does, and match ``clock`` in the
  scene bit for bit; subset fractions (0 < x < 1) take ``int(frames * x)``,
  not offset by the initial frame; a cyclic animation adds one frame to the
  clock period and to the digit count of output names (``+KFF9 +KC`` names
  ``s01.png``);
* ``Frame_Step`` renders every n-th frame from the first of the range, as
  POV-Ray does; unit ``n`` is frame ``first + n * step``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from povstorm.core.errors import SceneError
from povstorm.povray.apply import Reader
from povstorm.povray.cfloat import f32
from povstorm.povray.farm_args import (
    build_farm_args,
    find_file,
    ini_keys,
    library_dirs,
    upload_key,
)
from povstorm.povray.invocation import Antialias, Invocation, Setting
from povstorm.povray.options import SYSTEM_SHARE
from povstorm.povray.reader import Lib


def parse_invocation(
    argv: Sequence[str], cwd: Path, *, environ: Mapping[str, str] | None = None
) -> Invocation:
    """Read ``povray ARGV`` run in ``cwd`` as POV-Ray 3.7 would.

    ``environ`` supplies POVINI and HOME for the default INI file (default:
    ``os.environ``). Raises ``SceneError`` with one line naming the file and
    line (or "command line") for anything POV-Ray would reject.
    """
    cwd = Path(os.path.abspath(cwd))
    r = Reader(cwd, os.environ if environ is None else environ)
    default = r.default_ini()
    if default is not None:
        r.read_ini(str(default), "default INI", top_level=False, text=str(default))
    else:
        r.libs.append(Lib(str(SYSTEM_SHARE / "include"), "default library path", False))
    for arg in argv:
        r.parse_argument(arg)
    return _build(r, tuple(argv), cwd, default)


def _build(r: Reader, argv: tuple[str, ...], cwd: Path, default: Path | None) -> Invocation:
    v = r.values
    warnings = r.warnings
    scene_literal = v.get("Input_File_Name")
    if not scene_literal:
        raise SceneError(
            "command line: no scene file given (name a .pov or an INI file that sets Input_File_Name)"
        )
    origin = r.scene_origin or "command line"
    # The library path as the parser sees it, before the scene fixes root.
    provisional = library_dirs(r, cwd)
    found = find_file(scene_literal, (".pov", ".POV"), cwd, provisional)
    if found is None:
        raise SceneError(
            f"{origin}: scene file {scene_literal!r} not found "
            "(POV-Ray looks in the current directory, then the library path)"
        )
    scene = found[0]
    root = scene.parent
    libs = library_dirs(r, root)
    for lib in libs:
        if not lib.exists:
            warnings.append(f"{lib.origin}: library directory {lib.literal!r} does not exist")

    width, height = v.get("Width"), v.get("Height")
    if width is None or height is None:
        raise SceneError(
            "command line: image size not set: give +W and +H (POV-Ray 3.7 has no usable default)"
        )
    if width < 1 or height < 1:
        raise SceneError(f"command line: image size {width}x{height} is not positive")

    anim = _animation(v, warnings)
    step = max(1, int(v.get("Frame_Step", 1))) if anim["animated"] else 1

    inis = ini_keys(r, root, default)
    include_header = v.get("Include_Header")
    farm_args = build_farm_args(r, root, scene, inis, libs, width, height, warnings)

    options: dict[str, str] = {}
    for item in r.items:
        if item.kind in ("switch", "option"):
            for k in item.keys:
                if k in v:
                    options[k] = _show(v[k])
    aa = Antialias(
        enabled=bool(v.get("Antialias", False)),
        threshold=v.get("Antialias_Threshold", f32(0.3)),
        depth=v.get("Antialias_Depth", 3),
        method=v.get("Sampling_Method", 1),
        jitter=bool(v.get("Jitter", True)),
        jitter_amount=v.get("Jitter_Amount", 1.0),
        gamma=v.get("Antialias_Gamma", 2.5),
    )
    output_name = v.get("Output_File_Name")
    if output_name in ("-", "stdout", "stderr"):
        warnings.append("command line: output to a stream is replaced by PNG files on the farm")
        output_name = None
    inv = Invocation(
        argv=argv,
        cwd=cwd,
        scene=scene,
        scene_literal=scene_literal,
        root=root,
        scene_key=upload_key(scene.name, "scene name", origin),
        default_ini=default,
        ini_files=tuple(inis),
        settings=tuple(Setting(i.origin, i.text, i.keys) for i in r.items),
        options=options,
        library_paths=tuple(libs),
        declares=tuple(r.declares),
        include_header=include_header,
        width=width,
        height=height,
        antialias=aa,
        animated=anim["animated"],
        initial_frame=anim["initial_frame"],
        final_frame=anim["final_frame"],
        initial_clock=anim["initial_clock"],
        final_clock=anim["final_clock"],
        cyclic=anim["cyclic"],
        field_render=bool(v.get("Field_Render", False)),
        odd_field=bool(v.get("Odd_Field", False)),
        frames=anim["frames"],
        frame_step=step,
        frame_digits=anim["digits"],
        output_file_name=output_name,
        clock_value=v.get("Clock", 0.0),
        farm_args=tuple(farm_args),
        warnings=tuple(dict.fromkeys(warnings)),
        _clock_delta=anim["delta"],
    )
    if inv.animated:
        inv.output_name(inv.frames[1])  # a frame number too long for the name fails here
    return inv


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "On" if value else "Off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _animation(v: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """``VirtualFrontEnd::Start`` + ``AnimationProcessing``, line by line."""
    first_set, last_set = v.get("Initial_Frame", 0), v.get("Final_Frame", 0)
    if (first_set == 0 and last_set == 0) or (first_set == 1 and last_set == 1):
        if "Subset_Start_Frame" in v or "Subset_End_Frame" in v:
            warnings.append("command line: +SF/+EF are ignored: this is not an animation")
        return {
            "animated": False,
            "initial_frame": 0,
            "final_frame": 0,
            "initial_clock": 0.0,
            "final_clock": 0.0,
            "cyclic": False,
            "frames": (0, 0),
            "digits": 0,
            "delta": 0.0,
        }
    cyclic = bool(v.get("Cyclic_Animation", False))
    initial_frame = max(v.get("Initial_Frame", 1), 0)
    initial_clock = f32(v.get("Initial_Clock", 0.0))
    final_frame = max(v.get("Final_Frame", 1), initial_frame)
    final_clock = f32(v.get("Final_Clock", 1.0))
    user_final = final_frame
    if cyclic:
        final_frame += 1
    span = final_frame - initial_frame + 1

    def subset(value: float) -> int:
        pct = max(float(value), 0.0)
        if pct == 0.0 or pct >= 1.0:
            return int(pct)
        return int(f32(span * pct))

    if "Subset_Start_Frame" in v:
        start = max(subset(v["Subset_Start_Frame"]), initial_frame)
    else:
        start = initial_frame
    if "Subset_End_Frame" in v:
        end = max(subset(v["Subset_End_Frame"]), start)
    else:
        end = final_frame - (1 if cyclic else 0)
    # POV-Ray always renders the first frame of the subset, even past the end.
    end = max(end, start)
    numerator = f32(final_clock - initial_clock)
    denominator = final_frame - initial_frame
    if denominator:
        delta = numerator / denominator
    else:
        delta = math.nan if numerator == 0 else math.copysign(math.inf, numerator)
        warnings.append(
            f"command line: a one-frame animation (frame {initial_frame}): POV-Ray's clock is undefined (NaN)"
        )
    if end > user_final:
        warnings.append(
            f"command line: frames {user_final + 1}..{end} lie beyond Final_Frame={user_final}"
        )
    digits = 1
    n = final_frame
    while n >= 10:
        digits += 1
        n //= 10
    return {
        "animated": True,
        "initial_frame": initial_frame,
        "final_frame": user_final,
        "initial_clock": initial_clock,
        "final_clock": final_clock,
        "cyclic": cyclic,
        "frames": (start, end),
        "digits": digits,
        "delta": delta,
    }
