"""Clean-up after a job's final outcome, as one step: what the job leaves behind goes.

A final train job leaves its raw uploads (files and rows), its checkpoints and its staging output;
``delete_raw_uploads`` removes all of them and stamps the concept's ``images_deleted_at``. It is
called from one place in the worker (``worker.runner``, after every final outcome), by the API
when a cancel finishes a queued job at once, and by the reconciler for a clean-up that a crash
interrupted. Account erasure removes a whole account's files with ``remove_files``
(docs/architecture.md, "Clean-up").

Raw uploads go files first, then rows: the rows are the to-do list that the reconciler finishes
if a crash interrupts the step (rows first would leave files that no row names).

The API writes a concept's upload files before it commits their rows (a row never names a missing
file), so a crash in between leaves files that no row names and no erasure can attribute;
``collect_orphan_uploads`` removes them, and the temporary files of killed writes, once they are
older than ``UPLOAD_ORPHAN_GRACE_SECONDS`` — far longer than any request takes to commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db.audit import record
from core.db.models import Concept, Job, Upload, utcnow
from core.db.session import write_transaction
from core.db.webhooks import emit_images_deleted
from core.faults import crash_point
from core.storage import ArtifactStore, StorageError
from core.storage.base import UPLOADS

# Raw uploads are the most sensitive files, so their orphans wait less than the other leftovers'
# hour: the periodic sweep (every ten minutes) removes one at most twenty minutes after the crash.
UPLOAD_ORPHAN_GRACE_SECONDS = 600.0
IN_CHUNK = 500  # paths per IN (...) list


@dataclass(frozen=True)
class Removal:
    removed: int  # paths that existed and are gone
    failed: int  # paths that would not go


def remove_files(store: ArtifactStore, paths: Iterable[str]) -> Removal:
    """Delete each stored path (a file or a folder) once; never raises for one that stays."""
    removed = failed = 0
    for relative in dict.fromkeys(paths):
        try:
            existed = store.exists(relative)
            store.delete(relative)
            removed += int(existed)
        except StorageError:
            failed += 1
    return Removal(removed=removed, failed=failed)


def job_output_paths(store: ArtifactStore, *, job_id: str) -> list[str]:
    """What attempts write for a job outside its rows: checkpoints and unpublished output."""
    return [store.checkpoint_dir(job_id=job_id), store.staging_dir(job_id=job_id)]


def delete_raw_uploads(
    session_factory: sessionmaker[Session],
    store: ArtifactStore,
    *,
    job_id: str,
    now: datetime | None = None,
) -> int:
    """Remove what a final job leaves behind; returns the number of raw uploads removed. Idempotent.

    Upload files, then their rows (the concept stamped, the deletion audited), then checkpoints
    and staging output. A job that no longer exists (its account was erased) leaves only the
    latter. ``RuntimeError`` for a job that is not final: its next attempt needs all of it.
    """
    now = now or utcnow()
    with session_factory() as session:
        job = session.get(Job, job_id)
        if job is not None and not job.is_final:
            raise RuntimeError("raw images are deleted only once the job is final")
        paths = list(session.scalars(select(Upload.path).where(Upload.job_id == job_id)))
        concept_id = None if job is None else job.concept_id
    for path in paths:
        store.delete(path)  # raises if one stays: the rows remain for the reconciler
        crash_point("cleanup.mid_delete")
    crash_point("cleanup.after_files")
    if job is not None:
        _forget_uploads(session_factory, job_id=job_id, concept_id=concept_id, files=len(paths), now=now)
    remove_files(store, job_output_paths(store, job_id=job_id))
    return len(paths)


def _forget_uploads(
    session_factory: sessionmaker[Session], *, job_id: str, concept_id: str | None, files: int, now: datetime
) -> None:
    with write_transaction(session_factory) as session:
        session.execute(delete(Upload).where(Upload.job_id == job_id))
        if concept_id is not None:
            session.execute(
                update(Concept)
                .where(Concept.id == concept_id, Concept.images_deleted_at.is_(None))
                .values(images_deleted_at=now)
            )
        if files:
            record(session, action="uploads.delete", subject=job_id, details={"files": files})
            emit_images_deleted(session, job_id=job_id, concept_id=concept_id, files=files, now=now)


def collect_orphan_uploads(
    session_factory: sessionmaker[Session],
    store: ArtifactStore,
    *,
    older_than_seconds: float = UPLOAD_ORPHAN_GRACE_SECONDS,
    now: datetime | None = None,
) -> list[str]:
    """Delete files under ``uploads/`` that no ``uploads`` row names, and temporary files of killed
    writes, once older than ``older_than_seconds``; returns their relative paths."""
    cutoff = (now or utcnow()).timestamp() - older_than_seconds
    candidates = store.old_entries(UPLOADS, depth=1, older_than=cutoff, include_temp=True)
    if not candidates:
        return []
    owned: set[str] = set()
    with session_factory() as session:
        for start in range(0, len(candidates), IN_CHUNK):
            chunk = candidates[start : start + IN_CHUNK]
            owned.update(session.scalars(select(Upload.path).where(Upload.path.in_(chunk))))
    orphans = [path for path in candidates if path not in owned]
    remove_files(store, orphans)
    return orphans
