"""Read queries of the admin dashboard (docs/dashboard.md): users with their totals, a user's task
history, active jobs across users, workers seen and queue depth.

Every list is keyset-paginated (``after``/``before`` is the sort key of the last row the caller
has), so a page costs the same at row 10 and at row 10,000; the per-user totals are computed for
the users of one page only, with one grouped query per total.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from core.db.models import (
    AdapterVersion,
    ApiKey,
    Concept,
    Job,
    JobKind,
    JobState,
    Outbox,
    Upload,
    User,
    WorkerSeen,
)


@dataclass(frozen=True)
class UserTotals:
    concepts: int = 0
    tasks: int = 0
    storage_bytes: int = 0
    last_activity_at: datetime | None = None
    active_keys: int = 0


@dataclass(frozen=True)
class UserRow:
    user: User
    totals: UserTotals


def _grouped(session: Session, column: Any, value: Any, user_ids: list[str], *where: Any) -> dict[str, Any]:
    rows = session.execute(select(column, value).where(column.in_(user_ids), *where).group_by(column))
    return {user_id: total for user_id, total in rows}


def _latest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def user_totals(session: Session, *, user_ids: list[str]) -> dict[str, UserTotals]:
    """Concepts, train tasks, bytes stored (adapter versions + raw uploads not yet deleted) and the
    last activity (a job queued or finished, a key used) of each user in ``user_ids``."""
    if not user_ids:
        return {}
    concepts = _grouped(session, Concept.user_id, func.count(Concept.id), user_ids)
    train = Job.kind == JobKind.TRAIN.value
    tasks = _grouped(session, Job.user_id, func.count(Job.id), user_ids, train)
    adapters = _grouped(session, AdapterVersion.user_id, func.sum(AdapterVersion.size_bytes), user_ids)
    uploads = dict(
        session.execute(
            select(Job.user_id, func.sum(Upload.bytes))
            .join(Upload, Upload.job_id == Job.id)
            .where(Job.user_id.in_(user_ids))
            .group_by(Job.user_id)
        ).all()
    )
    job_times = {
        user_id: (created, finished)
        for user_id, created, finished in session.execute(
            select(Job.user_id, func.max(Job.created_at), func.max(Job.finished_at))
            .where(Job.user_id.in_(user_ids))
            .group_by(Job.user_id)
        )
    }
    key_used = _grouped(session, ApiKey.user_id, func.max(ApiKey.last_used_at), user_ids)
    keys = _grouped(session, ApiKey.user_id, func.count(ApiKey.id), user_ids, ApiKey.revoked_at.is_(None))
    totals = {}
    for user_id in user_ids:
        created, finished = job_times.get(user_id, (None, None))
        totals[user_id] = UserTotals(
            concepts=int(concepts.get(user_id) or 0),
            tasks=int(tasks.get(user_id) or 0),
            storage_bytes=int(adapters.get(user_id) or 0) + int(uploads.get(user_id) or 0),
            last_activity_at=_latest(_aware(created), _aware(finished), _aware(key_used.get(user_id))),
            active_keys=int(keys.get(user_id) or 0),
        )
    return totals


def _aware(value: Any) -> datetime | None:
    """Aggregates skip the column type on some backends (SQLite returns text or naive values)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def list_users_page(
    session: Session, *, limit: int, after: tuple[datetime, str] | None = None
) -> list[UserRow]:
    """Users in creation order (then id), ``limit`` of them after the key ``after``."""
    query = select(User).order_by(User.created_at, User.id).limit(limit)
    if after is not None:
        created, user_id = after
        query = query.where(
            or_(User.created_at > created, and_(User.created_at == created, User.id > user_id))
        )
    users = list(session.scalars(query))
    totals = user_totals(session, user_ids=[u.id for u in users])
    return [UserRow(user=u, totals=totals[u.id]) for u in users]


@dataclass(frozen=True)
class TaskRow:
    job: Job
    concept: Concept | None
    version: AdapterVersion | None


def task_history(
    session: Session, *, user_id: str, limit: int, before_seq: int | None = None
) -> list[TaskRow]:
    """The user's train jobs, newest first (by ``seq``), with their concept and the version made."""
    query = (
        select(Job, Concept, AdapterVersion)
        .outerjoin(Concept, Concept.id == Job.concept_id)
        .outerjoin(AdapterVersion, AdapterVersion.job_id == Job.id)
        .where(Job.user_id == user_id, Job.kind == JobKind.TRAIN.value)
        .order_by(Job.seq.desc())
        .limit(limit)
    )
    if before_seq is not None:
        query = query.where(Job.seq < before_seq)
    return [TaskRow(job=j, concept=c, version=v) for j, c, v in session.execute(query)]


def task(session: Session, *, job_id: str) -> TaskRow | None:
    """One train job with its concept and version, or None."""
    row = session.execute(
        select(Job, Concept, AdapterVersion)
        .outerjoin(Concept, Concept.id == Job.concept_id)
        .outerjoin(AdapterVersion, AdapterVersion.job_id == Job.id)
        .where(Job.id == job_id, Job.kind == JobKind.TRAIN.value)
    ).first()
    return None if row is None else TaskRow(job=row[0], concept=row[1], version=row[2])


@dataclass(frozen=True)
class ActiveRow:
    job: Job
    user_name: str
    concept_name: str | None


ACTIVE = (JobState.RUNNING.value, JobState.QUEUED.value)


def active_jobs(
    session: Session, *, limit: int, after: tuple[datetime, str] | None = None
) -> list[ActiveRow]:
    """Running and queued jobs of every user, oldest first (``created_at``, then id)."""
    query = (
        select(Job, User.name, Concept.name)
        .join(User, User.id == Job.user_id)
        .outerjoin(Concept, Concept.id == Job.concept_id)
        .where(Job.state.in_(ACTIVE))
        .order_by(Job.created_at, Job.id)
        .limit(limit)
    )
    if after is not None:
        created, job_id = after
        query = query.where(or_(Job.created_at > created, and_(Job.created_at == created, Job.id > job_id)))
    return [ActiveRow(job=j, user_name=u, concept_name=c) for j, u, c in session.execute(query)]


def workers_seen(session: Session, *, limit: int = 200) -> list[WorkerSeen]:
    """The workers, most recently seen first."""
    return list(session.scalars(select(WorkerSeen).order_by(WorkerSeen.last_seen_at.desc()).limit(limit)))


@dataclass(frozen=True)
class QueueDepth:
    queued: int
    running: int
    unsent_messages: int


def queue_depth(session: Session) -> QueueDepth:
    """Jobs waiting and running (SQL is the source of truth) and outbox rows not yet sent."""
    counts = dict(
        session.execute(
            select(Job.state, func.count(Job.id)).where(Job.state.in_(ACTIVE)).group_by(Job.state)
        ).all()
    )
    unsent = session.scalar(select(func.count(Outbox.id)).where(Outbox.sent_at.is_(None)))
    return QueueDepth(
        queued=int(counts.get(JobState.QUEUED.value, 0)),
        running=int(counts.get(JobState.RUNNING.value, 0)),
        unsent_messages=int(unsent or 0),
    )
