"""Notifications and job events, on the session's local stack.

A job with ``notify`` (``povstorm render --notify URL``, ``Job(notify=...)``)
gets one signed POST of its summary at a receiver when it ends, also when the
receiver's first answer is a 500 (the job_event function answers 500 and the
push subscription delivers the event again after its backoff). Every state
change of a job is on the ``job_events`` topic, in order. The receiver here is
an ``http.server`` in a thread of the test process; the signature is checked
with the stack's own secret, as README shows a receiver doing it.

The in-process tests drive ``farm/notify.py`` and the reconciler in a project
of their own: the give-up after ATTEMPTS, a delivery that is not repeated,
and the reconciler publishing again the end of a job whose event was lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fixtures.common import run_cli, wait_until

from povstorm.client import Cluster, Job, WorkUnit
from povstorm.cloud.clients import Clients
from povstorm.cloud.pubsub import subscriber_client
from povstorm.core.errors import SpecError, TransientError
from povstorm.core.model import DeliveryState, JobEvent, JobState
from povstorm.core.names import ENV, Namespace
from povstorm.core.schemas import load_job_event, load_job_spec
from povstorm.core.settings import EMULATOR_VARS, Settings
from povstorm.farm import notify
from povstorm.farm.reconcile import Deadlines, reconcile
from povstorm.ledger.ledger import Ledger
from povstorm_local.stack import LocalStack
from povstorm_local.state import StackState

SCENE = (
    "camera { location <0,0,-3> look_at 0 }\n"
    "light_source { <0,5,-5> rgb 1 }\n"
    "sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
)
# A unit that parses for seconds (a loop): its job is still rendering when
# the test cancels it right after submitting.
SLOW_UNIT = (
    "#declare I = 0;\n#while (I < 6000000)\n  #declare I = I + 1;\n#end\n"
    "camera { location <0,0,-3> look_at 0 }\nsphere { 0, 1 pigment { rgb 1 } }\n"
)
# What a developer's shell may carry that would point the CLI elsewhere.
FOREIGN = {*ENV.values(), *EMULATOR_VARS, "POVSTORM_HOME", "GOOGLE_CLOUD_PROJECT"}


def verify(secret: str, body: bytes, signature: str) -> bool:
    """A receiver's check of X-Povstorm-Signature (the README's snippet)."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


# --- the receiver ------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server in a thread that records every POST and answers each
    path with the statuses planned for it, in order, then 200."""

    server: ThreadingHTTPServer
    posts: list[Post] = field(default_factory=list)
    plans: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, *statuses: int) -> str:
        """A fresh hook URL whose first answers are ``statuses``."""
        path = f"/hooks/{uuid.uuid4().hex[:10]}"
        with self.lock:
            self.plans[path] = list(statuses)
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def answer(self, path: str) -> int:
        with self.lock:
            planned = self.plans.get(path)
            return planned.pop(0) if planned else 200

    def to(self, url: str) -> list[Post]:
        path = "/" + url.split("/", 3)[3]
        with self.lock:
            return [p for p in self.posts if p.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = receiving.answer(self.path)
            with receiving.lock:
                receiving.posts.append(Post(self.path, dict(self.headers), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiving = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiving
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- the job_events topic --------------------------------------------------------------


@dataclass
class EventTap:
    """A pull subscription on a project's job_events topic; every event it
    received, by job."""

    path: str
    subscriber: Any
    events: dict[str, list[JobEvent]] = field(default_factory=dict)

    @classmethod
    def create(cls, project: str, namespace: str, pubsub_host: str) -> EventTap:
        subscriber = subscriber_client(pubsub_host)
        path = f"projects/{project}/subscriptions/test-notify-{uuid.uuid4().hex[:8]}"
        topic = f"projects/{project}/topics/{Namespace(namespace).topic('job_events')}"
        subscriber.create_subscription(
            request={"name": path, "topic": topic, "ack_deadline_seconds": 10}
        )
        return cls(path, subscriber)

    def pull(self) -> None:
        reply = self.subscriber.pull(
            request={"subscription": self.path, "max_messages": 100}, timeout=5
        )
        if not reply.received_messages:
            return
        self.subscriber.acknowledge(
            request={
                "subscription": self.path,
                "ack_ids": [m.ack_id for m in reply.received_messages],
            }
        )
        for m in reply.received_messages:
            event = load_job_event(m.message.data)
            assert dict(m.message.attributes) == {"job_id": event.job_id, "state": event.state}
            self.events.setdefault(event.job_id, []).append(event)

    def until(self, job_id: str, state: JobState, timeout: float = 60) -> list[JobEvent]:
        """The job's events once one says ``state``, in the order of their times."""

        def arrived() -> list[JobEvent] | None:
            self.pull()
            events = self.events.get(job_id, [])
            return (
                sorted(events, key=lambda e: e.at)
                if any(e.state == state for e in events)
                else None
            )

        return wait_until(arrived, timeout, f"a {state} event of {job_id}")

    def close(self) -> None:
        self.subscriber.delete_subscription(request={"subscription": self.path})
        self.subscriber.close()


@pytest.fixture(scope="module")
def tap(stack: StackState) -> Iterator[EventTap]:
    """The session stack's job_events, from before this module's jobs."""
    events = EventTap.create(stack.project, stack.namespace, stack.components["pubsub"].address)
    try:
        yield events
    finally:
        events.close()


# --- a job rendered with --notify, its receiver answering 500 first -------------------------


@dataclass(frozen=True)
class Notified:
    job_id: str
    url: str
    secret: str


@pytest.fixture(scope="module")
def notified(
    stack: StackState, receiver: Receiver, tap: EventTap, tmp_path_factory: pytest.TempPathFactory
) -> Notified:
    """``povstorm render --notify URL`` of a 2-frame 32x24 job, as a user runs
    it, the receiver answering its first POST with a 500."""
    work = tmp_path_factory.mktemp("notify-render")
    (work / "ball.pov").write_text(SCENE)
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    stack.apply_env(env)
    url = receiver.url(500)
    rendered = run_cli(
        env, "render", "ball.pov", "+W32", "+H24", "+KFI1", "+KFF2", "--notify", url,
        "-o", "ball.mp4", cwd=work,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    job_id = rendered.stderr.split("job ", 1)[1].split(":")[0]
    return Notified(job_id, url, LocalStack(Path(stack.home)).notify_secret())


def delivered(ledger: Ledger, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job's delivery record once it is settled (delivered or failed)."""

    def settled() -> dict[str, Any] | None:
        record = (ledger.get_job(job_id) or {}).get("delivery") or {}
        return record if record.get("state") in ("delivered", "failed") else None

    return wait_until(settled, timeout, f"the notification of {job_id} to settle")


@pytest.mark.stack
@pytest.mark.e2e
def test_a_done_job_is_notified_once_signed_also_after_a_500(
    stack: StackState, receiver: Receiver, notified: Notified
) -> None:
    with Cluster.local(Path(stack.home), start=False) as cluster:
        record = delivered(cluster.ledger, notified.job_id)
        job = cluster.status(notified.job_id)
    posts = receiver.to(notified.url)
    # The first POST got the 500, the redelivery the 200: one accepted.
    assert [p.status for p in posts] == [500, 200]
    accepted = posts[-1]
    delivery = f"{notified.job_id}.done.0"
    assert {p.headers["X-Povstorm-Delivery"] for p in posts} == {delivery}
    assert [p.headers["X-Povstorm-Attempt"] for p in posts] == ["1", "2"]
    assert verify(notified.secret, accepted.body, accepted.headers["X-Povstorm-Signature"])
    assert not verify("another secret", accepted.body, accepted.headers["X-Povstorm-Signature"])
    assert accepted.headers["Content-Type"] == "application/json"
    summary = accepted.json
    assert int(accepted.headers["X-Povstorm-Timestamp"]) == int(
        dt.datetime.fromisoformat(summary["sent_at"]).timestamp()
    )
    assert summary["delivery"] == delivery
    assert summary["job_id"] == notified.job_id and summary["name"] == "ball"
    assert summary["state"] == "done"
    assert summary["frames"] == {"expected": 2, "done": 2, "failed": 0}
    assert summary["video"] == job["video"]
    assert summary["video_url"] == f"gs://{stack.bucket}/{job['video']}"
    assert summary["poster"] == job["poster"]
    assert summary["finished_at"] == job["finished_at"].isoformat()
    assert summary["errors"] == [] and summary["error_count"] == 0
    assert summary["stats"]["units"] == 2 and "frame_profile" not in summary["stats"]
    # The delivery record on the job says so.
    assert record["id"] == delivery and record["url"] == notified.url
    assert record["state"] == DeliveryState.DELIVERED and record["attempts"] == 2
    assert record["status"] == 200 and record["delivered_at"] >= record["first_at"]
    assert record["sending_until"] is None


@pytest.mark.stack
@pytest.mark.e2e
def test_status_shows_the_delivery(
    stack_env: dict[str, str], notified: Notified, tmp_path: Path
) -> None:
    with Cluster.local(start=False) as cluster:
        delivered(cluster.ledger, notified.job_id)
    text = run_cli(stack_env, "status", notified.job_id, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"notify: delivered to {notified.url} (2 attempts, at " in text.stdout
    as_json = json.loads(
        run_cli(stack_env, "status", notified.job_id, "--json", cwd=tmp_path).stdout
    )
    assert as_json["delivery"]["state"] == "delivered" and as_json["delivery"]["attempts"] == 2


@pytest.mark.stack
@pytest.mark.e2e
def test_job_events_carry_each_state_change_of_a_job_in_order(
    tap: EventTap, notified: Notified
) -> None:
    events = tap.until(notified.job_id, JobState.DONE)
    assert [e.state for e in events] == ["submitted", "rendering", "stitching", "done"]
    # Each event's previous state, where its mover knew it, is the one before.
    for before, event in itertools.pairwise(events):
        assert event.previous in (None, before.state)
    assert events[1].previous == "submitted" and events[3].previous == "stitching"


@pytest.mark.stack
@pytest.mark.e2e
def test_a_cancelled_job_is_notified_with_state_cancelled(
    stack: StackState, receiver: Receiver, tap: EventTap, notified: Notified
) -> None:
    url = receiver.url()
    with Cluster.local(Path(stack.home), start=False) as cluster:
        job = Job(cluster, name="to-cancel", notify=url)
        job.extend(
            WorkUnit(inline={"slow.pov": SLOW_UNIT}, args=["+Islow.pov", "+W32", "+H24"])
            for _ in range(2)
        )
        job_id = job.submit()
        assert job.cancel() == "cancelled"
        record = delivered(cluster.ledger, job_id)
    (post,) = receiver.to(url)
    assert post.status == 200 and post.headers["X-Povstorm-Delivery"] == f"{job_id}.cancelled.0"
    assert verify(notified.secret, post.body, post.headers["X-Povstorm-Signature"])
    summary = post.json
    assert summary["job_id"] == job_id and summary["state"] == "cancelled"
    assert summary["frames"]["expected"] == 2 and summary["video"] is None
    assert record["state"] == "delivered" and record["attempts"] == 1
    events = tap.until(job_id, JobState.CANCELLED)
    assert events[-1].state == "cancelled" and events[-1].previous == "rendering"


@pytest.mark.stack
@pytest.mark.e2e
def test_a_job_without_notify_sends_nothing(
    stack: StackState, receiver: Receiver, tap: EventTap, tmp_path: Path
) -> None:
    before = len(receiver.posts)
    with Cluster.local(Path(stack.home), start=False) as cluster:
        job = Job(cluster, name="quiet")
        job.add(WorkUnit(inline={"ball.pov": SCENE}, args=["+Iball.pov", "+W32", "+H24"]))
        job_id = job.submit()
        assert job.wait(timeout=120).state == JobState.DONE
        tap.until(job_id, JobState.DONE)
        # The function took the job's end and found nothing to send.
        log = Path(stack.components["job_event"].log)
        wait_until(
            lambda: f"job {job_id} done: nothing to notify" in log.read_text(),
            60,
            "job_event to handle the end of the job",
        )
        assert "delivery" not in (cluster.ledger.get_job(job_id) or {})
    assert len(receiver.posts) == before


# --- in process: attempts, give-up, repairs -------------------------------------------------


@pytest.fixture
def notifying(project_topics: Settings) -> Clients:
    """Clients of a project of the test's own, with a signing secret."""
    return Clients.from_settings(project_topics.with_overrides(notify_secret="s3cret"))


def ended_job(clients: Clients, url: str) -> str:
    """A job with ``notify`` cancelled straight in the ledger: its end's event
    was never published (as if the publish after the commit had failed)."""
    ledger = Ledger(clients.db)
    job_id = f"n-{uuid.uuid4().hex[:12]}"
    spec = load_job_spec({"units": [{"args": ["+Ia.pov"]}], "notify": url})
    ledger.create_job(spec, job_id)
    assert ledger.cancel(job_id) == JobState.CANCELLED
    return job_id


@pytest.mark.stack
def test_a_delivery_is_given_up_after_its_attempts_and_never_repeated(
    notifying: Clients, receiver: Receiver
) -> None:
    url = receiver.url(*[503] * notify.ATTEMPTS)
    job_id = ended_job(notifying, url)
    event = JobEvent(job_id, JobState.CANCELLED)
    for attempt in range(1, notify.ATTEMPTS):
        with pytest.raises(TransientError, match=f"attempt {attempt} of {notify.ATTEMPTS}"):
            notify.on_job_event(notifying, event)
    assert notify.on_job_event(notifying, event) == f"given up after {notify.ATTEMPTS} attempts"
    record = Ledger(notifying.db).require_job(job_id)["delivery"]
    assert record["state"] == "failed" and record["attempts"] == notify.ATTEMPTS
    assert record["status"] == 503 and record["error"] == "HTTP 503"
    # Given up is final: the event again sends nothing.
    assert notify.on_job_event(notifying, event) == "already settled"
    posts = receiver.to(url)
    assert [p.status for p in posts] == [503] * notify.ATTEMPTS
    assert all(verify("s3cret", p.body, p.headers["X-Povstorm-Signature"]) for p in posts)


@pytest.mark.stack
def test_an_attempt_in_flight_holds_the_delivery_and_a_delivered_one_is_not_sent_again(
    notifying: Clients, receiver: Receiver
) -> None:
    url = receiver.url()
    job_id = ended_job(notifying, url)
    ledger = Ledger(notifying.db)
    delivery = f"{job_id}.cancelled.0"
    held = ledger.begin_delivery(job_id, delivery, url, lease=60)
    assert held is not None and held["attempts"] == 1
    event = JobEvent(job_id, JobState.CANCELLED)
    with pytest.raises(TransientError, match="in flight"):
        notify.on_job_event(notifying, event)  # a second delivery of the event waits
    assert receiver.to(url) == []
    ledger.end_delivery(job_id, delivery, DeliveryState.PENDING, status=None, error="lost")
    assert notify.on_job_event(notifying, event) == f"delivered to {url} (attempt 2)"
    assert notify.on_job_event(notifying, event) == "already settled"
    assert [p.status for p in receiver.to(url)] == [200]


@pytest.mark.stack
def test_the_reconciler_publishes_again_the_end_of_a_job_whose_event_was_lost(
    infra_stack: StackState, notifying: Clients, receiver: Receiver
) -> None:
    settings = notifying.settings
    tap = EventTap.create(
        settings.project, settings.namespace, infra_stack.components["pubsub"].address
    )
    try:
        url = receiver.url()
        job_id = ended_job(notifying, url)
        # Not yet: the end is younger than the deadline.
        assert reconcile(notifying).renotified == []
        now = Deadlines(notify=dt.timedelta(0))
        assert reconcile(notifying, now).renotified == [job_id]
        (event,) = tap.until(job_id, JobState.CANCELLED)
        assert notify.on_job_event(notifying, event) == f"delivered to {url} (attempt 1)"
        # Its delivery is on record: nothing to publish again.
        assert reconcile(notifying, now).renotified == []
    finally:
        tap.close()
    assert len(receiver.to(url)) == 1


@pytest.mark.stack
def test_the_reconciler_publishes_again_a_pending_delivery_whose_event_stopped(
    infra_stack: StackState, notifying: Clients, receiver: Receiver
) -> None:
    settings = notifying.settings
    tap = EventTap.create(
        settings.project, settings.namespace, infra_stack.components["pubsub"].address
    )
    try:
        url = receiver.url()
        job_id = ended_job(notifying, url)
        # An attempt failed, and the event's redelivery never came.
        ledger = Ledger(notifying.db)
        delivery = f"{job_id}.cancelled.0"
        assert ledger.begin_delivery(job_id, delivery, url, lease=60) is not None
        ledger.end_delivery(job_id, delivery, DeliveryState.PENDING, status=502, error="HTTP 502")
        begun = Deadlines(notify=dt.timedelta(0))
        assert reconcile(notifying, begun).renotified == []  # not stalled yet
        stalled = Deadlines(notify=dt.timedelta(0), notify_stalled=dt.timedelta(0))
        assert reconcile(notifying, stalled).renotified == [job_id]
        (event,) = tap.until(job_id, JobState.CANCELLED)
        assert notify.on_job_event(notifying, event) == f"delivered to {url} (attempt 2)"
        assert reconcile(notifying, stalled).renotified == []
    finally:
        tap.close()
    assert [p.status for p in receiver.to(url)] == [200]


def test_a_notify_url_must_be_http_or_https(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="notify: not an http or https URL"):
        load_job_spec({"units": [{}], "notify": "ftp://example.com/hook"})
    assert load_job_spec({"units": [{}], "notify": "https://example.com/h"}).notify
    # The CLI says so in one line, before a stack starts or anything is uploaded.
    (tmp_path / "ball.pov").write_text(SCENE)
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env["POVSTORM_HOME"] = str(tmp_path / "home")
    done = run_cli(env, "render", "ball.pov", "--notify", "mailto:me@example.com", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "povstorm: error: --notify mailto:me@example.com: not an http or https URL"
    )
    assert not (tmp_path / "home").exists()
