"""Tiled stills, the plan: one image cut into horizontal bands, each
rendered by its own POV-Ray process (``band_options`` appended to the job's
arguments), merged by the stitch (``stitch/still.py``) into the PNG that
``povray`` run directly writes. The spec (``PovraySpec.tiles``) carries the
bands; what POV-Ray does with a band, measured, is in ``povray/tiles.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from povstorm.core.errors import SpecError


@dataclass(frozen=True)
class Band:
    """Rows ``top`` to ``bottom - 1`` of the image (0-based), rendered by one process."""

    index: int
    top: int
    bottom: int

    @property
    def rows(self) -> int:
        return self.bottom - self.top


# --- the plan ---------------------------------------------------------------------


def plan_bands(height: int, tiles: int, *, align: int = 1) -> list[Band]:
    """``tiles`` bands covering rows 0 to ``height - 1`` once, every boundary
    a multiple of ``align`` (the block size when antialiased, else 1).

    Band sizes differ by one block at most; the bigger bands come last
    because the image's last block may be short (240 rows in 3 bands of
    32-row blocks: 64, 96, 80 rows). SpecError when the image cannot be cut
    in that many bands."""
    if align < 1:
        raise ValueError(f"align must be at least 1, not {align}")
    if height < 1:
        raise SpecError(f"an image of {height} rows has nothing to tile")
    if tiles < 1:
        raise SpecError(f"--tiles {tiles}: a still needs at least 1 tile")
    if tiles > height:
        raise SpecError(f"--tiles {tiles} is more than the image's {height} rows")
    blocks = -(-height // align)
    if tiles > blocks:
        raise SpecError(
            f"--tiles {tiles} is too many: with antialiasing the bands follow POV-Ray's "
            f"{align}-row render blocks: at most {blocks} tiles for {height} rows"
        )
    small, extra = divmod(blocks, tiles)
    sizes = [small] * (tiles - extra) + [small + 1] * extra
    bands, top = [], 0
    for index, size in enumerate(sizes):
        bottom = min(top + size * align, height)
        bands.append(Band(index, top, bottom))
        top = bottom
    return bands


# --tiles auto: a still the proof expects to take longer than this (seconds
# of one POV-Ray process) is cut into parts of about this long.
TILE_SECONDS = 120.0


def check_tile_seconds(part: float) -> float:
    if not 0 < part < math.inf:
        raise SpecError(f"--tile-seconds {part:g}: a positive number of seconds")
    return part


def auto_tiles(seconds: float, height: int, *, align: int = 1, part: float = TILE_SECONDS) -> int:
    """How many bands a still expected to take ``seconds`` is cut into: parts
    of about ``part`` seconds, at most as many as the image can be cut
    into (its rows, or its render blocks when antialiased), at least one."""
    check_tile_seconds(part)
    most = -(-height // max(1, align))
    return max(1, min(most, math.ceil(seconds / part)))


def band_options(band: Band, height: int) -> list[str]:
    """The options that make POV-Ray render exactly ``band`` of an image
    ``height`` rows high, to append after the job's own.

    1-based and inclusive, and never a fraction: the first band has no
    ``+SR`` and the last no ``+ER``, every other ``+SR`` is 2 or more; a
    first band of one row ends at ``+ER1.5`` (row 1: ``+ER1`` would be the
    whole image)."""
    if not 0 <= band.top < band.bottom <= height:
        raise ValueError(
            f"band {band.index} (rows {band.top}-{band.bottom}) is not in {height} rows"
        )
    options = []
    if band.top > 0:
        options.append(f"+SR{band.top + 1}")
    if band.bottom < height:
        options.append(f"+ER{band.bottom}" if band.bottom > 1 else "+ER1.5")
    return options


@dataclass(frozen=True)
class Tiles:
    """A tiled still's cut: unit ``n`` of the job renders ``bands[n]`` of an
    image ``height`` rows high."""

    height: int
    bands: tuple[Band, ...]

    def options(self, unit: int) -> list[str]:
        return band_options(self.bands[unit], self.height)

    def label(self, unit: int) -> str:
        band = self.bands[unit]
        return f"tile {unit + 1} of {len(self.bands)} (rows {band.top + 1}-{band.bottom})"

    @classmethod
    def plan(cls, height: int, tiles: int, *, align: int = 1) -> Tiles:
        return cls(height, tuple(plan_bands(height, tiles, align=align)))
