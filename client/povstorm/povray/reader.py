"""Read POV-Ray's options from INI files and the command line, as
``frontend/processoptions.cpp`` does.

Where it sits: ``parse.parse_invocation`` feeds the default INI file and then
each argument to a ``Reader`` (``apply.py``), whose base ``TextReader`` here
walks the text: INI files (``ParseFile``, ``Parse_INI_Option``) and
command-line arguments (``ParseString``). Each option it finds goes to the
subclass to be applied (``switch``, ``option``, ``unknown_string``), and
becomes an ``Item`` that ``farm_args.py`` later keeps, drops or rewrites.

The syntax, quirks included, checked against the installed ``povray``
3.7.0.10:

* every relative path, in an INI file or on the command line, is relative to
  the current directory, never to the INI file; INI files, the scene and
  includes are then searched in the library path;
* an INI line is ``Key=Value`` (one per line, the rest ignored), ``+X``/``-X``
  switches (several per line), ``;``/``#`` comments, ``[Section]`` headers
  (a plain ``file.ini`` reads only the lines before the first section,
  ``file.ini[Name]`` those plus section ``Name``), or a bare file name: an
  INI file to include, a ``.pov`` scene, or a library directory ending in ``/``.

A known option whose value does not parse makes POV-Ray backtrack and read
the text again as a plain string (``Backtrack``), which usually ends in
"unknown option": the reader does the same, by cursor position.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from povstorm.core.errors import SceneError
from povstorm.povray.cfloat import isalnum
from povstorm.povray.invocation import IniFile
from povstorm.povray.lexer import Cursor, cl_string, ini_string, raw_string, skip_line, skip_space
from povstorm.povray.options import COMMANDS, FRONTEND_ARGS, INI_TABLE, OBSOLETE, QUOTES


class Backtrack(Exception):
    """POV-Ray's kParseErr inside an option: re-read the text as a plain string."""


@dataclass
class Item:
    """One thing the reader applied, in order: what farm_args keeps, drops or
    rewrites, and what ``Invocation.settings`` shows."""

    origin: str
    text: str
    kind: str  # "switch" | "option" | "ini" | "scene" | "library"
    keys: tuple[str, ...]
    from_cl: bool
    on: bool | None = None
    param: str | None = None
    literal: str | None = None
    section: str | None = None
    ini: IniFile | None = None


@dataclass
class Lib:
    """A library path entry as written; parse.py resolves it once the scene is found."""

    literal: str
    origin: str
    from_cl: bool


class TextReader(ABC):
    """The text half of ``ProcessOptions``: INI files and arguments, option by
    option. What an option does is the subclass's (``apply.Reader``): the
    seam is the one between POV-Ray's parsing and its option handlers. The
    state both halves fill lives here.
    """

    def __init__(self, cwd: Path, environ: Mapping[str, str]) -> None:
        self.cwd = cwd
        self.environ = environ
        self.values: dict[str, Any] = {}
        self.libs: list[Lib] = []
        self.declares: list[tuple[str, float | str]] = []
        self.commands: dict[str, str] = {}
        self.items: list[Item] = []
        self.inis: list[IniFile] = []
        self.ini_found: list[tuple[str, str | None]] = []  # (name that matched, library entry)
        self.warnings: list[str] = []
        self.stack: list[Path] = []
        self.scene_origin = ""

    # -- paths ------------------------------------------------------------------

    def abs(self, literal: str) -> Path:
        return Path(os.path.normpath(os.path.join(self.cwd, literal)))

    def display(self, path: Path) -> str:
        try:
            rel = path.relative_to(self.cwd)
        except ValueError:
            return str(path)
        return str(rel)

    def lib_literals(self) -> list[str]:
        return [lib.literal for lib in self.libs]

    def find_ini(self, filename: str) -> tuple[Path, str, str | None] | None:
        """``OpenINIFileStream``: cwd, then the library path; '.ini' appended.
        Returns the file, the name that matched and the library entry used."""
        dot = filename.rfind(".")
        has_ext = dot >= 0 and len(filename) - dot <= 4
        names = ([filename] if has_ext else []) + [filename + ".ini", filename + ".INI"]
        for name in names:
            p = self.abs(name)
            if p.is_file():
                return p, name, None
        for lib in self.lib_literals():
            for name in names:
                p = self.abs(lib + "/" + name)
                if p.is_file():
                    return p, name, lib
        return None

    # -- INI files --------------------------------------------------------------

    def read_ini(self, spec: str, origin: str, *, top_level: bool, text: str) -> None:
        """``ProcessOptions::ParseFile``."""
        section: str | None = None
        filename = spec
        if "[" in spec:
            start = spec.index("[")
            end = spec.find("]")
            if end < start:
                raise SceneError(f"{origin}: bad INI file section in {spec!r}")
            section, filename = spec[start + 1 : end], spec[:start]
        found = self.find_ini(filename)
        if found is None:
            raise SceneError(
                f"{origin}: INI file {filename!r} not found "
                "(POV-Ray looks in the current directory, then the library path)"
            )
        path, name, lib = found
        if path in self.stack:
            raise SceneError(f"{origin}: INI file {self.display(path)!r} includes itself")
        ini = IniFile(filename, path, section, origin, None, top_level)
        self.inis.append(ini)
        self.ini_found.append((name, lib))
        self.items.append(
            Item(
                origin,
                text,
                "ini",
                ("Include_Ini",),
                top_level,
                literal=filename,
                section=section,
                ini=ini,
            )
        )
        try:
            content = path.read_bytes().decode("utf-8", errors="surrogateescape")
        except OSError as exc:
            raise SceneError(
                f"{origin}: cannot read INI file {self.display(path)!r}: {exc.strerror}"
            ) from None
        self.stack.append(path)
        try:
            self.parse_ini_text(content, path, section)
        finally:
            self.stack.pop()

    def parse_ini_text(self, content: str, path: Path, section: str | None) -> None:
        f = Cursor(content)
        active = True
        name = self.display(path)
        while not f.eof():
            skip_space(f, newlines=True)
            start = f.i
            token = f.get()
            origin = f"{name}:{f.line_at(start)}"
            if token == "[":
                current = ini_string(f, "]")
                active = section is not None and current.lower() == section.lower()
                continue
            if not active:
                skip_line(f)
                continue
            if token == "":
                break
            plain = False
            if token in QUOTES:
                plain = True
            elif token in "+-":
                key = ini_string(f)
                value = None
                c = f.get()
                if c in QUOTES and c:
                    value = ini_string(f, c)
                else:
                    f.unget()
                text = content[start : f.i]
                self.items.append(self.switch(key, value, token, origin, text))
            elif token in ";#":
                skip_line(f)
            elif isalnum(token) or token == "_":
                f.unget()
                back = f.i
                try:
                    item = self.ini_option(f, origin, content, start)
                except Backtrack:
                    f.i = back
                    plain = True
                else:
                    if item is not None:
                        self.items.append(item)
                    skip_line(f)
            else:
                plain = True
            if plain:
                if token not in QUOTES:
                    text = ini_string(f, -2, smart=True, origin=origin, warnings=self.warnings)
                    if "=" in text:
                        key = text.split("=", 1)[0].strip()
                        raise SceneError(f"{origin}: unknown option {key!r}")
                else:
                    text = ini_string(f, token)
                self.unknown_string(text, origin, from_cl=False)

    def ini_option(self, f: Cursor, origin: str, content: str, start: int) -> Item | None:
        """``Parse_INI_Option``: ``Key = Value[, Value...]``."""
        key = ini_string(f)
        row = INI_TABLE.get(key.lower())
        if row is None:
            raise Backtrack
        skip_space(f, newlines=False)
        if f.get() != "=":
            raise Backtrack
        skip_space(f, newlines=False)
        keyword, attr, typ = row
        if attr in COMMANDS and keyword.upper().endswith("D"):
            value = raw_string(f)
        else:
            c = f.get()
            if c in QUOTES and c:
                value = ini_string(f, c)
            else:
                f.unget()
                value = ini_string(f, -2, smart=True, origin=origin, warnings=self.warnings)
        text = content[start : f.i]
        if typ == OBSOLETE:
            self.warnings.append(f"{origin}: {keyword} is no longer used by POV-Ray 3.7 (ignored)")
            return Item(origin, text, "option", (), False, param=value)
        self.option(row, value, origin, text)
        skip_space(f, newlines=False)
        c = f.get()
        if c == ",":
            while not f.eof():
                skip_space(f, newlines=False)
                c = f.get()
                if c in QUOTES and c:
                    value = ini_string(f, c)
                else:
                    f.unget()
                    value = ini_string(f, -2)
                self.option(row, value, origin, text)
                skip_space(f, newlines=False)
                if f.get() != ",":
                    f.unget()
                    break
            text = content[start : f.i]
        else:
            f.unget()
        keys = (attr,) if attr not in ("Include_Ini", "Library_Path", "Declare") else (keyword,)
        if attr == "Input_File_Name":
            self.scene_origin = origin
        if attr == "Include_Ini":
            return None  # read_ini recorded it
        return Item(origin, text, "option", keys, False, param=value)

    # -- the command line -------------------------------------------------------

    def parse_argument(self, arg: str) -> None:
        """``ProcessOptions::ParseString`` on one argv element."""
        origin = "command line"
        if arg in FRONTEND_ARGS:
            raise SceneError(f"{origin}: {arg!r} is a povray program option, not a render option")
        cl = Cursor(arg)
        while not cl.eof():
            while cl.peek() in (" ", "\t") and cl.peek():
                cl.i += 1
            c = cl.peek()
            if c == "":
                break
            start = cl.i
            plain = False
            if c in QUOTES:
                plain = True
            elif c in "+-":
                cl.i += 1
                key = cl_string(cl)
                value = None
                q = cl.peek()
                if q in QUOTES and q:
                    cl.i += 1
                    value = cl_string(cl, q)
                self.items.append(self.switch(key, value, c, origin, arg[start : cl.i]))
            elif isalnum(c) or c == "_":
                try:
                    item = self.cl_option(cl, origin, arg, start)
                except Backtrack:
                    cl.i = start
                    plain = True
                else:
                    if item is not None:
                        self.items.append(item)
            else:
                plain = True
            if plain:
                q = cl.peek()
                if q in QUOTES and q:
                    cl.i += 1
                    text = cl_string(cl, q)
                else:
                    text = cl_string(cl, -2)
                    if "=" in text:
                        key = text.split("=", 1)[0]
                        if key.lower() in INI_TABLE and INI_TABLE[key.lower()][2] == OBSOLETE:
                            raise SceneError(
                                f"{origin}: {key} is no longer supported by POV-Ray 3.7"
                            )
                        raise SceneError(f"{origin}: unknown option {key!r}")
                self.unknown_string(text, origin, from_cl=True)

    def cl_option(self, cl: Cursor, origin: str, arg: str, start: int) -> Item | None:
        key = cl_string(cl)
        row = INI_TABLE.get(key.lower())
        if row is None or cl.peek() != "=":
            raise Backtrack
        cl.i += 1
        q = cl.peek()
        if q in QUOTES and q:
            cl.i += 1
            value = cl_string(cl, q)
        else:
            value = cl_string(cl, -2)
        keyword, attr, _typ = row
        text = arg[start : cl.i]
        if attr == "Include_Ini":
            self.read_ini(value, origin, top_level=True, text=text)
            return None
        self.option(row, value, origin, text)
        if attr == "Input_File_Name":
            self.scene_origin = origin
        keys = (attr,) if attr not in ("Library_Path", "Declare") else (keyword,)
        return Item(origin, text, "option", keys, True, param=value)

    # -- applying, done by the subclass ----------------------------------------

    @abstractmethod
    def switch(self, key: str, value: str | None, token: str, origin: str, text: str) -> Item:
        """Apply a ``+X`` / ``-X`` switch; the item that records it."""

    @abstractmethod
    def option(self, row: tuple[str, str, str], value: str, origin: str, text: str) -> None:
        """Apply one value of a ``Key=Value`` option (``row`` from ``INI_TABLE``)."""

    @abstractmethod
    def unknown_string(self, text: str, origin: str, from_cl: bool) -> None:
        """Apply a bare word: a scene, a library directory or an INI file."""
