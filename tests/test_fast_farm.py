"""Farm operations' side effects without the stack, on the fakes of
tests/fakes.py: work published in batches Pub/Sub accepts, and a stitch
launch that fails left for the reconciler."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fakes import RecordingLauncher, RecordingPublisher, as_ledger, fake_clients

from povstorm.core.errors import PovstormError, TransientError
from povstorm.core.model import WorkMessage
from povstorm.farm.operations import launch_stitch, publish_work


@pytest.mark.parametrize(("count", "batches"), [(0, []), (1000, [1000]), (2345, [1000, 1000, 345])])
def test_work_is_published_in_batches_of_a_thousand_in_unit_order(
    count: int, batches: list[int]
) -> None:
    publisher = RecordingPublisher()
    messages = [WorkMessage("batch-job", u, 1) for u in range(count)]
    publish_work(fake_clients(publisher=publisher), messages)
    assert publisher.batches == [("work", n) for n in batches]
    sent = publisher.payloads("work")
    assert [m["unit"] for m in sent] == list(range(count))
    assert all(m["job_id"] == "batch-job" and m["attempt"] == 1 for m in sent)


@dataclass
class LaunchLedger:
    """The one ledger call launch_stitch makes after a launch."""

    launched: list[str] = field(default_factory=list)

    def mark_launched(self, job_id: str) -> None:
        self.launched.append(job_id)


def test_a_launched_stitch_is_marked_launched() -> None:
    launcher, ledger = RecordingLauncher(), LaunchLedger()
    launch_stitch(fake_clients(launcher=launcher), as_ledger(ledger), "job-ok")
    assert launcher.launched == ["job-ok"] and ledger.launched == ["job-ok"]


@pytest.mark.parametrize(
    "error", [TransientError("Cloud Run unavailable"), PovstormError("quota exceeded")]
)
def test_a_failed_launch_is_logged_and_left_for_the_reconciler(
    error: PovstormError, caplog: pytest.LogCaptureFixture
) -> None:
    """The event that claimed the stitch is still acknowledged (no raise); the
    job stays claimed but not launched, which is what the reconciler relaunches."""
    launcher, ledger = RecordingLauncher(error=error), LaunchLedger()
    launch_stitch(fake_clients(launcher=launcher), as_ledger(ledger), "job-down")
    assert launcher.launched == [] and ledger.launched == []
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "job-down" in record.getMessage() and str(error) in record.getMessage()
