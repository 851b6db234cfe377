"""Parameter sweeps (wedges): a scene rendered once per combination of
declared values, every combination on the farm at once, composed into one
labelled grid.

    sweep = Sweep.from_ini(cluster, ["ball.pov", "+W320", "+H240"],
                           ["R=0.5,1,2", "Metal=0,1"])      # or {"R": [0.5, 1, 2], ...}
    sweep.submit()                                          # six jobs
    sweep.watch(on_progress=print)                          # one combined Progress
    result = sweep.result(Path("wedge"))                    # wedge/sweep.png, sweep.json...

``povstorm sweep`` is the same from the command line. A combination is a
job of its own, built by ``Job.from_ini`` from the scene's POV-Ray arguments
with POV-Ray's own ``Declare=NAME=value`` for each name, so the farm plans,
renders, caches and stitches it as any ``render``: a combination that fails
leaves the others alone, and shows as a "failed" cell. The Declares go
*before* the other arguments: POV-Ray 3.7 keeps the first Declare of a name
and ignores later ones (measured: ``Declare=R=0.1 Declare=R=0.7`` renders
R=0.1, and so does an INI's Declare read before the command line's), so put
first they win over a Declare the arguments or an INI file make, and every
combination renders its own value.

The frame cache applies per combination with nothing done here: a frame's
key hashes the job's POV-Ray arguments (core/framekey.py: ``args`` is
``Invocation.farm_args``, which keeps command-line options verbatim,
``Declare=`` ones included), so two combinations never share a key, and a
combination rendered before, by a sweep or by a ``render`` with the same
arguments, is copied instead of rendered: a sweep run again with one more
value renders only the new combinations. The Declare options are put in
name order, whatever order the names were given in, so that a sweep
declared the other way round finds the same keys; a value's text is kept as
typed (``0.5`` and ``.5`` are different keys for the same pixels).

Values are numbers only: POV-Ray 3.7 (the farm's) refuses a quoted string
in a command-line ``Declare`` ("Failed to parse command-line option") and
leaves one from an INI file undeclared, so a string would fail every frame
on the farm; it is refused here, before anything is uploaded, with the other
malformed declarations and sweeps of more than MAX_COMBINATIONS.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import json
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from povstorm.client.cluster import Cluster, JobResult
from povstorm.client.job import Job
from povstorm.client.watch import Progress
from povstorm.core.errors import UserError
from povstorm.core.model import JobState
from povstorm.core.naming import new_job_id
from povstorm.core.spec import OutputSpec, container_for
from povstorm.stitch import preview

MAX_COMBINATIONS = 64
# Submissions and downloads at once: the submit function and the bucket
# take a few in parallel; a sweep is at most 64 jobs.
THREADS = 4
# The most cells a row of the grid when the last name does not set it.
MAX_COLUMNS = 8

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# What C's atof reads whole as a number (POV-Ray reads the value with it):
# no hex, inf or nan, which would be refused or read as something else.
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")


@dataclass(frozen=True)
class Declare:
    """One swept name and its values, as POV-Ray reads them (numbers)."""

    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Combination:
    """One cell of the sweep: a value for each declared name, in the order
    the names were declared."""

    index: int
    values: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        """The caption and the job's name: ``R=0.5 Metal=1``."""
        return " ".join(f"{name}={value}" for name, value in self.values)

    @property
    def dirname(self) -> str:
        """Its directory under the sweep's: ``R=0.5_Metal=1`` (names and
        numbers only, so nothing to escape)."""
        return "_".join(f"{name}={value}" for name, value in self.values)

    @property
    def args(self) -> tuple[str, ...]:
        """POV-Ray's options for it, in name order (one cache key, whatever
        the order the names were declared in)."""
        return tuple(f"Declare={name}={value}" for name, value in sorted(self.values))

    def argv(self, argv: Sequence[str]) -> list[str]:
        """The POV-Ray invocation of this combination: its Declares first
        (POV-Ray keeps the first Declare of a name), then ``argv``."""
        return [*self.args, *argv]


def parse_declare(text: str) -> Declare:
    """``NAME=V1,V2,...`` as ``--declare`` takes it; UserError naming what is wrong."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UserError(f"--declare {text}: NAME=VALUE,VALUE,... expected")
    if not IDENTIFIER.match(name):
        raise UserError(
            f"--declare {text}: {name!r} is not a POV-Ray identifier "
            "(a letter or _, then letters, digits or _)"
        )
    values = tuple(v.strip() for v in rest.split(","))
    if not rest.strip():
        raise UserError(f"--declare {text}: no values after {name}=")
    if "" in values:
        raise UserError(f"--declare {text}: an empty value")
    return Declare(name, tuple(_check_value(text, v) for v in _unique(text, values)))


def _check_value(text: str, value: str) -> str:
    if NUMBER.match(value):
        return value
    if len(value) >= 2 and value[0] == value[-1] == '"':
        raise UserError(
            f"--declare {text}: {value} is a string; POV-Ray 3.7 declares only numbers "
            "from its command line (#declare the string in the scene, chosen by a number)"
        )
    raise UserError(f"--declare {text}: {value} is not a number")


def _unique(text: str, values: tuple[str, ...]) -> tuple[str, ...]:
    """The values, refusing one given twice (``1`` and ``1.0`` are the same
    number: the same render twice)."""
    seen: dict[float, str] = {}
    for v in values:
        try:
            number = float(v)
        except ValueError:
            continue  # not a number: _check_value says so
        if number in seen:
            raise UserError(f"--declare {text}: {seen[number]} and {v} are the same value")
        seen[number] = v
    return values


def parse_declares(
    declares: Sequence[str] | Mapping[str, Sequence[float | str]],
) -> tuple[Declare, ...]:
    """Every ``--declare`` (``NAME=V1,V2`` texts), or a mapping of names to
    values (numbers, or their text), checked: at least one, no name twice."""
    if isinstance(declares, Mapping):
        texts = [f"{n}={','.join(_number_text(v) for v in vs)}" for n, vs in declares.items()]
    else:
        texts = list(declares)
    if not texts:
        raise UserError("a sweep needs at least one --declare NAME=VALUE,VALUE,...")
    parsed = tuple(parse_declare(t) for t in texts)
    names = [d.name for d in parsed]
    for name in names:
        if names.count(name) > 1:
            raise UserError(f"--declare {name} is given twice (give it all its values at once)")
    return parsed


def _number_text(value: float | str) -> str:
    """A Python value as POV-Ray reads it: a float's shortest exact text, an
    int's digits; a str as it is (checked as ``--declare``'s)."""
    if isinstance(value, bool):
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def combinations(declares: Sequence[Declare]) -> list[Combination]:
    """The cartesian product, the last name varying fastest; UserError past
    MAX_COMBINATIONS."""
    count = math.prod(len(d.values) for d in declares)
    if count > MAX_COMBINATIONS:
        raise UserError(f"--declare gives {count} combinations; at most {MAX_COMBINATIONS}")
    product = itertools.product(*([(d.name, v) for v in d.values] for d in declares))
    return [Combination(i, tuple(values)) for i, values in enumerate(product)]


def check_ends(
    argv: Sequence[str],
    combos: Sequence[Combination],
    *,
    cwd: Path | None = None,
    include: Sequence[Path] = (),
) -> dict[int, tuple[float, ...]]:
    """The parse check (povray/check.py) of the first and the last
    combination (every first value, every last value), before anything is
    uploaded: a scene POV-Ray cannot parse with them fails here with
    POV-Ray's error line (SceneError). A value that breaks the scene only in
    between is left to the farm (its cell fails). Returns the estimate of
    each combination checked (``ParseCheck.estimate``), by its index."""
    from povstorm.povray import check_parse, collect_inputs, parse_invocation

    estimates = {}
    for combo in dict.fromkeys([combos[0], combos[-1]]):
        inv = parse_invocation(combo.argv(argv), cwd or Path.cwd())
        files = collect_inputs(inv, extra=list(include)).files
        estimates[combo.index] = check_parse(inv, files).estimate
    return estimates


def estimate_of(combo: Combination, ends: Mapping[int, tuple[float, ...]]) -> tuple[float, ...]:
    """A combination's estimate of its frames' seconds from the checked
    ends' (``check_ends``): its own if it was checked, else the larger of
    theirs frame by frame (a value in between may cost more than either,
    and a larger estimate errs toward the plan of more, smaller chunks);
    () unless both ends had one."""
    if combo.index in ends:
        return ends[combo.index]
    known = [e for e in ends.values() if e]
    if len(known) != len(ends) or not known:
        return ()
    return tuple(max(column) for column in zip(*known, strict=False))


def columns(declares: Sequence[Declare]) -> int:
    """Cells a row: the last name's values when they are 2 to MAX_COLUMNS
    and there is another name (a table: one row per value of the others),
    else rows of up to MAX_COLUMNS."""
    count = math.prod(len(d.values) for d in declares)
    last = len(declares[-1].values)
    if len(declares) > 1 and 2 <= last <= MAX_COLUMNS:
        return last
    return min(MAX_COLUMNS, count)


@dataclass
class Cell:
    """What one combination gave: its job, and its files under the sweep's
    directory (``image`` for a still, ``video`` and ``poster`` for an
    animation; none if it failed)."""

    combination: Combination
    job_id: str
    state: JobState
    result: JobResult
    dir: Path
    image: Path | None = None
    video: Path | None = None
    poster: Path | None = None

    @property
    def ok(self) -> bool:
        return self.state == JobState.DONE

    @property
    def picture(self) -> Path | None:
        """What its grid cell shows: the still, or the animation's poster
        (its middle frame)."""
        return self.image or self.poster

    @property
    def cached(self) -> int:
        """Its frames the frame cache gave (none rendered again)."""
        return int(self.result.stats.get("frames_cached") or 0)

    def error(self) -> str | None:
        """Why it failed, in one line (its first frame error or its state)."""
        if self.ok:
            return None
        for e in self.result.errors:
            if "stitch" in e:
                return f"stitch: {e['stitch']}"
            where = f"frame {e['frame']}" if e.get("frame") is not None else f"unit {e.get('unit')}"
            return f"{where}: {e.get('error')}"
        return self.result.cancel_reason or f"the job ended {self.state.value}"

    def summary(self, root: Path) -> dict[str, Any]:
        """Its entry in sweep.json, paths relative to ``root`` (the sweep's
        directory)."""

        def rel(path: Path | None) -> str | None:
            return _relative(path, root) if path else None

        return {
            "label": self.combination.label,
            "declares": dict(self.combination.values),
            "job_id": self.job_id,
            "state": self.state.value,
            "units_expected": self.result.units_expected,
            "units_done": self.result.units_done,
            "units_failed": self.result.units_failed,
            "frames_cached": self.cached,
            "dir": rel(self.dir),
            "outputs": {
                "image": rel(self.image),
                "video": rel(self.video),
                "poster": rel(self.poster),
            },
            "error": self.error(),
        }


@dataclass
class SweepResult:
    """A finished sweep: each combination's cell, the contact sheet, the
    grid video (animations), and sweep.json."""

    name: str
    sweep_id: str
    declares: tuple[Declare, ...]
    dir: Path
    cells: list[Cell]
    sheet: Path
    video: Path | None
    manifest: Path
    frames: int
    animated: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cells)

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.cells if not c.ok]

    def summary(self) -> dict[str, Any]:
        """What sweep.json holds (and ``--json`` prints): every path relative
        to the sweep's directory, ``dir`` (so the directory can move)."""
        return {
            "dir": str(self.dir.resolve()),
            "sweep_id": self.sweep_id,
            "name": self.name,
            "declares": {d.name: list(d.values) for d in self.declares},
            "animated": self.animated,
            "frames": self.frames,
            "combinations": len(self.cells),
            "done": len(self.cells) - len(self.failed),
            "failed": len(self.failed),
            "sheet": _relative(self.sheet, self.dir),
            "video": _relative(self.video, self.dir) if self.video else None,
            "cells": [c.summary(self.dir) for c in self.cells],
        }

    def line(self) -> str:
        outputs = ", ".join(str(p) for p in (self.sheet, self.video, self.manifest) if p)
        done = len(self.cells) - len(self.failed)
        cached = sum(c.cached for c in self.cells)
        return (
            f"sweep {self.name}: {done} of {len(self.cells)} combination(s) done"
            + (f", {len(self.failed)} failed" if self.failed else "")
            + (f" ({cached} frame(s) from the frame cache)" if cached else "")
            + f": {outputs}"
        )


class Sweep:
    """A sweep being built, then submitted, followed and composed: one Job
    per combination (``jobs``, in combination order)."""

    def __init__(
        self,
        cluster: Cluster,
        declares: tuple[Declare, ...],
        jobs: Sequence[tuple[Combination, Job]],
        *,
        name: str,
    ) -> None:
        self.cluster = cluster
        self.declares = declares
        self.jobs = list(jobs)
        self.name = name
        self.sweep_id = new_job_id()
        first = self.jobs[0][1]
        self.invocation: Any = first.invocation
        # What the client noticed, once each (every combination scans alike).
        self.warnings = list(dict.fromkeys(w for _, job in self.jobs for w in job.warnings))
        for combination, job in self.jobs:
            job._extra["sweep"] = {
                "id": self.sweep_id,
                "index": combination.index,
                "declares": dict(combination.values),
            }

    @classmethod
    def from_ini(
        cls,
        cluster: Cluster,
        argv: Sequence[str],
        declares: Sequence[str] | Mapping[str, Sequence[float | str]],
        *,
        cwd: Path | None = None,
        include: Sequence[Path] = (),
        check: bool = True,
        estimates: Mapping[int, tuple[float, ...]] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> Sweep:
        """A sweep of a POV-Ray invocation (as ``Job.from_ini`` takes it) over
        ``declares`` (``["R=0.5,1", "Metal=0,1"]`` or ``{"R": [0.5, 1]}``).
        Every declaration is checked before anything else (UserError); with
        ``check``, the first and the last combination get the parse check
        (``check_ends``), whose estimates plan each job's chunks (or
        ``estimates``, those of a check made before). ``options`` are Job's (fps,
        codec, crf, max_attempts, frames_per_unit, cache...), the same for
        every combination; each job is named ``NAME LABEL``."""
        parsed = parse_declares(declares)
        combos = combinations(parsed)
        if check:
            estimates = check_ends(argv, combos, cwd=cwd, include=include)
        jobs = []
        for combo in combos:
            job = Job.from_ini(
                cluster,
                combo.argv(argv),
                cwd=cwd,
                include=include,
                check=False,  # above
                name=name,
                **options,
            )
            job.estimate_from(estimate_of(combo, estimates or {}), "check")
            jobs.append((combo, job))
        base = str(jobs[0][1].options["name"])
        for combo, job in jobs:
            job.options["name"] = f"{base} {combo.label}"[:100]
        return cls(cluster, parsed, jobs, name=base)

    @property
    def combinations(self) -> list[Combination]:
        return [c for c, _ in self.jobs]

    @property
    def job_ids(self) -> list[str]:
        return [job.job_id for _, job in self.jobs if job.job_id]

    def submit(self) -> list[str]:
        """Submit every combination: the first alone (it uploads the inputs
        the others share), then the rest a few at once. Returns the job ids."""
        first, *rest = [job for _, job in self.jobs]
        first.submit()
        with cf.ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(Job.submit, rest))
        return self.job_ids

    def watch(
        self, on_progress: Callable[[Progress], None] | None = None, timeout: float | None = None
    ) -> Progress:
        """Follow every job to its end (each with its own listeners, in a
        thread), calling ``on_progress`` with one Progress for the whole
        sweep (``combined``) on each change; returns the final one. The first
        error of any watch (StackError, a timeout) is raised."""
        ids = self.job_ids
        if len(ids) != len(self.jobs):
            raise UserError("submit the sweep first")
        events: queue.Queue[Progress | BaseException | None] = queue.Queue()

        def follow(job_id: str) -> None:
            try:
                self.cluster.watch(job_id, on_progress=events.put, timeout=timeout)
                events.put(None)
            except BaseException as exc:  # handed to the caller's thread
                events.put(exc)

        for job_id in ids:
            threading.Thread(target=follow, args=(job_id,), daemon=True).start()
        # Until a job is heard from, its frames as the client counted them.
        expected = {job.job_id or "": job.invocation.frame_count for _, job in self.jobs}
        latest: dict[str, Progress] = {}
        first: tuple[float, int] | None = None  # when frames first landed, and how many
        ended = 0
        progress = combined(self.label, latest, expected, 0.0)
        while ended < len(ids):
            item = events.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                ended += 1
                continue
            latest[item.job_id] = item
            # The sweep's own rate, as a job's: frames landed since the first
            # landed, over the time since (not the jobs' rates summed: each
            # starts from its own first frame, and a short job's is noise).
            now, landed = time.monotonic(), sum(p.done + p.failed for p in latest.values())
            if first is None and landed:
                first = (now, landed)
            span = now - first[0] if first else 0.0
            rate = (landed - first[1]) / span if first and span > 0 else 0.0
            progress = combined(self.label, latest, expected, rate)
            if on_progress:
                on_progress(progress)
        return progress

    @property
    def label(self) -> str:
        """What the combined progress line starts with."""
        return f"sweep {self.name} ({len(self.jobs)} jobs)"

    def wait(
        self,
        out_dir: Path,
        on_progress: Callable[[Progress], None] | None = None,
        timeout: float | None = None,
    ) -> SweepResult:
        self.watch(on_progress=on_progress, timeout=timeout)
        return self.result(out_dir)

    def result(self, out_dir: Path) -> SweepResult:
        """Fetch every combination into ``out_dir/<dirname>/`` (a still's
        image as POV-Ray names it; an animation's video and poster.png),
        then write ``sweep.png`` (the grid of stills or posters, each
        captioned, a failed one saying so), ``sweep.<ext>`` for an animation
        (the grid of videos, as many frames as each job, at its fps and in
        its codec) and ``sweep.json``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        inv = self.invocation
        with cf.ThreadPoolExecutor(THREADS) as pool:
            cells = list(pool.map(lambda cj: self._fetch(cj[0], cj[1], out_dir), self.jobs))
        grid = preview.Grid.of(
            (inv.width, inv.height), [c.label for c in self.combinations], columns(self.declares)
        )
        sheet = preview.grid_sheet(grid, [c.picture for c in cells], out_dir / "sweep.png")
        video = None
        output = self._output()
        if inv.animated and any(c.video for c in cells):
            video = preview.grid_video(
                grid,
                [c.video for c in cells],
                output,
                inv.frame_count,
                out_dir / f"sweep.{container_for(output)}",
            )
        result = SweepResult(
            name=self.name,
            sweep_id=self.sweep_id,
            declares=self.declares,
            cells=cells,
            sheet=sheet,
            video=video,
            dir=out_dir,
            manifest=out_dir / "sweep.json",
            frames=inv.frame_count,
            animated=inv.animated,
            warnings=self.warnings,
        )
        result.manifest.write_text(json.dumps(result.summary(), indent=2, default=str) + "\n")
        return result

    def _output(self) -> OutputSpec:
        """The jobs' video settings (every combination has the same)."""
        out: dict[str, Any] = self.jobs[0][1].options["output"]  # type: ignore[assignment]
        return OutputSpec(fps=out["fps"], codec=out["codec"], crf=out["crf"])

    def _fetch(self, combination: Combination, job: Job, out_dir: Path) -> Cell:
        """One combination's outputs into its own directory (nothing but the
        directory for one that did not finish). A still's image is its job's
        poster (the one frame, as POV-Ray wrote it; a tiled still's merged
        bands), named as POV-Ray names it; an animation's are its video and
        poster (the middle frame)."""
        job_id = job._require_id()
        dest = out_dir / combination.dirname
        dest.mkdir(parents=True, exist_ok=True)
        inv = job.invocation
        doc = self.cluster.ledger.require_job(job_id)
        done = doc.get("state") == JobState.DONE
        video = dest / f"{inv.scene.stem}.{container_for(self._output())}"
        result = self.cluster.fetch(job_id, video=video if done and inv.animated else None)
        picture = None
        if done and doc.get("poster"):
            name = Path(inv.output_name(inv.frames[0])).name if not inv.animated else "poster.png"
            picture = dest / name
            self.cluster.blobs.download_to(doc["poster"], picture)
        if not inv.animated:
            return Cell(combination, job_id, result.state, result, dest, image=picture)
        return Cell(
            combination, job_id, result.state, result, dest, video=result.video, poster=picture
        )


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def combined(
    label: str, latest: Mapping[str, Progress], expected: Mapping[str, int], rate: float
) -> Progress:
    """One Progress for the whole sweep of the jobs ``expected`` (job id ->
    its frames, for a job not heard from yet), from the latest of each job
    heard so far: frames summed, the sweep's ``rate``, the ETA of what is
    left at that rate. Its state: done once every job is done, failed (or
    cancelled) once every job ended and one did not finish; meanwhile
    rendering if any job renders, else the earliest state."""
    heard = list(latest.values())
    total = sum(latest[j].total if j in latest else n for j, n in expected.items())
    done = sum(p.done for p in heard)
    failed = sum(p.failed for p in heard)
    states = [p.state for p in heard]
    if len(heard) == len(expected) and all(s.terminal for s in states):
        if all(s == JobState.DONE for s in states):
            state = JobState.DONE
        elif JobState.FAILED in states:
            state = JobState.FAILED
        else:
            state = JobState.CANCELLED
    else:
        running = [s for s in states if not s.terminal] or [JobState.SUBMITTED]
        order = list(JobState)
        state = (
            JobState.RENDERING if JobState.RENDERING in running else min(running, key=order.index)
        )
    left = total - done - failed
    return Progress(
        job_id=label,
        state=state,
        total=total,
        done=done,
        failed=failed,
        elapsed=max((p.elapsed for p in heard), default=0.0),
        rate=rate,
        eta=left / rate if rate > 0 else None,
        job={"jobs": {p.job_id: p.state.value for p in heard}},
    )
