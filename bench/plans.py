"""Chunk plans: how the frames first..last are cut into contiguous chunks,
each rendered by one POV-Ray process (``+SF a +EF b``), handed in order to
whichever process (or instance) is free first."""

from __future__ import annotations

import math
from collections.abc import Callable

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
    """Chunks of ceil(remaining / (2 k)) frames (at most ``cap`` if > 0)
    until none remain: big ones first, small ones at the end, so that ``k``
    processes taking them from a shared queue finish together."""
    out, a = [], first
    while a <= last:
        size = math.ceil((last - a + 1) / (2 * max(1, k)))
        if cap > 0:
            size = min(size, cap)
        out.append((a, a + size - 1))
        a += size
    return out


def frame_chunks(first: int, last: int, k: int = 1, cap: int = 0) -> list[Chunk]:
    """One frame a chunk: one POV-Ray process per frame."""
    return [(f, f) for f in range(first, last + 1)]


PLANNERS: dict[str, Callable[[int, int, int, int], list[Chunk]]] = {
    "equal": equal_chunks,
    "guided": guided_chunks,
    "frame": frame_chunks,
}
