"""``povstorm cloud deploy`` / ``destroy`` (povstorm.client.deploy) as a user
runs them, without a network: the real gcloud and terraform of this machine
with an empty gcloud configuration for the prerequisite checks, and small
stand-in scripts (POVSTORM_GCLOUD, POVSTORM_TERRAFORM) that log their argv
for the runs that get past them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.common import POVSTORM_CLI

from povstorm.client import deploy

REPO = Path(__file__).resolve().parents[1]

real_tools = pytest.mark.skipif(
    shutil.which("gcloud") is None or shutil.which("terraform") is None,
    reason="needs gcloud and terraform on PATH",
)

FAKE_GCLOUD = """\
#!/bin/sh
echo "gcloud $*" >> "$FAKE_LOG"
case "$*" in
  "auth list --format=json") echo '[{"account": "ana@example.com", "status": "ACTIVE"}]' ;;
  "auth application-default print-access-token") echo not-a-real-token ;;
  "projects describe p --format=json") echo '{"projectId": "p", "lifecycleState": "ACTIVE"}' ;;
  "billing projects describe p --format=json") echo "{\\"billingEnabled\\": ${FAKE_BILLING:-true}}" ;;
  "services list --enabled --project=p --format=json")
    echo '[{"config": {"name": "serviceusage.googleapis.com"}}'
    [ -n "$FAKE_NO_CRM" ] || echo ', {"config": {"name": "cloudresourcemanager.googleapis.com"}}'
    echo ', {"config": {"name": "run.googleapis.com"}}]' ;;
  "builds submit"*) echo "fake build output"; exit "${FAKE_BUILD_EXIT:-0}" ;;
  *) echo "fake gcloud: unexpected $*" >&2; exit 99 ;;
esac
"""

FAKE_TERRAFORM = """\
#!/bin/sh
echo "terraform $*" >> "$FAKE_LOG"
if [ "$1" = version ]; then
  echo "{\\"terraform_version\\": \\"${FAKE_TF_VERSION:-1.9.0}\\"}"; exit 0
fi
root=${1#-chdir=}
case "$2" in
  init) echo "fake init output"; exit "${FAKE_INIT_EXIT:-0}" ;;
  apply|destroy)
    echo "fake $2 output"
    code=${FAKE_APPLY_EXIT:-0}
    [ "$code" = 0 ] && [ "$2" = apply ] && echo '{"project": "p"}' > "$root/povstorm-outputs.json"
    exit "$code" ;;
esac
exit 98
"""


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fakes(tmp_path: Path) -> dict[str, str]:
    """An environment whose gcloud and terraform are the stand-ins above,
    logging to tmp_path/calls.log; a terraform root of its own in tmp_path/root."""
    (tmp_path / "root").mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG")
    }
    env.update(
        POVSTORM_GCLOUD=str(script(tmp_path / "gcloud", FAKE_GCLOUD)),
        POVSTORM_TERRAFORM=str(script(tmp_path / "terraform", FAKE_TERRAFORM)),
        FAKE_LOG=str(tmp_path / "calls.log"),
    )
    return env


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def cloud(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*POVSTORM_CLI, "cloud", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("povstorm: error: ")]


def empty_gcloud_env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "gcloud-config"
    config.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOOGLE_APPLICATION_CREDENTIALS", deploy.TERRAFORM_ENV, deploy.GCLOUD_ENV)
    }
    env["CLOUDSDK_CONFIG"] = str(config)
    return env


# --- prerequisites, with the real tools ------------------------------------------------


@real_tools
def test_gcloud_not_logged_in_is_one_line_and_nothing_runs(tmp_path: Path) -> None:
    env = empty_gcloud_env(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    done = cloud(env, tmp_path, "deploy", "--project", "p", "--yes", "--root", str(root))
    assert done.returncode == 1, done.stderr
    errors = error_lines(done)
    login = [line for line in errors if "logged in" in line]
    assert login == ["povstorm: error: gcloud is not logged in: run `gcloud auth login`"]
    assert not [line for line in errors if "terraform is" in line], errors  # 1.5+ is installed
    assert "[1/5]" not in done.stderr and list(root.iterdir()) == []  # nothing run or written


@real_tools
def test_terraform_missing_from_path_is_one_line(tmp_path: Path) -> None:
    env = empty_gcloud_env(tmp_path)
    env["PATH"] = os.pathsep.join(
        d
        for d in env["PATH"].split(os.pathsep)
        if d and not os.access(os.path.join(d, "terraform"), os.X_OK)
    )
    if shutil.which("gcloud", path=env["PATH"]) is None:
        pytest.skip("gcloud and terraform share a directory")
    done = cloud(env, tmp_path, "deploy", "--project", "p", "--yes", "--root", str(tmp_path))
    assert done.returncode == 1
    missing = [line for line in error_lines(done) if line.startswith("povstorm: error: terraform")]
    assert len(missing) == 1, done.stderr
    assert missing[0].startswith("povstorm: error: terraform is not on PATH")
    assert "POVSTORM_TERRAFORM" in missing[0]


def test_too_old_terraform_billing_off_and_a_missing_api_each_say_so(
    fakes: dict[str, str], tmp_path: Path
) -> None:
    fakes.update(FAKE_TF_VERSION="1.4.6", FAKE_BILLING="false", FAKE_NO_CRM="1")
    done = cloud(fakes, tmp_path, "deploy", "--project", "p", "--yes", "--root", "root")
    assert done.returncode == 1
    assert error_lines(done) == [
        "povstorm: error: terraform 1.4.6 is too old: povstorm needs >= 1.5",
        "povstorm: error: billing is not enabled on project p: link a billing account "
        "(gcloud billing projects link p --billing-account=ACCOUNT_ID)",
        "povstorm: error: the API cloudresourcemanager.googleapis.com is off in p, and "
        "terraform needs it to enable the others: gcloud services enable "
        "cloudresourcemanager.googleapis.com --project=p",
    ]
    # What terraform enables itself is a note, not a problem.
    assert "terraform will enable" in done.stderr and "artifactregistry" in done.stderr
    assert not [c for c in calls(tmp_path) if "init" in c or "builds" in c]


def test_another_deployments_state_or_tfvars_stop_it(fakes: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "root"
    state = {"resources": [{"instances": [{"attributes": {"project": "other"}}]}]}
    (root / "terraform.tfstate").write_text(json.dumps(state))
    (root / "terraform.tfvars").write_text('target_gcp_project_id = "other"\n')
    done = cloud(fakes, tmp_path, "deploy", "--project", "p", "--yes", "--root", str(root))
    assert done.returncode == 1
    errors = error_lines(done)
    assert len(errors) == 2, done.stderr
    assert 'terraform.tfvars sets target_gcp_project_id = "other", not p' in errors[0]
    assert "terraform.tfstate holds a deployment in other" in errors[1]
    assert (root / "terraform.tfvars").read_text() == 'target_gcp_project_id = "other"\n'


# --- the steps -------------------------------------------------------------------------


def planned_steps(stdout: str) -> list[tuple[str, list[str]]]:
    lines = stdout.splitlines()
    steps: list[tuple[str, list[str]]] = []
    for i, line in enumerate(lines):
        header = re.match(r"^\[(\d)/(\d)\] (.+)$", line)
        if header:
            assert int(header[1]) == len(steps) + 1
            assert lines[i + 1].startswith("    $ ")
            steps.append((header[3], shlex.split(lines[i + 1][6:])))
    return steps


def test_dry_run_prints_the_five_steps_and_runs_nothing(
    fakes: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    done = cloud(
        fakes,
        tmp_path,
        "deploy",
        "--project",
        "p",
        "--region",
        "europe-west1",
        "--namespace",
        "farm",
        "--tag",
        "v7",
        "--operator",
        "user:ana@example.com",
        "--root",
        str(root),
        "--dry-run",
    )
    assert done.returncode == 0, done.stderr
    steps = planned_steps(done.stdout)
    assert [name for name, _ in steps] == [
        "staging the functions' source",
        "initialising terraform",
        "creating the registry and the builder account",
        "building images with Cloud Build",
        "deploying the rest",
    ]
    (_, stage), (_, init), (_, first), (_, build), (_, full) = steps
    terraform, gcloud = fakes["POVSTORM_TERRAFORM"], fakes["POVSTORM_GCLOUD"]
    assert stage == [
        sys.executable,
        str(REPO / "deploy/stage_functions.py"),
        str(REPO / "build/functions"),
    ]
    assert init == [terraform, f"-chdir={root}", "init", "-input=false"]
    variables = [
        "-var=target_gcp_project_id=p",
        "-var=target_gcp_region=europe-west1",
        "-var=povstorm_namespace=farm",
        "-var=image_tag=v7",
        '-var=operators=["user:ana@example.com"]',
    ]
    assert first == [
        terraform,
        f"-chdir={root}",
        "apply",
        *variables,
        *(f"-target={t}" for t in deploy.BUILDER_TARGETS),
    ]
    assert build[:4] == [gcloud, "builds", "submit", "."]
    assert "--project=p" in build and "--region=europe-west1" in build
    assert "--substitutions=_REGISTRY=europe-west1-docker.pkg.dev/p/farm,_TAG=v7" in build
    assert full == [terraform, f"-chdir={root}", "apply", *variables]
    assert f"export POVSTORM_CLUSTER={root}/povstorm-outputs.json" in done.stdout
    assert calls(tmp_path) == [] and list(root.iterdir()) == []


def test_with_yes_the_applies_ask_nothing(fakes: dict[str, str], tmp_path: Path) -> None:
    done = cloud(fakes, tmp_path, "deploy", "--project", "p", "--tag", "v1", "--yes", "--dry-run")
    applies = [argv for _, argv in planned_steps(done.stdout) if "apply" in argv]
    assert len(applies) == 2
    assert all(argv[2:5] == ["apply", "-input=false", "-auto-approve"] for argv in applies)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_build_step_is_make_images(fakes: dict[str, str], tmp_path: Path) -> None:
    settings = {"PROJECT": "p", "REGION": "asia-east1", "NAMESPACE": "farm", "TAG": "v3"}
    make = subprocess.run(
        ["make", "-n", "images", *(f"{k}={v}" for k, v in settings.items())],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    recipe = make.stdout.replace("\\\n", " ").splitlines()
    make_argv = shlex.split(next(line for line in recipe if line.startswith("gcloud builds")))
    fakes.pop("POVSTORM_GCLOUD")
    done = cloud(
        fakes,
        tmp_path,
        "deploy",
        *("--project", "p", "--region", "asia-east1", "--namespace", "farm", "--tag", "v3"),
        "--dry-run",
    )
    name, argv = planned_steps(done.stdout)[3]
    assert name == "building images with Cloud Build"
    assert argv == make_argv


def test_the_targeted_resources_are_in_the_module() -> None:
    module = "".join(p.read_text() for p in (REPO / "terraform/modules/povstorm").glob("*.tf"))
    for target in deploy.BUILDER_TARGETS:
        kind, name = target.removeprefix("module.povstorm.").split(".")
        assert re.search(rf'^resource "{kind}" "{name}"', module, re.M), target


def test_a_failing_step_stops_the_run_with_its_number_name_and_status(
    fakes: dict[str, str], tmp_path: Path
) -> None:
    fakes["FAKE_APPLY_EXIT"] = "3"
    done = cloud(
        fakes, tmp_path, "deploy", "--project", "p", "--tag", "v1", "--yes", "--root", "root",
        "--from", "2",
    )  # fmt: skip
    assert done.returncode == 1
    assert error_lines(done) == [
        "povstorm: error: step 3 (creating the registry and the builder account) failed: exit 3"
    ]
    assert "[1/5] staging the functions' source: skipped (--from 2)" in done.stderr
    assert "[3/5] creating the registry and the builder account ..." in done.stderr
    assert "--from 3" in done.stderr.splitlines()[-1]  # how to resume
    assert "fake init output" in done.stdout and "fake apply output" in done.stdout
    ran = [c.split()[2] for c in calls(tmp_path) if c.startswith("terraform -chdir")]
    assert ran == ["init", "apply"]
    assert not [c for c in calls(tmp_path) if "builds submit" in c]  # step 4 never ran


def test_a_deployment_runs_every_step_and_ends_with_the_export_line(
    fakes: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    done = cloud(
        fakes, tmp_path, "deploy", "--project", "p", "--tag", "v1", "--yes", "--root", "root",
        "--from", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"export POVSTORM_CLUSTER={root}/povstorm-outputs.json"
    ran = [c.split()[:3] for c in calls(tmp_path)]
    steps = ran[ran.index(["terraform", f"-chdir={root}", "init"]) :]
    assert steps == [
        ["terraform", f"-chdir={root}", "init"],
        ["terraform", f"-chdir={root}", "apply"],
        ["gcloud", "builds", "submit"],
        ["terraform", f"-chdir={root}", "apply"],
    ]
    # The settings are recorded for a plain `terraform apply` and for destroy,
    # the operator defaulting to the gcloud account.
    tfvars = (root / "terraform.tfvars").read_text()
    assert 'target_gcp_project_id = "p"' in tfvars
    assert 'image_tag             = "v1"' in tfvars
    assert 'operators             = ["user:ana@example.com"]' in tfvars


def test_destroy_runs_terraform_destroy_and_says_what_stays(
    fakes: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    state = {"resources": [{"instances": [{"attributes": {"project": "p"}}]}]}
    (root / "terraform.tfstate").write_text(json.dumps(state))
    (root / "terraform.tfvars").write_text(
        'target_gcp_project_id = "p"\ntarget_gcp_region     = "europe-west1"\n'
    )
    done = cloud(fakes, tmp_path, "destroy", "--project", "p", "--yes", "--root", str(root))
    assert done.returncode == 0, done.stderr
    destroys = [c for c in calls(tmp_path) if " destroy " in c]
    assert destroys == [
        f"terraform -chdir={root} destroy -input=false -auto-approve "
        "-var=target_gcp_project_id=p -var=target_gcp_region=europe-west1 "
        "-var=povstorm_namespace=povstorm"
    ]
    assert "the APIs the deployment enabled" in done.stderr.split("What stays:")[1]
    assert "gcf-v2-sources-<project number>-europe-west1" in done.stderr

    other = cloud(fakes, tmp_path, "destroy", "--project", "q", "--yes", "--root", str(root))
    assert other.returncode == 1
    assert [line for line in error_lines(other) if "holds no deployment in q" in line]


# --- terraform.tfvars ------------------------------------------------------------------


def test_tfvars_updates_keep_terraform_fmt_happy(tmp_path: Path) -> None:
    text = (
        "# mine\n"
        'target_gcp_project_id = "p"\n'
        'image_tag             = "old" # the last one\n'
        "operators = [\n"
        '  "user:old@example.com",\n'
        "]\n"
    )
    updated = deploy.update_tfvars(
        text,
        {
            "target_gcp_project_id": "p",
            "image_tag": "v2",
            "operators": ["user:ana@example.com"],
            "target_gcp_region": "us-east1",
            "povstorm_namespace": "farm",
        },
    )
    assert updated == (
        "# mine\n"
        'target_gcp_project_id = "p"\n'
        'image_tag             = "v2" # the last one\n'
        'operators = ["user:ana@example.com"]\n'
        "\n"
        'target_gcp_region  = "us-east1"\n'
        'povstorm_namespace = "farm"\n'
    )
    path = tmp_path / "terraform.tfvars"
    path.write_text(
        deploy.update_tfvars(
            deploy.TFVARS_HEADER, {"target_gcp_project_id": "p", "operators": ["user:a@b.c"]}
        )
    )
    if shutil.which("terraform"):
        fmt = subprocess.run(["terraform", "fmt", "-check", "-diff", str(path)], capture_output=True, text=True)  # fmt: skip
        assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    assert deploy.read_tfvars(path) == {"target_gcp_project_id": "p"}


def test_every_variable_deploy_sets_is_declared_by_the_example_root() -> None:
    declared = re.findall(
        r'^variable "(\w+)"', (REPO / "terraform/examples/basic/variables.tf").read_text(), re.M
    )
    request = deploy.Request(project="p", tag="v1", operators=("user:a@example.com",))
    d = deploy.resolve(request, deploying=True)
    flags = {v.split("=", 2)[1] for v in d.variables()}
    assert flags == set(deploy.tfvars_values(d, d.operators)) <= set(declared)
