"""A user's own rows, one page at a time: concepts, jobs and generations (docs/api.md,
"Lists and cursors").

Each function returns at most ``limit`` rows after the sort key ``after`` (``core.db.keyset``);
callers ask for one row more than they show to learn whether another page follows.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import keyset
from core.db.models import Concept, GeneratedImage, Generation, Job

CONCEPT_ORDER = (Concept.created_at, Concept.id)


def concepts(session: Session, *, user_id: str, limit: int, after: Sequence[object] | None) -> list[Concept]:
    """The user's concepts, oldest first (``created_at``, then id)."""
    query = (
        select(Concept)
        .where(Concept.user_id == user_id, keyset.after(CONCEPT_ORDER, after))
        .order_by(*keyset.order(CONCEPT_ORDER))
        .limit(limit)
    )
    return list(session.scalars(query))


def jobs(
    session: Session,
    *,
    user_id: str,
    limit: int,
    before_seq: int | None,
    kind: str | None = None,
    state: str | None = None,
) -> list[Job]:
    """The user's jobs, newest first (their per-user ``seq``), optionally of one kind or state."""
    query = select(Job).where(
        Job.user_id == user_id, keyset.after([Job.seq], _key(before_seq), descending=True)
    )
    if kind is not None:
        query = query.where(Job.kind == kind)
    if state is not None:
        query = query.where(Job.state == state)
    return list(session.scalars(query.order_by(Job.seq.desc()).limit(limit)))


def generations(
    session: Session, *, user_id: str, limit: int, before_seq: int | None
) -> list[tuple[Generation, Job]]:
    """The user's generations with their jobs, newest first (the job's ``seq``)."""
    query = (
        select(Generation, Job)
        .join(Job, Job.id == Generation.job_id)
        .where(Generation.user_id == user_id, keyset.after([Job.seq], _key(before_seq), descending=True))
        .order_by(Job.seq.desc())
        .limit(limit)
    )
    return [(generation, job) for generation, job in session.execute(query)]


def images_of(session: Session, *, generation_ids: Sequence[str]) -> dict[str, list[GeneratedImage]]:
    """The stored images of each generation, in creation order (one query for all)."""
    found: dict[str, list[GeneratedImage]] = {g: [] for g in generation_ids}
    if generation_ids:
        query = (
            select(GeneratedImage)
            .where(GeneratedImage.generation_id.in_(generation_ids))
            .order_by(GeneratedImage.created_at, GeneratedImage.id)
        )
        for image in session.scalars(query):
            found[image.generation_id].append(image)
    return found


def _key(seq: int | None) -> tuple[int] | None:
    return None if seq is None else (seq,)
