"""Erasing an account (``DELETE /v1/me``): every row and file of the user.

One transaction deletes the user row; ``ON DELETE CASCADE`` removes keys, concepts, jobs, uploads,
adapter versions, Fisher states, generations, images and outbox rows. The files go right after
the commit (``core.db.cleanup.remove_files``), with every job's checkpoints and staging output.
What remains is one audit entry keyed by a hash of the user id, with no personal data
(docs/architecture.md, "Clean-up").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db.audit import record
from core.db.cleanup import job_output_paths, remove_files
from core.db.models import (
    AdapterVersion,
    AuditLog,
    FisherState,
    GeneratedImage,
    Job,
    JobState,
    Upload,
    User,
)
from core.db.session import write_transaction
from core.storage import ArtifactStore


@dataclass(frozen=True)
class ErasureReport:
    rows_user: int
    jobs: int
    running_jobs_stopped: int
    paths_deleted: int
    paths_failed: int


def erasure_subject(user_id: str) -> str:
    """The audit subject of an erased user: a hash, not the id."""
    return "sha256:" + hashlib.sha256(user_id.encode()).hexdigest()


def erase_user(
    session_factory: sessionmaker[Session], *, store: ArtifactStore, user_id: str
) -> ErasureReport:
    """Delete the user's rows (one transaction), then the user's files; safe to re-run."""
    with write_transaction(session_factory) as session:
        # Lock the user's jobs before the user row: the same order as the worker's publish
        # (job, then user), so erasure and publish serialise instead of deadlocking.
        jobs = list(session.scalars(select(Job).where(Job.user_id == user_id).with_for_update()))
        job_ids = [job.id for job in jobs]
        running = [job.id for job in jobs if job.state == JobState.RUNNING.value]
        # Tell running workers to stop (they also lose their row when the user goes).
        if running:
            session.execute(update(Job).where(Job.id.in_(running)).values(cancel_requested=True))
        paths: list[str] = []
        if job_ids:
            paths += session.scalars(select(Upload.path).where(Upload.job_id.in_(job_ids)))
        paths += session.scalars(select(GeneratedImage.path).where(GeneratedImage.user_id == user_id))
        paths += session.scalars(select(FisherState.path).where(FisherState.user_id == user_id))
        paths += session.scalars(select(AdapterVersion.path).where(AdapterVersion.user_id == user_id))
        paths.append(store.user_adapters_dir(user_id=user_id))
        for job_id in job_ids:
            paths += job_output_paths(store, job_id=job_id)
        # Earlier audit entries about the user keep only the hashed id.
        session.execute(
            update(AuditLog).where(AuditLog.subject == user_id).values(subject=erasure_subject(user_id))
        )
        session.execute(update(User).where(User.id == user_id).values(current_adapter_version_id=None))
        deleted = session.execute(delete(User).where(User.id == user_id)).rowcount
        record(
            session,
            action="user.erase",
            subject=erasure_subject(user_id),
            details={"jobs": len(job_ids), "running_jobs": len(running)},
        )
    removal = remove_files(store, paths)
    _compact_sqlite(session_factory)
    return ErasureReport(
        rows_user=deleted,
        jobs=len(job_ids),
        running_jobs_stopped=len(running),
        paths_deleted=removal.removed,
        paths_failed=removal.failed,
    )


def _compact_sqlite(session_factory: sessionmaker[Session]) -> None:
    """SQLite: fold the WAL into the (secure_delete) main file so erased bytes leave the -wal file."""
    engine = session_factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
