"""The cloud-only adapters against stand-ins on loopback: no network, no mocks
of the client libraries. Each stand-in is a small HTTP server speaking the
real wire protocol (Cloud Run Admin v2 REST, the OAuth token endpoint, the
GCE metadata server), so the libraries run their own code end to end.

* CloudRunStitchLauncher: run_v2.JobsClient over REST, pointed at a local
  server; we check the request it makes (path ``.../jobs/J:run`` and the
  container argument override carrying the job id) and the error mapping.
* IdTokenAuth: google-auth fetching an ID token with a service-account key we
  generate (its token_uri is our token endpoint), from a stand-in metadata
  server, or with a user's refresh token; we check the Authorization header
  the submit endpoint receives, that the token is signed for its audience,
  the caching and the error mapping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google.oauth2.credentials
import google.oauth2.service_account
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core.client_options import ClientOptions
from google.auth import crypt, jwt
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from requests.structures import CaseInsensitiveDict

from povstorm.cloud.auth import IdTokenAuth, NoAuth, auth_for, token_expiry
from povstorm.cloud.launchers import CloudRunRenderLauncher, CloudRunStitchLauncher
from povstorm.core.errors import PovstormError, TransientError, UserError

JOB_NAME = "projects/render-proj/locations/europe-west1/jobs/povstorm-stitch"
ROOT = Path(__file__).resolve().parents[1]

# --- a tiny recording HTTP server ------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: CaseInsensitiveDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode()))


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class StandIn:
    """An HTTP server on 127.0.0.1 that records requests and answers through
    ``handler(seen) -> (status, headers, body)``."""

    handler: Callable[[Seen], Reply]
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's address
        return f"http://{host}:{port}"

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("http://")

    def start(self) -> StandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    self.command,
                    self.path,
                    CaseInsensitiveDict(dict(self.headers)),
                    self.rfile.read(length),
                )
                stand_in.seen.append(seen)
                status, headers, body = stand_in.handler(seen)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[Seen], Reply]], StandIn]]:
    started: list[StandIn] = []

    def start(handler: Callable[[Seen], Reply]) -> StandIn:
        started.append(StandIn(handler).start())
        return started[-1]

    yield start
    for s in started:
        s.stop()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the developer's shell must not carry loopback traffic away,
    # and no ambient credentials may leak into what these tests observe.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)


def json_reply(status: int, payload: Any) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


# --- CloudRunStitchLauncher --------------------------------------------------------------


def jobs_client(endpoint: str) -> run_v2.JobsClient:
    return run_v2.JobsClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def test_stitch_launcher_runs_the_job_with_the_job_id_as_its_argument(serve) -> None:
    run_api = serve(
        lambda seen: json_reply(200, {"name": f"{JOB_NAME}/operations/op-1", "done": False})
    )
    launcher = CloudRunStitchLauncher(jobs_client(run_api.url), JOB_NAME)

    launcher.launch("20261123-084512-3fa9c1")

    assert len(run_api.seen) == 1
    call = run_api.seen[0]
    assert call.method == "POST"
    assert call.path.split("?")[0] == f"/v2/{JOB_NAME}:run"
    overrides = call.json()["overrides"]["containerOverrides"]
    assert overrides == [{"args": ["20261123-084512-3fa9c1"]}]


def test_stitch_launcher_passes_a_video_to_make_again_as_arguments(serve) -> None:
    run_api = serve(
        lambda seen: json_reply(200, {"name": f"{JOB_NAME}/operations/op-2", "done": False})
    )
    launcher = CloudRunStitchLauncher(jobs_client(run_api.url), JOB_NAME)

    launcher.launch("20261123-084512-3fa9c1", video="h264-12fps-crf20-mp4")

    overrides = run_api.seen[0].json()["overrides"]["containerOverrides"]
    assert overrides == [{"args": ["20261123-084512-3fa9c1", "--video", "h264-12fps-crf20-mp4"]}]


def test_stitch_launcher_does_not_wait_for_the_execution(serve) -> None:
    # The operation never completes here; launch must return anyway (the
    # stitch reports into the ledger, not to its launcher).
    run_api = serve(lambda seen: json_reply(200, {"name": "operations/never", "done": False}))
    launcher = CloudRunStitchLauncher(jobs_client(run_api.url), JOB_NAME)
    started = time.monotonic()
    launcher.launch("job-a")
    launcher.launch("job-b")
    assert time.monotonic() - started < 10
    assert [s.json()["overrides"]["containerOverrides"][0]["args"] for s in run_api.seen] == [
        ["job-a"],
        ["job-b"],
    ]
    assert all(s.path.split("?")[0].endswith(":run") for s in run_api.seen)


@pytest.mark.parametrize(
    ("status", "grpc_status", "retryable"),
    [(503, "UNAVAILABLE", True), (429, "RESOURCE_EXHAUSTED", True), (404, "NOT_FOUND", False)],
)
def test_stitch_launcher_maps_run_errors(
    serve, status: int, grpc_status: str, retryable: bool
) -> None:
    run_api = serve(
        lambda seen: json_reply(
            status, {"error": {"code": status, "message": "stand-in", "status": grpc_status}}
        )
    )
    launcher = CloudRunStitchLauncher(jobs_client(run_api.url), JOB_NAME)

    with pytest.raises(PovstormError) as caught:
        launcher.launch("job-c")

    assert caught.value.retryable is retryable
    assert isinstance(caught.value, TransientError) is retryable
    assert len(run_api.seen) == 1  # no hidden retries: the reconciler owns those


# --- IdTokenAuth -------------------------------------------------------------------------


@dataclass
class Key:
    private_pem: bytes
    public_pem: bytes
    key_id: str = "stand-in-key-1"
    email: str = "ci@render-proj.iam.gserviceaccount.com"

    @classmethod
    def generate(cls) -> Key:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def signer(self) -> crypt.RSASigner:
        return crypt.RSASigner.from_string(self.private_pem, self.key_id)

    def id_token(self, audience: str, lifetime: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "sub": "1234567890",
            "email": self.email,
            "iat": now,
            "exp": now + lifetime,
        }
        return jwt.encode(self.signer(), claims).decode()


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate()


def token_endpoint(key: Key) -> Callable[[Seen], Reply]:
    """The OAuth token endpoint of a service-account key: checks the signed
    assertion and returns an ID token for the target_audience it asks for."""

    def handle(seen: Seen) -> Reply:
        form = seen.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return json_reply(400, {"error": "unsupported_grant_type"})
        try:
            claims = jwt.decode(form["assertion"], certs=key.public_pem, verify=True)
        except ValueError as exc:
            return json_reply(400, {"error": "invalid_grant", "error_description": str(exc)})
        return json_reply(200, {"id_token": key.id_token(claims["target_audience"])})

    return handle


def submit_endpoint(seen: Seen) -> Reply:
    if not seen.headers.get("Authorization", "").startswith("Bearer "):
        return json_reply(401, {"error": "no bearer token"})
    return json_reply(200, {"job_id": "j1"})


def write_key_file_text(key: Key, token_uri: str) -> str:
    """A service-account key file whose token endpoint is ``token_uri``."""
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "render-proj",
            "private_key_id": key.key_id,
            "private_key": key.private_pem.decode(),
            "client_email": key.email,
            "client_id": "1234567890",
            "token_uri": token_uri,
        }
    )


def write_key_file(tmp_path: Path, key: Key, token_uri: str) -> Path:
    path = tmp_path / "sa-key.json"
    path.write_text(write_key_file_text(key, token_uri))
    return path


def test_id_token_auth_sends_a_token_signed_for_the_submit_url(
    serve, key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = serve(token_endpoint(key))
    submit = serve(submit_endpoint)
    monkeypatch.setenv(
        "GOOGLE_APPLICATION_CREDENTIALS", str(write_key_file(tmp_path, key, f"{tokens.url}/token"))
    )
    auth = IdTokenAuth(submit.url)

    reply = requests.post(submit.url, json={"spec": 1}, auth=auth, timeout=10)

    assert reply.status_code == 200
    header = submit.seen[0].headers["Authorization"]
    scheme, token = header.split(" ", 1)
    assert scheme == "Bearer"
    claims = jwt.decode(token, certs=key.public_pem, audience=submit.url)
    assert claims["email"] == key.email
    # What the key asked the token endpoint for: an ID token for this audience.
    grant = jwt.decode(tokens.seen[0].form()["assertion"], certs=key.public_pem)
    assert grant["target_audience"] == submit.url
    assert grant["iss"] == key.email


def test_id_token_auth_takes_a_service_account_key_handed_in(serve, key: Key) -> None:
    tokens = serve(token_endpoint(key))
    submit = serve(submit_endpoint)
    info = json.loads(write_key_file_text(key, f"{tokens.url}/token"))
    credentials = google.oauth2.service_account.Credentials.from_service_account_info(info)

    auth = IdTokenAuth(submit.url, credentials=credentials)
    assert requests.post(submit.url, json={}, auth=auth, timeout=10).status_code == 200

    token = submit.seen[0].headers["Authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, certs=key.public_pem, audience=submit.url)["email"] == key.email


def test_id_token_auth_reuses_the_token_until_shortly_before_expiry(
    serve, key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = serve(token_endpoint(key))
    submit = serve(submit_endpoint)
    monkeypatch.setenv(
        "GOOGLE_APPLICATION_CREDENTIALS", str(write_key_file(tmp_path, key, f"{tokens.url}/token"))
    )
    now = [time.time()]
    auth = IdTokenAuth(submit.url, refresh_margin=300, clock=lambda: now[0])

    for _ in range(3):
        requests.post(submit.url, json={}, auth=auth, timeout=10)
    assert len(tokens.seen) == 1
    first = {s.headers["Authorization"] for s in submit.seen}
    assert len(first) == 1

    expiry = token_expiry(first.pop().split(" ", 1)[1], default=0)
    now[0] = expiry - 301  # still outside the margin
    requests.post(submit.url, json={}, auth=auth, timeout=10)
    assert len(tokens.seen) == 1

    now[0] = expiry - 299  # inside the margin: refresh before it lapses
    requests.post(submit.url, json={}, auth=auth, timeout=10)
    assert len(tokens.seen) == 2

    auth.invalidate()
    requests.post(submit.url, json={}, auth=auth, timeout=10)
    assert len(tokens.seen) == 3
    assert all(s.headers["Authorization"].startswith("Bearer ey") for s in submit.seen)


def test_id_token_auth_shares_one_fetch_between_threads(
    serve, key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = serve(token_endpoint(key))
    submit = serve(submit_endpoint)
    monkeypatch.setenv(
        "GOOGLE_APPLICATION_CREDENTIALS", str(write_key_file(tmp_path, key, f"{tokens.url}/token"))
    )
    auth = IdTokenAuth(submit.url)
    threads = [
        threading.Thread(target=lambda: requests.post(submit.url, json={}, auth=auth, timeout=10))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(submit.seen) == 8
    assert len(tokens.seen) == 1
    assert len({s.headers["Authorization"] for s in submit.seen}) == 1


def test_id_token_auth_maps_a_rejected_key_to_a_povstorm_error(
    serve, key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Key.generate()  # the endpoint knows `key`, the file holds `other`
    tokens = serve(token_endpoint(key))
    monkeypatch.setenv(
        "GOOGLE_APPLICATION_CREDENTIALS",
        str(write_key_file(tmp_path, other, f"{tokens.url}/token")),
    )
    with pytest.raises(PovstormError) as caught:
        IdTokenAuth("https://submit.example").token()
    assert not isinstance(caught.value, TransientError)
    assert "ID token" in str(caught.value)
    assert len(tokens.seen) == 1


def test_id_token_auth_reports_an_unreachable_token_endpoint_as_transient(
    key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port nothing listens on: bind one, then close it.
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    monkeypatch.setenv(
        "GOOGLE_APPLICATION_CREDENTIALS",
        str(write_key_file(tmp_path, key, f"http://127.0.0.1:{port}/token")),
    )
    with pytest.raises(TransientError):
        IdTokenAuth("https://submit.example").token()


def test_id_token_auth_uses_a_developers_own_credentials(serve, key: Key) -> None:
    # `gcloud auth application-default login` gives authorized_user
    # credentials; their refresh returns an ID token beside the access token.
    # (Loaded from a file they always use Google's token endpoint, so the
    # stand-in gets the same credentials built directly.)
    def oauth(seen: Seen) -> Reply:
        form = seen.form()
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != "1//rt":
            return json_reply(400, {"error": "invalid_grant"})
        return json_reply(
            200,
            {
                "access_token": "ya29.stand-in",
                "expires_in": 3599,
                "token_type": "Bearer",
                "id_token": key.id_token("32555940559.apps.googleusercontent.com"),
            },
        )

    tokens = serve(oauth)
    submit = serve(submit_endpoint)
    user = google.oauth2.credentials.Credentials(
        token=None,
        refresh_token="1//rt",
        client_id="32555940559.apps.googleusercontent.com",
        client_secret="stand-in",
        token_uri=f"{tokens.url}/token",
    )
    auth = IdTokenAuth(submit.url, credentials=user)

    for _ in range(2):
        assert requests.post(submit.url, json={}, auth=auth, timeout=10).status_code == 200

    token = submit.seen[0].headers["Authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, certs=key.public_pem)["email"] == key.email
    assert len(tokens.seen) == 1  # cached for the second request


def test_id_token_auth_reports_user_credentials_without_an_id_token(serve) -> None:
    tokens = serve(lambda seen: json_reply(200, {"access_token": "ya29.x", "expires_in": 3599}))
    user = google.oauth2.credentials.Credentials(
        token=None,
        refresh_token="1//rt",
        client_id="c",
        client_secret="s",
        token_uri=f"{tokens.url}/token",
    )
    with pytest.raises(UserError, match="no ID token"):
        IdTokenAuth("https://submit.example", credentials=user).token()


# The metadata server path: google-auth reads GCE_METADATA_HOST when it is
# imported, so this runs in a fresh interpreter with the stand-in's address.
_METADATA_CLIENT = """
import sys, requests
from povstorm.cloud.auth import IdTokenAuth
reply = requests.post(sys.argv[1], json={}, auth=IdTokenAuth(sys.argv[1]), timeout=20)
print(reply.status_code)
"""


def test_id_token_auth_uses_the_metadata_server_on_google_cloud(serve, key: Key) -> None:
    def metadata(seen: Seen) -> Reply:
        # What the real server sends: its flavor, and text unless JSON was asked for.
        flavor = {"Metadata-Flavor": "Google", "Content-Type": "text/html; charset=utf-8"}
        if seen.headers.get("Metadata-Flavor") != "Google":
            return 403, {}, b"missing Metadata-Flavor"
        path, _, query = seen.path.partition("?")
        if path.endswith("/service-accounts/default/identity"):
            audience = urllib.parse.parse_qs(query)["audience"][0]
            return 200, flavor, key.id_token(audience).encode()
        if "/service-accounts/default" in path:
            info = {"email": key.email, "aliases": ["default"], "scopes": []}
            return 200, {**flavor, "Content-Type": "application/json"}, json.dumps(info).encode()
        return 200, flavor, b""  # the ping of the metadata root

    mds = serve(metadata)
    submit = serve(submit_endpoint)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "HTTP_PROXY", "HTTPS_PROXY")
    }
    env.update(
        GCE_METADATA_HOST=mds.hostport,
        GCE_METADATA_IP=mds.hostport,
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT / "client"),
    )
    done = subprocess.run(
        [sys.executable, "-c", _METADATA_CLIENT, submit.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "200"
    token = submit.seen[0].headers["Authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, certs=key.public_pem, audience=submit.url)["email"] == key.email
    identity_calls = [s for s in mds.seen if "/identity" in s.path]
    assert len(identity_calls) == 1


# --- the local stack's path --------------------------------------------------------------


def test_no_auth_leaves_requests_unchanged(serve) -> None:
    submit = serve(lambda seen: json_reply(200, {"job_id": "j1"}))
    requests.post(submit.url, json={}, auth=NoAuth(), timeout=10)
    assert "Authorization" not in submit.seen[0].headers


def test_auth_for_picks_no_auth_for_the_local_stack_only() -> None:
    assert isinstance(auth_for("http://127.0.0.1:8123/submit"), NoAuth)
    assert isinstance(auth_for("http://localhost:8123"), NoAuth)
    cloud = auth_for("https://povstorm-submit-abc123-ew.a.run.app/")
    assert isinstance(cloud, IdTokenAuth)
    assert cloud.audience == "https://povstorm-submit-abc123-ew.a.run.app"


def test_id_token_auth_needs_an_audience() -> None:
    with pytest.raises(UserError):
        IdTokenAuth("")


def test_token_expiry_reads_the_exp_claim_without_verifying(key: Key) -> None:
    token = key.id_token("https://x.example", lifetime=120)
    assert abs(token_expiry(token, default=0) - (time.time() + 120)) < 5
    assert token_expiry("not-a-jwt", default=42.0) == 42.0


# --- CloudRunRenderLauncher --------------------------------------------------------------

RENDER_JOB = "projects/render-proj/locations/europe-west1/jobs/povstorm-render"
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"


def render_launcher(endpoint: str) -> CloudRunRenderLauncher:
    executions = run_v2.ExecutionsClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )
    return CloudRunRenderLauncher(jobs_client(endpoint), executions, RENDER_JOB)


def test_render_launcher_runs_the_render_job_with_a_task_count_and_names_the_execution(
    serve,
) -> None:
    execution = f"{RENDER_JOB}/executions/povstorm-render-x7k2p"
    run_api = serve(
        lambda seen: json_reply(
            200,
            {
                "name": "operations/op-7",
                "done": False,
                "metadata": {"@type": EXECUTION_TYPE, "name": execution, "taskCount": 12},
            },
        )
    )
    assert render_launcher(run_api.url).launch("20261130-084512-3fa9c1", 12) == execution
    (call,) = run_api.seen
    assert call.method == "POST" and call.path.split("?")[0] == f"/v2/{RENDER_JOB}:run"
    assert call.json()["overrides"] == {"taskCount": 12}


def test_render_launcher_counts_the_unfinished_tasks_of_unfinished_executions(serve) -> None:
    run_api = serve(
        lambda seen: json_reply(
            200,
            {
                "executions": [
                    # running: 10 tasks, 3 done, 1 failed for good -> 6 left
                    {"name": f"{RENDER_JOB}/executions/a", "taskCount": 10,
                     "succeededCount": 3, "failedCount": 1},
                    # just created, nothing started yet -> 4
                    {"name": f"{RENDER_JOB}/executions/b", "taskCount": 4},
                    # finished (a cancelled one too): none
                    {"name": f"{RENDER_JOB}/executions/c", "taskCount": 5, "succeededCount": 2,
                     "cancelledCount": 3, "completionTime": "2026-11-30T10:00:00Z"},
                ]
            },
        )
    )  # fmt: skip
    assert render_launcher(run_api.url).active() == 10
    (call,) = run_api.seen
    assert call.method == "GET" and call.path.split("?")[0] == f"/v2/{RENDER_JOB}/executions"


def test_render_launcher_cancels_an_execution_and_ignores_one_already_finished(serve) -> None:
    execution = f"{RENDER_JOB}/executions/povstorm-render-x7k2p"
    replies = iter(
        [
            json_reply(200, {"name": "operations/op-8", "done": False}),
            json_reply(
                400,
                {"error": {"code": 400, "status": "FAILED_PRECONDITION",
                           "message": "execution already completed"}},
            ),
            json_reply(503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "later"}}),
        ]
    )  # fmt: skip
    run_api = serve(lambda seen: next(replies))
    launcher = render_launcher(run_api.url)
    launcher.cancel(execution)
    launcher.cancel(execution)  # finished meanwhile: nothing to stop
    with pytest.raises(TransientError):
        launcher.cancel(execution)
    assert [s.path.split("?")[0] for s in run_api.seen] == [f"/v2/{execution}:cancel"] * 3
