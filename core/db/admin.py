"""Read queries of the admin dashboard (docs/dashboard.md): users with their totals, a user's task
history, active jobs across users, workers seen and queue depth.

Every list is keyset-paginated (``after``/``before`` is the sort key of the last row the caller
has), so a page costs the same at row 10 and at row 10,000; the per-user totals are computed for
the users of one page only, with one grouped query per total. The history page reads the last
versions of the lineage (``lineage_tail``) and the previews of the last tasks (``preview_window``)
only, so it costs about the same at 1,000 tasks as at 10 (``mnemo bench dashboard``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased, defer

from core.db import keyset
from core.db.models import (
    AdapterVersion,
    ApiKey,
    Concept,
    ConceptStatus,
    Job,
    JobKind,
    JobState,
    Outbox,
    Preview,
    Upload,
    User,
    WorkerSeen,
)
from core.db.previews import Strip


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
    order = (User.created_at, User.id)
    query = select(User).where(keyset.after(order, after)).order_by(*keyset.order(order)).limit(limit)
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
    """The user's train jobs, newest first (by ``seq``), with their concept and the version made.

    The jobs' loss curves (up to 600 points each) are not loaded: the history does not show them.
    """
    query = (
        select(Job, Concept, AdapterVersion)
        .outerjoin(Concept, Concept.id == Job.concept_id)
        .outerjoin(AdapterVersion, AdapterVersion.job_id == Job.id)
        .where(Job.user_id == user_id, Job.kind == JobKind.TRAIN.value)
        .options(defer(Job.loss_curves, raiseload=True))
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


def user_versions(session: Session, *, user_id: str) -> list[AdapterVersion]:
    """All of the user's adapter versions, in one query.

    Loaded into the session's identity map, they let the lineage walk (``core.db.jobs.lineage``,
    one ``session.get`` per parent) run without a query per version: the caller keeps the list
    alive while it walks.
    """
    return list(session.scalars(select(AdapterVersion).where(AdapterVersion.user_id == user_id)))


@dataclass(frozen=True)
class LineageTail:
    """The last versions of a user's lineage (oldest first) and the length of the whole chain."""

    head: str | None
    length: int
    versions: list[tuple[AdapterVersion, Concept | None]]

    @property
    def first_position(self) -> int:
        """The 1-based position in the chain of the first version here."""
        return self.length - len(self.versions) + 1


def _chain_ids(session: Session, *, head: str) -> list[str]:
    """The version ids from ``head`` back to the first task, in one recursive query (head first).

    ``UNION`` (not ``UNION ALL``) ends the recursion on a cycle too; the walk below stops there."""
    links = (
        select(AdapterVersion.id, AdapterVersion.parent_id)
        .where(AdapterVersion.id == head)
        .cte("lineage_links", recursive=True)
    )
    older = aliased(AdapterVersion)
    links = links.union(select(older.id, older.parent_id).join(links, older.id == links.c.parent_id))
    parents = dict(session.execute(select(links.c.id, links.c.parent_id)).all())
    chain: list[str] = []
    current: str | None = head
    while current in parents and len(chain) < len(parents):
        chain.append(current)
        current = parents[current]
    return chain


def lineage_tail(session: Session, *, user_id: str, limit: int) -> LineageTail:
    """The last ``limit`` versions of the user's lineage with their concepts, in three queries
    however long the chain (the whole chain, one query per version: ``core.db.jobs.user_lineage``)."""
    head = session.scalar(select(User.current_adapter_version_id).where(User.id == user_id))
    if head is None:
        return LineageTail(head=None, length=0, versions=[])
    chain = _chain_ids(session, head=head)
    shown = list(reversed(chain[:limit]))
    rows = session.execute(
        select(AdapterVersion, Concept)
        .outerjoin(Concept, Concept.id == AdapterVersion.concept_id)
        .where(AdapterVersion.id.in_(shown))
    )
    by_id = {version.id: (version, concept) for version, concept in rows}
    return LineageTail(head=head, length=len(chain), versions=[by_id[i] for i in shown])


@dataclass(frozen=True)
class PreviewWindow:
    """The preview strips of the tasks ``first_task``..``last_task`` (0, 0 without previews)."""

    first_task: int
    last_task: int
    strips: list[Strip]


def preview_window(session: Session, *, user_id: str, tasks: int, concepts: int) -> PreviewWindow:
    """The previews made after the user's last ``tasks`` tasks, as strips of the learned concepts
    that were previewed then or learned since (task order; the ``concepts`` learned last)."""
    last = session.scalar(select(func.max(Preview.after_task_index)).where(Preview.user_id == user_id))
    if not last:
        return PreviewWindow(first_task=0, last_task=0, strips=[])
    first = max(1, last - tasks + 1)
    in_window = and_(Preview.user_id == user_id, Preview.after_task_index >= first)
    previewed = select(Preview.concept_id).where(in_window)
    shown = session.scalars(
        select(Concept)
        .where(
            Concept.user_id == user_id,
            Concept.status == ConceptStatus.READY.value,
            or_(Concept.task_index >= first, Concept.id.in_(previewed)),
        )
        .order_by(Concept.task_index.desc())
        .limit(concepts)
    ).all()
    strips = {c.id: Strip(concept=c) for c in reversed(shown)}
    for preview in session.scalars(select(Preview).where(in_window).order_by(Preview.after_task_index)):
        if preview.concept_id in strips:
            strips[preview.concept_id].previews.append(preview)
    return PreviewWindow(first_task=first, last_task=last, strips=list(strips.values()))


@dataclass(frozen=True)
class ActiveRow:
    job: Job
    user_name: str
    concept_name: str | None


ACTIVE = (JobState.RUNNING.value, JobState.QUEUED.value)
ACTIVE_ORDER = (Job.created_at, Job.id)


def active_jobs(
    session: Session, *, limit: int, after: tuple[datetime, str] | None = None
) -> list[ActiveRow]:
    """Running and queued jobs of every user, oldest first (``created_at``, then id)."""
    query = (
        select(Job, User.name, Concept.name)
        .join(User, User.id == Job.user_id)
        .outerjoin(Concept, Concept.id == Job.concept_id)
        .where(Job.state.in_(ACTIVE), keyset.after(ACTIVE_ORDER, after))
        .order_by(*keyset.order(ACTIVE_ORDER))
        .limit(limit)
    )
    return [ActiveRow(job=j, user_name=u, concept_name=c) for j, u, c in session.execute(query)]


# Newest started first: a start time never changes, so a heartbeat between two pages moves no row
# (ordered by last_seen_at, a worker seen meanwhile would jump to a page the client already has).
WORKER_ORDER = (WorkerSeen.started_at, WorkerSeen.id)


def workers_seen(
    session: Session, *, limit: int, after: tuple[datetime, str] | None = None
) -> list[WorkerSeen]:
    """The workers, newest started first (then id), ``limit`` of them after the key ``after``."""
    query = (
        select(WorkerSeen)
        .where(keyset.after(WORKER_ORDER, after, descending=True))
        .order_by(*keyset.order(WORKER_ORDER, descending=True))
        .limit(limit)
    )
    return list(session.scalars(query))


def workers_seen_since(session: Session, *, since: datetime) -> int:
    """How many worker processes (any role) were seen at or after ``since``."""
    query = select(func.count()).select_from(WorkerSeen).where(WorkerSeen.last_seen_at >= since)
    return int(session.scalar(query) or 0)


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
