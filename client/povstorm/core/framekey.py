"""The frame cache's key: a hash of everything that decides a frame's pixels.

A frame is a pure function of

* the content of every file its POV-Ray process can read: the job's inputs
  (the scene, its includes, image maps, meshes, ``#read`` data, INI files:
  all of them, by their sha256 digests, under the names the scene opens them
  by) and, for a generated unit, its own inputs and inline files. Nothing
  else is readable: the worker confines POV-Ray to its working directory and
  POV-Ray's own library (povray/confine.py), so a file the scanner missed
  cannot reach the pixels either;
* POV-Ray's arguments, as the client normalised them (``Invocation.farm_args``:
  size, quality, antialiasing, declares, the animation's frame and clock
  settings; without output names, display options or the frame subset, which
  never change a frame);
* the frame number (with the arguments, the clock value), or for a band of
  a tiled still its rows;
* the POV-Ray build that renders it (its version line: a different build may
  render different pixels), which also stands for POV-Ray's own include files
  and fonts.

Where it sits: the worker computes each unit's key once it knows its own
POV-Ray (``worker/unit.py``), looks for ``cache/<key>.png`` and, on a hit,
copies it into the job's frame object, whose finalize event counts the unit
like any rendered frame; a rendered frame is copied to its key. A spec whose
``cache`` is ``"off"`` (frames that depend on each other) has no keys.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from povstorm.core.spec import JobSpec, UnitSpec

# Changes when what goes into a key changes, so old entries stop matching.
KEY_VERSION = 1


def frame_key(
    spec: JobSpec, unit: int, povray_version: str, unit_spec: UnitSpec | None = None
) -> str | None:
    """The cache key of ``unit``'s frame, or None when the job is not cached.
    A generated unit's own spec lives on its unit document, not in the job's:
    pass it as ``unit_spec``."""
    if spec.cache == "off":
        return None
    body: dict[str, Any] = {
        "v": KEY_VERSION,
        "povray": povray_version,
        "inputs": sorted(spec.inputs.items()),
        "inputs_dir": spec.inputs_dir,
    }
    if spec.povray is not None:
        body["args"] = list(spec.povray.args)
        body["animated"] = spec.povray.animated
        body["frame"] = spec.frame_of(unit) if spec.povray.animated else None
        band = spec.band_of(unit)
        if spec.povray.tiles and band is not None:  # its own rows (absent untiled: keys stay)
            body["band"] = spec.povray.tiles.options(band)
    else:
        own = unit_spec if unit_spec is not None else spec.units[unit]
        body["args"] = list(own.args)
        body["unit_inputs"] = sorted(own.inputs.items())
        body["inline"] = sorted(
            (name, hashlib.sha256(text.encode()).hexdigest()) for name, text in own.inline.items()
        )
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def frame_keys(
    spec: JobSpec, units: list[int], povray_version: str, unit_spec: UnitSpec | None = None
) -> dict[int, str]:
    """The keys of ``units`` (none when the job is not cached)."""
    keys = {u: frame_key(spec, u, povray_version, unit_spec) for u in units}
    return {u: k for u, k in keys.items() if k is not None}
