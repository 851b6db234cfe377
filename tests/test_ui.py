"""The web view (``povstorm ui``, povstorm/ui/).

Two tiers. The routes through Flask's test client on the emulators, each
test with a ledger of its own: the JSON a page is drawn from (with the
cost), thumbnails made once, one page of a 10,000-frame job, the event
streams, the actions. Then a real browser (Debian's headless Chromium,
driven by Selenium through Debian's chromedriver) on the session's farm,
against the UI served by waitress: a job page that fills as frames land and
reaches done with no reload, and a failed frame's log, then retry, from the
page. Screenshots go to tests/artifacts/ui/.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from fixtures.common import POVSTORM_CLI, job_doc, povray_of_frame, run_cli, wait_until
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from povstorm.client import Cluster
from povstorm.cloud.clients import Clients
from povstorm.core.naming import frame_object, log_object, video_object
from povstorm.core.schemas import load_job_spec
from povstorm.core.settings import Settings
from povstorm.ledger.ledger import Ledger
from povstorm.ui import create_app, make_server, stop_streams
from povstorm.ui.live import Streams
from povstorm.ui.views import PAGE_SIZE

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


# --- the routes, through Flask's test client ----------------------------------------


@pytest.fixture
def app(settings: Settings, clients: Clients, tmp_path: Path) -> Iterator[Flask]:
    """The web view of this test's own ledger (and the stack's bucket), with
    streams that speak at least every second."""
    app = create_app(Cluster(settings=settings, clients=clients), tmp_path / "ui", keepalive=1.0)
    yield app
    stop_streams(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def new_job(ledger: Ledger, job_id: str, frames: int) -> None:
    spec = load_job_spec({"povray": {"args": ["s.ini"], "frames": {"first": 1, "last": frames}}})
    assert ledger.create_job(spec, job_id)[1]
    ledger.mark_dispatched(job_id)


def land_frame(clients: Clients, ledger: Ledger, job_id: str, unit: int, seconds: float) -> int:
    """A 320x240 frame in the bucket, counted by the ledger as a worker's
    would be; returns its generation."""
    picture = io.BytesIO()
    Image.new("RGB", (320, 240), (40 * unit % 256, 120, 200)).save(picture, "PNG")
    generation = clients.blobs.upload_bytes(
        frame_object(job_id, unit), picture.getvalue(), content_type="image/png"
    )
    ledger.record_frame(
        frame_object(job_id, unit), generation, {"render_seconds": str(seconds)}, size=1000
    )
    return generation


def job_id_for(name: str) -> str:
    return f"ui-{name}-{os.urandom(3).hex()}"


def test_the_jobs_list_and_a_job_as_json_with_its_cost(
    client: FlaskClient, clients: Clients, ledger: Ledger
) -> None:
    job_id = job_id_for("json")
    new_job(ledger, job_id, 3)
    land_frame(clients, ledger, job_id, 1, 0.75)

    listed = client.get("/api/jobs").get_json()
    assert [r["job_id"] for r in listed] == [job_id] and listed[0]["url"] == f"/jobs/{job_id}"

    reply = client.get(f"/api/jobs/{job_id}").get_json()
    job = reply["job"]
    assert (job["state"], job["total"], job["done"], job["failed"]) == ("rendering", 3, 1, 0)
    assert job["cost"]["frames"] == 1 and job["cost"]["render_seconds"] == 0.75
    assert job["cost"]["total_usd"] > 0 and "would cost $" in job["cost_line"]
    assert job["actions"] == {"cancel": True, "retry": False, "restitch": False}
    assert [u["state"] for u in reply["units"]] == ["pending", "done", "pending"]
    done = reply["units"][1]
    assert done["frame"] == 2 and done["seconds"] == 0.75
    assert done["thumb"].startswith(f"/jobs/{job_id}/thumbs/1.png?g=")

    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and page.text.count('class="cell ') == 3


def test_the_video_is_served_in_ranges_for_the_player_to_seek(
    client: FlaskClient, clients: Clients, ledger: Ledger
) -> None:
    job_id = job_id_for("video")
    new_job(ledger, job_id, 1)
    assert client.get(f"/jobs/{job_id}/video").status_code == 404  # none yet
    name = video_object(job_id, "mp4")
    clients.blobs.upload_bytes(name, bytes(range(256)) * 4, content_type="video/mp4")
    ledger.job_ref(job_id).update({"video": name})  # as the stitch records it

    assert client.get(f"/api/jobs/{job_id}").get_json()["job"]["video_name"] == "video.mp4"
    part = client.get(f"/jobs/{job_id}/video", headers={"Range": "bytes=256-259"})
    assert part.status_code == 206 and part.mimetype == "video/mp4"
    assert part.data == bytes([0, 1, 2, 3])


def test_thumbnails_are_made_once_per_frame_not_per_page_view(
    app: Flask, client: FlaskClient, clients: Clients, ledger: Ledger
) -> None:
    job_id = job_id_for("thumbs")
    new_job(ledger, job_id, 4)
    for unit in range(3):
        land_frame(clients, ledger, job_id, unit, 0.1)
    media = app.extensions["povstorm"].media

    def view_the_page() -> list[str]:
        page = client.get(f"/jobs/{job_id}")
        thumbs = re.findall(r'src="(/jobs/[^"]+/thumbs/[^"]+)"', page.text)
        for url in thumbs:
            reply = client.get(url.replace("&amp;", "&"))
            assert reply.status_code == 200 and reply.mimetype == "image/png"
            assert "immutable" in reply.headers["Cache-Control"]
            with Image.open(io.BytesIO(reply.data)) as thumb:
                assert thumb.size == (160, 120)  # the 320x240 frame, scaled once
        return thumbs

    assert len(view_the_page()) == 3 and media.thumbnails_made == 3
    assert len(view_the_page()) == 3 and media.thumbnails_made == 3  # the second view made none


def test_a_10000_frame_job_is_one_page_of_the_grid_and_its_stream_one_page_of_units(
    client: FlaskClient, ledger: Ledger
) -> None:
    job_id = job_id_for("big")
    new_job(ledger, job_id, 10_000)

    started = time.monotonic()
    page = client.get(f"/jobs/{job_id}")
    took = time.monotonic() - started
    assert page.status_code == 200 and page.text.count('class="cell ') == PAGE_SIZE
    assert "page 1 of 50" in page.text
    assert took < 5.0, f"the page of a 10,000-frame job took {took:.1f}s"

    last = client.get(f"/api/jobs/{job_id}?page=50").get_json()
    assert [u["unit"] for u in last["units"]] == list(range(9800, 10_000))
    assert last["page"] == {"number": 50, "count": 50, "first": 9800, "end": 10_000, "size": 200}
    assert len(last["job"]["shards"]) == 64  # the overview of the whole job

    with EventStream(client, f"/events/jobs/{job_id}?page=2") as stream:
        units = stream.until("units")
    assert [u["unit"] for u in units] == list(range(200, 400))


def test_the_job_stream_sends_a_frame_as_it_lands_and_only_what_changed(
    client: FlaskClient, clients: Clients, ledger: Ledger
) -> None:
    job_id = job_id_for("live")
    new_job(ledger, job_id, 3)
    with EventStream(client, f"/events/jobs/{job_id}") as stream:
        assert stream.until("job")["state"] == "rendering"
        assert len(stream.until("units")) == 3  # the page as it is
        land_frame(clients, ledger, job_id, 0, 0.2)
        (changed,) = stream.until("units")  # then only the unit that changed
        assert changed["unit"] == 0 and changed["state"] == "done" and changed["thumb"]
        assert stream.until("job", lambda j: j["done"] == 1)["total"] == 3


def test_the_jobs_stream_lists_a_new_job_and_a_running_jobs_frames_live(
    client: FlaskClient, clients: Clients, ledger: Ledger
) -> None:
    first, second = job_id_for("one"), job_id_for("two")
    new_job(ledger, first, 2)
    with EventStream(client, "/events/jobs") as stream:
        assert [r["job_id"] for r in stream.until("jobs")] == [first]
        new_job(ledger, second, 2)
        rows = stream.until("jobs", lambda rows: len(rows) == 2)
        assert [r["job_id"] for r in rows] == [second, first]
        # One frame of two: its shard is not full, so the job document's
        # own count is still 0; the row's comes from the shard listener.
        land_frame(clients, ledger, first, 0, 0.1)
        rows = stream.until("jobs", lambda rows: rows[1]["done"] == 1)
    assert job_doc(ledger, first)["units_done"] == 0


def test_actions_call_the_cluster_and_answer_in_one_line(
    client: FlaskClient, clients: Clients, ledger: Ledger
) -> None:
    job_id = job_id_for("acts")
    new_job(ledger, job_id, 2)
    ledger.record_failure(job_id, 0, 1, "Parse Error: boom", final=True)
    clients.blobs.upload_bytes(log_object(job_id, 0, 1), b"POV-Ray says: boom\n")

    unit = client.get(f"/api/jobs/{job_id}/units/0").get_json()
    assert unit["state"] == "failed" and unit["error"] == "Parse Error: boom"
    assert unit["logs"] == [{"object": log_object(job_id, 0, 1), "text": "POV-Ray says: boom\n"}]

    # Not JSON: refused before anything runs (a form on another site could post it).
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 415
    refused = client.post(f"/api/jobs/{job_id}/retry", json={})
    assert refused.status_code == 400 and "only a failed job" in refused.get_json()["error"]
    refused = client.post(f"/api/jobs/{job_id}/restitch", json={"fps": 12})
    assert refused.status_code == 400 and "only a done job" in refused.get_json()["error"]
    cancelled = client.post(f"/api/jobs/{job_id}/cancel", json={})
    assert cancelled.get_json() == {"state": "cancelled", "message": f"job {job_id}: cancelled"}

    assert client.get("/api/jobs/no-such-job").get_json() == {"error": "unknown job: no-such-job"}
    assert client.get("/jobs/no-such-job").status_code == 404
    assert client.get("/events/jobs/no-such-job").status_code == 404


class EventStream:
    """Server-sent events read from a streamed test-client response. An
    event passed over while waiting for another is kept for a later wait:
    two events of one change may come in either order."""

    def __init__(self, client: FlaskClient, url: str) -> None:
        self._response = client.get(url, buffered=False)
        assert self._response.status_code == 200, self._response.status_code
        self._chunks: Iterator[bytes] = iter(self._response.response)  # type: ignore[arg-type]
        self._buffer = ""
        self._kept: list[tuple[str, Any]] = []

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *_: object) -> None:
        self._response.close()  # ends the generator, and its listeners with it

    def _next(self) -> tuple[str, Any] | None:
        while "\n\n" not in self._buffer:
            self._buffer += next(self._chunks).decode()
        block, self._buffer = self._buffer.split("\n\n", 1)
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" not in fields:
            return None  # a keep-alive
        return fields["event"], json.loads(fields["data"])

    def until(self, event: str, accept: Any = None, timeout: float = 30.0) -> Any:
        """The data of the first ``event`` that ``accept`` accepts. The stream
        speaks at least every second, so the deadline is checked as often."""

        def wanted(item: tuple[str, Any]) -> bool:
            return item[0] == event and (accept is None or bool(accept(item[1])))

        for kept in self._kept:
            if wanted(kept):
                self._kept.remove(kept)
                return kept[1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self._next()
            if item is None:
                continue
            if wanted(item):
                return item[1]
            self._kept.append(item)
        raise AssertionError(f"no {event} event within {timeout:.0f}s")


# --- a real browser on the farm --------------------------------------------------------

# Each frame parses a loop first: about half a second of POV-Ray a frame,
# so the page is watched while the frames land.
SLOW_SCENE = (
    "camera { location <0,0,-3> look_at 0 }\n"
    "light_source { <0,5,-5> rgb 1 }\n"
    "#local I = 0;\n#while (I < 150000) #local I = I + 1; #end\n"
    "sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium from Debian, driven through Debian's chromedriver
    (the same version by construction): nothing is downloaded."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: scripts/install-system-deps.sh installs them",
            pytrace=False,
        )
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1800")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@dataclass
class Served:
    url: str
    app: Flask

    @property
    def streams(self) -> Streams:
        found: Streams = self.app.extensions["povstorm"].streams
        return found


@pytest.fixture
def served(stack_env: dict[str, str], tmp_path: Path) -> Iterator[Served]:
    """The web view of the session's farm, served by waitress as ``povstorm ui`` serves it."""
    app = create_app(Cluster.local(start=False), tmp_path / "ui", keepalive=2.0)
    server = make_server(app, "127.0.0.1", 0)
    loop = threading.Thread(target=server.run, name="ui-server", daemon=True)
    loop.start()
    yield Served(f"http://127.0.0.1:{server.effective_port}", app)
    stop_streams(app)
    server.task_dispatcher.shutdown(timeout=5)  # its threads are free: the streams ended
    # Closed in the loop's own thread (waitress's trigger runs the thunk
    # there): closed from this one, the loop's select() could be handed the
    # closed socket (EBADF, a warning in CI).
    server.trigger.pull_trigger(server.close)
    loop.join(timeout=5)


def submit(stack_env: dict[str, str], cwd: Path, name: str, scene: str, *args: str) -> str:
    """Render ``scene`` as ``name`` with ``render --no-wait``; the job's id."""
    (cwd / name).write_text(scene)
    rendered = run_cli(
        stack_env, "render", name, "+W32", "+H24", "--no-check", "--no-wait", *args, cwd=cwd
    )
    assert rendered.returncode == 0, rendered.stderr
    return rendered.stdout.strip()


def page_state(driver: WebDriver) -> dict[str, Any]:
    """What the job page shows now: its state, its cells' states, how many
    thumbnails have loaded, and whether the page is the one first loaded."""
    found: dict[str, Any] = driver.execute_script(
        """
        const cells = [...document.querySelectorAll('.cell')];
        return {
          state: document.body.dataset.state,
          cells: cells.map((c) => c.className.replace('cell ', '')),
          thumbs: cells.filter((c) => { const i = c.querySelector('img');
                                         return i.complete && i.naturalWidth > 0; }).length,
          same_page: window.firstLoad === true,
        };
        """
    )
    return found


def wait_for(
    driver: WebDriver, what: str, check: Callable[[dict[str, Any]], object], timeout: float = 180.0
) -> dict[str, Any]:
    """The page's state once ``check`` accepts it (WebDriverWait, every 0.2 s)."""
    seen: dict[str, Any] = {}

    def accepted(d: WebDriver) -> bool:
        seen.update(page_state(d))
        return bool(check(seen))

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.2).until(accepted)
    except Exception as exc:
        raise AssertionError(f"the page never showed {what}; last: {seen}") from exc
    return seen


def open_page(driver: WebDriver, url: str) -> dict[str, Any]:
    driver.get(url)
    driver.execute_script("window.firstLoad = true;")  # gone if the page ever reloads
    return page_state(driver)


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


@pytest.mark.e2e
def test_the_job_page_fills_live_and_reaches_done_without_a_reload(
    browser: WebDriver, served: Served, stack_env: dict[str, str], tmp_path: Path
) -> None:
    job_id = submit(stack_env, tmp_path, "ui-fill.pov", SLOW_SCENE, "+KFI1", "+KFF12")
    at_load = open_page(browser, f"{served.url}/jobs/{job_id}")
    assert at_load["state"] != "done" and at_load["cells"].count("done") < 12, at_load

    wait_for(browser, "a frame's thumbnail", lambda s: s["thumbs"] >= 1)
    shot(browser, "1-job-filling")
    done = wait_for(browser, "the job done", lambda s: s["state"] == "done" and s["thumbs"] == 12)
    assert done["cells"] == ["done"] * 12 and done["same_page"], done
    wait_for(
        browser,
        "the video playable",
        lambda _s: (
            browser.execute_script("return document.querySelector('#media video').readyState") >= 1
        ),
    )
    assert "would cost $" in browser.find_element("id", "cost").text
    assert len(browser.find_elements("css selector", "#chart rect.time")) == 12
    shot(browser, "2-job-done")

    # Re-stitch at 12 fps: the new video is listed, with its link, once made.
    browser.find_element("css selector", "#restitch-options summary").click()
    browser.find_element("css selector", "#restitch-options input[name=fps]").send_keys("12")
    browser.find_element("id", "restitch").click()
    wait_for(
        browser,
        "the re-stitched video listed",
        lambda _s: (
            browser.execute_script(
                "return [...document.querySelectorAll('#videos li a')].map((a) => a.textContent)"
            )
            == ["h264-12fps-crf20-mp4"]
        ),
    )
    # The button's answer: the video made, or on its way (made within 3 s or not).
    wait_for(
        browser,
        "the re-stitch's answer",
        lambda _s: re.match(
            r"video videos/.+/video-h264-12fps-crf20\.mp4$|stitching",
            browser.find_element("id", "action-result").text,
        ),
    )
    shot(browser, "3-job-restitched")

    browser.get(served.url)
    # The jobs page lists it, as drawn from its own stream (which redraws the rows).
    wait_for(
        browser,
        "the job in the jobs list",
        lambda _s: browser.execute_script(
            "return document.getElementById('live').textContent === 'live'"
            " && !!document.querySelector(`#jobs a[href$='/jobs/${arguments[0]}']`)",
            job_id,
        ),
    )
    # The job page's stream (and its listeners) ended with the page: only
    # the jobs page's is left, once the server's next write finds it gone.
    wait_until(lambda: served.streams.count == 1, 30, "the job page's stream to end")
    shot(browser, "4-jobs")


@pytest.mark.e2e
def test_a_failed_frame_shows_its_log_and_retry_from_the_page_completes_the_job(
    browser: WebDriver, served: Served, stack_env: dict[str, str], tmp_path: Path
) -> None:
    # Frame 2 parses a long loop, and its POV-Ray is killed meanwhile: a
    # transient fault from outside the job (a lost machine), so that its
    # retry succeeds (as tests/test_cli.py's retry test does it).
    slow = (
        "#if (frame_number = 2)\n#local I = 0;\n#while (I < 1500000) #local I = I + 1; #end\n#end\n"
    )
    # A name of its own: the POV-Ray killed is this test's, whatever else runs.
    name = "ui-retry.pov"
    one_try = ("--max-attempts", "1", "--frames-per-unit", "1")
    job_id = submit(stack_env, tmp_path, name, SLOW_SCENE + slow, "+KFI1", "+KFF4", *one_try)
    open_page(browser, f"{served.url}/jobs/{job_id}")
    os.kill(wait_until(lambda: povray_of_frame(name, 2), 120, "frame 2's POV-Ray"), 9)

    failed = wait_for(browser, "the job failed", lambda s: s["state"] == "failed")
    assert failed["cells"] == ["done", "failed", "done", "done"], failed
    browser.find_element("css selector", '.cell[data-unit="1"]').click()
    wait_for(
        browser,
        "the failed frame's error and log",
        lambda _s: (
            "attempt 1" in browser.find_element("id", "detail-body").text
            and browser.find_elements("css selector", "#detail-body pre.log")
        ),
    )
    shot(browser, "5-failed-frame-log")

    browser.find_element("id", "detail-close").click()
    browser.find_element("id", "retry").click()
    wait_for(
        browser,
        "the retry's answer",
        lambda _s: browser.find_element("id", "action-result").text == "requeued 1 frame(s)",
    )
    done = wait_for(browser, "the job done", lambda s: s["state"] == "done" and s["thumbs"] == 4)
    assert done["cells"] == ["done"] * 4 and done["same_page"], done
    # Frame 2's long loop makes it the chart's hot spot.
    hot = browser.execute_script(
        "return [...document.querySelectorAll('#chart rect.time.hot')].map((r) => r.dataset.unit)"
    )
    assert hot == ["1"], hot
    shot(browser, "6-retried-done")


def test_the_ui_command_serves_until_interrupted(stack_env: dict[str, str], tmp_path: Path) -> None:
    """``povstorm ui`` as a user starts it: one line with the URL, the jobs
    page there, and Ctrl-C ends it at once, an open page's stream with it."""
    process = subprocess.Popen(
        [*POVSTORM_CLI, "ui", "--port", "0"],
        cwd=tmp_path,
        env=stack_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        url = line.split("povstorm ui: ", 1)[1].split()[0]
        assert "<h1>Jobs</h1>" in requests.get(url, timeout=30).text
        with requests.get(f"{url}events/jobs", stream=True, timeout=30) as stream:
            assert next(stream.iter_lines()) == b"retry: 3000"
            interrupted = time.monotonic()
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
        assert time.monotonic() - interrupted < 4.0  # not a keep-alive's wait
    finally:
        if process.poll() is None:
            process.kill()
