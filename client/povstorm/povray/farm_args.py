"""The farm's POV-Ray arguments for an invocation, and the names of its files
on the worker.

Where it sits: ``parse.parse_invocation`` calls ``build_farm_args`` once the
reader is done; the result is ``Invocation.farm_args``, which the job spec
carries. Each unit then runs the real ``povray`` on a worker with
``farm_args + (+SF<f> +EF<f>) + farm output options``, in a working directory
that holds the uploaded files. ``scan.py`` names the files it collects with
``worker_key`` and ``find_file`` from here, so a file and the argument that
names it agree.

farm_args: the INI files are referenced, not expanded. POV-Ray on the worker
reads the uploaded INI files itself, so sections, ``Declare`` strings, comma
lists and every quirk of the INI syntax mean exactly what they meant on the
client. Command-line arguments are kept verbatim, except path arguments
(scene, INI files, library paths) which are rewritten relative to the unit
working directory, and the options the farm owns, which are dropped. Options
the farm owns that are set *inside* INI files are neutralised by appending
overriding options after everything else, since the last setting wins:

    -D -P +FN               no display, no pause, PNG output (FARM_OPTIONS)
    +W<w> +H<h>             the size computed here, whatever the worker's
                            povray.ini says
    +I<scene>               the scene, relative to the working directory
    Pre_Scene_Command= ...  empty shell-out commands (the only way to unset one)
    Create_Ini=  -C -RTR    no INI written, no continued trace, output on
    Statistic_File= ...     a stream file that would land outside the working
                            directory goes back to its default name in it
    +L<dir>                 library directories that an INI names by a path
                            the worker cannot see (absolute, or outside the
                            scene directory): uploaded under ``_lib/``
The worker appends ``+SF<f> +EF<f>`` and its own ``+O`` after these (which is
why an Output_File_Name inside an INI file needs no override). Every removal
or override that changes what the user asked for adds a one-line warning.

Paths inside an INI file cannot be rewritten, so a nested INI include or an
``Include_Header`` named there must resolve on the worker as it does here:
relative, below the working directory. Anything else is refused with a
``SceneError`` that names the file and line. The working directory plays the
part of the current directory: with ``povstorm`` run from the scene's
directory (the usual case) every relative path means the same on both sides.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path

from povstorm.core.errors import SceneError, SpecError
from povstorm.core.naming import check_relpath
from povstorm.povray.apply import Reader
from povstorm.povray.cfloat import is_true
from povstorm.povray.invocation import IniFile, LibraryDir
from povstorm.povray.options import (
    BOOL,
    COMMANDS,
    FARM_OPTION_KEYS,
    FARM_OPTIONS,
    FRAME_KEYS,
    INI_PREFIX,
    INI_TABLE,
    LIB_PREFIX,
    SPACE,
    STREAM_FILES,
    SYSTEM_INI,
    SYSTEM_INI_OLD,
    SYSTEM_SHARE,
)
from povstorm.povray.reader import Item

# --- where files are and what they are called on the worker --------------------


def is_system_path(path: Path) -> bool:
    """Whether ``path`` lies in POV-Ray's own directory (the workers have it)."""
    for p in (path, Path(os.path.realpath(path))):
        if p == SYSTEM_SHARE or SYSTEM_SHARE in p.parents:
            return True
    return False


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


_PLAIN_STOPS = SPACE + ";#\"'"
_SWITCH_STOPS = _PLAIN_STOPS + "[]="


def _quote(arg: str, stops: str = _PLAIN_STOPS) -> str:
    """Quote a path argument that POV-Ray would otherwise cut short."""
    if any(c in arg for c in stops):
        if '"' in arg and "'" in arg:
            raise SceneError(f"path {arg!r} has both kinds of quote; POV-Ray cannot read it")
        q = "'" if '"' in arg else '"'
        return f"{q}{arg}{q}"
    return arg


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "dir"


def upload_key(path: str, what: str, origin: str) -> str:
    try:
        return check_relpath(path, what)
    except SpecError as exc:
        raise SceneError(f"{origin}: {exc.message}") from None


def worker_key(
    literal: str, found: Path, base: LibraryDir | None, origin: str, what: str
) -> str | None:
    """The upload name of a file POV-Ray found by ``literal`` in the current
    directory (``base`` None) or in a library directory.

    On the worker the same literal must find the same file, so the name is
    the literal below the working directory (or below the library directory's
    remote name). None for POV-Ray's own files, which the workers have.
    """
    if is_system_path(found) or (base is not None and base.remote is None):
        return None
    if literal.startswith("/"):
        raise SceneError(
            f"{origin}: {what} {literal!r} is an absolute path the workers do not have; "
            "name it relative to the scene directory or add its directory with +L"
        )
    parts = literal.split("/")
    if ".." in parts:
        raise SceneError(
            f"{origin}: {what} {literal!r} leaves the scene directory; the farm uploads only "
            "the scene directory and the library path: add its directory with +L<dir> and "
            "name the file relative to it"
        )
    prefix = "" if base is None or base.remote in (None, ".") else f"{base.remote}/"
    return upload_key(posixpath.normpath(prefix + literal), what, origin)


def find_file(
    literal: str, extensions: Sequence[str], cwd: Path, libs: Sequence[LibraryDir]
) -> tuple[Path, str, LibraryDir | None] | None:
    """POV-Ray's ``FindFile`` + ``FindFilePath``: the exact name first when its
    extension is one of the type's, then the name with each extension; each
    candidate in the current directory, then (relative names only) in the
    library path. Returns the file, the name that matched and the library
    directory it came from (None: the current directory)."""
    dot = literal.rfind(".")
    exact_first = dot >= 0 and literal[dot:] in extensions
    names = ([literal] if exact_first else []) + [literal + e for e in extensions if e]
    if not exact_first:
        names.append(literal)
    for name in names:
        p = Path(os.path.normpath(os.path.join(cwd, name)))
        if p.is_file():
            return p, name, None
        if name.startswith("/"):
            continue
        for lib in libs:
            q = Path(os.path.normpath(os.path.join(lib.path, name)))
            if q.is_file():
                return q, name, lib
    return None


def library_dirs(r: Reader, root: Path) -> list[LibraryDir]:
    """Deduplicated (as vfe does), each with its name on the worker."""
    out: list[LibraryDir] = []
    seen: set[Path] = set()
    outside = 0
    for lib in r.libs:
        path = r.abs(lib.literal)
        if path in seen:
            continue
        seen.add(path)
        if is_system_path(path):
            remote = None
        elif _inside(path, root):
            remote = os.path.relpath(path, root)
        else:
            outside += 1
            remote = f"{LIB_PREFIX}/{outside}-{_safe_name(path.name)}"
        out.append(LibraryDir(lib.literal, path, lib.origin, path.is_dir(), remote))
    return out


def ini_keys(r: Reader, root: Path, default: Path | None) -> list[IniFile]:
    """Give every INI file POV-Ray reads its name in the upload."""
    out: list[IniFile] = []
    outside = 0
    libs = library_dirs(r, root)
    for ini, (name, lib_literal) in zip(r.inis, r.ini_found, strict=True):
        if is_system_path(ini.path) or ini.path in (SYSTEM_INI, SYSTEM_INI_OLD):
            key = None  # the workers read their own
        elif ini.origin == "default INI":
            # ./povray.ini in the scene directory is the worker's default too.
            if ini.path == root / "povray.ini" and r.cwd == root:
                key = "povray.ini"
            else:
                key = f"{INI_PREFIX}/default-{_safe_name(ini.path.name)}"
        elif ini.top_level:
            if _inside(ini.path, root):
                key = upload_key(os.path.relpath(ini.path, root), "INI file name", ini.origin)
            else:
                outside += 1
                key = f"{INI_PREFIX}/{outside}-{_safe_name(ini.path.name)}"
        else:
            # Named inside another INI file: the worker reads that name as is.
            base = None
            if lib_literal is not None:
                base = next(lib for lib in libs if lib.path == r.abs(lib_literal))
            key = worker_key(name, ini.path, base, ini.origin, "INI file")
        out.append(IniFile(ini.literal, ini.path, ini.section, ini.origin, key, ini.top_level))
    return out


# --- the arguments -----------------------------------------------------------

# Dropped from the user's command line without a word (a warning only when
# they would have shown something): what FARM_OPTIONS and the unit's frame
# range decide anyway. The output keys of +FN are not among them: a user's
# own +FN stays (it means what the farm means), and any other output type or
# Output_To_File=Off is dropped with a warning of its own.
_OUTPUT_KEYS = frozenset(FARM_OPTION_KEYS["+FN"])
DROP_SILENT = (
    frozenset(k for option in FARM_OPTIONS for k in FARM_OPTION_KEYS[option]) - _OUTPUT_KEYS
) | frozenset(FRAME_KEYS)


def build_farm_args(
    r: Reader,
    root: Path,
    scene: Path,
    inis: list[IniFile],
    libs: list[LibraryDir],
    width: int,
    height: int,
    warnings: list[str],
) -> list[str]:
    v = r.values
    by_path = {lib.path: lib for lib in libs}
    ini_iter = iter(inis)
    out: list[str] = []
    default = next((i for i in inis if i.origin == "default INI"), None)
    if default is not None and default.key is not None and default.key != "povray.ini":
        out.append(_quote(default.key))
    in_ini: set[str] = set()
    for item in r.items:
        ini = next(ini_iter) if item.kind == "ini" else None
        if not item.from_cl:
            in_ini.update(item.keys)
            continue
        keys = set(item.keys)
        if item.kind == "ini":
            assert ini is not None
            ref = ini.key if ini.key is not None else ini.literal
            out.append(_quote(ref + (f"[{ini.section}]" if ini.section is not None else "")))
        elif item.kind == "scene" or "Input_File_Name" in keys:
            continue  # the farm names the scene at the end
        elif item.kind == "library" or "Library_Path" in keys:
            lit = item.param if item.kind != "library" else item.text
            lib = by_path.get(r.abs(lit or ""))
            if lib is None or not lib.exists:
                continue
            out.append(
                "+L" + _quote(lib.remote if lib.remote is not None else lib.literal, _SWITCH_STOPS)
            )
        elif "Output_File_Name" in keys:
            warnings.append(
                f"command line: {item.text!r} names local frames only: the farm writes its own files"
            )
        elif "Output_File_Type" in keys or keys == {"Output_To_File"}:
            letter = (
                (item.param or "").lstrip(SPACE)[:1].upper() if "Output_File_Type" in keys else "N"
            )
            if not _turned_on(item, "Output_To_File"):
                warnings.append(
                    f"command line: {item.text!r} dropped: the farm always writes PNG files"
                )
            elif letter != "N":
                warnings.append(f"command line: {item.text!r} dropped: the farm renders PNG")
            else:
                out.append(item.text)
        elif keys & set(COMMANDS):
            warnings.append(
                f"command line: shell-out {item.text!r} dropped: the farm runs no commands"
            )
        elif keys & {"Create_Ini", "Continue_Trace", "Real_Time_Raytracing"}:
            if any(_turned_on(item, k) for k in keys):
                warnings.append(f"command line: {item.text!r} dropped: not available on the farm")
        elif keys & {name for name, _ in STREAM_FILES}:
            warnings.append(
                f"command line: {item.text!r}: stream files stay on the worker; console output only"
            )
            if item.kind == "switch":
                out.append(
                    ("+" if item.on else "-") + next(lt for n, lt in STREAM_FILES if n in keys)
                )
        elif keys & DROP_SILENT:
            if any(_turned_on(item, k) for k in keys & {"Display", "Pause_When_Done"}):
                warnings.append(f"command line: {item.text!r} dropped: the farm has no display")
        elif "Include_Header" in keys:
            out.append(_include_header_arg(r, libs, item.param or "", item.origin))
        else:
            out.append(item.text)
    # Overrides: after everything, since the last setting wins.
    for lib in libs:
        if lib.origin == "command line" or not lib.exists or lib.remote is None:
            continue
        if os.path.isabs(lib.literal) or posixpath.normpath(lib.literal) != lib.remote:
            out.append("+L" + _quote(lib.remote, _SWITCH_STOPS))
    if "Include_Header" in in_ini and v.get("Include_Header"):
        out.append(_include_header_arg(r, libs, v["Include_Header"], "an INI file"))
    for name in COMMANDS:
        if r.commands.get(name):
            warnings.append(f"{name}={r.commands[name]!r} neutralised: the farm runs no commands")
            out.append(f"{name}=")
    if "Create_Ini" in in_ini and v.get("Create_Ini"):
        warnings.append("Create_Ini neutralised: the farm writes no INI file")
        out.append("Create_Ini=")
    if v.get("Continue_Trace"):
        if "Continue_Trace" in in_ini:
            warnings.append("Continue_Trace neutralised: each frame renders from scratch")
        out.append("-C")
    if v.get("Real_Time_Raytracing"):
        out.append("-RTR")
    for name, _letter in STREAM_FILES:
        path = v.get(name)
        if name in in_ini and path and (path.startswith("/") or ".." in path.split("/")):
            warnings.append(f"{name}={path!r} would write outside the working directory: reset")
            out.append(f"{name}=")
    if "Output_File_Type" in in_ini and v.get("Output_File_Type", "N") != "N":
        warnings.append(f"Output_File_Type={v['Output_File_Type']} replaced: the farm renders PNG")
    if "Output_To_File" in in_ini and v.get("Output_To_File") is False:
        warnings.append("Output_To_File=Off replaced: the farm always writes PNG files")
    out += [
        f"+W{width}",
        f"+H{height}",
        *FARM_OPTIONS,
        "+I" + _quote(scene.name, _SWITCH_STOPS),
    ]
    return out


def _turned_on(item: Item, key: str) -> bool:
    """Whether a command-line item switched ``key`` on (or set it to a value)."""
    if item.kind == "switch":
        return bool(item.on)
    row = INI_TABLE.get(key.lower())
    if row is not None and row[2] == BOOL:
        return is_true(item.param or "")
    return bool(item.param)


def _include_header_arg(r: Reader, libs: list[LibraryDir], literal: str, origin: str) -> str:
    found = find_file(literal, (".inc", ".INC"), r.cwd, libs)
    if found is None:
        raise SceneError(f"{origin}: Include_Header {literal!r} not found")
    key = worker_key(found[1], found[0], found[2], origin, "Include_Header")
    return "+HI" + _quote(key if key is not None else literal, _SWITCH_STOPS)
