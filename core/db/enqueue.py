"""Creating jobs: the job row and its outbox row in the caller's transaction.

The message is sent only after the transaction commits (``core.queue.outbox.flush_outbox``);
if the broker is down the job stays ``queued`` and the reconciler re-sends it
(docs/architecture.md, "The job protocol").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db.audit import record
from core.db.models import (
    Concept,
    ConceptStatus,
    Generation,
    Job,
    JobKind,
    Outbox,
    Upload,
    User,
)
from core.db.webhooks import emit_job
from core.queue.names import TASK_NAMES
from core.storage import StoredFile
from core.vocabulary import token_for
from core.webhooks.events import JOB_QUEUED


class ConceptExistsError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"you already have a concept named {name!r}")
        self.name = name


def ready_tokens(session: Session, *, user_id: str) -> list[str]:
    """The tokens of the user's trained (``ready``) concepts, in task order."""
    rows = session.scalars(
        select(Concept.token)
        .where(Concept.user_id == user_id, Concept.status == ConceptStatus.READY.value)
        .order_by(Concept.task_index, Concept.created_at)
    )
    return list(rows)


def allocate_job_seq(session: Session, *, user_id: str) -> int:
    """The next per-user job seq (an atomic increment of ``users.next_job_seq``)."""
    new_next = session.execute(
        update(User)
        .where(User.id == user_id)
        .values(next_job_seq=User.next_job_seq + 1)
        .returning(User.next_job_seq)
    ).scalar_one()
    return int(new_next) - 1


def _new_job(
    session: Session,
    *,
    user_id: str,
    kind: JobKind,
    payload: dict[str, Any],
    max_attempts: int,
    concept_id: str | None = None,
) -> Job:
    job = Job(
        user_id=user_id,
        kind=kind.value,
        concept_id=concept_id,
        seq=allocate_job_seq(session, user_id=user_id),
        payload=payload,
        max_attempts=max_attempts,
        progress={"phase": "queued", "step": 0, "total": 0, "loss": None},
    )
    session.add(job)
    session.flush()
    session.add(Outbox(job_id=job.id, task_name=TASK_NAMES[kind.value]))
    emit_job(session, job=job, event=JOB_QUEUED)  # the webhook's outbox row (docs/webhooks.md)
    return job


@dataclass(frozen=True)
class TrainRequest:
    name: str
    class_word: str | None
    method: str
    steps: int | None


def create_train_job(
    session: Session,
    *,
    user_id: str,
    request: TrainRequest,
    uploads: list[StoredFile],
    max_attempts: int,
) -> tuple[Concept, Job]:
    """Concept + train job + upload rows + outbox row (flushed; the caller commits)."""
    if session.scalar(select(Concept.id).where(Concept.user_id == user_id, Concept.name == request.name)):
        raise ConceptExistsError(request.name)
    concept = Concept(
        user_id=user_id,
        name=request.name,
        token=token_for(request.name),
        class_word=request.class_word,
        method=request.method,
        steps=request.steps,
        status=ConceptStatus.QUEUED.value,
    )
    session.add(concept)
    session.flush()
    payload = {
        "concept_id": concept.id,
        "name": concept.name,
        "token": concept.token,
        "class_word": concept.class_word,
        "method": concept.method,
        "steps": concept.steps,
    }
    job = _new_job(
        session,
        user_id=user_id,
        kind=JobKind.TRAIN,
        payload=payload,
        max_attempts=max_attempts,
        concept_id=concept.id,
    )
    for position, stored in enumerate(uploads):
        session.add(
            Upload(
                job_id=job.id, path=stored.path, sha256=stored.sha256, bytes=stored.bytes, position=position
            )
        )
    record(
        session,
        actor_user_id=user_id,
        action="concept.create",
        subject=concept.id,
        details={"job_id": job.id, "images": len(uploads), "method": request.method},
    )
    session.flush()
    return concept, job


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    negative_prompt: str
    n: int
    steps: int
    guidance_scale: float
    seed: int


def create_generate_job(
    session: Session, *, user_id: str, request: GenerateRequest, max_attempts: int
) -> tuple[Generation, Job]:
    """Generation row + generate job + outbox row (flushed; the caller commits)."""
    params = {
        "negative_prompt": request.negative_prompt,
        "n": request.n,
        "steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "seed": request.seed,
    }
    job = _new_job(session, user_id=user_id, kind=JobKind.GENERATE, payload={}, max_attempts=max_attempts)
    generation = Generation(user_id=user_id, job_id=job.id, prompt=request.prompt, params=params)
    session.add(generation)
    session.flush()
    job.payload = {"generation_id": generation.id, "prompt": request.prompt, **params}
    session.flush()
    return generation, job
