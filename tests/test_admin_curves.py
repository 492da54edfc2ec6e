"""Loss curves: at most 200 points per phase, written through the worker's heartbeat (docs/dashboard.md)."""

from __future__ import annotations

import pytest

from core.db.jobs import claim_job
from core.db.models import Job, WorkerSeen
from core.db.workers import WorkerInfo
from tests.admin_support import queue_train_job
from worker.curves import MAX_POINTS, LossCurves
from worker.monitor import JobMonitor


def test_a_long_phase_is_averaged_into_at_most_200_points() -> None:
    curves = LossCurves()
    curves.add("prepare", 1, 1, None)  # no loss: not a curve
    for step in range(1, 1001):
        curves.add("train", step, 1000, float(step))
    points = curves.snapshot()["train"]
    assert set(curves.snapshot()) == {"train"}
    assert len(points) == 200
    assert points[0] == [5, 3.0]  # mean of steps 1..5
    assert points[-1] == [1000, 998.0]
    assert [p[0] for p in points] == sorted(p[0] for p in points)


@pytest.mark.parametrize("announced", [0, 10, 150])
def test_a_phase_longer_than_announced_still_keeps_the_bound(announced: int) -> None:
    curves = LossCurves()
    for step in range(1, 5001):
        curves.add("dsc", step, announced, 1.0)
    points = curves.snapshot()["dsc"]
    assert 100 <= len(points) <= MAX_POINTS
    assert points[-1][0] == 5000 and all(loss == 1.0 for _, loss in points)


def test_a_short_phase_keeps_every_step_and_a_resume_overwrites_the_repeated_steps() -> None:
    curves = LossCurves()
    for step in range(1, 11):
        curves.add("fisher", step, 10, 10.0)
    assert curves.snapshot()["fisher"] == [[s, 10.0] for s in range(1, 11)]
    for step in range(6, 11):  # a re-run resumed from a checkpoint at step 5
        curves.add("fisher", step, 10, 2.0)
    assert curves.snapshot()["fisher"] == [[s, 10.0] for s in range(1, 6)] + [[s, 2.0] for s in range(6, 11)]
    curves.add("fisher", 11, 10, float("nan"))
    assert len(curves.snapshot()["fisher"]) == 10


def test_the_heartbeat_writes_the_curves_and_the_worker_row(session_factory, new_user) -> None:  # type: ignore[no-untyped-def]
    user_id, _ = new_user(session_factory, "alice")
    job_id = queue_train_job(session_factory, user_id=user_id, name="mug")
    claim = claim_job(session_factory, job_id=job_id, worker_id="host:7", lease_seconds=60)
    info = WorkerInfo(worker_id="host:7", role="pool", device="cpu", backbone="tiny", preset="tiny")
    monitor = JobMonitor(
        session_factory=session_factory,
        job_id=job_id,
        fencing_token=claim.fencing_token,
        lease_seconds=60,
        heartbeat_seconds=30,
        progress_interval=3600,  # no background beats: the test beats by hand
        worker=info,
    )
    with monitor:
        with session_factory() as session:
            assert session.get(WorkerSeen, "host:7").current_job_id == job_id
        for step in range(1, 401):
            monitor.progress("train", step, 400, 1.0 / step)
        monitor.progress("dsc", 1, 50, 0.5)
        monitor.beat()
        with session_factory() as session:
            stored = session.get(Job, job_id)
            curves = stored.loss_curves
            assert stored.progress == {"phase": "dsc", "step": 1, "total": 50, "loss": 0.5}
        assert len(curves["train"]) == 200 and curves["train"][-1][0] == 400
        assert curves["dsc"] == [[1, 0.5]]
        assert curves == monitor.loss_curves()
    with session_factory() as session:
        assert session.get(WorkerSeen, "host:7").current_job_id is None  # idle after the attempt
