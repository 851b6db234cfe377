"""The POV-Ray layer: reading a POV-Ray command line as POV-Ray 3.7 does,
finding the files a scene needs, and running ``povray`` and reading its
output. No cloud code: everything here is checked against the real
``povray`` alone (docs/architecture.md, the import rule: povray -> core).

The client side, from ``povstorm render ARGS`` to a job spec:

* ``parse``: ``parse_invocation``, from argv to an ``Invocation``;
* ``options``: POV-Ray's option tables, and ``FARM_OPTIONS``, the options the
  farm makes every render use;
* ``lexer``, ``reader``, ``apply``: the port of POV-Ray's option reader
  (``processoptions.cpp`` and ``processrenderoptions.cpp``): the strings, the
  INI files and arguments, and what each option does;
* ``cfloat``: C ``float`` and ``sscanf`` as that reader uses them;
* ``invocation``: ``Invocation`` and the types it holds, output file names;
* ``farm_args``: the arguments the worker runs with, and each file's name on
  the worker;
* ``scan``: ``collect_inputs``, the files a scene needs;
* ``check``: ``check_parse``, the local ``povray`` parses the scene's first
  and last frames before anything is uploaded.

The worker side: ``process`` runs ``povray`` in a sandbox (``PovrayProcess``),
and ``output`` reads its statistics and errors from the log.
"""

from povstorm.povray.cfloat import f32
from povstorm.povray.check import ParseCheck, check_parse
from povstorm.povray.farm_args import find_file, is_system_path, worker_key
from povstorm.povray.invocation import Antialias, IniFile, Invocation, LibraryDir, Setting
from povstorm.povray.options import FARM_OPTIONS
from povstorm.povray.output import (
    GrowingOutput,
    error_line,
    frame_sections,
    parse_seconds,
    parse_stats,
    png_complete,
    tail,
)
from povstorm.povray.parse import parse_invocation
from povstorm.povray.process import PovrayProcess, PovrayRun, povray_version
from povstorm.povray.scan import cache_blockers, collect_inputs, references

__all__ = [
    "FARM_OPTIONS",
    "Antialias",
    "GrowingOutput",
    "IniFile",
    "Invocation",
    "LibraryDir",
    "ParseCheck",
    "PovrayProcess",
    "PovrayRun",
    "Setting",
    "cache_blockers",
    "check_parse",
    "collect_inputs",
    "error_line",
    "f32",
    "find_file",
    "frame_sections",
    "is_system_path",
    "parse_invocation",
    "parse_seconds",
    "parse_stats",
    "png_complete",
    "povray_version",
    "references",
    "tail",
    "worker_key",
]
