"""Workers seen: each worker process records itself in ``workers`` (docs/dashboard.md).

A pool process touches its row at every lease heartbeat of the job it runs (``current_job_id``)
and clears the job when the attempt ends; a worker's main process touches a ``main`` row from
its presence thread (``worker.presence``) every ``worker_heartbeat_seconds``, and ``/readyz``
counts the main rows seen within ``LIVE_HEARTBEATS`` of those as live workers
(``live_workers``). Rows are never deleted by the worker: the dashboard shows when each was last
seen, and ``prune_workers`` drops rows not seen for a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import WorkerSeen, utcnow

PRUNE_AFTER = timedelta(days=1)
LIVE_HEARTBEATS = 3  # a main process missing this many heartbeats in a row is not live


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process says about itself (no user data)."""

    worker_id: str
    role: str
    device: str
    backbone: str
    preset: str


def touch_worker(
    session_factory: sessionmaker[Session],
    *,
    info: WorkerInfo,
    current_job_id: str | None,
    now: datetime | None = None,
) -> None:
    """Upsert the worker's row: ``last_seen_at`` now, and the job it runs (None: idle)."""
    now = now or utcnow()
    values = {
        "role": info.role,
        "device": info.device[:64],
        "backbone": info.backbone[-255:],
        "preset": info.preset[:32],
        "current_job_id": current_job_id,
        "last_seen_at": now,
    }
    with session_factory.begin() as session:
        updated = session.execute(
            update(WorkerSeen).where(WorkerSeen.id == info.worker_id).values(**values)
        ).rowcount
    if updated:
        return
    try:
        with session_factory.begin() as session:
            session.add(WorkerSeen(id=info.worker_id, started_at=now, **values))
    except IntegrityError:  # inserted meanwhile by this process's other thread: it is seen either way
        return


def prune_workers(session_factory: sessionmaker[Session], *, now: datetime | None = None) -> int:
    """Delete rows of workers not seen for ``PRUNE_AFTER``; returns how many."""
    cutoff = (now or utcnow()) - PRUNE_AFTER
    with session_factory.begin() as session:
        return session.execute(delete(WorkerSeen).where(WorkerSeen.last_seen_at < cutoff)).rowcount


def live_window(heartbeat_seconds: float) -> timedelta:
    """How recently a worker's main process must have been seen to count as live."""
    return timedelta(seconds=LIVE_HEARTBEATS * heartbeat_seconds)


def live_workers(session: Session, *, within: timedelta, now: datetime | None = None) -> int:
    """How many worker main processes (the ones that consume jobs) were seen within ``within``."""
    cutoff = (now or utcnow()) - within
    query = select(func.count()).where(WorkerSeen.role == "main", WorkerSeen.last_seen_at >= cutoff)
    return int(session.scalar(query) or 0)
