"""The one sha256 helper: inputs are content-addressed by it.

The client names each uploaded input by its digest (``client/cluster.py``), and
the worker's input cache checks what it downloaded against that name
(``worker/inputs.py``), so both must hash the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1 << 20  # read large inputs a megabyte at a time, never whole


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()
