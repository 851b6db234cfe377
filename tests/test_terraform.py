"""Static checks of the terraform module (no provider can be downloaded here,
so nothing is planned): the module is parsed with python-hcl2 and its wiring
compared with what the code reads.

Each check is a function returning a list of problems. A test runs it on the
real module and expects none; for every wiring check another test copies the
module to a temporary directory, cuts one wire (an environment variable, a
topic name, an output, a role...) and shows the check now reports it, so a
check that silently passes everything would fail its own test.

Also here: ``terraform fmt -check``, checkov over terraform/ (every skip has an
inline reason), the functions' requirements against pyproject.toml, and the
staged functions source (deploy/stage_functions.py) importing on its own.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import hcl2
import pytest

from povstorm.core.names import (
    COLLECTIONS,
    DEFAULTS,
    ENV,
    FUNCTIONS,
    NAMES,
    SUBSCRIPTIONS,
    TOPICS,
    Namespace,
)
from povstorm.core.settings import Settings
from povstorm.ledger.docs import TTL_FIELD, JobDoc

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM = ROOT / "terraform"
MODULE = TERRAFORM / "modules" / "povstorm"
EXAMPLE = TERRAFORM / "examples" / "basic"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
NAMES_JSON = ROOT / "client" / "povstorm" / "names.json"
NS = "nstest"  # the namespace the checks resolve names with

# --- loading HCL --------------------------------------------------------------------------


def _hcl_options() -> dict[str, Any]:
    try:  # python-hcl2 >= 7 keeps quotes and marks blocks unless told otherwise
        from hcl2.utils import SerializationOptions
    except ImportError:  # older releases already return the plain shape
        return {}
    return {
        "serialization_options": SerializationOptions(
            strip_string_quotes=True, explicit_blocks=False, with_comments=False
        )
    }


def _unquote(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] == '"' else s


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {_unquote(k): _clean(v) for k, v in obj.items() if not k.startswith("__")}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, str):
        return _unquote(obj)
    return obj


@dataclass
class Config:
    """The parsed *.tf files of one directory."""

    dir: Path
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> Config:
        cfg = cls(directory)
        for path in sorted(directory.glob("*.tf")):
            doc = _clean(hcl2.loads(path.read_text(), **_hcl_options()))
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        cfg.resources[(rtype, name)] = body
            for block in doc.get("data", []):
                for dtype, named in block.items():
                    for name, body in named.items():
                        cfg.data[(dtype, name)] = body
            for block in doc.get("locals", []):
                cfg.locals.update(block)
            for block in doc.get("variable", []):
                cfg.variables.update(block)
            for block in doc.get("output", []):
                cfg.outputs.update(block)
            for block in doc.get("module", []):
                cfg.modules.update(block)
        return cfg

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    # --- expressions -------------------------------------------------------------------

    def resolve_ref(self, ref: str, depth: int = 0) -> Any:
        """The value of a reference the checks understand (names.json through
        local.names / local.env, the namespace, plain locals); None otherwise."""
        ref = ref.strip()
        while ref.startswith("(") and ref.endswith(")"):
            ref = ref[1:-1].strip()
        if ref in ("local.ns", "var.povstorm_namespace"):
            return NS
        parts = ref.split(".")
        if parts[:2] == ["local", "names"]:
            value: Any = NAMES
            for p in parts[2:]:
                if not isinstance(value, dict) or p not in value:
                    return None
                value = value[p]
            return value
        if parts[:2] == ["local", "env"] and len(parts) == 3:
            return ENV.get(parts[2])
        if parts[0] == "local" and len(parts) == 2 and parts[1] in self.locals and depth < 5:
            return self.value(self.locals[parts[1]], depth + 1)
        return None

    def value(self, expr: Any, depth: int = 0) -> Any:
        """Resolve what can be resolved; unknown references stay as ``<ref>``."""
        if isinstance(expr, dict):
            return {str(self.value(k, depth)): self.value(v, depth) for k, v in expr.items()}
        if isinstance(expr, list):
            return [self.value(v, depth) for v in expr]
        if not isinstance(expr, str):
            return expr
        whole = re.fullmatch(r"\$\{([^{}]*)\}", expr)
        if whole:
            resolved = self.resolve_ref(whole[1], depth)
            return f"<{whole[1]}>" if resolved is None else resolved

        def sub(m: re.Match[str]) -> str:
            resolved = self.resolve_ref(m[1], depth)
            return f"<{m[1]}>" if resolved is None else str(resolved)

        return re.sub(r"\$\{([^{}]*)\}", sub, expr)


def expressions(obj: Any) -> Iterator[str]:
    """Every ${...} expression inside a parsed body (keys included)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from expressions(k)
            yield from expressions(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from expressions(v)
    elif isinstance(obj, str):
        yield from re.findall(r"\$\{([^{}]*)\}", obj)


def target(expr: Any, rtype: str) -> str | None:
    """The name of the ``rtype`` resource an expression refers to."""
    m = re.search(rf"\b{re.escape(rtype)}\.([a-z0-9_]+)", str(expr))
    return m[1] if m else None


def block(body: dict[str, Any], *path: str) -> dict[str, Any]:
    """The first block along ``path`` ({} where it is missing)."""
    current: Any = body
    for key in path:
        current = current.get(key, {}) if isinstance(current, dict) else {}
        if isinstance(current, list):
            current = current[0] if current else {}
    return current if isinstance(current, dict) else {}


def blocks(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    found = body.get(key, [])
    return found if isinstance(found, list) else [found]


# --- the checks -------------------------------------------------------------------------------


def check_names_source(cfg: Config, anchored_at: Path = MODULE) -> list[str]:
    """local.names is names.json of the package, read with jsondecode(file(...))."""
    expr = cfg.locals.get("names", "")
    m = re.fullmatch(r'\$\{jsondecode\(file\("\$\{path\.module\}/([^"]+)"\)\)\}', str(expr))
    if not m:
        return [f'local.names is not jsondecode(file("${{path.module}}/...")): {expr!r}']
    path = (anchored_at / m[1]).resolve()
    if path != NAMES_JSON.resolve():
        return [f"local.names reads {path}, not the package's {NAMES_JSON}"]
    if cfg.locals.get("env") != "${local.names.env}":
        return ["local.env is not local.names.env"]
    return []


# Terraform built-ins a reference may start with, besides resources.
_NOT_RESOURCES = {"var", "local", "data", "module", "each", "count", "path", "self", "terraform"}


def check_references(cfg: Config) -> list[str]:
    """Every var., local., data. and resource reference names something defined
    (terraform validate would, if a provider could be downloaded here)."""
    problems = []
    resource_types = {t for t, _ in cfg.resources}
    everything = [
        *cfg.resources.values(),
        *cfg.data.values(),
        cfg.locals,
        *cfg.outputs.values(),
        *cfg.modules.values(),
    ]
    for body in everything:
        for expr in expressions(body):
            expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # ignore string literals
            for kind, name in re.findall(r"\b(var|local)\.([A-Za-z0-9_]+)", expr):
                known = cfg.variables if kind == "var" else cfg.locals
                if name not in known:
                    problems.append(f"{kind}.{name} is not defined")
            for dtype, name in re.findall(r"\bdata\.([a-z0-9_]+)\.([A-Za-z0-9_]+)", expr):
                if (dtype, name) not in cfg.data:
                    problems.append(f"data.{dtype}.{name} is not defined")
            for rtype, name in re.findall(
                r"(?<![.\w])([a-z][a-z0-9]*_[a-z0-9_]+)\.([A-Za-z0-9_]+)", expr
            ):
                if rtype in _NOT_RESOURCES or rtype not in resource_types | _typed_like(rtype):
                    continue
                if (rtype, name) not in cfg.resources:
                    problems.append(f"{rtype}.{name} is not defined")
    for body in cfg.resources.values():
        for dep in body.get("depends_on", []) or []:
            dep = str(dep).strip("${}")
            parts = dep.split(".")
            if parts[0] == "data":
                ok = tuple(parts[1:3]) in cfg.data
            else:
                ok = (parts[0], parts[1]) in cfg.resources
            if not ok:
                problems.append(f"depends_on {dep} is not defined")
    return sorted(set(problems))


def _typed_like(rtype: str) -> set[str]:
    # A reference to a resource type the config never declares is still a reference.
    return {rtype} if rtype.startswith(("google_", "local_file", "archive_")) else set()


def check_topics(cfg: Config) -> list[str]:
    """The module's topics are exactly names.json's, named as Namespace names them."""
    ns = Namespace(NS)
    expected = {ns.topic(k) for k in TOPICS}
    actual = {str(cfg.value(b.get("name"))) for b in cfg.of_type("google_pubsub_topic").values()}
    problems = [f"topic {t} is missing" for t in sorted(expected - actual)]
    problems += [f"topic {t} is not in names.json" for t in sorted(actual - expected)]
    return problems


def topic_key(cfg: Config, resource_name: str | None) -> str | None:
    """names.json key of a google_pubsub_topic resource, from its resolved name."""
    if resource_name is None:
        return None
    body = cfg.of_type("google_pubsub_topic").get(resource_name)
    if body is None:
        return None
    name = cfg.value(body.get("name"))
    ns = Namespace(NS)
    return next((k for k in TOPICS if ns.topic(k) == name), None)


# Who consumes each topic, from the event flow in docs/architecture.md: the render
# job's tasks pull the work; the functions take the events. Every subscription
# of names.json must be listed here, so a new one needs a decision.
CONSUMERS = {
    "work": "job:render",
    "frame_events": FUNCTIONS["frame_finalized"],
    "failures": FUNCTIONS["frame_failed"],
    "work_dead_letter": FUNCTIONS["frame_failed"],
    "job_events": FUNCTIONS["job_event"],
}


def deliveries(cfg: Config) -> list[tuple[str | None, str, str]]:
    """(topic key, consumer, via) for every way a topic reaches a consumer."""
    out = []
    functions = cfg.of_type("google_cloudfunctions2_function")

    def entry_point(fn: str | None) -> str:
        body = functions.get(fn or "", {})
        return str(cfg.value(block(body, "build_config").get("entry_point")))

    for sub, body in cfg.of_type("google_pubsub_subscription").items():
        topic = topic_key(cfg, target(body.get("topic"), "google_pubsub_topic"))
        via = f"subscription {cfg.value(body.get('name'))}"
        push = block(body, "push_config")
        if push:
            endpoint = push.get("push_endpoint", "")
            service = target(endpoint, "google_cloud_run_v2_service")
            fn = target(endpoint, "google_cloudfunctions2_function")
            consumer = f"service:{service}" if service else entry_point(fn) if fn else "push:?"
            out.append((topic, consumer, via))
            continue
        # A pull subscription reaches the jobs whose tasks may pull it: those
        # running as an account that holds roles/pubsub.subscriber on it.
        pullers = pulling_jobs(cfg, sub)
        out += [(topic, f"job:{job}", f"{via} (pull)") for job in pullers]
        if not pullers:
            out.append((topic, "nobody", f"{via} (pull, no job may pull it)"))
    for name, body in functions.items():
        trigger = block(body, "event_trigger")
        if trigger:
            topic = topic_key(cfg, target(trigger.get("pubsub_topic"), "google_pubsub_topic"))
            out.append((topic, entry_point(name), f"event_trigger of function {name}"))
    for name, body in cfg.of_type("google_eventarc_trigger").items():
        fn = target(
            block(body, "destination", "cloud_run_service").get("service"),
            "google_cloudfunctions2_function",
        )
        topic = topic_key(
            cfg, target(block(body, "transport", "pubsub").get("topic"), "google_pubsub_topic")
        )
        out.append((topic, entry_point(fn), f"eventarc trigger {name}"))
    return out


def subscribers(cfg: Config, subscription: str) -> set[str]:
    """Accounts holding roles/pubsub.subscriber on a subscription resource."""
    return {
        sa
        for b in cfg.of_type("google_pubsub_subscription_iam_member").values()
        if b.get("role") == "roles/pubsub.subscriber"
        and target(b.get("subscription"), "google_pubsub_subscription") == subscription
        and (sa := target(b.get("member"), "google_service_account"))
    }


def pulling_jobs(cfg: Config, subscription: str) -> list[str]:
    """Cloud Run Jobs whose tasks run as an account that may pull ``subscription``."""
    accounts = subscribers(cfg, subscription)
    return sorted(
        name
        for name, body in cfg.of_type("google_cloud_run_v2_job").items()
        if target(
            block(body, "template", "template").get("service_account"), "google_service_account"
        )
        in accounts
    )


def check_subscriptions(cfg: Config) -> list[str]:
    """Every subscription of names.json delivers its topic to its consumer;
    the work subscription keeps its names.json name (the code names it)."""
    problems = []
    if set(CONSUMERS) != set(SUBSCRIPTIONS):
        problems.append(
            f"names.json subscriptions {sorted(SUBSCRIPTIONS)} != CONSUMERS {sorted(CONSUMERS)}"
        )
    found = deliveries(cfg)
    for key, consumer in CONSUMERS.items():
        if not any(t == key and c == consumer for t, c, _ in found):
            problems.append(f"topic {key} does not reach {consumer}")
    for t, c, via in found:
        if t is None or CONSUMERS.get(t) != c:
            problems.append(f"{via} delivers topic {t} to {c}, which does not consume it")
    ns = Namespace(NS)
    names = {
        str(cfg.value(b.get("name"))) for b in cfg.of_type("google_pubsub_subscription").values()
    }
    if ns.subscription("work") not in names:
        problems.append(f"subscription {ns.subscription('work')} is missing")
    return problems


# The work subscription's ack deadline (docs/deploy.md, Limits; the issue 15
# design): only a pulled message's first lease, which the render task extends
# while it renders. Not a frame's limit any more.
WORK_ACK_DEADLINE = 60


def check_work_subscription(cfg: Config) -> list[str]:
    """The work subscription is pulled (no push), with the design's ack
    deadline and names.json's dead-lettering."""
    ns = Namespace(NS)
    subs = {
        str(cfg.value(b.get("name"))): b for b in cfg.of_type("google_pubsub_subscription").values()
    }
    body = subs.get(ns.subscription("work"))
    if body is None:
        return ["no work subscription"]
    problems = []
    if block(body, "push_config"):
        problems.append("the work subscription pushes: render tasks pull it")
    if cfg.value(body.get("ack_deadline_seconds")) != WORK_ACK_DEADLINE:
        problems.append(f"ack_deadline_seconds is not {WORK_ACK_DEADLINE}")
    dead = block(body, "dead_letter_policy")
    if (
        topic_key(cfg, target(dead.get("dead_letter_topic"), "google_pubsub_topic"))
        != "work_dead_letter"
    ):
        problems.append("the dead-letter topic is not work_dead_letter")
    if cfg.value(dead.get("max_delivery_attempts")) != DEFAULTS["max_delivery_attempts"]:
        problems.append(
            f"max_delivery_attempts is not names.json's {DEFAULTS['max_delivery_attempts']}"
        )
    agents = {
        (
            cfg.value(b.get("member")),
            b.get("role"),
            target(b.get("subscription"), "google_pubsub_subscription"),
        )
        for b in cfg.of_type("google_pubsub_subscription_iam_member").values()
    }
    if not any(
        r == "roles/pubsub.subscriber" and s == "work" and "gcp-sa-pubsub" in str(m)
        for m, r, s in agents
    ):
        problems.append("the Pub/Sub service agent cannot acknowledge dead-lettered work messages")
    return problems


# --- environment ------------------------------------------------------------------------------

CODE_DIRS = ("functions", "render_container", "stitch_container", "client/povstorm")

# Every variable the code reads that no cloud component is given, and why.
NOT_DEPLOYED = {
    ENV["submit_url"]: "read by the client only (Cluster.from_terraform sets it from the outputs)",
    ENV["worker_id"]: "defaults to hostname:pid, unique per render task (a task also logs its"
    " execution and index)",
    "CLOUD_RUN_EXECUTION": "set by Cloud Run on every task of a job execution",
    "CLOUD_RUN_TASK_INDEX": "set by Cloud Run on every task of a job execution",
    "CLOUD_RUN_TASK_COUNT": "set by Cloud Run on every task of a job execution",
    "CLOUD_RUN_TASK_ATTEMPT": "set by Cloud Run on every task of a job execution",
    "POVSTORM_LOG_LEVEL": "optional, INFO by default",
    "POVSTORM_CLUSTER": "the CLI's --cluster default, client only",
    "POVSTORM_HOME": "the client's local state directory",
    "GOOGLE_CLOUD_PROJECT": "a fallback of POVSTORM_PROJECT, which is always set",
    "FIRESTORE_EMULATOR_HOST": "the local stack only",
    "PUBSUB_EMULATOR_HOST": "the local stack only",
    "STORAGE_EMULATOR_HOST": "the local stack only",
    "POVINI": "POV-Ray's INI lookup, read by the client when it parses an invocation",
    "HOME": "POV-Ray's INI lookup on the client; the platform sets it in containers",
    "PYTHONPATH": "passed on to the local stitch process (LocalStitchLauncher) only",
    ENV["povray_threads"]: "0 by default: POV-Ray's own thread count, a thread per vCPU of"
    " the task, which renders one frame at a time",
    ENV["povray_nopoll"]: "set by the render image itself (render_container/Dockerfile ENV),"
    " which builds the library it names",
    "XDG_CACHE_HOME": "where the client and the local stack build POV-Ray's preload library"
    " (povray/nopoll.py); the render image names its own",
}

_CORE = ("project", "namespace", "bucket", "region")
# What each kind of component reads through Settings.from_env(): the functions
# start render tasks (submit, frame_failed, reconcile) and the stitch
# (frame_finalized, frame_failed, reconcile); a render task pulls with a time
# budget, an idle limit and an input cache, and hands work on within the
# slots; the stitch needs the core.
REQUIRED_ENV = {
    "function": {
        ENV[k]
        for k in (
            *_CORE,
            "stitch_launcher",
            "stitch_job",
            "render_launcher",
            "render_job",
            "render_slots",
            "frame_cache_days",
            "frame_cache_bytes",
            # submit records the task sizes on each job, for its cost
            "render_cpus",
            "render_memory",
            "stitch_cpus",
            "stitch_memory",
            # submit makes each job expire this long after it ends (the TTL policy)
            "jobs_retention_days",
        )
    },
    "render": {
        ENV[k]
        for k in (
            *_CORE,
            "render_timeout",
            "render_slots",
            "task_idle",
            "cache_dir",
            "render_launcher",
        )
    },
    "stitch": {ENV[k] for k in _CORE},
}
# What a component's launcher variables must say: the functions start Cloud
# Run executions; render tasks start nothing (the publishers and the
# reconciler do).
LAUNCHERS = {
    "function": {"stitch_launcher": "cloud-run", "render_launcher": "cloud-run"},
    "render": {"render_launcher": "none"},
}

_ENV_READ = re.compile(
    r"""(?:os\.environ(?:\.get|\.setdefault|\.pop)?\s*[\(\[]|os\.getenv\(|\benv(?:iron)?\.get\()\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def env_read_by_code(root: Path = ROOT, dirs: tuple[str, ...] = CODE_DIRS) -> dict[str, str]:
    """Variable -> where: names.json's (Settings reads them all) and every
    literal name read with os.environ / getenv in the code directories."""
    read = {name: "names.json env (Settings.from_env)" for name in ENV.values()}
    for d in dirs:
        for path in sorted((root / d).rglob("*.py")):
            for m in _ENV_READ.finditer(path.read_text()):
                read.setdefault(m[1], str(path.relative_to(root)))
    return read


# Variables a component gets from Secret Manager rather than in the clear
# (secret_environment_variables), and which check says so.
SECRET_ENV = {ENV["notify_secret"]: "the job_event function's signing key (check_notify)"}


def check_env_classified(read: dict[str, str]) -> list[str]:
    deployed = set().union(*REQUIRED_ENV.values(), SECRET_ENV)
    return [
        f"{var} (read in {where}) is neither set on a component nor listed in NOT_DEPLOYED"
        for var, where in sorted(read.items())
        if var not in deployed and var not in NOT_DEPLOYED
    ]


def component_env(cfg: Config) -> dict[str, tuple[str, dict[str, Any]]]:
    """component -> (kind, {variable: resolved value})."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, body in cfg.of_type("google_cloudfunctions2_function").items():
        env = cfg.value(block(body, "service_config").get("environment_variables", {}))
        out[f"function {name}"] = ("function", env if isinstance(env, dict) else {})
    for name, body in cfg.of_type("google_cloud_run_v2_service").items():
        env = {}
        for c in blocks(block(body, "template"), "containers"):
            env.update(
                {str(cfg.value(e["name"])): cfg.value(e.get("value")) for e in blocks(c, "env")}
            )
        out[f"service {name}"] = (name, env)
    for name, body in cfg.of_type("google_cloud_run_v2_job").items():
        env = {}
        for c in blocks(block(body, "template", "template"), "containers"):
            env.update(
                {str(cfg.value(e["name"])): cfg.value(e.get("value")) for e in blocks(c, "env")}
            )
        out[f"job {name}"] = (name, env)
    return out


def check_env(cfg: Config) -> list[str]:
    """Each component is given every variable its kind reads, with the values
    that wire it to this module's own resources."""
    problems = []
    components = component_env(cfg)
    kinds = {kind for kind, _ in components.values()}
    for kind in REQUIRED_ENV:
        if kind not in kinds:
            problems.append(f"no component of kind {kind}")
    for component, (kind, env) in sorted(components.items()):
        for var in sorted(REQUIRED_ENV.get(kind, set()) - set(env)):
            problems.append(f"{component} lacks {var}")
        wiring = {
            ENV["bucket"]: ("google_storage_bucket", "work"),
            ENV["stitch_job"]: ("google_cloud_run_v2_job", "stitch"),
            ENV["render_job"]: ("google_cloud_run_v2_job", "render"),
        }
        for var, (rtype, rname) in wiring.items():
            if var in env and target(env[var], rtype) != rname:
                problems.append(f"{component}: {var} is {env[var]!r}, not {rtype}.{rname}")
        if ENV["namespace"] in env and env[ENV["namespace"]] != NS:
            problems.append(f"{component}: {ENV['namespace']} is not the namespace")
        for key in ("stitch_launcher", "render_launcher"):
            value = env.get(ENV[key])
            if value is not None and value not in launcher_names(key):
                problems.append(
                    f"{component}: {key.replace('_', ' ')} {value!r} is unknown to the code"
                )
        for key, wanted in LAUNCHERS.get(kind, {}).items():
            if ENV[key] in env and env[ENV[key]] != wanted:
                problems.append(f"{component}: {ENV[key]} is {env[ENV[key]]!r}, not {wanted!r}")
    return problems


def launcher_names(key: str = "stitch_launcher") -> set[str]:
    """The launcher names povstorm.cloud.launchers accepts for ``key``
    (settings.stitch_launcher / settings.render_launcher), besides "local"."""
    source = (ROOT / "client" / "povstorm" / "cloud" / "launchers.py").read_text()
    return set(re.findall(rf'settings\.{key} == "([a-z-]+)"', source)) - {"local"}


# --- outputs ----------------------------------------------------------------------------------

# What the deploy guide promises; the client reads a subset (client_output_keys).
DOCUMENTED_OUTPUTS = {
    "project", "region", "namespace", "bucket", "submit_url",
    "render_job", "render_slots", "stitch_job", "firestore_database",
}  # fmt: skip


def client_output_keys() -> set[str]:
    """The keys Cluster.from_terraform reads: values["k"], values.get("k"), and
    the literal tuple of required keys."""
    tree = ast.parse((ROOT / "client" / "povstorm" / "client" / "cluster.py").read_text())
    fn = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "from_terraform"
    )
    keys = set()
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Subscript)
            and getattr(node.value, "id", None) == "values"
            and isinstance(node.slice, ast.Constant)
        ):
            keys.add(node.slice.value)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and getattr(node.func.value, "id", None) == "values"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.add(node.args[0].value)
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple):
            keys |= {e.value for e in node.iter.elts if isinstance(e, ast.Constant)}
    return {k for k in keys if isinstance(k, str)}


def check_outputs(cfg: Config, keys: set[str]) -> list[str]:
    """The module outputs every key and writes it to the JSON file."""
    problems = [f"output {k} is missing" for k in sorted(keys - set(cfg.outputs))]
    written = cfg.value(cfg.locals.get("outputs", {}))
    if not isinstance(written, dict):
        return [*problems, "local.outputs is not a map"]
    problems += [f"{k} is not written to the outputs file" for k in sorted(keys - set(written))]
    files = cfg.of_type("local_file")
    if not any("local.outputs" in str(b.get("content")) for b in files.values()):
        problems.append("no local_file writes local.outputs")
    for k in sorted(keys & set(cfg.outputs)):
        if cfg.outputs[k].get("value") != f"${{local.outputs.{k}}}":
            problems.append(f"output {k} is not local.outputs.{k}")
    return problems


def check_root_outputs(cfg: Config, keys: set[str]) -> list[str]:
    """A root configuration re-exports each key, so `terraform output -json`
    has the {key: {value: ...}} shape the client reads too."""
    problems = []
    for k in sorted(keys):
        value = cfg.outputs.get(k, {}).get("value")
        if not re.fullmatch(rf"\$\{{module\.[a-z0-9_]+\.{k}\}}", str(value)):
            problems.append(f"root output {k} is not module.<name>.{k}")
    return problems


# --- IAM --------------------------------------------------------------------------------------

IAM_SCOPES = {
    "google_project_iam_member": None,
    "google_storage_bucket_iam_member": ("bucket", "google_storage_bucket", "bucket"),
    "google_pubsub_topic_iam_member": ("topic", "google_pubsub_topic", "topic"),
    "google_pubsub_subscription_iam_member": (
        "subscription",
        "google_pubsub_subscription",
        "subscription",
    ),
    "google_cloud_run_v2_job_iam_member": ("name", "google_cloud_run_v2_job", "job"),
    "google_service_account_iam_member": ("service_account_id", "google_service_account", "sa"),
    "google_artifact_registry_repository_iam_member": (
        "repository",
        "google_artifact_registry_repository",
        "repository",
    ),
    "google_cloud_run_v2_service_iam_member": None,
    "google_secret_manager_secret_iam_member": (
        "secret_id",
        "google_secret_manager_secret",
        "secret",
    ),
}

Binding = tuple[str, str, str]  # (principal, role, scope)


def bindings(cfg: Config) -> tuple[set[Binding], list[str]]:
    found: set[Binding] = set()
    problems = []
    for (rtype, name), body in cfg.resources.items():
        if not re.search(r"_iam_(member|binding|policy)$", rtype):
            continue
        if rtype not in IAM_SCOPES:
            problems.append(f"{rtype}.{name}: an IAM resource kind the roles check does not know")
            continue
        member = str(body.get("member", ""))
        if sa := target(member, "google_service_account"):
            principal = sa
        elif "local.pubsub_agent" in member:
            principal = "pubsub-agent"
        elif "local.gcs_agent" in member:
            principal = "gcs-agent"
        elif member == "${each.value}" and "var.operators" in str(body.get("for_each")):
            principal = "operators"
        else:
            problems.append(f"{rtype}.{name}: unknown member {member!r}")
            continue
        if rtype == "google_project_iam_member":
            scope = "project"
            condition = block(body, "condition").get("expression")
            if condition:
                bucket = re.search(r"buckets/([a-z0-9-]*[a-z0-9])", str(cfg.value(condition)))
                scope = f"bucket:{bucket[1]}" if bucket else f"project[{condition}]"
        elif rtype == "google_cloud_run_v2_service_iam_member":
            svc = target(body.get("name"), "google_cloud_run_v2_service")
            fn = target(body.get("name"), "google_cloudfunctions2_function")
            scope = f"service:{svc}" if svc else f"function:{fn}"
        else:
            attr, ref_type, kind = IAM_SCOPES[rtype]  # type: ignore[misc]
            scope = f"{kind}:{target(body.get(attr), ref_type)}"
        found.add((principal, str(body.get("role")), scope))
    return found, problems


_ROW = re.compile(
    r"^\|\s*`([a-z0-9-]+)`\s*\|\s*`(roles/[A-Za-z0-9._]+)`\s*\|\s*`([a-z0-9_:.*-]+)`\s*\|"
)


def documented_roles(doc: Path = DEPLOY_DOC) -> set[Binding]:
    """The rows of the roles table in docs/deploy.md: | `principal` | `role` | `scope` | why |"""
    return {(m[1], m[2], m[3]) for line in doc.read_text().splitlines() if (m := _ROW.match(line))}


def check_roles(cfg: Config, documented: set[Binding]) -> list[str]:
    """Every principal holds exactly the roles of the documented table."""
    actual, problems = bindings(cfg)
    problems += [
        f"{p} holds {r} on {s}, which the table does not list"
        for p, r, s in sorted(actual - documented)
    ]
    problems += [
        f"the table lists {r} on {s} for {p}, which the module does not grant"
        for p, r, s in sorted(documented - actual)
    ]
    accounts = set(cfg.of_type("google_service_account"))
    principals = {p for p, _, _ in documented} - {"pubsub-agent", "gcs-agent", "operators"}
    problems += [
        f"the table names account {p}, which the module does not create"
        for p in sorted(principals - accounts)
    ]
    return problems


# Who runs as whom: one account per component.
IDENTITIES = {
    ("google_cloud_run_v2_job", "render", ("template", "template", "service_account")): "render",
    ("google_cloud_run_v2_job", "stitch", ("template", "template", "service_account")): "stitch",
    ("google_cloudfunctions2_function", "submit", ("service_config", "service_account_email")): "submit",
    ("google_cloudfunctions2_function", "frame_finalized", ("service_config", "service_account_email")): "events",
    ("google_cloudfunctions2_function", "frame_failed", ("service_config", "service_account_email")): "events",
    ("google_cloudfunctions2_function", "reconcile", ("service_config", "service_account_email")): "reconciler",
    ("google_cloudfunctions2_function", "frame_finalized", ("event_trigger", "service_account_email")): "invoker",
    ("google_cloudfunctions2_function", "frame_failed", ("event_trigger", "service_account_email")): "invoker",
    ("google_eventarc_trigger", "work_dead_letter", ("service_account",)): "invoker",
    ("google_cloud_scheduler_job", "reconcile", ("http_target", "oidc_token", "service_account_email")): "scheduler",
    ("google_cloudfunctions2_function", "submit", ("build_config", "service_account")): "builder",
    ("google_cloudfunctions2_function", "frame_finalized", ("build_config", "service_account")): "builder",
    ("google_cloudfunctions2_function", "frame_failed", ("build_config", "service_account")): "builder",
    ("google_cloudfunctions2_function", "reconcile", ("build_config", "service_account")): "builder",
    ("google_cloudfunctions2_function", "job_event", ("service_config", "service_account_email")): "notify",
    ("google_cloudfunctions2_function", "job_event", ("build_config", "service_account")): "builder",
    ("google_pubsub_subscription", "job_events", ("push_config", "oidc_token", "service_account_email")): "invoker",
}  # fmt: skip


def check_identities(cfg: Config) -> list[str]:
    problems = []
    for (rtype, name, path), account in IDENTITIES.items():
        body = cfg.resources.get((rtype, name))
        if body is None:
            problems.append(f"{rtype}.{name} is missing")
            continue
        value = block(body, *path[:-1]).get(path[-1])
        if target(value, "google_service_account") != account:
            problems.append(
                f"{rtype}.{name} {'.'.join(path)} is {value!r}, not the {account} account"
            )
    return problems


# --- the render job ---------------------------------------------------------------------------

# What the render job's tasks run (render_container/Dockerfile's ENTRYPOINT too).
RENDER_COMMAND = ["python", "-m", "povstorm.shells.render_task"]

# Who starts render tasks (CloudRunRenderLauncher): submit after publishing,
# frame_failed for a requeue when no task is active, the reconciler, and the
# operators' `povstorm retry` / `povstorm cancel`.
RENDER_LAUNCHERS = ("submit", "events", "reconciler", "operators")

# Every grant the pull design needs, and what breaks without it. The roles
# table of docs/deploy.md lists them too (check_roles); this check holds even
# if a grant is cut from the module and the table alike.
RENDER_WIRES: dict[Binding, str] = {
    ("render", "roles/pubsub.subscriber", "subscription:work"): "render tasks pull the work subscription",
    ("render", "roles/pubsub.publisher", "topic:work"): "render tasks hand the rest of a chunk on",
    ("render", "roles/pubsub.publisher", "topic:failures"): "render tasks report POV-Ray failures",
    **{
        (p, "roles/run.jobsExecutorWithOverrides", "job:render"): "it starts render tasks"
        " (run_job with a task_count override) and cancels executions"
        for p in RENDER_LAUNCHERS
    },
    **{
        (p, "roles/run.viewer", "job:render"): "it counts the active render tasks (list_executions)"
        for p in RENDER_LAUNCHERS
    },
}  # fmt: skip


def task_retries() -> int | None:
    """TASK_RETRIES of povstorm.cloud.launchers (the local task runner's retries)."""
    source = (ROOT / "client" / "povstorm" / "cloud" / "launchers.py").read_text()
    m = re.search(r"^TASK_RETRIES\s*=\s*(\d+)", source, re.M)
    return int(m[1]) if m else None


def check_render_job(cfg: Config) -> list[str]:
    """The render workers are tasks of the Cloud Run Job '<ns>-render' as the
    issue 15 design says: the task module, the knobs it is sized and timed by,
    and every grant that lets its tasks pull and its launchers start them."""
    body = cfg.of_type("google_cloud_run_v2_job").get("render")
    if body is None:
        return ["no google_cloud_run_v2_job.render"]
    problems = []
    if cfg.value(body.get("name")) != f"{NS}-render":
        problems.append(
            f"the render job is named {cfg.value(body.get('name'))!r}, not '{NS}-render'"
        )
    execution = block(body, "template")
    task = block(body, "template", "template")
    container = block(task, "containers")
    expected = {
        "command": (container.get("command"), RENDER_COMMAND),
        "image": (container.get("image"), "${local.render_image}"),
        "task_count": (execution.get("task_count"), 1),
        "parallelism": (execution.get("parallelism"), "${var.render_service_max_instance_count}"),
        "timeout": (task.get("timeout"), "${var.render_task_timeout_seconds}s"),
        "max_retries": (task.get("max_retries"), "${var.render_task_max_retries}"),
        "cpu": (
            block(container, "resources").get("limits", {}).get("cpu"),
            "${tostring(var.render_service_cpus)}",
        ),
        "memory": (
            block(container, "resources").get("limits", {}).get("memory"),
            "${var.render_service_ram}",
        ),
    }
    for what, (actual, wanted) in expected.items():
        if actual != wanted:
            problems.append(f"render job {what} is {actual!r}, not {wanted!r}")
    env = {str(cfg.value(e["name"])): e.get("value") for e in blocks(container, "env")}
    budget = "${tostring(var.render_task_timeout_seconds - var.render_upload_margin_seconds)}"
    for var, wanted in {
        ENV["render_timeout"]: budget,
        ENV["render_slots"]: "${tostring(var.render_service_max_instance_count)}",
        ENV["task_idle"]: "${tostring(var.render_task_idle_seconds)}",
    }.items():
        if env.get(var) != wanted:
            problems.append(f"render job {var} is {env.get(var)!r}, not {wanted!r}")
    # The functions' slots are the job's: a launch never asks for more.
    slots = next(
        (
            v
            for k, v in (cfg.locals.get("function_env") or {}).items()
            if re.fullmatch(r"\$\{\(?local\.env\.render_slots\)?\}", k)
        ),
        None,
    )
    if slots != "${tostring(var.render_service_max_instance_count)}":
        problems.append(
            f"the functions' {ENV['render_slots']} is {slots!r}, not the job's parallelism"
        )
    retries = cfg.variables.get("render_task_max_retries", {}).get("default")
    if task_retries() is not None and retries != task_retries():
        problems.append(
            f"render_task_max_retries defaults to {retries}, the local task runner to {task_retries()}"
        )
    actual, _ = bindings(cfg)
    for (principal, role, scope), why in RENDER_WIRES.items():
        if (principal, role, scope) not in actual:
            problems.append(f"{principal} lacks {role} on {scope}: {why}")
    return problems


# --- notifications ----------------------------------------------------------------------------

# Every grant notifications need (notify.tf), and what breaks without it.
# Each component that moves a job announces the move on job-events
# (cloud/pubsub.py: publish_job_event); the job_event function signs with
# the deployment's secret and records the delivery; the push reaches it.
JOB_MOVERS = ("submit", "events", "reconciler", "stitch", "operators")
NOTIFY_WIRES: dict[Binding, str] = {
    **{
        (p, "roles/pubsub.publisher", "topic:job_events"): "it moves jobs and announces each move"
        for p in JOB_MOVERS
    },
    ("notify", "roles/datastore.user", "project"): "job_event reads the job and records the delivery",
    ("notify", "roles/secretmanager.secretAccessor", "secret:notify"): "job_event signs with the secret",
    ("invoker", "roles/run.invoker", "function:job_event"): "the push of job-events reaches job_event",
}  # fmt: skip


def check_notify(cfg: Config) -> list[str]:
    """The job_event function gets the signing key from the module's secret,
    which holds the module's random password; the job-events push backs off
    between deliveries (a receiver that failed is not hammered); every grant
    of NOTIFY_WIRES is there."""
    fn = cfg.of_type("google_cloudfunctions2_function").get("job_event")
    if fn is None:
        return ["no google_cloudfunctions2_function.job_event"]
    problems = []
    secrets = blocks(block(fn, "service_config"), "secret_environment_variables")
    given = [e for e in secrets if cfg.value(e.get("key")) == ENV["notify_secret"]]
    if not given:
        problems.append(f"job_event lacks the secret variable {ENV['notify_secret']}")
    elif (
        target(given[0].get("secret"), "google_secret_manager_secret") != "notify"
        or given[0].get("version") != "latest"
    ):
        problems.append(f"job_event's {ENV['notify_secret']} is not the latest notify secret")
    version = cfg.of_type("google_secret_manager_secret_version").get("notify", {})
    if (
        target(version.get("secret"), "google_secret_manager_secret") != "notify"
        or target(version.get("secret_data"), "random_password") != "notify"
    ):
        problems.append("the notify secret does not hold random_password.notify")
    subscription = next(
        (
            b
            for b in cfg.of_type("google_pubsub_subscription").values()
            if topic_key(cfg, target(b.get("topic"), "google_pubsub_topic")) == "job_events"
        ),
        None,
    )
    retry = block(subscription or {}, "retry_policy")
    if not (retry.get("minimum_backoff") and retry.get("maximum_backoff")):
        problems.append("the job_events subscription has no retry backoff")
    actual, _ = bindings(cfg)
    for (principal, role, scope), why in NOTIFY_WIRES.items():
        if (principal, role, scope) not in actual:
            problems.append(f"{principal} lacks {role} on {scope}: {why}")
    return problems


# --- functions source -------------------------------------------------------------------------

_DIST_OF = {  # import name -> distribution, where they differ
    "functions_framework": "functions-framework",
    "google.cloud.firestore": "google-cloud-firestore",
    "google.cloud.storage": "google-cloud-storage",
    "google.cloud.pubsub_v1": "google-cloud-pubsub",
    "google.cloud.run_v2": "google-cloud-run",
    "google.api_core": "google-api-core",
    "google.auth": "google-auth",
    "google.oauth2": "google-auth",
    "grpc": "grpcio",
}


def requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def check_function_requirements(requirements: list[str], pyproject: dict[str, Any]) -> list[str]:
    """requirements.txt installs povstorm's dependencies and the extras the
    functions use (functions-framework, the Cloud Run client for the stitch)."""
    project = pyproject["project"]
    needed = requirement_names(
        [
            *project["dependencies"],
            *project["optional-dependencies"]["functions"],
            *project["optional-dependencies"]["cloud"],
        ]
    )
    have = requirement_names(requirements)
    return [f"functions/requirements.txt lacks {n}" for n in sorted(needed - have)]


def third_party_imports(main: Path, package: Path) -> dict[str, str]:
    """Import name -> importing file, over main.py and every povstorm module it
    reaches (module-level and function-level imports alike)."""
    seen_modules: set[str] = set()
    found: dict[str, str] = {}
    queue = [main]
    while queue:
        path = queue.pop()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                top = name.split(".")[0]
                if top == "povstorm":
                    for file in povstorm_files(package, name):
                        if str(file) not in seen_modules:
                            seen_modules.add(str(file))
                            queue.append(file)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(name, str(path.relative_to(package.parent)))
    return found


def povstorm_files(package: Path, name: str) -> list[Path]:
    """The files importing ``name`` (povstorm.a.b...) runs: each package's
    __init__.py on the way, and the module itself if it is one."""
    files = [package / "__init__.py"]
    here = package
    for part in name.split(".")[1:]:
        here = here / part
        if (here / "__init__.py").exists():
            files.append(here / "__init__.py")
        elif here.with_suffix(".py").exists():
            files.append(here.with_suffix(".py"))
            break
        else:
            break  # a name defined in the module before it
    return files


def check_function_imports(main: Path, package: Path, requirements: list[str]) -> list[str]:
    have = requirement_names(requirements)
    problems = []
    for name, where in sorted(third_party_imports(main, package).items()):
        dist = next(
            (
                d
                for prefix, d in _DIST_OF.items()
                if name == prefix or name.startswith(prefix + ".")
            ),
            None,
        )
        top = name.split(".")[0]
        if dist is None and top != "google":
            dist = top.replace("_", "-")
        if dist is not None and dist not in have and dist not in ("google-api-core",):
            problems.append(f"{where} imports {name}, but requirements.txt does not install {dist}")
    return problems


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_cfg() -> Config:
    return Config.load(MODULE)


def mutated(
    tmp_path: Path, edits: dict[str, list[tuple[str, str]]], source: Path = MODULE
) -> Config:
    """A copy of ``source`` with text replacements applied (each must match)."""
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    for filename, replacements in edits.items():
        path = copy / filename
        text = path.read_text() if path.exists() else ""
        for old, new in replacements:
            if old:
                assert old in text, f"mutation target not found in {filename}: {old!r}"
                text = text.replace(old, new, 1)
            else:
                text += new
        path.write_text(text)
    return Config.load(copy)


def terraform(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("terraform")
    assert binary, "terraform is not installed (https://developer.hashicorp.com/terraform/install)"
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"}
    return subprocess.run(
        [binary, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def checkov_binary() -> str:
    for candidate in (
        os.environ.get("CHECKOV"),
        str(ROOT / ".venv-tools" / "bin" / "checkov"),
        shutil.which("checkov"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "checkov is not installed: python3 -m venv .venv-tools && .venv-tools/bin/pip install checkov"
        " (its dependencies conflict with the project's venv), or set CHECKOV=/path/to/checkov"
    )


def run_checkov(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [checkov_binary(), *args, "--skip-download", "--output", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(
            f"checkov printed no JSON (rc {done.returncode}): {done.stderr[-2000:]}"
        ) from None
    reports = report if isinstance(report, list) else [report]
    merged: dict[str, Any] = {"passed": [], "failed": [], "skipped": [], "rc": done.returncode}
    for r in reports:
        results = r.get("results", {})
        merged["passed"] += results.get("passed_checks", [])
        merged["failed"] += results.get("failed_checks", [])
        merged["skipped"] += results.get("skipped_checks", [])
    return merged


# --- tests: formatting and parsing ------------------------------------------------------------


def test_terraform_fmt_is_clean() -> None:
    done = terraform("fmt", "-check", "-recursive", "-diff", str(TERRAFORM), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_terraform_fmt_check_catches_misformatting(tmp_path: Path) -> None:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform"))
    path = copy / "modules" / "povstorm" / "outputs.tf"
    path.write_text(
        path.read_text().replace(
            "  value       = local.outputs.project", "value=local.outputs.project"
        )
    )
    done = terraform("fmt", "-check", "-recursive", str(copy), cwd=tmp_path)
    assert done.returncode != 0
    assert "outputs.tf" in done.stdout


def test_the_module_and_example_parse_into_what_the_checks_expect(module_cfg: Config) -> None:
    # Guards the loader: were python-hcl2's output shape to change, every
    # other check could pass on an empty config.
    assert len(module_cfg.of_type("google_pubsub_topic")) == len(TOPICS)
    assert len(module_cfg.of_type("google_cloudfunctions2_function")) == len(FUNCTIONS)
    assert (
        module_cfg.value("${local.names.defaults.max_delivery_attempts}")
        == DEFAULTS["max_delivery_attempts"]
    )
    assert module_cfg.value("${local.ns}-${local.names.topics.work}") == f"{NS}-work"
    example = Config.load(EXAMPLE)
    assert set(example.modules) == {"povstorm"}
    assert example.modules["povstorm"]["source"] == "../../modules/povstorm"
    assert (EXAMPLE / "../../modules/povstorm").resolve() == MODULE.resolve()
    for name in example.modules["povstorm"]:
        if name not in ("source", "outputs_file"):
            assert name in module_cfg.variables, f"the example sets {name}, which the module lacks"


def test_example_tfvars_sets_only_variables_the_example_declares() -> None:
    example = Config.load(EXAMPLE)
    tfvars = _clean(
        hcl2.loads((EXAMPLE / "terraform.tfvars.example").read_text(), **_hcl_options())
    )
    assert tfvars, "terraform.tfvars.example parsed empty"
    assert set(tfvars) <= set(example.variables)
    assert "target_gcp_project_id" in tfvars


# --- tests: names and references ----------------------------------------------------------------


def test_names_come_from_the_package_names_json(module_cfg: Config) -> None:
    assert check_names_source(module_cfg) == []


def test_names_check_catches_another_names_file(tmp_path: Path) -> None:
    cfg = mutated(tmp_path, {"main.tf": [("client/povstorm/names.json", "terraform/names.json")]})
    assert any("not the package's" in p for p in check_names_source(cfg))


def test_references_resolve(module_cfg: Config) -> None:
    assert check_references(module_cfg) == []
    assert check_references(Config.load(EXAMPLE)) == []


def test_references_check_catches_a_typo(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "pubsub.tf": [
                (
                    "google_pubsub_topic.work_dead_letter.id",
                    "google_pubsub_topic.work_deadletter.id",
                )
            ],
            "run.tf": [("var.render_service_ram", "var.render_service_memory")],
        },
    )
    problems = check_references(cfg)
    assert "google_pubsub_topic.work_deadletter is not defined" in problems
    assert "var.render_service_memory is not defined" in problems


# --- tests: topics and subscriptions ---------------------------------------------------------------


def test_every_topic_the_code_names_exists(module_cfg: Config) -> None:
    assert check_topics(module_cfg) == []


def test_topics_check_catches_a_renamed_topic(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "pubsub.tf": [
                ('"${local.ns}-${local.names.topics.failures}"', '"${local.ns}-failure-reports"')
            ]
        },
    )
    problems = check_topics(cfg)
    assert f"topic {NS}-failures is missing" in problems
    assert f"topic {NS}-failure-reports is not in names.json" in problems


def test_every_subscription_delivers_to_its_consumer(module_cfg: Config) -> None:
    assert check_subscriptions(module_cfg) == []


def test_subscriptions_check_catches_a_trigger_on_the_wrong_topic(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "functions.tf": [
                (
                    "pubsub_topic          = google_pubsub_topic.frame_events.id",
                    "pubsub_topic          = google_pubsub_topic.failures.id",
                )
            ]
        },
    )
    problems = check_subscriptions(cfg)
    assert f"topic frame_events does not reach {FUNCTIONS['frame_finalized']}" in problems


def test_subscriptions_check_catches_a_dropped_dead_letter_trigger(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "functions.tf": [
                (
                    'resource "google_eventarc_trigger" "work_dead_letter"',
                    'resource "google_eventarc_trigger" "unused"',
                ),
                (
                    "topic = google_pubsub_topic.work_dead_letter.id",
                    "topic = google_pubsub_topic.failures.id",
                ),
            ]
        },
    )
    problems = check_subscriptions(cfg)
    assert f"topic work_dead_letter does not reach {FUNCTIONS['frame_failed']}" in problems


def test_subscriptions_check_catches_a_renamed_work_subscription(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "pubsub.tf": [
                ('"${local.ns}-${local.names.subscriptions.work}"', '"${local.ns}-render-push"')
            ]
        },
    )
    assert f"subscription {NS}-work-render is missing" in check_subscriptions(cfg)


def test_work_subscription_is_wired_as_names_json_says(module_cfg: Config) -> None:
    assert check_work_subscription(module_cfg) == []


def test_work_subscription_check_catches_other_delivery_attempts(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "pubsub.tf": [
                ("local.names.defaults.max_delivery_attempts", "10"),
                (
                    "ack_deadline_seconds       = local.work_ack_deadline_seconds",
                    "ack_deadline_seconds       = 600",
                ),
            ]
        },
    )
    problems = check_work_subscription(cfg)
    assert any("max_delivery_attempts" in p for p in problems)
    assert f"ack_deadline_seconds is not {WORK_ACK_DEADLINE}" in problems


def test_work_subscription_check_catches_a_push_back(tmp_path: Path) -> None:
    push = '  push_config {\n    push_endpoint = "https://render.example/"\n  }\n'
    cfg = mutated(
        tmp_path, {"pubsub.tf": [("  dead_letter_policy {", push + "  dead_letter_policy {")]}
    )
    assert check_work_subscription(cfg) == ["the work subscription pushes: render tasks pull it"]


def test_work_subscription_check_catches_a_missing_agent_grant(tmp_path: Path) -> None:
    grant = (
        '  role         = "roles/pubsub.subscriber"\n'
        '  member       = "serviceAccount:${local.pubsub_agent}"'
    )
    cfg = mutated(
        tmp_path,
        {"iam.tf": [(grant, grant.replace("roles/pubsub.subscriber", "roles/pubsub.viewer"))]},
    )
    assert (
        "the Pub/Sub service agent cannot acknowledge dead-lettered work messages"
        in check_work_subscription(cfg)
    )


# --- tests: environment ---------------------------------------------------------------------------


def test_every_variable_the_code_reads_is_set_or_explained() -> None:
    read = env_read_by_code()
    assert set(ENV.values()) <= set(read)
    assert check_env_classified(read) == []


def test_env_classification_catches_a_new_variable(tmp_path: Path) -> None:
    for d in CODE_DIRS:
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    extra = tmp_path / "render_container" / "extra.py"
    extra.write_text('import os\nLIMIT = os.environ.get("POVSTORM_FRAME_LIMIT", "0")\n')
    problems = check_env_classified(env_read_by_code(tmp_path))
    assert problems == [
        "POVSTORM_FRAME_LIMIT (read in render_container/extra.py) is neither set on a component"
        " nor listed in NOT_DEPLOYED"
    ]


def test_each_component_gets_the_environment_it_reads(module_cfg: Config) -> None:
    assert check_env(module_cfg) == []
    components = component_env(module_cfg)
    assert {kind for kind, _ in components.values()} == set(REQUIRED_ENV)
    assert len(components) == len(FUNCTIONS) + 2  # the functions, the render and stitch jobs


def test_jobs_are_costed_with_the_task_sizes_terraform_gives_the_tasks(module_cfg: Config) -> None:
    """Submit records the render and stitch tasks' sizes on each job, and its
    cost (core/cost.py) is computed with them: the functions get the very
    variables the two Cloud Run jobs are sized by, and Settings' defaults,
    which the local stack uses, are terraform's."""
    sized_by = {
        "render_cpus": "render_service_cpus",
        "render_memory": "render_service_ram",
        "stitch_cpus": "stitch_job_cpus",
        "stitch_memory": "stitch_job_ram",
    }
    env = next(e for kind, e in component_env(module_cfg).values() if kind == "function")
    jobs = json.dumps(module_cfg.of_type("google_cloud_run_v2_job"))
    defaults = Settings()
    for setting, variable in sized_by.items():
        assert f"var.{variable}" in str(env[ENV[setting]]) and f"var.{variable}" in jobs
        assert getattr(defaults, setting) == module_cfg.variables[variable]["default"]


def test_env_check_catches_a_missing_bucket_on_the_render_job(tmp_path: Path) -> None:
    cut = "        env {\n          name  = local.env.bucket\n          value = google_storage_bucket.work.name\n        }\n"
    cfg = mutated(tmp_path, {"run.tf": [(cut, "")]})  # the first: the render job's
    assert check_env(cfg) == [f"job render lacks {ENV['bucket']}"]


def test_env_check_catches_functions_without_the_render_job(tmp_path: Path) -> None:
    # A cut wire of the pull design: the functions could not start a render task.
    cfg = mutated(
        tmp_path,
        {
            "functions.tf": [
                ("    (local.env.render_job)        = google_cloud_run_v2_job.render.id\n", "")
            ]
        },
    )
    assert check_env(cfg) == [
        f"function {name} lacks {ENV['render_job']}"
        for name in sorted(Config.load(MODULE).of_type("google_cloudfunctions2_function"))
    ]


def test_env_check_catches_render_tasks_that_would_launch(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "run.tf": [
                (
                    'name  = local.env.render_launcher\n          value = "none"',
                    'name  = local.env.render_launcher\n          value = "cloud-run"',
                )
            ]
        },
    )
    assert check_env(cfg) == [f"job render: {ENV['render_launcher']} is 'cloud-run', not 'none'"]


def test_env_check_catches_functions_without_the_stitch_job(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "functions.tf": [
                ("    (local.env.stitch_job)        = google_cloud_run_v2_job.stitch.id\n", "")
            ]
        },
    )
    problems = check_env(cfg)
    assert len(problems) == len(FUNCTIONS)
    assert all(p.endswith(f"lacks {ENV['stitch_job']}") for p in problems)


def test_env_check_catches_wrong_values(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "functions.tf": [
                (
                    '(local.env.stitch_launcher)   = "cloud-run"',
                    '(local.env.stitch_launcher)   = "cloudrun"',
                )
            ],
            "run.tf": [
                (
                    "name  = local.env.bucket\n          value = google_storage_bucket.work.name",
                    'name  = local.env.bucket\n          value = "some-other-bucket"',
                )
            ],
        },
    )
    problems = check_env(cfg)
    assert any("stitch launcher 'cloudrun' is unknown" in p for p in problems)
    assert any(
        p.endswith(f"{ENV['stitch_launcher']} is 'cloudrun', not 'cloud-run'") for p in problems
    )
    assert any(p.startswith("job render: POVSTORM_BUCKET is 'some-other-bucket'") for p in problems)


# --- tests: outputs -------------------------------------------------------------------------------


def test_the_client_output_keys_are_found() -> None:
    keys = client_output_keys()
    assert {"project", "bucket", "submit_url", "region", "namespace", "stitch_job"} <= keys
    assert "render_service_url" not in DOCUMENTED_OUTPUTS | keys


def test_every_output_the_client_reads_is_defined(module_cfg: Config) -> None:
    keys = client_output_keys() | DOCUMENTED_OUTPUTS
    assert check_outputs(module_cfg, keys) == []
    assert check_root_outputs(Config.load(EXAMPLE), keys) == []


def test_outputs_check_catches_a_dropped_output(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "outputs.tf": [
                ('output "submit_url" {', 'output "submit_endpoint" {'),
                ("    stitch_job         = google_cloud_run_v2_job.stitch.id\n", ""),
                ("    render_job         = google_cloud_run_v2_job.render.id\n", ""),
            ]
        },
    )
    problems = check_outputs(cfg, client_output_keys() | DOCUMENTED_OUTPUTS)
    assert "output submit_url is missing" in problems
    assert "stitch_job is not written to the outputs file" in problems
    assert "render_job is not written to the outputs file" in problems


def test_root_outputs_check_catches_a_dropped_output(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path, {"outputs.tf": [('output "bucket" {', 'output "work_bucket" {')]}, source=EXAMPLE
    )
    assert check_root_outputs(cfg, client_output_keys()) == [
        "root output bucket is not module.<name>.bucket"
    ]


# --- tests: IAM -----------------------------------------------------------------------------------


def test_the_roles_table_is_found() -> None:
    rows = documented_roles()
    principals = {p for p, _, _ in rows}
    assert {
        "submit",
        "events",
        "reconciler",
        "render",
        "stitch",
        "invoker",
        "scheduler",
    } <= principals
    assert len(rows) >= 20


def test_every_account_holds_exactly_the_documented_roles(module_cfg: Config) -> None:
    assert check_roles(module_cfg, documented_roles()) == []


def test_roles_check_catches_an_extra_role(tmp_path: Path) -> None:
    extra = (
        '\nresource "google_project_iam_member" "render_edits" {\n'
        "  project = local.project\n"
        '  role    = "roles/editor"\n'
        '  member  = "serviceAccount:${google_service_account.render.email}"\n'
        "}\n"
    )
    cfg = mutated(tmp_path, {"iam.tf": [("", extra)]})
    assert check_roles(cfg, documented_roles()) == [
        "render holds roles/editor on project, which the table does not list"
    ]


def test_roles_check_catches_a_widened_scope(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "iam.tf": [
                (
                    "topic   = google_pubsub_topic.failures.name",
                    "topic   = google_pubsub_topic.frame_events.name",
                )
            ]
        },
    )
    problems = check_roles(cfg, documented_roles())
    assert (
        "render holds roles/pubsub.publisher on topic:frame_events, which the table does not list"
        in problems
    )
    assert (
        "the table lists roles/pubsub.publisher on topic:failures for render, which the module does not grant"
        in problems
    )


def test_roles_check_catches_an_undocumented_removal(tmp_path: Path) -> None:
    doc = tmp_path / "deploy.md"
    lines = DEPLOY_DOC.read_text().splitlines()
    row = next(
        i for i, line in enumerate(lines) if line.startswith("| `scheduler` | `roles/run.invoker`")
    )
    doc.write_text("\n".join(lines[:row] + lines[row + 1 :]))
    assert check_roles(Config.load(MODULE), documented_roles(doc)) == [
        "scheduler holds roles/run.invoker on function:reconcile, which the table does not list"
    ]


def test_each_component_runs_as_its_own_account(module_cfg: Config) -> None:
    assert check_identities(module_cfg) == []
    runtime = {a for (_, _, path), a in IDENTITIES.items() if path[0] != "build_config"}
    # submit, events, reconciler, render, stitch, invoker, scheduler, notify
    assert len(runtime) == 8


def test_identities_check_catches_a_shared_account(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "run.tf": [
                (
                    "service_account       = google_service_account.stitch.email",
                    "service_account       = google_service_account.render.email",
                )
            ]
        },
    )
    assert check_identities(cfg) == [
        "google_cloud_run_v2_job.stitch template.template.service_account is "
        "'${google_service_account.render.email}', not the stitch account"
    ]


# --- tests: the render job ------------------------------------------------------------------------


def test_the_render_job_is_wired_as_designed(module_cfg: Config) -> None:
    assert check_render_job(module_cfg) == []
    assert not module_cfg.of_type("google_cloud_run_v2_service"), "the render service is back"
    # The design's wires are also rows of the roles table.
    assert set(RENDER_WIRES) <= documented_roles()


def test_render_wiring_check_catches_tasks_that_cannot_pull(tmp_path: Path) -> None:
    # Cut the render account's subscriber grant on the work subscription, in
    # the module only: the tasks would start and find nothing they may pull.
    cut = (
        "# Render tasks pull chunks, extend their leases and acknowledge them.\n"
        'resource "google_pubsub_subscription_iam_member" "render_pulls_work" {\n'
        "  project      = local.project\n"
        "  subscription = google_pubsub_subscription.work.name\n"
        '  role         = "roles/pubsub.subscriber"\n'
        '  member       = "serviceAccount:${google_service_account.render.email}"\n'
        "}\n"
    )
    cfg = mutated(tmp_path, {"iam.tf": [(cut, "")]})
    assert check_render_job(cfg) == [
        "render lacks roles/pubsub.subscriber on subscription:work:"
        " render tasks pull the work subscription"
    ]
    # The consumers check sees the same cut wire from the work topic's side...
    assert check_subscriptions(cfg) == [
        "topic work does not reach job:render",
        f"subscription {NS}-work-render (pull, no job may pull it) delivers topic work to nobody,"
        " which does not consume it",
    ]
    # ...and the roles table, which still lists the grant, disagrees.
    assert check_roles(cfg, documented_roles()) == [
        "the table lists roles/pubsub.subscriber on subscription:work for render,"
        " which the module does not grant"
    ]


def test_render_wiring_check_catches_a_submit_that_cannot_start_tasks(tmp_path: Path) -> None:
    cut = (
        'resource "google_cloud_run_v2_job_iam_member" "submit_runs_render" {\n'
        "  project  = local.project\n"
        "  location = local.region\n"
        "  name     = google_cloud_run_v2_job.render.name\n"
        '  role     = "roles/run.jobsExecutorWithOverrides"\n'
        '  member   = "serviceAccount:${google_service_account.submit.email}"\n'
        "}\n"
    )
    cfg = mutated(tmp_path, {"iam.tf": [(cut, "")]})
    assert check_render_job(cfg) == [
        "submit lacks roles/run.jobsExecutorWithOverrides on job:render: it starts render tasks"
        " (run_job with a task_count override) and cancels executions"
    ]
    # Cut from the table as well, the roles check would pass: this one does not.
    doc = tmp_path / "deploy.md"
    doc.write_text(
        "\n".join(
            line
            for line in DEPLOY_DOC.read_text().splitlines()
            if not line.startswith(
                "| `submit` | `roles/run.jobsExecutorWithOverrides` | `job:render`"
            )
        )
    )
    assert check_roles(cfg, documented_roles(doc)) == []
    assert check_render_job(cfg) != []


def test_render_wiring_check_catches_a_mis_sized_job(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "run.tf": [
                (
                    '"povstorm.shells.render_task"]',
                    '"povstorm.shells.render_service"]',
                ),
                (
                    "parallelism = var.render_service_max_instance_count",
                    "parallelism = 10",
                ),
                (
                    "value = tostring(var.render_task_timeout_seconds - var.render_upload_margin_seconds)",
                    "value = tostring(var.render_task_timeout_seconds)",
                ),
            ]
        },
    )
    assert check_render_job(cfg) == [
        "render job command is ['python', '-m', 'povstorm.shells.render_service'],"
        f" not {RENDER_COMMAND!r}",
        "render job parallelism is 10, not '${var.render_service_max_instance_count}'",
        f"render job {ENV['render_timeout']} is '${{tostring(var.render_task_timeout_seconds)}}',"
        " not '${tostring(var.render_task_timeout_seconds - var.render_upload_margin_seconds)}'",
    ]


def test_the_render_task_timeout_allows_cloud_runs_maximum(module_cfg: Config) -> None:
    variable = module_cfg.variables["render_task_timeout_seconds"]
    assert variable["default"] == 3600
    # 168 hours, https://cloud.google.com/run/docs/configuring/task-timeout
    condition = str(block(variable, "validation").get("condition"))
    assert "<= 604800" in condition, condition
    assert "cloud.google.com/run/docs/configuring/task-timeout" in variable["description"]
    assert "render_timeout_seconds" not in module_cfg.variables  # the push-era limit is gone


# --- tests: notifications -------------------------------------------------------------------------


def test_notifications_are_wired_as_designed(module_cfg: Config) -> None:
    assert check_notify(module_cfg) == []
    # The design's wires are also rows of the roles table.
    assert set(NOTIFY_WIRES) <= documented_roles()


def test_notify_check_catches_a_stitch_that_cannot_announce_the_end(tmp_path: Path) -> None:
    # Without it the stitch's "done" event is refused: no notification goes
    # out until the reconciler publishes it again minutes later.
    cut = (
        'resource "google_pubsub_topic_iam_member" "stitch_publishes_job_events" {\n'
        "  project = local.project\n"
        "  topic   = google_pubsub_topic.job_events.name\n"
        '  role    = "roles/pubsub.publisher"\n'
        '  member  = "serviceAccount:${google_service_account.stitch.email}"\n'
        "}\n"
    )
    cfg = mutated(tmp_path, {"iam.tf": [(cut, "")]})
    assert check_notify(cfg) == [
        "stitch lacks roles/pubsub.publisher on topic:job_events:"
        " it moves jobs and announces each move"
    ]
    assert check_roles(cfg, documented_roles()) == [
        "the table lists roles/pubsub.publisher on topic:job_events for stitch,"
        " which the module does not grant"
    ]


def test_notify_check_catches_an_unsigned_function_and_a_push_without_backoff(
    tmp_path: Path,
) -> None:
    backoff = '  retry_policy {\n    minimum_backoff = "10s"\n    maximum_backoff = "600s"\n  }\n\n'
    cfg = mutated(
        tmp_path,
        {
            "notify.tf": [
                ("key        = local.env.notify_secret", "key        = local.env.bucket")
            ],
            "pubsub.tf": [(backoff + "  push_config {", "  push_config {")],
        },
    )
    assert check_notify(cfg) == [
        f"job_event lacks the secret variable {ENV['notify_secret']}",
        "the job_events subscription has no retry backoff",
    ]


def test_subscriptions_check_catches_job_events_pushed_elsewhere(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "pubsub.tf": [
                (
                    'push_endpoint = "${google_cloudfunctions2_function.job_event.',
                    'push_endpoint = "${google_cloudfunctions2_function.frame_failed.',
                )
            ]
        },
    )
    assert f"topic job_events does not reach {FUNCTIONS['job_event']}" in check_subscriptions(cfg)


# --- tests: the functions' source ----------------------------------------------------------------


def _requirements() -> list[str]:
    return (ROOT / "functions" / "requirements.txt").read_text().splitlines()


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_function_requirements_cover_the_package() -> None:
    assert check_function_requirements(_requirements(), _pyproject()) == []
    assert (
        check_function_imports(
            ROOT / "functions" / "main.py", ROOT / "client" / "povstorm", _requirements()
        )
        == []
    )


def test_function_requirements_check_catches_a_missing_dependency() -> None:
    trimmed = [
        line for line in _requirements() if not line.startswith(("marshmallow", "google-cloud-run"))
    ]
    assert check_function_requirements(trimmed, _pyproject()) == [
        "functions/requirements.txt lacks google-cloud-run",
        "functions/requirements.txt lacks marshmallow",
    ]
    problems = check_function_imports(
        ROOT / "functions" / "main.py", ROOT / "client" / "povstorm", trimmed
    )
    assert any("marshmallow" in p for p in problems)
    assert any("google-cloud-run" in p for p in problems)


def test_the_module_zips_the_staged_functions_directory(module_cfg: Config) -> None:
    default = str(module_cfg.locals["functions_source_dir"])
    rel = re.search(r"\$\{path\.module\}/([^}\"]+)\}?$", default.replace('"', ""))
    assert rel, default
    assert (MODULE / rel[1]).resolve() == (ROOT / "build" / "functions").resolve()
    archive = module_cfg.data[("archive_file", "functions")]
    assert archive["source_dir"] == "${local.functions_source_dir}"
    for fn in module_cfg.of_type("google_cloudfunctions2_function").values():
        source = block(fn, "build_config", "source", "storage_source")
        assert target(source.get("object"), "google_storage_bucket_object") == "functions_source"
        assert cfg_entry(module_cfg, fn) in FUNCTIONS.values()


def cfg_entry(cfg: Config, fn: dict[str, Any]) -> str:
    return str(cfg.value(block(fn, "build_config").get("entry_point")))


def test_the_staged_functions_source_imports_on_its_own(tmp_path: Path) -> None:
    out = tmp_path / "functions"
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "stage_functions.py"), str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "main.py").is_file() and (out / "requirements.txt").is_file()
    assert (out / "povstorm" / "names.json").is_file()
    assert not list(out.rglob("__pycache__"))
    # Import main.py from the staged root, in a fresh interpreter run from
    # elsewhere: the vendored povstorm must be the one imported, and every
    # entry point terraform deploys must exist.
    probe = (
        "import json, sys, main, povstorm\n"
        "print(json.dumps({'povstorm': povstorm.__file__,"
        " 'targets': [n for n in sys.argv[1:] if callable(getattr(main, n, None))]}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(out)
    done = subprocess.run(
        [sys.executable, "-c", probe, *FUNCTIONS.values()],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["povstorm"]).resolve().is_relative_to(out.resolve())
    assert sorted(report["targets"]) == sorted(FUNCTIONS.values())


# --- tests: checkov -------------------------------------------------------------------------------


def test_checkov_passes_on_terraform() -> None:
    report = run_checkov("--directory", str(TERRAFORM), "--framework", "terraform")
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in report["failed"]]
    assert failed == [], failed
    assert report["passed"], "checkov ran no checks"


def test_every_checkov_skip_gives_a_reason() -> None:
    skips = []
    for path in sorted(TERRAFORM.rglob("*.tf")):
        for line in path.read_text().splitlines():
            if m := re.search(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?", line):
                skips.append((path.name, m[1], (m[2] or "").strip()))
    assert skips, "no skips found (the check below would pass vacuously)"
    for name, check, reason in skips:
        assert len(reason.split()) >= 5, f"{name}: skip of {check} has no reason"
    report = run_checkov("--directory", str(TERRAFORM), "--framework", "terraform")
    # checkov saw every skip, and with its reason.
    assert {c["check_id"] for c in report["skipped"]} == {c for _, c, _ in skips}
    for c in report["skipped"]:
        assert len(c["check_result"].get("suppress_comment", "").split()) >= 5, c["check_id"]


def test_checkov_catches_a_public_bucket(tmp_path: Path) -> None:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform"))
    storage = copy / "modules" / "povstorm" / "storage.tf"
    storage.write_text(
        storage.read_text().replace(
            'public_access_prevention    = "enforced"',
            'public_access_prevention    = "inherited"',
            1,
        )
    )
    report = run_checkov("--directory", str(copy), "--framework", "terraform")
    assert any(c["check_id"] == "CKV_GCP_114" for c in report["failed"])


def test_the_deploy_guide_targets_resources_that_exist(module_cfg: Config) -> None:
    targets = re.findall(
        r"-target=module\.povstorm\.([a-z0-9_]+)\.([a-z0-9_]+)", DEPLOY_DOC.read_text()
    )
    assert targets, "the guide's first, targeted apply is gone"
    for rtype, name in targets:
        assert (rtype, name) in module_cfg.resources, f"{rtype}.{name}"
    # The targeted apply must leave what `make images` needs: the registry,
    # the builder account and its grants (terraform adds their dependencies).
    assert {t for t, _ in targets} >= {
        "google_artifact_registry_repository_iam_member",
        "google_storage_bucket_iam_member",
        "google_project_iam_member",
    }


# --- retention: bucket lifecycle rules and the jobs' TTL policy -------------------------------

# The variable that ages out each prefix's objects (a lifecycle rule of the
# work bucket). The other prefixes (inputs, manifests, videos) go with their
# job only, by `povstorm rm` / `gc` (farm/cleanup.py): a rule on manifests
# would let the local stack's resume rebuild half a job, one on inputs would
# break a job that shares them.
LIFECYCLE = {
    "frames": "var.frame_lifecycle_days",
    "segments": "var.frame_lifecycle_days",
    "logs": "local.logs_lifecycle_days",
    "cache": "var.frame_cache_days",
}
_KEEPS_ZERO = re.compile(r"\$\{(\S+) > 0 \? \[\1\] : \[\]\}")


def lifecycle_rules(cfg: Config) -> list[tuple[str, str, set[str]]]:
    """(days expression, age expression, prefix keys) of each lifecycle rule
    of the work bucket; the days of a static rule are its age."""
    bucket = cfg.of_type("google_storage_bucket").get("work", {})
    rules = [(str(block(r, "condition").get("age")), r) for r in blocks(bucket, "lifecycle_rule")]
    for dynamic in blocks(bucket, "dynamic"):
        rules += [
            (str(r.get("for_each")), block(r, "content")) for r in blocks(dynamic, "lifecycle_rule")
        ]
    key_of = {prefix: key for key, prefix in NAMES["prefixes"].items()}
    return [
        (
            days,
            str(block(rule, "condition").get("age")),
            {
                key_of.get(str(cfg.value(p)), str(p))
                for p in block(rule, "condition").get("matches_prefix", [])
            },
        )
        for days, rule in rules
    ]


def check_retention(cfg: Config) -> list[str]:
    """Objects age out by the variables of LIFECYCLE, each rule dropped when
    its variable is 0; job documents by a TTL policy on the field the ledger
    writes, set while jobs_retention_days > 0, whose value the functions get."""
    problems = []
    covered: dict[str, list[str]] = {}
    for days, age, keys in lifecycle_rules(cfg):
        m = _KEEPS_ZERO.fullmatch(days)
        if not m or age != "${lifecycle_rule.value}":
            problems.append(
                f"the rule on {sorted(keys)} deletes by {days!r}: 0 would not keep them"
            )
        for key in keys:
            covered.setdefault(key, []).append(m[1] if m else days)
    for key in sorted(set(NAMES["prefixes"]) | set(covered)):
        wanted, got = LIFECYCLE.get(key), covered.get(key, [])
        if wanted is None and got:
            problems.append(
                f"a lifecycle rule deletes {key}/ objects, which go with their job only"
            )
        elif wanted is not None and got != [wanted]:
            problems.append(f"{key}/ objects age out by {got}, not [{wanted!r}]")
    logs = cfg.locals.get("logs_lifecycle_days")
    if logs != "${coalesce(var.logs_lifecycle_days, var.frame_lifecycle_days)}":
        problems.append(f"local.logs_lifecycle_days is {logs!r}, not logs' own or else the frames'")

    on_jobs = [
        f
        for f in cfg.of_type("google_firestore_field").values()
        if cfg.value(f.get("collection")) == COLLECTIONS["jobs"]
    ]
    if len(on_jobs) != 1:
        problems.append(f"{len(on_jobs)} google_firestore_field(s) on jobs, not one TTL policy")
    for f in on_jobs:
        if f.get("field") != TTL_FIELD:
            problems.append(
                f"the TTL policy is on {f.get('field')!r}, the ledger writes {TTL_FIELD!r}"
            )
        if "ttl_config" not in f:
            problems.append("the jobs' field has no ttl_config: no TTL policy")
        if f.get("count") != "${var.jobs_retention_days > 0 ? 1 : 0}":
            problems.append(
                f"the TTL policy's count is {f.get('count')!r}, not on jobs_retention_days"
            )
    env = next(
        (
            v
            for k, v in (cfg.locals.get("function_env") or {}).items()
            if re.fullmatch(r"\$\{\(?local\.env\.jobs_retention_days\)?\}", k)
        ),
        None,
    )
    if env != "${tostring(var.jobs_retention_days)}":
        problems.append(f"the functions' {ENV['jobs_retention_days']} is {env!r}")
    return problems


def test_retention_is_wired_as_designed(module_cfg: Config) -> None:
    assert check_retention(module_cfg) == []
    assert TTL_FIELD in {f.name for f in fields(JobDoc)}
    defaults = {
        name: module_cfg.variables[name].get("default")
        for name in (
            "frame_lifecycle_days",
            "logs_lifecycle_days",
            "frame_cache_days",
            "jobs_retention_days",
        )
    }
    assert defaults == {
        "frame_lifecycle_days": 7,
        "logs_lifecycle_days": None,
        "frame_cache_days": 30,
        "jobs_retention_days": 90,
    }
    example = Config.load(EXAMPLE).modules["povstorm"]
    for name in ("frame_lifecycle_days", "logs_lifecycle_days", "jobs_retention_days"):
        assert example.get(name) == f"${{var.{name}}}", f"the example does not pass {name}"


def test_retention_check_catches_a_rule_on_manifests(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "storage.tf": [
                (
                    "matches_prefix = [local.names.prefixes.logs]",
                    "matches_prefix = [local.names.prefixes.logs, local.names.prefixes.jobs]",
                )
            ]
        },
    )
    assert check_retention(cfg) == [
        "a lifecycle rule deletes jobs/ objects, which go with their job only"
    ]


def test_retention_check_catches_a_rule_that_cannot_keep(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "storage.tf": [
                (
                    "for_each = var.frame_cache_days > 0 ? [var.frame_cache_days] : []",
                    "for_each = var.frame_cache_days >= 0 ? [var.frame_cache_days] : []",
                )
            ]
        },
    )
    # With 0 that rule would exist with age 0: every cached frame deleted.
    days = "${var.frame_cache_days >= 0 ? [var.frame_cache_days] : []}"
    assert check_retention(cfg) == [
        f"the rule on ['cache'] deletes by {days!r}: 0 would not keep them",
        f"cache/ objects age out by [{days!r}], not ['var.frame_cache_days']",
    ]


def test_retention_check_catches_logs_aged_by_the_frames_variable(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path,
        {
            "storage.tf": [
                (
                    "matches_prefix = [local.names.prefixes.frames, local.names.prefixes.segments]",
                    "matches_prefix = [local.names.prefixes.frames, local.names.prefixes.segments, local.names.prefixes.logs]",
                )
            ]
        },
    )
    assert check_retention(cfg) == [
        "logs/ objects age out by ['var.frame_lifecycle_days', 'local.logs_lifecycle_days'],"
        " not ['local.logs_lifecycle_days']"
    ]


def test_retention_check_catches_a_ttl_policy_on_another_field(tmp_path: Path) -> None:
    cfg = mutated(
        tmp_path, {"firestore.tf": [('field      = "expire_at"', 'field      = "finished_at"')]}
    )
    assert check_retention(cfg) == [
        f"the TTL policy is on 'finished_at', the ledger writes {TTL_FIELD!r}"
    ]


def test_retention_check_catches_a_field_without_ttl(tmp_path: Path) -> None:
    cfg = mutated(tmp_path, {"firestore.tf": [("  ttl_config {}\n", "")]})
    assert check_retention(cfg) == ["the jobs' field has no ttl_config: no TTL policy"]


def test_env_check_catches_functions_without_the_jobs_retention(tmp_path: Path) -> None:
    cut = "    (local.env.jobs_retention_days) = tostring(var.jobs_retention_days)\n"
    cfg = mutated(tmp_path, {"functions.tf": [(cut, "")]})
    assert check_env(cfg) == [
        f"function {name} lacks {ENV['jobs_retention_days']}"
        for name in sorted(Config.load(MODULE).of_type("google_cloudfunctions2_function"))
    ]
    assert check_retention(cfg) == [f"the functions' {ENV['jobs_retention_days']} is None"]
