"""Read what POV-Ray printed: its own time and memory figures, and its error
on one line."""

from __future__ import annotations

import re

LOG_TAIL_LINES = 50

_SECONDS_RE = re.compile(
    r"^\s*(Parse|Bounding|Photon|Radiosity|Trace) Time:.*\((\d+(?:\.\d+)?) seconds\)", re.M
)
_PEAK_MEMORY_RE = re.compile(r"Peak memory used:\s*([\d,]+)\s*bytes", re.I)
# A "Possible Parse Error" is a warning in a render that may well succeed.
_ERROR_RE = re.compile(r"^(?!.*Possible Parse Error).*\bError:", re.I)
_FALLBACK_ERROR_RE = re.compile(r"\b(error|failed|cannot|unable)\b", re.I)


def parse_stats(output: str) -> tuple[float | None, int | None]:
    """(seconds POV-Ray spent parsing, bounding, shooting photons, radiosity
    and tracing; its peak memory) as it printed them, None where it did not."""
    times = [float(m[2]) for m in _SECONDS_RE.finditer(output)]
    seconds = sum(times) if times else None
    m = _PEAK_MEMORY_RE.search(output)
    peak = int(m[1].replace(",", "")) if m else None
    return seconds, peak


def error_line(output: str) -> str:
    """POV-Ray's own error, on one line: ``File 'x.pov' line 3: Parse Error: ...``.

    POV-Ray wraps its messages at 80 columns, continuing them on lines that
    start with a space; those are joined back."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if _ERROR_RE.search(line):
            parts = [line.strip()]
            for cont in lines[i + 1 : i + 4]:
                if not cont.startswith(" ") or not cont.strip():
                    break
                parts.append(cont.strip())
            return " ".join(parts)
    for line in lines:
        # Skip the option dump, which names streams, not errors.
        if (
            _FALLBACK_ERROR_RE.search(line)
            and "Stream" not in line
            and "configuration file" not in line
        ):
            return line.strip()
    return ""


def tail(output: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(output.splitlines()[-lines:])
