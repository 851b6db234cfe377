"""The web view (``povstorm ui``): a jobs page and a page per job, drawn
live from Firestore listeners through server-sent events.

Where it sits: on top of ``povstorm.client``, as the CLI is. Every action is
a Cluster method (cancel, retry, restitch, logs), progress comes from the
client's JobWatcher, and a job's units are read and listened to one page of
its grid at a time. app.py has the routes, live.py the streams, views.py
what the pages draw, media.py the thumbnails and objects kept on this
machine, server.py waitress.
"""

from povstorm.ui.app import create_app
from povstorm.ui.server import make_server, serve, stop_streams

__all__ = ["create_app", "make_server", "serve", "stop_streams"]
