"""The web view's Flask application: the jobs page, a job's page, their
event streams (live.py), the JSON they are drawn from, the frames,
thumbnails and videos (media.py), and the actions: cancel, retry and
re-stitch, each a POST that calls the Cluster method of the same name.

Thin over the client, as the CLI is: every read is a Cluster or Ledger
call, every action a Cluster method; povstorm's errors become a status
(``verdict``) and one line, shown on the page.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    render_template,
    request,
    send_file,
    stream_with_context,
)

from povstorm.client import Cluster
from povstorm.client.cluster import Restitched
from povstorm.core.errors import PovstormError, UserError, verdict
from povstorm.core.naming import (
    check_job_id,
    check_video_key,
    frame_object,
    poster_object,
    restitch_object,
)
from povstorm.ui import live
from povstorm.ui.media import Media
from povstorm.ui.views import (
    Page,
    job_payload,
    job_row,
    to_json,
    unit_detail,
    unit_row,
)

log = logging.getLogger(__name__)

JOBS_SHOWN = 50  # the most recent jobs on the jobs page
# How long a re-stitch request waits for its video before the page is told
# it is on its way (the job's stream shows it when it is made).
RESTITCH_WAIT = 3.0
# A URL named by an object generation never changes what it serves.
IMMUTABLE = "public, max-age=31536000, immutable"

ui = Blueprint("ui", __name__)


@dataclass
class UiState:
    """What the routes share: the cluster, the local media and the open streams."""

    cluster: Cluster
    media: Media
    keepalive: float = live.KEEPALIVE
    streams: live.Streams = field(default_factory=live.Streams)


def create_app(cluster: Cluster, cache_dir: Path, *, keepalive: float = live.KEEPALIVE) -> Flask:
    """The web view of ``cluster``. Thumbnails and downloaded objects go
    under ``cache_dir``/PROJECT/BUCKET (media.py); ``keepalive``: the
    longest a quiet event stream stays silent."""
    app = Flask(__name__)
    root = cache_dir / cluster.settings.project / cluster.settings.bucket
    app.extensions["povstorm"] = UiState(cluster, Media(cluster.blobs, root), keepalive)
    app.register_blueprint(ui)
    app.register_error_handler(PovstormError, _error)
    return app


def _state() -> UiState:
    found: UiState = current_app.extensions["povstorm"]
    return found


def _error(exc: PovstormError) -> tuple[Any, int]:
    status = verdict(exc).http_status
    if request.path.startswith("/api/"):
        return {"error": str(exc)}, status
    return render_template("error.html", message=str(exc)), status


@ui.url_value_preprocessor
def _check_job_id(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Every route of one job takes a well-formed id, before any read (SpecError: 400)."""
    if values and "job_id" in values:
        check_job_id(values["job_id"])


@ui.before_request
def _json_posts_only() -> Any:
    """An action must come from this view's script: a POST of JSON, which a
    page of another site cannot send without CORS, which this server never
    grants (a plain form post from anywhere could otherwise cancel a job)."""
    if request.method == "POST" and not request.is_json:
        return {"error": "an action is a POST of JSON"}, 415
    return None


def _json(data: Any, status: int = 200) -> Response:
    return Response(to_json(data), status=status, mimetype="application/json")


# --- pages ------------------------------------------------------------------------------


@ui.get("/")
def jobs_page() -> str:
    rows = [job_row(j) for j in _state().cluster.jobs(limit=JOBS_SHOWN)]
    return render_template("jobs.html", rows=rows)


@ui.get("/jobs/<job_id>")
def job_page(job_id: str) -> str:
    job, page, units = _job_and_page(job_id)
    return render_template("job.html", job=job, page=page, units=units)


def _job_and_page(job_id: str) -> tuple[dict[str, Any], Page, list[dict[str, Any]]]:
    """The job's payload, the page of its grid asked for (``?page=N``) and
    that page's units: a job read, its shards and one query of a page."""
    cluster = _state().cluster
    view = cluster.ledger.view(job_id)
    page = Page.of(view.expected, request.args.get("page", 1, type=int))
    records = live.page_records(cluster, job_id, page)
    units = [unit_row(job_id, r) for r in records]
    return job_payload(cluster.status_of(view), view.shards), page, units


# --- JSON --------------------------------------------------------------------------------


@ui.get("/api/jobs")
def jobs_json() -> Response:
    limit = request.args.get("limit", JOBS_SHOWN, type=int)
    return _json([job_row(j) for j in _state().cluster.jobs(limit=max(1, min(limit, 500)))])


@ui.get("/api/jobs/<job_id>")
def job_json(job_id: str) -> Response:
    job, page, units = _job_and_page(job_id)
    return _json({"job": job, "page": page.as_dict(), "units": units})


@ui.get("/api/jobs/<job_id>/units/<int:unit>")
def unit_json(job_id: str, unit: int) -> Response:
    """One unit opened from the grid, with POV-Ray's output of each attempt."""
    cluster = _state().cluster
    logs = cluster.logs(job_id, unit=unit)  # also says if the job or unit does not exist
    record = cluster.ledger.unit_record(job_id, unit) or {"unit": unit}
    return _json(unit_detail(job_id, record, logs))


# --- live --------------------------------------------------------------------------------


def _stream(events: Any) -> Response:
    response = Response(stream_with_context(events), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front must not hold events
    return response


@ui.get("/events/jobs")
def jobs_events() -> Response:
    s = _state()
    return _stream(live.jobs_events(s.cluster, JOBS_SHOWN, s.streams, s.keepalive))


@ui.get("/events/jobs/<job_id>")
def job_events(job_id: str) -> Response:
    s = _state()
    job = s.cluster.ledger.require_job(job_id)  # an unknown job: 404, and the browser stops
    page = Page.of(int(job.get("units_expected") or 0), request.args.get("page", 1, type=int))
    return _stream(live.job_events(s.cluster, job_id, page, s.streams, s.keepalive))


# --- actions -----------------------------------------------------------------------------


@ui.post("/api/jobs/<job_id>/cancel")
def cancel(job_id: str) -> Response:
    result = _state().cluster.cancel(job_id)
    return _json({"state": result, "message": f"job {job_id}: {result}"})


@ui.post("/api/jobs/<job_id>/retry")
def retry(job_id: str) -> Response:
    count = _state().cluster.retry(job_id)
    return _json({"requeued": count, "message": f"requeued {count} frame(s)"})


@ui.post("/api/jobs/<job_id>/restitch")
def restitch(job_id: str) -> Response:
    """Another video of a done job (``Cluster.restitch``); settings left
    out are the job's own. Answers once the video is made or after
    RESTITCH_WAIT (202: the job's stream shows it when it is made)."""
    body = request.get_json(silent=True) or {}
    settings = {k: body[k] for k in ("fps", "codec", "crf") if body.get(k) not in (None, "")}
    try:
        settings.update({k: int(settings[k]) for k in ("fps", "crf") if k in settings})
    except (TypeError, ValueError):
        raise UserError("fps and crf are whole numbers") from None
    made = _restitch_soon(_state().cluster, job_id, settings)
    if made is None:
        return _json({"message": "stitching: the video appears here when it is made"}, 202)
    return _json({"message": f"video {made.object}", "object": made.object})


def _restitch_soon(cluster: Cluster, job_id: str, settings: dict[str, Any]) -> Restitched | None:
    """``cluster.restitch`` in a thread of its own (a stitch takes as long
    as it takes); its result, or None if it is still stitching after
    RESTITCH_WAIT. An error raised in time is raised here; a later one is
    logged, and the job's ``videos`` entry, which the page shows, has it."""
    outcome: queue.Queue[Restitched | PovstormError] = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            outcome.put(cluster.restitch(job_id, **settings))
        except PovstormError as exc:
            log.warning("re-stitch of %s: %s", job_id, exc)
            outcome.put(exc)

    threading.Thread(target=run, name=f"restitch-{job_id}", daemon=True).start()
    try:
        result = outcome.get(timeout=RESTITCH_WAIT)
    except queue.Empty:
        return None
    if isinstance(result, PovstormError):
        raise result
    return result


# --- frames, thumbnails, videos ---------------------------------------------------------


def _generation() -> int | None:
    return request.args.get("g", type=int)


@ui.get("/jobs/<job_id>/thumbs/<int:unit>.png")
def thumbnail(job_id: str, unit: int) -> Response:
    generation = _generation()
    if generation is None:
        abort(400, "a thumbnail is named by its frame's generation: ?g=N")
    response = send_file(_state().media.thumbnail(job_id, unit, generation), mimetype="image/png")
    response.headers["Cache-Control"] = IMMUTABLE
    return response


@ui.get("/jobs/<job_id>/frames/<int:unit>.png")
def frame(job_id: str, unit: int) -> Response:
    response = send_file(_state().media.object(frame_object(job_id, unit)), mimetype="image/png")
    if _generation() is not None:
        response.headers["Cache-Control"] = IMMUTABLE
    return response


def _object(name: str) -> Response:
    """An object with Range support (a video seeks) and revalidation."""
    response = send_file(_state().media.object(name), conditional=True)
    response.headers["Cache-Control"] = "no-cache"
    return response


@ui.get("/jobs/<job_id>/video")
def video(job_id: str) -> Response:
    name = _state().cluster.ledger.require_job(job_id).get("video")
    if not name:
        abort(404, f"job {job_id} has no video yet")
    return _object(str(name))


@ui.get("/jobs/<job_id>/poster.png")
def poster(job_id: str) -> Response:
    return _object(poster_object(job_id))


@ui.get("/jobs/<job_id>/videos/<key>")
def restitched(job_id: str, key: str) -> Response:
    return _object(restitch_object(job_id, check_video_key(key)))
