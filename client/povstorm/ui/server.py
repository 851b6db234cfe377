"""Serving the web view: waitress, a production WSGI server in pure Python,
with a thread for each request and each open page's event stream."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from flask import Flask
from waitress import create_server

from povstorm.ui.app import UiState

# Each open page holds a thread for its event stream; the rest serve pages,
# thumbnails and actions.
THREADS = 32


def make_server(app: Flask, host: str, port: int) -> Any:
    """A waitress server of ``app`` bound to ``host``:``port`` (0: any free
    port, then its ``effective_port``), not yet serving: call ``run()``."""
    # A lookahead of one keeps a connection readable while its request is
    # served, so a closed tab is seen at once and its stream ended at its
    # next write (without it, only a write that fails shows it).
    return create_server(
        app, host=host, port=port, threads=THREADS, channel_request_lookahead=1, ident="povstorm-ui"
    )


def stop_streams(app: Flask) -> None:
    """End every open event stream now (each would end at its next keep-alive)."""
    ui: UiState = app.extensions["povstorm"]
    ui.streams.stop()


def serve(app: Flask, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve until Ctrl-C; ``on_ready`` gets the URL once the port is bound."""
    server = make_server(app, host, port)

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        # The streams end first, so that waitress's shutdown finds their
        # threads free instead of waiting for them.
        stop_streams(app)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        on_ready(f"http://{server.effective_host}:{server.effective_port}/")
        server.run()  # returns once Ctrl-C has shut it down
    finally:
        signal.signal(signal.SIGINT, previous)
        server.close()
