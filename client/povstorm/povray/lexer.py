"""The character-level readers of POV-Ray's option syntax.

Where it sits: ``reader.py`` walks INI files and command-line arguments with
a ``Cursor`` and these functions, ports of ``Parse_INI_String``,
``Parse_INI_String_Smartmode``, ``Parse_Raw_INI_String`` and
``Parse_CL_String`` from ``frontend/processoptions.cpp``. They keep POV-Ray's
stop characters and its 64 KiB limits, and they move the cursor exactly as
its ``getchar``/``ungetchar`` do, because the reader backtracks by position.
"""

from __future__ import annotations

from povstorm.povray.cfloat import isalpha
from povstorm.povray.options import INI_TABLE, SPACE


class Cursor:
    """POV-Ray's text stream: getchar / ungetchar / tellg / seekg."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def eof(self) -> bool:
        return self.i >= len(self.s)

    def get(self) -> str:
        if self.i >= len(self.s):
            self.i += 1  # ungetting EOF must land where it was
            return ""
        c = self.s[self.i]
        self.i += 1
        return c

    def unget(self) -> None:
        self.i -= 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def line_at(self, pos: int) -> int:
        return self.s.count("\n", 0, pos) + 1


def skip_space(f: Cursor, *, newlines: bool) -> None:
    while not f.eof():
        c = f.get()
        if c in "\n\r" and newlines:
            c2 = f.get()
            if c2 not in "\n\r" or c2 == c or c2 == "":
                f.unget()
        elif c not in " \t":
            f.unget()
            break


def skip_line(f: Cursor) -> None:
    while not f.eof():
        c = f.get()
        if c in "\n\r":
            c2 = f.get()
            if c2 not in "\n\r" or c2 == c or c2 == "":
                f.unget()
            break


def ini_string(
    f: Cursor,
    end: int | str = -1,
    *,
    smart: bool = False,
    origin: str = "",
    warnings: list[str] | None = None,
) -> str:
    """``Parse_INI_String``: to a stop character (-1/-2), or to ``end``.

    ``smart`` is POV-Ray's smart mode for unquoted values, which may go on
    past a space; it warns into ``warnings`` when it does."""
    out: list[str] = []
    mode = end
    while len(out) < 65535:
        c = f.get()
        if c == "":
            f.unget()
            break
        if mode in (-1, -2):
            if smart and c in " \t":
                f.unget()
                assert warnings is not None, "smart mode needs a warnings list"
                if not smart_continues(f, origin, warnings):
                    break
                c = f.get()
                mode = -3
            elif c in SPACE or c in ",;#\"'" or (mode == -1 and c in "[]="):
                f.unget()
                break
        elif mode == -3:
            if c in ";#\n\r":
                f.unget()
                break
        elif c == mode:
            break
        out.append(c)
    return "".join(out)


def smart_continues(f: Cursor, origin: str, warnings: list[str]) -> bool:
    """``Parse_INI_String_Smartmode``: does an unquoted value go on past a space?"""
    back = f.i
    skip_space(f, newlines=False)
    c = f.get()
    result = False
    if c == "" or c in ";#,":
        pass
    else:
        if c in "+-":
            if isalpha(f.get()):
                f.i = back
                return False
            f.i = back
        # As in POV-Ray, the word is read from the character after the one
        # just consumed, so "foo Width=30" is one value.
        key = ini_string(f)
        if key.lower() not in INI_TABLE:
            result = True
            warnings.append(
                f"{origin}: unquoted value with spaces; POV-Ray reads it to the end of the line"
            )
    f.i = back
    return result


def raw_string(f: Cursor) -> str:
    """``Parse_Raw_INI_String`` for shell-out commands."""
    out: list[str] = []
    in_sq = in_dq = escape = False
    while len(out) < 65536:
        c = f.get()
        if escape and c in "\"'\\" and c:
            escape = False
            out.append(c)
            continue
        escape = False
        if c == "":
            f.unget()
            break
        if c in "\r\n":
            f.unget()
            break
        if c in ";#" and not in_sq and not in_dq:
            f.unget()
            break
        if c == "\\":
            escape = True
        elif c == '"':
            in_dq = not in_dq
        elif c == "'":
            in_sq = not in_sq
        out.append(c)
    return "".join(out)


def cl_string(cl: Cursor, end: int | str = -1) -> str:
    """``Parse_CL_String``."""
    out: list[str] = []
    while not cl.eof():
        c = cl.peek()
        if isinstance(end, int) and end <= -1:
            if c in SPACE or c in ";#\"'":
                break
            if end == -1 and c in "[]=":
                break
        cl.i += 1
        if c == end:
            break
        out.append(c)
    return "".join(out)
