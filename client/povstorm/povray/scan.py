"""Collect the files a scene needs, found as POV-Ray would find them.

Where it sits: after ``parse.parse_invocation`` and before upload. The
result maps each file's name in the unit working directory to the local file;
the client uploads them content-addressed and the worker materialises them
under those names, then runs ``povray`` there with ``Invocation.farm_args``.

What a scan sees: the scene, every INI file POV-Ray reads (except its own),
``Include_Header``, and every string literal the scene and its includes hand
to POV-Ray as a file name: ``#include "..."`` (recursively), bitmaps
(``png|jpeg|tga|gif|ppm|pgm|iff|sys|exr|hdr|tiff|bmp "file"``, also without
the type keyword in ``image_map``/``bump_map``/``material_map``/
``height_field``/``image_pattern``), ``df3`` density files, ``ttf`` fonts and
``#fopen ... read`` files. Each is searched exactly as POV-Ray does: the exact
name or the name plus the type's extensions, in the current directory, then in
the library path. Files under POV-Ray's own directory
(``/usr/share/povray-3.7``) are not uploaded: the workers have them.

Names in the upload follow the worker's view: a file found in the current
directory as ``tex/a.png`` is uploaded as ``tex/a.png``; one found in a
library directory is uploaded below that directory's name on the worker
(``LibraryDir.remote``; ``_lib/<n>-<name>`` for directories outside
the scene directory, which ``farm_args`` adds with ``+L``). A literal that
leaves the working directory (``../textures/x.png``) or is absolute cannot be
given the same meaning on a worker and is refused with a message that says
how to fix it (put its directory on the library path). No name ever contains
``..`` (``naming.check_relpath``).

A missing ``#include`` is an error (POV-Ray would stop there). Other missing
files and references built from expressions (``png concat(...)``,
``#include Name``) are warnings: the scan cannot evaluate the scene, so it
says what it could not see; ``extra`` (``--include PATH``) adds such files or
whole directories.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from povstorm.core.errors import SceneError
from povstorm.povray.farm_args import find_file, is_system_path, worker_key
from povstorm.povray.invocation import Invocation, LibraryDir

DEFAULT_LIMIT_BYTES = 1 << 30

# POV-Ray's gPOV_File_Extensions for each file type a scene can name.
IMAGE_TYPES: dict[str, tuple[str, ...]] = {
    "tga": (".tga", ".TGA"),
    "png": (".png", ".PNG"),
    "ppm": (".ppm", ".PPM"),
    "pgm": (".pgm", ".PGM"),
    "gif": (".gif", ".GIF"),
    "iff": (".iff", ".IFF"),
    "jpeg": (".jpg", ".JPG", ".jpeg", ".JPEG"),
    "tiff": (".tif", ".TIF", ".tiff", ".TIFF"),
    "bmp": (".bmp", ".BMP"),
    "exr": (".exr", ".EXR"),
    "hdr": (".hdr", ".HDR"),
    "sys": (),
}
OTHER_TYPES: dict[str, tuple[str, ...]] = {"df3": (".df3", ".DF3"), "ttf": (".ttf", ".TTF")}
INCLUDE_EXTENSIONS = (".inc", ".INC")
# Blocks whose bitmap type keyword POV-Ray 3.7 lets you leave out.
BITMAP_BLOCKS = ("image_map", "bump_map", "material_map", "height_field", "image_pattern")


@dataclass(frozen=True)
class Inputs(Mapping[str, Path]):
    """The files of a job: name in the working directory -> local file."""

    files: Mapping[str, Path]
    total_bytes: int
    warnings: tuple[str, ...] = field(default=())
    # Why the scene's frames cannot be cached (empty: they can): frames that
    # depend on one another or on the moment they render (``cache_blockers``).
    uncacheable: tuple[str, ...] = field(default=())

    def __getitem__(self, key: str) -> Path:
        return self.files[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class _Token:
    kind: str  # "str" | "id" | "dir" | "sym"
    text: str
    line: int


_TOKEN_RE = re.compile(
    r"""(?P<nl>\n)|(?P<ws>[ \t\r\f\v]+)|(?P<lc>//[^\n]*)|(?P<bc>/\*)
      |(?P<str>")|(?P<dir>\#[ \t]*[A-Za-z_]\w*)|(?P<id>[A-Za-z_]\w*)|(?P<num>[0-9.]+(?:[eE][+-]?\d+)?)|(?P<sym>.)""",
    re.VERBOSE | re.DOTALL,
)


def tokens(text: str) -> Iterator[_Token]:
    """POV-Ray SDL tokens, enough to find file names: strings, identifiers,
    directives and symbols, with comments (nested ``/* */``) skipped."""
    i, line = 0, 1
    n = len(text)
    while i < n:
        m = _TOKEN_RE.match(text, i)
        assert m is not None
        kind = m.lastgroup
        if kind == "nl":
            line += 1
            i = m.end()
        elif kind in ("ws", "lc", "num"):
            i = m.end()
        elif kind == "bc":
            depth, j = 1, m.end()
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    line += text[j] == "\n"
                    j += 1
            i = j
        elif kind == "str":
            start_line, j, out = line, m.end(), []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n and text[j + 1] in '"\\':
                    out.append(text[j + 1])
                    j += 2
                    continue
                line += text[j] == "\n"
                out.append(text[j])
                j += 1
            yield _Token("str", "".join(out), start_line)
            i = j + 1
        elif kind == "dir":
            yield _Token("dir", m.group().lstrip("#").strip(), line)
            i = m.end()
        else:
            yield _Token(kind or "sym", m.group(), line)
            i = m.end()


@dataclass(frozen=True)
class Reference:
    """A file a scene names: what kind, the literal, where."""

    kind: str  # "include", a bitmap type, "df3", "ttf", "fopen", "bitmap" (type from extension)
    literal: str | None  # None: built from an expression
    line: int
    extensions: tuple[str, ...]


def references(text: str, strings: dict[str, set[str]] | None = None) -> list[Reference]:
    """The file names a scene's text hands to POV-Ray.

    ``strings`` collects ``#declare Name = "literal"`` (and ``#local``) across
    files; a file named by such an identifier resolves to its literal(s), the
    common ``#declare Font = "cyrvetic.ttf"  text { ttf Font ... }``.
    """
    toks = list(tokens(text))
    out: list[Reference] = []
    strings = {} if strings is None else strings

    def at(k: int) -> _Token | None:
        return toks[k] if k < len(toks) else None

    for k, tok in enumerate(toks):
        name, eq, value = at(k + 1), at(k + 2), at(k + 3)
        is_decl = tok.kind == "dir" and tok.text in ("declare", "local")
        if (
            is_decl
            and name
            and eq
            and value
            and (name.kind, eq.text, value.kind) == ("id", "=", "str")
        ):
            strings.setdefault(name.text, set()).add(value.text)

    def named(nxt: _Token | None, kind: str, line: int, exts: tuple[str, ...]) -> None:
        if nxt is not None and nxt.kind == "str":
            out.append(Reference(kind, nxt.text, line, exts))
        elif nxt is not None and nxt.kind == "id" and nxt.text in strings:
            out.extend(Reference(kind, lit, line, exts) for lit in sorted(strings[nxt.text]))
        else:
            out.append(Reference(kind, None, line, exts))

    for k, tok in enumerate(toks):
        nxt = at(k + 1)
        if tok.kind == "dir" and tok.text == "include":
            named(nxt, "include", tok.line, INCLUDE_EXTENSIONS)
        elif tok.kind == "id" and (tok.text in IMAGE_TYPES or tok.text in OTHER_TYPES):
            exts = IMAGE_TYPES.get(tok.text) or OTHER_TYPES.get(tok.text, ())
            if nxt is not None and nxt.kind in ("str", "id"):
                named(nxt, tok.text, tok.line, exts)
        elif tok.kind == "id" and tok.text in BITMAP_BLOCKS:
            brace, name = at(k + 1), at(k + 2)
            if brace is not None and brace.text == "{" and name is not None and name.kind == "str":
                out.append(Reference("bitmap", name.text, tok.line, _bitmap_extensions(name.text)))
        elif tok.kind == "dir" and tok.text == "fopen":
            name, mode = at(k + 2), at(k + 3)
            if mode is not None and mode.kind == "id" and mode.text == "read":
                named(name, "fopen", tok.line, ())
    return out


def cache_blockers(text: str, origin: str) -> list[str]:
    """Why a scene text's frames may not be independent, so that none may be
    reused from the frame cache: a ``#fopen`` that writes or appends (a later
    frame can ``#read`` what an earlier one wrote), or one whose mode is an
    expression the scan cannot tell. One line each, naming the file and line.

    Shell-out options (``Pre_Frame_Command`` and the like) do not block the
    cache: the farm drops them (``farm_args``) and its POV-Ray may execute
    nothing (povray/confine.py), so they cannot change a frame there."""
    toks = list(tokens(text))
    out = []
    for k, tok in enumerate(toks):
        if tok.kind != "dir" or tok.text != "fopen":
            continue
        mode = _fopen_mode(toks, k)
        if mode is not None and mode.text == "read":
            continue
        if mode is not None and mode.text in ("write", "append"):
            what = f"#fopen ... {mode.text} writes a file"
        else:
            what = "#fopen in a mode the scan cannot read may write a file"
        out.append(f"{origin}:{tok.line}: {what}, so a frame may depend on the frames before it")
    return out


FOPEN_MODES = ("read", "write", "append")


def _fopen_mode(toks: list[_Token], k: int) -> _Token | None:
    """The mode of the ``#fopen`` at ``toks[k]``: the first read/write/append
    outside parentheses after its identifier (the file name may be an
    expression), before the next directive; None if there is none."""
    depth = 0
    for tok in toks[k + 2 : k + 200]:
        if tok.kind == "dir":
            return None
        if tok.kind == "sym" and tok.text == "(":
            depth += 1
        elif tok.kind == "sym" and tok.text == ")":
            depth -= 1
        elif depth == 0 and tok.kind == "id" and tok.text in FOPEN_MODES:
            return tok
    return None


def _bitmap_extensions(literal: str) -> tuple[str, ...]:
    dot = literal.rfind(".")
    ext = literal[dot:].lower() if dot >= 0 else ""
    for exts in IMAGE_TYPES.values():
        if ext and ext in (e.lower() for e in exts):
            return exts
    # No known extension: POV-Ray tries the image types' extensions.
    return tuple(e for exts in IMAGE_TYPES.values() for e in exts)


class _Collector:
    def __init__(self, inv: Invocation) -> None:
        self.inv = inv
        self.files: dict[str, Path] = {}
        self.warnings: list[str] = []
        self.scanned: set[Path] = set()
        self.strings: dict[str, set[str]] = {}
        self.blockers: list[str] = []

    def show(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.inv.cwd))
        except ValueError:
            return str(path)

    def add(self, key: str, path: Path, origin: str) -> None:
        known = self.files.get(key)
        if known is not None and known != path:
            raise SceneError(
                f"{origin}: {self.show(path)!r} and {self.show(known)!r} would both be "
                f"uploaded as {key!r}"
            )
        self.files[key] = path

    def scan(self, path: Path) -> None:
        """Add the files ``path`` (a scene or include file) names, recursively."""
        if path in self.scanned:
            return
        self.scanned.add(path)
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise SceneError(f"{self.show(path)}: cannot read: {exc.strerror}") from None
        self.blockers += cache_blockers(text, self.show(path))
        for ref in references(text, self.strings):
            origin = f"{self.show(path)}:{ref.line}"
            what = "#include" if ref.kind == "include" else f"{ref.kind} file"
            if ref.literal is None:
                self.warnings.append(
                    f"{origin}: {what} named by an expression cannot be resolved before "
                    "rendering; add the file(s) with --include"
                )
                continue
            found = find_file(ref.literal, ref.extensions, self.inv.cwd, self.inv.library_paths)
            if found is None:
                if ref.kind == "include":
                    raise SceneError(
                        f"{origin}: #include {ref.literal!r} not found (POV-Ray looks in the "
                        "current directory, then the library path)"
                    )
                self.warnings.append(
                    f"{origin}: {what} {ref.literal!r} not found; the render will fail if it is used"
                )
                continue
            file, name, base = found
            key = worker_key(name, file, base, origin, what)
            if key is None:
                continue  # POV-Ray's own file: the workers have it
            self.add(key, file, origin)
            if ref.kind == "include":
                self.scan(file)

    def extra(self, given: Path) -> None:
        path = Path(os.path.normpath(os.path.join(self.inv.cwd, given)))
        if not path.exists():
            raise SceneError(f"--include {str(given)!r}: no such file or directory")
        if is_system_path(path):
            self.warnings.append(
                f"--include {str(given)!r}: POV-Ray's own files are on the workers already"
            )
            return
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            self.add(self.extra_key(file, given), file, f"--include {str(given)!r}")

    def extra_key(self, file: Path, given: Path) -> str:
        """The name POV-Ray on the worker would use for an extra file: relative
        to the current directory (the working directory there), else below the
        library directory that holds it."""
        inv = self.inv
        bases: list[tuple[Path, str]] = [(inv.cwd, "")]
        bases += [(lib.path, lib.remote) for lib in inv.library_paths if lib.remote is not None]
        bases.append((inv.root, ""))
        for base, remote in bases:
            if base in file.parents:
                rel = file.relative_to(base).as_posix()
                lib = LibraryDir(rel, base, "", True, remote or ".")
                key = worker_key(rel, file, lib, f"--include {str(given)!r}", "file")
                assert key is not None
                return key
        raise SceneError(
            f"--include {str(given)!r}: {self.show(file)!r} is outside the current directory "
            "and the library path; add its directory with +L"
        )


def collect_inputs(
    inv: Invocation, extra: Sequence[Path] = (), limit_bytes: int = DEFAULT_LIMIT_BYTES
) -> Inputs:
    """Every file the scene needs, as ``name in the working directory -> local file``.

    Raises ``SceneError`` for a missing ``#include`` (naming the file and
    line), a reference that cannot be placed on a worker, or a total over
    ``limit_bytes``.
    """
    c = _Collector(inv)
    c.add(inv.scene_key, inv.scene, "command line")
    for ini in inv.ini_files:
        if ini.key is not None:
            c.add(ini.key, ini.path, ini.origin)
    if inv.include_header:
        found = find_file(inv.include_header, INCLUDE_EXTENSIONS, inv.cwd, inv.library_paths)
        if found is None:
            raise SceneError(f"command line: Include_Header {inv.include_header!r} not found")
        key = worker_key(found[1], found[0], found[2], "command line", "Include_Header")
        if key is not None:
            c.add(key, found[0], "command line")
            c.scan(found[0])
    c.scan(inv.scene)
    for given in extra:
        c.extra(Path(given))
    total = sum(p.stat().st_size for p in set(c.files.values()))
    if total > limit_bytes:
        raise SceneError(
            f"the scene's files total {total} bytes, over the limit of {limit_bytes} bytes"
        )
    files = MappingProxyType(dict(sorted(c.files.items())))
    return Inputs(
        files=files,
        total_bytes=total,
        warnings=tuple(dict.fromkeys(c.warnings)),
        uncacheable=tuple(dict.fromkeys(c.blockers)),
    )


__all__ = [
    "DEFAULT_LIMIT_BYTES",
    "Inputs",
    "Reference",
    "cache_blockers",
    "collect_inputs",
    "references",
    "tokens",
]
