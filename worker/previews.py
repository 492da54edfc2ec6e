"""Preview strips: after each published task, a fixed-seed picture of every learned token.

Right after task n is published the worker renders ``a photo of <token>`` for the concepts
learned so far (the last ``MNEMO_PREVIEW_CONCEPTS``; 0 turns previews off, -1 means all) with
the same seed, steps and guidance each time, and stores the PNGs as that user's images
(``core.db.previews``). The preview made right after a concept was learned is its reference;
every later preview gets a **retention** score: the mean cosine similarity ×100 between the
features of the image made with seed i now and with seed i then, with the feature extractor the
benchmarks use (``core.engine.metrics.features.load_feature_extractor``, ``toy-classifier`` by
default; a local CLIP folder for Stable Diffusion). 100 means the concept renders as it did.

Best effort: previews run after the publish and never fail or delay the task's result
(docs/dashboard.md).
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

from PIL import Image
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select

from core.db.jobs.lineage import lineage
from core.db.models import Concept, ConceptStatus
from core.db.previews import PREVIEW_PROMPT, PreviewImage, PreviewItem, reference_image_paths, store_previews

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = logging.getLogger(__name__)


class PreviewSettings(BaseSettings):
    """``MNEMO_PREVIEW_*``: how many concepts, images and sampling steps each preview costs."""

    model_config = SettingsConfigDict(env_prefix="MNEMO_PREVIEW_", extra="ignore")

    concepts: int = Field(default=8, ge=-1, description="0: off; N: the last N concepts; -1: all of them")
    images: int = Field(default=2, ge=1, le=8, description="images per concept (seeds seed, seed+1, ...)")
    steps: int = Field(default=10, ge=1, le=150, description="sampling steps per preview")
    guidance_scale: float = Field(default=7.5, ge=0.0, le=50.0)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    features: str = Field(
        default="toy-classifier", description="feature extractor of the retention score (a local CLIP folder)"
    )


def chosen_concepts(concepts: list[Concept], *, limit: int) -> list[Concept]:
    """The concepts to preview: all (``limit`` -1), none (0) or the ``limit`` learned last."""
    if limit == 0:
        return []
    return concepts if limit < 0 else concepts[-limit:]


def paired_retention(extractor: Any, *, reference: list[Image.Image], current: list[Image.Image]) -> float:
    """Mean over seeds i of 100·cos(features(reference_i), features(current_i))."""
    from core.engine.metrics.similarity import image_image_similarity

    pairs = min(len(reference), len(current))
    if pairs == 0:
        raise ValueError("no image pairs to compare")
    before, now = extractor(reference[:pairs]), extractor(current[:pairs])
    scores = [image_image_similarity(before[i : i + 1], now[i : i + 1]) for i in range(pairs)]
    return round(sum(scores) / pairs, 2)


def make_previews(runtime: Runtime, *, job_id: str, user_id: str, version_id: str) -> list[str]:
    """Render, score and store the previews after the task that published ``version_id``."""
    settings = PreviewSettings()
    factory = runtime.session_factory
    with factory() as session:
        chain = lineage(session, head_id=version_id)
        after = chain[-1].task_index
        concepts = list(
            session.scalars(
                select(Concept)
                .where(
                    Concept.user_id == user_id,
                    Concept.status == ConceptStatus.READY.value,
                    Concept.task_index <= after,
                )
                .order_by(Concept.task_index)
            )
        )
        chosen = chosen_concepts(concepts, limit=settings.concepts)
        references = reference_image_paths(session, concept_ids=[c.id for c in chosen])
    if not chosen:
        return []
    state = runtime.load_user_state(chain)
    items, written = [], []
    try:
        for concept in chosen:
            images = _render(runtime, state=state, token=concept.token, settings=settings)
            stored = [_store_png(runtime, image) for image in images]
            written += [item.path for item in stored]
            retention, features = _retention(
                runtime, concept, after=after, images=images, references=references
            )
            items.append(
                PreviewItem(
                    concept_id=concept.id,
                    token=concept.token,
                    after_task_index=after,
                    seed=settings.seed,
                    images=stored,
                    retention=retention,
                    features=features,
                )
            )
        ids = store_previews(factory, job_id=job_id, user_id=user_id, items=items)
    except BaseException:
        runtime.store.delete_many(written)
        raise
    if not ids:  # a re-delivery already stored this task's previews
        runtime.store.delete_many(written)
    return ids


def _retention(
    runtime: Runtime,
    concept: Concept,
    *,
    after: int,
    images: list[Image.Image],
    references: dict[str, list[str]],
) -> tuple[float | None, str | None]:
    """(score, extractor name): 100 for the reference itself, None without a reference preview."""
    if concept.task_index == after:
        return 100.0, None
    if concept.id not in references:
        return None, None
    extractor = runtime.preview_features(PreviewSettings().features)
    reference = [_load_png(runtime, path) for path in references[concept.id]]
    return paired_retention(extractor, reference=reference, current=images), extractor.name


def _render(runtime: Runtime, *, state: Any, token: str, settings: PreviewSettings) -> list[Image.Image]:
    from core.engine.generate import generate

    return generate(
        backbone=runtime.backbone,
        state=state,
        prompt=PREVIEW_PROMPT.format(token),
        n=settings.images,
        steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        seed=settings.seed,
    )


def _store_png(runtime: Runtime, image: Image.Image) -> PreviewImage:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    written = runtime.store.write_bytes(runtime.store.new_image_path(), buffer.getvalue())
    return PreviewImage(path=written.path, sha256=written.sha256, width=image.width, height=image.height)


def _load_png(runtime: Runtime, path: str) -> Image.Image:
    with Image.open(io.BytesIO(runtime.store.read_bytes(path)), formats=["PNG"]) as image:
        return image.convert("RGB")


def previews_after_publish(runtime: Runtime, *, job_id: str, user_id: str, version_id: str) -> None:
    """``make_previews`` that logs instead of raising: a task's result never depends on its previews."""
    try:
        made = make_previews(runtime, job_id=job_id, user_id=user_id, version_id=version_id)
    except Exception as error:
        log.warning("job %s: previews not made (%s)", job_id, type(error).__name__)
        return
    if made:
        log.info("job %s: %d previews stored", job_id, len(made))
