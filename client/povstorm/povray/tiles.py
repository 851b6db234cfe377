"""Tiled stills: one image rendered as horizontal bands, each by its own
POV-Ray process on its own worker, then merged into the PNG that ``povray``
run directly writes, pixel for pixel.

Where it sits: the client reads the render block size and whether
antialiasing is on from the job's options (below), plans the bands with
``core/tiles.py`` (aligned on the blocks when antialiased), each band's
render appends its ``band_options``, and the stitch merges the bands' PNGs
(``stitch/still.py``).

What POV-Ray 3.7.0.10 does with a band, measured at 160x120 on Debian's
examples (tests/test_tiles.py asserts what the plan relies on):

* ``+SR``/``+ER`` write a full-size PNG, the rows outside the band black
  (opaque black with ``+UA``), with the chunks of a full render (gAMA,
  sRGB, sBIT, oFFs 0,0, tIME, tEXt Software and Comment), tIME and the
  Comment's render date aside.
* A value from 0 to 1 is a fraction of the image, but the ranges differ
  (``View::StartRender``): ``+SR`` takes ``0 <= v < 1`` as a fraction, so
  ``+SR1`` is row 1; ``+ER`` takes ``0 <= v <= 1``, so ``+ER1`` is the
  whole height. Above 1 the row is ``int(v)``: ``+ER1.5`` is row 1 alone.
  Reversed bounds (``+SR10 +ER5``) did not hang here: POV-Ray finished at
  once with an all-black image, with and without antialiasing.
* Without antialiasing a band cut anywhere merges identically, focal blur
  included.
* Antialiasing works in render blocks (``+BS``, 32 by default, anchored at
  the band's top-left corner; POV-Ray raises a size under 4 to 4). Method 1,
  the default, decides what to supersample from the pixel above and left
  within a block, so a cut inside a block changes pixels near it: 160x120
  with ``+A0.3`` cut at rows 40 and 80, or at 60, differed in 2 to 82
  bytes, by up to 91/255 (blob.pov cut at 60 happened to come out
  identical). Cut on the blocks, every sample merged identically, with 1
  or 2 threads and with ``+BS16``. Method 2 (``+AM2``) merged identically
  at any cut (rows 7, 40, 60, 61, 80 in four scenes), but bands are
  aligned whenever antialiasing is on, whatever the method.
* ``+AM3`` is ``+AM2`` here: 3.7.0 clips the method to 0-2, and the pixels
  are the same as ``+AM2``'s, so it merges identically. (The per-block
  seeded method 3 is in later POV-Rays: the test that asserts this fails
  first there.)
* Radiosity's pretrace covers the band only, and a test scene in 4 bands
  differed from the direct render by up to 35/255 with one thread; with two
  threads two direct renders already differ. The radiosity pre-pass
  (client/prepass.py) has every band load one shared set of samples.
"""

from __future__ import annotations

from povstorm.povray.invocation import Invocation

DEFAULT_BLOCK_SIZE = 32
MIN_BLOCK_SIZE = 4  # POV-Ray raises a smaller +BS to this (View::StartRender)


def band_alignment(inv: Invocation) -> int:
    """What every band edge of the invocation's still must be a multiple of:
    the render block size (``+BS``/``Render_Block_Size``, 32 by default,
    raised to 4 as POV-Ray does) when antialiasing is on, else 1. Read from
    the invocation, INI files included, as POV-Ray reads them."""
    if not inv.antialias.enabled:
        return 1
    size = int(float(inv.options.get("Render_Block_Size", DEFAULT_BLOCK_SIZE)))
    return max(MIN_BLOCK_SIZE, size)


# Options that pick the part of the image to render: the bands set them.
SUBSET_OPTIONS = ("Start_Row", "End_Row", "Start_Column", "End_Column")


def subset_options(inv: Invocation) -> list[str]:
    """The row and column subset options the user set (a tiled still's bands
    would override them)."""
    return [name for name in SUBSET_OPTIONS if name in inv.options]
