"""A job that cannot succeed ends as a failed row with a readable error, never as a crash.

In-process deliveries (``run_train_job`` / ``run_generate_job``) on SQLite and PostgreSQL with
the tiny backbone: a stored upload that is not an image is retried as an internal error and,
on the last attempt, fails and loses its raw bytes; an unknown token fails a generate job at
once with the user's token list.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db.enqueue import GenerateRequest, TrainRequest, create_generate_job, create_train_job
from core.db.models import AdapterVersion, Job, Upload
from tests.conftest import make_settings
from worker.generation import run_generate_job
from worker.outcomes import Outcome
from worker.runtime import Runtime
from worker.training import run_train_job


@pytest.fixture
def runtime(tmp_path: Path, database_url: str) -> Runtime:
    """A worker's resources on the test database (SQLite, then PostgreSQL) with the tiny backbone."""
    return Runtime(make_settings(data_dir=tmp_path / "data", database_url=database_url, backbone="tiny"))


def test_undecodable_upload_is_retried_then_fails_and_its_bytes_are_deleted(
    runtime: Runtime, new_user: Callable[..., tuple[str, str]]
) -> None:
    factory: sessionmaker[Session] = runtime.session_factory
    user_id, _ = new_user(factory, "alice")
    store = runtime.store
    stored = [store.write_bytes(store.new_upload_path(), b"not an image at all" * 8) for _ in range(2)]
    paths = [item.path for item in stored]
    with factory() as session:
        _, job = create_train_job(
            session,
            user_id=user_id,
            request=TrainRequest(name="dog", class_word=None, method="dsc_ewc_dc", steps=None),
            uploads=stored,
            max_attempts=2,
        )
        session.commit()
        job_id = job.id

    first = run_train_job(runtime, job_id=job_id)
    assert first.outcome is Outcome.RETRY and "internal error (UnidentifiedImageError)" in first.detail
    assert all(store.exists(path) for path in paths)  # kept for the next attempt

    last = run_train_job(runtime, job_id=job_id)
    assert last.outcome is Outcome.FAILED
    with factory() as session:
        row = session.get(Job, job_id)
        assert row is not None and row.state == "failed" and row.attempts == 2
        assert row.error == last.detail and "not an image" not in row.error
        assert session.scalar(select(AdapterVersion).where(AdapterVersion.user_id == user_id)) is None
        assert list(session.scalars(select(Upload.path).where(Upload.job_id == job_id))) in ([], paths)
    assert not any(store.exists(path) for path in paths)
    assert run_train_job(runtime, job_id=job_id).outcome is Outcome.SKIPPED  # a late duplicate


def test_unknown_token_fails_a_generate_job_at_once_with_the_users_tokens(
    runtime: Runtime, new_user: Callable[..., tuple[str, str]]
) -> None:
    factory: sessionmaker[Session] = runtime.session_factory
    user_id, _ = new_user(factory, "bob")
    request = GenerateRequest(
        prompt="a photo of <ghost>", negative_prompt="", n=1, steps=2, guidance_scale=2.0, seed=0
    )
    with factory() as session:
        _, job = create_generate_job(session, user_id=user_id, request=request, max_attempts=3)
        session.commit()
        job_id = job.id

    result = run_generate_job(runtime, job_id=job_id)
    assert result.outcome is Outcome.FAILED and "<ghost>" in result.detail
    with factory() as session:
        row = session.get(Job, job_id)
        assert row is not None and row.state == "failed" and row.attempts == 1 and row.error == result.detail
