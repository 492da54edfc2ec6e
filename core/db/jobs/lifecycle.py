"""How an attempt ends: publish, fail, cancel — every final transition goes through ``release``.

``release`` is the one place a job becomes final: it clears the lease, stamps ``finished_at``,
marks a train job's concept failed or cancelled, writes the audit record and the webhook event
(``core.db.webhooks``; docs/webhooks.md) and queues the user's next train job
(docs/architecture.md, "The job protocol"). The publishes add their rows first,
in the same transaction, fenced by the attempt's token: a stale attempt writes nothing.

Every public function takes a ``session_factory`` and runs its own short transaction, so the
worker never holds a database transaction open while it trains. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db.audit import record
from core.db.jobs.lineage import advance_head, check_head
from core.db.models import (
    AdapterVersion,
    Concept,
    ConceptStatus,
    FisherState,
    GeneratedImage,
    Job,
    JobKind,
    JobState,
    Outbox,
    User,
    utcnow,
)
from core.db.session import write_transaction
from core.db.webhooks import emit_job
from core.queue.names import TASK_NAMES
from core.storage import manifest_sha256
from core.webhooks.events import JOB_QUEUED


class LeaseLostError(RuntimeError):
    """The caller's fencing token is no longer the job's: another attempt owns it, or it ended."""


class CancelRequestedError(RuntimeError):
    """The user asked the job to stop before its publish committed: nothing was written."""


@dataclass(frozen=True)
class AuditEntry:
    """What ``release`` records (default: ``job.<state>`` about the job, with its kind)."""

    action: str
    subject: str
    details: dict[str, Any]


def finished_progress(progress: dict[str, Any] | None) -> dict[str, Any]:
    """Phase "done" with the last phase's counter at its total (a finished job never reads 19/24:
    the worker writes progress at most once per interval, so the last write may lag the last step)."""
    last = dict(progress or {})
    total = int(last.get("total") or 0)
    return {**last, "phase": "done", "step": total, "total": total}


# ---- the one final transition ------------------------------------------------------------------


def release(
    session: Session,
    *,
    job: Job,
    state: JobState,
    now: datetime,
    error: str | None = None,
    audit: AuditEntry | None = None,
) -> None:
    """Make ``job`` final in ``state`` inside the caller's transaction (see the module docstring)."""
    job.state = state.value
    job.error = error
    job.finished_at = now
    _drop_lease(job)
    if state is JobState.SUCCEEDED:
        job.progress = finished_progress(job.progress)
    elif job.concept_id and job.kind == JobKind.TRAIN.value:
        concept_status = ConceptStatus.CANCELLED if state is JobState.CANCELLED else ConceptStatus.FAILED
        session.execute(
            update(Concept).where(Concept.id == job.concept_id).values(status=concept_status.value)
        )
    entry = audit or AuditEntry(action=f"job.{state.value}", subject=job.id, details={"kind": job.kind})
    record(session, action=entry.action, subject=entry.subject, details=entry.details)
    emit_job(session, job=job, event=f"job.{state.value}", now=now)
    if job.kind == JobKind.TRAIN.value:
        _dispatch_next_train_job(session, user_id=job.user_id, after_seq=job.seq)
    session.flush()


def give_up(session: Session, *, job: Job, now: datetime) -> None:
    """Fail a job whose attempts are exhausted (each attempt's worker stopped without an outcome)."""
    error = f"gave up after {job.attempts} attempts (the worker stopped each time)"
    release(session, job=job, state=JobState.FAILED, error=error, now=now)


def _drop_lease(job: Job) -> None:
    job.lease_owner = None
    job.lease_expires_at = None


def _dispatch_next_train_job(session: Session, *, user_id: str, after_seq: int) -> None:
    """Queue a message for the user's next train job, now that this one is final."""
    next_id = session.scalar(
        select(Job.id)
        .where(
            Job.user_id == user_id,
            Job.kind == JobKind.TRAIN.value,
            Job.seq > after_seq,
            Job.state == JobState.QUEUED.value,
        )
        .order_by(Job.seq)
        .limit(1)
    )
    if next_id is not None:
        session.add(Outbox(job_id=next_id, task_name=TASK_NAMES[JobKind.TRAIN.value]))


def _owned(session: Session, *, job_id: str, fencing_token: int) -> Job | None:
    """The job, locked, while this attempt's ``fencing_token`` still owns it running; else None."""
    job = session.get(Job, job_id, populate_existing=True, with_for_update=True)
    if job is None or job.fencing_token != fencing_token or job.state != JobState.RUNNING.value:
        return None
    return job


def _publishable(session: Session, *, job_id: str, fencing_token: int) -> Job:
    """The locked job a publish may complete: still this attempt's, and no cancel requested.

    The cancel check is here, under the row lock, because the worker's own check reads its
    monitor's last heartbeat: a cancel committed after that beat would otherwise still publish
    (docs/architecture.md, "The job protocol").
    """
    job = _owned(session, job_id=job_id, fencing_token=fencing_token)
    if job is None:
        raise LeaseLostError("the job is no longer owned by this attempt")
    if job.cancel_requested:
        raise CancelRequestedError("the job was cancelled before its result was published")
    return job


# ---- publishing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publication:
    version_id: str
    parent_id: str | None
    task_index: int
    path: str
    files: dict[str, dict[str, Any]]
    method: str
    metrics: dict[str, Any]
    fisher_file: str | None = "fisher.safetensors"
    # The task's final downsampled loss curves (``worker.curves``); None keeps what heartbeats wrote.
    loss_curves: dict[str, Any] | None = None


def publish_training(
    session_factory: sessionmaker[Session],
    *,
    job_id: str,
    fencing_token: int,
    publication: Publication,
    now: datetime | None = None,
) -> AdapterVersion:
    """Make a trained task visible, in one transaction (the version directory already exists).

    Adapter + Fisher rows (unique per job), compare-and-swap of the user's head from the parent,
    concept ``ready``, job ``succeeded``. Raises ``LeaseLostError`` if the fencing token is stale,
    ``CancelRequestedError`` if the user cancelled and ``LineageConflictError`` if the user's head
    moved; either way nothing is written.
    """
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        job = _publishable(session, job_id=job_id, fencing_token=fencing_token)
        user = session.scalar(select(User).where(User.id == job.user_id).with_for_update())
        if user is None:
            raise LeaseLostError("the user no longer exists")
        check_head(user, parent_id=publication.parent_id, task_index=publication.task_index)
        version = _add_version_rows(session, job=job, publication=publication, now=now)
        advance_head(session, user_id=job.user_id, parent_id=publication.parent_id, version_id=version.id)
        if job.concept_id:
            session.execute(
                update(Concept)
                .where(Concept.id == job.concept_id)
                .values(
                    status=ConceptStatus.READY.value,
                    task_index=publication.task_index,
                    metrics=publication.metrics,
                )
            )
        job.result = {
            "adapter_version_id": version.id,
            "task_index": publication.task_index,
            "metrics": publication.metrics,
        }
        if publication.loss_curves is not None:
            job.loss_curves = publication.loss_curves
        audit = AuditEntry(
            action="adapter.publish",
            subject=version.id,
            details={"job_id": job.id, "task_index": publication.task_index},
        )
        release(session, job=job, state=JobState.SUCCEEDED, now=now, audit=audit)
        return version


def _add_version_rows(
    session: Session, *, job: Job, publication: Publication, now: datetime
) -> AdapterVersion:
    """The ``adapter_versions`` row and, when the version has one, its ``fisher_states`` row."""
    version = AdapterVersion(
        id=publication.version_id,
        user_id=job.user_id,
        concept_id=job.concept_id,
        job_id=job.id,
        parent_id=publication.parent_id,
        task_index=publication.task_index,
        method=publication.method,
        path=publication.path,
        files=publication.files,
        sha256=manifest_sha256(publication.files),
        size_bytes=sum(int(meta["bytes"]) for meta in publication.files.values()),
        created_at=now,
    )
    session.add(version)
    session.flush()
    fisher = publication.fisher_file
    if fisher and fisher in publication.files:
        meta = publication.files[fisher]
        session.add(
            FisherState(
                user_id=job.user_id,
                adapter_version_id=version.id,
                job_id=job.id,
                path=f"{publication.path}/{fisher}",
                sha256=meta["sha256"],
                bytes=int(meta["bytes"]),
                created_at=now,
            )
        )
    return version


def publish_generation(
    session_factory: sessionmaker[Session],
    *,
    job_id: str,
    fencing_token: int,
    generation_id: str,
    images: list[dict[str, Any]],
    now: datetime | None = None,
) -> list[str]:
    """Image rows + job ``succeeded`` in one transaction; returns the image ids.

    ``images``: ``[{"path", "sha256", "width", "height"}]``, files already written.
    """
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        job = _publishable(session, job_id=job_id, fencing_token=fencing_token)
        rows = [GeneratedImage(user_id=job.user_id, generation_id=generation_id, **image) for image in images]
        session.add_all(rows)
        session.flush()
        image_ids = [row.id for row in rows]
        job.result = {"generation_id": generation_id, "image_ids": image_ids}
        audit = AuditEntry(
            action=f"job.{JobState.SUCCEEDED.value}",
            subject=job.id,
            details={"kind": job.kind, "images": len(image_ids)},
        )
        release(session, job=job, state=JobState.SUCCEEDED, now=now, audit=audit)
        return image_ids


# ---- failing and cancelling ------------------------------------------------------------------


def fail_job(
    session_factory: sessionmaker[Session],
    *,
    job_id: str,
    fencing_token: int,
    error: str,
    final: bool,
    now: datetime | None = None,
) -> bool:
    """End this attempt with ``error``; returns True when the job is now finally ``failed``.

    A non-final failure puts the job back to ``queued`` (the next delivery retries it) unless
    its attempts are exhausted, which makes it final.
    """
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        job = _owned(session, job_id=job_id, fencing_token=fencing_token)
        if job is None:
            return False
        if final or job.attempts >= job.max_attempts:
            release(session, job=job, state=JobState.FAILED, error=error, now=now)
            return True
        job.state = JobState.QUEUED.value
        job.error = error
        _drop_lease(job)
        session.add(Outbox(job_id=job.id, task_name=TASK_NAMES[job.kind]))
        emit_job(session, job=job, event=JOB_QUEUED, now=now)
        return False


def mark_cancelled(
    session_factory: sessionmaker[Session], *, job_id: str, fencing_token: int, now: datetime | None = None
) -> bool:
    """A running attempt stopped on ``cancel_requested``: the job is ``cancelled`` (final)."""
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        job = _owned(session, job_id=job_id, fencing_token=fencing_token)
        if job is None:
            return False
        release(session, job=job, state=JobState.CANCELLED, error="cancelled", now=now)
        return True


def request_cancel(
    session_factory: sessionmaker[Session], *, job_id: str, now: datetime | None = None
) -> Job:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next step."""
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        # Locked: a publish or a claim committing meanwhile is seen, not overwritten (PostgreSQL).
        job = session.get(Job, job_id, populate_existing=True, with_for_update=True)
        if job is None:
            raise LookupError("no such job")
        if job.is_final:
            return job
        job.cancel_requested = True
        if job.state == JobState.QUEUED.value:
            release(session, job=job, state=JobState.CANCELLED, error="cancelled", now=now)
        session.flush()
        return job
