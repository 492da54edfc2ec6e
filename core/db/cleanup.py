"""Deleting a job's raw uploads (files first, then rows) and cancelling jobs from the API side."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.db.audit import record
from core.db.models import Concept, ConceptStatus, Job, JobState, Upload, utcnow
from core.storage import ArtifactStore


def delete_job_uploads(session: Session, *, store: ArtifactStore, job_id: str) -> int:
    """Delete the raw upload files of ``job_id``, then their rows; mark the concept's images deleted.

    Idempotent (missing files are fine). Flushes; the caller commits. Returns the number removed.
    """
    paths = list(session.scalars(select(Upload.path).where(Upload.job_id == job_id)))
    store.delete_many(paths)
    session.execute(delete(Upload).where(Upload.job_id == job_id))
    concept_id = session.scalar(select(Job.concept_id).where(Job.id == job_id))
    if concept_id is not None:
        session.execute(
            update(Concept)
            .where(Concept.id == concept_id, Concept.images_deleted_at.is_(None))
            .values(images_deleted_at=utcnow())
        )
    session.flush()
    return len(paths)


@dataclass(frozen=True)
class CancelOutcome:
    job: Job
    cancelled_now: bool  # a queued job became cancelled in this call
    requested: bool  # a running job was asked to stop


def cancel_job(
    session: Session, *, store: ArtifactStore, job: Job, actor_user_id: str | None
) -> CancelOutcome:
    """Cancel a queued job at once, or ask a running one to stop; final jobs are left as they are.

    A queued job is moved to ``cancelled`` with a compare-and-swap on its state, so a worker that
    claims it at the same moment wins or loses cleanly; its uploads are deleted. Flushes only.
    """
    now = utcnow()
    moved = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == JobState.QUEUED.value)
        .values(state=JobState.CANCELLED.value, finished_at=now, cancel_requested=True)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved == 1:
        if job.concept_id is not None:
            session.execute(
                update(Concept)
                .where(Concept.id == job.concept_id)
                .values(status=ConceptStatus.CANCELLED.value)
            )
        delete_job_uploads(session, store=store, job_id=job.id)
        record(
            session,
            actor_user_id=actor_user_id,
            action="job.cancel",
            subject=job.id,
            details={"was": "queued"},
        )
        session.flush()
        session.refresh(job)
        return CancelOutcome(job=job, cancelled_now=True, requested=False)
    requested = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == JobState.RUNNING.value)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    ).rowcount
    if requested == 1:
        record(
            session,
            actor_user_id=actor_user_id,
            action="job.cancel",
            subject=job.id,
            details={"was": "running"},
        )
    session.flush()
    session.refresh(job)
    return CancelOutcome(job=job, cancelled_now=False, requested=requested == 1)
