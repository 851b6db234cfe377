"""``povstorm cloud deploy`` and ``povstorm cloud destroy``: the first
deployment of docs/deploy.md in one command, and its teardown.

A deployment is a list of named steps, each one argv (``Step``), run one after
the other in the repository, each tool's output streaming through:

    1 staging the functions' source      deploy/stage_functions.py build/functions
    2 initialising terraform             terraform init
    3 creating the registry and the builder account   terraform apply -target=...
    4 building images with Cloud Build   gcloud builds submit (what `make images` runs)
    5 deploying the rest                 terraform apply

Cloud Run refuses an image that does not exist yet, hence the targeted apply
(the APIs, the registry, the sources bucket and the builder account) before
the build. The first failing step stops the run with its number, name and exit
status; ``--from N`` resumes there. ``--dry-run`` prints the steps and runs
nothing.

Everything that can be known before a step runs is checked first (the tools,
both logins, the project and its billing, the APIs terraform cannot enable
itself, a terraform state or terraform.tfvars that belongs to another
deployment), one line per missing thing, so a deployment does not stop half
way for a reason it could have given at the start.

The deployment's settings are recorded in the root configuration's
terraform.tfvars (written when absent, its values kept current), so that a
plain ``terraform apply`` later, or ``povstorm cloud destroy``, sees the same
deployment. Precedence: flag > terraform.tfvars > default.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from povstorm.core.errors import PovstormError, UserError
from povstorm.core.names import DEFAULTS

# Which binaries run (a path or a name looked up on PATH); flags override them.
TERRAFORM_ENV = "POVSTORM_TERRAFORM"
GCLOUD_ENV = "POVSTORM_GCLOUD"

DEFAULT_REGION = "us-central1"
MIN_TERRAFORM = (1, 5)
ROOT_CONFIG = Path("terraform", "examples", "basic")
MODULE = Path("terraform", "modules", "povstorm")
CHECK_TIMEOUT = 120.0

# What `gcloud builds submit` needs, and terraform creates with them everything
# they depend on: the APIs, the registry, the sources bucket, the builder account.
BUILDER_TARGETS = (
    "module.povstorm.google_artifact_registry_repository_iam_member.builder_pushes_images",
    "module.povstorm.google_storage_bucket_iam_member.builder_reads_sources",
    "module.povstorm.google_project_iam_member.builder_writes_logs",
)

# APIs terraform needs before it can enable the others: google_project_service
# calls Service Usage, and the module's data.google_project (read while
# planning) Resource Manager, both on the project itself.
FIRST_APIS = ("serviceusage.googleapis.com", "cloudresourcemanager.googleapis.com")

_NAMESPACE = re.compile(r"^[a-z][a-z0-9-]{1,17}[a-z0-9]$")  # the module's validation
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # a Docker tag
_MEMBER = re.compile(r"^(user|group|serviceAccount|domain|principal|principalSet):\S+$")


class StepFailed(PovstormError):
    """A step ended with a non-zero status (or could not start)."""

    def __init__(self, number: int, step: Step, detail: str) -> None:
        super().__init__(f"step {number} ({step.name}) failed: {detail}")
        self.number = number
        self.step = step


@dataclass(frozen=True)
class Step:
    """One named command of a deployment."""

    name: str
    argv: tuple[str, ...]

    def line(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Request:
    """What the command line asked for; None: not given (terraform.tfvars,
    then the default, decides)."""

    project: str
    region: str | None = None
    namespace: str | None = None
    tag: str | None = None
    operators: tuple[str, ...] = ()
    root: Path | None = None
    terraform: str = "terraform"
    gcloud: str = "gcloud"
    yes: bool = False


@dataclass(frozen=True)
class Deployment:
    """A request resolved against the checkout and its terraform.tfvars."""

    project: str
    region: str
    namespace: str
    tag: str
    operators: tuple[str, ...]  # from the flags; empty: terraform.tfvars decides
    repo: Path
    root: Path
    terraform: str
    gcloud: str
    yes: bool

    @property
    def bucket(self) -> str:
        return f"{self.project}-{self.namespace}"

    @property
    def registry(self) -> str:
        return f"{self.region}-docker.pkg.dev/{self.project}/{self.namespace}"

    @property
    def builder(self) -> str:
        email = f"{self.namespace}-builder@{self.project}.iam.gserviceaccount.com"
        return f"projects/{self.project}/serviceAccounts/{email}"

    @property
    def tfvars(self) -> Path:
        return self.root / "terraform.tfvars"

    @property
    def outputs_file(self) -> Path:
        return self.root / "povstorm-outputs.json"

    def variables(self, *, tag: bool = True) -> list[str]:
        """The deployment's identity as -var flags: they win over any file."""
        found = [
            f"-var=target_gcp_project_id={self.project}",
            f"-var=target_gcp_region={self.region}",
            f"-var=povstorm_namespace={self.namespace}",
        ]
        if tag:
            found.append(f"-var=image_tag={self.tag}")
        if self.operators:
            found.append(f"-var=operators={json.dumps(list(self.operators))}")
        return found


# --- the steps -----------------------------------------------------------------------


def deploy_steps(d: Deployment) -> list[Step]:
    tf = (d.terraform, f"-chdir={d.root}")
    approve = ("-input=false", "-auto-approve") if d.yes else ()
    targets = tuple(f"-target={t}" for t in BUILDER_TARGETS)
    return [
        Step(
            "staging the functions' source",
            (
                sys.executable,
                str(d.repo / "deploy" / "stage_functions.py"),
                str(d.repo / "build" / "functions"),
            ),
        ),
        Step("initialising terraform", (*tf, "init", "-input=false")),
        Step(
            "creating the registry and the builder account",
            (*tf, "apply", *approve, *d.variables(), *targets),
        ),
        # `make images`, flag for flag (tests/test_deploy_cli.py compares them).
        Step(
            "building images with Cloud Build",
            (
                d.gcloud,
                "builds",
                "submit",
                ".",
                f"--project={d.project}",
                f"--region={d.region}",
                "--config=deploy/cloudbuild.yaml",
                "--ignore-file=deploy/gcloudignore",
                f"--substitutions=_REGISTRY={d.registry},_TAG={d.tag}",
                f"--service-account={d.builder}",
                f"--gcs-source-staging-dir=gs://{d.bucket}-sources/cloudbuild",
            ),
        ),
        Step("deploying the rest", (*tf, "apply", *approve, *d.variables())),
    ]


def destroy_steps(d: Deployment) -> list[Step]:
    tf = (d.terraform, f"-chdir={d.root}")
    approve = ("-input=false", "-auto-approve") if d.yes else ()
    return [
        Step("initialising terraform", (*tf, "init", "-input=false")),
        Step("destroying the deployment", (*tf, "destroy", *approve, *d.variables(tag=False))),
    ]


def run_steps(
    steps: Sequence[Step], cwd: Path, *, first: int = 1, err: TextIO = sys.stderr
) -> None:
    """Run ``steps`` in ``cwd`` from number ``first`` on, the tools' output
    straight to the terminal; raise StepFailed at the first that fails."""
    total = len(steps)
    for number, step in enumerate(steps, 1):
        if number < first:
            print(f"[{number}/{total}] {step.name}: skipped (--from {first})", file=err)
            continue
        print(f"[{number}/{total}] {step.name} ...", file=err)
        print(f"    $ {step.line()}", file=err, flush=True)
        sys.stdout.flush()
        try:
            code = _run(step.argv, cwd)
        except OSError as exc:
            raise StepFailed(number, step, f"cannot run {step.argv[0]}: {exc.strerror}") from None
        if code < 0:
            raise StepFailed(number, step, f"killed by signal {-code}")
        if code:
            raise StepFailed(number, step, f"exit {code}")


def _run(argv: Sequence[str], cwd: Path) -> int:
    proc = subprocess.Popen(argv, cwd=cwd)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # The tool got the Ctrl-C too: terraform stops gracefully and releases
        # its state, which killing it now would leave locked or half written.
        proc.wait()
        raise


# --- the checks ----------------------------------------------------------------------


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)  # each one line; any stops the run
    notes: list[str] = field(default_factory=list)
    account: str = ""  # gcloud's active account


def _capture(argv: Sequence[str], timeout: float = CHECK_TIMEOUT) -> tuple[int, str, str]:
    env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CHECKPOINT_DISABLE": "1"}
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        return 127, "", f"cannot run {argv[0]}: {exc.strerror}"
    except subprocess.TimeoutExpired:
        return 124, "", f"no answer in {timeout:.0f} s"
    return done.returncode, done.stdout, done.stderr


def _said(stderr: str) -> str:
    """The line of a tool's error output worth quoting (gcloud's ERROR line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    line = (errors or lines or ["no output"])[-1]
    line = re.sub(r"^ERROR: \([\w.-]+\) ", "", line)
    return line if len(line) <= 200 else line[:197] + "..."


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("-")[0])[:3])


def check_terraform(d: Deployment, found: Findings) -> None:
    if shutil.which(d.terraform) is None:
        found.problems.append(
            f"terraform is not on PATH ({d.terraform}): install terraform >= "
            f"{'.'.join(map(str, MIN_TERRAFORM))}, "
            f"https://developer.hashicorp.com/terraform/install (or set {TERRAFORM_ENV})"
        )
        return
    code, out, err = _capture([d.terraform, "version", "-json"])
    answer = _json(out) if code == 0 else None
    version = answer.get("terraform_version") if isinstance(answer, dict) else None
    if not isinstance(version, str):
        found.problems.append(f"terraform version failed: {_said(err)}")
    elif _version(version) < MIN_TERRAFORM:
        found.problems.append(
            f"terraform {version} is too old: povstorm needs >= {'.'.join(map(str, MIN_TERRAFORM))}"
        )


def check_gcloud(d: Deployment, found: Findings) -> bool:
    """gcloud on PATH and logged in; then application default credentials."""
    if shutil.which(d.gcloud) is None:
        found.problems.append(
            f"gcloud is not on PATH ({d.gcloud}): install the Google Cloud CLI, "
            f"https://cloud.google.com/sdk/docs/install (or set {GCLOUD_ENV})"
        )
        return False
    code, out, err = _capture([d.gcloud, "auth", "list", "--format=json"])
    accounts = _json(out) if code == 0 else None
    active = [
        a.get("account", "")
        for a in (accounts if isinstance(accounts, list) else [])
        if isinstance(a, dict) and a.get("status") == "ACTIVE"
    ]
    if not isinstance(accounts, list):
        found.problems.append(f"gcloud auth list failed: {_said(err)}")
    elif not active:
        found.problems.append("gcloud is not logged in: run `gcloud auth login`")
    else:
        found.account = active[0]
    check_adc(d, found)
    return bool(found.account)


def check_adc(d: Deployment, found: Findings) -> None:
    # A key file, the ADC file of `gcloud auth application-default login`, or
    # the metadata server: print-access-token tries them as terraform will.
    # Its output is a token: never shown.
    code, _, err = _capture([d.gcloud, "auth", "application-default", "print-access-token"])
    if code:
        said = _said(err)
        found.problems.append(
            "no application default credentials (terraform uses them): run "
            "`gcloud auth application-default login`"
            + ("" if "credentials were not found" in said else f" (gcloud: {said})")
        )


def check_project(d: Deployment, found: Findings, module_apis: set[str]) -> None:
    """The project exists and is active, has billing, and the APIs terraform
    needs first are on; notes which APIs terraform will enable."""
    p = d.project
    code, out, err = _capture([d.gcloud, "projects", "describe", p, "--format=json"])
    answer = _json(out) if code == 0 else None
    if not isinstance(answer, dict):
        found.problems.append(
            f"project {p} does not exist or {found.account} cannot see it (gcloud: {_said(err)})"
        )
        return
    if answer.get("lifecycleState", "ACTIVE") != "ACTIVE":
        found.problems.append(f"project {p} is not active: {answer.get('lifecycleState')}")
        return
    code, out, err = _capture([d.gcloud, "billing", "projects", "describe", p, "--format=json"])
    billing = _json(out) if code == 0 else None
    if not isinstance(billing, dict):
        found.problems.append(f"cannot read the billing of project {p} (gcloud: {_said(err)})")
    elif not billing.get("billingEnabled"):
        found.problems.append(
            f"billing is not enabled on project {p}: link a billing account "
            f"(gcloud billing projects link {p} --billing-account=ACCOUNT_ID)"
        )
    code, out, err = _capture(
        [d.gcloud, "services", "list", "--enabled", f"--project={p}", "--format=json"]
    )
    services = _json(out) if code == 0 else None
    if not isinstance(services, list):
        found.problems.append(f"cannot list the APIs enabled in {p} (gcloud: {_said(err)})")
        return
    enabled = {
        (s.get("config") or {}).get("name") or str(s.get("name", "")).rsplit("/", 1)[-1]
        for s in services
    }
    for api in FIRST_APIS:
        if api not in enabled:
            found.problems.append(
                f"the API {api} is off in {p}, and terraform needs it to enable the others: "
                f"gcloud services enable {api} --project={p}"
            )
    later = sorted(module_apis - enabled - set(FIRST_APIS))
    if later:
        found.notes.append(f"terraform will enable {len(later)} API(s): {', '.join(later)}")
    elif module_apis:
        found.notes.append("every API the module uses is enabled already")


def module_apis(repo: Path) -> set[str]:
    """The APIs the module enables (its ``apis = toset([...])``)."""
    for path in sorted((repo / MODULE).glob("*.tf")):
        block = re.search(r"\bapis\s*=\s*toset\(\[(.*?)\]\)", path.read_text(), re.S)
        if block:
            return set(re.findall(r'"([a-z0-9.-]+\.googleapis\.com)"', block[1]))
    return set()


def state_projects(root: Path) -> set[str] | None:
    """The projects of the resources in the root's local terraform state;
    None when there is no local state file."""
    path = root / "terraform.tfstate"
    if not path.exists():
        return None
    state = _json(path.read_text())
    found: set[str] = set()
    for resource in state.get("resources", []) if isinstance(state, dict) else []:
        for instance in resource.get("instances", []):
            project = (instance.get("attributes") or {}).get("project")
            if isinstance(project, str) and project:
                found.add(project)
    return found


def check_settings(request: Request, d: Deployment, found: Findings) -> None:
    """The values are valid, and terraform.tfvars and the state agree with them."""
    if not _NAMESPACE.match(d.namespace):
        found.problems.append(
            f"namespace {d.namespace!r}: 3-19 of a-z, 0-9 and '-', starting with a letter "
            "and not ending with '-'"
        )
    if not _TAG.match(d.tag):
        found.problems.append(f"image tag {d.tag!r}: letters, digits, '_', '.' and '-'")
    for member in d.operators:
        if not _MEMBER.match(member):
            found.problems.append(
                f"operator {member!r}: user:EMAIL, group:EMAIL or serviceAccount:EMAIL"
            )
    recorded = read_tfvars(d.tfvars)
    asked = {
        "target_gcp_project_id": request.project,
        "target_gcp_region": request.region,
        "povstorm_namespace": request.namespace,
    }
    for key, value in asked.items():
        if value and recorded.get(key, value) != value:
            found.problems.append(
                f'{d.tfvars} sets {key} = "{recorded[key]}", not {value}: edit it if that '
                "is not deployed (povstorm cloud destroy first if it is), or use another --root"
            )
    projects = state_projects(d.root) or set()
    others = sorted(projects - {d.project})
    if others:
        found.problems.append(
            f"{d.root / 'terraform.tfstate'} holds a deployment in {', '.join(others)}: "
            f"destroy it first (povstorm cloud destroy --project {others[0]}) or use "
            "another --root"
        )


def check_terminal(d: Deployment, found: Findings) -> None:
    if not d.yes and not sys.stdin.isatty():
        found.problems.append(
            "no terminal to confirm terraform's plans on: pass --yes to apply them unasked"
        )


# --- terraform.tfvars ----------------------------------------------------------------

TFVARS_HEADER = """\
# Written by `povstorm cloud deploy`: this deployment's settings, read by a
# plain `terraform apply`, by the next `povstorm cloud deploy` and by
# `povstorm cloud destroy`. Edit freely; every other variable keeps its
# default (variables.tf, terraform.tfvars.example).
"""


def read_tfvars(path: Path) -> dict[str, str]:
    """The string assignments of a tfvars file ({} when there is none)."""
    if not path.exists():
        return {}
    pattern = re.compile(r'^\s*(\w+)\s*=\s*"([^"\n]*)"\s*(?:#.*)?$', re.M)
    return {m[1]: m[2] for m in pattern.finditer(path.read_text())}


def update_tfvars(text: str, values: dict[str, str | list[str]]) -> str:
    """``text`` with each of ``values`` set: replaced where it is assigned,
    else appended as a block (aligned as `terraform fmt` aligns it)."""
    missing: dict[str, str] = {}
    for key, value in values.items():
        rendered = json.dumps(value)  # JSON strings and lists are valid HCL
        pattern = re.compile(rf'^([ \t]*{key}[ \t]*=[ \t]*)(\[[^\]]*\]|"[^"\n]*")', re.M)
        found = pattern.search(text)
        if found:
            text = text[: found.start(2)] + rendered + text[found.end(2) :]
        else:
            missing[key] = rendered
    if missing:
        width = max(map(len, missing))
        block = "".join(f"{k:<{width}} = {v}\n" for k, v in missing.items())
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block
    return text


def tfvars_values(d: Deployment, operators: Sequence[str]) -> dict[str, str | list[str]]:
    values: dict[str, str | list[str]] = {
        "target_gcp_project_id": d.project,
        "target_gcp_region": d.region,
        "povstorm_namespace": d.namespace,
        "image_tag": d.tag,
    }
    if operators:
        values["operators"] = list(operators)
    return values


def _assigns(path: Path, key: str) -> bool:
    return path.exists() and re.search(rf"^\s*{key}\s*=", path.read_text(), re.M) is not None


def member_of(account: str) -> str:
    kind = "serviceAccount" if account.endswith(".gserviceaccount.com") else "user"
    return f"{kind}:{account}"


# --- resolving a request -------------------------------------------------------------


def find_repo(start: Path | None = None) -> Path:
    """The povstorm checkout: the working directory or one above it, else the
    one this package is installed from (an editable install)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents, Path(__file__).resolve().parents[3]):
        if (candidate / "deploy" / "stage_functions.py").exists() and (candidate / MODULE).is_dir():
            return candidate
    raise UserError(
        "not in a povstorm checkout: run this from the repository "
        "(deploy/ and terraform/ are not installed with the package)"
    )


def default_tag(repo: Path) -> str:
    """The commit, as `make images` tags by default; else "latest"."""
    code, out, _ = _capture(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], 30)
    return out.strip() if code == 0 and out.strip() else "latest"


def resolve(request: Request, *, deploying: bool) -> Deployment:
    repo = find_repo()
    root = (request.root or repo / ROOT_CONFIG).resolve()
    recorded = read_tfvars(root / "terraform.tfvars")
    if request.tag:
        tag = request.tag
    elif deploying:
        tag = default_tag(repo)
    else:
        tag = recorded.get("image_tag", "latest")
    return Deployment(
        project=request.project,
        region=request.region or recorded.get("target_gcp_region") or DEFAULT_REGION,
        namespace=request.namespace
        or recorded.get("povstorm_namespace")
        or str(DEFAULTS["namespace"]),
        tag=tag,
        operators=tuple(request.operators),
        repo=repo,
        root=root,
        terraform=request.terraform,
        gcloud=request.gcloud,
        yes=request.yes,
    )


# --- the commands --------------------------------------------------------------------


def _print_plan(
    title: str, d: Deployment, steps: Sequence[Step], extra: Sequence[str], out: TextIO
) -> None:
    print(f"{title} (dry run: nothing is checked, written or run)", file=out)
    tag = f", image tag {d.tag}" if title.endswith("deploy") else ""
    print(f"  project {d.project}, region {d.region}, namespace {d.namespace}{tag}", file=out)
    print(f"  root configuration {d.root}", file=out)
    for line in extra:
        print(f"  {line}", file=out)
    print(f"steps, run in {d.repo}:", file=out)
    for number, step in enumerate(steps, 1):
        print(f"[{number}/{len(steps)}] {step.name}", file=out)
        print(f"    $ {step.line()}", file=out)


def _report_problems(found: Findings, err: TextIO) -> bool:
    for problem in found.problems:
        print(f"povstorm: error: {problem}", file=err)
    return not found.problems


def _resume_command(request: Request, d: Deployment, number: int) -> str:
    argv = ["povstorm", "cloud", "deploy", "--project", d.project, "--region", d.region]
    argv += ["--namespace", d.namespace, "--tag", d.tag]
    for member in request.operators:
        argv += ["--operator", member]
    if request.root:
        argv += ["--root", str(d.root)]
    if d.yes:
        argv.append("--yes")
    return shlex.join([*argv, "--from", str(number)])


def deploy(
    request: Request,
    *,
    dry_run: bool = False,
    first: int = 1,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """The whole first deployment (or an update: every step is idempotent)."""
    d = resolve(request, deploying=True)
    steps = deploy_steps(d)
    if not 1 <= first <= len(steps):
        raise UserError(f"--from: a step number from 1 to {len(steps)}")
    operators_said = (
        "" if request.operators or _assigns(d.tfvars, "operators") else "your gcloud account"
    )
    if dry_run:
        verb = "update" if d.tfvars.exists() else "write"
        extra = [
            f"would {verb} {d.tfvars}"
            + (f" (operators: {operators_said})" if operators_said else ""),
            "checks first: gcloud logged in, application default credentials, terraform >= "
            f"{'.'.join(map(str, MIN_TERRAFORM))}, project {d.project} with billing, the APIs "
            f"{' and '.join(FIRST_APIS)}",
        ]
        _print_plan("povstorm cloud deploy", d, steps, extra, out)
        print(f"then: export POVSTORM_CLUSTER={d.outputs_file}", file=out)
        return 0

    print(f"povstorm: checking the prerequisites for project {d.project} ...", file=err)
    found = Findings()
    check_settings(request, d, found)
    check_terraform(d, found)
    if check_gcloud(d, found):
        check_project(d, found, module_apis(d.repo))
    check_terminal(d, found)
    for note in found.notes:
        print(f"  {note}", file=err)
    if not _report_problems(found, err):
        return 1

    operators = list(request.operators) or ([member_of(found.account)] if operators_said else [])
    before = d.tfvars.read_text() if d.tfvars.exists() else TFVARS_HEADER
    after = update_tfvars(before, tfvars_values(d, operators))
    if after != before or not d.tfvars.exists():
        d.tfvars.write_text(after)
        # A replaced value can upset the alignment `terraform fmt -check` wants.
        _capture([d.terraform, "fmt", str(d.tfvars)], 30)
        print(f"povstorm: wrote the deployment's settings to {d.tfvars}", file=err)

    try:
        run_steps(steps, d.repo, first=first, err=err)
    except StepFailed as exc:
        print(f"povstorm: error: {exc}", file=err)
        if exc.number == len(steps):
            print(
                "  a first apply in a new project sometimes fails while Google still creates "
                "a service agent: wait a minute, then resume",
                file=err,
            )
        print(f"  resume with: {_resume_command(request, d, exc.number)}", file=err)
        return 1
    if not d.outputs_file.exists():
        print(f"povstorm: error: the apply did not write {d.outputs_file}", file=err)
        return 1
    print(
        f"povstorm is deployed in {d.project} ({d.region}, namespace {d.namespace}, "
        f"images {d.tag}); its outputs: {d.outputs_file}",
        file=err,
    )
    print(f"export POVSTORM_CLUSTER={shlex.quote(str(d.outputs_file))}", file=out)
    return 0


def what_stays(d: Deployment) -> list[str]:
    """What ``destroy`` leaves behind."""
    return [
        f"the APIs the deployment enabled (other workloads of {d.project} may use them)",
        f"Cloud Functions' Google-managed buckets (gcf-v2-sources-<project number>-{d.region}, "
        "gcf-v2-uploads-...)",
        "the logs, in Cloud Logging until their retention ends",
        f"{d.tfvars}, for a next povstorm cloud deploy",
    ]


def destroy(
    request: Request,
    *,
    dry_run: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """terraform destroy of what ``deploy`` created with the same settings."""
    d = resolve(request, deploying=False)
    steps = destroy_steps(d)
    deletes = (
        "deletes every resource of the deployment: the Firestore (default) database with "
        f"every job, the registry with its images, gs://{d.bucket} (only when empty)"
    )
    if dry_run:
        extra = [deletes, *(f"stays: {line}" for line in what_stays(d))]
        _print_plan("povstorm cloud destroy", d, steps, extra, out)
        return 0

    found = Findings()
    check_settings(request, d, found)
    check_terraform(d, found)
    if shutil.which(d.gcloud) is not None:
        check_adc(d, found)  # else a key file may still do: terraform will say
    projects = state_projects(d.root)
    if projects is not None and d.project not in projects:
        if not projects:
            print(f"povstorm: nothing is deployed from {d.root} (its state is empty)", file=err)
            return 0
        found.problems.append(f"{d.root / 'terraform.tfstate'} holds no deployment in {d.project}")
    check_terminal(d, found)
    if not _report_problems(found, err):
        return 1

    print(f"povstorm: {deletes}", file=err)
    try:
        run_steps(steps, d.repo, err=err)
    except StepFailed as exc:
        print(f"povstorm: error: {exc}", file=err)
        print(
            f"  a bucket that still holds objects is not deleted: empty it "
            f"(gcloud storage rm -r 'gs://{d.bucket}/**') and run this again",
            file=err,
        )
        return 1
    print(f"povstorm: the deployment in {d.project} is destroyed. What stays:", file=err)
    for line in what_stays(d):
        print(f"  {line}", file=err)
    return 0
