"""Workers seen: each worker process records itself in ``workers`` (docs/dashboard.md).

A pool process touches its row at every lease heartbeat of the job it runs (``current_job_id``)
and clears the job when the attempt ends; a worker's main process touches a ``main`` row from
its reconciler thread. Rows are never deleted by the worker: the dashboard shows when each was
last seen, and ``prune_workers`` drops rows not seen for a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import WorkerSeen, utcnow

PRUNE_AFTER = timedelta(days=1)


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
