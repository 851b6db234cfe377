# TEMP stub until the segments branch is merged
from pathlib import Path
from typing import Any


def segment_ext(output: Any) -> str | None:
    return None


def encode_segment(output: Any, frames: Any, dest: Path) -> None:
    raise NotImplementedError
