"""The clean-ups reach the bucket (SQLite and PostgreSQL, moto's S3 server): the raw uploads of a
final job, the reconciler's finishing of an interrupted clean-up, and the orphan and upload
sweeps over keys that no row will ever name — while what rows name, and a running job's
checkpoint, stay; and the reconciler's sweep of a worker host's own scratch directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import jobs as protocol
from core.db.cleanup import delete_raw_uploads
from core.db.models import Upload, utcnow
from core.storage import make_store
from tests.conftest import make_settings
from tests.object_store import MotoS3
from tests.service.test_job_protocol import LEASE, _publication, _train_job


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0]


def test_clean_ups_and_sweeps_delete_from_the_bucket(
    session_factory: sessionmaker[Session], moto_s3: MotoS3, new_user: Callable[..., tuple[str, str]]
) -> None:
    bucket = moto_s3.new_bucket()
    store = moto_s3.store(bucket, prefix="sweeps")
    alice, _ = new_user(session_factory, "alice")

    done = _train_job(session_factory, store, user_id=alice, name="dog")
    claim = protocol.claim_job(session_factory, job_id=done, worker_id="w", lease_seconds=LEASE)
    published = _publication(store, user_id=alice, parent_id=None, task_index=1)
    protocol.publish_training(session_factory, **claim.fence, publication=published)
    with session_factory() as session:
        done_uploads = list(session.scalars(select(Upload.path).where(Upload.job_id == done)))
    assert len(done_uploads) == 2 and all(store.exists(p) for p in done_uploads)

    # The worker died between the publish and its clean-up: the reconciler finishes it.
    report = protocol.reconcile(session_factory, store, redispatch_after_seconds=3600)
    assert report.cleaned == [done] and not store.raw_upload_bytes_remain(done_uploads)
    assert delete_raw_uploads(session_factory, store, job_id=done) == 0  # idempotent

    running = _train_job(session_factory, store, user_id=alice, name="cat")
    protocol.claim_job(session_factory, job_id=running, worker_id="w", lease_seconds=LEASE)
    leftovers = {
        _publication(store, user_id=alice, parent_id=None, task_index=2).path,  # never published
        _folder(store.write_bytes(f"{store.staging_dir(job_id=done)}/adapter.safetensors", b"x").path),
        _folder(store.write_bytes(f"{store.checkpoint_dir(job_id=done)}/task.ckpt", b"x").path),
        store.write_bytes(store.new_image_path(), b"png").path,  # a generation that never published
        store.write_bytes(store.new_upload_path(), b"raw").path,  # an upload request killed before commit
    }
    kept = {
        published.path,
        _folder(store.write_bytes(f"{store.checkpoint_dir(job_id=running)}/task.ckpt", b"x").path),
    }
    assert protocol.collect_orphans(session_factory, store, older_than_seconds=3600) == []  # all young

    later = utcnow() + timedelta(hours=2)
    removed = protocol.collect_orphans(session_factory, store, older_than_seconds=3600, now=later)
    assert set(removed) == leftovers
    assert not any(store.exists(p) for p in leftovers) and all(store.exists(p) for p in kept)
    with session_factory() as session:
        running_uploads = list(session.scalars(select(Upload.path).where(Upload.job_id == running)))
    assert store.raw_upload_bytes_remain() and all(store.exists(p) for p in running_uploads)
    keys = moto_s3.keys(bucket)
    assert len(keys) == 2 + 2 + 1 and all(k.startswith("sweeps/") for k in keys)  # version, uploads, ckpt


def test_the_reconciler_sweeps_a_worker_hosts_scratch_too(
    session_factory: sessionmaker[Session],
    moto_s3: MotoS3,
    new_user: Callable[..., tuple[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With an object store the workspace is not the store: a crash's local checkpoints and staging
    output of final jobs, and stale staged copies, are removed from the host; a running job's stay."""
    from worker.reconciler import collect_orphans_once
    from worker.workspace import STAGED

    bucket = moto_s3.new_bucket()
    for name, value in moto_s3.env(bucket).items():
        monkeypatch.setenv(name, value)
    settings = make_settings(data_dir=tmp_path / "host", database_url=str(session_factory.kw["bind"].url))
    store = make_store(settings)
    alice, _ = new_user(session_factory, "alice")
    final = _train_job(session_factory, store, user_id=alice, name="dog")
    claim = protocol.claim_job(session_factory, job_id=final, worker_id="w", lease_seconds=LEASE)
    protocol.fail_job(session_factory, **claim.fence, error="x", final=True)
    running = _train_job(session_factory, store, user_id=alice, name="cat")
    protocol.claim_job(session_factory, job_id=running, worker_id="w", lease_seconds=LEASE)

    host = tmp_path / "host"
    stale = [
        host / store.checkpoint_dir(job_id=final),
        host / store.staging_dir(job_id=final),
        host / STAGED / "x",
    ]
    kept = host / store.checkpoint_dir(job_id=running)
    for folder in [*stale, kept]:
        folder.mkdir(parents=True)
        (folder / "file").write_bytes(b"x")
        os.utime(folder, (0, 0))
    collect_orphans_once(session_factory=session_factory, settings=settings, store=store)
    assert [folder.exists() for folder in stale] == [False, False, False] and (kept / "file").exists()
