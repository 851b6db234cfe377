"""The one logging setup of povstorm's processes.

Every shell (the functions, the render service, the stitch job) and every
process of the local stack (pull workers, their supervisor, the reconciler)
calls ``setup_logging()`` at its entry point, so their logs share one format
and one switch, ``POVSTORM_LOG_LEVEL`` (INFO by default).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TextIO

from povstorm.core.names import ENV

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
DEFAULT_LEVEL = "INFO"


def log_level(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get(ENV["log_level"]) or DEFAULT_LEVEL).upper()


def setup_logging(stream: TextIO | None = None) -> None:
    """Configure the root logger once; a second call changes nothing, as
    ``logging.basicConfig`` does, so an import-time call in a shell does not
    undo a host's (functions-framework's, pytest's) own handlers."""
    logging.basicConfig(level=log_level(), format=FORMAT, stream=stream)
