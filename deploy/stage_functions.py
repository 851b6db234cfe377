"""Stage the Cloud Functions source: ``make functions-zip``.

Cloud Functions (gen 2, Python) builds a directory with ``main.py`` and
``requirements.txt`` at its root. povstorm's functions live in
``functions/main.py`` and import the ``povstorm`` package, so the staged
directory is::

    <out>/main.py            functions/main.py
    <out>/requirements.txt   functions/requirements.txt (povstorm's dependencies)
    <out>/povstorm/...       client/povstorm, names.json included

terraform (terraform/modules/povstorm/functions.tf) zips ``build/functions``
with archive_file and uploads it under its MD5, so a changed source redeploys
the functions and an unchanged one does not.

Usage: python deploy/stage_functions.py [OUT_DIR]   (default: build/functions)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.egg-info")


def stage(out: Path, root: Path = ROOT) -> Path:
    """(Re)create ``out`` with the functions' source; returns it."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(root / "functions" / "main.py", out / "main.py")
    shutil.copy2(root / "functions" / "requirements.txt", out / "requirements.txt")
    shutil.copytree(root / "client" / "povstorm", out / "povstorm", ignore=IGNORE)
    return out


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "build" / "functions"
    staged = stage(out.resolve())
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    print(f"staged {len(files)} files in {staged}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
