"""Account erasure against the job protocol: a running task of an erased user publishes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db.enqueue import TrainRequest, create_train_job
from core.db.erasure import erase_user, erasure_subject
from core.db.jobs import LeaseLostError, Publication, claim_job, publish_training
from core.db.models import AdapterVersion, AuditLog, FisherState, User
from core.db.users import create_user
from core.storage import LocalStore as ArtifactStore


def test_publish_after_erasure_is_refused_and_leaves_no_rows(session_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path)
    with session_factory() as session:
        user_id = create_user(session, name="alice", pepper=b"p").user.id
        stored = store.write_bytes(store.new_upload_path(), b"raw image bytes")
        _, job = create_train_job(
            session,
            user_id=user_id,
            request=TrainRequest(name="rex", class_word=None, method="ewc", steps=5),
            uploads=[stored],
            max_attempts=3,
        )
        session.commit()
    claim = claim_job(session_factory, job_id=job.id, worker_id="w1", lease_seconds=60)
    assert claim.fencing_token > 0
    # The worker has staged and renamed its version directory ...
    version_id = str(uuid.uuid4())
    path = store.adapter_dir(user_id=user_id, version_id=version_id)
    store.write_bytes(f"{path}/lora.safetensors", b"weights")
    # ... when the user erases the account.
    report = erase_user(session_factory, store=store, user_id=user_id)
    assert report.rows_user == 1 and report.running_jobs_stopped == 1 and report.paths_failed == 0
    assert not store.exists(path) and not store.raw_upload_bytes_remain()
    publication = Publication(
        version_id=version_id,
        parent_id=None,
        task_index=1,
        path=path,
        files={"lora.safetensors": {"sha256": "0" * 64, "bytes": 7}},
        method="ewc",
        metrics={},
        fisher_file=None,
    )
    with pytest.raises(LeaseLostError):
        publish_training(
            session_factory, job_id=job.id, fencing_token=claim.fencing_token, publication=publication
        )
    with session_factory() as session:
        assert session.get(User, user_id) is None
        assert session.scalar(select(func.count()).select_from(AdapterVersion)) == 0
        assert session.scalar(select(func.count()).select_from(FisherState)) == 0
        subjects = set(session.scalars(select(AuditLog.subject)))
        assert erasure_subject(user_id) in subjects and user_id not in subjects
    # Erasing again is harmless.
    assert erase_user(session_factory, store=store, user_id=user_id).rows_user == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_files_hold_no_erased_bytes(session_factory, database_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from core.db.enqueue import GenerateRequest, create_generate_job

    sentinel = "SENTINEL-" + uuid.uuid4().hex
    with session_factory() as session:
        user_id = create_user(session, name="alice", pepper=b"p").user.id
        request = GenerateRequest(
            prompt=f"a photo of {sentinel}", negative_prompt="", n=1, steps=1, guidance_scale=1.0, seed=0
        )
        create_generate_job(session, user_id=user_id, request=request, max_attempts=1)
        session.commit()
    db_path = Path(database_url.removeprefix("sqlite:///"))

    def sqlite_bytes() -> bytes:
        return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*") if p.is_file())

    assert sentinel.encode() in sqlite_bytes()
    erase_user(session_factory, store=ArtifactStore(tmp_path), user_id=user_id)
    assert sentinel.encode() not in sqlite_bytes()
