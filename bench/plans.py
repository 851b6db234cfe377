"""Chunk plans: how the frames first..last are cut into contiguous chunks,
each rendered by one POV-Ray process (``+SF a +EF b``), handed in order to
whichever process (or instance) is free first."""

from __future__ import annotations

import math
from collections.abc import Callable

from povstorm.core.chunks import plan_chunks

Chunk = tuple[int, int]  # first and last frame, inclusive


def equal_chunks(first: int, last: int, k: int, cap: int = 0) -> list[Chunk]:
    """``k`` contiguous chunks whose sizes differ by at most one frame (more
    chunks if ``cap`` > 0 bounds their size)."""
    n = last - first + 1
    if n <= 0:
        return []
    k = max(1, min(k, n))
    if cap > 0:
        k = max(k, math.ceil(n / cap))
    base, extra = divmod(n, k)
    out, a = [], first
    for i in range(k):
        size = base + (1 if i < extra else 0)
        out.append((a, a + size - 1))
        a += size
    return out


def guided_chunks(first: int, last: int, k: int, cap: int = 0) -> list[Chunk]:
    """The farm's own plan for ``k`` slots (``povstorm.core.chunks.plan_chunks``:
    big chunks first, small ones at the end, so that ``k`` processes taking
    them from a shared queue finish together), at most ``cap`` frames each
    if > 0."""
    plan = plan_chunks(last - first + 1, k, frames_per_unit=0)
    out = []
    for a, n in plan:
        for b in range(a, a + n, cap if cap > 0 else n):
            out.append((first + b, first + min(a + n, b + (cap if cap > 0 else n)) - 1))
    return out


def frame_chunks(first: int, last: int, k: int = 1, cap: int = 0) -> list[Chunk]:
    """One frame a chunk: one POV-Ray process per frame."""
    return [(f, f) for f in range(first, last + 1)]


PLANNERS: dict[str, Callable[[int, int, int, int], list[Chunk]]] = {
    "equal": equal_chunks,
    "guided": guided_chunks,
    "frame": frame_chunks,
}
