"""Taking a job for one attempt, and keeping it: the claim, its refusals and the heartbeat.

The claim is one conditional ``UPDATE``: the job is ``queued`` (or ``running`` with an expired
lease), not cancelled, below its attempt cap, and — for training — every earlier train job of
the same user (lower ``seq``) is final. It sets the lease, bumps the fencing token and the attempt
count. Zero rows updated means a duplicate, a late delivery or a job that must wait for its
predecessor; ``Claim.outcome`` says which. The heartbeat extends the lease only while the
fencing token is still the caller's (docs/architecture.md, "The job protocol"). A claim writes
the ``job.started`` webhook event and a heartbeat that begins a new phase ``job.progress``, in
their own transactions (docs/webhooks.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from core.db.jobs.lifecycle import give_up, release
from core.db.models import Concept, ConceptStatus, Job, JobKind, JobState, utcnow
from core.db.session import write_transaction
from core.db.webhooks import emit_job, emit_progress
from core.webhooks.events import JOB_STARTED

ACTIVE_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)
# What a claimed job reads until the engine reports its first phase (loading images and state).
STARTING_PROGRESS = {"phase": "starting", "step": 0, "total": 0, "loss": None}


class ClaimOutcome(enum.StrEnum):
    CLAIMED = "claimed"  # run it
    WAIT = "wait"  # an earlier train job of the user is not final yet: try again later
    SKIP = "skip"  # duplicate, late, final, cancelled or leased by a live attempt: do nothing


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    reason: str
    job_id: str
    fencing_token: int = 0
    attempt: int = 0
    user_id: str | None = None
    kind: str | None = None
    concept_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    # Set when the claim itself finished the job (cancelled while queued, attempts exhausted):
    # the caller cleans up after it (``core.db.cleanup``).
    finalized: bool = False

    @property
    def fence(self) -> dict[str, Any]:
        """The keyword arguments that fence a write to this attempt: ``job_id``, ``fencing_token``."""
        return {"job_id": self.job_id, "fencing_token": self.fencing_token}


def earlier_unfinished_train_job() -> Any:
    """SQL: the user of ``Job`` has an earlier train job that is not final (so this one waits)."""
    earlier = aliased(Job)
    return exists().where(
        earlier.user_id == Job.user_id,
        earlier.kind == JobKind.TRAIN.value,
        earlier.seq < Job.seq,
        earlier.state.in_(ACTIVE_STATES),
    )


def runnable() -> Any:
    """SQL: ``Job`` may run now (a generate job, or a train job with no unfinished predecessor)."""
    return or_(Job.kind != JobKind.TRAIN.value, ~earlier_unfinished_train_job())


def claim_job(
    session_factory: sessionmaker[Session],
    *,
    job_id: str,
    worker_id: str,
    lease_seconds: float,
    now: datetime | None = None,
) -> Claim:
    """Try to take the job for one attempt; see ``ClaimOutcome`` for what the caller does next."""
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        claimable = and_(
            Job.id == job_id,
            Job.cancel_requested.is_(False),
            Job.attempts < Job.max_attempts,
            or_(
                Job.state == JobState.QUEUED.value,
                and_(Job.state == JobState.RUNNING.value, Job.lease_expires_at < now),
            ),
            runnable(),
        )
        result = session.execute(
            update(Job)
            .where(claimable)
            .values(
                state=JobState.RUNNING.value,
                lease_owner=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                heartbeat_at=now,
                fencing_token=Job.fencing_token + 1,
                attempts=Job.attempts + 1,
                started_at=func.coalesce(Job.started_at, now),
                error=None,
                progress=STARTING_PROGRESS,
            )
            .execution_options(synchronize_session=False)
        )
        # Locked: a refusal may end the job, and must not overwrite a publish committed meanwhile.
        job = session.get(Job, job_id, populate_existing=True, with_for_update=True)
        if job is None:
            return Claim(ClaimOutcome.SKIP, "no such job", job_id)
        if result.rowcount == 1:
            return _claimed(session, job=job)
        return _refusal(session, job=job, now=now)


def _claimed(session: Session, *, job: Job) -> Claim:
    if job.concept_id and job.kind == JobKind.TRAIN.value:
        session.execute(
            update(Concept).where(Concept.id == job.concept_id).values(status=ConceptStatus.TRAINING.value)
        )
    emit_job(session, job=job, event=JOB_STARTED)
    return Claim(
        ClaimOutcome.CLAIMED,
        "claimed",
        job.id,
        fencing_token=job.fencing_token,
        attempt=job.attempts,
        user_id=job.user_id,
        kind=job.kind,
        concept_id=job.concept_id,
        payload=dict(job.payload or {}),
    )


def _refusal(session: Session, *, job: Job, now: datetime) -> Claim:
    """Why a claim did not take the job; finishes jobs that can never run again."""
    base = {"job_id": job.id, "user_id": job.user_id, "kind": job.kind, "concept_id": job.concept_id}
    if job.is_final:
        return Claim(ClaimOutcome.SKIP, f"job is already {job.state}", **base)
    lease_live = job.state == JobState.RUNNING.value and (
        job.lease_expires_at is not None and job.lease_expires_at >= now
    )
    if lease_live:
        return Claim(ClaimOutcome.SKIP, "another attempt holds a live lease", **base)
    if job.cancel_requested:
        release(session, job=job, state=JobState.CANCELLED, error="cancelled", now=now)
        return Claim(ClaimOutcome.SKIP, "cancelled", finalized=True, **base)
    if job.attempts >= job.max_attempts:
        give_up(session, job=job, now=now)
        return Claim(ClaimOutcome.SKIP, "attempts exhausted", finalized=True, **base)
    return Claim(ClaimOutcome.WAIT, "an earlier task of this user is not finished", **base)


@dataclass(frozen=True)
class Heartbeat:
    alive: bool  # False: the lease is lost (another attempt owns the job, or it ended)
    cancel_requested: bool


def heartbeat(
    session_factory: sessionmaker[Session],
    *,
    job_id: str,
    fencing_token: int,
    lease_seconds: float,
    progress: dict[str, Any] | None = None,
    loss_curves: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Heartbeat:
    """Extend the lease (and store ``progress``, ``loss_curves``) while ``fencing_token`` is the job's."""
    now = now or utcnow()
    values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=lease_seconds), "heartbeat_at": now}
    if progress is not None:
        values["progress"] = progress
    if loss_curves is not None:
        values["loss_curves"] = loss_curves
    with session_factory.begin() as session:
        updated = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.fencing_token == fencing_token,
                Job.state == JobState.RUNNING.value,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if updated == 1 and progress is not None:
            emit_progress(session, job_id=job_id, progress=progress, now=now)
        cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    return Heartbeat(alive=updated == 1, cancel_requested=cancel)
