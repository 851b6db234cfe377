"""Apply POV-Ray's options as ``frontend/processoptions.cpp``
(``Process_Switch``, ``Process_INI_Option``), ``processrenderoptions.cpp``
(the special handlers, ``ProcessUnknownString``) and the unix front end do.

Where it sits: ``Reader`` is the ``TextReader`` (``reader.py``) that
``parse.parse_invocation`` runs. Each switch and ``Key=Value`` the text
reader finds is applied here to ``values`` (the INI keyword's attribute, as
POV-Ray's POVMS object would hold it), library paths, declares and
shell-out commands; a bare word becomes the scene, a library directory or an
INI file to read.

The default INI file is the first of ``$POVINI``, ``./povray.ini``,
``~/.povray/3.7/povray.ini``, ``/etc/povray/3.7/povray.ini`` (then the old
``~/.povrayrc``, ``/etc/povray.ini``); it replaces, not adds to, the others
(``UnixOptionsProcessor::Process_povray_ini``).
"""

from __future__ import annotations

import re
from pathlib import Path

from povstorm.core.errors import SceneError
from povstorm.povray.cfloat import atof, c_float, c_int, f32, is_false, is_true
from povstorm.povray.options import (
    BOOL,
    COMMANDS,
    DITHER_METHODS,
    FILE_TYPES,
    FLOAT,
    GAMMA_TYPES,
    INT,
    NONE,
    OBSOLETE,
    SPACE,
    SPECIAL,
    STR,
    SWITCHES,
    SYSTEM_INI,
    SYSTEM_INI_OLD,
)
from povstorm.povray.reader import Backtrack, Item, Lib, TextReader


class Reader(TextReader):
    """What each option does to the render's settings: the option handlers of
    ``ProcessOptions`` and ``ProcessRenderOptions``, and the default INI file
    of ``UnixOptionsProcessor``."""

    def switch(self, key: str, value: str | None, token: str, origin: str, text: str) -> Item:
        """Find and apply a ``+X`` / ``-X`` switch (``Process_Switch``)."""
        for cmd, attr, typ, flag in SWITCHES:
            n = 0
            while n < len(key) and n < len(cmd) and key[n].upper() == cmd[n]:
                n += 1
            if n != len(cmd):
                continue
            rest = key[n:]
            if value is not None and rest:
                break
            param = value if value is not None else rest
            has_param = param[:1] > " "
            if has_param != (typ != NONE):
                continue
            on = token != "-"
            keys: list[str] = []
            if flag:
                self.values[flag] = on
                keys.append(flag)
            if attr:
                keys.append(attr)
                if typ == SPECIAL:
                    self.switch_special(attr, param, origin, text)
                else:
                    self.set_typed(attr, typ, param, origin, text)
            return Item(origin, text, "switch", tuple(keys), origin == "command line", on, param)
        shown = token + key + (f'"{value}"' if value is not None else "")
        raise SceneError(f"{origin}: unknown switch {shown!r}")

    def option(self, row: tuple[str, str, str], value: str, origin: str, text: str) -> None:
        """``Process_INI_Option``: type errors are fatal (POV-Ray backtracks into an error)."""
        keyword, attr, typ = row
        if typ == SPECIAL:
            self.ini_special(keyword, attr, value, origin)
        elif typ == OBSOLETE:
            raise Backtrack
        else:
            self.set_typed(attr, typ, value, origin, keyword)

    def unknown_string(self, text: str, origin: str, from_cl: bool) -> None:
        """``ProcessUnknownString``: a scene, a library directory or an INI file."""
        dot = text.rfind(".")
        if dot >= 0 and text[dot:].lower() == ".pov":
            self.values["Input_File_Name"] = text
            self.scene_origin = origin
            self.items.append(Item(origin, text, "scene", ("Input_File_Name",), from_cl))
        elif text.endswith("/"):
            self.libs.append(Lib(text, origin, from_cl))
            self.items.append(Item(origin, text, "library", ("Library_Path",), from_cl))
        else:
            self.read_ini(text, origin, top_level=from_cl, text=text)

    # -- values -----------------------------------------------------------------

    def set_typed(self, attr: str, typ: str, param: str, origin: str, what: str) -> None:
        if typ == INT:
            value = c_int(param)
            if value is None:
                raise SceneError(f"{origin}: {what}: integer expected, found {param!r}")
            self.values[attr] = value
        elif typ == FLOAT:
            fvalue = c_float(param)
            if fvalue is None:
                raise SceneError(f"{origin}: {what}: number expected, found {param!r}")
            self.values[attr] = f32(fvalue)
        elif typ == BOOL:
            if not is_true(param) and not is_false(param):
                self.warnings.append(f"{origin}: {what}: {param!r} is read as Off")
            self.values[attr] = is_true(param)
        elif typ == STR:
            self.values[attr] = param

    def file_type(self, letter: str, origin: str, what: str) -> str:
        code = letter.upper()
        if code not in FILE_TYPES:
            raise SceneError(f"{origin}: {what}: unknown output file type {letter!r}")
        return code

    def ini_special(self, keyword: str, attr: str, param: str, origin: str) -> None:
        """``ReadSpecialOptionHandler`` for ``Key=Value`` options."""
        if attr in ("Palette", "Video_Mode"):
            self.values[attr] = param.lstrip(SPACE)[:1].lower()
        elif attr == "Dither_Method":
            code = param.lstrip(SPACE)
            if code.upper() not in DITHER_METHODS:
                raise SceneError(f"{origin}: {keyword}: unknown dither method {code!r}")
            self.values[attr] = code.upper()
        elif attr == "Output_File_Type":
            # Only the letter counts here: "Output_File_Type=N8" is plain PNG.
            self.values[attr] = self.file_type(param.lstrip(SPACE)[:1], origin, keyword)
        elif attr == "Include_Ini":
            self.read_ini(param, origin, top_level=False, text=f"{keyword}={param}")
        elif attr == "Library_Path":
            self.libs.append(Lib(param, origin, from_cl=origin == "command line"))
        elif attr == "Declare":
            self.declare(param)
        elif attr in COMMANDS:
            if keyword.upper().endswith("D"):
                self.commands[attr] = param
        elif attr in ("Display_Gamma", "File_Gamma"):
            value = atof(param)
            if value <= 0 and param.strip().upper() not in GAMMA_TYPES:
                raise SceneError(f"{origin}: {keyword}: unknown gamma {param!r}")
            self.values[attr] = param

    def declare(self, param: str) -> None:
        # strtok(param, "=") then strtok(NULL, ""): a missing value is
        # silently dropped by POV-Ray (its error code is overwritten).
        stripped = param.lstrip("=")
        if not stripped:
            return
        name, sep, rest = stripped.partition("=")
        if not sep or rest == "":
            return
        if '"' in rest:
            self.declares.append((name, rest[rest.index('"') + 1 :].split('"', 1)[0]))
        else:
            self.declares.append((name, f32(atof(rest))))

    def switch_special(self, attr: str, param: str, origin: str, text: str) -> None:
        """``ReadSpecialSwitchHandler`` for ``+X<param>`` switches."""
        if attr == "Display":
            self.values["Video_Mode"] = param[:1].upper()
            if len(param) > 1:
                self.values["Palette"] = param[1].upper()
        elif attr == "Dither_Method":
            if param.upper() not in DITHER_METHODS:
                raise SceneError(f"{origin}: {text}: unknown dither method {param!r}")
            self.values[attr] = param.upper()
        elif attr == "Output_File_Type":
            code = self.file_type(param[:1], origin, text)
            self.values[attr] = code
            rest = param[1:]
            if rest[:1] > " ":
                if rest[0] in "gG":
                    if not FILE_TYPES[code][1]:
                        raise SceneError(f"{origin}: {text}: grayscale needs PNG or PPM output")
                    self.values["Grayscale_Output"] = True
                    if rest[1:2] > " ":
                        raise SceneError(f"{origin}: {text}: unexpected {rest[1:]!r}")
                elif rest[0].isdigit():
                    m = re.match(r"\d+", rest)
                    assert m is not None
                    self.values["Bits_Per_Color"] = int(m.group(0))
                    if rest[m.end() : m.end() + 1] > " ":
                        raise SceneError(f"{origin}: {text}: unexpected {rest[m.end() :]!r}")
                else:
                    raise SceneError(f"{origin}: {text}: invalid modifier {rest!r}")
        elif attr == "Library_Path":
            self.libs.append(Lib(param, origin, from_cl=origin == "command line"))
        elif attr == "Test_Abort_Count":
            value = c_int(param)
            if value is None:
                raise SceneError(f"{origin}: {text}: integer expected, found {param!r}")
            self.values[attr] = value

    # -- the default INI file -----------------------------------------------------

    def default_ini(self) -> Path | None:
        """``UnixOptionsProcessor::Process_povray_ini``: the first that exists."""
        home = self.environ.get("HOME", "")
        candidates: list[Path] = []
        povini = self.environ.get("POVINI")
        if povini:
            candidates.append(self.abs(povini))
        candidates.append(self.cwd / "povray.ini")
        if home:
            candidates.append(Path(home) / ".povray" / "3.7" / "povray.ini")
        candidates.append(SYSTEM_INI)
        if home:
            candidates.append(Path(home) / ".povrayrc")
        candidates.append(SYSTEM_INI_OLD)
        for path in candidates:
            if path.is_file():
                return path
        return None
