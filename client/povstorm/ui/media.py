"""The bucket's objects the web view shows, kept on this machine: each
frame's thumbnail made once, the first time any page asks for it, and
every object it serves (a frame opened from the grid, the video, the
poster) downloaded once per generation.

Both live under a directory of the deployment's own (``povstorm ui`` uses
POVSTORM_HOME/ui/PROJECT/BUCKET), named by generation: a frame rendered again
is a new object generation, so a new file and a new URL, and nothing
stale is ever served. Deleting the directory only costs making them again.
"""

from __future__ import annotations

import io
import posixpath
import threading
import zlib
from pathlib import Path

from PIL import Image

from povstorm.cloud.blobs import BlobStore
from povstorm.core.errors import NotFound
from povstorm.core.naming import check_job_id, frame_object

# A thumbnail's longest side, in pixels (never enlarged): sharp on a
# high-density screen in a grid cell of 80 CSS pixels.
THUMB_PX = 160
_LOCKS = 64  # make-once locks, shared by hash: bounded whatever the job's size


class Media:
    """Thumbnails and object copies under ``root``. ``thumbnails_made``
    counts the thumbnails this process made (the tests read it)."""

    def __init__(self, blobs: BlobStore, root: Path) -> None:
        self._blobs = blobs
        self.root = root
        self._locks = [threading.Lock() for _ in range(_LOCKS)]
        self._count = threading.Lock()
        self.thumbnails_made = 0

    def _lock(self, path: Path) -> threading.Lock:
        return self._locks[zlib.crc32(str(path).encode()) % _LOCKS]

    def thumbnail(self, job_id: str, unit: int, generation: int) -> Path:
        """The thumbnail of a done frame's ``generation``: made on the first
        request (two at once make it once), read from disk ever after."""
        check_job_id(job_id)
        path = self.root / "thumbs" / job_id / f"{unit:06d}-{generation}.png"
        if path.exists():
            return path
        with self._lock(path):
            if not path.exists():
                _write(path, scaled(self._blobs.read_bytes(frame_object(job_id, unit))))
                with self._count:
                    self.thumbnails_made += 1
        return path

    def object(self, name: str) -> Path:
        """A local copy of the object's current generation, downloaded the
        first time; NotFound if there is no such object."""
        info = self._blobs.info(name)
        if info is None:
            raise NotFound(f"no object {name}")
        folder, base = posixpath.split(name)
        path = self.root / "objects" / folder / f"{info.generation}-{base}"
        if not path.exists():
            with self._lock(path):
                if not path.exists():
                    self._blobs.download_to(name, path)  # written aside, then renamed
        return path


def scaled(png: bytes) -> bytes:
    """A frame's PNG scaled to fit THUMB_PX, as PNG."""
    with Image.open(io.BytesIO(png)) as image:
        image.thumbnail((THUMB_PX, THUMB_PX))
        # 16-bit grey and other modes PNG writers handle poorly: as RGB.
        small = image if image.mode in ("RGB", "RGBA", "L", "LA", "P") else image.convert("RGB")
        out = io.BytesIO()
        small.save(out, "PNG")
    return out.getvalue()


def _write(path: Path, data: bytes) -> None:
    """Write aside, then rename: a reader never sees half a thumbnail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    part.replace(path)
