"""Clean-up after a job's final outcome: its raw uploads, checkpoints and staging output."""

from __future__ import annotations

import contextlib
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db.audit import record
from core.db.models import Concept, Job, Upload, utcnow
from core.db.session import write_transaction
from core.storage import ArtifactStore, StorageError


def delete_raw_uploads(
    session_factory: sessionmaker[Session],
    store: ArtifactStore,
    *,
    job_id: str,
    now: datetime | None = None,
) -> int:
    """Delete a final train job's raw images: files, then rows; stamp the concept. Idempotent.

    Also removes the job's checkpoints and staging output. Returns the number of uploads removed.
    """
    now = now or utcnow()
    with session_factory() as session:
        job = session.get(Job, job_id)
        if job is None:
            return 0
        if not job.is_final:
            raise RuntimeError("raw images are deleted only once the job is final")
        paths = list(session.scalars(select(Upload.path).where(Upload.job_id == job_id)))
        concept_id = job.concept_id
    for path in paths:
        store.delete(path)
    for relative in (store.checkpoint_dir(job_id=job_id), store.staging_dir(job_id=job_id)):
        with contextlib.suppress(StorageError):
            store.delete(relative)
    with write_transaction(session_factory) as session:
        session.execute(
            Upload.__table__.delete().where(Upload.job_id == job_id)  # type: ignore[attr-defined]
        )
        if concept_id is not None:
            session.execute(
                update(Concept)
                .where(Concept.id == concept_id, Concept.images_deleted_at.is_(None))
                .values(images_deleted_at=now)
            )
        if paths:
            record(session, action="uploads.delete", subject=job_id, details={"files": len(paths)})
    return len(paths)
