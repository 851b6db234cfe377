"""Fixtures shared by every test module.

* Every test starts from a clean environment: no emulator variables, no
  POVSTORM_* settings from the developer's shell, POVSTORM_HOME in a temporary
  directory; whatever a test changes in ``os.environ`` is undone after it.
* One local stack serves the whole session, in a temporary POVSTORM_HOME:
  ``infra_stack`` (emulators, bucket, topics, subscriptions) or ``stack`` (the
  same plus functions, 2 render workers and the reconciler; requesting it adds
  the farm to a running infrastructure). A test that uses either, or
  ``stack_env`` / ``firestore_env``, gets the stack's variables in
  ``os.environ`` for its duration. At the end the stack is stopped and the
  session fails if any of its processes is left.
* Every test on the stack starts with an empty frame cache (``cache/`` in
  the shared bucket): no test reuses another's frames.
* ``fresh_project``: a new project id. Both gcloud emulators accept any
  project id, so a test isolates its Firestore and Pub/Sub data with it.
  (GCS notifications always go to the stack's own project.)
* ``settings`` / ``clients`` / ``ledger``: the farm's view of the stack from
  a fresh project: its own ledger, the stack's bucket and namespace (objects
  are shared, so tests name theirs by a unique job id), worker id
  ``test-worker``. The project has no topics until a test also asks for
  ``project_topics``, which creates the namespace's topics and the work
  subscription there, as terraform does.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.common import wire_project

from povstorm.cloud.blobs import BlobStore
from povstorm.cloud.clients import Clients
from povstorm.core.errors import StackError
from povstorm.core.names import ENV
from povstorm.core.settings import EMULATOR_VARS, Settings
from povstorm.farm import cache as frame_cache
from povstorm.ledger.ledger import Ledger
from povstorm_local.stack import LocalStack
from povstorm_local.state import StackState

# What a developer's shell may carry that would point a test somewhere else.
_FOREIGN = (*EMULATOR_VARS, *ENV.values(), "POVSTORM_HOME", "GOOGLE_CLOUD_PROJECT")
# Fixtures whose tests run with the stack's environment.
_FARM_FIXTURES = ("stack", "stack_env")
_INFRA_FIXTURES = ("infra_stack", "firestore_env")


def live_pids(pids: set[int]) -> set[int]:
    """Which of ``pids`` still run (a zombie has finished: it only awaits its reaper)."""
    alive = set()
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] not in "ZX":
            alive.add(pid)
    return alive


def live_group_members(pgids: set[int]) -> set[int]:
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) in pgids and fields[0] not in "ZX":
                members.add(int(entry.name))
    return members


def recorded_processes(state: StackState) -> tuple[set[int], set[int]]:
    """(pids, pgids) that a stack's state file records, the java children included."""
    pids = {c.pid for c in state.components.values()}
    pids |= {m for c in state.components.values() for m in c.members}
    return pids, {c.pgid for c in state.components.values()}


@pytest.fixture(autouse=True)
def _empty_frame_cache(request: pytest.FixtureRequest) -> None:
    """Every test on the session stack starts with an empty frame cache, as
    it starts with a fresh project or job id: the cache is the deployment's,
    and a frame another test rendered would otherwise be reused here (no
    render, no log, no worker to kill). A test that wants hits makes them."""
    if "local_stack" in request.fixturenames:
        frame_cache.clear(request.getfixturevalue("session_blobs"))


@pytest.fixture(scope="session")
def session_blobs(infra_stack: StackState) -> BlobStore:
    """The session stack's bucket."""
    return Clients.from_settings(infra_stack.settings()).blobs


@pytest.fixture(autouse=True)
def _clean_environ(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    saved = dict(os.environ)
    for key in _FOREIGN:
        os.environ.pop(key, None)
    # A test that starts a stack by accident must not touch ~/.povstorm.
    os.environ["POVSTORM_HOME"] = str(tmp_path_factory.getbasetemp() / "home-without-stack")
    names = request.fixturenames
    if any(n in names for n in _FARM_FIXTURES):
        request.getfixturevalue("stack").apply_env(os.environ)
    elif any(n in names for n in _INFRA_FIXTURES):
        request.getfixturevalue("infra_stack").apply_env(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The session's stack, not started until a test asks for it; stopped at the end."""
    stack = LocalStack(tmp_path_factory.mktemp("povstorm-home"))
    yield stack
    state = stack.read_state()
    if state is None:
        return
    pids, pgids = recorded_processes(state)
    stack.down(wipe=True)
    left = live_pids(pids) | live_group_members(pgids)
    for pid in left:  # do not leak them into the next session
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the test stack still ran after down: {sorted(left)}"


def _up(stack: LocalStack, **kwargs: object) -> StackState:
    try:
        return stack.up(**kwargs)  # type: ignore[arg-type]
    except StackError as exc:
        pytest.fail(f"the local stack did not start: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def infra_stack(local_stack: LocalStack) -> StackState:
    """Emulators and wiring (a running farm stack serves as well)."""
    return _up(local_stack, farm=False)


@pytest.fixture(scope="session")
def stack(local_stack: LocalStack) -> StackState:
    """The whole farm with 2 render workers."""
    return _up(local_stack, workers=2)


@pytest.fixture
def stack_env(_clean_environ: None, stack: StackState) -> dict[str, str]:
    """A complete environment for a subprocess that uses the farm stack."""
    return dict(os.environ)


@pytest.fixture
def firestore_env(_clean_environ: None, infra_stack: StackState) -> None:
    """The emulators' variables are in os.environ for this test."""


@pytest.fixture
def fresh_project() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(infra_stack: StackState, fresh_project: str) -> Settings:
    """The session's emulators, isolated in a project of this test's own: the
    farm (if a module started it) pulls work, reads failures and keeps its
    ledger in the stack's project, so it never sees this test's. Only the
    bucket is shared. A fixed worker id lets a test assert what a worker
    stamps on its frames."""
    # No render tasks: the test drives its project's work itself (as before
    # tasks, when the stack's workers pulled only the stack's own project).
    return infra_stack.settings().with_overrides(
        project=fresh_project, worker_id="test-worker", render_launcher="none"
    )


@pytest.fixture
def project_topics(infra_stack: StackState, settings: Settings) -> Settings:
    """``settings`` whose project has the namespace's topics and the work
    subscription: for a test that publishes, or runs a worker that pulls."""
    wire_project(infra_stack, settings.project)
    return settings


@pytest.fixture
def clients(settings: Settings) -> Clients:
    return Clients.from_settings(settings)


@pytest.fixture
def ledger(clients: Clients) -> Ledger:
    return Ledger(clients.db)
