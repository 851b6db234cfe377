"""A short soak (``make soak`` runs the long one, ``tests/fixtures/soak.py``):
a few jobs at once on a stack of its own while one of each kind of part is
killed and started again: Firestore, a render worker, Pub/Sub, the frame
function, fake-gcs-server. Every job must end as it should, every frame
counted once, one video per finished job, no process left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.soak import Plan, run

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_a_short_soak_loses_no_frame_and_counts_none_twice(tmp_path: Path) -> None:
    first = ("firestore", "worker", "pubsub", "frame_finalized", "gcs")
    plan = Plan(jobs=5, frames=8, workers=2, kill_every=(1.5, 2.5), first_kills=first, seed=7)
    figures = run(tmp_path / "home", plan)
    assert figures.problems == []
    assert set(first) <= set(figures.kills), figures.kills
    assert (figures.frames_lost, figures.double_counts, figures.processes_left) == (0, 0, 0)
    # Four jobs finish (the first is cancelled), one of them failed with its broken frames.
    assert figures.videos == 3 and figures.stitch_encodes == 3
