"""Preview strips (docs/dashboard.md): fixed-seed images of each learned token after each task.

After task n is published the worker renders every learned token (or the last N) with the same
prompt and seeds, stores the PNGs as the user's images and records one ``previews`` row per
token. The preview made when a concept was learned is its reference; later ones carry a
``retention`` score (feature similarity to the reference, 100 = the same features).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import keyset
from core.db.models import Concept, ConceptStatus, GeneratedImage, Generation, Preview

PREVIEW_PROMPT = "a photo of {}"


@dataclass(frozen=True)
class PreviewImage:
    """One rendered PNG, already written to the store."""

    path: str
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class PreviewItem:
    """The preview of one token made after the task ``after_task_index`` was published."""

    concept_id: str
    token: str
    after_task_index: int
    seed: int
    images: list[PreviewImage]
    retention: float | None = None
    features: str | None = None


def store_previews(
    session_factory: sessionmaker[Session], *, job_id: str, user_id: str, items: list[PreviewItem]
) -> list[str]:
    """Image rows + preview rows in one transaction; returns the preview ids.

    Idempotent per job: a second call for the same train job (a re-delivery) writes nothing and
    returns ``[]`` (the caller deletes its files).
    """
    with session_factory.begin() as session:
        if session.scalar(select(Generation.id).where(Generation.job_id == job_id)) is not None:
            return []
        tokens = " ".join(item.token for item in items)
        generation = Generation(
            user_id=user_id, job_id=job_id, prompt=PREVIEW_PROMPT.format(tokens), params={"kind": "preview"}
        )
        session.add(generation)
        session.flush()
        ids = []
        for item in items:
            rows = [
                GeneratedImage(user_id=user_id, generation_id=generation.id, **image.__dict__)
                for image in item.images
            ]
            session.add_all(rows)
            session.flush()
            preview = Preview(
                user_id=user_id,
                concept_id=item.concept_id,
                job_id=job_id,
                after_task_index=item.after_task_index,
                token=item.token,
                seed=item.seed,
                image_ids=[row.id for row in rows],
                retention=item.retention,
                features=item.features,
            )
            session.add(preview)
            session.flush()
            ids.append(preview.id)
        return ids


def reference_image_paths(session: Session, *, concept_ids: list[str]) -> dict[str, list[str]]:
    """Per concept, the stored paths of the preview made right after it was learned."""
    if not concept_ids:
        return {}
    rows = session.execute(
        select(Preview, Concept.task_index)
        .join(Concept, Concept.id == Preview.concept_id)
        .where(Preview.concept_id.in_(concept_ids), Preview.after_task_index == Concept.task_index)
    ).all()
    image_ids = [image_id for preview, _ in rows for image_id in preview.image_ids]
    found = session.execute(
        select(GeneratedImage.id, GeneratedImage.path).where(GeneratedImage.id.in_(image_ids))
    )
    paths = {image_id: path for image_id, path in found}
    return {preview.concept_id: [paths[i] for i in preview.image_ids if i in paths] for preview, _ in rows}


@dataclass
class Strip:
    """One concept's previews, oldest task first."""

    concept: Concept
    previews: list[Preview] = field(default_factory=list)

    @property
    def latest_retention(self) -> float | None:
        later = [p.retention for p in self.previews if p.retention is not None]
        return later[-1] if later else None


STRIP_ORDER = (Concept.task_index, Concept.id)


def preview_strips(
    session: Session, *, user_id: str, limit: int, after: tuple[int, str] | None = None
) -> list[Strip]:
    """``limit`` of the user's learned concepts after the sort key ``after`` (task order, then id),
    each with its previews in task order."""
    concepts = session.scalars(
        select(Concept)
        .where(
            Concept.user_id == user_id,
            Concept.status == ConceptStatus.READY.value,
            keyset.after(STRIP_ORDER, after),
        )
        .order_by(*keyset.order(STRIP_ORDER))
        .limit(limit)
    ).all()
    strips = {c.id: Strip(concept=c) for c in concepts}
    if not strips:
        return []
    for preview in session.scalars(
        select(Preview).where(Preview.concept_id.in_(list(strips))).order_by(Preview.after_task_index)
    ):
        strips[preview.concept_id].previews.append(preview)
    return list(strips.values())
