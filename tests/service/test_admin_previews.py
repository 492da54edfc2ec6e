"""A real training delivery (tiny backbone, in-process) feeds the dashboard: loss curves per phase in
``jobs.loss_curves``, fixed-seed previews of every learned token with a retention score, and the
worker row (docs/dashboard.md). SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db.models import GeneratedImage, Job, Preview, WorkerSeen
from tests.admin_support import queue_train_job
from tests.conftest import make_settings
from worker.curves import MAX_POINTS
from worker.outcomes import Outcome
from worker.runtime import Runtime
from worker.training import run_train_job


@pytest.fixture
def runtime(tmp_path: Path, database_url: str) -> Runtime:
    return Runtime(
        make_settings(
            data_dir=tmp_path / "data", database_url=database_url, backbone="tiny", engine_preset="tiny"
        )
    )


def _train(runtime: Runtime, *, user_id: str, name: str, images: list[bytes]) -> str:
    store = runtime.store
    stored = [store.write_bytes(store.new_upload_path(), data) for data in images]
    job_id = queue_train_job(runtime.session_factory, user_id=user_id, name=name, uploads=stored, attempts=2)
    result = run_train_job(runtime, job_id=job_id)
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    return job_id


def test_each_task_leaves_curves_and_previews_with_retention(
    runtime: Runtime,
    new_user: Callable[..., tuple[str, str]],
    noise_images: Callable[[int, int], list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MNEMO_PREVIEW_CONCEPTS", "-1")
    monkeypatch.setenv("MNEMO_PREVIEW_STEPS", "3")
    factory = runtime.session_factory
    user_id, _ = new_user(factory, "alice")
    first = _train(runtime, user_id=user_id, name="mug", images=noise_images(1, 2))
    second = _train(runtime, user_id=user_id, name="dog", images=noise_images(2, 2))

    with factory() as session:
        job = session.get(Job, second)
        assert set(job.loss_curves) >= {"train", "fisher"}
        for phase, points in job.loss_curves.items():
            assert 1 <= len(points) <= MAX_POINTS, phase
            assert points[-1][0] == job.progress["total"] or phase != job.progress["phase"]
        previews = session.scalars(select(Preview).order_by(Preview.after_task_index, Preview.token)).all()
        rows = [(p.after_task_index, p.token, p.job_id) for p in previews]
        assert rows == [(1, "<mug>", first), (2, "<dog>", second), (2, "<mug>", second)]
        by_key = {(p.after_task_index, p.token): p for p in previews}
        assert by_key[(1, "<mug>")].retention == 100.0 and by_key[(2, "<dog>")].retention == 100.0
        later = by_key[(2, "<mug>")]
        assert later.retention is not None and -100.0 <= later.retention <= 100.0
        assert later.features == "toy-classifier"
        image_ids = [i for p in previews for i in p.image_ids]
        assert len(image_ids) == 6  # 2 images x 3 previews
        images = session.scalars(select(GeneratedImage).where(GeneratedImage.id.in_(image_ids))).all()
        assert len(images) == 6 and {i.user_id for i in images} == {user_id}
        assert all(runtime.store.exists(i.path) for i in images)
        worker = session.get(WorkerSeen, runtime.worker_id)
        assert worker is not None and worker.role == "pool" and worker.current_job_id is None

    # the same seed on the same weights draws the same pixels: the reference is reproducible
    from worker.previews import make_previews

    with factory() as session:
        version = session.scalar(select(Job.result).where(Job.id == first))["adapter_version_id"]
    assert make_previews(runtime, job_id=first, user_id=user_id, version_id=version) == []  # once per task


def test_previews_can_be_turned_off(
    runtime: Runtime,
    new_user: Callable[..., tuple[str, str]],
    noise_images: Callable[[int, int], list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MNEMO_PREVIEW_CONCEPTS", "0")
    user_id, _ = new_user(runtime.session_factory, "bob")
    _train(runtime, user_id=user_id, name="cat", images=noise_images(3, 2))
    with runtime.session_factory() as session:
        assert session.scalars(select(Preview)).all() == []
        assert session.scalars(select(GeneratedImage)).all() == []
