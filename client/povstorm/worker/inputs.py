"""A unit's files: the content-addressed input cache of a worker instance and
materialising a unit's inputs and inline files into its working directory.

Called by ``povstorm.worker.unit.handle_work`` before POV-Ray runs. Inputs
are fetched from ``inputs/<sha256>`` in the bucket once per instance and
checked against their name with ``povstorm.core.digest``, the same helper the
client named them with.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from povstorm.cloud.blobs import BlobStore
from povstorm.cloud.clients import Clients
from povstorm.core.digest import sha256_file
from povstorm.core.errors import SpecError
from povstorm.core.naming import check_relpath, input_object
from povstorm.core.settings import Settings
from povstorm.core.spec import JobSpec, UnitSpec

# --- inputs ------------------------------------------------------------------


class InputCache:
    """Content-addressed inputs, downloaded once per instance.

    Files live at ``<root>/<sha256>`` and are hard-linked (or copied across
    file systems) into each working directory. A download goes to a unique
    temporary name, is verified against its digest and renamed into place, so
    concurrent workers sharing a cache directory never see a partial file.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.downloads = 0  # objects fetched from the bucket (a hit costs none)
        self._lock = threading.Lock()
        # (size, mtime) of each verified file: a scene that writes to one of its
        # inputs writes through the hard link into the cache, even as root,
        # where read-only modes do not stop it; a changed stamp means re-fetch.
        self._stamps: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> InputCache:
        root = settings.cache_dir or tempfile.mkdtemp(prefix="povstorm-cache-")
        return cls(Path(root))

    def path(self, blobs: BlobStore, sha256: str) -> Path:
        """The verified local copy of an input, fetched on the first use."""
        name = input_object(sha256)
        target = self.root / sha256
        with self._lock:
            if self._fresh(target, sha256):
                return target
            # Left by another worker sharing the cache, or changed since we
            # verified it: keep it only if it still matches its name.
            if target.exists() and sha256_file(target) == sha256:
                self._stamp(target, sha256)
                return target
            if blobs.info(name) is None:
                raise SpecError(f"input {sha256[:12]}... is not in the bucket ({name})")
            tmp = self.root / f".{sha256}.{uuid.uuid4().hex}.tmp"
            try:
                blobs.download_to(name, tmp)
                self.downloads += 1
                got = sha256_file(tmp)
                if got != sha256:
                    raise SpecError(f"input {name} has digest {got[:12]}..., not its name")
                tmp.chmod(0o444)
                tmp.replace(target)
            finally:
                tmp.unlink(missing_ok=True)
            self._stamp(target, sha256)
            return target

    def _fresh(self, target: Path, sha256: str) -> bool:
        try:
            st = target.stat()
        except FileNotFoundError:
            return False
        return self._stamps.get(sha256) == (st.st_size, st.st_mtime_ns)

    def _stamp(self, target: Path, sha256: str) -> None:
        st = target.stat()
        self._stamps[sha256] = (st.st_size, st.st_mtime_ns)

    def place(self, blobs: BlobStore, sha256: str, dest: Path) -> None:
        src = self.path(blobs, sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(src, dest)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(src, dest)


def _inside(workdir: Path, relpath: str, what: str) -> Path:
    """The destination of a manifest path, checked again here: the spec came
    through the ledger, not straight from the schema that first checked it."""
    check_relpath(relpath, what)
    dest = (workdir / relpath).resolve()
    if not dest.is_relative_to(workdir.resolve()):
        raise SpecError(f"{what} {relpath!r} leaves the working directory")
    return dest


def materialise(
    clients: Clients, cache: InputCache, spec: JobSpec, unit_spec: UnitSpec, workdir: Path
) -> None:
    """Write the job's shared inputs, the unit's inputs and its inline files."""
    prefix = f"{spec.inputs_dir}/" if spec.inputs_dir else ""
    placements = [(f"{prefix}{rel}", sha, "input name") for rel, sha in sorted(spec.inputs.items())]
    placements += [(rel, sha, "input name") for rel, sha in sorted(unit_spec.inputs.items())]
    # Check every name before writing anything.
    dests = [(_inside(workdir, rel, what), sha) for rel, sha, what in placements]
    inline = [
        (_inside(workdir, rel, "inline file name"), text) for rel, text in unit_spec.inline.items()
    ]
    for dest, sha in dests:
        cache.place(clients.blobs, sha, dest)
    for dest, text in inline:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Unlink first: the name may be a hard link into the input cache.
        dest.unlink(missing_ok=True)
        dest.write_text(text)
