"""The ``povstorm`` command: thin over the library.

Every error a user can cause ends as one line on stderr and a non-zero exit
(2 for bad input, 1 for a failed job or an unavailable stack).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import PovstormError, UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="povstorm",
        description="Render POV-Ray animations on a farm (local emulator stack or Google Cloud).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from emulator.cli import add_parser as add_local_parser

    add_local_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"povstorm: error: {exc}", file=sys.stderr)
        return 2
    except PovstormError as exc:
        print(f"povstorm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("povstorm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
