"""What a user's quotas count, in SQL: concepts, unfinished jobs, images asked for in a window.

The API compares these with its settings before it accepts a concept or a generation
(``api.limits``, docs/service.md, "Quotas and rate limits"). Counting from the rows makes the
quotas hold across API processes and restarts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db.models import Concept, ConceptStatus, Generation, Job, JobState

# Concepts that failed or were cancelled hold no adapter and do not count against the quota.
COUNTED_CONCEPTS = (ConceptStatus.QUEUED.value, ConceptStatus.TRAINING.value, ConceptStatus.READY.value)
UNFINISHED_JOBS = (JobState.QUEUED.value, JobState.RUNNING.value)


def concept_count(session: Session, *, user_id: str) -> int:
    """The user's concepts that are queued, training or ready."""
    query = select(func.count()).select_from(Concept)
    return int(session.scalar(query.where(Concept.user_id == user_id, Concept.status.in_(COUNTED_CONCEPTS))))


def unfinished_job_count(session: Session, *, user_id: str) -> int:
    """The user's jobs (both kinds) that are queued or running."""
    query = select(func.count()).select_from(Job)
    return int(session.scalar(query.where(Job.user_id == user_id, Job.state.in_(UNFINISHED_JOBS))))


def images_requested_since(session: Session, *, user_id: str, since: datetime) -> list[tuple[datetime, int]]:
    """``(created_at, n)`` of every generation the user asked for since ``since``, oldest first."""
    rows = session.execute(
        select(Generation.created_at, Generation.params)
        .where(Generation.user_id == user_id, Generation.created_at >= since)
        .order_by(Generation.created_at)
    )
    return [(created_at, int((params or {}).get("n", 1))) for created_at, params in rows]
