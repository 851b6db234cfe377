"""Confine POV-Ray's file access with Landlock, then run it.

    python -S -I confine.py --read DIR ... --write DIR ... -- povray ARGS...

POV-Ray's own guard, ``[File I/O Security]`` in povray.conf, does not work
in 3.7 on Unix: a typo in its configuration parser ignores ``restricted``,
so no access check is made (POV-Ray issue #158, still open; measured here
with Debian's 3.7.0.10: a scene wrote to /var/tmp although no configuration
permits it). The farm therefore asks the kernel. Landlock (Linux 5.13+, no
privileges needed) lets this process give up every file access but the ones
listed, for itself and for what it executes, and then becomes POV-Ray:

* read (and list) the scene's working directory, POV-Ray's include library
  and the system files POV-Ray itself needs (its program and libraries, its
  system configuration);
* write, create and remove only in the ``--write`` directories (the scene's
  working directory and the directory POV-Ray writes its frames to);
* execute nothing but POV-Ray: a scene's shell-out (``Pre_Frame_Command``
  and the like) cannot start a shell.

A scene that reaches past them gets POV-Ray's own error ("Cannot open file")
for its frame. Where the kernel has no Landlock (or too old an ABI), POV-Ray
runs unconfined after one line on stderr saying so: the render still works,
and the log says what it was not protected from.

This file is run by path with ``python -S -I``: the standard library only,
so that it costs a few milliseconds, not povstorm's imports.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import sys
from collections.abc import Sequence

# Syscall numbers of Landlock: the same on x86_64 and arm64 (asm-generic).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# The file-system rights of Landlock, in the kernel's bit order
# (linux/landlock.h, LANDLOCK_ACCESS_FS_*): ABI 1 has the first 13, ABI 2
# adds REFER, ABI 3 TRUNCATE, ABI 5 IOCTL_DEV.
_RIGHTS = (
    "EXECUTE", "WRITE_FILE", "READ_FILE", "READ_DIR", "REMOVE_DIR", "REMOVE_FILE", "MAKE_CHAR",
    "MAKE_DIR", "MAKE_REG", "MAKE_SOCK", "MAKE_FIFO", "MAKE_BLOCK", "MAKE_SYM", "REFER",
    "TRUNCATE", "IOCTL_DEV",
)  # fmt: skip
_BIT = {name: 1 << i for i, name in enumerate(_RIGHTS)}
_ABI_RIGHTS = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}  # how many of them each ABI handles


def _rights(*names: str) -> int:
    return sum(_BIT[n] for n in set(names))


EXECUTE = _BIT["EXECUTE"]
_FILE_RIGHTS = _rights("EXECUTE", "WRITE_FILE", "READ_FILE", "TRUNCATE", "IOCTL_DEV")
READ = _rights("READ_FILE", "READ_DIR")
WRITE = READ | _rights(
    "WRITE_FILE", "REMOVE_DIR", "REMOVE_FILE", "MAKE_DIR", "MAKE_REG", "MAKE_SYM", "REFER",
    "TRUNCATE",
)  # fmt: skip

# What POV-Ray itself reads to start: the dynamic loader's cache, its
# libraries, its system configuration (a missing one only makes it warn),
# and how many CPUs there are. Only what exists is added. Its include
# library comes as a --read (povray/process.py, from options.SYSTEM_SHARE).
SYSTEM_READ = (
    "/etc/ld.so.cache",
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/etc/povray",
    "/sys/devices/system/cpu",
    "/proc/self",
    "/dev/null",
    "/dev/urandom",
)


# The dynamic loader and the libraries it maps: the kernel opens the loader
# for execution too. No shell or other program lives there.
SYSTEM_EXECUTE = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _handled(abi: int) -> int:
    """Every right the kernel's ABI knows: all of them are denied unless a rule allows them."""
    return (1 << _ABI_RIGHTS.get(abi, len(_RIGHTS))) - 1


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 if it has none (or it is disabled)."""
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(0, int(version))


def restrict(read: Sequence[str], write: Sequence[str], execute: Sequence[str]) -> int:
    """Allow this process (and what it executes) only these accesses from now
    on. Returns the Landlock ABI used; 0 if the kernel has none (nothing done)."""
    abi = landlock_abi()
    if abi == 0:
        return 0
    handled = _handled(abi)
    libc = ctypes.CDLL(None, use_errno=True)
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    try:
        for paths, rights in ((read, READ), (write, WRITE), (execute, EXECUTE | READ)):
            for path in paths:
                _allow(libc, ruleset, path, rights & handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS  # a file takes only a file's rights
        rule = _PathBeneathAttr(rights, fd)
        if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
    finally:
        os.close(fd)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--read", action="append", default=[], help="a directory to read")
    parser.add_argument("--write", action="append", default=[], help="a directory to write")
    parser.add_argument(
        "--preload", help="a library POV-Ray alone runs with (LD_PRELOAD; povray/nopoll.py)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- povray ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    program = _which(command[0])
    reads = [*SYSTEM_READ, *args.read, *([os.path.dirname(args.preload)] if args.preload else [])]
    try:
        abi = restrict(reads, args.write, [program, *SYSTEM_EXECUTE])
    except OSError as exc:
        print(f"povstorm: cannot confine POV-Ray's file access: {exc}", file=sys.stderr)
        return 126
    if abi == 0:
        print(
            "povstorm: this kernel has no Landlock: POV-Ray's file access is not confined",
            file=sys.stderr,
        )
    sys.stderr.flush()
    if args.preload:
        # Only for POV-Ray: not this process, nor anything that runs it.
        os.execve(program, command, {**os.environ, "LD_PRELOAD": args.preload})
    os.execv(program, command)
    return 127  # not reached


def _which(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"povstorm: {name} not found")
    return os.path.realpath(found)


if __name__ == "__main__":
    sys.exit(main())
