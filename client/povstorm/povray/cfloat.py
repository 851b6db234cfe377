"""C ``float``, ``sscanf`` and ``strtod`` as POV-Ray's option reader uses them.

Where it sits: the reader (``apply.py``) turns every option value into a
number with these, and ``parse.py`` computes the animation clock with ``f32``.
Floats are C ``float``: POV-Ray stores every float option in single
precision, so a value read here must be rounded the same way to predict
what the scene sees (``clock`` matches bit for bit). Integers and floats are
read as ``sscanf`` reads them: the longest numeric prefix, the rest ignored.
The small predicates are POV-Ray's own (``Matches``, ``isalnum`` in the C
locale), so "Onward" is On and a non-ASCII letter starts no option.
"""

from __future__ import annotations

import math
import re
import struct


def f32(x: float) -> float:
    """``x`` rounded to a C float, as POV-Ray stores every float option."""
    if math.isnan(x) or math.isinf(x):
        return x
    try:
        return float(struct.unpack("f", struct.pack("f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


_INT_RE = re.compile(r"[ \t\n\r\v\f]*([+-]?\d+)")
_FLOAT_RE = re.compile(
    r"[ \t\n\r\v\f]*([+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?"
    r"|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan))",
    re.IGNORECASE,
)


def c_int(text: str) -> int | None:
    """sscanf("%d"): leading space, sign, digits; None when nothing matches."""
    m = _INT_RE.match(text)
    if not m:
        return None
    value = int(m.group(1))
    # glibc wraps a value that does not fit; POV-Ray would then misbehave.
    return value if -(2**31) <= value < 2**31 else None


def c_float(text: str) -> float | None:
    """sscanf("%lf") / strtod on the longest numeric prefix."""
    m = _FLOAT_RE.match(text)
    if not m:
        return None
    s = m.group(1)
    if "x" in s.lower() and not s.lower().lstrip("+-").startswith("inf"):
        sign = -1.0 if s.startswith("-") else 1.0
        body = s.lstrip("+-")
        return sign * float.fromhex(body if "p" in body.lower() else body + "p0")
    return float(s)


def atof(text: str) -> float:
    value = c_float(text)
    return 0.0 if value is None else value


def matches(constant: str, value: str) -> bool:
    """POV-Ray's ``Matches``: equal up to the end of the shorter string."""
    return all(a == b.lower() for a, b in zip(constant, value, strict=False))


def is_true(value: str) -> bool:
    return any(matches(c, value) for c in ("on", "true", "yes", "1"))


def is_false(value: str) -> bool:
    return any(matches(c, value) for c in ("off", "false", "no", "0"))


def isalnum(c: str) -> bool:
    return c != "" and c.isascii() and c.isalnum()


def isalpha(c: str) -> bool:
    return c != "" and c.isascii() and c.isalpha()
