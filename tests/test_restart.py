"""The local farm never forgets: its ledger outlives ``local down``/``local
up``, a Firestore emulator killed with SIGKILL, and a crash that came before
any snapshot of a job (the job is rebuilt from its manifest in the bucket).

A stack of this module's own, which these tests stop, kill and start again
(the session's stack serves every other test meanwhile)."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import live_group_members, live_pids, recorded_processes
from fixtures.common import run_cli, video_frames, wait_until

from povstorm.client import Cluster
from povstorm.cloud.clients import Clients
from povstorm.core.errors import StackError
from povstorm.core.naming import frames_prefix, video_object
from povstorm.farm import operations as farm
from povstorm_local.stack import LocalStack

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

# About 0.3 s of POV-Ray a frame at 32x24, and some 1.1 s from the 5th on: a
# job of more than 4 frames is still rendering when a test stops it, however
# far the counting lags behind (a CI run's stopped a 16-frame job of 0.3 s
# frames after 3 counted, and all 16 were in the bucket by then).
SLOW = (
    "camera { location <0,0,-3> look_at 0 }\n"
    "light_source { <0,5,-5> rgb 1 }\n"
    "#declare N = (frame_number > 4 ? 1000000 : 150000);\n"
    "#declare I = 0; #while (I < N) #declare I = I + 1; #end\n"
    "sphere { 0, 1 pigment { rgb <clock, 0.5, 1 - clock> } }\n"
)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(tmp_path_factory.mktemp("restart-home"))
    try:
        stack.up(workers=2)
    except StackError as exc:
        pytest.fail(f"the module's stack did not start: {exc}", pytrace=False)
    yield stack
    state = stack.read_state()
    if state is not None:
        pids, pgids = recorded_processes(state)
        stack.down(wipe=True)
        left = live_pids(pids) | live_group_members(pgids)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes of the module's stack still ran after down: {sorted(left)}"


def _env(stack: LocalStack) -> dict[str, str]:
    state = stack.load()
    assert state is not None
    env = dict(os.environ)
    state.apply_env(env)
    env["POVSTORM_HOME"] = str(stack.home)
    return env


def _submit(stack: LocalStack, work: Path, frames: int) -> str:
    work.mkdir(exist_ok=True)
    (work / "slow.pov").write_text(SLOW)
    result = run_cli(
        _env(stack), "render", "slow.pov", "+W32", "+H24", "+KFI1", f"+KFF{frames}", "--no-wait",
        # Rendered, not reused: these tests stop the stack while a job renders,
        # and an earlier test here left the same frames in this stack's cache.
        "--no-cache",
        cwd=work,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _cluster(stack: LocalStack) -> Cluster:
    return Cluster.local(home=stack.home, start=False)


def _finish(stack: LocalStack, job_id: str, frames: int, tmp_path: Path) -> int:
    """Watch the job to done; check each frame was counted once and the video
    holds them all; return the video object's generation."""
    with _cluster(stack) as cluster:
        final = cluster.watch(job_id, timeout=240)
        assert (final.state.value, final.done, final.failed, final.total) == (
            "done", frames, 0, frames,
        )  # fmt: skip
        units = cluster.ledger.unit_records(job_id)
        assert [u["unit"] for u in units if u["state"] == "done"] == list(range(frames))
        assert sum(1 for _ in cluster.clients.blobs.list(frames_prefix(job_id))) == frames
        cluster.fetch(job_id, video=tmp_path / f"{job_id}.mp4")
        info = cluster.clients.blobs.info(video_object(job_id))
    assert video_frames(tmp_path / f"{job_id}.mp4") == frames
    assert info is not None
    return info.generation


def _done_units(stack: LocalStack, job_id: str) -> int:
    with _cluster(stack) as cluster:
        return cluster.status(job_id)["units_done"]


def _kill(stack: LocalStack, *names: str) -> None:
    state = stack.read_state()
    assert state is not None
    for name in names:
        pgid = state.components[name].pgid
        os.killpg(pgid, signal.SIGKILL)
        wait_until(functools.partial(_gone, pgid), 10, f"{name} to die")


def _gone(pgid: int) -> bool:
    return not live_group_members({pgid})


def test_down_and_up_keep_every_job_and_finish_the_one_they_interrupted(
    own: LocalStack, tmp_path: Path
) -> None:
    finished = _submit(own, tmp_path / "a", 4)
    video = _finish(own, finished, 4, tmp_path)
    interrupted = _submit(own, tmp_path / "b", 16)
    wait_until(lambda: _done_units(own, interrupted) >= 3, 120, "3 frames of the second job")

    own.down()
    assert own.load() is None
    own.up(workers=2)
    assert own.resumed.get("republished"), "the lost work was not published again"

    with _cluster(own) as cluster:
        listed = {j["job_id"]: j for j in cluster.jobs()}
        assert listed[finished]["state"] == "done" and cluster.status(finished)["units_done"] == 4
        assert listed[finished]["video"] == video_object(finished)
    assert _finish(own, finished, 4, tmp_path) == video  # kept, not made again
    _finish(own, interrupted, 16, tmp_path)


def test_a_firestore_killed_with_sigkill_loses_no_finished_job(
    own: LocalStack, tmp_path: Path
) -> None:
    """Killed right as the job finishes: whether or not a snapshot caught
    the end, the job is done after the restart, with the video made once."""
    job_id = _submit(own, tmp_path, 4)
    video = _finish(own, job_id, 4, tmp_path)
    _kill(own, "firestore")

    own.up(workers=2)
    assert _finish(own, job_id, 4, tmp_path) == video


def test_a_job_the_ledger_lost_is_rebuilt_from_its_manifest_and_completes_once(
    own: LocalStack, tmp_path: Path
) -> None:
    """The reconciler (which snapshots the ledger) and Firestore die together
    right after the submission: no snapshot has the job, and its work
    messages name a job the restarted ledger does not know."""
    job_id = _submit(own, tmp_path, 8)
    _kill(own, "reconciler", "firestore")
    with pytest.raises(
        StackError, match=r"stack's (firestore, reconciler|reconciler, firestore) stopped"
    ):
        _cluster(own).status(job_id)

    own.up(workers=2)
    # (A job an earlier test finished may be rebuilt too, if no snapshot had it.)
    assert job_id in own.resumed["rebuilt"]
    with _cluster(own) as cluster:
        rebuilt: dict[str, Any] = cluster.status(job_id)
    assert rebuilt["units_expected"] == 8 and rebuilt["state"] in ("rendering", "stitching", "done")
    _finish(own, job_id, 8, tmp_path)


def test_a_cancel_that_the_restored_ledger_lacks_is_made_again(
    own: LocalStack, tmp_path: Path
) -> None:
    """Cancelled after the last snapshot (the reconciler that takes them is
    dead): the restored ledger has the job rendering, and the cancel marker
    beside its manifest cancels it again."""
    job_id = _submit(own, tmp_path, 16)
    wait_until(lambda: _done_units(own, job_id) >= 1, 120, "a frame of the job")
    _kill(own, "reconciler")
    state = own.read_state()
    assert state is not None
    assert farm.cancel(Clients.from_settings(state.settings()), job_id) == "cancelled"
    _kill(own, "firestore")

    own.up(workers=2)
    assert own.resumed.get("cancelled") == [job_id]
    with _cluster(own) as cluster:
        assert cluster.status(job_id)["state"] == "cancelled"
