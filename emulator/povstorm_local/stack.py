"""The local stack: the same event flow as the cloud, on emulators.

    firestore        gcloud emulators firestore start         ledger
    pubsub           gcloud beta emulators pubsub start       work, frame-events, failures, dead letters
    gcs              fake-gcs-server (filesystem backend)     inputs, frames, videos; publishes
                                                              OBJECT_FINALIZE to frame-events
    submit, frame_finalized, frame_failed, job_event          functions/main.py under functions-framework
    tasks            python -m povstorm_local.tasks                 render tasks pulling "work", N at most
    reconciler       python -m povstorm_local.reconciler            povstorm.farm.reconcile every few seconds

Each component runs in its own process group with its log under
``<home>/local/logs``; ``<home>/local/stack.json`` records what runs where, so
``status``, ``down`` and clients (``LocalStack(home).load().settings()``) find
it. Children get their whole configuration from one environment built in
``launch`` (the *_EMULATOR_HOST variables plus ``Settings.to_env()``), so
domain code has no idea it runs locally.

This module is the lifecycle: up, down, status, the state file and its lock.
What a component is and what ``stack.json`` records live in ``state``; how
each component is launched and checked in ``launch``; ports and HTTP probes
in ``net``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from povstorm.cloud.launchers import STITCH_MODULE
from povstorm.core.errors import StackError, UserError
from povstorm.core.names import ENV
from povstorm.core.settings import local_logs

from . import launch
from . import procs as _procs
from .net import check_ports, choose_ports, port_free
from .resources import Admin
from .snapshots import Snapshots
from .state import (
    COMPONENTS,
    DEFAULT_BUCKET,
    DEFAULT_PROJECT,
    FARM,
    FUNCTION_COMPONENTS,
    HOST,
    INFRA,
    PORTED,
    STATE_VERSION,
    Component,
    ComponentStatus,
    StackState,
)

log = logging.getLogger("povstorm.emulator")

STOP_GRACE = 10.0


# --- the stack -------------------------------------------------------------------


# POV-Ray leaves a core idle while it starts, stops and moves between frames
# (about 0.6 s a process and 0.2 s a frame, measured by ``make bench``'s fill
# table): two single-threaded processes per core keep the cores busy at
# 320x240 and at 1280x960 alike.
PROCESSES_PER_CORE = 2


def default_workers() -> int:
    """Render tasks at once (each one POV-Ray process at a time) for this machine."""
    return PROCESSES_PER_CORE * (os.cpu_count() or 1)


class LocalStack:
    """Starts, inspects and stops the local stack whose state lives in ``home/local``."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.dir = self.home / "local"
        self.state_file = self.dir / "stack.json"
        self.logs = local_logs(self.home)
        self.run_dir = self.dir / "run"
        self.data_dirs = {
            "firestore": self.dir / "firestore",
            "gcs": self.dir / "gcs",
            "pubsub": self.dir / "pubsub",
            "cache": self.dir / "cache",
            "run": self.run_dir,
        }
        # Children this process started: polled so that they do not linger as zombies.
        self._procs: list[subprocess.Popen] = []
        # What the last restart repaired (``povstorm.farm.reconcile.Report.as_dict``).
        self.resumed: dict[str, list[str]] = {}

    # -- public API ---------------------------------------------------------------

    def load(self) -> StackState | None:
        """The state of the stack running in this home, or None if none runs
        there (no state file, still starting, or every recorded process gone).
        Clients then call ``state.settings()``."""
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
        workers = default_workers() if workers is None else workers
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
                        check_ports({n: p for n, p in ports.items() if n not in state.components})
                        return self._start(state, workers, ports, timeout, farm=True)
                    return state
                stopped = [
                    c.name for c in state.components.values() if not _procs.group_members(c.pgid)
                ]
                if state.ready and 0 < len(stopped) < len(state.components):
                    return self._heal(state, stopped, timeout)
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
            ports = {**self._previous_ports(ports), **ports}
            launch.preflight(farm, ports)
            env = launch.base_env(
                self.home,
                self.data_dirs["cache"],
                project or DEFAULT_PROJECT,
                bucket or DEFAULT_BUCKET,
                namespace,
            )
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
        SIGKILL after a grace period) and forget the state. The ledger is
        saved first (``snapshots``), so the next ``up`` starts from it; with
        ``wipe`` every piece of data is deleted instead (ledger, bucket
        contents, caches; logs are kept)."""
        with self._lock():
            state = self.read_state()
            if state is not None:
                self._stop(state, save=not wipe)
            if wipe:
                for d in self.data_dirs.values():
                    shutil.rmtree(d, ignore_errors=True)
            return state

    def notify_secret(self) -> str:
        """The key this stack signs job notifications with (farm/notify.py),
        made on first use and kept in ``<home>/local/notify-secret`` (mode
        0600) for good: ``down --wipe`` deletes data, not the key a
        receiver was configured with. Only the job_event function gets it."""
        path = self.dir / "notify-secret"
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        return path.read_text().strip()

    def log_path(self, component: str) -> Path:
        """The log of a component, of one render task (``render-EXEC-N``, as
        the task runner names them) or of a job's stitch (``stitch-JOB``)."""
        if component not in COMPONENTS and not re.fullmatch(
            r"render-[0-9a-f]{8}-[0-9]+|stitch-[a-z0-9][a-z0-9-]{1,62}", component
        ):
            raise UserError(
                f"unknown component {component!r}; choose from {', '.join(COMPONENTS)}, "
                "render-EXEC-N, stitch-JOB"
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
            launch.check_farm_modules()
        existing = set(state.components)
        wanted = [c for c in (INFRA + (FARM if farm else ())) if c not in existing]
        chosen = choose_ports([c for c in wanted if c in PORTED], ports)
        deadline = time.monotonic() + timeout
        before = state
        if farm:
            submit_url = f"http://{HOST}:{chosen['submit']}"
            env = {
                **state.env,
                ENV["submit_url"]: submit_url,
                # The chunk plan's width, and one POV-Ray thread per core at most.
                ENV["render_slots"]: str(workers),
                ENV["povray_threads"]: str(max(1, (os.cpu_count() or 1) // workers)),
            }
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
            self._save_ports(state)
            if farm and "firestore" in wanted:
                self._resume(state, work_lost=True)
            return state
        except BaseException:
            new = [c.pgid for c in state.components.values() if c.name not in existing]
            _procs.stop_groups(new, grace=STOP_GRACE, reap=self._reap)
            if existing:
                self._write_state(before)
            else:
                self.state_file.unlink(missing_ok=True)
            raise

    def _previous_ports(self, configured: Mapping[str, int]) -> dict[str, int]:
        """The ports this home's stack last ran on, those still free: a stack
        started again answers where its clients (``eval "$(povstorm local
        env)"``, a watching render) expect it."""
        try:
            last = json.loads((self.dir / "ports.json").read_text())
        except (OSError, ValueError):
            return {}
        taken = {int(p) for p in configured.values()}
        return {
            name: int(port)
            for name, port in last.items()
            if name in PORTED and name not in configured and int(port) not in taken
            and port_free(int(port))
        }  # fmt: skip

    def _save_ports(self, state: StackState) -> None:
        ports = {c.name: c.port for c in state.components.values() if c.port}
        (self.dir / "ports.json").write_text(json.dumps(ports) + "\n")

    def _heal(self, state: StackState, stopped: list[str], timeout: float) -> StackState:
        """Start again, on their ports, the components of a running stack that
        stopped (a crash, a kill), wire what a restarted emulator lost, and
        resume the jobs that a restarted ledger or work queue left behind."""
        log.info("restarting %s of the stack in %s", ", ".join(stopped), self.dir)
        ports = {n: p for n in stopped if (p := state.components[n].port)}
        deadline = time.monotonic() + timeout
        infra = [c for c in INFRA if c in stopped]
        for name in infra:
            state = self._record(state, self._launch(name, state, ports))
        state = self._wait_healthy(state, infra, deadline)
        if infra:
            self._wire(state, with_push=state.farm)
        for name in [c for c in FARM if c in stopped]:
            state = self._record(state, self._launch(name, state, ports))
        state = self._wait_healthy(state, list(state.components), deadline)
        if state.farm and ("firestore" in stopped or "pubsub" in stopped):
            self._resume(state, work_lost="pubsub" in stopped)
        return state

    def _resume(self, state: StackState, *, work_lost: bool) -> None:
        """The reconciler's pass after a restart (``povstorm.farm.reconcile.resume``):
        count the frames the bucket holds and the restored ledger lacks,
        publish again the work a restarted queue lost, launch again the
        stitches that no longer run."""
        from povstorm.cloud.clients import Clients
        from povstorm.farm.reconcile import Restart, resume

        stitching = frozenset(_procs.cmdline(pid).split()[-1] for pid in self.stitches())
        clients = Clients.from_settings(state.settings(), log_dir=self.logs)
        report = resume(clients, Restart(work_lost=work_lost, stitching=stitching))
        self.resumed = {k: v for k, v in report.as_dict().items() if v}
        if self.resumed:
            log.info("resumed after the restart: %s", self.resumed)

    def _launch(self, name: str, state: StackState, ports: dict[str, int]) -> Component:
        port = ports.get(name)
        argv, url = launch.command(name, state, port, data_dirs=self.data_dirs, logs=self.logs)
        env = launch.child_env(state, gcloud=name in ("firestore", "pubsub"))
        if name == "job_event":
            env[ENV["notify_secret"]] = self.notify_secret()
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
                ok, last[name] = launch.health(comp, self.run_dir)
                if ok:
                    pending.remove(name)
                    members = tuple(_procs.group_members(comp.pgid))
                    state = self._record(state, replace(comp, members=members))
                elif not _procs.group_members(comp.pgid):
                    raise StackError(
                        f"{name} exited during startup: {launch.last_line(Path(comp.log))}; see {comp.log}"
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
        env = {**state.env, **launch.emulator_env(components)}
        state = replace(state, components=components, env=env)
        self._write_state(state)
        return state

    # -- health -------------------------------------------------------------------

    def _statuses(self, state: StackState) -> list[ComponentStatus]:
        out = []
        for comp in state.components.values():
            ok, detail = launch.health(comp, self.run_dir)
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

    def _stop(self, state: StackState, *, save: bool) -> None:
        """The farm first (so tasks stop pulling), then the stitches (once
        nothing can launch another: a stitch leads its own session), then,
        with the ledger quiet and ``save``, a snapshot of it, then the emulators."""

        def groups(names: tuple[str, ...]) -> list[int]:
            return [
                c.pgid
                for c in state.components.values()
                if c.name in names and _procs.owns_group(c.pgid, c.start_ticks)
            ]

        left = _procs.stop_groups(groups(FARM), grace=STOP_GRACE, reap=self._reap)
        left += _procs.stop_groups(self.stitches(), grace=STOP_GRACE)
        firestore = state.components.get("firestore")
        if save and firestore is not None and launch.health(firestore, self.run_dir)[0]:
            try:
                Snapshots(self.data_dirs["firestore"]).export(firestore.url, state.project)
            except OSError as exc:
                log.warning("could not save the ledger: %s", exc)
        left += _procs.stop_groups(groups(INFRA), grace=STOP_GRACE, reap=self._reap)
        self.state_file.unlink(missing_ok=True)
        if left:
            raise StackError(
                f"processes {', '.join(map(str, left))} would not stop; kill them by hand"
            )

    def _reap(self) -> None:
        self._procs = [p for p in self._procs if p.poll() is None]

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
