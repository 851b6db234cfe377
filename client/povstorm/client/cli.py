"""The ``povstorm`` command: thin over the library (``povstorm.client``).

Every error a user can cause ends as one line on stderr and a non-zero exit:
2 for bad input (a malformed scene, an unknown job), 1 for a job that failed
or a stack that is not available. Options that start with + or - and are not
povstorm's own are POV-Ray's, passed on exactly as ``povray`` would read them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import rich.console
import rich.progress

from povstorm.client import deploy, stacks
from povstorm.client.watch import Progress, fmt_clock
from povstorm.core import cost
from povstorm.core.errors import PovstormError, UserError, verdict
from povstorm.core.model import JobState
from povstorm.core.names import ENV
from povstorm.core.spec import (
    CODECS,
    CRF,
    DEFAULT_CODEC,
    FPS,
    FRAMES_PER_UNIT,
    MAX_ATTEMPTS,
    OutputSpec,
    container_for,
)
from povstorm.core.tiles import TILE_SECONDS, check_tile_seconds
from povstorm.farm.cleanup import Removal, human_bytes, totals

if TYPE_CHECKING:
    from povstorm.povray import ParseCheck

EPILOG_RENDER = """\
examples:
  povstorm render examples/spinning/spinning.ini -o spinning.mp4
  povstorm render scene.pov +W320 +H240 +KFI1 +KFF48 --fps 24 --frames-dir frames/
  povstorm render scene.ini +SF10 +EF20 --json
Any option starting with + or - that povstorm does not know is POV-Ray's.
"""


def _add_cluster_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cluster",
        metavar="OUTPUTS.json",
        default=os.environ.get(ENV["cluster"]),
        help=f"terraform outputs of a cloud deployment (env {ENV['cluster']}); default: the local stack",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="povstorm",
        description="Render POV-Ray animations on a farm: a local emulator stack or Google Cloud.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser(
        "render",
        help="render a scene (INI or .pov, with POV-Ray options) to frames and a video",
        description="Upload a scene, render its frames on the farm, watch live, download the video.",
        epilog=EPILOG_RENDER,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_scene_arguments(r, "POV-Ray options, e.g. +W320 +H240 +KFF24")
    r.add_argument(
        "-o",
        "--output",
        type=Path,
        help="where to write the video (default: <scene>.<the codec's container>, e.g. .mp4), "
        "or a still's image (default: <scene>.png)",
    )
    r.add_argument("--frames-dir", type=Path, help="also download every frame into this directory")
    _add_job_options(
        r,
        "frames one POV-Ray process renders in a row (1-"
        f"{FRAMES_PER_UNIT.high}; default: chosen by the farm, large chunks first, "
        "single frames at the end)",
    )
    r.add_argument("--name", help="job name (default: the scene's name)")
    r.add_argument(
        "--fail-fast",
        action="store_true",
        help="end the job at the first frame that fails for good",
    )
    r.add_argument(
        "--no-check",
        action="store_true",
        help="skip the local parse check (the local povray parses the first and last "
        "frames before anything is uploaded)",
    )
    _add_still_options(r)
    r.add_argument(
        "--proof",
        action="store_true",
        help="first render a quick proof (every Nth frame, a quarter of the size, no "
        "antialiasing): a contact sheet, a preview video and an estimate, then the full job; "
        "a frame the proof cannot render stops there",
    )
    r.add_argument("--proof-only", action="store_true", help="render the proof and stop there")
    r.add_argument(
        "--keep-going",
        action="store_true",
        help="start the full job even if the proof failed",
    )
    r.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="USD",
        help="cancel the job once its projected cost at Cloud Run list prices passes this "
        "many dollars (checked by the farm as each frame lands, once 3 frames or 5 %% of them "
        "are done, whichever is more)",
    )
    r.add_argument(
        "--notify",
        metavar="URL",
        help="when the job ends (done, failed or cancelled), POST a JSON summary to this "
        "http(s) URL, signed with the deployment's secret (X-Povstorm-Signature)",
    )
    r.add_argument(
        "--no-wait", action="store_true", help="submit and print the job id, do not watch"
    )
    r.add_argument(
        "--json", action="store_true", help="print one JSON object at the end instead of text"
    )
    _add_cluster_option(r)
    r.set_defaults(func=cmd_render)

    j = sub.add_parser("jobs", help="recent jobs as a table")
    j.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    j.add_argument("--json", action="store_true", help="print JSON")
    _add_cluster_option(j)
    j.set_defaults(func=cmd_jobs)

    s = sub.add_parser("status", help="one job: state, counts, errors, stats")
    s.add_argument("job_id", metavar="JOB")
    s.add_argument("--json", action="store_true", help="print JSON")
    _add_cluster_option(s)
    s.set_defaults(func=cmd_status)

    w = sub.add_parser("watch", help="follow a job live until it ends")
    w.add_argument("job_id", metavar="JOB")
    w.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    _add_cluster_option(w)
    w.set_defaults(func=cmd_watch)

    lg = sub.add_parser("logs", help="POV-Ray's output for a frame (default: the first failed one)")
    lg.add_argument("job_id", metavar="JOB")
    g = lg.add_mutually_exclusive_group()
    g.add_argument("--frame", type=int, help="POV-Ray frame number")
    g.add_argument("--unit", type=int, help="unit index (for generated jobs)")
    _add_cluster_option(lg)
    lg.set_defaults(func=cmd_logs)

    f = sub.add_parser(
        "fetch", help="download a job's video, poster, contact sheet, frames and stats.json"
    )
    f.add_argument("job_id", metavar="JOB")
    f.add_argument("-o", "--out", type=Path, default=None, help="directory (default: ./<JOB>)")
    f.add_argument("--no-frames", action="store_true", help="skip the frames")
    _add_cluster_option(f)
    f.set_defaults(func=cmd_fetch)

    pv = sub.add_parser(
        "preview",
        help="a contact sheet and a video of the frames done so far, at any time",
        description="Download the frames a job has done so far (only those needed) and make "
        "contact.png and preview.<ext>: the whole animation at the job's fps and codec, each "
        "missing frame held from the nearest done one. Exit 1 while no frame is done.",
    )
    pv.add_argument("job_id", metavar="JOB")
    pv.add_argument(
        "-o", "--out", type=Path, default=None, help="directory (default: ./<JOB>-preview)"
    )
    pv.add_argument(
        "--max-frames",
        type=int,
        default=240,
        metavar="N",
        help="at most N frames in the video, sampled evenly, at the rate that keeps its "
        "length (default 240)",
    )
    _add_cluster_option(pv)
    pv.set_defaults(func=cmd_preview)

    c = sub.add_parser(
        "cancel", help="end a job: mark it cancelled; frames still queued are skipped, not rendered"
    )
    c.add_argument("job_id", metavar="JOB")
    _add_cluster_option(c)
    c.set_defaults(func=cmd_cancel)

    rt = sub.add_parser("retry", help="requeue only the failed frames of a failed job")
    rt.add_argument("job_id", metavar="JOB")
    rt.add_argument("--wait", action="store_true", help="watch the job to its end")
    _add_cluster_option(rt)
    rt.set_defaults(func=cmd_retry)

    st = sub.add_parser(
        "stitch",
        help="make another video of a done job from its frames, on the farm, rendering nothing",
        description="Make a new video of a done job from its frames (or its segments, when "
        "they can be joined unchanged) on the farm; the job keeps every video it has. "
        "Settings not given are the job's own.",
    )
    st.add_argument("job_id", metavar="JOB")
    st.add_argument("--fps", type=int, default=None, help=f"frame rate ({FPS.low}-{FPS.high})")
    st.add_argument("--codec", default=None, metavar="C", help=f"codec: {', '.join(CODECS)}")
    st.add_argument(
        "--crf", type=int, default=None, help=f"quality, lower is better ({CRF.low}-{CRF.high})"
    )
    st.add_argument("--format", default=None, metavar="F", help="container: one the codec goes in")
    st.add_argument("-o", "--output", type=Path, help="download the new video to this file")
    st.add_argument(
        "--timeout", type=float, default=None, help="give up waiting after this many seconds"
    )
    _add_cluster_option(st)
    st.set_defaults(func=cmd_stitch)

    ca = sub.add_parser(
        "cache", help="the frame cache: frames reused by the next job that needs them"
    )
    cache_sub = ca.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    cl = cache_sub.add_parser("ls", help="how many frames the cache holds, their size and age")
    cl.add_argument("--json", action="store_true", help="print JSON")
    _add_cluster_option(cl)
    cl.set_defaults(func=cmd_cache_ls)
    cc = cache_sub.add_parser(
        "clear", help="delete cached frames (all of them, or those past a limit)"
    )
    cc.add_argument(
        "--older-than", type=float, default=None, metavar="DAYS", help="only those older than this"
    )
    cc.add_argument(
        "--max-bytes",
        type=int,
        default=None,
        metavar="N",
        help="delete the oldest until the rest fit in N bytes",
    )
    _add_cluster_option(cc)
    cc.set_defaults(func=cmd_cache_clear)

    _add_sweep_cli(sub)
    _add_cleanup_cli(sub)
    _add_ui_cli(sub)
    _add_cloud_cli(sub)
    stacks.add_cli(sub)  # `povstorm local ...`, from the local stack's plugin
    return parser


EPILOG_SWEEP = """\
examples:
  povstorm sweep ball.pov --declare R=0.5,1,2 --declare Metal=0,1 +W320 +H240
  povstorm sweep ball.pov --declare Roughness=0.01,0.05,0.2 +W320 +H240 +KFF24 -o rough/
The scene reads each NAME as an identifier (POV-Ray's own Declare=NAME=value,
put before each combination's options: it wins over a Declare of the same
name in the options or an INI file). Writes DIR/sweep.png (a grid of the
stills, or of the animations' middle frames, each captioned NAME=value ...),
DIR/sweep.mp4 for an animation (the grid of the videos), DIR/sweep.json and
one directory per combination with its image or video. Exit 1 if any
combination failed (the grid shows the others).
Any option starting with + or - that povstorm does not know is POV-Ray's.
"""


def _add_scene_arguments(p: argparse.ArgumentParser, povray_help: str) -> None:
    """The scene and its POV-Ray options, as `render` and `sweep` take them."""
    p.add_argument("scene", metavar="SCENE.ini|SCENE.pov", help="the INI file or scene to render")
    p.add_argument("povray_args", nargs="*", metavar="POVRAY_OPTION", help=povray_help)


def _add_still_options(p: argparse.ArgumentParser) -> None:
    """--tiles and --radiosity-prepass: render and sweep share them."""
    p.add_argument(
        "--tiles",
        type=_tiles_value,
        default=0,
        metavar="N|auto",
        help="a still: render it as N horizontal bands, each on its own worker, merged into "
        "the PNG povray would write (with antialiasing the bands follow POV-Ray's render "
        "blocks, +BS, 32 rows by default); auto: a proof first, then bands of about "
        "--tile-seconds each by its estimate",
    )
    p.add_argument(
        "--tile-seconds",
        type=float,
        default=TILE_SECONDS,
        metavar="S",
        help=f"with --tiles auto: the seconds a band should take (default {TILE_SECONDS:g})",
    )
    p.add_argument(
        "--radiosity-prepass",
        action="store_true",
        help="render one radiosity pretrace first (the whole image at a quarter size; of an "
        "animation, up to 5 frames across it) and have every tile or frame load its samples: "
        "no steps between tiles, less flicker between frames",
    )


def _tiles_value(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of tiles or auto") from None


def _add_job_options(p: argparse.ArgumentParser, frames_per_unit: str) -> None:
    """The options of a job that `render` and `sweep` share."""
    p.add_argument(
        "--fps", type=int, default=FPS.default, help=f"video frame rate ({FPS.describe()})"
    )
    p.add_argument(
        "--codec",
        default=DEFAULT_CODEC,
        choices=CODECS,
        help=f"video codec (default {DEFAULT_CODEC})",
    )
    p.add_argument(
        "--crf",
        type=int,
        default=CRF.default,
        help=f"video quality, lower is better ({CRF.describe()})",
    )
    p.add_argument(
        "--include",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="upload this file or directory too (for what a scan cannot see)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=MAX_ATTEMPTS.default,
        help=f"attempts per frame before it fails ({MAX_ATTEMPTS.describe()})",
    )
    p.add_argument(
        "--frames-per-unit",
        type=int,
        default=FRAMES_PER_UNIT.default,
        metavar="N",
        help=frames_per_unit,
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="render every frame, even those the frame cache has from an earlier job",
    )
    p.add_argument(
        "--timeout", type=float, default=None, help="give up watching after this many seconds"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="render workers if a local stack is started (default: two per core)",
    )


def _add_sweep_cli(sub: argparse._SubParsersAction) -> None:
    sw = sub.add_parser(
        "sweep",
        help="render a scene once per combination of declared values, side by side in a grid",
        description="A parameter sweep (wedge): one job per combination of the --declare\n"
        "values (their cartesian product, at most 64), all on the farm at once, followed\n"
        "as one progress line, then a captioned grid of their images (and videos).",
        epilog=EPILOG_SWEEP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_scene_arguments(
        sw, "POV-Ray options, e.g. +W320 +H240 +KFF24, the same for every combination"
    )
    sw.add_argument(
        "--declare",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="a POV-Ray identifier and the numbers it takes, one combination per value; "
        "repeat for more names (required)",
    )
    sw.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="the directory for sweep.png, sweep.mp4, sweep.json and the combinations "
        "(default: ./<scene>-sweep)",
    )
    _add_job_options(
        sw, "frames one POV-Ray process renders in a row (default: chosen by the farm)"
    )
    _add_still_options(sw)
    sw.add_argument("--name", help="the jobs' name, before each label (default: the scene's name)")
    sw.add_argument(
        "--no-check",
        action="store_true",
        help="skip the local parse check (of the first and the last combination)",
    )
    sw.add_argument(
        "--json", action="store_true", help="print sweep.json's object at the end instead of text"
    )
    _add_cluster_option(sw)
    sw.set_defaults(func=cmd_sweep)


def _add_cleanup_cli(sub: argparse._SubParsersAction) -> None:
    rm = sub.add_parser(
        "rm",
        help="delete jobs: their documents and objects, printing what went",
        description="Delete each job whole: its ledger documents (the job, its units, shards "
        "and completion markers) and its objects (manifest, frames, logs, segments, videos, "
        "poster, stats.json, and the inputs no other job names). The frame cache stays. A job "
        "still submitted, rendering or stitching is refused unless --force; nothing is removed "
        "if any JOB is unknown.",
    )
    rm.add_argument("job_ids", nargs="+", metavar="JOB")
    _add_removal_options(rm)
    rm.add_argument(
        "--force", action="store_true", help="cancel a job that is still active, then remove it"
    )
    rm.set_defaults(func=cmd_rm)

    gc = sub.add_parser(
        "gc",
        help="delete every job that ended longer ago than an age",
        description="Delete, as rm does, every job that ended (done, failed or cancelled) "
        "longer ago than --older-than, and what Firestore's TTL policy left of expired jobs "
        "(their units, shards and objects).",
    )
    gc.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="how long ago the jobs ended: 30d, 12h, 90m or 45s",
    )
    _add_removal_options(gc)
    gc.set_defaults(func=cmd_gc)


def _add_removal_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-video",
        action="store_true",
        help="keep what fetch gives as each job's result: its videos, poster and contact sheet",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be removed; remove nothing"
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object at the end instead of text"
    )
    _add_cluster_option(p)


def _add_ui_cli(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser(
        "ui",
        help="a live web view of the jobs: progress, frames, errors, cost, video; cancel, "
        "retry, re-stitch",
        description="Serve the web view on this machine until Ctrl-C: the recent jobs and a "
        "page per job (progress and ETA, a grid of frame thumbnails, render time per frame, "
        "errors with POV-Ray's output, stats, cost, the video and poster), updated live from "
        "the ledger's listeners, with buttons to cancel, retry and re-stitch.",
    )
    u.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1: this machine only)",
    )
    u.add_argument(
        "--port", type=int, default=8765, help="the port (default 8765; 0: any free one)"
    )
    u.add_argument("--open", action="store_true", help="open the jobs page in a web browser")
    _add_cluster_option(u)
    u.set_defaults(func=cmd_ui)


EPILOG_CLOUD_DEPLOY = """\
steps (--dry-run prints them with their commands):
  1 stage the functions' source     2 terraform init
  3 targeted apply: APIs, registry, builder account
  4 build the images with Cloud Build (as make images)     5 the full terraform apply
Everything that can be checked is checked first: gcloud and its login,
application default credentials, terraform >= 1.5, the project, its billing
and the APIs terraform cannot enable itself. The settings go into the root
configuration's terraform.tfvars (flags win over it). A failed step stops the
run; --from N resumes there.
example:
  povstorm cloud deploy --project my-render-project --tag v1
"""


def _add_cloud_cli(sub: argparse._SubParsersAction) -> None:
    cloud = sub.add_parser("cloud", help="deploy povstorm to Google Cloud, or tear it down")
    actions = cloud.add_subparsers(dest="cloud_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--project", required=True, help="the Google Cloud project id")
        p.add_argument(
            "--region",
            default=None,
            help=f"region of every regional resource (default: terraform.tfvars', else "
            f"{deploy.DEFAULT_REGION})",
        )
        p.add_argument(
            "--namespace",
            metavar="NS",
            default=None,
            help="prefix of every resource name (default: terraform.tfvars', else povstorm)",
        )
        p.add_argument("--yes", action="store_true", help="apply terraform's plans without asking")
        p.add_argument(
            "--dry-run", action="store_true", help="print the steps; check, write and run nothing"
        )
        p.add_argument(
            "--root",
            type=Path,
            metavar="DIR",
            default=None,
            help="the terraform root configuration (default: terraform/examples/basic)",
        )
        p.add_argument(
            "--terraform",
            metavar="PATH",
            default=os.environ.get(deploy.TERRAFORM_ENV) or "terraform",
            help=f"the terraform binary (env {deploy.TERRAFORM_ENV}; default: terraform on PATH)",
        )
        p.add_argument(
            "--gcloud",
            metavar="PATH",
            default=os.environ.get(deploy.GCLOUD_ENV) or "gcloud",
            help=f"the gcloud binary (env {deploy.GCLOUD_ENV}; default: gcloud on PATH)",
        )

    d = actions.add_parser(
        "deploy",
        help="the whole deployment in one command: checks, terraform, images",
        description="Deploy povstorm to a Google Cloud project: the steps of docs/deploy.md,\n"
        "one after the other, each tool's output shown. Ends with the\n"
        "export POVSTORM_CLUSTER=... line for the client.",
        epilog=EPILOG_CLOUD_DEPLOY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(d)
    d.add_argument(
        "--tag",
        default=None,
        help="the images' tag (default: the checkout's commit, as make images; a new tag "
        "is what rolls Cloud Run out)",
    )
    d.add_argument(
        "--operator",
        action="append",
        default=[],
        metavar="MEMBER",
        help="who may submit and follow jobs: user:EMAIL, group:EMAIL, serviceAccount:EMAIL; "
        "repeat for more (default: terraform.tfvars', else your gcloud account)",
    )
    d.add_argument(
        "--from",
        dest="first",
        type=int,
        default=1,
        metavar="N",
        help="start at step N (resume after a failed step)",
    )
    d.set_defaults(func=cmd_cloud_deploy)

    x = actions.add_parser(
        "destroy",
        help="terraform destroy of the deployment",
        description="Destroy what povstorm cloud deploy created (terraform destroy). The APIs "
        "stay enabled; Cloud Functions' Google-managed buckets and the logs stay.",
    )
    common(x)
    x.set_defaults(func=cmd_cloud_destroy)


def _cloud_request(args: argparse.Namespace) -> deploy.Request:
    return deploy.Request(
        project=args.project,
        region=args.region,
        namespace=args.namespace,
        tag=getattr(args, "tag", None),
        operators=tuple(getattr(args, "operator", ())),
        root=args.root,
        terraform=args.terraform,
        gcloud=args.gcloud,
        yes=args.yes,
    )


def cmd_cloud_deploy(args: argparse.Namespace) -> int:
    return deploy.deploy(_cloud_request(args), dry_run=args.dry_run, first=args.first)


def cmd_cloud_destroy(args: argparse.Namespace) -> int:
    return deploy.destroy(_cloud_request(args), dry_run=args.dry_run)


# --- helpers -------------------------------------------------------------------------


def _cluster(args: argparse.Namespace, start: bool = False) -> Any:
    from povstorm.client import Cluster

    if args.cluster:
        return Cluster.from_terraform(args.cluster)
    return Cluster.local(start=start, workers=getattr(args, "workers", None))


class ProgressPrinter:
    """A job's progress as it changes: on a terminal, a live bar drawn by rich
    (state, done of total, failed, frames per second, ETA) that ends as the
    job's final line; piped, a plain line per change, at most one every
    ``every`` seconds, and the final one, so a log stays readable."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        every: float = 2.0,
        *,
        tty: bool | None = None,
        unit: str = "frames",
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.every = every
        self.unit = unit  # what the job's units are: a tiled job's are "parts"
        self._last = -math.inf  # the first change prints, however young the clock
        self._last_line = ""
        self._bar: rich.progress.Progress | None = None
        self._task: rich.progress.TaskID | None = None

    def __call__(self, p: Progress) -> None:
        if self.tty:
            self._draw(p)
            return
        line = f"{p.job_id}  {p.line(self.unit)}"
        now = time.monotonic()
        if p.finished or (line != self._last_line and now - self._last >= self.every):
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last = now
        self._last_line = "" if p.finished else line

    def _draw(self, p: Progress) -> None:
        fields: dict[str, Any] = {
            "job": p.job_id,
            "state": p.state.value,
            "failed": f"{p.failed} failed" if p.failed else "",
            "rate": f"{p.rate:.2f} {self.unit}/s",
            "eta": f"ETA {fmt_clock(p.eta)}" if p.eta is not None and not p.finished else "",
        }
        if self._bar is None:
            self._bar = rich.progress.Progress(
                rich.progress.TextColumn("{task.fields[job]}"),
                rich.progress.TextColumn("{task.fields[state]:<9}"),
                rich.progress.BarColumn(),
                rich.progress.MofNCompleteColumn(),
                rich.progress.TextColumn("[red]{task.fields[failed]}"),
                rich.progress.TextColumn("{task.fields[rate]}"),
                rich.progress.TextColumn("{task.fields[eta]}"),
                console=rich.console.Console(file=self.stream, force_terminal=True),
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=p.total or None, **fields)
        assert self._task is not None
        self._bar.update(self._task, total=p.total or None, completed=p.done, **fields)
        if p.finished:
            self._stop()

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *_: object) -> None:
        # A watch that ends early (an error, Ctrl-C) ends the live bar first,
        # so what is printed next starts a line of its own.
        self._stop()


def _fmt_seconds(value: Any) -> str:
    try:
        return f"{float(value):.2f}s"
    except (TypeError, ValueError):
        return "-"


def print_stats(stats: dict[str, Any], out: TextIO = sys.stdout) -> None:
    """The job's statistics as ``povstorm.stitch.job.summarise`` writes them."""
    if not stats:
        return
    render = stats.get("render_seconds") or {}
    rows = [
        ("wall time", _fmt_seconds(stats.get("wall_seconds"))),
        (
            "frames",
            str(stats.get("units", "-"))
            + (
                f" ({stats['frames_cached']} from the frame cache)"
                if stats.get("frames_cached")
                else ""
            ),
        ),
        ("render time, total", _fmt_seconds(render.get("total"))),
        (
            "render time per frame",
            f"min {_fmt_seconds(render.get('min'))}  p50 {_fmt_seconds(render.get('p50'))}  "
            f"max {_fmt_seconds(render.get('max'))}",
        ),
        ("CPU time", _fmt_seconds(stats.get("cpu_seconds"))),
        ("speed-up vs one after another", f"{float(stats.get('speedup') or 0):.2f}x"),
    ]
    slow = stats.get("slowest") or []
    if slow:
        rows.append(
            (
                "slowest frames",
                ", ".join(
                    f"{s['frame'] if s.get('frame') is not None else 'unit ' + str(s.get('unit'))}"
                    f" ({_fmt_seconds(s.get('render_seconds'))})"
                    for s in slow
                ),
            )
        )
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=out)


def print_errors(errors: list[dict[str, Any]], out: TextIO = sys.stderr) -> None:
    for e in errors:
        if "stitch" in e:
            print(f"  stitch: {e['stitch']}", file=out)
            continue
        where = f"frame {e['frame']}" if e.get("frame") is not None else f"unit {e.get('unit')}"
        print(f"  {where} (attempt {e.get('attempt')}): {e.get('error')}", file=out)


# --- commands ------------------------------------------------------------------------


def cmd_render(args: argparse.Namespace) -> int:
    from povstorm.client import Job
    from povstorm.core.schemas import check_notify_url

    if args.notify:
        check_notify_url(args.notify)  # before a stack starts for it, before any upload
    if args.budget is not None and not 0 < args.budget < math.inf:
        raise UserError(f"--budget {args.budget:g}: a positive amount of USD")
    _check_tiles(args)
    # Before a stack starts for it, before any upload.
    checked = None if args.no_check else _check_scene(args)
    cluster = _cluster(args, start=True)
    with cluster:
        job = Job.from_ini(
            cluster,
            [args.scene, *args.povray_args],
            include=args.include,
            name=args.name,
            fps=args.fps,
            codec=args.codec,
            crf=args.crf,
            max_attempts=args.max_attempts,
            fail_fast=args.fail_fast,
            frames_per_unit=args.frames_per_unit,
            cache=not args.no_cache,
            notify=args.notify,
            budget_usd=args.budget,
            tiles=args.tiles,
            tile_seconds=args.tile_seconds,
            radiosity_prepass=args.radiosity_prepass,
            check=False,  # done above
        )
        if checked is not None:
            job.estimate_from(checked.estimate, "check")
        for warning in job.warnings:
            print(f"povstorm: warning: {warning}", file=sys.stderr)
        still = not job.invocation.animated
        ext = "png" if still else container_for(OutputSpec(codec=args.codec))
        video = args.output or Path(f"{Path(args.scene).stem}.{ext}")
        if args.proof or args.proof_only or args.tiles == "auto":
            with ProgressPrinter() as printer:
                proof = job.run_proof(
                    dest=video.with_suffix(""), on_progress=None if args.json else printer
                )
            for line in proof.lines():
                print(line, file=sys.stderr)
            if args.tiles == "auto" and (proof.ok or args.keep_going):
                count = job.choose_tiles()
                print(_auto_tiles_line(proof, count, args.tile_seconds), file=sys.stderr)
            if args.proof_only or (not proof.ok and not args.keep_going):
                if not proof.ok and not args.proof_only:
                    print(
                        "povstorm: the full job was not started (--keep-going starts it)",
                        file=sys.stderr,
                    )
                return 0 if proof.ok else 1
        if args.radiosity_prepass:
            with ProgressPrinter() as printer:
                prepass = job.run_prepass(on_progress=None if args.json else printer)
            print(prepass.line(), file=sys.stderr)
        job_id = job.submit()
        if args.no_wait:
            print(job_id)
            return 0
        if not args.json:
            what = f"{job.invocation.frame_count} frame(s)"
            if job.tile_count:
                tiles = f"{job.tile_count} tile(s)"
                what = f"{what} of {tiles} each" if job.invocation.animated else tiles
            print(f"job {job_id}: {what}", file=sys.stderr)
        with ProgressPrinter(unit="parts" if job.tile_count else "frames") as printer:
            final = job.watch(on_progress=None if args.json else printer, timeout=args.timeout)
        done = final.state == JobState.DONE
        result = job.result(
            video=video if done and not still else None,
            image=video if done and still else None,
            frames_dir=args.frames_dir,
        )
        return _report(result, args.json, job.tile_count, job.invocation.animated)


def _check_tiles(args: argparse.Namespace) -> None:
    """--tiles that cannot cut this scene ends here, before a stack starts
    for it or anything is uploaded (one line, exit 2)."""
    if args.tiles:
        from povstorm.client.job import plan_tiles
        from povstorm.povray import parse_invocation

        inv = parse_invocation([args.scene, *args.povray_args], Path.cwd())
        plan_tiles(inv, args.tiles)
        check_tile_seconds(args.tile_seconds)


def _auto_tiles_line(proof: Any, count: int, part: float) -> str:
    seconds = (proof.estimate or {}).get("frame_seconds")
    if seconds is None:
        return "tiles: 1 (the proof gave no estimate)"
    return (
        f"tiles: {count} (the proof estimates ~{seconds:.1f} s for the whole image; "
        f"parts of about {part:g} s)"
    )


def _check_scene(args: argparse.Namespace) -> ParseCheck:
    """The local parse check (povray/check.py): a scene POV-Ray cannot parse
    ends here, in about a second, with POV-Ray's error line (exit 2); what it
    found otherwise, with its estimate of the frames' seconds."""
    from povstorm.povray import check_parse, collect_inputs, parse_invocation

    inv = parse_invocation([args.scene, *args.povray_args], Path.cwd())
    return check_parse(inv, collect_inputs(inv, extra=list(args.include)).files)


def _units(count: int, tiles: int, animated: bool) -> str:
    """``count`` units of a job: frames, or with ``tiles`` bands a frame, parts."""
    if not tiles:
        return f"{count} frame(s)"
    return f"{count} part(s)" + (f" ({count // tiles} frame(s))" if animated else "")


def _report(result: Any, as_json: bool, tiles: int = 0, animated: bool = True) -> int:
    """The job's end; ``tiles``: its bands a frame, when its units are parts."""
    if as_json:
        print(json.dumps(result.summary(), default=str))
    elif result.ok:
        print(
            f"job {result.job_id} done: {_units(result.units_done, tiles, animated)}"
            + (f", video {result.video}" if result.video else "")
            + (f", image {result.image}" if result.image else "")
            + (f"; {cost.line(result.cost, detail=False)}" if result.cost else "")
        )
        if result.frames_dir:
            print(f"  frames in {result.frames_dir}")
        print_stats(result.stats)
    else:
        print(
            f"povstorm: job {result.job_id} {result.state.value}: "
            + (
                result.cancel_reason
                or f"{result.units_failed} of {_units(result.units_expected, tiles, animated)} failed"
            ),
            file=sys.stderr,
        )
        if result.cost:
            print(f"  {cost.line(result.cost)}", file=sys.stderr)
        print_errors(result.errors)
        if result.units_failed:
            print(
                f"  povstorm logs {result.job_id}   shows POV-Ray's output; povstorm retry {result.job_id} requeues the failed frames",
                file=sys.stderr,
            )
    return 0 if result.ok else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    jobs = cluster.jobs(limit=args.limit)
    if args.json:
        print(json.dumps([_job_row(j) for j in jobs], default=str))
        return 0
    if not jobs:
        print("no jobs yet")
        return 0
    header = f"{'JOB':<24} {'NAME':<20} {'STATE':<10} {'DONE':>11} {'FAILED':>6}  CREATED"
    print(header)
    for j in jobs:
        row = _job_row(j)
        print(
            f"{row['job_id']:<24} {row['name'][:20]:<20} {row['state']:<10} "
            f"{row['units_done']:>5}/{row['units_expected']:<5} {row['units_failed']:>6}  {row['created_at']}"
        )
    return 0


def _job_row(job: dict[str, Any]) -> dict[str, Any]:
    created = job.get("created_at")
    return {
        "job_id": job.get("job_id"),
        "name": job.get("name", ""),
        "state": job.get("state"),
        "units_expected": job.get("units_expected", 0),
        "units_done": job.get("units_done", 0),
        "units_failed": job.get("units_failed", 0),
        "created_at": created.strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[union-attr]
        if hasattr(created, "strftime")
        else created,
    }


def cmd_status(args: argparse.Namespace) -> int:
    from povstorm.core.chunks import plan_line
    from povstorm.core.errors import SpecError
    from povstorm.core.schemas import load_job_spec

    cluster = _cluster(args)
    status = cluster.status(args.job_id)
    if args.json:
        keep = (
            "job_id",
            "name",
            "state",
            "units_expected",
            "units_done",
            "units_failed",
            "created_at",
            "started_at",
            "finished_at",
            "video",
            "videos",
            "stats",
            "errors",
            "delivery",
            "cost",
            "plan",
            "cancel_reason",
        )
        print(json.dumps({k: status.get(k) for k in keep}, default=str))
        return 0
    print(f"job {status['job_id']} ({status.get('name')}): {status['state']}")
    print(
        f"  {status['units_done']}/{status['units_expected']} done, {status['units_failed']} failed"
    )
    for key in ("created_at", "started_at", "finished_at"):
        if status.get(key):
            print(f"  {key.replace('_at', '')}: {status[key]}")
    if status.get("cancel_reason"):
        print(f"  cancelled by the farm: {status['cancel_reason']}")
    print(f"  {cost.line(status['cost'])}")
    if (status.get("spec") or {}).get("povray") and status.get("plan"):  # a scene job
        # A spec stored by another version of povstorm may not load: no plan line.
        with contextlib.suppress(SpecError):
            print(f"  plan: {plan_line(load_job_spec(status['spec']), status['plan'])}")
    if status.get("video"):
        print(f"  video: {status['video']}")
    for v in (status.get("videos") or {}).values():
        settings = f"{v.get('fps')} fps, {v.get('codec')}, crf {v.get('crf')}"
        error = f": {v['error']}" if v.get("error") else ""
        print(f"  video: {v.get('object')} ({settings}; {v.get('state')}{error})")
    notify = (status.get("spec") or {}).get("notify")
    if notify:
        print(f"  notify: {_delivery_line(notify, status.get('delivery'))}")
    print_stats(status.get("stats") or {})
    print_errors(status.get("errors") or [], sys.stdout)
    return 0


def _delivery_line(url: str, record: dict[str, Any] | None) -> str:
    """The job's notification as ``status`` prints it (farm/notify.py)."""
    if not record:
        return f"{url} (nothing sent yet)"
    attempts = int(record.get("attempts") or 0)
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if record.get("state") == "delivered":
        return f"delivered to {record.get('url')} ({tries}, at {record.get('delivered_at')})"
    last = record.get("error") or "in flight"
    return f"{record.get('state')} to {record.get('url')} ({tries}, last: {last})"


def cmd_watch(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    cluster.ledger.require_job(args.job_id)
    with ProgressPrinter() as printer:
        final = cluster.watch(args.job_id, on_progress=printer, timeout=args.timeout)
    return 0 if final.state == JobState.DONE else 1


def cmd_logs(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    logs = cluster.logs(args.job_id, unit=args.unit, frame=args.frame)
    if not logs:
        raise UserError(f"no POV-Ray output stored for that frame of {args.job_id} yet")
    for name, text in logs:
        print(f"==> {name} <==")
        print(text.rstrip())
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    job = cluster.ledger.require_job(args.job_id)
    out = args.out or Path(args.job_id)
    result = cluster.fetch(args.job_id, out, frames_dir=None if args.no_frames else out / "frames")
    # A still has no video: its image (its tiles merged) is the poster.
    still = not ((job.get("spec") or {}).get("output") or {}).get("video", True)
    image = "image poster.png" if still and job.get("poster") else "no video"
    print(
        f"fetched {args.job_id} into {out}/: "
        + ", ".join(
            filter(
                None,
                [
                    f"video {result.video.name}" if result.video else image,
                    ", ".join(f"video {v.name}" for v in result.videos),
                    f"{len(result.frames)} frame(s)" if result.frames else "",
                    "stats.json",
                ],
            )
        )
    )
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    if args.max_frames < 1:
        raise UserError("--max-frames: 1 or more")
    cluster = _cluster(args)
    made = cluster.preview(
        args.job_id, args.out or Path(f"{args.job_id}-preview"), max_frames=args.max_frames
    )
    print(made.line())
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    state = cluster.cancel(args.job_id)
    print(f"job {args.job_id}: {state}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    count = cluster.retry(args.job_id)
    print(f"job {args.job_id}: requeued {count} unit(s)")
    if args.wait:
        with ProgressPrinter() as printer:
            final = cluster.watch(args.job_id, on_progress=printer)
        return 0 if final.state == JobState.DONE else 1
    return 0


def cmd_stitch(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    made = cluster.restitch(
        args.job_id,
        fps=args.fps,
        codec=args.codec,
        crf=args.crf,
        format=args.format,
        out=args.output,
        **({} if args.timeout is None else {"timeout": args.timeout}),
    )
    print(f"job {args.job_id}: video {made.object}" + (f" -> {made.path}" if made.path else ""))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``povstorm sweep``: every declaration checked, and the first and last
    combinations parsed by the local povray, before a stack starts for it or
    anything is uploaded; then client/sweep.py's Sweep, step by step."""
    from povstorm.client import Sweep
    from povstorm.client.sweep import check_ends, combinations, parse_declares

    argv = [args.scene, *args.povray_args]
    combos = combinations(parse_declares(args.declare))
    _check_tiles(args)
    # Before a stack starts for it, before any upload.
    estimates = None if args.no_check else check_ends(argv, combos, include=args.include)
    out = args.out or Path(f"{Path(args.scene).stem}-sweep")
    with _cluster(args, start=True) as cluster:
        sweep = Sweep.from_ini(
            cluster,
            argv,
            args.declare,
            include=args.include,
            name=args.name,
            fps=args.fps,
            codec=args.codec,
            crf=args.crf,
            max_attempts=args.max_attempts,
            frames_per_unit=args.frames_per_unit,
            cache=not args.no_cache,
            tiles=args.tiles,
            tile_seconds=args.tile_seconds,
            radiosity_prepass=args.radiosity_prepass,
            check=False,  # done above
            estimates=estimates,
        )
        for warning in sweep.warnings:
            print(f"povstorm: warning: {warning}", file=sys.stderr)
        ids = sweep.submit()
        if not args.json:
            print(
                f"{sweep.label}: {sweep.invocation.frame_count} frame(s) each: {', '.join(ids)}",
                file=sys.stderr,
            )
        with ProgressPrinter() as printer:
            sweep.watch(on_progress=None if args.json else printer, timeout=args.timeout)
        result = sweep.result(out)
    return _report_sweep(result, args.json)


def _report_sweep(result: Any, as_json: bool) -> int:
    """The sweep's outputs, a line per combination; those that failed, why."""
    if as_json:
        print(json.dumps(result.summary(), default=str))
        return 0 if result.ok else 1
    print(result.line())
    width = max(len(c.combination.label) for c in result.cells)
    for cell in result.cells:
        where = cell.image or cell.video or f"{cell.dir}/"
        print(f"  {cell.combination.label:<{width}}  {cell.job_id}  {cell.state.value:<9}  {where}")
    if result.failed:
        print(
            f"povstorm: sweep {result.name}: {len(result.failed)} of {len(result.cells)} "
            "combination(s) failed",
            file=sys.stderr,
        )
        for cell in result.failed:
            print(f"  {cell.combination.label} ({cell.job_id}): {cell.error()}", file=sys.stderr)
        print(
            "  povstorm logs JOB   shows POV-Ray's output; povstorm retry JOB requeues its "
            "failed frames",
            file=sys.stderr,
        )
    return 0 if result.ok else 1


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else "-"


def cmd_cache_ls(args: argparse.Namespace) -> int:
    with _cluster(args) as cluster:
        found = cluster.cache_summary()
    if args.json:
        print(json.dumps(dataclasses.asdict(found)))
    else:
        print(
            f"{found.entries} frame(s), {found.bytes / 1e6:.1f} MB, "
            f"oldest {_when(found.oldest)}, newest {_when(found.newest)}"
        )
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    if args.older_than is not None and args.older_than < 0:
        raise UserError("--older-than: a number of days, 0 or more")
    if args.max_bytes is not None and args.max_bytes < 0:
        raise UserError("--max-bytes: 0 or more")
    with _cluster(args) as cluster:
        removed = cluster.clear_cache(older_than_days=args.older_than, max_bytes=args.max_bytes)
    print(f"removed {removed.entries} cached frame(s), {removed.bytes / 1e6:.1f} MB")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    with _cluster(args) as cluster:
        return _removing(
            args,
            lambda report: cluster.remove(
                *args.job_ids,
                keep_video=args.keep_video,
                force=args.force,
                dry_run=args.dry_run,
                on_removed=report,
            ),
        )


def cmd_gc(args: argparse.Namespace) -> int:
    age = _age(args.older_than)
    with _cluster(args) as cluster:
        return _removing(
            args,
            lambda report: cluster.gc(
                age, keep_video=args.keep_video, dry_run=args.dry_run, on_removed=report
            ),
            nothing=f"nothing to remove: no job ended more than {args.older_than} ago",
        )


def cmd_ui(args: argparse.Namespace) -> int:
    try:
        from povstorm.ui import create_app, serve
    except ImportError as exc:  # Flask, waitress or Pillow missing
        raise PovstormError(
            f"the web view needs povstorm's ui extra (pip install 'povstorm[ui]'): {exc}"
        ) from None
    import webbrowser

    from povstorm.core.settings import povstorm_home

    def ready(url: str) -> None:
        print(f"povstorm ui: {url} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        if args.open:
            webbrowser.open(url)

    with _cluster(args) as cluster:
        app = create_app(cluster, povstorm_home() / "ui")
        try:
            serve(app, args.host, args.port, ready)
        except OSError as exc:  # the port is taken, or the address not this machine's
            raise UserError(
                f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None
    return 0


_AGE_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def _age(text: str) -> dt.timedelta:
    """An age as ``gc --older-than`` takes it: 30d, 12h, 90m, 45s."""
    try:
        value = float(text[:-1])
    except ValueError:
        value = math.nan
    if text[-1:] not in _AGE_UNITS or not (math.isfinite(value) and value >= 0):
        raise UserError(f"--older-than {text}: an age like 30d, 12h, 90m or 45s")
    return dt.timedelta(seconds=value * _AGE_UNITS[text[-1]])


def _removing(
    args: argparse.Namespace, run: Callable[[Callable[[Removal], None]], object], nothing: str = ""
) -> int:
    """Run a removal, printing each job as soon as it is removed (so that one
    stopped by an error still says what went), then the totals."""
    removals: list[Removal] = []

    def report(removal: Removal) -> None:
        removals.append(removal)
        if not args.json:
            print("\n".join(removal.lines()), flush=True)

    try:
        run(report)
    except BaseException:
        if removals:  # what went before the error
            _print_totals(args, removals)
        raise
    _print_totals(args, removals, nothing)
    return 0


def _print_totals(args: argparse.Namespace, removals: list[Removal], nothing: str = "") -> None:
    t = totals(removals)
    if args.json:
        jobs = [r.as_dict() for r in removals]
        print(json.dumps({"dry_run": args.dry_run, "jobs": jobs, "totals": t}))
    elif len(removals) > 1:
        keep = "would keep" if args.dry_run else "kept"
        print(
            f"{'would remove' if args.dry_run else 'removed'} {t['jobs']} job(s): "
            f"{t['documents']} document(s), {t['objects']} object(s) of "
            f"{human_bytes(t['bytes'])}" + (f"; {keep} {t['kept']} object(s)" if t["kept"] else "")
        )
    elif not removals and nothing:
        print(nothing)


def split_render_argv(
    parser: argparse.ArgumentParser, argv: list[str], command: str = "render"
) -> tuple[list[str], list[str]]:
    """Split ``render``'s (or ``sweep``'s) arguments into povstorm's options
    and POV-Ray's, in their order: POV-Ray reads options left to right, so
    order must survive."""
    render = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr,index]
    ours = render._option_string_actions
    mine: list[str] = []
    povray: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        flag = token.split("=", 1)[0]
        action = ours.get(flag)
        if action is None:
            if token.startswith("--"):
                raise UserError(f"unknown option {token} (see povstorm {command} --help)")
            povray.append(token)
        else:
            mine.append(token)
            if action.nargs != 0 and "=" not in token and i + 1 < len(argv):
                mine.append(argv[i + 1])
                i += 1
        i += 1
    return mine, povray


# The commands that take POV-Ray's options after povstorm's own.
POVRAY_COMMANDS = ("render", "sweep")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in POVRAY_COMMANDS and not {"-h", "--help"} & set(argv):
            mine, povray = split_render_argv(parser, argv[1:], argv[0])
            if not povray:
                parser.parse_args(argv[:1])  # argparse's own "scene is required"
            args = parser.parse_args([argv[0], *mine, "--", povray[0]])
            args.povray_args = povray[1:]
        else:
            args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except PovstormError as exc:
        # Anything else is a bug: its traceback is worth more than a line.
        print(f"povstorm: error: {exc}", file=sys.stderr)
        return verdict(exc).exit_code
    except KeyboardInterrupt:
        print("povstorm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `povstorm jobs | head` ends quietly, as `cat` does, when the reader
        # goes away; Python would fail again flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
